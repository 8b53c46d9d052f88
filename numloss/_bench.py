"""The benchmark cases and contenders of ``numloss bench`` (and of the asv suites).

A case is one public ``*_with_grad`` call on inputs of one shape and dtype
with one group of options, run with the gradient written to a preallocated
``out`` or in place (``out=logits``).  Each case also knows the bytes that
must move (logits read + gradient written, + dense targets read) so its time
can be compared with a plain streaming kernel's on the same number of bytes:
the bandwidth bound.

Contenders, each timed in a fresh process of its own (:func:`run_rounds`),
pinned to the same ``threads`` cores and told to use that many threads, at
its best: numloss; the NumPy baseline (:mod:`numloss._baseline`); PyTorch on
``torch.from_numpy`` tensors (forward + backward); JAX with the arrays
already on the device, ``jax.jit(jax.value_and_grad(...))`` of the faster of
optax's and a plain log-sum-exp / softplus form.  The processes are
interleaved over rounds (the order rotates), and each value is the minimum
over repeats within a process; the rows keep the minimum and the median over
rounds.
"""

import dataclasses
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any, Protocol, TextIO, cast

import numpy as np

from ._typing import AnyArray, Float64Array, IndexArray, LossValue

#: a case's ``(args, kwargs)``: the positional arrays (logits, target) and the keyword options of its call
Call = tuple[tuple[AnyArray, ...], dict[str, Any]]
#: a row of the report (the JSON of ``--output``): case facts and per-contender times
Row = dict[str, Any]
#: a PyTorch tensor (PyTorch is an optional peer: its module is imported where used, and passed in as a module)
Tensor = Any


class Timed(Protocol):
    """One timed call: zero arguments, the result is discarded."""

    def __call__(self) -> object: ...


# ------------------------------------------------------------------ the cases


@dataclasses.dataclass(frozen=True)
class Case:
    """One benchmark case.  ``family`` names the public function without ``_with_grad``."""

    family: str
    shape: tuple[int, ...]
    dtype: str = "float32"
    group: str = "plain"
    options: tuple[tuple[str, Any], ...] = ()  # ((name, value), ...) passed to the loss
    quick: bool = False  # part of ``numloss bench --quick``

    @property
    def label(self) -> str:
        dims = "x".join(str(d) for d in self.shape)
        return f"{self.family} {self.group} {dims} {self.dtype}"

    @property
    def kwargs(self) -> dict[str, Any]:
        return dict(self.options)


#: a family's input builder: ``builder(case, rng) -> (args, kwargs)``
Builder = Callable[[Case, np.random.Generator], Call]

#: family -> (build inputs, bytes moved per call besides logits+grad, peers)
FAMILIES: dict[str, Builder] = {}


def family(name: str) -> Callable[[Builder], Builder]:
    """Register an input builder for a family: ``builder(case, rng) -> (args, kwargs)``."""

    def register(builder: Builder) -> Builder:
        FAMILIES[name] = builder
        return builder

    return register


def np_dtype(name: str) -> np.dtype[Any]:
    """The NumPy dtype called ``name``; "bfloat16" is ``ml_dtypes.bfloat16`` (imported here, when asked for)."""
    if name == "bfloat16":
        import ml_dtypes

        return cast("np.dtype[Any]", np.dtype(ml_dtypes.bfloat16))  # ml_dtypes' bfloat16 is typed Any
    return np.dtype(name)


def is_half(name: str) -> bool:
    return name in ("float16", "bfloat16")


def _weights(c: int, rng: np.random.Generator) -> Float64Array:
    return rng.uniform(0.5, 2.0, size=c)


def _row_options(opts: dict[str, Any], n: int, rng: np.random.Generator) -> dict[str, Any]:
    """The per-row option groups: ``sample_weight`` (one weight per row, a tenth of them 0) and ``where``
    (a tenth of the rows masked), each costed against the plain kernel; and ``aux`` (the log-sum-exp out)."""
    if opts.pop("row_weights", False):
        opts["sample_weight"] = np.where(rng.random(n) < 0.1, 0.0, rng.uniform(0.5, 2.0, size=n))
    if opts.pop("row_mask", False):
        opts["where"] = rng.random(n) >= 0.1
    return opts


@family("softmax_cross_entropy")
def _build_softmax(case: Case, rng: np.random.Generator) -> Call:
    n, c = case.shape
    x = (rng.standard_normal((n, c), dtype=np.float32) * 2).astype(np_dtype(case.dtype), copy=False)
    opts = case.kwargs
    if opts.pop("prob_target", False):
        t = rng.dirichlet(np.ones(c), size=n).astype(case.dtype)
    else:
        t = rng.integers(0, c, size=n)
        if opts.get("ignore_index") is not None:
            t[::7] = opts["ignore_index"]
    if opts.pop("class_weights", False):
        opts["weight"] = _weights(c, rng)
    return (x, t), _row_options(opts, n, rng)


