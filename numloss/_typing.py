"""Type aliases of the public signatures (annotations only: nothing here runs in a loss call)."""

from typing import Literal, Union

import numpy as np
from numpy.typing import ArrayLike, NDArray

#: ``reduction=``
Reduction = Literal["mean", "sum", "none"]
#: a real option: a Python number, a NumPy scalar or a 0-d array
Real = Union[float, int, np.floating, np.integer, NDArray[np.floating], NDArray[np.integer]]
#: a loss: a NumPy scalar of the input's dtype, or an array for ``reduction="none"``
LossValue = Union[np.floating, NDArray[np.floating]]
#: a gradient (or an ``out=`` buffer): an array of the input's shape and dtype
Grad = NDArray[np.floating]

__all__ = ["ArrayLike", "Grad", "LossValue", "Real", "Reduction"]
