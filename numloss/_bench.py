"""The benchmark cases, shared by ``numloss bench`` and the asv suites.

A case is one public ``*_with_grad`` call on inputs of one shape and dtype
with one group of options, run with the gradient written to a preallocated
``out`` or in place (``out=logits``).  Each case also knows the bytes that
must move (logits read + gradient written, + dense targets read) so its time
can be compared with a plain streaming kernel's on the same number of bytes:
the bandwidth bound.

Peers (same thread count, each at its best, as the README explains):
PyTorch on ``torch.from_numpy`` tensors (forward + backward), JAX with the
arrays already on the device (``jax.value_and_grad`` of a jitted loss, the
faster of optax's and a plain log-sum-exp / softplus form), and the NumPy
baseline (:mod:`numloss._baseline`).  Each is the minimum over repeats.
"""

import dataclasses
import time

import numpy as np

# ------------------------------------------------------------------ the cases


@dataclasses.dataclass(frozen=True)
class Case:
    """One benchmark case.  ``family`` names the public function without ``_with_grad``."""

    family: str
    shape: tuple
    dtype: str = "float32"
    group: str = "plain"
    options: tuple = ()  # ((name, value), ...) passed to the loss
    quick: bool = False  # part of ``numloss bench --quick``

    @property
    def label(self):
        dims = "x".join(str(d) for d in self.shape)
        return f"{self.family} {self.group} {dims} {self.dtype}"

    @property
    def kwargs(self):
        return dict(self.options)


#: family -> (build inputs, bytes moved per call besides logits+grad, peers)
FAMILIES = {}


def family(name):
    """Register an input builder for a family: ``builder(case, rng) -> (args, kwargs)``."""

    def register(builder):
        FAMILIES[name] = builder
        return builder

    return register


def _weights(c, rng):
    return rng.uniform(0.5, 2.0, size=c)


@family("softmax_cross_entropy")
def _build_softmax(case, rng):
    n, c = case.shape
    x = rng.standard_normal((n, c), dtype=np.float32).astype(case.dtype, copy=False) * 2
    opts = case.kwargs
    if opts.pop("prob_target", False):
        t = rng.dirichlet(np.ones(c), size=n).astype(case.dtype)
    else:
        t = rng.integers(0, c, size=n)
        if opts.get("ignore_index") is not None:
            t[::7] = opts["ignore_index"]
    if opts.pop("class_weights", False):
        opts["weight"] = _weights(c, rng)
    return (x, t), opts


@family("sigmoid_cross_entropy")
def _build_sigmoid(case, rng):
    n, c = case.shape
    x = rng.standard_normal((n, c), dtype=np.float32).astype(case.dtype, copy=False) * 2
    t = (rng.random((n, c)) < 0.3).astype(case.dtype)
    opts = case.kwargs
    if opts.pop("class_weights", False):
        opts["weight"] = _weights(c, rng).astype(case.dtype)
        opts["pos_weight"] = _weights(c, rng).astype(case.dtype)
    return (x, t), opts


SOFTMAX_SHAPES = [(8192, 32000), (4096, 1000), (256, 128256), (65536, 10)]
SIGMOID_SHAPES = [(65536, 80), (4096, 1000)]

CASES = (
    [Case("softmax_cross_entropy", s, quick=s == (4096, 1000)) for s in SOFTMAX_SHAPES]
    + [Case("softmax_cross_entropy", (4096, 1000), "float64", quick=True)]
    + [
        Case("softmax_cross_entropy", (4096, 1000), group=g, options=o)
        for g, o in [
            ("weight+ignore", (("class_weights", True), ("ignore_index", -100))),
            ("label_smoothing", (("label_smoothing", 0.1),)),
            ("z_loss", (("z_loss", 1e-4),)),
            ("softcap", (("softcap", 30.0),)),
            ("eps", (("eps", 1e-6),)),
            ("prob_target", (("prob_target", True),)),
        ]
    ]
    + [Case("sigmoid_cross_entropy", s, quick=s == (4096, 1000)) for s in SIGMOID_SHAPES]
    + [
        Case("sigmoid_cross_entropy", (4096, 1000), group=g, options=o)
        for g, o in [("weight+pos_weight", (("class_weights", True),)), ("eps", (("eps", 1e-6),))]
    ]
)


