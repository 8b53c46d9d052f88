"""The one place where numloss's kernels get their compiler options.

Every kernel is compiled with the same settings:

* ``cache=True``: compiled code is written to disk on first use per dtype,
  so a second process pays no compile time.  Numba looks for a writable
  place in this order: ``NUMBA_CACHE_DIR``, the package's ``__pycache__``,
  the user's cache directory.  Where none is writable (a read-only install
  with no writable home: containers run as another user, nix, docs
  builders), Numba would raise at the first call; numloss instead uses a
  private directory under the system's temporary directory, and compiles
  without a disk cache if even that fails, with one :class:`CacheWarning`
  naming ``NUMBA_CACHE_DIR`` (:func:`cache_location`).
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

from __future__ import annotations

import os
import tempfile
import warnings
from collections.abc import Callable
from typing import Any, TypeVar, cast

import numba
from numba.core import caching
from numba.core.dispatcher import Dispatcher

#: a kernel's Python function (its annotations are for type checkers: Numba ignores them)
_F = TypeVar("_F", bound=Callable[..., Any])

FASTMATH_FLAGS = frozenset({"reassoc", "contract", "arcp", "nsz"})


class CacheWarning(UserWarning):
    """Numba's disk cache is not where Numba would put it (or not used at all)."""


def _probe() -> None:  # a function of this folder: where its cache can go, every kernel's can
    pass


def _fallback_cache_dir() -> str:
    return os.path.join(tempfile.gettempdir(), f"numloss-numba-cache-{os.getuid()}")


def _private_writable_dir(path: str) -> bool:
    """Create ``path`` (mode 0700) if needed; True if it is ours and writable."""
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
        if os.stat(path).st_uid != os.getuid():
            return False
        tempfile.TemporaryFile(dir=path).close()
    except OSError:
        return False
    return True


def _choose_cache() -> bool:
    """``True`` to compile with ``cache=True`` (after a fallback directory if needed), else ``False``."""
    try:
        caching.FunctionCache(_probe)
        return True
    except RuntimeError:  # "cannot cache function ...: no locator available"
        pass
    fallback = _fallback_cache_dir()
    if _private_writable_dir(fallback):
        numba.config.CACHE_DIR = fallback  # type: ignore[attr-defined]  # (no stub entry: set at import)
        warnings.warn(
            f"numloss: no writable location for Numba's disk cache (the package directory, the user's cache "
            f"directory and NUMBA_CACHE_DIR are not writable); caching compiled kernels in {fallback}. Set "
            f"NUMBA_CACHE_DIR to a writable directory to choose where.", CacheWarning, stacklevel=3)
        return True
    warnings.warn(
        "numloss: no writable location for Numba's disk cache (the package directory, the user's cache directory, "
        f"NUMBA_CACHE_DIR and {fallback} are not writable); kernels compile in every new process. Set "
        "NUMBA_CACHE_DIR to a writable directory to keep them.", CacheWarning, stacklevel=3)
    return False


def cache_location() -> str | None:
    """Where the kernels' compiled code is cached: a directory, or ``None`` (no disk cache)."""
    if not JIT_OPTIONS["cache"]:
        return None
    return cast(str, caching.FunctionCache(_probe).cache_path)  # (numba.core.caching: no annotations)


JIT_OPTIONS: dict[str, Any] = dict(
    cache=_choose_cache(),
    nogil=True,
    error_model="numpy",
    fastmath=set(FASTMATH_FLAGS),
)


#: the options of the ``@overload`` implementations (inlined into the kernels: the kernels' own math flags)
OVERLOAD_OPTIONS: Any = {k: JIT_OPTIONS[k] for k in ("fastmath", "error_model")}


def jit(func: _F) -> Dispatcher[_F]:
    """Compile ``func`` serially with numloss's options (lazily, on first call)."""
    return cast("Dispatcher[_F]", numba.njit(**JIT_OPTIONS)(func))


def jit_inline(func: _F) -> Dispatcher[_F]:
    """A small helper inlined into its callers at the Numba IR level.

    (Measured: as plain ``@jit`` functions left to LLVM, the helpers compiled
    3x faster but were not inlined into the in-place loops, which then ran
    5-17x slower.)
    """
    return cast("Dispatcher[_F]", numba.njit(inline="always", **JIT_OPTIONS)(func))


def jit_parallel(func: _F) -> Dispatcher[_F]:
    """Compile ``func`` with ``parallel=True`` (for its ``prange`` loops)."""
    return cast("Dispatcher[_F]", numba.njit(parallel=True, **JIT_OPTIONS)(func))
