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
from typing import TYPE_CHECKING, Any

from . import _registry

if TYPE_CHECKING:  # what type checkers see (explicit re-exports); at run time the names load lazily (below)
    from . import nn as nn
    from ._plumbing import Aux as Aux
    from ._warmup import (
        warmup as warmup,
    )
    from .focal import (
        sigmoid_focal_loss as sigmoid_focal_loss,
    )
    from .focal import (
        sigmoid_focal_loss_with_grad as sigmoid_focal_loss_with_grad,
    )
    from .focal import (
        softmax_focal_loss as softmax_focal_loss,
    )
    from .focal import (
        softmax_focal_loss_with_grad as softmax_focal_loss_with_grad,
    )
    from .linear import (
        linear_cross_entropy as linear_cross_entropy,
    )
    from .linear import (
        linear_cross_entropy_with_grad as linear_cross_entropy_with_grad,
    )
    from .margin import (
        arcface_cross_entropy as arcface_cross_entropy,
    )
    from .margin import (
        arcface_cross_entropy_with_grad as arcface_cross_entropy_with_grad,
    )
    from .margin import (
        cosface_cross_entropy as cosface_cross_entropy,
    )
    from .margin import (
        cosface_cross_entropy_with_grad as cosface_cross_entropy_with_grad,
    )
    from .sigmoid import (
        sigmoid_cross_entropy as sigmoid_cross_entropy,
    )
    from .sigmoid import (
        sigmoid_cross_entropy_with_grad as sigmoid_cross_entropy_with_grad,
    )
    from .softmax import (
        softmax_cross_entropy as softmax_cross_entropy,
    )
    from .softmax import (
        softmax_cross_entropy_with_grad as softmax_cross_entropy_with_grad,
    )

__version__ = "0.1.0"

#: public name -> the submodule that defines it (the losses from the registry)
_SUBMODULE_OF = {**_registry.public_names(), "warmup": "_warmup", "Aux": "_plumbing"}

__all__ = sorted([*_SUBMODULE_OF, "nn"])


#: submodules that ``numloss.<name>`` imports on first access
_SUBMODULES = ("nn", "softmax", "sigmoid", "focal", "margin", "linear")


def __getattr__(name: str) -> Any:  # (a submodule or one of its names: typed by the imports above)
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    module = _SUBMODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'numloss' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
