"""numloss: fused, Numba-compiled classification losses for NumPy on the CPU.

Every loss has ``NAME(...) -> loss`` and ``NAME_with_grad(..., out=None) ->
(loss, grad)``; see the README.  ``numloss.warmup()`` compiles (or loads from
Numba's disk cache) every kernel ahead of the first call.

The submodules are imported on first use of one of their names (PEP 562):
``import numloss`` imports neither NumPy nor Numba (about 1 ms), and a
program that only uses the softmax loss never imports the focal, margin or
linear code.
"""

import importlib

from . import _registry

__version__ = "0.1.0"

#: public name -> the submodule that defines it (the losses from the registry)
_SUBMODULE_OF = {**_registry.public_names(), "warmup": "_warmup"}

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
