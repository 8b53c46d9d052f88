"""The streaming kernel that defines the bandwidth bound in ``numloss bench``."""

import numpy as np
from numba import prange
from numpy.typing import NDArray

from ._jit import jit_parallel


@jit_parallel
def scale_copy(a: NDArray[np.float32], b: NDArray[np.float32]) -> None:
    """``b[i] = 1.5 * a[i]``: one read and one write per element, nothing else."""
    for i in prange(a.shape[0]):
        b[i] = 1.5 * a[i]
