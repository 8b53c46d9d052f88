"""numloss: fused, Numba-compiled classification losses for NumPy on the CPU.

Every loss has ``NAME(...) -> loss`` and ``NAME_with_grad(..., out=None) ->
(loss, grad)``; see ``shared/SPEC.md`` and the README.
"""

from . import nn
from .focal import sigmoid_focal_loss, sigmoid_focal_loss_with_grad, softmax_focal_loss, softmax_focal_loss_with_grad
from .linear import linear_cross_entropy, linear_cross_entropy_with_grad
from .margin import (
    arcface_cross_entropy,
    arcface_cross_entropy_with_grad,
    cosface_cross_entropy,
    cosface_cross_entropy_with_grad,
)
from .sigmoid import sigmoid_cross_entropy, sigmoid_cross_entropy_with_grad
from .softmax import softmax_cross_entropy, softmax_cross_entropy_with_grad

__version__ = "0.1.0"

__all__ = [
    "arcface_cross_entropy",
    "arcface_cross_entropy_with_grad",
    "cosface_cross_entropy",
    "cosface_cross_entropy_with_grad",
    "sigmoid_focal_loss",
    "sigmoid_focal_loss_with_grad",
    "softmax_focal_loss",
    "softmax_focal_loss_with_grad",
    "nn",
    "linear_cross_entropy",
    "linear_cross_entropy_with_grad",
    "sigmoid_cross_entropy",
    "sigmoid_cross_entropy_with_grad",
    "softmax_cross_entropy",
    "softmax_cross_entropy_with_grad",
]
