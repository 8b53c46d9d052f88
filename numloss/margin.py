"""Margin softmax losses on cosine similarities (CosFace, ArcFace): public wrappers."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from . import _indexed, _plumbing
from . import _validate as V
from ._kernels import margin as K
from ._typing import ArrayLike, Grad, Real, Reduction


def _options(kind: int, scale: object, margin: object, label_smoothing: object, dtype: np.dtype[Any]
             ) -> tuple[float, float, int, float, float, float, float, float, float]:
    """The kernel's option tuple ``(ls, scale, kind, margin, cos_m, sin_m, th, mm, sin_floor)``."""
    scale = _indexed.real_in(scale, "scale", lo=0.0, lo_open=True)
    ls = V.label_smoothing(label_smoothing)
    if kind == K.COSFACE:
        margin = _indexed.real_in(margin, "margin")
        return ls, scale, kind, margin, 1.0, 0.0, -2.0, 0.0, 1.0
    margin = _indexed.real_in(margin, "margin", lo=0.0, hi=math.pi, hi_open=True)
    # sqrt(1 - c^2) at the largest cosine below 1 in the logits' dtype: the
    # floor under sin(theta) in phi'(c), reached only at c = 1 exactly
    below_one = float(np.nextafter(dtype.type(1.0), dtype.type(0.0)))
    sin_floor = math.sqrt((1.0 - below_one) * (1.0 + below_one))
    th = math.cos(math.pi - margin)
    mm = math.sin(math.pi - margin) * margin
    return ls, scale, kind, margin, math.cos(margin), math.sin(margin), th, mm, sin_floor


_COMMON_PARAMETERS = """
    cosine : array_like, float32 or float64, shape ``(..., C)``
        Cosine similarities between each embedding and each class centre
        (classes on the last axis), normally in [-1, 1].  Any strides.  A
        ``-inf`` masks a (non-target) class; NaN or ``+inf`` makes the
        sample's loss and gradient NaN.
    target : array_like of int, shape ``cosine.shape[:-1]``
        Class indices (a float target raises ``ValueError``).
    weight : array_like, shape ``(C,)``, optional
        Per-class weights (PyTorch's ``weight``).
    ignore_index : int
        Class index whose samples contribute nothing (loss 0, gradient 0).
    label_smoothing : float in [0, 1]
        PyTorch's label smoothing on the margin logits (with ``-inf`` masks
        the smoothing mass goes to the unmasked classes only).
    reduction : {"mean", "sum", "none"}
        "mean" divides by the summed ``weight[target]`` of the kept samples
        (``F.cross_entropy``'s normalisation; NaN for an empty or all-ignored
        batch); "none" returns per-sample losses (ignored samples 0).""" + _plumbing.ROW_OPTIONS_DOC


def cosface_cross_entropy(cosine: ArrayLike, target: ArrayLike, *, scale: Real = 30.0, margin: Real = 0.35,
                          weight: ArrayLike | None = None, ignore_index: int = -100, label_smoothing: Real = 0.0,
                          reduction: Reduction = "mean", sample_weight: ArrayLike | None = None,
                          where: ArrayLike | None = None, aux: bool = False) -> Any:
    p = _indexed.prepare(cosine, target, weight, ignore_index, reduction, "cosine", sample_weight, where, aux)
    opts = _options(K.COSFACE, scale, margin, label_smoothing, V.compute_dtype(p.batch.x.dtype))
    return _indexed.loss_only(p, _indexed.runner(p, K.MARGIN, *opts))


def cosface_cross_entropy_with_grad(cosine: ArrayLike, target: ArrayLike, *, scale: Real = 30.0,
                                    margin: Real = 0.35, weight: ArrayLike | None = None, ignore_index: int = -100,
                                    label_smoothing: Real = 0.0, reduction: Reduction = "mean",
                                    sample_weight: ArrayLike | None = None, where: ArrayLike | None = None,
                                    aux: bool = False, out: Grad | None = None) -> Any:
    p = _indexed.prepare(cosine, target, weight, ignore_index, reduction, "cosine", sample_weight, where, aux)
    opts = _options(K.COSFACE, scale, margin, label_smoothing, V.compute_dtype(p.batch.x.dtype))
    return _indexed.loss_and_grad(p, out, weight, "cosine", _indexed.runner(p, K.MARGIN, *opts), sample_weight)