def make_inputs(case, seed=0):
    """``(args, kwargs)`` for the case's loss; arrays are filled eagerly."""
    return FAMILIES[case.family](case, np.random.default_rng(seed))


def bytes_moved(case, args):
    """Logits read + gradient written (+ dense targets read)."""
    x, t = args[0], args[1]
    moved = 2 * x.nbytes
    if t.shape == x.shape:
        moved += t.nbytes
    return moved


def numloss_call(case, args, kwargs, in_place):
    """A zero-argument callable running the case once with numloss."""
    import numloss

    fn = getattr(numloss, case.family + "_with_grad")
    x = args[0]
    if in_place:
        buf = x.copy()
        rest = args[1:]
        return lambda: fn(buf, *rest, out=buf, **kwargs)
    out = np.empty_like(x)
    return lambda: fn(*args, out=out, **kwargs)


# ---------------------------------------------------------------- the peers


def numpy_call(case, args, kwargs):
    from . import _baseline

    if case.group != "plain":
        return None
    if case.family == "softmax_cross_entropy":
        return lambda: _baseline.softmax_ce_with_grad(*args)
    if case.family == "sigmoid_cross_entropy":
        return lambda: _baseline.sigmoid_ce_with_grad(*args)
    return None


def torch_call(case, args, kwargs, threads):
    try:
        import torch
        import torch.nn.functional as F
    except ImportError:
        return None
    if case.group not in ("plain", "weight+ignore", "label_smoothing", "weight+pos_weight", "prob_target"):
        return None
    torch.set_num_threads(threads)
    x = torch.from_numpy(args[0])
    t = torch.from_numpy(args[1])
    kw = {k: (torch.from_numpy(np.asarray(v, dtype=args[0].dtype)) if isinstance(v, np.ndarray) else v)
          for k, v in kwargs.items()}
    if case.family == "softmax_cross_entropy":
        loss_fn = F.cross_entropy
    elif case.family == "sigmoid_cross_entropy":
        loss_fn = F.binary_cross_entropy_with_logits
    elif case.family in TORCH_PEERS:
        loss_fn = TORCH_PEERS[case.family](torch, F)
    else:
        return None

    def run():
        xr = x.detach().requires_grad_()
        loss = loss_fn(xr, t, **kw)
        loss.backward()
        return loss, xr.grad

    return run


def jax_call(case, args, kwargs):
    try:
        import jax
        import jax.numpy as jnp
    except ImportError:
        return None
    if case.group != "plain" or case.dtype != "float32":
        return None
    x = jax.device_put(args[0])
    t = jax.device_put(args[1])
    forms = []
    if case.family == "softmax_cross_entropy":
        def plain(x, t):
            lse = jax.nn.logsumexp(x, axis=-1)
            return jnp.mean(lse - jnp.take_along_axis(x, t[:, None], axis=-1)[:, 0])
        forms.append(plain)
        try:
            import optax

            forms.append(lambda x, t: optax.softmax_cross_entropy_with_integer_labels(x, t).mean())
        except ImportError:
            pass
    elif case.family == "sigmoid_cross_entropy":
        def plain(x, t):
            return jnp.mean(jax.nn.softplus(x) - t * x)
        forms.append(plain)
        try:
            import optax

            forms.append(lambda x, t: optax.sigmoid_binary_cross_entropy(x, t).mean())
        except ImportError:
            pass
    else:
        return None
    calls = []
    for f in forms:
        vg = jax.jit(jax.value_and_grad(f))
        calls.append(lambda vg=vg: jax.block_until_ready(vg(x, t)))
    return calls


# ------------------------------------------------------------------ timing


def best_time(fn, repeat=7, min_time=0.05):
    """Minimum wall time of one call over ``repeat`` rounds (after a warm-up call)."""
    fn()
    best = np.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        elapsed = time.perf_counter() - t0
        best = min(best, elapsed)
        if elapsed > 1.0:
            break
    return best


