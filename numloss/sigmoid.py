"""Sigmoid (binary) cross-entropy: public wrappers around the fused kernels."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from . import _plumbing
from . import _validate as V
from ._kernels import sigmoid as K
from ._typing import AnyArray, ArrayLike, Float64Array, Grad, LossValue, Real, Reduction

if TYPE_CHECKING:
    from ._kernels._rows import KernelSet

#: ``(C, dtype) -> (1, C) ones``, read-only: kernels never write their weights, and reusing the
#: array saves two allocations per call at small shapes
_UNIT_ROWS: dict[tuple[int, np.dtype[Any]], AnyArray] = {}


def _unit_row(C: int, dtype: np.dtype[Any]) -> AnyArray:
    key = (C, dtype)
    ones = _UNIT_ROWS.get(key)
    if ones is None:
        if len(_UNIT_ROWS) >= 16:
            _UNIT_ROWS.clear()
        ones = _UNIT_ROWS[key] = np.ones((1, C), dtype=dtype)
        ones.flags.writeable = False
    return ones


def broadcast_weight(value: ArrayLike | None, shape: tuple[int, ...], dtype: np.dtype[Any], name: str) -> AnyArray:
    """A weight broadcastable to ``shape`` as a read-only ``(R, C)`` array, R in {1, N}.

    Weights that vary along the last axis and/or along all leading axes
    together are passed as they are; any other broadcast pattern (e.g.
    ``(A, 1, C)`` against ``(A, B, C)``) is materialised to the full shape.
    """
    shape2 = shape if len(shape) else (1,)
    C = shape2[-1]
    if value is None:
        return _unit_row(C, dtype)
    N = math.prod(shape2[:-1])
    w = np.asarray(value)
    if not V.is_real(w.dtype):
        raise ValueError(f"{name} must be numeric; got dtype {w.dtype}")
    try:
        full = np.broadcast_shapes(w.shape, shape)
    except ValueError:
        full = None
    if full != tuple(shape) or w.ndim > len(shape2):
        raise ValueError(f"{name} of shape {w.shape} does not broadcast to the logits' shape {tuple(shape)}")
    # (cast: NumPy's stubs pick reshape's 0-d overload for this shape, a tuple built at run time)
    w = cast(AnyArray, w.reshape((1,) * (len(shape2) - w.ndim) + w.shape))
    lead, last = w.shape[:-1], w.shape[-1]
    if all(d == 1 for d in lead):
        rows = 1
    elif lead == tuple(shape2[:-1]):
        rows = N
    else:
        w = np.broadcast_to(w, shape2)
        rows, last = N, C
    # the class axis is always materialised (C values per row), rows only when they vary
    return _plumbing.readonly(np.ascontiguousarray(np.broadcast_to(w.reshape(rows, last), (rows, C)), dtype=dtype))


def _prepare(logits: ArrayLike, target: ArrayLike, weight: ArrayLike | None, pos_weight: ArrayLike | None, eps: Real,
             reduction: str, normalizer: Real | None, sample_weight: ArrayLike | None, where: ArrayLike | None
             ) -> tuple[_plumbing.Batch, KernelSet, tuple[object, ...], Float64Array | None]:
    """Validate; return ``(batch, kernels, head, element weights or None)`` for :mod:`numloss._plumbing`."""
    x = V.float_array(logits)
    reduction = V.reduction(reduction)
    eps = V.eps(eps)
    norm = V.normalizer(normalizer)
    b, ew = _plumbing.elementwise_batch(x, reduction, norm, sample_weight, where)
    if weight is None and pos_weight is None and ew is None:
        b = _plumbing.merged_rows(b)  # no weight per column: short rows are regrouped into long ones
    # bool targets (multi-label masks) are read as they are; other dtypes as the logits'
    t2 = _plumbing.dense_target(target, b, native=(np.dtype(np.bool_),))
    dtype = V.compute_dtype(x.dtype)
    w = _unit_row(b.C, dtype) if weight is None else broadcast_weight(weight, x.shape, dtype, "weight")
    pw = _unit_row(b.C, dtype) if pos_weight is None else broadcast_weight(pos_weight, x.shape, dtype, "pos_weight")
    # unit weights, no clipping, targets of the logits' dtype (uint16: half targets): the plain kernels (no no-op
    # multiplications and clamps; compiled for those two signatures only)
    plain = weight is None and pos_weight is None and eps == 0.0 and t2.dtype in (dtype, np.uint16)
    kernels = K.PLAIN if plain else K.GENERAL
    return b, kernels, (t2, w, pw, eps, b.inv_denom, b.row_weight), ew


def sigmoid_cross_entropy(logits: ArrayLike, target: ArrayLike, *, weight: ArrayLike | None = None,
                          pos_weight: ArrayLike | None = None, eps: Real = 0.0, reduction: Reduction = "mean",
                          normalizer: Real | None = None, sample_weight: ArrayLike | None = None,
                          where: ArrayLike | None = None) -> LossValue:
    r"""Sigmoid (binary) cross-entropy from logits, elementwise.

    .. math::

        \ell = -w\,\big(p_w\, t \log\sigma(x) + (1 - t) \log(1 - \sigma(x))\big)
             = w\,\big(p_w\, t\, \mathrm{softplus}(-x) + (1 - t)\,\mathrm{softplus}(x)\big)

    computed from the logits in the softplus form (finite for every finite
    input; ``-inf`` with ``t = 0`` is a loss of 0).

    Parameters
    ----------
    logits : array_like, float32 or float64, any shape
    target : array_like of the logits' shape
        bool, integer or float in [0, 1] (soft labels allowed; not
        range-checked, as PyTorch).
    weight, pos_weight : array_like, optional
        Broadcast to the logits' shape (PyTorch's ``weight`` and
        ``pos_weight``; ``pos_weight`` usually has shape ``(C,)``).
    eps : float in [0, 0.5)
        ``eps > 0`` reproduces the seed's clipped log-loss: ``sigma`` is
        clipped to ``[eps, 1 - eps]`` in the loss and in the gradient.
    reduction : {"mean", "sum", "none"}
        "mean" divides by the number of elements (as PyTorch, whatever the
        weights); "none" returns the per-element losses.
    normalizer : float > 0, optional
        Replaces the denominator of "mean".
    sample_weight, where : array_like, optional
        Per row or per element: an array of shape ``logits.shape[:-1]``
        holds one value per row (this reading
        wins when ``N == C``), any other shape broadcasts to the logits'
        shape (one value per element).  ``sample_weight`` (>= 0) multiplies
        the losses and the gradient, and "mean" divides by its sum over the
        elements; ``where=False`` (bool) skips a row or an element (not
        read: a NaN there gives 0; not counted in "mean").  A weight of 0
        skips as ``where=False`` does.  Per-element arrays cost one more
        pass over the losses and the gradient; per-row ones nothing.

    Returns
    -------
    loss : NumPy scalar of the logits' dtype, or an array of the logits'
        shape for ``reduction="none"``.

    Notes
    -----
    Matches ``torch.nn.functional.binary_cross_entropy_with_logits`` and
    optax's ``sigmoid_binary_cross_entropy`` (``reduction="none"``).
    Non-contiguous inputs are copied to contiguous temporaries.

    Examples
    --------
    >>> import numpy as np, numloss
    >>> round(float(numloss.sigmoid_cross_entropy(np.array([0.0, 2.0]), np.array([1.0, 0.0]))), 6)
    1.410038
    """
    b, kernels, head, ew = _prepare(logits, target, weight, pos_weight, eps, reduction, normalizer, sample_weight,
                                    where)
    losses = _plumbing.loss_only(b, _plumbing.elementwise_runner(b, kernels, head, ew))
    return _plumbing.reduce(b, losses, b.x.dtype)


def sigmoid_cross_entropy_with_grad(logits: ArrayLike, target: ArrayLike, *, weight: ArrayLike | None = None,
                                    pos_weight: ArrayLike | None = None, eps: Real = 0.0,
                                    reduction: Reduction = "mean", normalizer: Real | None = None,
                                    sample_weight: ArrayLike | None = None, where: ArrayLike | None = None,
                                    out: Grad | None = None) -> tuple[LossValue, Grad]:
    r"""Sigmoid cross-entropy and its gradient with respect to the logits, in one pass.

    The loss is :func:`sigmoid_cross_entropy`'s; the gradient per element is

    .. math::

        \frac{\partial \ell}{\partial x} = w\,\big(\sigma(x)\,(p_w t + 1 - t) - p_w t\big)

    divided by the "mean" denominator (with ``eps > 0``: ``sigma`` clipped,
    the seed's ``p - t``).

    Parameters
    ----------
    logits, target, weight, pos_weight, eps, reduction, normalizer, sample_weight, where
        As :func:`sigmoid_cross_entropy`.
    out : ndarray, optional
        Where to write the gradient: ``logits`` itself (in place) or a
        C-contiguous writable array of the logits' shape and dtype sharing
        no memory with any input.

    Returns
    -------
    loss : as :func:`sigmoid_cross_entropy`
    grad : ndarray of the logits' shape and dtype (``out`` when given)

    Notes
    -----
    Matches ``F.binary_cross_entropy_with_logits(...).backward()``.

    Examples
    --------
    >>> import numpy as np, numloss
    >>> loss, grad = numloss.sigmoid_cross_entropy_with_grad(np.zeros(2), np.array([1.0, 0.0]))
    >>> grad
    array([-0.25,  0.25])
    """
    b, kernels, head, ew = _prepare(logits, target, weight, pos_weight, eps, reduction, normalizer, sample_weight,
                                    where)
    inputs = [("logits", b.x), ("target", target), ("weight", weight), ("pos_weight", pos_weight),
              ("sample_weight", sample_weight)]
    losses, grad = _plumbing.loss_and_grad(b, out, inputs, _plumbing.elementwise_runner(b, kernels, head, ew))
    return _plumbing.reduce(b, losses, b.x.dtype), grad
