"""The one place where numloss's kernels get their compiler options.

Every kernel is compiled with the same settings:

* ``cache=True``: compiled code is written to disk on first use per dtype,
  so a second process pays no compile time.
* ``error_model="numpy"``: a division by zero gives inf/NaN as in NumPy
  instead of raising, and no per-division zero checks are emitted.
* ``nogil=True``: kernels release the GIL, so Python threads can run them
  concurrently.
* ``fastmath=FASTMATH_FLAGS``: ``reassoc`` (vectorised sum reductions),
  ``contract`` (fused multiply-add), ``arcp`` (reciprocal instead of
  division) and ``nsz`` (ignore the sign of zero).  Never ``nnan`` or
  ``ninf``: with them LLVM may assume no NaN/inf exists and a NaN logit
  would become a finite loss.  The precision-critical steps of the
  elementary functions in :mod:`._math` go through ``llvm.fmuladd``
  intrinsics, which ``reassoc`` cannot rewrite.

``tests/test_kernel_flags.py`` checks that no kernel sets its own options.
"""

import numba

FASTMATH_FLAGS = frozenset({"reassoc", "contract", "arcp", "nsz"})

JIT_OPTIONS = dict(
    cache=True,
    nogil=True,
    error_model="numpy",
    fastmath=set(FASTMATH_FLAGS),
)


def jit(func):
    """Compile ``func`` serially with numloss's options (lazily, on first call)."""
    return numba.njit(**JIT_OPTIONS)(func)


def jit_inline(func):
    """A small helper inlined into its callers at the Numba IR level."""
    return numba.njit(inline="always", **JIT_OPTIONS)(func)


def jit_parallel(func):
    """Compile ``func`` with ``parallel=True`` (for its ``prange`` loops)."""
    return numba.njit(parallel=True, **JIT_OPTIONS)(func)