def arcface_cross_entropy(cosine: ArrayLike, target: ArrayLike, *, scale: Real = 64.0, margin: Real = 0.5,
                          easy_margin: bool = False, weight: ArrayLike | None = None, ignore_index: int = -100,
                          label_smoothing: Real = 0.0, reduction: Reduction = "mean",
                          sample_weight: ArrayLike | None = None, where: ArrayLike | None = None,
                          aux: bool = False) -> Any:
    p = _indexed.prepare(cosine, target, weight, ignore_index, reduction, "cosine", sample_weight, where, aux)
    kind = K.ARCFACE_EASY if V.flag(easy_margin, "easy_margin") else K.ARCFACE
    opts = _options(kind, scale, margin, label_smoothing, V.compute_dtype(p.batch.x.dtype))
    return _indexed.loss_only(p, _indexed.runner(p, K.MARGIN, *opts))


def arcface_cross_entropy_with_grad(cosine: ArrayLike, target: ArrayLike, *, scale: Real = 64.0, margin: Real = 0.5,
                                    easy_margin: bool = False, weight: ArrayLike | None = None,
                                    ignore_index: int = -100, label_smoothing: Real = 0.0,
                                    reduction: Reduction = "mean", sample_weight: ArrayLike | None = None,
                                    where: ArrayLike | None = None, aux: bool = False,
                                    out: Grad | None = None) -> Any:
    p = _indexed.prepare(cosine, target, weight, ignore_index, reduction, "cosine", sample_weight, where, aux)
    kind = K.ARCFACE_EASY if V.flag(easy_margin, "easy_margin") else K.ARCFACE
    opts = _options(kind, scale, margin, label_smoothing, V.compute_dtype(p.batch.x.dtype))
    return _indexed.loss_and_grad(p, out, weight, "cosine", _indexed.runner(p, K.MARGIN, *opts), sample_weight)


cosface_cross_entropy.__doc__ = r"""CosFace / AM-Softmax: softmax cross-entropy with an additive cosine margin.

    For each sample with cosines :math:`c` and class index :math:`y`, the
    logits are :math:`z = s\,(c - m\,\mathrm{onehot}(y))` and

    .. math::

        \ell = -\sum_j q_j \log \mathrm{softmax}(z)_j,\qquad
        q_j = w_y (1 - \varepsilon) [j = y] + \varepsilon\, w_j / K

    (:math:`\varepsilon` the label smoothing, :math:`K` the unmasked
    classes): ``F.cross_entropy`` of :math:`z` with its ``weight``,
    ``ignore_index`` and ``label_smoothing``.

    Parameters
    ----------""" + _COMMON_PARAMETERS + r"""
    scale : float > 0
        :math:`s`.
    margin : float
        :math:`m`, subtracted from the target cosine.

    Returns
    -------
    loss : NumPy scalar of the cosines' dtype, or an array of shape
        ``cosine.shape[:-1]`` for ``reduction="none"``.

    Notes
    -----
    Matches ``F.cross_entropy(s * (cosine - m * one_hot(target)), target, ...)``,
    i.e. insightface's CosFace (``CombinedMarginLoss`` with ``m3``) and
    Wang et al. 2018 (CosFace) / AM-Softmax.  Cosines are not clamped
    (the loss is linear in them).

    Examples
    --------
    >>> import numpy as np, numloss
    >>> cos = np.array([[0.5, 0.3, -0.2]])
    >>> round(float(numloss.cosface_cross_entropy(cos, np.array([0]))), 6)
    4.511048
    """

cosface_cross_entropy_with_grad.__doc__ = r"""CosFace loss and its gradient with respect to the cosines, in one pass.

    The loss is :func:`cosface_cross_entropy`'s; the gradient is
    :math:`s\,(Q\,p_j - q_j)` with :math:`p = \mathrm{softmax}(z)` and
    :math:`Q = \sum_j q_j`, divided by the "mean" denominator.

    Parameters
    ----------
    cosine, target, scale, margin, weight, ignore_index, label_smoothing, reduction
        As :func:`cosface_cross_entropy`.
    out : ndarray, optional
        Where to write the gradient: ``cosine`` itself (in place) or a
        C-contiguous writable array of its shape and dtype sharing no memory
        with any input.

    Returns
    -------
    loss : as :func:`cosface_cross_entropy`
    grad : ndarray of the cosines' shape and dtype (``out`` when given)

    Examples
    --------
    >>> import numpy as np, numloss
    >>> loss, grad = numloss.cosface_cross_entropy_with_grad(np.zeros((1, 2)), np.array([1]), scale=1.0, margin=0.0)
    >>> grad
    array([[ 0.5, -0.5]])
    """

