"""Validation shared by the row losses with integer class targets and the class axis last.

Used by :mod:`numloss.focal` (softmax focal loss) and :mod:`numloss.margin`
(CosFace, ArcFace): the logits, class indices, class weights,
``ignore_index`` and ``reduction``, and PyTorch's "mean" denominator (the sum
of ``weight[target]`` over the kept samples).  The rest of the path (row
view, gradient buffer, kernel launch, reduction) is :mod:`numloss._plumbing`.
"""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING, Any

import numpy as np

from . import _plumbing
from . import _validate as V
from ._kernels import softmax as SK
from ._typing import AnyArray, ArrayLike, Float64Array

if TYPE_CHECKING:
    from ._kernels._rows import KernelSet


def real_in(value: object, name: str, lo: float = -np.inf, hi: float = np.inf, lo_open: bool = False,
            hi_open: bool = False) -> float:
    """``value`` as a float, finite, in the interval; else ``ValueError`` naming ``name``."""
    v = V._real(value, name)
    ok = np.isfinite(v) and (v > lo if lo_open else v >= lo) and (v < hi if hi_open else v <= hi)
    if not ok:
        left = "(" if lo_open else "["
        right = ")" if hi_open else "]"
        raise ValueError(f"{name} must be a finite number in {left}{lo:g}, {hi:g}{right}; got {value!r}")
    return v


@dataclasses.dataclass(slots=True)
class Indexed:
    """Validated arguments of a row loss with class-index targets (class axis last)."""

    batch: _plumbing.Batch
    target: np.ndarray  # (N,) int64
    raw_target: np.ndarray
    weight: np.ndarray  # (C,) float64
    ignore: int
    aux: bool


def prepare(logits: ArrayLike, target: ArrayLike, weight: ArrayLike | None, ignore_index: int, reduction: str,
            name: str = "logits", sample_weight: ArrayLike | None = None, where: ArrayLike | None = None,
            aux: bool = False) -> Indexed:
    """Validate; return an :class:`Indexed` record ("mean" divides by the kept samples' summed weights,
    each times its sample weight)."""
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
    rw = _plumbing.row_weights(sample_weight, where, batch_shape)
    aux = V.flag(aux, "aux")
    t = np.asarray(target)
    if t.dtype.kind not in "iu":
        raise ValueError(f"target must hold integer class indices (this loss takes no probability targets); "
                         f"got dtype {t.dtype}")
    tflat = V.class_indices(t, batch_shape, C, ignore)
    bad, wsum = SK.int_target_denominator(tflat, w, ignore, C, rw)
    if bad >= 0:
        V.raise_bad_index(tflat, bad, C, ignore)
    return Indexed(_plumbing.batch(x, N, C, batch_shape, reduction, wsum, row_weight=rw, aux=aux), tflat, t, w,
                   ignore, aux)


def runner(p: Indexed, kernels: KernelSet, *options: object) -> _plumbing.Runner:
    """``run(x2, grad2)`` for kernels ``(x, target, weight, ignore, *options, inv_denom, row_weight, [grad],
    row_loss, lse)``."""

    def run(x2: AnyArray, grad2: AnyArray) -> AnyArray:
        b = p.batch
        row_loss = np.empty(b.N, dtype=np.float64)
        _plumbing.launch(kernels, x2, grad2, (p.target, p.weight, p.ignore, *options, b.inv_denom, b.row_weight),
                         (row_loss, b.lse))
        return row_loss

    return run


# (Any: the loss, or a tuple with the gradient and the Aux, as the public functions return)
def _result(p: Indexed, row_loss: Float64Array, *grad: AnyArray) -> Any:
    dtype = p.batch.x.dtype
    loss = _plumbing.reduce(p.batch, row_loss, dtype)
    if not p.aux:
        return (loss, *grad) if grad else loss
    return (loss, *grad, _plumbing.aux_result(p.batch, row_loss, None, dtype))


def loss_only(p: Indexed, run: _plumbing.Runner) -> Any:
    """The reduced loss of ``run`` (:func:`runner`), and its :class:`~numloss._plumbing.Aux` if asked for."""
    return _result(p, _plumbing.loss_only(p.batch, run))


def loss_and_grad(p: Indexed, out: AnyArray | None, weight: ArrayLike | None, name: str, run: _plumbing.Runner,
                  sample_weight: ArrayLike | None = None) -> Any:
    """``(loss, grad)``: the gradient goes to ``out`` (may be the input: in place) or a new array."""
    inputs = [(name, p.batch.x), ("target", p.raw_target), ("weight", weight), ("sample_weight", sample_weight)]
    row_loss, grad = _plumbing.loss_and_grad(p.batch, out, inputs, run)
    return _result(p, row_loss, grad)
