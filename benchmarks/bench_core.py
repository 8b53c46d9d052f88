"""asv suites for every loss of the registry (``numloss._registry``) but the fused linear CE.

The cases are ``numloss._bench``'s (the same definitions as ``numloss
bench``).  ``setup`` builds the inputs eagerly, sets the thread count and
makes one warm-up call so that compilation is never timed.  ``time_*`` is
one ``*_with_grad`` call, ``peakmem_*`` its peak memory, ``track_*`` derived
figures: % of the streaming-bandwidth bound and effective GB/s.
"""

import numba
import numpy as np

from numloss import _bench, _parallel, _registry

THREADS = sorted({1, numba.config.NUMBA_NUM_THREADS})


def _case(family, shape, dtype, group="plain"):
    for case in _bench.CASES:
        dims = "x".join(str(d) for d in case.shape)
        if case.family == family and dims == shape and case.dtype == dtype and case.group == group:
            return case
    return _bench.Case(family, tuple(int(d) for d in shape.split("x")), dtype, group)


class _Suite:
    family = None
    group = "plain"
    param_names = ("shape", "dtype", "threads", "where")

    def setup(self, shape, dtype, threads, where):
        _parallel.threading_layer()
        numba.set_num_threads(threads)
        self.case = _case(self.family, shape, dtype, self.group)
        args, kwargs = _bench.make_inputs(self.case)
        self.bytes = _bench.bytes_moved(self.case, args)
        self.call = _bench.numloss_call(self.case, args, kwargs, where == "inplace")
        self.call()

    def time_with_grad(self, shape, dtype, threads, where):
        self.call()

    def peakmem_with_grad(self, shape, dtype, threads, where):
        self.call()

    def track_pct_of_bound(self, shape, dtype, threads, where):
        bound = self.bytes / _bench.streaming_bandwidth(self.bytes, repeat=5)
        return 100.0 * bound / _bench.best_time(self.call, repeat=5)

    track_pct_of_bound.unit = "%"

    def track_effective_GBps(self, shape, dtype, threads, where):
        return self.bytes / _bench.best_time(self.call, repeat=5) / 1e9

    track_effective_GBps.unit = "GB/s"


#: shapes per loss; a loss of the registry not named here runs at 4096x1000
SHAPES = {
    "softmax_cross_entropy": ["4096x1000", "8192x32000", "256x128256", "65536x10"],
    "sigmoid_cross_entropy": ["65536x80", "4096x1000"],
    "sigmoid_focal_loss": ["4096x1000", "65536x80"],
}


#: dtypes per loss beyond float32 and float64: the half-precision rows (bfloat16 needs ml_dtypes)
DTYPES = {
    "softmax_cross_entropy": ("float32", "float64", "bfloat16", "float16"),
    "sigmoid_cross_entropy": ("float32", "float64", "bfloat16", "float16"),
}


def _suite_name(loss_name):
    return "".join(word.capitalize() for word in loss_name.split("_"))


# One suite per loss of the registry with an ``out=`` (the fused linear CE has its own, bench_linear.py):
# SoftmaxCrossEntropy, SigmoidCrossEntropy, SigmoidFocalLoss, SoftmaxFocalLoss, CosfaceCrossEntropy, ...
for _loss in _registry.LOSSES:
    if _loss.input == "hidden":
        continue
    globals()[_suite_name(_loss.name)] = type(_suite_name(_loss.name), (_Suite,), {
        "family": _loss.name,
        "params": (SHAPES.get(_loss.name, ["4096x1000"]), list(DTYPES.get(_loss.name, ("float32", "float64"))),
                   THREADS, ["out", "inplace"]),
        "timeout": 300,
        "__doc__": f"numloss.{_loss.with_grad}: one call per shape, dtype, thread count and out form.",
    })


class _OptionGroups(_Suite):
    """Option groups at 4096x1000 float32 (compare with the loss's plain suite)."""

    params = (["4096x1000"], ["float32"], THREADS, ["out", "inplace"])
    param_names = _Suite.param_names + ("group",)

    def setup(self, shape, dtype, threads, where, group):
        self.group = group
        super().setup(shape, dtype, threads, where)

    def time_with_grad(self, shape, dtype, threads, where, group):
        self.call()

    def peakmem_with_grad(self, shape, dtype, threads, where, group):
        self.call()

    def track_pct_of_bound(self, shape, dtype, threads, where, group):
        return super().track_pct_of_bound(shape, dtype, threads, where)

    track_pct_of_bound.unit = "%"

    def track_effective_GBps(self, shape, dtype, threads, where, group):
        return super().track_effective_GBps(shape, dtype, threads, where)

    track_effective_GBps.unit = "GB/s"