@family("sigmoid_cross_entropy")
def _build_sigmoid(case: Case, rng: np.random.Generator) -> Call:
    n, c = case.shape
    x = (rng.standard_normal((n, c), dtype=np.float32) * 2).astype(np_dtype(case.dtype), copy=False)
    t = (rng.random((n, c)) < 0.3).astype(x.dtype)
    opts = case.kwargs
    if opts.pop("class_weights", False):
        opts["weight"] = _weights(c, rng).astype(case.dtype)
        opts["pos_weight"] = _weights(c, rng).astype(case.dtype)
    return (x, t), _row_options(opts, n, rng)


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
            ("sample_weight", (("row_weights", True),)),
            ("where", (("row_mask", True),)),
            ("aux", (("aux", True),)),
        ]
    ]
    + [Case("softmax_cross_entropy", s, half) for half in ("bfloat16", "float16")
       for s in [(8192, 32000), (256, 128256), (4096, 1000)]]
    + [Case("sigmoid_cross_entropy", s, quick=s == (4096, 1000)) for s in SIGMOID_SHAPES]
    + [Case("sigmoid_cross_entropy", (65536, 80), half) for half in ("bfloat16", "float16")]
    + [
        Case("sigmoid_cross_entropy", (4096, 1000), group=g, options=o)
        for g, o in [("weight+pos_weight", (("class_weights", True),)), ("eps", (("eps", 1e-6),)),
                     ("sample_weight", (("row_weights", True),)), ("where", (("row_mask", True),))]
    ]
)


def make_inputs(case: Case, seed: int = 0) -> Call:
    """``(args, kwargs)`` for the case's loss; arrays are filled eagerly."""
    return FAMILIES[case.family](case, np.random.default_rng(seed))


def bytes_moved(case: Case, args: tuple[AnyArray, ...]) -> int:
    """Logits read + gradient written (+ dense targets read)."""
    x, t = args[0], args[1]
    moved = 2 * x.nbytes
    if t.shape == x.shape:
        moved += t.nbytes
    return moved


def numloss_call(case: Case, args: tuple[AnyArray, ...], kwargs: dict[str, Any], in_place: bool) -> Timed:
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


def numpy_call(case: Case, args: tuple[AnyArray, ...], kwargs: dict[str, Any]) -> Timed | None:
    from . import _baseline

    if case.group != "plain" or is_half(case.dtype):
        return None
    if case.family == "softmax_cross_entropy":
        return lambda: _baseline.softmax_ce_with_grad(*args)
    if case.family == "sigmoid_cross_entropy":
        return lambda: _baseline.sigmoid_ce_with_grad(*args)
    return None


def _torch_tensor(torch: ModuleType, a: AnyArray, dtype: str) -> Tensor:
    """``a`` as a tensor of ``dtype`` (a bfloat16 array through float32: ``from_numpy`` has no bfloat16)."""
    if dtype == "bfloat16":
        return torch.from_numpy(a.astype(np.float32)).to(torch.bfloat16)
    return torch.from_numpy(a)


def torch_call(case: Case, args: tuple[AnyArray, ...], kwargs: dict[str, Any], threads: int) -> Timed | None:
    try:
        import torch
        import torch.nn.functional as F
    except ImportError:
        return None
    if case.group not in ("plain", "weight+ignore", "label_smoothing", "weight+pos_weight", "prob_target"):
        return None
    torch.set_num_threads(threads)
    x = _torch_tensor(torch, args[0], case.dtype)
    t = _torch_tensor(torch, args[1], case.dtype) if args[1].shape == args[0].shape else torch.from_numpy(args[1])
    kw: dict[str, Any] = {k: (torch.from_numpy(np.asarray(v, dtype=args[0].dtype)) if isinstance(v, np.ndarray) else v)
                          for k, v in kwargs.items()}
    loss_fn: Callable[..., Tensor]
    if case.family == "softmax_cross_entropy":
        loss_fn = F.cross_entropy
    elif case.family == "sigmoid_cross_entropy":
        loss_fn = F.binary_cross_entropy_with_logits
    elif case.family in TORCH_PEERS:
        loss_fn = TORCH_PEERS[case.family](torch, F)
    else:
        return None

    def run() -> tuple[Tensor, Tensor]:
        xr = x.detach().requires_grad_()
        loss = loss_fn(xr, t, **kw)
        loss.backward()
        return loss, xr.grad

    return run


