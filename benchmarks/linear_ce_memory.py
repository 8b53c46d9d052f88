"""Peak memory and wall time of linear + cross-entropy forward and backward, each method in its own process.

    python benchmarks/linear_ce_memory.py                      # 8192 x 2048 x 32000 float32, all methods
    python benchmarks/linear_ce_memory.py --n 2048 --v 8000    # smaller
    python benchmarks/linear_ce_memory.py --methods numloss,numpy --repeat 2 --json
    python benchmarks/linear_ce_memory.py --methods numloss,numpy --rounds 3  # interleaved processes

Methods (all produce the loss and the gradients of hidden, weight and bias):

* ``numloss``: :func:`numloss.linear_cross_entropy_with_grad` (chunked, fused);
* ``numpy``: the materialising approach, ``logits = hidden @ weight.T (+ bias)``,
  :func:`numloss.softmax_cross_entropy_with_grad` in place (``out=logits``), then
  ``g @ weight`` and ``g.T @ hidden`` (and ``g.sum(0)``);
* ``torch_chunked``: ``F.linear_cross_entropy(..., options=LinearCrossEntropyOptions())``
  then ``backward()`` (PyTorch >= 2.13);
* ``torch``: ``F.cross_entropy(F.linear(...))`` then ``backward()``.

Each method runs in a fresh subprocess: it builds the inputs, makes one small
warm-up call (compilation, thread pools), resets the kernel's peak-RSS counter
(``/proc/self/clear_refs`` = 5, so ``VmHWM`` restarts at the current RSS), runs
the big call, and reports ``VmHWM`` minus the RSS just before the call.  "beyond
outputs" subtracts the gradients' bytes (``d_hidden + d_weight (+ d_bias)``),
which every method must return: what is left is the method's working memory.
PyTorch and the NumPy path use the same number of threads as Numba
(``--threads``, default all).
"""

import argparse
import json
import os
import subprocess
import sys
import time

MiB = 1 << 20


