"""The elementary functions of numloss._kernels._math, each alone, in float32 and float64.

They are called through small ``@njit`` wrappers compiled with numloss's own
options (the production fast-math flags), and compared with mpmath (float64)
or with NumPy's float64 functions (float32: float64 is exact enough to measure
a float32 ulp).  Errors are measured in ulp of the correctly rounded result.
"""

import math

import mpmath
import numba
import numpy as np
import pytest
from conftest import DTYPES, dtype_id

from numloss._kernels import _math as M
from numloss._kernels._jit import JIT_OPTIONS
from numloss._kernels._math import (
    exp,
    exp_nonpositive,
    expm1,
    log1p_unit,
    maxnum,
    pow2_of_integral,
    rint,
    tanh_and_sech2,
)


@numba.njit(**JIT_OPTIONS)
def _elementary(x, out):
    for i in range(x.shape[0]):
        v = x[i]
        out[0, i] = exp(v)
        out[1, i] = expm1(v)
        out[2, i] = log1p_unit(v)
        th, s2 = tanh_and_sech2(v)
        out[3, i] = th
        out[4, i] = s2
        out[5, i] = exp_nonpositive(v)


@numba.njit(**JIT_OPTIONS)
def _intrinsics(a, b, out):
    for i in range(a.shape[0]):
        out[0, i] = maxnum(a[i], b[i])
        out[1, i] = rint(a[i])
        out[2, i] = pow2_of_integral(b[i])


EXP, EXPM1, LOG1P, TANH, SECH2, EXP_NONPOSITIVE = range(6)


def elementary(x, dtype):
    x = np.asarray(x, dtype=dtype)
    out = np.empty((6, x.size), dtype=dtype)
    _elementary(x, out)
    return out


def ulp_error(got, exact, dtype):
    """|got - exact| in units of the spacing of ``exact`` rounded to ``dtype`` (0 where both are equal)."""
    exact = np.asarray(exact, dtype=np.float64)
    got = np.asarray(got, dtype=np.float64)
    with np.errstate(over="ignore"):
        spacing = np.spacing(np.abs(exact.astype(dtype))).astype(np.float64)
    err = np.abs(got - exact) / spacing
    return np.where(got == exact, 0.0, err)


def exact_values(fn, x, dtype):
    """``fn`` at ``x``: mpmath at 40 digits for float64, NumPy float64 for float32 inputs."""
    x = np.asarray(x, dtype=dtype)
    if np.dtype(dtype) == np.float32:
        f = {"exp": np.exp, "expm1": np.expm1, "log1p": np.log1p, "tanh": np.tanh,
             "sech2": lambda v: 1.0 / np.cosh(v) ** 2}[fn]
        with np.errstate(over="ignore"):
            return f(x.astype(np.float64))
    mpmath.mp.dps = 40
    f = {"exp": mpmath.exp, "expm1": mpmath.expm1, "log1p": mpmath.log1p, "tanh": mpmath.tanh,
         "sech2": lambda v: mpmath.sech(v) ** 2}[fn]
    return np.array([float(f(mpmath.mpf(float(v)))) for v in x])


#: the range where exp's result is finite and nonzero, and where it is subnormal
EXP_RANGE = {np.dtype(np.float32): (-103.97, 88.72, -87.33), np.dtype(np.float64): (-745.13, 709.78, -708.39)}
N64 = 2500  # mpmath points per range (float64); float32 uses 20x as many
# _math.py promises "a few ulp" for expm1, log1p_unit and tanh; measured maxima
# are about 2 ulp (float32 log1p_unit: 2.07 ulp, float32 tanh: 2.3 ulp), so
# 3 ulp leaves no room for a real regression.  exp is held to 1 ulp.
FEW_ULP = 3.0