def jax_call(case: Case, args: tuple[AnyArray, ...], kwargs: dict[str, Any]) -> list[Timed] | None:
    try:
        import jax
        import jax.numpy as jnp
    except ImportError:
        return None
    if case.group != "plain":
        return None
    # (cast: a run-time flag, with no entry in jax's stubs)
    if case.dtype == "float64" and not cast(Any, jax.config).jax_enable_x64:
        return None
    x = jax.device_put(args[0])
    t = jax.device_put(args[1])
    forms: list[Callable[[jax.Array, jax.Array], jax.Array]] = []
    if case.family == "softmax_cross_entropy":
        def plain(x: jax.Array, t: jax.Array) -> jax.Array:
            lse = jax.nn.logsumexp(x, axis=-1)
            return jnp.mean(lse - jnp.take_along_axis(x, t[:, None], axis=-1)[:, 0])
        forms.append(plain)
        try:
            import optax

            forms.append(lambda x, t: optax.softmax_cross_entropy_with_integer_labels(x, t).mean())
        except ImportError:
            pass
    elif case.family == "sigmoid_cross_entropy":
        def plain(x: jax.Array, t: jax.Array) -> jax.Array:
            return jnp.mean(jax.nn.softplus(x) - t * x)
        forms.append(plain)
        try:
            import optax

            forms.append(lambda x, t: optax.sigmoid_binary_cross_entropy(x, t).mean())
        except ImportError:
            pass
    else:
        return None
    calls: list[Timed] = []
    for f in forms:
        vg = jax.jit(jax.value_and_grad(f))
        calls.append(lambda vg=vg: jax.block_until_ready(vg(x, t)))
    return calls


# ------------------------------------------------------------------ timing


def best_time(fn: Timed, repeat: int = 7, progress: Callable[[str], object] | None = None,
              progress_after: float = 1.0) -> float:
    """Minimum wall time of one call over ``repeat`` rounds (after a warm-up call; a call over a second ends
    the rounds).  ``progress(text)``, if given, hears of every call longer than ``progress_after`` seconds,
    so a row that takes minutes shows where it is."""
    t0 = time.perf_counter()
    fn()
    elapsed = time.perf_counter() - t0
    if progress is not None and elapsed > progress_after:
        progress(f"warm-up call {elapsed:.2f} s")
    best = np.inf
    for k in range(repeat):
        t0 = time.perf_counter()
        fn()
        elapsed = time.perf_counter() - t0
        best = min(best, elapsed)
        if progress is not None and elapsed > progress_after:
            progress(f"call {k + 1}: {elapsed:.2f} s")
        if elapsed > 1.0:
            break
    return best


