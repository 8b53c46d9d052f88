"""Focal losses (sigmoid and softmax): public wrappers around the fused kernels."""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _indexed, _plumbing
from . import _validate as V
from ._kernels import focal as K
from ._typing import AnyArray, ArrayLike, Float64Array, Grad, LossValue, Real, Reduction
from .softmax import run_int_kernel


def _gamma(value: object) -> float:
    return _indexed.real_in(value, "gamma", lo=0.0)


def _alpha(value: object) -> float:
    """``None`` or negative -> -1.0 (off); else a number in [0, 1]."""
    if value is None:
        return -1.0
    a = V._real(value, "alpha")
    if a < 0:
        return -1.0
    if not a <= 1.0:
        raise ValueError(f"alpha must be None, negative (no alpha weighting) or in [0, 1]; got {value!r}")
    return a


def _prepare_sigmoid(logits: ArrayLike, target: ArrayLike, alpha: Real | None, gamma: Real, reduction: str,
                     sample_weight: ArrayLike | None, where: ArrayLike | None
                     ) -> tuple[_plumbing.Batch, tuple[object, ...], Float64Array | None]:
    """Validate; return ``(batch, head, element weights or None)`` for :mod:`numloss._plumbing` and the focal
    kernels."""
    x = V.float_array(logits)
    reduction = V.reduction(reduction)
    alpha = _alpha(alpha)
    gamma = _gamma(gamma)
    b, ew = _plumbing.elementwise_batch(x, reduction, None, sample_weight, where)
    if ew is None:
        b = _plumbing.merged_rows(b)  # elementwise, no weight per column: short rows regrouped into long ones
    # one kernel specialisation per logits dtype: targets are read in the logits' dtype
    t2 = _plumbing.dense_target(target, b)
    return b, (t2, alpha, gamma, b.inv_denom, b.row_weight), ew


def sigmoid_focal_loss(logits: ArrayLike, target: ArrayLike, *, alpha: Real | None = 0.25, gamma: Real = 2.0,
                       reduction: Reduction = "mean", sample_weight: ArrayLike | None = None,
                       where: ArrayLike | None = None) -> LossValue:
    r"""Sigmoid focal loss (RetinaNet) from logits, elementwise.

    With :math:`p = \sigma(x)`, :math:`p_t = p t + (1 - p)(1 - t)` and
    :math:`\alpha_t = \alpha t + (1 - \alpha)(1 - t)`:

    .. math::

        \ell = \alpha_t\, (1 - p_t)^\gamma\, \mathrm{BCE}(x, t),\qquad
        \mathrm{BCE}(x, t) = t\,\mathrm{softplus}(-x) + (1 - t)\,\mathrm{softplus}(x)

    computed from the logits (``log sigma`` as ``-softplus(-x)``, ``1 - p``
    as ``sigma(-x)``): finite for every finite input.

    Parameters
    ----------
    logits : array_like, float32 or float64, any shape
        Any strides.  ``-inf`` is a sure negative (loss 0 for ``t = 0``,
        infinite for ``t > 0``); NaN or ``+inf`` gives NaN for that element.
    target : array_like of the logits' shape
        bool, integer or float (soft labels allowed; not range-checked, as
        torchvision).  Read in the logits' dtype.
    alpha : float in [0, 1], negative, or None
        Weight of the positives (``1 - alpha`` for the negatives).  ``None``
        or a negative number disables the alpha weighting (torchvision's
        ``alpha=-1``).
    gamma : float >= 0
        Focusing parameter; ``gamma = 0`` with alpha off is the sigmoid
        cross-entropy.
    reduction : {"mean", "sum", "none"}
        "mean" divides by the number of elements (torchvision's
        ``loss.mean()``); "none" returns the per-element losses.
    sample_weight, where : array_like, optional
        As :func:`numloss.sigmoid_cross_entropy`'s: per row (shape
        ``logits.shape[:-1]``) or per element (any shape broadcasting to
        the logits'); "mean" divides by the weights' sum over the elements.

    Returns
    -------
    loss : NumPy scalar of the logits' dtype, or an array of the logits'
        shape for ``reduction="none"``.

    Notes
    -----
    Matches ``torchvision.ops.sigmoid_focal_loss`` (whose default reduction
    is ``"none"``; numloss's is ``"mean"``).  An empty input gives NaN for
    "mean" and 0 for "sum".

    Examples
    --------
    >>> import numpy as np, numloss
    >>> round(float(numloss.sigmoid_focal_loss(np.array([0.0, 2.0]), np.array([1.0, 0.0]))), 6)
    0.64044
    """
    b, head, ew = _prepare_sigmoid(logits, target, alpha, gamma, reduction, sample_weight, where)
    losses = _plumbing.loss_only(b, _plumbing.elementwise_runner(b, K.SIGMOID, head, ew))
    return _plumbing.reduce(b, losses, b.x.dtype)