def _samples(rng, dtype, lo, hi, n):
    n = n * (20 if np.dtype(dtype) == np.float32 else 1)
    return rng.uniform(lo, hi, n).astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_exp_within_one_ulp(dtype):
    rng = np.random.default_rng(1)
    lo, hi, sub = EXP_RANGE[np.dtype(dtype)]
    x = np.concatenate([
        _samples(rng, dtype, lo, hi, N64),
        _samples(rng, dtype, -1.0, 1.0, N64 // 2),
        _samples(rng, dtype, lo, sub, N64 // 2),  # subnormal results
        np.array([lo, hi, sub, 0.5 * math.log(2), -0.5 * math.log(2), 1e-30], dtype=dtype),
    ])
    got = elementary(x, dtype)[EXP]
    err = ulp_error(got, exact_values("exp", x, dtype), dtype)
    assert err.max() <= 1.0, (x[np.argmax(err)], err.max())


#: exp_nonpositive (the softmax's exp(x - max)) flushes its results to 0 below this
EXP_NONPOSITIVE_FLUSH = {np.dtype(np.float32): -87.0, np.dtype(np.float64): -708.0}


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_exp_nonpositive_within_one_ulp_and_its_special_values(dtype):
    rng = np.random.default_rng(3)
    flush = EXP_NONPOSITIVE_FLUSH[np.dtype(dtype)]
    x = np.concatenate([
        _samples(rng, dtype, flush, 0.0, N64),
        _samples(rng, dtype, -1.0, 0.0, N64 // 2),
        np.array([flush, -0.5 * math.log(2), -1e-30, -np.finfo(dtype).smallest_subnormal], dtype=dtype),
    ])
    got = elementary(x, dtype)[EXP_NONPOSITIVE]
    err = ulp_error(got, exact_values("exp", x, dtype), dtype)
    assert err.max() <= 1.0, (x[np.argmax(err)], err.max())
    # NaN stays NaN (a NaN logit makes its row NaN); -inf (a masked class) and
    # everything below the flush point give exactly 0; both zeros give 1
    below = np.nextafter(np.asarray(flush, dtype=dtype), dtype(-np.inf))
    special = np.array([np.nan, -np.inf, -np.finfo(dtype).max, below, 2 * flush, 0.0, -0.0], dtype=dtype)
    np.testing.assert_array_equal(elementary(special, dtype)[EXP_NONPOSITIVE], [np.nan, 0, 0, 0, 0, 1, 1])


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_expm1_within_a_few_ulp(dtype):
    rng = np.random.default_rng(2)
    lo = -30.0 if np.dtype(dtype) == np.float32 else -60.0
    hi = EXP_RANGE[np.dtype(dtype)][1] - 0.01
    tiny = np.finfo(dtype).smallest_subnormal
    x = np.concatenate([
        _samples(rng, dtype, lo, hi, N64),
        _samples(rng, dtype, -1.0, 1.0, N64),
        _samples(rng, dtype, -1e-5, 1e-5, N64 // 4),
        (10.0 ** rng.uniform(-40 if np.dtype(dtype) == np.float32 else -300, -5, 200)).astype(dtype),
        np.array([tiny, -tiny, np.finfo(dtype).tiny, 0.34, -0.34, 0.35, -0.35], dtype=dtype),
    ])
    got = elementary(x, dtype)[EXPM1]
    err = ulp_error(got, exact_values("expm1", x, dtype), dtype)
    assert err.max() <= FEW_ULP, (x[np.argmax(err)], err.max())


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_log1p_unit_within_a_few_ulp_on_its_domain(dtype):
    rng = np.random.default_rng(3)
    low_exp = -45 if np.dtype(dtype) == np.float32 else -323
    y = np.concatenate([
        _samples(rng, dtype, 0.0, 1.0, N64),
        (10.0 ** rng.uniform(low_exp, 0, 1000)).astype(dtype),
        np.array([0.0, 1.0, 0.41421356237309503, 0.4142135, 0.4142137, np.finfo(dtype).tiny,
                  np.finfo(dtype).smallest_subnormal, np.finfo(dtype).eps], dtype=dtype),
    ])
    got = elementary(y, dtype)[LOG1P]
    err = ulp_error(got, exact_values("log1p", y, dtype), dtype)
    assert err.max() <= FEW_ULP, (y[np.argmax(err)], err.max())
    assert got[y == 0][0] == 0 and got[y == 1][0] == np.asarray(math.log(2.0), dtype=dtype)


@numba.njit(**JIT_OPTIONS)
def _log1p_0_to_127(y, out):
    for i in range(y.shape[0]):
        out[i] = M.log1p_0_to_127(y[i])


def test_log1p_0_to_127_within_a_few_ulp_on_its_domain():
    # log of a softmax row's sum of exponentials from s - 1 in [0, C - 1] for C < 128,
    # tiny s - 1 (a confident row) included: the result must keep its relative precision
    rng = np.random.default_rng(4)
    edges = 2.0 ** np.arange(1, 8) - 1.0  # where k changes: 1, 3, 7, ..., 127
    y = np.concatenate([
        rng.uniform(0.0, 127.0, N64), 2.0 ** rng.uniform(-1000.0, 6.98, N64),
        edges[:-1], np.nextafter(edges, 0.0), np.nextafter(edges, np.inf)[:-1],
        [2.0 ** -52, 1e-300, 5e-324, 1e-9, np.sqrt(2.0) - 1.0, 126.99999999],
    ])
    got = np.empty_like(y)
    _log1p_0_to_127(y, got)
    mpmath.mp.dps = 40
    exact = np.array([float(mpmath.log1p(mpmath.mpf(float(v)))) for v in y])
    err = ulp_error(got, exact, np.float64)
    assert err.max() <= FEW_ULP, (y[np.argmax(err)], err.max())
    zero = np.zeros(1)
    _log1p_0_to_127(zero, got[:1])
    assert got[0] == 0.0
    nan = np.array([np.nan])
    _log1p_0_to_127(nan, nan)
    assert np.isnan(nan[0])


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_tanh_and_sech2(dtype):
    rng = np.random.default_rng(4)
    x = np.concatenate([
        _samples(rng, dtype, -25.0, 25.0, N64),
        _samples(rng, dtype, -1.0, 1.0, N64),
        (10.0 ** rng.uniform(-40 if np.dtype(dtype) == np.float32 else -300, 0, 300) *
         rng.choice([-1, 1], 300)).astype(dtype),
        np.array([np.finfo(dtype).smallest_subnormal, 0.5493, 0.55, 20.0, 1e10, np.finfo(dtype).max], dtype=dtype),
    ])
    out = elementary(x, dtype)
    err = ulp_error(out[TANH], exact_values("tanh", x, dtype), dtype)
    assert err.max() <= FEW_ULP, (x[np.argmax(err)], err.max())
    # sech2 = (1 - tanh)(1 + tanh): absolutely accurate (it only feeds a gradient factor)
    eps = np.finfo(dtype).eps
    s2 = exact_values("sech2", x, dtype)
    abs_err = np.abs(out[SECH2].astype(np.float64) - s2)
    assert abs_err.max() <= 3 * eps, (x[np.argmax(abs_err)], abs_err.max() / eps)
    small = np.abs(x) < 1
    assert ulp_error(out[SECH2][small], s2[small], dtype).max() <= 8.0
    assert np.all(np.abs(out[TANH]) <= 1) and np.all((out[SECH2] >= 0) & (out[SECH2] <= 1))
    # odd and even
    neg = elementary(-x, dtype)
    np.testing.assert_array_equal(neg[TANH], -out[TANH])
    np.testing.assert_array_equal(neg[SECH2], out[SECH2])


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_special_values(dtype):
    lo, hi, _ = EXP_RANGE[np.dtype(dtype)]
    big = np.finfo(dtype).max
    x = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, hi + 0.02, lo - 0.02, big, -big], dtype=dtype)
    o = elementary(x, dtype)
    nan, inf = np.nan, np.inf
    np.testing.assert_array_equal(o[EXP], [nan, inf, 0, 1, 1, inf, 0, inf, 0])
    np.testing.assert_array_equal(o[EXPM1], [nan, inf, -1, 0, 0, inf, -1, inf, -1])
    np.testing.assert_array_equal(o[TANH], [nan, 1, -1, 0, 0, 1, -1, 1, -1])
    np.testing.assert_array_equal(o[SECH2], [nan, 0, 0, 1, 1, 0, 0, 0, 0])
    assert np.isnan(o[LOG1P][0])
    # subnormal inputs: exp(x) = 1, expm1(x) = x, tanh(x) = x, sech2(x) = 1, log1p_unit(x) = x
    sub = np.array([np.finfo(dtype).smallest_subnormal * 3, np.finfo(dtype).tiny / 4], dtype=dtype)
    o = elementary(sub, dtype)
    np.testing.assert_array_equal(o[EXP], 1)
    np.testing.assert_array_equal(o[EXPM1], sub)
    np.testing.assert_array_equal(o[TANH], sub)
    np.testing.assert_array_equal(o[SECH2], 1)
    assert np.all(ulp_error(o[LOG1P], sub, dtype) <= 1)
    o = elementary(-sub, dtype)
    np.testing.assert_array_equal(o[EXPM1], -sub)
    np.testing.assert_array_equal(o[TANH], -sub)


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_exp_overflow_and_underflow_thresholds(dtype):
    """The last finite / first infinite result and the last nonzero / first zero result."""
    f = np.dtype(dtype).type
    if np.dtype(dtype) == np.float64:
        x = np.array([709.782712893384, 709.7827128933841, -745.1332191019411, -745.1332191019412])
    else:
        # exp(x) rounds to 0 below log(2**-150) = -103.97207708...
        last_nonzero = np.float32(-103.97207641601562)
        x = np.array([88.72283, 88.72284, last_nonzero, np.nextafter(last_nonzero, np.float32(-np.inf))],
                     dtype=np.float32)
    x = x.astype(dtype)
    with np.errstate(over="ignore"):
        exact = np.exp(x.astype(np.float64))
        want = exact.astype(dtype)
    got = elementary(x, dtype)[EXP]
    np.testing.assert_array_equal(np.isinf(got), np.isinf(want))
    np.testing.assert_array_equal(got == 0, want == 0)
    assert np.all(ulp_error(got[np.isfinite(want)], exact[np.isfinite(want)], dtype) <= 1)
    assert f(got[0]) < np.inf and got[1] == np.inf and got[2] > 0 and got[3] == 0


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_intrinsics(dtype):
    nan = np.nan
    a = np.array([nan, 1.0, -np.inf, 0.5, 1.5, 2.5, -0.5, -1.5, 3.7, -3.7], dtype=dtype)
    b = np.array([1.0, nan, 3.0, -1.0, 0.0, 10.0, -10.0, 1.0, 2.0, 5.0], dtype=dtype)
    out = np.empty((3, a.size), dtype=dtype)
    _intrinsics(a, b, out)
    np.testing.assert_array_equal(out[0], np.array([1.0, 1.0, 3.0, 0.5, 1.5, 10.0, -0.5, 1.0, 3.7, 5.0],
                                                   dtype=dtype))  # a NaN argument is ignored
    np.testing.assert_array_equal(out[1, 1:], [1.0, -np.inf, 0.0, 2.0, 2.0, -0.0, -2.0, 4.0, -4.0])  # ties to even
    assert np.isnan(out[1, 0])
    lo, hi = (-126, 127) if np.dtype(dtype) == np.float32 else (-1022, 1023)
    k = np.arange(lo, hi + 1).astype(dtype)
    out = np.empty((3, k.size), dtype=dtype)
    _intrinsics(k, k, out)
    np.testing.assert_array_equal(out[2], np.ldexp(np.ones(k.size, dtype=dtype), k.astype(np.int64)))


def test_python_stubs_refuse_to_run_outside_njit():
    for fn in (M.exp, M.expm1, M.log1p_unit, M.tanh_and_sech2, lambda v: M.cast_like(v, v)):
        with pytest.raises(NotImplementedError, match="njit"):
            fn(1.0)


@pytest.mark.parametrize("n", [0, 1, 7, 255, 256, 257, 65536 + 3, 3 * 65536 + 1000])
def test_sum_of_the_reductions_within_its_bound(n):
    """numloss._kernels.reduce.sum_float64 against math.fsum (exact, then rounded once).

    Its documented bound: about (256 / lanes + 256 + n / 65536) eps sum|a|;
    held here to (512 + n / 65536) eps sum|a| (one lane: the worst case).
    """
    from numloss._kernels.reduce import sum_float64

    rng = np.random.default_rng(n)
    a = rng.standard_normal(n) * 10.0 ** rng.uniform(-3, 3, n)
    exact = math.fsum(a)
    bound = (512 + n / 65536) * np.finfo(np.float64).eps * np.abs(a).sum()
    assert abs(sum_float64(a) - exact) <= bound
    if n:
        b = a.copy()
        b[n // 2] = np.nan
        assert np.isnan(sum_float64(b))
        b[n // 2] = np.inf
        assert sum_float64(b) == np.inf
