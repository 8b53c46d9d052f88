"""Compile (or load from Numba's disk cache) every kernel a training script can reach, ahead of time.

numloss's kernels compile on first use and are cached on disk (``cache=True``,
see :mod:`numloss._kernels._jit`).  :func:`warmup` pays that cost up front:
for every loss of the registry (:mod:`numloss._registry`), every chosen dtype
and every kernel route of the loss (class indices, probabilities, the
few-classes tiles, ...) it calls the public functions on a few rows — the
plain form, ``_with_grad`` out of place and in place (``out=logits``) — once
with the serial kernels and once with the parallel ones.  The work is split
over worker processes (fresh interpreters; compilation is single-threaded
per process); each task holds the kernels of one route, so no two workers
compile the same kernel function at once.

``numloss warmup`` is the command-line form.  Recipes (docs/compilation.md):
warm a Docker image at build time into a fixed ``NUMBA_CACHE_DIR``; on a dask
cluster, on each machine before its workers start (or on one worker per
machine); in CI, before the tests.
"""

from __future__ import annotations

import dataclasses
import io
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from types import ModuleType
from typing import TYPE_CHECKING, Any, TextIO

from . import _registry

if TYPE_CHECKING:
    import numpy
    from numba.core.registry import CPUDispatcher

#: what :func:`run_task` returns: ``(label, compiled, loaded, seconds)``
TaskResult = tuple[str, int, int, float]
#: ``(args, kwargs)`` of one call of a loss
Call = tuple[tuple[Any, ...], dict[str, Any]]


@dataclasses.dataclass(frozen=True)
class Task:
    """The kernels of one route of one loss: serial and parallel, out of place and in place, each dtype."""

    loss: str
    route: int
    dtypes: tuple[str, ...]

    @property
    def label(self) -> str:
        route = _registry.BY_NAME[self.loss].routes[self.route]
        return f"{self.loss} [{route.label}] {'/'.join(self.dtypes)}"

    @property
    def after(self) -> tuple[str, int] | None:
        return _registry.BY_NAME[self.loss].routes[self.route].after


@dataclasses.dataclass
class Report:
    """What :func:`warmup` did: kernel specialisations compiled and loaded from the disk cache."""

    tasks: int = 0
    compiled: int = 0
    loaded: int = 0
    seconds: float = 0.0
    cache_dir: str | None = None
    jobs: int = 1

    def __str__(self) -> str:
        where = self.cache_dir or "no disk cache (kernels compile in every process)"
        return (f"numloss warmup: {self.tasks} tasks on {self.jobs} process(es) in {self.seconds:.1f} s: "
                f"{self.compiled} kernel specialisations compiled, {self.loaded} loaded from the cache ({where})")


def tasks(losses: Iterable[str] | None = None, dtypes: Iterable[str] = _registry.WARMUP_DTYPES) -> list[Task]:
    """The tasks for ``losses`` (names; all when ``None``) and ``dtypes``.

    The routes with more target dtypes (the longest to compile) come first,
    and routes that reuse another route's kernels (``Route.after``) last.
    """
    chosen = _registry.LOSSES if losses is None else [_registry.BY_NAME[name] for name in losses]
    dtypes = tuple(dtypes)
    for dt in dtypes:
        if dt not in _registry.WARMUP_DTYPES:
            raise ValueError(f"dtypes must be among {_registry.WARMUP_DTYPES}; got {dt!r}")
    out = [Task(loss.name, i, dtypes) for loss in chosen for i in range(len(loss.routes))]
    routes = {t: _registry.BY_NAME[t.loss].routes[t.route] for t in out}
    return sorted(out, key=lambda t: (t.after is not None, -len(routes[t].target_dtypes)))