def sigmoid_focal_loss_with_grad(logits: ArrayLike, target: ArrayLike, *, alpha: Real | None = 0.25,
                                 gamma: Real = 2.0, reduction: Reduction = "mean",
                                 sample_weight: ArrayLike | None = None, where: ArrayLike | None = None,
                                 out: Grad | None = None) -> tuple[LossValue, Grad]:
    r"""Sigmoid focal loss and its gradient with respect to the logits, in one pass.

    With :math:`q = 1 - p_t` and :math:`\mathrm{BCE}` as in
    :func:`sigmoid_focal_loss`, the gradient per element is

    .. math::

        \frac{\partial \ell}{\partial x} = \alpha_t\, q^\gamma \Big((p - t)
        + \gamma\, \mathrm{BCE}\, \frac{p (1 - p)}{q}\, (1 - 2t)\Big)

    divided by the "mean" denominator.  This is the exact derivative with
    :math:`q^{\gamma-1}` folded into :math:`q^\gamma`: :math:`p(1-p)/q` lies
    in [0, 1], so the gradient is finite for every ``gamma >= 0``, also
    ``gamma < 1`` where :math:`q^{\gamma-1}` alone is unbounded.  Where
    :math:`q` rounds to 0 (a hard target met exactly) the factor takes its
    limit 1 and the gradient is 0.

    Parameters
    ----------
    logits, target, alpha, gamma, reduction, sample_weight, where
        As :func:`sigmoid_focal_loss`.
    out : ndarray, optional
        Where to write the gradient: ``logits`` itself (in place) or a
        C-contiguous writable array of the logits' shape and dtype sharing
        no memory with any input.

    Returns
    -------
    loss : as :func:`sigmoid_focal_loss`
    grad : ndarray of the logits' shape and dtype (``out`` when given)

    Notes
    -----
    Matches autograd through ``torchvision.ops.sigmoid_focal_loss``.

    Examples
    --------
    >>> import numpy as np, numloss
    >>> loss, grad = numloss.sigmoid_focal_loss_with_grad(np.zeros(2), np.array([1.0, 0.0]), alpha=None)
    >>> grad
    array([-0.1491434,  0.1491434])
    """
    b, head, ew = _prepare_sigmoid(logits, target, alpha, gamma, reduction, sample_weight, where)
    inputs = [("logits", b.x), ("target", target), ("sample_weight", sample_weight)]
    losses, grad = _plumbing.loss_and_grad(b, out, inputs, _plumbing.elementwise_runner(b, K.SIGMOID, head, ew))
    return _plumbing.reduce(b, losses, b.x.dtype), grad


def _softmax_runner(p: _indexed.Indexed, gamma: float) -> _plumbing.Runner:
    if gamma != 0.0:
        return _indexed.runner(p, K.SOFTMAX, gamma)

    # gamma = 0 is the cross-entropy itself, bit for bit: softmax's kernels
    def cross_entropy(x2: AnyArray, grad2: AnyArray) -> AnyArray:
        row_loss = np.empty(p.batch.N, dtype=np.float64)
        b = p.batch
        run_int_kernel(x2, p.target, p.weight, p.ignore, 0.0, 0.0, 0.0, 0.0, b.inv_denom, b.row_weight, grad2,
                       row_loss, b.lse)
        return row_loss

    return cross_entropy