def streaming_bandwidth(nbytes: int, repeat: int = 7) -> float:
    """Bytes/s of a Numba ``prange`` loop ``b[i] = 1.5 * a[i]`` over ``nbytes / 2`` per array."""
    from ._kernels.stream import scale_copy

    n = max(1, nbytes // 2 // 4)
    a = np.ones(n, dtype=np.float32)
    b = np.ones(n, dtype=np.float32)
    t = best_time(lambda: scale_copy(a, b), repeat=repeat)
    return 2 * a.nbytes / t


# ==================================================================== linear_cross_entropy
# (issue 5) Fused linear + softmax CE has another call shape than the logits
# cases above -- (hidden, weight, target), three gradients, no out= -- so it has
# its own cases, builder and measure_linear(); `numloss bench` runs these after
# the others and prints them in their own table.  Peak memory is measured
# per process by benchmarks/linear_ce_memory.py.


@dataclasses.dataclass(frozen=True)
class LinearCase:
    """One linear_cross_entropy case: ``shape = (N, D, V)``."""

    shape: tuple[int, ...]
    dtype: str = "float32"
    bias: bool = False
    quick: bool = False
    family: str = "linear_cross_entropy"

    @property
    def label(self) -> str:
        dims = "x".join(str(d) for d in self.shape)
        return f"{self.family} {'bias' if self.bias else 'plain'} {dims} {self.dtype}"


#: a :class:`LinearCase`'s ``(hidden, weight, target, bias or None)``
LinearInputs = tuple[AnyArray, AnyArray, IndexArray, AnyArray | None]

LINEAR_CASES = [
    LinearCase((1024, 256, 8000), quick=True),
    LinearCase((1024, 256, 8000), "float64", bias=True),
    LinearCase((2048, 1024, 32000)),
    LinearCase((2048, 1024, 32000), "bfloat16"),
]


def make_linear_inputs(case: LinearCase, seed: int = 0) -> LinearInputs:
    """``(hidden, weight, target, bias)`` for a :class:`LinearCase`, filled eagerly."""
    n, d, v = case.shape
    rng = np.random.default_rng(seed)
    dtype = np_dtype(case.dtype)
    hidden = rng.standard_normal((n, d), dtype=np.float32).astype(dtype, copy=False)
    weight = (rng.standard_normal((v, d), dtype=np.float32) / np.float32(np.sqrt(d))).astype(dtype, copy=False)
    bias = rng.standard_normal(v, dtype=np.float32).astype(dtype, copy=False) if case.bias else None
    target = rng.integers(0, v, n)
    return hidden, weight, target, bias


def linear_calls(case: LinearCase, inputs: LinearInputs, threads: int, peers: bool = True,
                 methods: Sequence[str] = ("numloss", "numpy", "torch", "torch_chunked")) -> dict[str, Timed]:
    """``{name: zero-argument callable}``: numloss, the materialising NumPy path, PyTorch (both forms)."""
    import numloss

    hidden, weight, target, bias = inputs
    calls: dict[str, Timed] = {
        "numloss": lambda: numloss.linear_cross_entropy_with_grad(hidden, weight, target, bias=bias)}
    if not peers:
        return calls

    def materialising() -> tuple[LossValue, tuple[AnyArray, AnyArray, AnyArray | None]]:
        logits = hidden @ weight.T
        if bias is not None:
            logits += bias
        loss, g = numloss.softmax_cross_entropy_with_grad(logits, target, out=logits)
        return loss, (g @ weight, g.T @ hidden, g.sum(axis=0) if bias is not None else None)

    if not is_half(case.dtype):  # (NumPy has no bfloat16 matmul)
        calls["numpy"] = materialising
    if not {"torch", "torch_chunked"} & set(methods):
        return calls
    try:
        import torch
        import torch.nn.functional as F
    except ImportError:
        return calls
    torch.set_num_threads(threads)
    th, tw = _torch_tensor(torch, hidden, case.dtype), _torch_tensor(torch, weight, case.dtype)
    tt = torch.from_numpy(target)
    tb = _torch_tensor(torch, bias, case.dtype) if bias is not None else None

    def torch_run(chunked: bool) -> tuple[Tensor, Tensor, Tensor]:
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


def print_linear_table(rows: list[Row], file: TextIO) -> None:
    """The linear_cross_entropy rows: ms per forward+backward, GFLOP/s of numloss, x = peer time / ours."""
    if not rows:
        return
    head = (f"{'case':<52} {'ms':>9} {'GFLOP/s':>8} {'numpy':>9} {'torch':>9} {'torch chunked':>13} "
            f"{'x np':>5} {'x torch':>7} {'x chunked':>9}")
    print(file=file)
    print(head, file=file)
    print("-" * len(head), file=file)

    def f(v: object, spec: str) -> str:
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
def _build_sigmoid_focal(case: Case, rng: np.random.Generator) -> Call:
    n, c = case.shape
    x = rng.standard_normal((n, c), dtype=np.float32).astype(case.dtype, copy=False) * 2
    t = (rng.random((n, c)) < 0.05).astype(case.dtype)  # sparse positives, as in detection
    return (x, t), case.kwargs


@family("softmax_focal_loss")
def _build_softmax_focal(case: Case, rng: np.random.Generator) -> Call:
    n, c = case.shape
    x = rng.standard_normal((n, c), dtype=np.float32).astype(case.dtype, copy=False) * 2
    return (x, rng.integers(0, c, size=n)), case.kwargs


def _build_cosines(case: Case, rng: np.random.Generator) -> Call:
    n, c = case.shape
    cos = rng.uniform(-0.3, 0.9, size=(n, c)).astype(case.dtype)
    return (cos, rng.integers(0, c, size=n)), case.kwargs


family("cosface_cross_entropy")(_build_cosines)
family("arcface_cross_entropy")(_build_cosines)


def _torch_sigmoid_focal(torch: ModuleType, F: ModuleType) -> Callable[..., Tensor]:
    def loss(x: Tensor, t: Tensor, alpha: float | None = 0.25,
             gamma: float = 2.0) -> Tensor:  # torchvision.ops.sigmoid_focal_loss(..., reduction="mean")
        p = torch.sigmoid(x)
        ce = F.binary_cross_entropy_with_logits(x, t, reduction="none")
        p_t = p * t + (1 - p) * (1 - t)
        out = ce * ((1 - p_t) ** gamma)
        if alpha is not None and alpha >= 0:
            out = (alpha * t + (1 - alpha) * (1 - t)) * out
        return out.mean()

    return loss


def _torch_softmax_focal(torch: ModuleType, F: ModuleType) -> Callable[..., Tensor]:
    def loss(x: Tensor, t: Tensor, gamma: float = 2.0) -> Tensor:
        logp_y = F.log_softmax(x, dim=-1).gather(1, t[:, None])[:, 0]
        return (-((1 - logp_y.exp()) ** gamma) * logp_y).mean()

    return loss


def _torch_cosface(torch: ModuleType, F: ModuleType) -> Callable[..., Tensor]:
    def loss(cos: Tensor, t: Tensor, scale: float = 30.0, margin: float = 0.35, **kw: Any) -> Tensor:
        onehot = F.one_hot(t, cos.shape[-1]).to(cos.dtype)
        return F.cross_entropy(scale * (cos - margin * onehot), t, **kw)

    return loss


def _torch_arcface(torch: ModuleType, F: ModuleType) -> Callable[..., Tensor]:
    import math

    def loss(cos: Tensor, t: Tensor, scale: float = 64.0, margin: float = 0.5,
             **kw: Any) -> Tensor:  # insightface's ArcFace margin with the exact gradient
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


# ==================================================================== one process per contender


#: every contender, in the order of the table's columns
CONTENDERS = ("numloss", "numpy", "torch", "jax")


def installed_contenders() -> tuple[str, ...]:
    """The contenders whose packages import here (numloss and NumPy always)."""
    import importlib.util

    return tuple(c for c in CONTENDERS if c in ("numloss", "numpy") or importlib.util.find_spec(c) is not None)


def thread_env(threads: int) -> dict[str, str]:
    """Environment for a contender's process: every thread pool sized to ``threads`` before anything starts."""
    env = dict(os.environ)
    for var in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                "BLIS_NUM_THREADS"):
        env[var] = str(threads)
    flags = env.get("XLA_FLAGS", "")
    if threads == 1:  # XLA's CPU client has no thread-count flag beyond this one; >1 is bounded by the pinning
        flags += " --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
    env["XLA_FLAGS"] = flags.strip()
    return env