def _inputs(loss: _registry.Loss, route: _registry.Route, dtype: numpy.dtype[Any], np: ModuleType) -> list[Call]:
    """``(args, kwargs)`` of a small call of ``loss`` that takes ``route``."""
    rng = np.random.default_rng(0)
    n, c = 4, route.num_classes
    opts = {k: (np.linspace(0.5, 2.0, c).astype(dtype) if v == "classes" else v) for k, v in route.options}
    if route.target == "index":
        t = rng.integers(0, c, size=n)
    elif route.target == "prob":
        t = np.full((n, c), 1.0 / c, dtype=dtype)
    else:
        t = None  # dense: per target dtype, below
    if loss.input == "hidden":
        hidden = rng.standard_normal((n, 8)).astype(dtype)
        weight = rng.standard_normal((c, 8)).astype(dtype)
        return [((hidden, weight, t), opts)]
    x = rng.uniform(-1.0, 1.0, size=(n, c)).astype(dtype)
    if t is not None:
        return [((x, t), opts)]
    return [((x, (rng.random((n, c)) < 0.5).astype(td or dtype)), opts) for td in route.target_dtypes]


def _kernel_dispatchers() -> list[CPUDispatcher]:
    from numba.core.registry import CPUDispatcher

    found = []
    for name, module in list(sys.modules.items()):
        if name.startswith("numloss._kernels.") and module is not None:
            found += [v for v in vars(module).values() if isinstance(v, CPUDispatcher)]
    return found


def _cache_counts() -> tuple[int, int]:
    hits = misses = 0
    for d in _kernel_dispatchers():
        stats = d.stats
        hits += sum(stats.cache_hits.values())
        misses += sum(stats.cache_misses.values())
    return hits, misses


def run_task(task: Task) -> TaskResult:
    """Make the calls of ``task`` in this process; returns ``(label, compiled, loaded, seconds)``.

    The serial kernels first: they compile the row functions, which the
    parallel drivers then only call.
    """
    import numpy as np

    import numloss

    from . import _parallel

    start = time.perf_counter()
    loss = _registry.BY_NAME[task.loss]
    route = loss.routes[task.route]
    plain = getattr(numloss, loss.name)
    with_grad = getattr(numloss, loss.with_grad)
    hits0, misses0 = _cache_counts()
    previous = _parallel._state["force"]
    try:
        for parallel in (False, True):
            _parallel._state["force"] = parallel
            for dtype in task.dtypes:
                for args, kwargs in _inputs(loss, route, np.dtype(dtype), np):
                    plain(*args, **kwargs)
                    with_grad(*args, **kwargs)
                    if dtype == "float16" and loss.input != "hidden":  # a float32 gradient of half logits
                        with_grad(*args, out=np.empty(args[0].shape, np.float32), **kwargs)
                    if loss.input != "hidden":
                        x = args[0].copy()
                        with_grad(x, *args[1:], out=x, **kwargs)
    finally:
        _parallel._state["force"] = previous
    hits, misses = _cache_counts()
    return task.label, misses - misses0, hits - hits0, time.perf_counter() - start


def _worker_main(argv: Sequence[str]) -> None:
    """``python -c ... loss route dtype...``: run one task, print its result as the last line (JSON)."""
    loss, route, *dtypes = argv
    print(json.dumps(run_task(Task(loss, int(route), tuple(dtypes)))))


