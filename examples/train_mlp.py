"""Train a small NumPy MLP on interleaved spirals with numloss.

The network is plain NumPy: 2 inputs -> 64 -> 64 -> 5 classes, ReLU, float32,
trained by minibatch SGD with momentum, a cosine learning-rate decay and
L2 weight decay.  numloss supplies
the loss: :func:`numloss.softmax_cross_entropy_with_grad` returns the mean
cross-entropy and its gradient with respect to the logits in one pass,
written into a gradient buffer allocated once (``out=``).  The parameters are
:class:`numloss.nn.Parameter` objects held by a :class:`numloss.nn.Module`,
whose ``decay_backward()`` adds ``weight_decay * data`` to every gradient.

The data are five interleaved noisy spirals (3000 points, generated from
``--seed``, nothing downloaded), split 80/20 into training and test sets.

Stated accuracy: with the defaults (``--epochs 30 --seed 0 --batch-size
32``) the test accuracy is at least 98% (99.3-100% for seeds 0-5), and
``--epochs 5`` already reaches at least 95% (97.7% for seed 0; the
learning rate decays over however many epochs are asked for).
tests/test_examples.py runs the 5 epochs and checks the 95%.

Run it as::

    python examples/train_mlp.py                  # progress bar, one line per epoch
    python examples/train_mlp.py --epochs 5 --quiet

Each epoch line gives the mean training loss, training and test accuracy,
the epoch's time, and the share of it spent in the loss (forward and
gradient); the last line gives that share over the whole run.
"""

import argparse
import sys
import time

import numpy as np

import numloss
from numloss.nn import Module, Parameter

NUM_CLASSES = 5
POINTS_PER_CLASS = 600
HIDDEN = 64
#: test accuracy reached with the defaults (30 epochs); 5 epochs reach 0.95
TARGET_ACCURACY = 0.98


def make_spirals(seed, num_classes=NUM_CLASSES, points=POINTS_PER_CLASS, noise=0.2):
    """``num_classes`` interleaved spiral arms in 2-d; returns float32 ``x (N, 2)`` and int64 ``y (N,)``."""
    rng = np.random.default_rng(seed)
    r = np.linspace(0.05, 1.0, points)
    xs, ys = [], []
    for k in range(num_classes):
        theta = np.linspace(0.0, 4.0, points) + 2 * np.pi * k / num_classes + rng.normal(0.0, noise, points)
        xs.append(np.column_stack([r * np.sin(theta), r * np.cos(theta)]))
        ys.append(np.full(points, k))
    x = np.concatenate(xs).astype(np.float32)
    y = np.concatenate(ys).astype(np.int64)
    order = rng.permutation(len(y))
    return x[order], y[order]


