"""Threads: use after os.fork() from a parent that never started the pool, the threading layer, one thread.

Concurrent calls from eight Python threads and a child forked while the
parent's pool runs are checked for every loss in ``test_contract.py``.

Each check runs in a fresh interpreter (``subprocess``), so that an abort or a
deadlock in Numba's thread pool shows up as a failed test (return code, output,
timeout) instead of killing or hanging the test session.
"""

import os
import subprocess
import sys
import textwrap

import pytest

TIMEOUT = 600  # the kernels are loaded from the cache the session's warmup filled (conftest)

COMMON = r"""
import os, sys, traceback
import numpy as np
import numba
import numloss
from numloss import _parallel

N, C = 2048, 1000
rng = np.random.default_rng(0)

def cases(family, check=True):
    out = []
    for dtype in (np.float32, np.float64):
        x = rng.standard_normal((N, C)).astype(dtype)
        if family == "softmax":
            y = rng.integers(0, C, N)
            y[::7] = -100
            t = rng.dirichlet(np.ones(C), size=N).astype(dtype)
            w = np.linspace(0.5, 2.0, C)
            out.append((f"softmax-int-{dtype.__name__}", lambda x=x, y=y, w=w: numloss.softmax_cross_entropy_with_grad(
                x, y, weight=w, label_smoothing=0.1, z_loss=1e-4)))
            out.append((f"softmax-prob-{dtype.__name__}", lambda x=x, t=t: numloss.softmax_cross_entropy_with_grad(
                x, t, reduction="sum")))
        else:
            t = (rng.uniform(size=(N, C)) < 0.1).astype(dtype)
            pw = np.linspace(1.0, 3.0, C)
            out.append((f"sigmoid-{dtype.__name__}", lambda x=x, t=t, pw=pw: numloss.sigmoid_cross_entropy_with_grad(
                x, t, pos_weight=pw)))
    if check:  # (starts Numba's thread pool)
        assert _parallel.use_parallel(N * C, N), "inputs too small to take the parallel kernels"
    return out

def same(a, b):
    (la, ga), (lb, gb) = a, b
    return np.array_equal(la, lb, equal_nan=True) and np.array_equal(ga, gb, equal_nan=True)
"""

FORK = COMMON + r"""
family, warm = sys.argv[1], sys.argv[2] == "warm"
# cold: the parent starts Numba's thread pool only after the fork, so the
# child is the first to start one
todo = cases(family, check=warm)
expected = {name: f() for name, f in todo} if warm else None
pid = os.fork()
if pid == 0:
    code = 0
    try:
        assert _parallel.use_parallel(N * C, N), "the child does not use the parallel kernels"
        results = {name: f() for name, f in todo}
        if warm:
            for name in results:
                if not same(results[name], expected[name]):
                    print("child result differs:", name, flush=True)
                    code = 3
        else:
            np.savez("{tmp}/child.npz", **{n + "-loss": np.asarray(r[0]) for n, r in results.items()},
                     **{n + "-grad": r[1] for n, r in results.items()})
    except BaseException:
        traceback.print_exc()
        code = 4
    sys.stdout.flush()
    os._exit(code)
_, status = os.waitpid(pid, 0)
code = os.waitstatus_to_exitcode(status)
assert code == 0, f"child exited with {code}"
if not warm:
    expected = {name: f() for name, f in todo}
    saved = np.load("{tmp}/child.npz")
    for name in expected:
        assert np.array_equal(saved[name + "-loss"], expected[name][0], equal_nan=True), name
        assert np.array_equal(saved[name + "-grad"], expected[name][1], equal_nan=True), name
print("FORK-OK", _parallel.threading_layer())
"""


def _run(script, *args, env=None):
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script), *args],
        capture_output=True, text=True, timeout=TIMEOUT, env=env, cwd=os.path.dirname(os.path.dirname(__file__)),
    )
    return proc, f"return code {proc.returncode}\nstdout:\n{proc.stdout[-3000:]}\nstderr (end):\n{proc.stderr[-3000:]}"


@pytest.mark.parametrize("family", ["softmax", "sigmoid"])
def test_calls_after_fork_work_in_the_child_when_the_parent_never_started_the_pool(family, tmp_path):
    """The child is the first to start Numba's pool (the parent's pool running at fork time: test_contract.py)."""
    warm = "cold"
    proc, report = _run(FORK.replace("{tmp}", str(tmp_path)), family, warm)
    assert proc.returncode == 0 and "FORK-OK" in proc.stdout, report


def test_threading_layer_is_tbb_in_a_fresh_process():
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_THREADING_LAYER"}
    script = """
        import numba, numpy as np
        from numloss import _parallel
        layer = _parallel.threading_layer()
        import numloss
        x = np.zeros((256, 256))
        numloss.softmax_cross_entropy_with_grad(x, np.zeros(256, dtype=np.int64))
        print("LAYER", layer, numba.threading_layer())
    """
    proc, report = _run(script, env=env)
    assert proc.returncode == 0, report
    assert "LAYER tbb tbb" in proc.stdout, report


def test_set_num_threads_one_gives_the_same_results():
    script = COMMON + r"""
todo = cases("softmax")
full = {name: f() for name, f in todo}
numba.set_num_threads(1)
assert not _parallel.use_parallel(N * C, N)
for name, f in todo:
    loss, grad = f()
    tol = 1e-6 if "float32" in name else 1e-13
    np.testing.assert_allclose(loss, full[name][0], rtol=tol)
    np.testing.assert_allclose(grad, full[name][1], rtol=tol, atol=tol * np.abs(full[name][1]).max())
print("ONE-THREAD-OK")
"""
    proc, report = _run(script)
    assert proc.returncode == 0 and "ONE-THREAD-OK" in proc.stdout, report
