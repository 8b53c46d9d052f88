"""numloss: fused, Numba-compiled classification losses for NumPy on the CPU.

Every loss has ``NAME(...) -> loss`` and ``NAME_with_grad(..., out=None) ->
(loss, grad)``; see ``shared/SPEC.md`` and the README.

The submodules are imported on first use of one of their names (PEP 562):
``import numloss`` imports neither NumPy nor Numba (about 1 ms), and a
program that only uses the softmax loss never imports the focal, margin or
linear code.
"""

import importlib

__version__ = "0.1.0"

#: public name -> the submodule that defines it
_SUBMODULE_OF = {
    "arcface_cross_entropy": "margin",
    "arcface_cross_entropy_with_grad": "margin",
    "cosface_cross_entropy": "margin",
    "cosface_cross_entropy_with_grad": "margin",
    "sigmoid_focal_loss": "focal",
    "sigmoid_focal_loss_with_grad": "focal",
    "softmax_focal_loss": "focal",
    "softmax_focal_loss_with_grad": "focal",
    "linear_cross_entropy": "linear",
    "linear_cross_entropy_with_grad": "linear",
    "sigmoid_cross_entropy": "sigmoid",
    "sigmoid_cross_entropy_with_grad": "sigmoid",
    "softmax_cross_entropy": "softmax",
    "softmax_cross_entropy_with_grad": "softmax",
}

__all__ = sorted([*_SUBMODULE_OF, "nn"])


#: submodules that ``numloss.<name>`` imports on first access
_SUBMODULES = ("nn", "softmax", "sigmoid", "focal", "margin", "linear")


def __getattr__(name):
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    module = _SUBMODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'numloss' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
