"""Seed-compatible modules for a from-scratch training loop.

The classes mirror those of the from-scratch deep-learning series numloss
grew from (its NumPy ``SigmoidCrossEntropy`` and ``SoftmaxCrossEntropy``):
``forward(x, label_onehot)`` returns a Python float,
``backward()`` returns the gradient with respect to ``x`` in ``x``'s dtype.
Values are the seed's: the loss is summed over classes and divided by the
batch size (``x.shape[0]``), probabilities are clipped to ``[eps, 1 - eps]``
and the gradient is ``(p - y) / batch_size``.  They run on the same fused
kernels as :func:`numloss.sigmoid_cross_entropy_with_grad` and
:func:`numloss.softmax_cross_entropy_with_grad` (``eps`` mode, ``normalizer``
= batch size), so forward computes the gradient too and backward returns it.
"""

from collections.abc import Iterable
from typing import Any, Literal, cast

import numpy as np

from ._typing import ArrayLike, Grad, Real
from .focal import sigmoid_focal_loss_with_grad, softmax_focal_loss_with_grad
from .margin import arcface_cross_entropy_with_grad, cosface_cross_entropy_with_grad
from .sigmoid import sigmoid_cross_entropy_with_grad
from .softmax import softmax_cross_entropy_with_grad


class Parameter:
    """A trainable array ``data`` and its gradient ``grad`` (zeros like ``data`` by default)."""

    def __init__(self, data: ArrayLike, grad: ArrayLike | None = None) -> None:
        self.data = np.asarray(data)
        self.grad = np.zeros_like(self.data) if grad is None else np.asarray(grad)

    def __repr__(self) -> str:
        return f"Parameter(shape={self.data.shape}, dtype={self.data.dtype})"


class Module:
    """Base class: holds ``params`` (a list of :class:`Parameter`) and ``weight_decay``."""

    def __init__(self, params: Iterable[Parameter] = (), weight_decay: float = 0.0) -> None:
        self.params = list(params)
        self.weight_decay = weight_decay

    def decay_backward(self) -> None:
        """L2 weight decay: ``p.grad += weight_decay * p.data`` for every parameter."""
        for p in self.params:
            p.grad += self.weight_decay * p.data


def _batch_size(x: ArrayLike) -> int:
    x = np.asarray(x)
    if x.ndim < 1 or x.shape[0] == 0:
        raise ValueError(f"x must have a non-empty batch axis 0; got shape {x.shape}")
    return cast(int, x.shape[0])  # (an ndarray's shape holds ints; NumPy's stubs: Any)


class SigmoidCrossEntropy(Module):
    """The seed's ``SigmoidCrossEntropy``: clipped binary cross-entropy with weight decay.

    ``forward(x, y) = -sum(y log p + (1 - y) log(1 - p)) / batch_size`` with
    ``p = clip(sigmoid(x), eps, 1 - eps)``; ``backward()`` applies weight
    decay to ``params`` and returns ``(p - y) / batch_size``.
    """

    def __init__(self, params: Iterable[Parameter] = (), weight_decay: float = 1e-5, eps: float = 1e-6) -> None:
        super().__init__(params, weight_decay)
        self.eps = eps
        self._grad: Grad | None = None

    def forward(self, x: ArrayLike, label_onehot: ArrayLike) -> float:
        self.batch_size = _batch_size(x)
        loss, self._grad = sigmoid_cross_entropy_with_grad(
            x, label_onehot, eps=self.eps, reduction="mean", normalizer=self.batch_size
        )
        return float(loss)

    __call__ = forward

    def backward(self) -> Grad:
        if self._grad is None:
            raise RuntimeError("backward() called before forward()")
        self.decay_backward()
        return self._grad


