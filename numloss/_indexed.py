"""Shared plumbing of the row losses with integer class targets and the class axis last.

Used by :mod:`numloss.focal` (softmax focal loss) and :mod:`numloss.margin`
(CosFace, ArcFace): validation of the logits, class indices, class weights,
``ignore_index`` and ``reduction``; the PyTorch "mean" denominator (the sum
of ``weight[target]`` over the kept samples); the gradient buffer (``out``,
in place, or a new array); and the reduction of the per-row losses.
"""

import math

import numpy as np

from . import _parallel
from . import _validate as V
from ._kernels import softmax as SK


def real_in(value, name, lo=-np.inf, hi=np.inf, lo_open=False, hi_open=False):
    """``value`` as a float, finite, in the interval; else ``ValueError`` naming ``name``."""
    v = V._real(value, name)
    ok = np.isfinite(v) and (v > lo if lo_open else v >= lo) and (v < hi if hi_open else v <= hi)
    if not ok:
        left = "(" if lo_open else "["
        right = ")" if hi_open else "]"
        raise ValueError(f"{name} must be a finite number in {left}{lo:g}, {hi:g}{right}; got {value!r}")
    return v


def prepare(logits, target, weight, ignore_index, reduction, name="logits"):
    """Validate; return the pieces the row kernels and the reduction need."""
    x = V.float_array(logits, name)
    if x.ndim == 0:
        raise ValueError(f"{name} must have at least one dimension (the class axis, last); got a 0-d array")
    reduction = V.reduction(reduction)
    ignore = V.ignore_index(ignore_index)
    C = x.shape[-1]
    if C < 1:
        raise ValueError(f"{name} must have at least one class along the last axis; got shape {x.shape}")
    batch_shape = x.shape[:-1]
    N = math.prod(batch_shape)
    w = V.class_weights(weight, C)
    t = np.asarray(target)
    if t.dtype.kind not in "iu":
        raise ValueError(f"target must hold integer class indices (this loss takes no probability targets); "
                         f"got dtype {t.dtype}")
    tflat = V.class_indices(t, batch_shape, C, ignore)
    bad, wsum = SK.int_target_denominator(tflat, w, ignore, C)
    if bad >= 0:
        V.raise_bad_index(tflat, bad, C, ignore)
    if reduction == "mean":
        denom = wsum
        inv_denom = 1.0 / denom if denom != 0 else np.inf
    else:
        denom, inv_denom = 1.0, 1.0
    return dict(x=x, N=N, C=C, batch_shape=batch_shape, target=tflat, raw_target=t, weight=w, ignore=ignore,
                reduction=reduction, denom=denom, inv_denom=inv_denom)


def as_rows(x, N, C):
    return x.reshape(N, C) if x.flags.c_contiguous else np.ascontiguousarray(x).reshape(N, C)


def run(p, kernels, x2, grad2, *options):
    """Per-row losses from ``kernels = (serial, parallel, inplace_serial, inplace_parallel)``.

    Out of place: ``kernel(x2, target, weight, ignore, *options, inv_denom, grad2, row_loss)``
    (``grad2`` of shape ``(0, C)`` for no gradient); in place (``grad2 is x2``)
    the same without ``grad2``.
    """
    row_loss = np.empty(p["N"], dtype=np.float64)
    parallel = _parallel.use_parallel(p["N"] * p["C"], p["N"])
    head = (x2, p["target"], p["weight"], p["ignore"], *options, p["inv_denom"])
    if grad2 is x2:
        _parallel.run(kernels[2], kernels[3], parallel, *head, row_loss)
    else:
        _parallel.run(kernels[0], kernels[1], parallel, *head, grad2, row_loss)
    return row_loss


def reduce(p, row_loss):
    dtype = p["x"].dtype
    if p["reduction"] == "none":
        return row_loss.astype(dtype).reshape(p["batch_shape"])
    total = row_loss.sum()
    if p["reduction"] == "mean":
        total = total / p["denom"] if p["denom"] != 0 else np.float64(np.nan)
    return dtype.type(total)


def loss_only(p, kernels, *options):
    x2 = as_rows(p["x"], p["N"], p["C"])
    return reduce(p, run(p, kernels, x2, np.empty((0, p["C"]), dtype=x2.dtype), *options))


def loss_and_grad(p, out, weight, name, kernels, *options):
    """``(loss, grad)``: the gradient goes to ``out`` (may be the logits: in place) or a new array."""
    x, N, C = p["x"], p["N"], p["C"]
    if out is not None:
        V.out_array(out, x, [(name, x), ("target", p["raw_target"]), ("weight", weight)])
        grad = out
    else:
        grad = np.empty(x.shape, dtype=x.dtype)
    grad2 = grad.reshape(N, C)
    if grad is x:
        row_loss = run(p, kernels, grad2, grad2, *options)
    elif x.flags.c_contiguous:
        row_loss = run(p, kernels, x.reshape(N, C), grad2, *options)
    else:
        grad[...] = x
        row_loss = run(p, kernels, grad2, grad2, *options)
    return reduce(p, row_loss), grad
