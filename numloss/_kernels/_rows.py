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
from collections.abc import Callable
from typing import Any

import numpy as np
from numba import types
from numba.extending import overload
from numpy.typing import NDArray

from .._typing import AnyArray, Float64Array, IntScalar
from ._jit import OVERLOAD_OPTIONS, jit_inline
from ._math import (
    bfloat16_bits_to_float32,
    cast_like,
    float16_bits_to_float32,
    float32_to_bfloat16_bits,
    float32_to_float16_bits,
    maxnum,
    prefetch_address,
    select,
)

#: one family's drivers: ``serial(x, *head, grad, *tail)`` and ``parallel`` (same
#: arguments) write the gradient to ``grad`` (nothing for a ``(0, C)`` grad);
#: ``inplace_serial(x, *head, *tail)`` and ``inplace_parallel`` overwrite ``x``.
#: A set without in-place drivers (``None``) is called out of place with ``grad = x``.
KernelSet = collections.namedtuple("KernelSet", "serial parallel inplace_serial inplace_parallel half",
                                   defaults=(None,))
#: the half-precision drivers of a family (``KernelSet.half``): ``serial(xh, kind, *head, grad, *tail)`` and
#: ``parallel``, with ``xh`` the uint16 bits of float16 (``kind`` 0) or bfloat16 (1) logits and ``grad``
#: uint16 bits of the same format, a float32 array of their shape, or ``(0, C)`` for no gradient
HalfKernels = collections.namedtuple("HalfKernels", "serial parallel")

#: about this many elements per parallel task: enough work to amortise the
#: call and the scheduling, small enough for TBB to balance the threads
TASK_ELEMENTS = 1 << 13