arcface_cross_entropy.__doc__ = r"""ArcFace: softmax cross-entropy with an additive angular margin.

    For each sample with cosines :math:`c` and class index :math:`y`, the
    logits are :math:`z_j = s\,c_j` (:math:`j \ne y`) and
    :math:`z_y = s\,\varphi(c_y)` with, as insightface and the ArcFace paper,

    .. math::

        \varphi(c) = \begin{cases} \cos(\arccos c + m) & c > \cos(\pi - m) \\
        c - m \sin(\pi - m) & \text{otherwise} \end{cases}

    (the fallback keeps the target logit decreasing in the angle when
    :math:`\theta + m` would pass :math:`\pi`); with ``easy_margin=True``,
    :math:`\varphi(c) = \cos(\arccos c + m)` where :math:`c > 0` and
    :math:`c` elsewhere.  Then ``F.cross_entropy`` of :math:`z` with its
    ``weight``, ``ignore_index`` and ``label_smoothing`` (see
    :func:`cosface_cross_entropy`).

    Parameters
    ----------""" + _COMMON_PARAMETERS + r"""
    scale : float > 0
        :math:`s`.
    margin : float in [0, pi)
        :math:`m`, added to the target angle.
    easy_margin : bool
        Apply the margin only where the target cosine is positive.

    Returns
    -------
    loss : NumPy scalar of the cosines' dtype, or an array of shape
        ``cosine.shape[:-1]`` for ``reduction="none"``.

    Notes
    -----
    Matches insightface's ``ArcFace`` margin (``arcface_torch/losses.py``)
    and ``ArcMarginProduct`` of arcface-pytorch followed by
    ``F.cross_entropy``, with two numerical conventions:

    * The target cosine is clamped into [-1, 1] before :math:`\arccos`
      (insightface clamps all logits in ``PartialFC``); outside that
      interval the loss is flat in it and its gradient is 0, as
      ``torch.clamp``.  Non-target cosines are used as given.
    * :math:`\cos(\theta + m) = c\cos m - \sqrt{1 - c^2}\,\sin m` and its
      exact derivative :math:`\cos m + \sin m\; c / \sqrt{1 - c^2}` are used
      (insightface computes :math:`\sqrt{1 - c^2}` without gradient).  At
      :math:`c = 1` exactly the derivative is infinite; numloss replaces
      :math:`\sqrt{1 - c^2}` there by its value at the largest cosine below
      1 representable in the input's dtype, so the gradient is finite
      everywhere and exact at every other representable cosine.

    :math:`\varphi` jumps at :math:`c = \cos(\pi - m)` (as in insightface).

    Examples
    --------
    >>> import numpy as np, numloss
    >>> cos = np.array([[0.5, 0.3, -0.2]])
    >>> round(float(numloss.arcface_cross_entropy(cos, np.array([0]))), 6)
    17.689819
    """

arcface_cross_entropy_with_grad.__doc__ = r"""ArcFace loss and its gradient with respect to the cosines, in one pass.

    The loss is :func:`arcface_cross_entropy`'s.  The gradient is
    :math:`s\,(Q\,p_j - q_j)` for :math:`j \ne y` and
    :math:`s\,\varphi'(c_y)\,(Q\,p_y - q_y)` at the target, divided by the
    "mean" denominator (:math:`p = \mathrm{softmax}(z)`,
    :math:`Q = \sum_j q_j`; :math:`\varphi'` as documented in
    :func:`arcface_cross_entropy`: finite everywhere, 0 outside [-1, 1]).

    Parameters
    ----------
    cosine, target, scale, margin, easy_margin, weight, ignore_index, label_smoothing, reduction
        As :func:`arcface_cross_entropy`.
    out : ndarray, optional
        Where to write the gradient: ``cosine`` itself (in place) or a
        C-contiguous writable array of its shape and dtype sharing no memory
        with any input.

    Returns
    -------
    loss : as :func:`arcface_cross_entropy`
    grad : ndarray of the cosines' shape and dtype (``out`` when given)

    Examples
    --------
    >>> import numpy as np, numloss
    >>> loss, grad = numloss.arcface_cross_entropy_with_grad(np.zeros((1, 2)), np.array([1]), scale=1.0, margin=0.0)
    >>> grad
    array([[ 0.5, -0.5]])
    """
