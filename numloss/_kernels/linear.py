"""Kernels for the fused linear + softmax cross-entropy (:mod:`numloss.linear`).

The softmax part reuses :mod:`.softmax`'s row kernels on each chunk of
logits; the matrix products go to BLAS.  What is left is the bias gradient,
the column sums of the ``(rows, V)`` gradient chunk, accumulated in float64
across chunks (a sum over rows, so it gets a float64 accumulator even for
float32 inputs):

    acc[j] += sum_i g[i, j]
"""

from numba import prange

from .._typing import AnyArray, Float64Array
from ._jit import jit, jit_parallel

#: columns per parallel task: the task's slice of ``acc`` (8 KiB) stays in L1
_COLUMN_BLOCK = 1024


@jit
def add_column_sums_serial(g: AnyArray, acc: Float64Array) -> None:
    """``acc[j] += sum_i g[i, j]``; ``g (rows, V)`` C-contiguous, ``acc (V,)`` float64."""
    for i in range(g.shape[0]):
        row = g[i]
        for j in range(g.shape[1]):
            acc[j] += row[j]


@jit_parallel
def add_column_sums_parallel(g: AnyArray, acc: Float64Array) -> None:
    """As :func:`add_column_sums_serial`; each task owns one block of columns of ``acc``."""
    V = g.shape[1]
    nblocks = (V + _COLUMN_BLOCK - 1) // _COLUMN_BLOCK
    for b in prange(nblocks):
        lo = b * _COLUMN_BLOCK
        hi = min(V, lo + _COLUMN_BLOCK)
        for i in range(g.shape[0]):
            row = g[i]
            for j in range(lo, hi):
                acc[j] += row[j]