def _groups(family):
    """The option groups ``numloss bench`` times for ``family`` at 4096x1000 float32."""
    return [c.group for c in _bench.CASES
            if c.family == family and c.shape == (4096, 1000) and c.dtype == "float32" and c.group != "plain"]


class SoftmaxCrossEntropyOptions(_OptionGroups):
    """weight + ignore_index, label smoothing, z-loss, softcap, eps, probability targets, sample_weight, where,
    aux."""

    family = "softmax_cross_entropy"
    params = _OptionGroups.params + (_groups(family),)


class SigmoidCrossEntropyOptions(_OptionGroups):
    family = "sigmoid_cross_entropy"
    params = _OptionGroups.params + (_groups(family),)


class SigmoidFocalLossOptions(_OptionGroups):
    """A gamma other than 0, 1, 2: a libm ``pow`` per element."""

    family = "sigmoid_focal_loss"
    params = _OptionGroups.params + (_groups(family),)


class ArcFaceOptions(_OptionGroups):
    family = "arcface_cross_entropy"
    params = _OptionGroups.params + (_groups(family),)


class SmallCallOverhead:
    """Validation + dispatch at 256x10 (the issue's per-call overhead budget is 15 us)."""

    params = (["softmax_cross_entropy", "sigmoid_cross_entropy"],)
    param_names = ("family",)

    def setup(self, family):
        import numloss

        rng = np.random.default_rng(0)
        self.x = rng.standard_normal((256, 10)).astype(np.float32)
        self.t = rng.integers(0, 10, 256) if family.startswith("softmax") else (self.x > 0).astype(np.float32)
        self.out = np.empty_like(self.x)
        self.fn = getattr(numloss, family + "_with_grad")
        self.fn(self.x, self.t, out=self.out)

    def time_small_call(self, family):
        self.fn(self.x, self.t, out=self.out)


class WideLogits:
    """4096x1000 float32 with the gradient, logits of standard deviation 2 and 20 (cosines in +-0.3 and
    +-1 for ArcFace): with the wide ones many gradient terms would be subnormal, which the kernels
    flush to 0 instead of forming (x86 computes a subnormal result in microcode; 4-10x slower before)."""

    params = (["softmax_cross_entropy", "sigmoid_cross_entropy", "softmax_focal_loss", "arcface_cross_entropy"],
              ["narrow", "wide"])
    param_names = ("family", "spread")

    def setup(self, family, spread):
        import numloss

        rng = np.random.default_rng(0)
        N, C = 4096, 1000
        if family == "arcface_cross_entropy":
            half_width = 0.3 if spread == "narrow" else 1.0
            self.x = rng.uniform(-half_width, half_width, (N, C)).astype(np.float32)
        else:
            self.x = (rng.standard_normal((N, C)) * (2.0 if spread == "narrow" else 20.0)).astype(np.float32)
        if family.startswith("sigmoid"):
            self.t = (rng.random((N, C)) < 0.01).astype(np.float32)
        else:
            self.t = rng.integers(0, C, N)
        self.out = np.empty_like(self.x)
        self.fn = getattr(numloss, family + "_with_grad")
        self.fn(self.x, self.t, out=self.out)

    def time_with_grad(self, family, spread):
        self.fn(self.x, self.t, out=self.out)


class ColdStart:
    """A fresh process: ``import numloss`` and the first call with a warm disk cache."""

    def timeraw_import_numloss(self):
        return "import numloss", "import numba"

    def timeraw_first_call_warm_cache(self):
        return (
            "numloss.softmax_cross_entropy_with_grad(x, y)",
            "import numpy as np, numloss; x = np.zeros((64, 10), np.float32); y = np.zeros(64, np.int64); "
            "import subprocess, sys",
        )


class ColdCompile:
    """Compile time from an empty Numba cache, tracked like run time (a fresh process each).

    ``timeraw_`` runs the returned code in a new interpreter; the cache is a
    new temporary directory, so every kernel of the chosen route compiles.
    """

    timeout = 600
    params = (["softmax_cross_entropy", "sigmoid_cross_entropy"],)
    param_names = ("loss",)

    def timeraw_warmup_one_loss_float32(self, loss):
        return (
            f"numloss.warmup([{loss!r}], ['float32'], jobs=1)",
            "import os, tempfile; os.environ['NUMBA_CACHE_DIR'] = tempfile.mkdtemp(); import numloss",
        )