def pin_to_cores(threads: int) -> list[int]:
    """Restrict this process to its first ``threads`` allowed cores; returns the cores."""
    cores = sorted(os.sched_getaffinity(0))[:threads]
    os.sched_setaffinity(0, cores)
    return cores


def _logits_times(contender: str, case: Case, threads: int, repeat: int) -> dict[str, float]:
    """``{key: seconds}`` for one logits case with one contender (empty if it has no such call)."""
    args, kwargs = make_inputs(case)
    if contender == "numloss":
        moved = bytes_moved(case, args)
        times = {"bound": moved / streaming_bandwidth(moved, repeat=repeat), "bytes": moved}
        for key, in_place in (("out", False), ("inplace", True)):
            times[key] = best_time(numloss_call(case, args, kwargs, in_place), repeat=repeat)
        return times
    if contender == "numpy":
        fn = numpy_call(case, args, kwargs)
        return {"numpy": best_time(fn, repeat=min(repeat, 3), progress=_progress("numpy"))} if fn else {}
    if contender == "torch":
        fn = torch_call(case, args, kwargs, threads)
        return {"torch": best_time(fn, repeat=repeat, progress=_progress("torch"))} if fn else {}
    fns = jax_call(case, args, kwargs)
    return {"jax": min(best_time(f, repeat=repeat, progress=_progress("jax")) for f in fns)} if fns else {}


def _progress(name: str) -> Callable[[str], None]:
    """A ``best_time`` progress callback: one indented line on stderr (the worker's stderr is the terminal)."""
    return lambda text: print(f"      {name}: {text}", file=sys.stderr, flush=True)


def _linear_times(contender: str, case: LinearCase, threads: int, repeat: int) -> dict[str, float]:
    names = {"numloss": ("numloss",), "numpy": ("numpy",), "torch": ("torch", "torch_chunked")}.get(contender, ())
    if not names:
        return {}
    calls = linear_calls(case, make_linear_inputs(case), threads, peers=contender != "numloss", methods=names)
    return {name: best_time(calls[name], repeat=min(repeat, 3), progress=_progress(name))
            for name in names if name in calls}


def contender_threads(contender: str) -> dict[str, object]:
    """What the contender's own thread pool reports in this process (after :func:`thread_env`)."""
    if contender == "numloss":
        import numba

        from . import _parallel

        return {"numba_threads": numba.get_num_threads(), "threading_layer": _parallel.threading_layer()}
    if contender == "torch":
        import torch

        return {"torch_threads": torch.get_num_threads(), "torch": torch.__version__}
    if contender == "jax":
        import jax

        return {"jax": jax.__version__, "jax_threads": "pinned cores (XLA has no thread-count setting)"}
    try:
        import threadpoolctl

        return {"blas_threads": [p["num_threads"] for p in threadpoolctl.threadpool_info()]}
    except ImportError:
        return {"blas_threads": "OPENBLAS_NUM_THREADS/OMP_NUM_THREADS"}


