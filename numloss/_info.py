"""``numloss info``: the facts about this machine and environment that a bug report needs."""

import os
import platform
import sys
from collections.abc import Mapping
from typing import cast

#: vector features worth naming (the kernels are compiled for the host CPU)
_VECTOR_FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_bf16", "amx_bf16",
                 "asimd", "sve")


def _cpu() -> tuple[str, list[str]]:
    flags: set[str]
    model, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name":
                    model = value.strip()
                elif key in ("flags", "Features") and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    return model, [flag for flag in _VECTOR_FLAGS if flag in flags]


def _blas_name() -> str:
    import numpy as np

    try:
        config = np.show_config(mode="dicts")
        blas = config["Build Dependencies"]["blas"]
        return f"{blas.get('name', '?')} {blas.get('version', '')}".strip()
    except Exception:  # show_config's layout is NumPy's, not ours: report what is missing, never fail
        return "unknown (numpy.show_config gave no BLAS entry)"


def collect() -> dict[str, str | int | bool | None]:
    """A dict of versions, CPU, threading layer, BLAS and cache facts (all strings, numbers or booleans)."""
    import llvmlite
    import numba
    import numpy as np

    import numloss

    from . import _blas, _parallel
    from ._kernels import _jit

    model, vector = _cpu()
    layer = _parallel.threading_layer()
    cache = _jit.cache_location()
    return {
        "numloss": numloss.__version__,
        "python": f"{platform.python_version()} ({sys.executable})",
        "numpy": np.__version__,
        "numba": numba.__version__,
        "llvmlite": llvmlite.__version__,
        "platform": platform.platform(),
        "cpu": model,
        "cores_available": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "vector_features": " ".join(vector) or "none of " + " ".join(_VECTOR_FLAGS),
        "numba_threads": numba.get_num_threads(),
        "threading_layer": layer,
        "tbb_loaded": layer == "tbb",
        "NUMBA_THREADING_LAYER": numba.config.THREADING_LAYER,  # type: ignore[attr-defined]  # set at run time
        "blas": _blas_name(),
        "linear_ce_weight_gradient": ("BLAS gemm with beta = 1 into d_weight (NumPy's OpenBLAS)"
                                      if _blas.available(np.dtype(np.float32))
                                      else "NumPy matmul into a blocked temporary (NumPy's BLAS not usable)"),
        "kernel_cache": cache or "none (no writable location: kernels compile in every process)",
        "kernel_cache_writable": bool(cache) and os.access(cast(str, cache), os.W_OK),
    }


def format_facts(facts: Mapping[str, object]) -> str:
    """One ``name: value`` line per fact."""
    width = max(len(key) for key in facts)
    return "\n".join(f"{key:<{width}}  {value}" for key, value in facts.items())
