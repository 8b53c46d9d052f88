"""Type aliases of the public signatures (annotations only: nothing here runs in a loss call)."""

from typing import Any, Literal, Union

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

# ... and of the private functions and the kernels (compiled per dtype: their arrays are of any dtype)
#: an array whose dtype varies (logits of any float dtype, or their uint16 bits; targets; gradients)
AnyArray = NDArray[Any]
#: flat int64 class indices (the kernels' one target type for class indices)
IndexArray = NDArray[np.int64]
#: float64 values per row (losses, log-sum-exp, sample weights) or per class (class weights)
Float64Array = NDArray[np.float64]
#: a Python or NumPy integer: an index, a count or a bound of rows or classes
IntScalar = Union[int, np.integer]
#: a Python or NumPy float: a kernel's scalar (float64, or the logits' float32)
FloatScalar = Union[float, np.floating]

__all__ = ["AnyArray", "ArrayLike", "Float64Array", "FloatScalar", "Grad", "IndexArray", "IntScalar", "LossValue",
           "Real", "Reduction"]
