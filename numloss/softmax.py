"""Softmax cross-entropy: public wrappers around the fused row kernels."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from . import _plumbing
from . import _validate as V
from ._kernels import softmax as K
from ._typing import AnyArray, ArrayLike, Float64Array, Grad, IndexArray, Real, Reduction


@dataclasses.dataclass(slots=True)
class _Softmax:
    """Validated arguments of a softmax call: the batch, the kernel's target and options."""

    batch: _plumbing.Batch
    axis: int
    kind: str  # "int" (class indices) or "prob"
    target: np.ndarray  # (N,) int64, or (N, C) probabilities in the logits' dtype
    raw_target: np.ndarray
    weight: np.ndarray  # (C,) float64
    ignore: int
    ls: float
    z: float
    cap: float
    eps: float
    aux: bool


def _prepare(logits: ArrayLike, target: ArrayLike, weight: ArrayLike | None, ignore_index: int, label_smoothing: Real,
             z_loss: Real, softcap: Real | None, eps: Real, axis: int, reduction: str, normalizer: Real | None,
             sample_weight: ArrayLike | None = None, where: ArrayLike | None = None, aux: bool = False) -> _Softmax:
    """Validate everything before any work."""
    x = V.float_array(logits)
    if x.ndim == 0:
        raise ValueError("logits must have at least one dimension (the class axis); got a 0-d array")
    try:
        axis = _axis(axis, x.ndim)
    except TypeError:
        raise ValueError(f"axis must be an integer; got {axis!r}") from None
    reduction = V.reduction(reduction)
    ls = V.label_smoothing(label_smoothing)
    z = V.z_loss(z_loss)
    cap = V.softcap(softcap)
    eps = V.eps(eps)
    V.eps_combinations(eps, ls, z, cap)
    norm = V.normalizer(normalizer)
    ignore = V.ignore_index(ignore_index)
    C = x.shape[axis]
    if C < 1:
        raise ValueError(f"logits must have at least one class along axis {axis}; got shape {x.shape}")
    xm = x if axis == x.ndim - 1 else np.moveaxis(x, axis, -1)
    batch_shape = xm.shape[:-1]
    N = math.prod(batch_shape)
    w = V.class_weights(weight, C)
    rw = _plumbing.row_weights(sample_weight, where, batch_shape)
    aux = V.flag(aux, "aux")

    t = np.asarray(target)
    if t.dtype.kind in "iu":
        kind = "int"
        tflat = V.class_indices(t, batch_shape, C, ignore)
        bad, count = K.int_target_denominator(tflat, w, ignore, C, rw)
        if bad >= 0:
            V.raise_bad_index(tflat, bad, C, ignore)
    elif V.is_float(t.dtype):
        kind = "prob"
        if t.shape != x.shape:
            raise ValueError(
                f"a float target (probabilities) must have the logits' shape {x.shape}; got {t.shape}"
            )
        tm = t if axis == x.ndim - 1 else np.moveaxis(t, axis, -1)
        # read in the logits' dtype: one kernel per logits dtype (a copy only for other float dtypes)
        tflat = _plumbing.readonly(_plumbing.half_or_compute(tm.reshape(N, C), x.dtype))
        count = float(N) if rw is _plumbing.NO_ROWS else float(rw.sum())
    else:
        raise ValueError(
            f"target must hold integer class indices or float probabilities; got dtype {t.dtype}"
        )
    b = _plumbing.batch(xm, N, C, batch_shape, reduction, count, norm, rw, aux)
    return _Softmax(b, axis, kind, tflat, t, w, ignore, ls, z, cap, eps, aux)


def _axis(axis: object, ndim: int) -> int:
    if axis == -1 and type(axis) is int:
        return ndim - 1
    if isinstance(axis, (bool, np.bool_)):
        raise TypeError
    axis = int(axis) if isinstance(axis, (int, np.integer)) else None
    if axis is None:
        raise TypeError
    if not -ndim <= axis < ndim:
        raise ValueError(f"axis {axis} is out of bounds for logits with {ndim} dimensions")
    return axis % ndim


def run_int_kernel(x2: AnyArray, target: IndexArray, weight: Float64Array, ignore: int, ls: float, z: float, cap: float,
                   eps: float, inv_denom: float, row_weight: Float64Array, grad2: AnyArray, row_loss: Float64Array,
                   lse: Float64Array) -> None:
    """The fused kernel for class-index targets over ``x2`` (N, C) C-contiguous.

    Writes the per-row losses into ``row_loss`` (N,) float64, the per-row
    log-sum-exp into ``lse`` ((N,) float64, or empty: not wanted) and the
    gradient into ``grad2``: a separate (N, C) array, ``x2`` itself (in
    place), or a (0, C) array (no gradient).  ``row_weight``: the sample
    weights ((N,) float64, 0 skips a row) or empty.  The few-classes tile
    kernels take C < SMALL_C without label smoothing, softcap or eps; else
    the row kernels.  Shared by every caller (softmax wrappers,
    :mod:`numloss.linear`).
    """
    small = x2.shape[1] < K.SMALL_C and ls == 0.0 and cap == 0.0 and eps == 0.0
    if small and V.half_kind(x2.dtype) is None:  # (the half driver picks the tile itself)
        _plumbing.launch(K.INT_SMALL, x2, grad2, (target, weight, ignore, z, inv_denom, row_weight), (row_loss, lse))
    else:
        _plumbing.launch(K.INT, x2, grad2, (target, weight, ignore, ls, z, cap, eps, inv_denom, row_weight),
                         (row_loss, lse))