def worker_main(argv: Sequence[str]) -> int:
    """``python -m numloss._bench CONTENDER THREADS REPEAT LABEL...``: one JSON object on stdout."""
    contender, threads, repeat, labels = argv[0], int(argv[1]), int(argv[2]), argv[3:]
    cores = pin_to_cores(threads)
    if contender == "numloss":
        import numba

        from . import _parallel

        _parallel.threading_layer()  # preload TBB before the pool starts
        numba.set_num_threads(threads)
    elif contender == "jax":
        import jax

        # float64 cases in float64 (float32 arrays stay float32)
        jax.config.update("jax_enable_x64", True)
    by_label: dict[str, Case | LinearCase] = {c.label: c for c in CASES}
    by_label.update({c.label: c for c in LINEAR_CASES})
    result: dict[str, Any] = {"contender": contender, "cores": cores, "times": {}}
    for label in labels:
        case = by_label[label]
        print(f"    {contender}: {label} ...", file=sys.stderr, flush=True)
        if isinstance(case, LinearCase):
            times = _linear_times(contender, case, threads, repeat)
        else:
            times = _logits_times(contender, case, threads, repeat)
        result["times"][label] = times
    result["threads"] = contender_threads(contender)
    json.dump(result, sys.stdout)
    return 0


def _run_worker(contender: str, labels: Sequence[str], threads: int, repeat: int) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, "-m", "numloss._bench", contender, str(threads), str(repeat), *labels],
                          env=thread_env(threads), stdout=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"the {contender} benchmark process failed (exit status {proc.returncode})")
    return cast("dict[str, Any]", json.loads(proc.stdout))  # worker_main's JSON object


def environment(threads: int, worker_threads: dict[str, Any]) -> dict[str, Any]:
    """The facts two bench runs must share to be compared: versions, CPU, threads."""
    import numba

    import numloss

    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {"date": time.strftime("%Y-%m-%d %H:%M"), "numloss": numloss.__version__, "numpy": np.__version__,
            "numba": numba.__version__, "python": platform.python_version(), "cpu": cpu,
            "cores_available": len(os.sched_getaffinity(0)), "threads": threads, "contenders": worker_threads}


#: the time columns --compare reads from a report's rows (ms; lower is better)
TIME_KEYS = ("out_ms", "inplace_ms", "numloss_ms", "bound_ms", "numpy_ms", "torch_ms", "torch_chunked_ms", "jax_ms")


def compare_reports(old: dict[str, Any], new: dict[str, Any], threshold: float = 0.10) -> str:
    """A table of ``NEW / OLD`` per case and time column of two ``numloss bench --output`` reports.

    Rows are matched by case label; a ratio beyond ``1 +- threshold`` is
    flagged (``slower`` / ``faster``).  The environments' differences (CPU,
    versions, threads) are listed first: a ratio across machines says little.
    """
    lines = []
    env_old, env_new = old.get("environment", {}), new.get("environment", {})
    for key in ("cpu", "numloss", "numpy", "numba", "python", "threads"):
        if env_old.get(key) != env_new.get(key):
            lines.append(f"environment differs: {key} {env_old.get(key)!r} -> {env_new.get(key)!r}")
    old_rows = {r["case"]: r for r in old.get("rows", []) + old.get("linear_rows", [])}
    head = f"{'case':<56} {'time':<17} {'old ms':>10} {'new ms':>10} {'new/old':>8}"
    lines += [head, "-" * len(head)]
    flagged = 0
    for row in new.get("rows", []) + new.get("linear_rows", []):
        before = old_rows.get(row["case"])
        if before is None:
            lines.append(f"{row['case']:<56} (not in OLD)")
            continue
        for key in TIME_KEYS:
            a, b = before.get(key), row.get(key)
            if not a or not b:
                continue
            ratio = b / a
            flag = "  slower" if ratio > 1 + threshold else "  faster" if ratio < 1 - threshold else ""
            flagged += bool(flag)
            lines.append(f"{row['case']:<56} {key[:-3]:<17} {a:>10.2f} {b:>10.2f} {ratio:>8.2f}{flag}")
    lines.append(f"{flagged} change(s) beyond {threshold:.0%}")
    return "\n".join(lines)


def format_environment(env: dict[str, Any]) -> str:
    """Two lines for the top of the table."""
    peers = "; ".join(f"{name}: " + ", ".join(f"{k} {v}" for k, v in info.items())
                      for name, info in env["contenders"].items())
    return (f"{env['date']}  numloss {env['numloss']}, NumPy {env['numpy']}, Numba {env['numba']}, "
            f"Python {env['python']}; {env['cpu']} ({env['cores_available']} cores available), "
            f"{env['threads']} thread(s) per contender\n{peers}")