@jit_inline
def row_chunks(num_rows: int, num_classes: int) -> tuple[int, int]:
    """``(number of tasks, rows per task)`` for ``num_rows`` rows of ``num_classes`` elements."""
    rows = max(1, TASK_ELEMENTS // max(1, num_classes))
    return (num_rows + rows - 1) // rows, rows


@jit_inline
def chunk_bounds(k: IntScalar, rows: int, num_rows: int) -> tuple[np.int64, np.int64]:
    """Rows ``[lo, hi)`` of task ``k``, as int64 (a ``prange`` index is unsigned: without the cast the
    row function would compile a second time for the parallel drivers)."""
    lo = np.int64(k) * np.int64(rows)
    return lo, min(lo + np.int64(rows), np.int64(num_rows))


def gradient_array(x: AnyArray, g_or_none: AnyArray | None) -> AnyArray:
    """The array a row function writes the gradient to: ``g_or_none``, or ``x`` when it is ``None``."""
    raise NotImplementedError("for use inside @njit code")


@overload(gradient_array, inline="always", jit_options=OVERLOAD_OPTIONS)
def _gradient_array(x: Any, g_or_none: Any) -> Callable[[Any, Any], Any]:
    # chosen by type, at compile time: no branch, and no unification of x's type with g's
    # (x is read-only out of place).  (The implementations annotate their parameters as this typing function
    # does, here and below: Numba checks that the signatures are equal, annotations included.)
    if isinstance(g_or_none, types.NoneType):
        def the_input(x: Any, g_or_none: Any) -> Any:
            return x

        return the_input

    def the_gradient(x: Any, g_or_none: Any) -> Any:
        return g_or_none

    return the_gradient


#: bytes per cache line (x86-64, most Arm cores)
CACHE_LINE = 64


@jit_inline
def prefetch_row_block(a: AnyArray, i: IntScalar, lo: IntScalar, hi: IntScalar) -> None:
    """Ask the caches for ``a[i, lo:hi]`` (nothing if row ``i`` is past the end or the classes are strided).

    The large-row kernels call it for the next row, a block at a time, from
    inside their exponentials' loop, so that the next row's first (max) pass
    reads from L2 instead of waiting on memory while there is no arithmetic
    to overlap with: the loads travel while the exponentials compute.
    """
    size = a.itemsize
    if i < a.shape[0] and a.strides[1] == size:
        start = a.ctypes.data + i * a.strides[0] + lo * size
        for offset in range(0, (hi - lo) * size, CACHE_LINE):
            prefetch_address(start + offset)


# ------------------------------------------------------------ sums of stored terms
# A loop that stores to one array while it reads another gets a runtime
# overlap check from LLVM's vectoriser, which compares the two addresses
# (a store starting less than vector width x unroll x element size after a
# load counts as an overlap: at most 64 x 4 = 256 bytes on x86) and runs a
# scalar copy of the loop when it fails.  A float sum accumulated in such a
# loop is then added in another order, so the same call gave a loss
# differing in the last bit depending on where the allocator had put the
# arrays (an out= right after a small input, a scratch row right after the
# logits).  Every store of the row loops goes to the same row and class of
# an array that overlaps no input (or to a scratch row indexed by class),
# so the distance the check sees is at least a row's length: from
# FUSED_ROW_BYTES on the check cannot fail, and the loops sum as they
# store (a second pass over the stored terms cost 10-13 % at 4096 x 1000
# float32).  Shorter rows store the terms (into the gradient row, the
# element losses, or a scratch row) and sum them with the loops below,
# which store nothing and compile to the same code in every form (in place,
# out of place, loss only).

#: rows of at least this many bytes sum inside their storing loops (4x the largest vector step x unroll)
FUSED_ROW_BYTES = 1024


@jit_inline
def fused_sums(a: AnyArray) -> bool:
    """Whether the rows of ``a`` are long enough to sum inside their storing loops (see above)."""
    return bool(a.shape[1] * a.itemsize >= FUSED_ROW_BYTES)


@jit_inline
def row_sum(a: AnyArray, i: IntScalar, lo: IntScalar, hi: IntScalar, zero: Any) -> Any:
    """``a[i, lo:hi]`` summed in ``a``'s dtype (``zero``: 0 of that dtype)."""
    total = zero
    for j in range(np.uint64(lo), np.uint64(hi)):
        total += a[i, j]
    return total


@jit_inline
def terms_sum(a: AnyArray, i: IntScalar, lo: IntScalar, hi: IntScalar, zero: Any) -> Any:
    """Stored exponentials ``a[i, lo:hi]`` summed in ``a``'s dtype, a negative mark (a masked class) as 0
    and a NaN kept."""
    total = zero
    for j in range(np.uint64(lo), np.uint64(hi)):
        e = a[i, j]
        total += select(e < zero, zero, e)
    return total


@jit_inline
def below_max_sum(a: AnyArray, i: IntScalar, lo: IntScalar, hi: IntScalar, zero: Any) -> Any:
    """Stored exponentials ``exp(x_c - m)`` of ``a[i, lo:hi]`` summed without the terms above 1/2.

    In a confident row (sum of all terms below 1.5) the only term above 1/2
    is the maximum's, exactly 1: this is then the sum over the classes below
    the maximum (marks and NaN as 0; the caller uses it for such rows only).
    """
    half = cast_like(0.5, zero)
    total = zero
    for j in range(np.uint64(lo), np.uint64(hi)):
        e = a[i, j]
        total += select(e > half, zero, maxnum(e, zero))
    return total


@jit_inline
def all_ones(weight: Float64Array) -> bool:
    """Whether every class weight is 1 (no ``weight``: the wrappers pass ones); label smoothing's and
    probability targets' per-class sums and gradient passes then read no weight."""
    ones = 0
    for c in range(weight.shape[0]):
        ones += 1 if weight[c] == 1.0 else 0
    return bool(ones == weight.shape[0])


@jit_inline
def distance_sums(x: AnyArray, i: IntScalar, lo: IntScalar, hi: IntScalar, st: Any, m: Any,
                  m64: float) -> tuple[float, float]:
    """``(K, sum_c (m - st x_c))`` over the unmasked classes ``lo:hi`` (``x_c > -inf``; at most a
    SUM_BLOCK of them) of row ``i``, both float64: label smoothing's sums when every class weight is 1
    (``st``: the margin losses' scale, 1 for the softmax).

    Summed in the row's dtype (all SIMD lanes, no conversion, no weight
    read; the terms are >= 0 but the margin target's, so a float32 block sum
    is good to a few float32 ulp, as the block sums of exponentials are); a
    block whose sum is not finite (``m - st x`` overflows float32 for logits
    near +-3e38) is summed again in float64.
    """
    zero = cast_like(0.0, m)
    one = cast_like(1.0, m)
    k = zero
    dist = zero
    for j in range(np.uint64(lo), np.uint64(hi)):
        v = x[i, j]
        unmasked = v > -np.inf
        k += select(unmasked, one, zero)
        dist += select(unmasked, m - v * st, zero)
    if dist < np.inf:
        return np.float64(k), np.float64(dist)
    dist64 = 0.0
    for j in range(np.uint64(lo), np.uint64(hi)):
        v = x[i, j]
        dist64 += select(v > -np.inf, m64 - np.float64(v * st), 0.0)
    return np.float64(k), dist64


@jit_inline
def sample_weight_of(row_weight: Float64Array, i: IntScalar) -> Any:
    """Row ``i``'s sample weight: ``row_weight[i]``, or 1 when ``row_weight`` is empty (no sample weights).

    Every family's row loop multiplies the row's loss by it and passes
    ``inv_denom * weight`` as the row's gradient factor; a weight of 0 (a
    ``where=False`` row, or a zero sample weight) skips the row unread.
    """
    if row_weight.shape[0] == 0:
        return 1.0
    return row_weight[i]


@jit_inline
def skip_row(g: AnyArray, i: IntScalar, want_grad: bool, row_loss: Float64Array, lse_out: Float64Array) -> None:
    """An ignored sample: loss 0 and, if wanted, a zero gradient row (whatever the row holds, NaN included),
    and a NaN log-sum-exp (the row is not read)."""
    row_loss[i] = 0.0
    if lse_out.shape[0] != 0:
        lse_out[i] = np.nan
    if want_grad:
        for j in range(np.uint64(g.shape[1])):
            g[i, j] = 0


@jit_inline
def skip_elements(g: AnyArray, el: AnyArray, i: IntScalar, ei: IntScalar, want_grad: bool, want_elem: bool) -> None:
    """A skipped row of an elementwise loss: zero gradient and element losses (the row is not read)."""
    for j in range(np.uint64(g.shape[1])):
        if want_grad:
            g[i, j] = 0
        if want_elem:
            el[ei, j] = 0


@jit_inline
def scale_row(a: AnyArray, i: IntScalar, factor: float) -> None:
    """``a[i] *= factor`` with the product formed in float64 (element losses times a row's sample weight)."""
    for j in range(np.uint64(a.shape[1])):
        a[i, j] = cast_like(np.float64(a[i, j]) * factor, a[i, j])


# ------------------------------------------------------------ half-precision inputs
# float16 and bfloat16 logits reach the kernels as their uint16 bit patterns
# (Numba has no half type).  A half driver takes rows a few at a time into a
# float32 scratch of about HALF_SUB_ELEMENTS elements (in L1/L2), runs the
# family's float32 row function on it in place, and rounds the gradient back
# to the input's format (or leaves it in a float32 ``grad``, which is then
# the scratch itself).  Memory traffic is that of the half arrays; the row
# code is the float32 kernels', unchanged.

#: the ``kind`` argument of the half drivers
FLOAT16 = 0
BFLOAT16 = 1
#: float32 elements converted at a time (32 KiB)
HALF_SUB_ELEMENTS = 1 << 13
#: sub-blocks per parallel task (one scratch allocation each)
HALF_TASK_SUBS = 16


@jit_inline
def half_sub_rows(num_classes: int) -> int:
    """Rows converted at a time: about HALF_SUB_ELEMENTS float32 elements (at least one row)."""
    return max(1, HALF_SUB_ELEMENTS // max(1, num_classes))


@jit_inline
def half_tasks(num_rows: int, num_classes: int) -> tuple[int, int]:
    """``(number of tasks, rows per task)`` of a parallel half driver."""
    rows = half_sub_rows(num_classes) * HALF_TASK_SUBS
    return (num_rows + rows - 1) // rows, rows


@jit_inline
def half_rows_to_float32(xh: NDArray[np.uint16], kind: int, lo: IntScalar, hi: IntScalar,
                         xs: NDArray[np.float32]) -> None:
    """``xs[:hi - lo]`` = the float32 values of rows ``lo:hi`` of ``xh`` (uint16 bits of format ``kind``)."""
    C = np.uint64(xh.shape[1])
    first = np.uint64(lo)
    if kind == BFLOAT16:
        for r in range(np.uint64(hi - lo)):
            for j in range(C):
                xs[r, j] = bfloat16_bits_to_float32(xh[first + r, j])
    else:
        for r in range(np.uint64(hi - lo)):
            for j in range(C):
                xs[r, j] = float16_bits_to_float32(xh[first + r, j])


def float32_rows_to_half(xs: NDArray[np.float32], kind: int, g: AnyArray, lo: IntScalar, hi: IntScalar) -> None:
    """Rows ``lo:hi`` of ``g`` = ``xs[:hi - lo]`` rounded to the half format ``kind`` (nothing for a float32 ``g``,
    whose rows are ``xs`` itself: see :func:`scratch_rows`)."""
    raise NotImplementedError("for use inside @njit code")


@overload(float32_rows_to_half, inline="always", jit_options=OVERLOAD_OPTIONS)
def _float32_rows_to_half(xs: Any, kind: Any, g: Any, lo: Any, hi: Any) -> Callable[[Any, Any, Any, Any, Any], None]:
    if g.dtype == types.float32:
        def nothing(xs: Any, kind: Any, g: Any, lo: Any, hi: Any) -> None:
            return None

        return nothing

    def convert(xs: Any, kind: Any, g: Any, lo: Any, hi: Any) -> None:
        C = np.uint64(g.shape[1])
        first = np.uint64(lo)
        if kind == BFLOAT16:
            for r in range(np.uint64(hi - lo)):
                for j in range(C):
                    g[first + r, j] = float32_to_bfloat16_bits(xs[r, j])
        else:
            for r in range(np.uint64(hi - lo)):
                for j in range(C):
                    g[first + r, j] = float32_to_float16_bits(xs[r, j])

    return convert


def scratch_rows(g: AnyArray, scratch: NDArray[np.float32], lo: IntScalar, hi: IntScalar) -> NDArray[np.float32]:
    """Where rows ``lo:hi`` are computed in float32: ``g[lo:hi]`` for a float32 ``g`` (the caller's float32
    gradient), else the first ``hi - lo`` rows of ``scratch``."""
    raise NotImplementedError("for use inside @njit code")


@overload(scratch_rows, inline="always", jit_options=OVERLOAD_OPTIONS)
def _scratch_rows(g: Any, scratch: Any, lo: Any, hi: Any) -> Callable[[Any, Any, Any, Any], Any]:
    if g.dtype == types.float32:
        def rows_of_g(g: Any, scratch: Any, lo: Any, hi: Any) -> Any:
            return g[lo:hi]

        return rows_of_g

    def rows_of_scratch(g: Any, scratch: Any, lo: Any, hi: Any) -> Any:
        return scratch[: hi - lo]

    return rows_of_scratch


@jit_inline
def rows_of(a: AnyArray, lo: IntScalar, hi: IntScalar) -> AnyArray:
    """Rows ``lo:hi`` of a per-row array (1-d or 2-d); an array of one row or none (a broadcast row, an
    unused output) as it is."""
    if a.shape[0] > 1:
        return a[lo:hi]
    return a


def target_rows(target: AnyArray, tscratch: NDArray[np.float32], fmt: int, lo: IntScalar, hi: IntScalar) -> AnyArray:
    """Rows ``lo:hi`` of dense targets as the float32 row code reads them: half targets (uint16 bits of the
    logits' format ``fmt``) converted into ``tscratch``, any other dtype as a view of ``target``."""
    raise NotImplementedError("for use inside @njit code")


@overload(target_rows, inline="always", jit_options=OVERLOAD_OPTIONS)
def _target_rows(target: Any, tscratch: Any, fmt: Any, lo: Any, hi: Any) -> Callable[[Any, Any, Any, Any, Any], Any]:
    if target.dtype == types.uint16:
        def convert(target: Any, tscratch: Any, fmt: Any, lo: Any, hi: Any) -> Any:
            ts = tscratch[: hi - lo]
            half_rows_to_float32(target, fmt, lo, hi, ts)
            return ts

        return convert

    def rows_of_target(target: Any, tscratch: Any, fmt: Any, lo: Any, hi: Any) -> Any:
        return target[lo:hi]

    return rows_of_target