def z_loss_rows(z: float, b: _plumbing.Batch, target: IndexArray | None, class_weight: Float64Array, ignore: int
                ) -> Float64Array | None:
    """Per-row z-loss terms of :class:`~numloss._plumbing.Batch` ``b`` (float64, for :class:`numloss.Aux`), or
    ``None`` without a z-loss.

    ``z * w * lse**2`` from the kernels' log-sum-exp ``b.lse``, ``w`` the
    row's ``class_weight[target]`` (1 for probability targets: ``target``
    ``None``) times its sample weight; 0 for a skipped row.
    """
    if z == 0.0:
        return None
    if target is None:
        factor = np.ones(b.N)
    else:
        kept = target != ignore
        factor = np.where(kept, class_weight[np.where(kept, target, 0)], 0.0)
    if b.row_weight is not _plumbing.NO_ROWS:
        factor = factor * b.row_weight
    with np.errstate(over="ignore", invalid="ignore"):
        return np.where(factor != 0.0, z * factor * b.lse * b.lse, 0.0)


def _result(p: _Softmax, row_loss: Float64Array, *grad: AnyArray) -> Any:
    """``loss`` (with ``grad`` when given), and the :class:`Aux` when ``aux=True``."""
    dtype = p.batch.x.dtype
    loss = _plumbing.reduce(p.batch, row_loss, dtype)
    if not p.aux:
        return (loss, *grad) if grad else loss
    z_rows = z_loss_rows(p.z, p.batch, p.target if p.kind == "int" else None, p.weight, p.ignore)
    return (loss, *grad, _plumbing.aux_result(p.batch, row_loss, z_rows, dtype))


def _runner(p: _Softmax) -> _plumbing.Runner:
    """``run(x2, grad2) -> row losses`` for :mod:`numloss._plumbing`."""

    def run(x2: AnyArray, grad2: AnyArray) -> AnyArray:
        b = p.batch
        row_loss = np.empty(b.N, dtype=np.float64)
        if p.kind == "int":
            run_int_kernel(x2, p.target, p.weight, p.ignore, p.ls, p.z, p.cap, p.eps, b.inv_denom, b.row_weight,
                           grad2, row_loss, b.lse)
        else:
            _plumbing.launch(K.PROB, x2, grad2,
                             (p.target, p.weight, p.ls, p.z, p.cap, p.eps, b.inv_denom, b.row_weight),
                             (row_loss, b.lse))
        return row_loss

    return run


def softmax_cross_entropy(
    logits: ArrayLike, target: ArrayLike, *, weight: ArrayLike | None = None, ignore_index: int = -100,
    label_smoothing: Real = 0.0, z_loss: Real = 0.0, softcap: Real | None = None, eps: Real = 0.0, axis: int = -1,
    reduction: Reduction = "mean", normalizer: Real | None = None, sample_weight: ArrayLike | None = None,
    where: ArrayLike | None = None, aux: bool = False,
) -> Any:
    r"""Softmax cross-entropy from logits.

    For each sample with logits :math:`x` (class axis ``axis``),
    :math:`p = \mathrm{softmax}(x)` and :math:`\mathrm{lse} = \log\sum_c e^{x_c}`:

    .. math::

        \ell = -\sum_c q_c \log p_c + \texttt{z\_loss}\, w\, \mathrm{lse}^2

    where, for a class index :math:`y`, :math:`q_c = w_y((1-\varepsilon)[c=y]
    + \varepsilon/K)` weighted per class (:math:`K` the unmasked classes) and
    :math:`w = w_y`; for probability targets :math:`t`, :math:`q_c = w_c((1-\varepsilon)
    t_c + \varepsilon/K)` and :math:`w = 1`.  With ``softcap`` the logits are
    first mapped through :math:`s \tanh(x/s)`.

    Parameters
    ----------
    logits : array_like, float32 or float64, shape ``(..., C)``
        Unnormalised scores; ``-inf`` masks a class.  Any strides.
    target : array_like
        Integer class indices of shape ``logits.shape`` without ``axis`` (any
        integer dtype), or float probabilities of ``logits.shape``.
    weight : array_like, shape ``(C,)``, optional
        Per-class weights (PyTorch's ``weight``).
    ignore_index : int
        Class index whose samples contribute nothing (loss 0, gradient 0).
    label_smoothing : float in [0, 1]
        PyTorch's label smoothing; with ``-inf`` masks the smoothing mass goes
        to the unmasked classes only.
    z_loss : float >= 0
        Adds ``z_loss * lse**2`` per sample (PaLM); weighted like the loss.
    softcap : float > 0 or None
        Gemma 2 logit soft-capping ``softcap * tanh(logits / softcap)``.
    eps : float in [0, 0.5)
        ``0`` computes the exact log-loss.  ``eps > 0`` reproduces the seed's
        clipped log-loss (probabilities clipped to ``[eps, 1 - eps]``).
    axis : int
        The class axis.
    reduction : {"mean", "sum", "none"}
        PyTorch's normalisation: "mean" divides by the summed weights of the
        kept samples (their count without ``weight``; the number of samples
        for probability targets).  An empty or all-ignored batch gives NaN
        for "mean" (as PyTorch; Keras and Liger give 0 — pass
        ``normalizer`` for that).
    normalizer : float > 0, optional
        Replaces the denominator of "mean" (e.g. the global token count when
        accumulating gradients over micro-batches).
    sample_weight, where, aux
        See below.

    Returns
    -------
    loss : NumPy scalar of the logits' dtype, or an array of shape
        ``logits.shape`` without ``axis`` for ``reduction="none"``.

    Notes
    -----
    Matches ``torch.nn.functional.cross_entropy`` (and optax's
    ``softmax_cross_entropy_with_integer_labels`` / ``softmax_cross_entropy``
    for ``reduction="none"``).  Non-contiguous logits (or ``axis`` not last)
    are copied to a contiguous temporary first.

    Examples
    --------
    >>> import numpy as np, numloss
    >>> logits = np.array([[2.0, 1.0, 0.1]])
    >>> round(float(numloss.softmax_cross_entropy(logits, np.array([0]))), 6)
    0.417030
    """
    p = _prepare(logits, target, weight, ignore_index, label_smoothing, z_loss, softcap, eps, axis, reduction,
                 normalizer, sample_weight, where, aux)
    return _result(p, _plumbing.loss_only(p.batch, _runner(p)))