def run_rounds(cases: Sequence[Case], linear_cases: Sequence[LinearCase], threads: int, rounds: int = 3,
               repeat: int = 7, contenders: tuple[str, ...] | None = None, progress: TextIO | None = None
               ) -> tuple[list[Row], list[Row], dict[str, Any]]:
    """Time every case with every contender, each contender in a fresh process per round.

    Returns ``(rows, linear_rows, environment)``.  The contenders' order
    rotates from round to round; each row holds, per contender, the minimum
    and the median over the rounds of the per-process minimum.
    """
    contenders = installed_contenders() if contenders is None else contenders
    labels = [c.label for c in cases] + [c.label for c in linear_cases]
    samples: dict[str, dict[str, Any]] = {label: {} for label in labels}  # label -> {"bytes": n, key: [ms, ...]}
    worker_threads: dict[str, Any] = {}
    for r in range(rounds):
        order = contenders[r % len(contenders):] + contenders[:r % len(contenders)]
        for contender in order:
            if progress is not None:
                print(f"round {r + 1}/{rounds}: {contender} (own process, {threads} thread(s))", file=progress,
                      flush=True)
            result = _run_worker(contender, labels, threads, repeat)
            worker_threads[contender] = result["threads"]
            for label, times in result["times"].items():
                for key, t in times.items():
                    if key == "bytes":
                        samples[label]["bytes"] = t
                    else:
                        samples[label].setdefault(key, []).append(t * 1e3)
    rows: list[Row] = []
    case: Case | LinearCase  # a Case in the first loop, a LinearCase in the second
    for case in cases:
        got = dict(samples[case.label])
        row: Row = dict(case=case.label, family=case.family, group=case.group, shape=list(case.shape),
                        dtype=case.dtype, threads=threads, rounds=rounds, bytes=got.pop("bytes"))
        for key, values in got.items():
            row[f"{key}_ms"] = min(values)
            row[f"{key}_ms_median"] = statistics.median(values)
        for key in ("out", "inplace"):
            row[f"{key}_GBps"] = row["bytes"] / row[f"{key}_ms"] / 1e6
            row[f"{key}_pct_bound"] = 100 * row["bound_ms"] / row[f"{key}_ms"]
        row["stream_GBps"] = row["bytes"] / row["bound_ms"] / 1e6
        best = min(row["out_ms"], row["inplace_ms"])
        for peer in ("numpy", "torch", "jax"):
            row[f"x_{peer}"] = row[f"{peer}_ms"] / best if f"{peer}_ms" in row else None
            row.setdefault(f"{peer}_ms", None)
        rows.append(row)
    linear_rows: list[Row] = []
    for case in linear_cases:
        n, d, v = case.shape
        row = dict(case=case.label, family=case.family, shape=list(case.shape), dtype=case.dtype, threads=threads,
                   rounds=rounds, gflop=3 * 2 * n * d * v / 1e9)
        for key, values in samples[case.label].items():
            row[f"{key}_ms"] = min(values)
            row[f"{key}_ms_median"] = statistics.median(values)
        for name in ("numpy", "torch", "torch_chunked"):
            if f"{name}_ms" in row:
                row[f"x_{name}"] = row[f"{name}_ms"] / row["numloss_ms"]
        linear_rows.append(row)
    return rows, linear_rows, environment(threads, worker_threads)


# ==================================================================== a training loop's three thread pools


def interop_times(threads: int, iterations: int = 60) -> dict[str, float]:
    """One process, the pattern of a training step: a NumPy matmul (OpenBLAS's pool), a PyTorch
    cross-entropy forward + backward (its OpenMP pool) and a numloss call (Numba's TBB pool).

    Returns the median per-call ms of each op: alone (``*_alone``), in the
    loop of the two others (``*_without_numloss``), and in the loop of all
    three (``*_with_numloss``), after a warm-up pass of each.
    """
    import numba
    import torch
    import torch.nn.functional as F

    import numloss

    numba.set_num_threads(threads)
    torch.set_num_threads(threads)
    rng = np.random.default_rng(0)
    a = rng.standard_normal((768, 768), dtype=np.float32)
    b = rng.standard_normal((768, 768), dtype=np.float32)
    x = rng.standard_normal((4096, 1000), dtype=np.float32) * 2
    y = rng.integers(0, 1000, 4096)
    g = np.empty_like(x)
    tx, ty = torch.from_numpy(x.copy()), torch.from_numpy(y)

    def torch_op() -> None:
        xr = tx.detach().requires_grad_()
        F.cross_entropy(xr, ty).backward()

    ops: dict[str, Timed] = {"matmul": lambda: a @ b, "torch": torch_op,
                             "numloss": lambda: numloss.softmax_cross_entropy_with_grad(x, y, out=g)}

    def loop(names: list[str]) -> dict[str, float]:
        times: dict[str, list[float]] = {name: [] for name in names}
        for _ in range(iterations):
            for name in names:
                t0 = time.perf_counter()
                ops[name]()
                times[name].append(time.perf_counter() - t0)
        return {name: statistics.median(v) * 1e3 for name, v in times.items()}

    for fn in ops.values():
        fn()
    result: dict[str, float] = {}
    for name in ops:
        result[f"{name}_alone"] = loop([name])[name]
    for name, ms in loop(["matmul", "torch"]).items():
        result[f"{name}_without_numloss"] = ms
    for name, ms in loop(["matmul", "torch", "numloss"]).items():
        result[f"{name}_with_numloss"] = ms
    return result


