"""When numloss runs a kernel on several threads, and on which threading layer.

Numba has three threading layers (numba docs, "The Threading Layers"):

* ``tbb``: safe for concurrent calls from many Python threads and after
  ``os.fork()``.
* ``omp`` (GNU OpenMP, what a fresh ``pip install numba`` gets on Linux):
  thread-safe, but a forked child that enters a parallel region dies.
* ``workqueue``: not thread-safe; concurrent parallel calls abort.

numloss depends on the ``tbb`` wheel and makes Numba able to use it: the
wheel puts ``libtbb.so.12`` in the environment's ``lib/``, which the dynamic
loader does not search, so Numba would silently fall back to OpenMP.  Before
the first parallel call numloss loads that library with ``RTLD_GLOBAL`` (only
when the user has not chosen a layer with ``NUMBA_THREADING_LAYER``), so
Numba's default priority (tbb, omp, workqueue) then picks ``tbb``.

Whatever layer is in use, numloss stays safe:

* in a forked child, parallel kernels are used only under ``tbb``; under the
  other layers the child runs the serial kernels;
* under ``workqueue``, parallel calls are serialised by a lock.

Small inputs always run serially: launching threads costs more than it saves.
"""

import ctypes
import os
import sys
import threading
from collections.abc import Callable
from typing import TypedDict, TypeVar

import numba

_R = TypeVar("_R")

#: Below this many logits a kernel runs on the calling thread only.
PARALLEL_MIN_ELEMENTS = 1 << 15


class _State(TypedDict):
    layer: str | None  # the threading layer, once Numba's pool is started
    forked: bool  # this process is a forked child
    force: bool | None  # numloss.warmup: parallel or serial kernels whatever the size


_state: _State = {"layer": None, "forked": False, "force": None}
_init_lock = threading.Lock()
_workqueue_lock = threading.Lock()


def _after_fork_in_child() -> None:
    _state["forked"] = True


os.register_at_fork(after_in_child=_after_fork_in_child)


def _tbb_candidates() -> list[str]:
    seen = []
    for prefix in (sys.prefix, sys.base_prefix, sys.exec_prefix):
        path = os.path.join(prefix, "lib", "libtbb.so.12")
        if path not in seen:
            seen.append(path)
    return seen


def preload_tbb() -> bool:
    """Load the tbb wheel's ``libtbb.so.12`` globally; True if it loaded."""
    for path in _tbb_candidates():
        if os.path.exists(path):
            try:
                ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
                return True
            except OSError:
                continue
    return False


if numba.config.THREADING_LAYER == "default":  # type: ignore[attr-defined]
    # as early as numloss can: before anything (ours or the user's) starts Numba's pool
    preload_tbb()


def threading_layer() -> str:
    """The Numba threading layer numloss's parallel kernels run on.

    Starts Numba's thread pool on first use (after making ``tbb`` loadable).
    """
    if _state["layer"] is None:
        with _init_lock:
            if _state["layer"] is None:
                if numba.config.THREADING_LAYER == "default":  # type: ignore[attr-defined]
                    preload_tbb()
                from numba.np.ufunc.parallel import _launch_threads

                _launch_threads()
                # (documented as numba.threading_layer, but missing from numba's __all__)
                _state["layer"] = numba.threading_layer()  # type: ignore[attr-defined]
    assert _state["layer"] is not None  # (set above, by this call or an earlier one)
    return _state["layer"]


def use_parallel(num_elements: int, num_rows: int) -> bool:
    """Whether a kernel over ``num_elements`` logits should use threads."""
    if _state["force"] is not None:  # numloss.warmup: compile the serial or the parallel kernels
        return _state["force"]
    if num_rows < 2 or num_elements < PARALLEL_MIN_ELEMENTS:
        return False
    # threading_layer() first: numba.get_num_threads() starts Numba's pool, and
    # the pool must start after libtbb is loadable, or it picks OpenMP
    layer = threading_layer()
    if numba.get_num_threads() < 2:
        return False
    if _state["forked"] and layer != "tbb":
        return False
    return True


def run(serial_kernel: Callable[..., _R], parallel_kernel: Callable[..., _R], parallel: bool, *args: object
        ) -> _R:
    """Call the parallel kernel when ``parallel`` is true, else the serial one."""
    if not parallel:
        return serial_kernel(*args)
    if _state["layer"] == "workqueue":
        with _workqueue_lock:
            return parallel_kernel(*args)
    return parallel_kernel(*args)
