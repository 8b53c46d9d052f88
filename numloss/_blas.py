"""``C += A.T @ B`` through NumPy's own BLAS, when it can be found safely.

:func:`numloss.linear_cross_entropy_with_grad` accumulates
``d_weight += g.T @ hidden[chunk]`` once per chunk of rows.  NumPy's
``matmul`` has no accumulate mode (BLAS ``beta = 1``), so without one each
chunk needs a ``(V, D)`` product temporary (as large as ``d_weight`` itself)
or a blocked ``+=`` pass that re-reads and re-writes ``d_weight``
single-threaded.  The NumPy wheels on PyPI ship OpenBLAS as
``numpy.libs/libscipy_openblas64_*.so`` (ILP64, symbols prefixed
``scipy_``), already loaded by NumPy; calling its ``cblas_?gemm`` with
``beta = 1`` lets the multithreaded GEMM kernel update ``d_weight`` in place.

Only that library and those exact symbols are used (their integer width is
known from the name); any other NumPy build (conda MKL, system BLAS) gets
``None`` from :func:`gemm_tn_accumulate` and the caller falls back to
NumPy's ``matmul`` into a small blocked temporary.  ctypes releases the GIL
during the call, as NumPy does around its own BLAS calls.
"""

import ctypes
import glob
import os
import threading
from typing import Any, TypedDict

import numpy as np
from numpy.typing import DTypeLike

from ._typing import AnyArray

_CBLAS_ROW_MAJOR = 101
_CBLAS_NO_TRANS = 111
_CBLAS_TRANS = 112

#: (symbol prefix, integer type) in order of preference
_CANDIDATES = (("scipy_cblas_{}gemm64_", ctypes.c_int64), ("scipy_cblas_{}gemm", ctypes.c_int32))


class _State(TypedDict):
    loaded: bool
    gemm: dict[np.dtype[Any], Any]  # dtype -> its cblas_?gemm (a ctypes function)


_state: _State = {"loaded": False, "gemm": {}}
_lock = threading.Lock()
#: set to False (e.g. in tests) to force the NumPy-only fallback
enabled = True


def _numpy_blas_libraries() -> list[str]:
    root = os.path.dirname(os.path.dirname(np.__file__))
    return sorted(glob.glob(os.path.join(root, "numpy.libs", "libscipy_openblas*.so*")))


def _load() -> None:
    with _lock:
        if _state["loaded"]:
            return
        for path in _numpy_blas_libraries():
            try:
                lib = ctypes.CDLL(path)
            except OSError:
                continue
            for pattern, int_t in _CANDIDATES:
                found = {}
                for letter, real_t in (("s", ctypes.c_float), ("d", ctypes.c_double)):
                    fn = getattr(lib, pattern.format(letter), None)
                    if fn is None:
                        break
                    fn.restype = None
                    fn.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int, int_t, int_t, int_t, real_t,
                                   ctypes.c_void_p, int_t, ctypes.c_void_p, int_t, real_t, ctypes.c_void_p, int_t]
                    found[np.dtype(np.float32 if letter == "s" else np.float64)] = fn
                if len(found) == 2:
                    _state["gemm"] = found
                    break
            if _state["gemm"]:
                break
        _state["loaded"] = True


def available(dtype: DTypeLike) -> bool:
    """Whether :func:`gemm_tn_accumulate` can run for ``dtype``."""
    if not enabled:
        return False
    if not _state["loaded"]:
        _load()
    return np.dtype(dtype) in _state["gemm"]


def gemm_tn_accumulate(a: AnyArray, b: AnyArray, c: AnyArray, beta: float) -> AnyArray:
    """``c = a.T @ b + beta * c`` in place; ``a (K, M)``, ``b (K, N)``, ``c (M, N)``, all C-contiguous.

    The caller checks :func:`available` first.  ``beta = 0`` overwrites ``c``
    (whatever it holds, NaN included, as BLAS defines it).
    """
    K, M = a.shape
    N = b.shape[1]
    assert b.shape[0] == K and c.shape == (M, N)
    assert a.dtype == b.dtype == c.dtype
    assert a.flags.c_contiguous and b.flags.c_contiguous and c.flags.c_contiguous and c.flags.writeable
    if M == 0 or N == 0:
        return c
    if K == 0:
        if beta == 0.0:
            c[...] = 0
        elif beta != 1.0:
            c *= beta
        return c
    if not _state["loaded"]:
        _load()
    fn = _state["gemm"][c.dtype]
    fn(_CBLAS_ROW_MAJOR, _CBLAS_TRANS, _CBLAS_NO_TRANS, M, N, K, 1.0,
       a.ctypes.data, max(1, M), b.ctypes.data, max(1, N), beta, c.ctypes.data, max(1, N))
    return c
