"""asv suites for the focal and margin losses (sigmoid/softmax focal, CosFace, ArcFace).

Each case is a ``numloss._bench.Case`` (the same definitions as ``numloss
bench``): inputs built eagerly by ``make_inputs``, the gradient written to a
preallocated ``out`` or in place (``out=logits``), one warm-up call in
``setup`` so compilation is never timed.  ``track_overhead_vs_cross_entropy``
is the time of the loss over that of the plain cross-entropy it extends
(softmax or sigmoid) on the same shape and dtype.
"""

import time

import numba
import numpy as np

import numloss
from numloss import _bench

#: family -> the plain cross-entropy family it is compared with
BASE = {
    "sigmoid_focal_loss": "sigmoid_cross_entropy",
    "softmax_focal_loss": "softmax_cross_entropy",
    "cosface_cross_entropy": "softmax_cross_entropy",
    "arcface_cross_entropy": "softmax_cross_entropy",
}


def _call(family, shape, dtype, where, options=()):
    case = _bench.Case(family, tuple(int(d) for d in shape.split("x")), dtype, options=options)
    args, kwargs = _bench.make_inputs(case)
    fn = getattr(numloss, family + "_with_grad")
    if where == "inplace":
        buf = args[0].copy()
        rest = args[1:]
        # later rounds run on the previous gradient: finite values, the same work (as numloss bench)
        return lambda: fn(buf, *rest, out=buf, **kwargs)
    out = np.empty_like(args[0])
    return lambda: fn(*args, out=out, **kwargs)


class _Suite:
    family = None
    params = (["4096x1000"], ["float32", "float64"], ["out", "inplace"])
    param_names = ("shape", "dtype", "where")
    options = ()

    def setup(self, shape, dtype, where):
        numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
        self.call = _call(self.family, shape, dtype, where, self.options)
        self.call()  # compile (or load from the cache) before timing

    def time_with_grad(self, shape, dtype, where):
        self.call()

    def peakmem_with_grad(self, shape, dtype, where):
        self.call()

    def track_overhead_vs_cross_entropy(self, shape, dtype, where):
        base = _call(BASE[self.family], shape, dtype, "out")
        base()

        def best(f):
            t = np.inf
            for _ in range(5):
                t0 = time.perf_counter()
                f()
                t = min(t, time.perf_counter() - t0)
            return t

        return best(self.call) / best(base)

    track_overhead_vs_cross_entropy.unit = "x"


class SigmoidFocalLoss(_Suite):
    family = "sigmoid_focal_loss"
    params = (["4096x1000", "65536x80"], ["float32", "float64"], ["out", "inplace"])


class SigmoidFocalLossGamma15(_Suite):
    """A gamma other than 0, 1, 2: a libm ``pow`` per element."""

    family = "sigmoid_focal_loss"
    params = (["4096x1000"], ["float32"], ["out"])
    options = (("gamma", 1.5),)


class SoftmaxFocalLoss(_Suite):
    family = "softmax_focal_loss"


class CosFaceCrossEntropy(_Suite):
    family = "cosface_cross_entropy"


class ArcFaceCrossEntropy(_Suite):
    family = "arcface_cross_entropy"


class ArcFaceLabelSmoothing(_Suite):
    family = "arcface_cross_entropy"
    params = (["4096x1000"], ["float32"], ["out"])
    options = (("label_smoothing", 0.1),)
