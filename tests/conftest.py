"""Shared helpers for the numloss test suite.

Every comparison goes through :func:`assert_close`, whose tolerances depend
only on the dtype numloss computed in: float64 results must agree with the
float64 reference (``tests/reference.py``) to about 1e-12, float32 results
(the reference is evaluated on the same float32 inputs cast to float64) to
about 1e-5.  The absolute tolerance is scaled by the largest finite value of
the expected array, so gradients of ``"mean"`` losses (divided by N) are held
to the same relative standard as the rest.
"""

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

DTYPES = (np.float32, np.float64)
REDUCTIONS = ("mean", "sum", "none")

#: relative tolerance, and absolute tolerance as a fraction of max |expected|
TOL = {
    np.dtype(np.float32): (1e-5, 1e-6),
    np.dtype(np.float64): (1e-12, 1e-13),
}

settings.register_profile(
    "numloss",
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    print_blob=True,
)
settings.load_profile("numloss")


def pytest_sessionstart(session):
    """Fill Numba's disk cache once, before any test, in parallel worker processes (``numloss.warmup``).

    Every kernel a test reaches through the public functions is then loaded,
    not compiled, here and in every subprocess and dask worker the tests
    start (they read the same cache).  ``NUMLOSS_TEST_WARMUP=0`` skips it.
    """
    if os.environ.get("NUMLOSS_TEST_WARMUP", "1") == "0":
        return
    import numloss

    report = numloss.warmup()
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(str(report))


def pytest_configure(config):
    # When a hypothesis test fails, its pytest plugin imports libcst (to print
    # a patch), which uses a deprecated mypy_extensions API; with warnings as
    # errors that turns the test's failure report into an INTERNALERROR.
    config.addinivalue_line(
        "filterwarnings", "ignore:mypy_extensions.TypedDict is deprecated:DeprecationWarning"
    )


def dtype_id(dtype):
    return np.dtype(dtype).name


def assert_close(got, want, dtype, *, rtol=None, atol_frac=None, scale=0.0, what=""):
    """``got`` (numloss, computed in ``dtype``) agrees with ``want`` (float64 reference).

    NaN and +-inf must sit at the same positions; the shapes must be equal.
    The absolute tolerance is ``atol_frac`` times the larger of ``scale`` and
    max |want|: pass as ``scale`` the size of the terms a result is the
    difference of (a gradient ``p - t`` with ``p`` ~ ``t`` ~ 1 can only be
    as accurate as 1 in the dtype, however small the difference).  Expected
    values beyond the dtype's range must come out as +-inf.
    """
    dtype = np.dtype(dtype)
    r, a = TOL[dtype]
    rtol = r if rtol is None else rtol
    atol_frac = a if atol_frac is None else atol_frac
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape, f"{what}: shape {got.shape} != expected {want.shape}"
    big = np.finfo(dtype).max
    want = np.where(np.abs(want) > big, np.copysign(np.inf, want), want)
    finite = np.isfinite(want)
    scale = max(scale, float(np.max(np.abs(want[finite]))) if finite.any() else 1.0)
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol_frac * max(scale, 1e-300), equal_nan=True,
                               err_msg=what)


def assert_loss_type(loss, dtype, reduction, shape):
    """The loss is a NumPy scalar of ``dtype`` (mean/sum) or an array of ``shape`` (none)."""
    dtype = np.dtype(dtype)
    if reduction == "none":
        assert isinstance(loss, np.ndarray), type(loss)
        assert loss.dtype == dtype
        assert loss.shape == tuple(shape)
    else:
        assert isinstance(loss, np.floating) and not isinstance(loss, np.ndarray), type(loss)
        assert loss.dtype == dtype


def softmax_batch_shape(shape, axis):
    shape = tuple(shape)
    axis = axis % len(shape)
    return shape[:axis] + shape[axis + 1:]


def make_softmax_inputs(rng, shape, axis, kind, dtype, *, scale=2.0, ignore_index=-100, n_ignored=0,
                        target_dtype=None):
    """Logits of ``shape`` and a target (class indices or probabilities along ``axis``)."""
    x = (rng.standard_normal(shape) * scale).astype(dtype)
    C = shape[axis]
    batch = softmax_batch_shape(shape, axis)
    if kind == "int":
        t = rng.integers(0, C, size=batch).astype(np.int64)
        if n_ignored:
            flat = t.reshape(-1)
            flat[rng.choice(flat.size, size=min(n_ignored, flat.size), replace=False)] = ignore_index
        if target_dtype is not None:
            t = t.astype(target_dtype)
    elif kind == "prob":
        t = rng.dirichlet(np.full(C, 0.7), size=batch)  # batch + (C,)
        t = np.moveaxis(t, -1, axis % len(shape)).astype(target_dtype or dtype)
    elif kind == "onehot":
        idx = rng.integers(0, C, size=batch)
        t = np.moveaxis(np.eye(C)[idx], -1, axis % len(shape)).astype(target_dtype or dtype)
    else:
        raise AssertionError(kind)
    return x, t


def central_difference(f, x, h=1e-6):
    """Gradient of the scalar function ``f`` at float64 ``x`` by central differences."""
    x = np.array(x, dtype=np.float64)
    g = np.empty_like(x)
    flat, gflat = x.reshape(-1), g.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + h
        fp = float(f(x))
        flat[i] = old - h
        fm = float(f(x))
        flat[i] = old
        gflat[i] = (fp - fm) / (2 * h)
    return g


@pytest.fixture
def rng(request):
    """A generator seeded from the test's node id: reproducible and distinct per test."""
    seed = sum(ord(c) * (i + 1) for i, c in enumerate(request.node.nodeid)) % (2**32)
    return np.random.default_rng(seed)