def streaming_bandwidth(nbytes, repeat=7):
    """Bytes/s of a Numba ``prange`` loop ``b[i] = 1.5 * a[i]`` over ``nbytes / 2`` per array."""
    from ._kernels.stream import scale_copy

    n = max(1, nbytes // 2 // 4)
    a = np.ones(n, dtype=np.float32)
    b = np.ones(n, dtype=np.float32)
    t = best_time(lambda: scale_copy(a, b), repeat=repeat)
    return 2 * a.nbytes / t


def measure(case, threads, peers=True, repeat=7, progress=None):
    """Time one case: numloss (out= and in place), the bound, and the peers."""
    import numba

    numba.set_num_threads(threads)
    args, kwargs = make_inputs(case)
    moved = bytes_moved(case, args)
    row = dict(case=case.label, family=case.family, group=case.group, shape=list(case.shape), dtype=case.dtype,
               threads=threads, bytes=moved)
    bw = streaming_bandwidth(moved, repeat=repeat)
    row["bound_ms"] = moved / bw * 1e3
    row["stream_GBps"] = bw / 1e9
    for key, in_place in (("out", False), ("inplace", True)):
        t = best_time(numloss_call(case, args, kwargs, in_place), repeat=repeat)
        row[f"{key}_ms"] = t * 1e3
        row[f"{key}_GBps"] = moved / t / 1e9
        row[f"{key}_pct_bound"] = 100 * row["bound_ms"] / row[f"{key}_ms"]
    if peers:
        fn = numpy_call(case, args, kwargs)
        row["numpy_ms"] = best_time(fn, repeat=3) * 1e3 if fn else None
        fn = torch_call(case, args, kwargs, threads)
        row["torch_ms"] = best_time(fn, repeat=repeat) * 1e3 if fn else None
        fns = jax_call(case, args, kwargs)
        row["jax_ms"] = min(best_time(f, repeat=repeat) for f in fns) * 1e3 if fns else None
        best = min(row["out_ms"], row["inplace_ms"])
        for peer in ("numpy", "torch", "jax"):
            row[f"x_{peer}"] = row[f"{peer}_ms"] / best if row[f"{peer}_ms"] else None
    return row


# ==================================================================== linear_cross_entropy
# (issue 5) Fused linear + softmax CE has another call shape than the logits
# cases above -- (hidden, weight, target), three gradients, no out= -- so it has
# its own cases, builder and measure_linear(); `numloss bench` runs these after
# the others and prints them in their own table.  Peak memory is measured
# per process by benchmarks/linear_ce_memory.py.


@dataclasses.dataclass(frozen=True)
class LinearCase:
    """One linear_cross_entropy case: ``shape = (N, D, V)``."""

    shape: tuple
    dtype: str = "float32"
    bias: bool = False
    quick: bool = False
    family: str = "linear_cross_entropy"

    @property
    def label(self):
        dims = "x".join(str(d) for d in self.shape)
        return f"{self.family} {'bias' if self.bias else 'plain'} {dims} {self.dtype}"


LINEAR_CASES = [
    LinearCase((1024, 256, 8000), quick=True),
    LinearCase((1024, 256, 8000), "float64", bias=True),
    LinearCase((2048, 1024, 32000)),
]


def make_linear_inputs(case, seed=0):
    """``(hidden, weight, target, bias)`` for a :class:`LinearCase`, filled eagerly."""
    n, d, v = case.shape
    rng = np.random.default_rng(seed)
    hidden = rng.standard_normal((n, d), dtype=np.float32).astype(case.dtype, copy=False)
    weight = rng.standard_normal((v, d), dtype=np.float32).astype(case.dtype, copy=False)
    weight *= 1.0 / np.sqrt(d)
    bias = rng.standard_normal(v, dtype=np.float32).astype(case.dtype, copy=False) if case.bias else None
    target = rng.integers(0, v, n)
    return hidden, weight, target, bias


def linear_calls(case, inputs, threads, peers=True):
    """``{name: zero-argument callable}``: numloss, the materialising NumPy path, PyTorch (both forms)."""
    import numloss

    hidden, weight, target, bias = inputs
    calls = {"numloss": lambda: numloss.linear_cross_entropy_with_grad(hidden, weight, target, bias=bias)}
    if not peers:
        return calls

    def materialising():
        logits = hidden @ weight.T
        if bias is not None:
            logits += bias
        loss, g = numloss.softmax_cross_entropy_with_grad(logits, target, out=logits)
        return loss, (g @ weight, g.T @ hidden, g.sum(axis=0) if bias is not None else None)

    calls["numpy"] = materialising
    try:
        import torch
        import torch.nn.functional as F
    except ImportError:
        return calls
    torch.set_num_threads(threads)
    th, tw, tt = torch.from_numpy(hidden), torch.from_numpy(weight), torch.from_numpy(target)
    tb = torch.from_numpy(bias) if bias is not None else None

    def torch_run(chunked):
        h = th.detach().requires_grad_()
        w = tw.detach().requires_grad_()
        b = tb.detach().requires_grad_() if tb is not None else None
        if chunked:
            loss = F.linear_cross_entropy(h, w, tt, linear_bias=b, options=torch.nn.LinearCrossEntropyOptions())
        else:
            loss = F.cross_entropy(F.linear(h, w, b), tt)
        loss.backward()
        return loss, h.grad, w.grad

    calls["torch"] = lambda: torch_run(False)
    if hasattr(F, "linear_cross_entropy") and hasattr(torch.nn, "LinearCrossEntropyOptions"):
        calls["torch_chunked"] = lambda: torch_run(True)
    return calls


def measure_linear(case, threads, peers=True, repeat=3):
    """Time one :class:`LinearCase` (minimum over ``repeat`` calls after a warm-up) for every method."""
    import numba

    numba.set_num_threads(threads)
    inputs = make_linear_inputs(case)
    n, d, v = case.shape
    row = dict(case=case.label, family=case.family, shape=list(case.shape), dtype=case.dtype, threads=threads,
               gflop=3 * 2 * n * d * v / 1e9)
    for name, fn in linear_calls(case, inputs, threads, peers).items():
        row[f"{name}_ms"] = best_time(fn, repeat=repeat) * 1e3
    for name in ("numpy", "torch", "torch_chunked"):
        if f"{name}_ms" in row:
            row[f"x_{name}"] = row[f"{name}_ms"] / row["numloss_ms"]
    return row


def bench_linear(quick, text_filter, threads, peers, repeat, progress=None):
    """The rows of ``numloss bench`` for :data:`LINEAR_CASES`."""
    cases = [c for c in LINEAR_CASES if (c.quick or not quick) and text_filter in c.label]
    rows = []
    for i, case in enumerate(cases, 1):
        if progress is not None:
            print(f"[linear {i}/{len(cases)}] {case.label} ...", end="", flush=True, file=progress)
        rows.append(measure_linear(case, threads, peers=peers, repeat=min(repeat, 3)))
        if progress is not None:
            print(f" {rows[-1]['numloss_ms']:.1f} ms", file=progress)
    return rows


def print_linear_table(rows, file):
    """The linear_cross_entropy rows: ms per forward+backward, GFLOP/s of numloss, x = peer time / ours."""
    if not rows:
        return
    head = (f"{'case':<52} {'ms':>9} {'GFLOP/s':>8} {'numpy':>9} {'torch':>9} {'torch chunked':>13} "
            f"{'x np':>5} {'x torch':>7} {'x chunked':>9}")
    print(file=file)
    print(head, file=file)
    print("-" * len(head), file=file)

    def f(v, spec):
        return format(v, spec) if v is not None else "-"

    for r in rows:
        print(f"{r['case']:<52} {r['numloss_ms']:>9.1f} {r['gflop'] / r['numloss_ms'] * 1e3:>8.1f} "
              f"{f(r.get('numpy_ms'), '9.1f'):>9} {f(r.get('torch_ms'), '9.1f'):>9} "
              f"{f(r.get('torch_chunked_ms'), '13.1f'):>13} {f(r.get('x_numpy'), '5.2f'):>5} "
              f"{f(r.get('x_torch'), '7.2f'):>7} {f(r.get('x_torch_chunked'), '9.2f'):>9}", file=file)


# ------------------------------------------------ focal and margin losses (issue 4)
# Builders, cases and PyTorch peers (written out: torchvision is not a
# dependency) for sigmoid_focal_loss, softmax_focal_loss,
# cosface_cross_entropy and arcface_cross_entropy.


@family("sigmoid_focal_loss")
def _build_sigmoid_focal(case, rng):
    n, c = case.shape
    x = rng.standard_normal((n, c), dtype=np.float32).astype(case.dtype, copy=False) * 2
    t = (rng.random((n, c)) < 0.05).astype(case.dtype)  # sparse positives, as in detection
    return (x, t), case.kwargs


@family("softmax_focal_loss")
def _build_softmax_focal(case, rng):
    n, c = case.shape
    x = rng.standard_normal((n, c), dtype=np.float32).astype(case.dtype, copy=False) * 2
    return (x, rng.integers(0, c, size=n)), case.kwargs


def _build_cosines(case, rng):
    n, c = case.shape
    cos = rng.uniform(-0.3, 0.9, size=(n, c)).astype(case.dtype)
    return (cos, rng.integers(0, c, size=n)), case.kwargs


family("cosface_cross_entropy")(_build_cosines)
family("arcface_cross_entropy")(_build_cosines)


def _torch_sigmoid_focal(torch, F):
    def loss(x, t, alpha=0.25, gamma=2.0):  # torchvision.ops.sigmoid_focal_loss(..., reduction="mean")
        p = torch.sigmoid(x)
        ce = F.binary_cross_entropy_with_logits(x, t, reduction="none")
        p_t = p * t + (1 - p) * (1 - t)
        out = ce * ((1 - p_t) ** gamma)
        if alpha is not None and alpha >= 0:
            out = (alpha * t + (1 - alpha) * (1 - t)) * out
        return out.mean()

    return loss


def _torch_softmax_focal(torch, F):
    def loss(x, t, gamma=2.0):
        logp_y = F.log_softmax(x, dim=-1).gather(1, t[:, None])[:, 0]
        return (-((1 - logp_y.exp()) ** gamma) * logp_y).mean()

    return loss


def _torch_cosface(torch, F):
    def loss(cos, t, scale=30.0, margin=0.35, **kw):
        onehot = F.one_hot(t, cos.shape[-1]).to(cos.dtype)
        return F.cross_entropy(scale * (cos - margin * onehot), t, **kw)

    return loss


def _torch_arcface(torch, F):
    import math

    def loss(cos, t, scale=64.0, margin=0.5, **kw):  # insightface's ArcFace margin with the exact gradient
        onehot = F.one_hot(t, cos.shape[-1]).to(cos.dtype)
        c = cos.clamp(-1, 1)
        phi = c * math.cos(margin) - torch.sqrt((1 - c * c).clamp_min(1e-12)) * math.sin(margin)
        phi = torch.where(c > math.cos(math.pi - margin), phi, c - math.sin(math.pi - margin) * margin)
        return F.cross_entropy(scale * (onehot * phi + (1 - onehot) * cos), t, **kw)

    return loss


#: family -> (torch, F) -> loss function of (x, target, **kwargs); used by torch_call
TORCH_PEERS = {
    "sigmoid_focal_loss": _torch_sigmoid_focal,
    "softmax_focal_loss": _torch_softmax_focal,
    "cosface_cross_entropy": _torch_cosface,
    "arcface_cross_entropy": _torch_arcface,
}

CASES += (
    [Case("sigmoid_focal_loss", s, quick=s == (4096, 1000)) for s in SIGMOID_SHAPES]
    + [Case("sigmoid_focal_loss", (4096, 1000), group="gamma=1.5", options=(("gamma", 1.5),))]
    + [Case("softmax_focal_loss", (4096, 1000), quick=True)]
    + [Case("cosface_cross_entropy", (4096, 1000), quick=True)]
    + [Case("arcface_cross_entropy", (4096, 1000), quick=True)]
    + [Case("arcface_cross_entropy", (4096, 1000), group="label_smoothing", options=(("label_smoothing", 0.1),))]
)