class SoftmaxCrossEntropy(Module):
    """The seed's ``SoftmaxCrossEntropy``: clipped softmax cross-entropy over axis 1.

    ``forward(x, y) = -sum(y log p) / batch_size`` with ``p = clip(softmax(x),
    eps, 1 - eps)``; ``backward()`` returns ``(p - y) / batch_size`` (the seed
    misspells ``batch_size`` there; this one works).
    """

    def __init__(self, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self._grad: Grad | None = None

    def forward(self, x: ArrayLike, label_onehot: ArrayLike) -> float:
        self.batch_size = _batch_size(x)
        x = np.asarray(x)
        y = np.asarray(label_onehot)
        if y.dtype.kind != "f":
            y = y.astype(x.dtype if x.dtype.kind == "f" else np.float64)
        loss, self._grad = softmax_cross_entropy_with_grad(
            x, y, eps=self.eps, axis=1, reduction="mean", normalizer=self.batch_size
        )
        return float(loss)

    __call__ = forward

    def backward(self) -> Grad:
        if self._grad is None:
            raise RuntimeError("backward() called before forward()")
        return self._grad


# ------------------------------------------------ focal and margin losses (issue 4)


class _FusedLoss(Module):
    """A loss whose ``forward`` computes the gradient too (one fused pass); ``backward`` returns it.

    ``reduction`` is ``"mean"`` or ``"sum"`` (``forward`` returns a Python float).
    """

    _with_grad: Any = None

    def __init__(self, reduction: Literal["mean", "sum"] = "mean", **options: Any) -> None:
        super().__init__()
        if reduction not in ("mean", "sum"):
            raise ValueError(f"reduction must be 'mean' or 'sum' (forward returns a float); got {reduction!r}")
        self.reduction = reduction
        self.options = options
        self._grad: Grad | None = None

    def forward(self, x: ArrayLike, target: ArrayLike, sample_weight: ArrayLike | None = None,
                where: ArrayLike | None = None) -> float:
        """The loss as a float; ``sample_weight`` and ``where`` (per sample, or per element for the
        sigmoid focal loss) as the function's."""
        loss, self._grad = type(self)._with_grad(x, target, reduction=self.reduction, sample_weight=sample_weight,
                                                 where=where, **self.options)
        return float(loss)

    __call__ = forward

    def backward(self) -> Grad:
        if self._grad is None:
            raise RuntimeError("backward() called before forward()")
        return self._grad


class SigmoidFocalLoss(_FusedLoss):
    """RetinaNet's sigmoid focal loss (:func:`numloss.sigmoid_focal_loss`) as a module.

    ``forward(x, target)`` with ``target`` of ``x``'s shape (0/1 or soft
    labels) returns the loss as a float; ``backward()`` its gradient.
    """

    _with_grad = staticmethod(sigmoid_focal_loss_with_grad)

    def __init__(self, alpha: Real | None = 0.25, gamma: Real = 2.0,
                 reduction: Literal["mean", "sum"] = "mean") -> None:
        super().__init__(reduction, alpha=alpha, gamma=gamma)


class SoftmaxFocalLoss(_FusedLoss):
    """Softmax focal loss over the last axis (:func:`numloss.softmax_focal_loss`) with class-index targets."""

    _with_grad = staticmethod(softmax_focal_loss_with_grad)

    def __init__(self, gamma: Real = 2.0, weight: ArrayLike | None = None, ignore_index: int = -100,
                 reduction: Literal["mean", "sum"] = "mean") -> None:
        super().__init__(reduction, gamma=gamma, weight=weight, ignore_index=ignore_index)


class CosFaceLoss(_FusedLoss):
    """CosFace / AM-Softmax on cosine similarities (:func:`numloss.cosface_cross_entropy`).

    ``forward(cosine, target)``; ``backward()`` returns the gradient with
    respect to the cosines.
    """

    _with_grad = staticmethod(cosface_cross_entropy_with_grad)

    def __init__(self, scale: Real = 30.0, margin: Real = 0.35, weight: ArrayLike | None = None,
                 ignore_index: int = -100, label_smoothing: Real = 0.0,
                 reduction: Literal["mean", "sum"] = "mean") -> None:
        super().__init__(reduction, scale=scale, margin=margin, weight=weight, ignore_index=ignore_index,
                         label_smoothing=label_smoothing)


class ArcFaceLoss(_FusedLoss):
    """ArcFace on cosine similarities (:func:`numloss.arcface_cross_entropy`).

    ``forward(cosine, target)``; ``backward()`` returns the gradient with
    respect to the cosines.
    """

    _with_grad = staticmethod(arcface_cross_entropy_with_grad)

    def __init__(self, scale: Real = 64.0, margin: Real = 0.5, easy_margin: bool = False,
                 weight: ArrayLike | None = None, ignore_index: int = -100, label_smoothing: Real = 0.0,
                 reduction: Literal["mean", "sum"] = "mean") -> None:
        super().__init__(reduction, scale=scale, margin=margin, easy_margin=easy_margin, weight=weight,
                         ignore_index=ignore_index, label_smoothing=label_smoothing)