def _run_in_subprocesses(todo: Sequence[Task], jobs: int, done: Callable[[int, TaskResult], None]) -> None:
    """Run ``todo`` in at most ``jobs`` fresh interpreters at a time, calling ``done(k, result)`` for each.

    Each task compiles kernel functions no other task compiles, so no two
    processes write one function's cache index at once; a task that reuses
    another's kernels (``after``) starts when that task has finished, and
    then loads them.  Plain subprocesses, not a multiprocessing pool: a
    spawned pool re-imports the caller's ``__main__``, which breaks a script
    that calls ``numloss.warmup()`` outside an ``if __name__ == "__main__"``
    guard, and a forked one would inherit Numba's thread pool.
    """
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    chosen = {t.loss for t in todo}
    pending = list(todo)
    finished = set()
    # Popen -> (task, stdout file, stderr file)
    running: dict[subprocess.Popen[str], tuple[Task, io.TextIOWrapper, io.TextIOWrapper]] = {}
    k = 0
    try:
        while pending or running:
            ready = [t for t in pending if t.after is None or t.after[0] not in chosen or t.after in finished]
            for task in ready[: jobs - len(running)]:
                pending.remove(task)
                out, err = tempfile.TemporaryFile("w+"), tempfile.TemporaryFile("w+")
                code = "import sys; from numloss._warmup import _worker_main; _worker_main(sys.argv[1:])"
                proc = subprocess.Popen([sys.executable, "-c", code, task.loss, str(task.route), *task.dtypes],
                                        stdout=out, stderr=err, stdin=subprocess.DEVNULL, text=True, env=env)
                running[proc] = (task, out, err)
            if not running:
                raise RuntimeError(f"numloss warmup: tasks wait for tasks that never ran: {pending}")
            time.sleep(0.05)
            for proc in [p for p in running if p.poll() is not None]:
                task, out, err = running.pop(proc)
                out.seek(0)
                err.seek(0)
                lines = out.read().splitlines()
                if proc.returncode != 0 or not lines:
                    raise RuntimeError(f"numloss warmup: {task.label} failed (exit code {proc.returncode}):\n"
                                       f"{err.read()[-4000:]}")
                out.close()
                err.close()
                k += 1
                done(k, tuple(json.loads(lines[-1])))
                finished.add((task.loss, task.route))
    finally:
        for proc, (_, out, err) in running.items():
            proc.kill()
            proc.wait()
            out.close()
            err.close()


def _default_jobs() -> int:
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    if multiprocessing.current_process().daemon:  # e.g. some dask workers: no child processes allowed
        return 1
    return max(1, cores)


def warmup(losses: Iterable[str] | None = None, dtypes: Iterable[str] = _registry.WARMUP_DTYPES, *,
           jobs: int | None = None, progress: TextIO | None = None) -> Report:
    """Compile, or load from Numba's disk cache, every kernel numloss's losses can call.

    Parameters
    ----------
    losses : iterable of str, optional
        Public loss names (``"softmax_cross_entropy"``, ...); all by default.
    dtypes : iterable of {"float32", "float64", "float16"}
        The logits' dtypes to warm ("float16" warms the half-precision
        drivers, which bfloat16 inputs share).
    jobs : int, optional
        Worker processes that compile side by side (compilation is
        single-threaded); default the cores available (1 inside a daemonic
        process such as a multiprocessing pool worker).  ``jobs=1`` works in
        this process, which then has every kernel loaded (while it runs,
        other threads' calls in this process take the serial or parallel
        kernels it is compiling: the same results).
    progress : file, optional
        Where to print one line per finished task (e.g. ``sys.stderr``).

    Returns
    -------
    Report
        Tasks, kernel specialisations compiled and loaded, seconds, the cache
        directory (``None`` when kernels cannot be cached on disk).

    Examples
    --------
    >>> import numloss
    >>> report = numloss.warmup(["softmax_cross_entropy"], ["float32"], jobs=1)
    >>> report.compiled + report.loaded > 0
    True
    """
    from ._kernels import _jit

    start = time.perf_counter()
    todo = tasks(losses, dtypes)
    jobs = _default_jobs() if jobs is None else int(jobs)
    if jobs < 1:
        raise ValueError(f"jobs must be a positive integer; got {jobs!r}")
    jobs = min(jobs, len(todo)) or 1
    report = Report(tasks=len(todo), cache_dir=_jit.cache_location(), jobs=jobs)

    def done(k: int, result: TaskResult) -> None:
        label, compiled, loaded, seconds = result
        report.compiled += compiled
        report.loaded += loaded
        if progress is not None:
            print(f"[{k}/{len(todo)}] {label}: {compiled} compiled, {loaded} loaded, {seconds:.1f} s",
                  file=progress, flush=True)

    if jobs == 1 or report.cache_dir is None:  # without a disk cache, other processes' work is lost
        report.jobs = 1
        for k, task in enumerate(todo, 1):
            done(k, run_task(task))
    else:
        _run_in_subprocesses(todo, jobs, done)
    report.seconds = time.perf_counter() - start
    return report