def interop_main(argv: Sequence[str]) -> int:
    """``python -m numloss._bench interop THREADS``: pinned like a contender; one JSON object on stdout."""
    threads = int(argv[0])
    pin_to_cores(threads)
    from . import _parallel

    _parallel.threading_layer()
    json.dump(interop_times(threads), sys.stdout)
    return 0


def run_interop(threads: int, rounds: int = 3, env: dict[str, str] | None = None) -> dict[str, float]:
    """:func:`interop_times` in ``rounds`` fresh processes: the minimum over processes of each median,
    and the three ratios (matmul and PyTorch with numloss / without; numloss in the loop / alone)."""
    samples: dict[str, list[float]] = {}
    for _ in range(rounds):
        proc = subprocess.run([sys.executable, "-m", "numloss._bench", "interop", str(threads)],
                              env=env or thread_env(threads), stdout=subprocess.PIPE, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"the interop benchmark process failed (exit status {proc.returncode})")
        for key, ms in json.loads(proc.stdout).items():
            samples.setdefault(key, []).append(ms)
    row = {key: min(v) for key, v in samples.items()}
    row["x_matmul"] = row["matmul_with_numloss"] / row["matmul_without_numloss"]
    row["x_torch"] = row["torch_with_numloss"] / row["torch_without_numloss"]
    row["x_numloss"] = row["numloss_with_numloss"] / row["numloss_alone"]
    return row


def print_interop(row: dict[str, float], setting: str, file: TextIO) -> None:
    """The training-loop row: each op's median ms alone, in the loop without numloss, and with it."""
    print(file=file)
    print(f"training-loop pattern, one process, {setting} (768x768 float32 matmul; PyTorch and numloss "
          "softmax CE 4096x1000 float32, forward + backward); median ms per call", file=file)
    head = f"{'op':<10} {'alone':>8} {'loop without numloss':>21} {'loop with numloss':>18} {'ratio':>6}"
    print(head, file=file)
    print("-" * len(head), file=file)
    for op, ratio in (("matmul", "x_matmul"), ("torch", "x_torch"), ("numloss", "x_numloss")):
        without: float | str | None = row.get(f"{op}_without_numloss")
        without = f"{without:.2f}" if without is not None else "-"
        print(f"{op:<10} {row[op + '_alone']:>8.2f} {without:>21} {row[op + '_with_numloss']:>18.2f} "
              f"{row[ratio]:>6.2f}", file=file)
    print("ratio: with numloss / without (matmul, torch); in the loop / alone (numloss)", file=file)


if __name__ == "__main__":
    if sys.argv[1:2] == ["interop"]:
        sys.exit(interop_main(sys.argv[2:]))
    sys.exit(worker_main(sys.argv[1:]))


# ==================================================================== --plot


def plot_report(report: dict[str, Any], path: str | os.PathLike[str]) -> str | os.PathLike[str]:
    """Draw a bench report (the ``--output`` JSON's dict) to ``path``: per case, each contender's time and the
    streaming bound, on a log scale (matplotlib, the ``plot`` extra; imported here only)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [dict(r, numloss_ms=min(r["out_ms"], r["inplace_ms"])) for r in report.get("rows", [])]
    rows += list(report.get("linear_rows", []))
    if not rows:
        raise ValueError("the report has no rows to plot")
    series = [("numloss", "numloss_ms", "o", "C0"), ("NumPy", "numpy_ms", "s", "C7"),
              ("PyTorch", "torch_ms", "D", "C3"), ("PyTorch chunked", "torch_chunked_ms", "d", "C1"),
              ("JAX", "jax_ms", "^", "C2"), ("streaming bound", "bound_ms", "|", "k")]
    fig, ax = plt.subplots(figsize=(12, 0.32 * len(rows) + 1.6))
    ys = range(len(rows))[::-1]
    for name, key, marker, color in series:
        points = [(r[key], y) for r, y in zip(rows, ys, strict=True) if r.get(key)]
        if points:
            ax.scatter([p[0] for p in points], [p[1] for p in points], marker=marker, color=color, label=name,
                       s=60 if marker == "|" else 28, zorder=3)
    ax.set_yticks(list(ys))
    ax.set_yticklabels([r["case"] for r in rows], fontsize=7)
    ax.set_xscale("log")
    ax.set_xlabel("ms per forward + backward (log scale; lower is better)")
    env = report.get("environment", {})
    ax.set_title(f"numloss bench {env.get('date', '')} {env.get('cpu', '')}, {env.get('threads', '')} thread(s)",
                 fontsize=9)
    ax.grid(axis="x", which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # outside: no row hidden
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