class MLP(Module):
    """``x -> relu(x W1 + b1) -> relu(. W2 + b2) -> . W3 + b3`` (logits)."""

    def __init__(self, sizes, rng, weight_decay):
        params = []
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:], strict=True):
            # He initialisation for ReLU layers
            w = rng.normal(0.0, np.sqrt(2.0 / fan_in), (fan_in, fan_out)).astype(np.float32)
            params += [Parameter(w), Parameter(np.zeros(fan_out, dtype=np.float32))]
        super().__init__(params, weight_decay)

    def forward(self, x):
        self.inputs = []
        h = x
        for i in range(0, len(self.params), 2):
            self.inputs.append(h)
            h = h @ self.params[i].data + self.params[i + 1].data
            if i + 2 < len(self.params):
                h = np.maximum(h, 0.0)
        return h

    def backward(self, grad_logits):
        g = grad_logits
        for i in range(len(self.params) - 2, -1, -2):
            w, b, h = self.params[i], self.params[i + 1], self.inputs[i // 2]
            w.grad[...] = h.T @ g
            b.grad[...] = g.sum(axis=0)
            if i:
                g = (g @ w.data.T) * (h > 0)
        self.decay_backward()  # L2 weight decay (on biases too, as the seed's Module does)


def accuracy(model, x, y):
    return float(np.mean(model.forward(x).argmax(axis=1) == y))


def progress(epoch, epochs, done, total, width=30):
    filled = width * done // total
    sys.stderr.write(f"\r  epoch {epoch}/{epochs} [{'#' * filled}{'.' * (width - filled)}] {done}/{total} batches")
    if done == total:
        sys.stderr.write("\r" + " " * (width + 40) + "\r")
    sys.stderr.flush()


def train(epochs=30, seed=0, batch_size=32, lr=0.05, momentum=0.9, weight_decay=1e-4, quiet=False):
    """Train the MLP; returns ``(test_accuracy, loss_fraction)``."""
    x, y = make_spirals(seed)
    split = int(0.8 * len(y))
    x_train, y_train, x_test, y_test = x[:split], y[:split], x[split:], y[split:]
    rng = np.random.default_rng(seed + 1)
    model = MLP([2, HIDDEN, HIDDEN, NUM_CLASSES], rng, weight_decay)
    velocity = [np.zeros_like(p.data) for p in model.params]
    # one gradient buffer for the whole run; a short last batch uses its leading rows (still C-contiguous)
    grad_buffer = np.empty((batch_size, NUM_CLASSES), dtype=np.float32)
    batches = -(-split // batch_size)
    if not quiet:
        print(f"{len(y)} points in {NUM_CLASSES} spirals, {split} for training; "
              f"MLP 2-{HIDDEN}-{HIDDEN}-{NUM_CLASSES}, batch {batch_size}, {epochs} epochs")
    # The first call compiles the kernel (or loads it from numloss's on-disk
    # cache): done here once, so that the epochs time the loss itself.
    t0 = time.perf_counter()
    numloss.softmax_cross_entropy_with_grad(np.zeros((1, NUM_CLASSES), np.float32), np.zeros(1, np.int64))
    if not quiet:
        print(f"numloss warm-up (compile or load from cache): {time.perf_counter() - t0:.2f} s")
    total_time = total_loss_time = 0.0
    test_acc = 0.0
    for epoch in range(1, epochs + 1):
        start = time.perf_counter()
        loss_time, loss_sum = 0.0, 0.0
        step = lr * 0.5 * (1.0 + np.cos(np.pi * (epoch - 1) / epochs))  # cosine learning-rate decay
        order = rng.permutation(split)
        for b in range(batches):
            idx = order[b * batch_size:(b + 1) * batch_size]
            logits = model.forward(x_train[idx])
            t0 = time.perf_counter()
            loss, grad = numloss.softmax_cross_entropy_with_grad(logits, y_train[idx], out=grad_buffer[:len(idx)])
            loss_time += time.perf_counter() - t0
            loss_sum += float(loss) * len(idx)
            model.backward(grad)
            for p, v in zip(model.params, velocity, strict=True):
                v *= momentum
                v -= step * p.grad
                p.data += v
            if not quiet:
                progress(epoch, epochs, b + 1, batches)
        epoch_time = time.perf_counter() - start
        total_time += epoch_time
        total_loss_time += loss_time
        test_acc = accuracy(model, x_test, y_test)
        if not quiet:
            print(f"epoch {epoch:3d}/{epochs}  loss {loss_sum / split:.4f}  "
                  f"train acc {accuracy(model, x_train, y_train):.3f}  test acc {test_acc:.3f}  "
                  f"time {epoch_time * 1e3:6.1f} ms  loss {100 * loss_time / epoch_time:4.1f}% of the epoch")
    fraction = total_loss_time / total_time if total_time else 0.0
    print(f"test accuracy {test_acc:.3f} after {epochs} epochs (the defaults reach >= {TARGET_ACCURACY:.2f}); "
          f"the loss took {100 * fraction:.1f}% of the training time ({total_time:.2f} s)")
    return test_acc, fraction


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30, help="passes over the training set (default 30)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the data and the initialisation (default 0)")
    parser.add_argument("--batch-size", type=int, default=32, help="minibatch size (default 32)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar and no per-epoch lines")
    args = parser.parse_args(argv)
    if args.epochs < 1 or args.batch_size < 1:
        parser.error("--epochs and --batch-size must be positive")
    train(epochs=args.epochs, seed=args.seed, batch_size=args.batch_size, quiet=args.quiet)


if __name__ == "__main__":
    main()