def softmax_cross_entropy_with_grad(
    logits: ArrayLike, target: ArrayLike, *, weight: ArrayLike | None = None, ignore_index: int = -100,
    label_smoothing: Real = 0.0, z_loss: Real = 0.0, softcap: Real | None = None, eps: Real = 0.0, axis: int = -1,
    reduction: Reduction = "mean", normalizer: Real | None = None, sample_weight: ArrayLike | None = None,
    where: ArrayLike | None = None, aux: bool = False, out: Grad | None = None,
) -> Any:
    r"""Softmax cross-entropy and its gradient with respect to the logits, in one pass.

    The loss is :func:`softmax_cross_entropy`'s.  The gradient, for one
    sample, is

    .. math::

        \frac{\partial \ell}{\partial x_j} = \Big(\big(\textstyle\sum_c q_c
        + 2\,\texttt{z\_loss}\, w\,\mathrm{lse}\big) p_j - q_j\Big)\,
        \frac{\partial x'_j}{\partial x_j}

    divided by the "mean" denominator (``x'`` the softcapped logits).  With
    ``eps > 0`` it is the seed's ``(clip(p) - q)`` instead.  Ignored samples
    get a zero row.

    Parameters
    ----------
    logits, target, weight, ignore_index, label_smoothing, z_loss, softcap, eps, axis, reduction, normalizer,
    sample_weight, where, aux
        As :func:`softmax_cross_entropy`.
    out : ndarray, optional
        Where to write the gradient: C-contiguous, writable, of the logits'
        shape and dtype, and either ``logits`` itself (overwrites the logits
        in place: no second ``(N, C)`` array) or sharing no memory with any
        input.

    Returns
    -------
    loss : as :func:`softmax_cross_entropy`
    grad : ndarray of the logits' shape and dtype
        The gradient of ``loss`` (of ``loss.sum()`` for ``reduction="none"``);
        ``out`` itself when given.

    Notes
    -----
    Matches ``F.cross_entropy(...).backward()``.  Non-contiguous logits are
    copied into the gradient buffer, and the kernel then works in place there.

    Examples
    --------
    >>> import numpy as np, numloss
    >>> loss, grad = numloss.softmax_cross_entropy_with_grad(np.zeros((1, 2)), np.array([1]))
    >>> grad
    array([[ 0.5, -0.5]])
    """
    p = _prepare(logits, target, weight, ignore_index, label_smoothing, z_loss, softcap, eps, axis, reduction,
                 normalizer, sample_weight, where, aux)
    x = np.asarray(logits)
    inputs = [("logits", x), ("target", p.raw_target), ("weight", weight), ("sample_weight", sample_weight)]
    if p.axis == x.ndim - 1:
        row_loss, grad = _plumbing.loss_and_grad(p.batch, out, inputs, _runner(p))
    else:  # the gradient in the moved layout, then moved back (and copied into out)
        if out is not None:
            V.out_array(out, x, inputs)
        row_loss, grad = _plumbing.loss_and_grad(p.batch, None, inputs, _runner(p))
        grad = np.moveaxis(grad, -1, p.axis)
        if out is not None:
            out[...] = grad
            grad = out
    return _result(p, row_loss, grad)


softmax_cross_entropy.__doc__ = _plumbing.with_row_options(softmax_cross_entropy.__doc__)
