"""How the parallel kernels split rows into tasks.

Every family keeps its row code in one ``@jit`` function over a range of
rows, ``_rows(x, g_or_none, lo, hi, ...)``, compiled once per dtype for the
out-of-place form (``g_or_none`` an array) and once for the in-place form
(``None``: the gradient overwrites ``x``, and the loops see one pointer, so
LLVM vectorises them without a runtime overlap check).  The four drivers of
a family (serial / parallel x out of place / in place) only call it: the
serial ones on all rows, the parallel ones on chunks of rows in a
``prange``.  The row code is thus typed and optimised twice per dtype
instead of four times, and the ``parallel=True`` compiles (whose passes cost
most on large functions) see a loop of calls only.
"""

import collections

import numpy as np
from numba import types
from numba.extending import overload

from ._jit import JIT_OPTIONS, jit_inline
from ._math import cast_like

#: one family's drivers: ``serial(x, *head, grad, *tail)`` and ``parallel`` (same
#: arguments) write the gradient to ``grad`` (nothing for a ``(0, C)`` grad);
#: ``inplace_serial(x, *head, *tail)`` and ``inplace_parallel`` overwrite ``x``.
#: A set without in-place drivers (``None``) is called out of place with ``grad = x``.
KernelSet = collections.namedtuple("KernelSet", "serial parallel inplace_serial inplace_parallel")

#: about this many elements per parallel task: enough work to amortise the
#: call and the scheduling, small enough for TBB to balance the threads
TASK_ELEMENTS = 1 << 13


@jit_inline
def row_chunks(num_rows, num_classes):
    """``(number of tasks, rows per task)`` for ``num_rows`` rows of ``num_classes`` elements."""
    rows = max(1, TASK_ELEMENTS // max(1, num_classes))
    return (num_rows + rows - 1) // rows, rows


@jit_inline
def chunk_bounds(k, rows, num_rows):
    """Rows ``[lo, hi)`` of task ``k``, as int64 (a ``prange`` index is unsigned: without the cast the
    row function would compile a second time for the parallel drivers)."""
    lo = np.int64(k) * np.int64(rows)
    return lo, min(lo + np.int64(rows), np.int64(num_rows))


def gradient_array(x, g_or_none):
    """The array a row function writes the gradient to: ``g_or_none``, or ``x`` when it is ``None``."""
    raise NotImplementedError("for use inside @njit code")


@overload(gradient_array, inline="always", jit_options={k: JIT_OPTIONS[k] for k in ("fastmath", "error_model")})
def _gradient_array(x, g_or_none):
    # chosen by type, at compile time: no branch, and no unification of x's type with g's
    # (x is read-only out of place)
    if isinstance(g_or_none, types.NoneType):
        return lambda x, g_or_none: x
    return lambda x, g_or_none: g_or_none


@jit_inline
def sample_weight_of(row_weight, i):
    """Row ``i``'s sample weight: ``row_weight[i]``, or 1 when ``row_weight`` is empty (no sample weights).

    Every family's row loop multiplies the row's loss by it and passes
    ``inv_denom * weight`` as the row's gradient factor; a weight of 0 (a
    ``where=False`` row, or a zero sample weight) skips the row unread.
    """
    if row_weight.shape[0] == 0:
        return 1.0
    return row_weight[i]


@jit_inline
def skip_row(g, i, want_grad, row_loss, lse_out):
    """An ignored sample: loss 0 and, if wanted, a zero gradient row (whatever the row holds, NaN included),
    and a NaN log-sum-exp (the row is not read)."""
    row_loss[i] = 0.0
    if lse_out.shape[0] != 0:
        lse_out[i] = np.nan
    if want_grad:
        for j in range(np.uint64(g.shape[1])):
            g[i, j] = 0


@jit_inline
def skip_elements(g, el, i, ei, want_grad, want_elem):
    """A skipped row of an elementwise loss: zero gradient and element losses (the row is not read)."""
    for j in range(np.uint64(g.shape[1])):
        if want_grad:
            g[i, j] = 0
        if want_elem:
            el[ei, j] = 0


@jit_inline
def scale_row(a, i, factor):
    """``a[i] *= factor`` with the product formed in float64 (element losses times a row's sample weight)."""
    for j in range(np.uint64(a.shape[1])):
        a[i, j] = cast_like(np.float64(a[i, j]) * factor, a[i, j])
