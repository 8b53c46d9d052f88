"""The streaming kernel that defines the bandwidth bound in ``numloss bench``."""

from numba import prange

from ._jit import jit_parallel


@jit_parallel
def scale_copy(a, b):
    """``b[i] = 1.5 * a[i]``: one read and one write per element, nothing else."""
    for i in prange(a.shape[0]):
        b[i] = 1.5 * a[i]