def softmax_focal_loss(logits: ArrayLike, target: ArrayLike, *, gamma: Real = 2.0, weight: ArrayLike | None = None,
                       ignore_index: int = -100, reduction: Reduction = "mean", sample_weight: ArrayLike | None = None,
                       where: ArrayLike | None = None, aux: bool = False) -> Any:
    r"""Softmax focal loss from logits with integer class targets.

    For each sample with logits :math:`x` (classes on the last axis),
    :math:`p = \mathrm{softmax}(x)` and class index :math:`y`:

    .. math::

        \ell = -w_y\, (1 - p_y)^\gamma \log p_y

    with :math:`\log p_y = x_y - \mathrm{logsumexp}(x)` and
    :math:`1 - p_y = -\mathrm{expm1}(\log p_y)` (accurate when
    :math:`p_y \to 1`).  ``gamma = 0`` is :func:`numloss.softmax_cross_entropy`
    (it is run, so the two are equal bit for bit).

    Parameters
    ----------
    logits : array_like, float32 or float64, shape ``(..., C)``
        Unnormalised scores, classes on the last axis; ``-inf`` masks a
        class.  Any strides.
    target : array_like of int, shape ``logits.shape[:-1]``
        Class indices (a float target raises ``ValueError``).
    gamma : float >= 0
        Focusing parameter.
    weight : array_like, shape ``(C,)``, optional
        Per-class weights ``w`` (PyTorch's ``weight``).
    ignore_index : int
        Class index whose samples contribute nothing (loss 0, gradient 0).
    reduction : {"mean", "sum", "none"}
        "mean" divides by the summed ``weight[target]`` of the kept samples,
        exactly as ``F.cross_entropy`` (NaN for an empty or all-ignored
        batch); "none" returns per-sample losses (ignored samples 0).
    sample_weight, where, aux
        See below.

    Returns
    -------
    loss : NumPy scalar of the logits' dtype, or an array of shape
        ``logits.shape[:-1]`` for ``reduction="none"``.

    Notes
    -----
    PyTorch has no softmax focal loss; this is
    ``(w[y] * (1 - p_y)**gamma * -log p_y).sum() / w[y].sum()`` over kept
    samples, i.e. ``F.cross_entropy`` with the focal factor, as in the
    multi-class form of Lin et al. (2017).  (kornia's ``focal_loss`` uses a
    scalar ``alpha`` instead of class weights and divides by ``N``.)

    Examples
    --------
    >>> import numpy as np, numloss
    >>> logits = np.array([[2.0, 1.0, 0.1]])
    >>> round(float(numloss.softmax_focal_loss(logits, np.array([0]))), 6)
    0.048492
    """
    gamma = _gamma(gamma)
    p = _indexed.prepare(logits, target, weight, ignore_index, reduction, "logits", sample_weight, where, aux)
    return _indexed.loss_only(p, _softmax_runner(p, gamma))


def softmax_focal_loss_with_grad(logits: ArrayLike, target: ArrayLike, *, gamma: Real = 2.0,
                                 weight: ArrayLike | None = None, ignore_index: int = -100,
                                 reduction: Reduction = "mean", sample_weight: ArrayLike | None = None,
                                 where: ArrayLike | None = None, aux: bool = False,
                                 out: Grad | None = None) -> Any:
    r"""Softmax focal loss and its gradient with respect to the logits, in one pass.

    With :math:`u = 1 - p_y` and :math:`\mathrm{nll} = -\log p_y`, the
    gradient of one sample is

    .. math::

        \frac{\partial \ell}{\partial x_j} = w_y\, u^\gamma \Big(1 + \gamma\,
        \frac{p_y\, \mathrm{nll}}{u}\Big) \big(p_j - [j = y]\big)

    divided by the "mean" denominator.  :math:`\mathrm{nll}/u \to 1` as
    :math:`u \to 0`, so the factor is finite for every ``gamma >= 0``
    (0 at :math:`p_y = 1` for ``gamma > 0``).  Ignored samples get a zero
    row.

    Parameters
    ----------
    logits, target, gamma, weight, ignore_index, reduction, sample_weight, where, aux
        As :func:`softmax_focal_loss`.
    out : ndarray, optional
        Where to write the gradient: ``logits`` itself (in place) or a
        C-contiguous writable array of the logits' shape and dtype sharing
        no memory with any input.

    Returns
    -------
    loss : as :func:`softmax_focal_loss`
    grad : ndarray of the logits' shape and dtype (``out`` when given)

    Examples
    --------
    >>> import numpy as np, numloss
    >>> loss, grad = numloss.softmax_focal_loss_with_grad(np.zeros((1, 2)), np.array([1]), gamma=0.0)
    >>> grad
    array([[ 0.5, -0.5]])
    """
    gamma = _gamma(gamma)
    p = _indexed.prepare(logits, target, weight, ignore_index, reduction, "logits", sample_weight, where, aux)
    return _indexed.loss_and_grad(p, out, weight, "logits", _softmax_runner(p, gamma), sample_weight)


softmax_focal_loss.__doc__ = _plumbing.with_row_options(softmax_focal_loss.__doc__)