def _rss_kib(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def _reset_peak():
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _inputs(n, d, v, dtype, bias, seed=0):
    import numpy as np

    rng = np.random.default_rng(seed)
    hidden = rng.standard_normal((n, d), dtype=np.float32).astype(dtype, copy=False)
    weight = rng.standard_normal((v, d), dtype=np.float32).astype(dtype, copy=False)
    weight *= 1.0 / np.sqrt(d)
    b = rng.standard_normal(v, dtype=np.float32).astype(dtype, copy=False) if bias else None
    target = rng.integers(0, v, n)
    return hidden, weight, target, b


def _method(name, threads, chunk_size, max_memory=None):
    """A callable ``f(hidden, weight, target, bias) -> (loss, grads...)`` for ``name``."""

    import numloss

    if name == "numloss":
        def run(h, w, t, b):
            return numloss.linear_cross_entropy_with_grad(h, w, t, bias=b, chunk_size=chunk_size,
                                                          max_memory=max_memory)
        return run
    if name == "numpy":
        def run(h, w, t, b):
            logits = h @ w.T
            if b is not None:
                logits += b
            loss, g = numloss.softmax_cross_entropy_with_grad(logits, t, out=logits)
            d_hidden = g @ w
            d_weight = g.T @ h
            d_bias = g.sum(axis=0) if b is not None else None
            return loss, (d_hidden, d_weight, d_bias)
        return run
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(threads)

    def run(h, w, t, b):
        th = torch.from_numpy(h).requires_grad_()
        tw = torch.from_numpy(w).requires_grad_()
        tb = torch.from_numpy(b).requires_grad_() if b is not None else None
        tt = torch.from_numpy(t)
        if name == "torch_chunked":
            loss = F.linear_cross_entropy(th, tw, tt, linear_bias=tb,
                                          options=torch.nn.LinearCrossEntropyOptions())
        elif name == "torch":
            loss = F.cross_entropy(F.linear(th, tw, tb), tt)
        else:
            raise ValueError(f"unknown method {name!r}")
        loss.backward()
        return loss.item(), (th.grad, tw.grad, tb.grad if tb is not None else None)
    return run


def child(args):
    import numba
    import numpy as np

    numba.set_num_threads(args.threads)
    run = _method(args.method, args.threads, args.chunk_size, args.max_memory)
    dtype = np.dtype(args.dtype)
    # compile (serial and parallel kernels: 256 x 300 logits is above numloss's
    # parallel threshold) and start the thread pools outside the measurement
    small = _inputs(256, 32, 300, dtype, args.bias, seed=1)
    run(*small)
    del small
    hidden, weight, target, b = _inputs(args.n, args.d, args.v, dtype, args.bias)
    out_bytes = (hidden.nbytes + weight.nbytes + (b.nbytes if b is not None else 0))
    times = []
    peaks = []
    loss = None
    for _ in range(args.repeat):
        before = _rss_kib("VmRSS")
        reset = _reset_peak()
        t0 = time.perf_counter()
        loss, grads = run(hidden, weight, target, b)
        times.append(time.perf_counter() - t0)
        peaks.append((_rss_kib("VmHWM") - before) * 1024 if reset else None)
        del grads
    print(json.dumps(dict(
        method=args.method, n=args.n, d=args.d, v=args.v, dtype=args.dtype, bias=args.bias, threads=args.threads,
        chunk_size=args.chunk_size, loss=float(loss), seconds=times, peak_bytes=peaks, output_bytes=out_bytes,
    )))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=8192)
    parser.add_argument("--d", type=int, default=2048)
    parser.add_argument("--v", type=int, default=32000)
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--bias", action="store_true")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--chunk-size", type=int, default=None, help="numloss's chunk_size (default: automatic)")
    parser.add_argument("--max-memory", default=None, help="numloss's max_memory, e.g. 128MiB")
    parser.add_argument("--repeat", type=int, default=1, help="calls per method (each measured)")
    parser.add_argument("--methods", default="numloss,numpy,torch_chunked,torch")
    parser.add_argument("--rounds", type=int, default=1,
                        help="run the methods this many times, interleaved (a fresh process each)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--method", help=argparse.SUPPRESS)  # child mode
    args = parser.parse_args(argv)
    if args.threads is None:
        import numba

        args.threads = numba.config.NUMBA_NUM_THREADS
    if args.method:
        return child(args)

    rows = {}
    for method in [m for _ in range(args.rounds) for m in args.methods.split(",")]:
        cmd = [sys.executable, os.path.abspath(__file__), "--method", method, "--n", str(args.n), "--d", str(args.d),
               "--v", str(args.v), "--dtype", args.dtype, "--threads", str(args.threads), "--repeat",
               str(args.repeat)]
        if args.bias:
            cmd.append("--bias")
        if args.chunk_size:
            cmd += ["--chunk-size", str(args.chunk_size)]
        if args.max_memory:
            cmd += ["--max-memory", args.max_memory]
        print(f"running {method} ...", file=sys.stderr, flush=True)
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            print(f"{method} failed:\n{proc.stderr[-2000:]}", file=sys.stderr)
            continue
        row = json.loads(proc.stdout.strip().splitlines()[-1])
        if method in rows:  # a later round: one more process's measurements
            rows[method]["seconds"] += row["seconds"]
            rows[method]["peak_bytes"] += row["peak_bytes"]
        else:
            rows[method] = row
    rows = list(rows.values())
    if args.json:
        json.dump(rows, sys.stdout, indent=1)
        print()
        return 0
    print(f"N={args.n} D={args.d} V={args.v} {args.dtype} bias={args.bias} threads={args.threads}; "
          f"materialised logits would be {args.n * args.v * (4 if args.dtype == 'float32' else 8) / MiB:.0f} MiB")
    print(f"{'method':<15} {'loss':>12} {'time s (each call)':>26} {'min s':>7} {'peak MiB':>10} "
          f"{'beyond outputs MiB':>19}")
    for r in rows:
        peak = max(p for p in r["peak_bytes"]) if r["peak_bytes"][0] is not None else None
        times = "/".join(f"{t:.2f}" for t in r["seconds"])
        print(f"{r['method']:<15} {r['loss']:>12.6f} {times:>26} {min(r['seconds']):>7.2f} "
              f"{peak / MiB if peak is not None else float('nan'):>10.0f} "
              f"{(peak - r['output_bytes']) / MiB if peak is not None else float('nan'):>19.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
