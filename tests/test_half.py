"""float16 and bfloat16 inputs: every loss, against the float64 reference on the half values upcast exactly.

numloss computes a half input in float32 (the float32 kernels' row code on
rows converted a few at a time) and rounds the gradient to the input's
format, to nearest even.  So the tolerance of a half gradient is derived
from that rounding: with ``u`` the format's unit roundoff (2**-11 for
float16, 2**-8 for bfloat16), each element is within ``u |g| + e32`` of the
reference, ``e32`` being the float32 tolerance of :func:`conftest.assert_close`
(the float32 computation's own error), plus float16's smallest subnormal
for gradients that underflow it.  The loss is returned in float32 and held
to the float32 tolerance.  Two sharper properties hold too: the half
gradient is the float32 run's gradient (on the upcast inputs) rounded once,
bit for bit, and a float32 ``out`` receives the float32 run's gradient.
"""

import numpy as np
import pytest
import reference
from conftest import TOL, assert_close
from test_contract import WITH_OUT, _ids, call, make_inputs, same

import numloss

try:
    import ml_dtypes
except ImportError:  # bfloat16 needs the optional ml_dtypes; float16 is NumPy's own
    ml_dtypes = None

HALF = ["float16"] + (["bfloat16"] if ml_dtypes is not None else [])
#: unit roundoff of each format (half an ulp at 1)
UNIT = {"float16": 2.0**-11, "bfloat16": 2.0**-8}
#: the smallest positive float16 (subnormal): gradients below it round to 0 or to it
TINY = {"float16": 2.0**-24, "bfloat16": 0.0}


def _dtype(name):
    return np.dtype(np.float16) if name == "float16" else np.dtype(ml_dtypes.bfloat16)


def _half_inputs(loss, half, rng, **shape):
    """The float32 test inputs rounded to ``half`` (the input only: targets stay as they are)."""
    args, kwargs = make_inputs(loss, "float32", rng, **shape)
    return (args[0].astype(_dtype(half)), *args[1:]), kwargs


def _upcast(args):
    return [np.asarray(a, np.float64) if np.asarray(a).dtype.kind == "f" or _is_half(a) else a for a in args]


def _is_half(a):
    return np.asarray(a).dtype.itemsize == 2 and np.asarray(a).dtype.kind not in "iub"


def assert_half_gradient(got, want, half, what=""):
    """``got`` (a half gradient) within its rounding of the float64 reference ``want`` (see the module)."""
    got = np.asarray(got).astype(np.float64)
    want = np.asarray(want, np.float64)
    rtol32, atol32 = TOL[np.dtype(np.float32)]
    scale = float(np.max(np.abs(want[np.isfinite(want)]), initial=1.0))
    bound = (UNIT[half] + rtol32) * np.abs(want) + atol32 * scale + TINY[half]
    assert np.array_equal(np.isnan(got), np.isnan(want)), what
    ok = np.isnan(want) | (np.abs(got - want) <= bound)
    assert ok.all(), f"{what}: worst {np.max(np.abs(got - want) - bound)} beyond the bound"


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("half", HALF)
@pytest.mark.parametrize("loss", WITH_OUT, ids=_ids(WITH_OUT))
def test_half_inputs_match_the_reference_on_their_exact_values(loss, half, reduction, rng):
    args, kwargs = _half_inputs(loss, half, rng, N=9, C=40)
    got_loss, got_grad = call(loss, args, kwargs, reduction=reduction)
    want_loss, want_grad = getattr(reference, loss.name)(*_upcast(args), reduction=reduction)
    assert np.asarray(got_loss).dtype == np.float32, "the loss is returned as for float32 input"
    assert_close(got_loss, want_loss, "float32", what=f"{loss.name} loss")
    assert got_grad.dtype == _dtype(half)
    assert_half_gradient(got_grad, want_grad, half, what=f"{loss.name} grad")
    assert same(call(loss, args, kwargs, with_grad=False, reduction=reduction), got_loss)


@pytest.mark.parametrize("half", HALF)
@pytest.mark.parametrize("num_classes", [7, 40, 600])  # the few-classes tile, one block, two blocks
@pytest.mark.parametrize("loss", WITH_OUT, ids=_ids(WITH_OUT))
def test_the_half_gradient_is_the_float32_gradient_rounded_once(loss, half, num_classes, rng):
    args, kwargs = _half_inputs(loss, half, rng, N=70, C=num_classes)
    args[0][5] = np.nan  # a NaN row poisons its own sample only, as in float32
    args[0][6, 0] = -np.inf if loss.class_axis == "elementwise" or args[1][6] != 0 else args[0][6, 0]  # a mask
    args[0][7, -1] = 6e4  # near float16's largest value (65504)
    upcast = (args[0].astype(np.float32), *args[1:])
    want_loss, want_grad = call(loss, upcast, kwargs)
    got_loss, got_grad = call(loss, args, kwargs)
    assert same(got_loss, want_loss)
    assert same(got_grad, want_grad.astype(_dtype(half)))  # NumPy's / ml_dtypes' round to nearest even
    master = np.full(args[0].shape, 7.0, dtype=np.float32)
    loss32, grad32 = call(loss, args, kwargs, out=master)
    assert grad32 is master and same(grad32, want_grad) and same(loss32, want_loss)
    inplace = args[0].copy()
    loss_in, grad_in = call(loss, (inplace, *args[1:]), kwargs, out=inplace)
    assert grad_in is inplace and same(grad_in, got_grad) and same(loss_in, got_loss)


@pytest.mark.parametrize("half", HALF)
@pytest.mark.parametrize("loss", WITH_OUT, ids=_ids(WITH_OUT))
def test_half_inputs_take_every_layout_weights_masks_and_aux(loss, half, rng):
    args, kwargs = _half_inputs(loss, half, rng, N=8, C=6)
    sw = rng.uniform(0.5, 2.0, size=8)
    where = np.ones(8, dtype=bool)
    where[3] = False
    extra = dict(sample_weight=sw, where=where, **({"aux": True} if loss.aux else {}))
    want = call(loss, args, kwargs, **extra)
    transposed = (np.ascontiguousarray(args[0].T).T, *args[1:])
    assert same(call(loss, transposed, kwargs, **extra), want)
    read_only = args[0].copy()
    read_only.flags.writeable = False
    assert same(call(loss, (read_only, *args[1:]), kwargs, **extra), want)
    ref_loss, ref_grad = reference.weighted(loss.name, _upcast(args), sample_weight=sw, where=where)
    assert_close(want[0], ref_loss, "float32")
    assert_half_gradient(want[1], ref_grad, half)


@pytest.mark.parametrize("half", HALF)
def test_a_float16_row_whose_loss_exceeds_float16s_range_has_a_finite_float32_loss(half, rng):
    x = np.zeros((2, 3), dtype=_dtype(half))
    x[0, 0] = 60000.0 if half == "float16" else 1e38  # the target (class 1) is 60000 below the top
    loss = numloss.softmax_cross_entropy(x, np.array([1, 1]), reduction="none")
    assert loss.dtype == np.float32 and np.isfinite(loss).all() and loss[0] == float(x[0, 0].astype(np.float32))


@pytest.mark.parametrize("half", HALF)
def test_half_logits_with_half_probability_and_sigmoid_targets(half, rng):
    """Targets in the logits' own format are read as they are (converted a few rows at a time, like the
    logits); targets of another format are converted to float32 first.  Both give the float32 results."""
    dt = _dtype(half)
    x = rng.standard_normal((300, 7)).astype(dt)
    x32 = x.astype(np.float32)
    probs = rng.dirichlet(np.ones(7), size=300)
    t = (rng.random((300, 7)) < 0.5).astype(np.float64)
    t[0, 0] = 0.25  # a soft label
    cases = [(numloss.softmax_cross_entropy_with_grad, probs), (numloss.sigmoid_cross_entropy_with_grad, t),
             (numloss.sigmoid_focal_loss_with_grad, t)]
    for fn, target in cases:
        for target_dtype in (dt, np.float16 if half == "bfloat16" else np.float32):
            th = target.astype(target_dtype)
            got = fn(x, th)
            want = fn(x32, th.astype(np.float32))
            assert same(got[0], want[0]) and same(got[1], want[1].astype(dt)), (fn.__name__, target_dtype)
    ref = reference.sigmoid_cross_entropy(_upcast([x])[0], t.astype(dt).astype(np.float64))
    got = numloss.sigmoid_cross_entropy_with_grad(x, t.astype(dt))
    assert_close(got[0], ref[0], "float32")
    assert_half_gradient(got[1], ref[1], half)


def test_a_half_out_of_the_other_format_or_float64_is_refused(rng):
    x = rng.standard_normal((3, 4)).astype(np.float16)
    for out in (np.empty((3, 4), np.float64), np.empty((3, 4), np.float16)[:, :2]):
        with pytest.raises(ValueError, match="out must"):
            numloss.softmax_cross_entropy_with_grad(x, np.zeros(3, dtype=int), out=out)


def test_numloss_runs_float16_without_ml_dtypes_installed():
    import subprocess
    import sys

    code = ("import sys; sys.modules['ml_dtypes'] = None\n"
            "import numpy as np, numloss\n"
            "loss, grad = numloss.softmax_cross_entropy_with_grad(np.zeros((2, 3), np.float16), np.array([0, 1]))\n"
            "assert grad.dtype == np.float16 and abs(float(loss) - np.log(3)) < 1e-6\n"
            "print('ok')")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.stdout.strip() == "ok", result.stderr


# ------------------------------------------------------------ the fused linear CE


@pytest.mark.parametrize("half", HALF)
@pytest.mark.parametrize("target_kind", ["index", "prob"])
def test_linear_ce_with_half_hidden_and_weight_matches_the_reference(half, target_kind, rng):
    dt = _dtype(half)
    N, D, V = 40, 12, 300
    hidden = rng.standard_normal((N, D)).astype(dt)
    weight = (rng.standard_normal((V, D)) * 0.3).astype(dt)
    bias = rng.standard_normal(V).astype(dt)
    if target_kind == "index":
        target = rng.integers(0, V, N)
        target[3] = -100
    else:
        target = rng.dirichlet(np.ones(V), size=N).astype(dt)
    want_loss, want_grads = reference.weighted("linear_cross_entropy", _upcast([hidden, weight, target]),
                                               bias=bias.astype(np.float64), z_loss=1e-3)
    # chunk_size=1: d_weight and d_bias sum 40 chunks; a half accumulator would lose their small parts
    for chunk_size in (None, 1):
        loss, grads = numloss.linear_cross_entropy_with_grad(hidden, weight, target, bias=bias, z_loss=1e-3,
                                                             chunk_size=chunk_size)
        assert np.asarray(loss).dtype == np.float32
        assert_close(loss, want_loss, "float32")
        for got, want, name in zip(grads, want_grads, ("d_hidden", "d_weight", "d_bias"), strict=True):
            assert got.dtype == dt, name
            assert_half_gradient(got, want, half, what=name)
        assert same(numloss.linear_cross_entropy(hidden, weight, target, bias=bias, z_loss=1e-3,
                                                 chunk_size=chunk_size), loss)


def test_linear_ce_refuses_mixed_half_and_float32_inputs(rng):
    with pytest.raises(TypeError, match="weight has dtype float32 but hidden has float16"):
        numloss.linear_cross_entropy(np.zeros((2, 3), np.float16), np.zeros((4, 3), np.float32), np.zeros(2, int))


@pytest.mark.parametrize("half", HALF)
def test_dask_takes_half_logits(half, rng):
    da = pytest.importorskip("dask.array")
    import dask

    import numloss.dask as nld

    x = rng.standard_normal((12, 5)).astype(_dtype(half))
    y = rng.integers(0, 5, 12)
    want = numloss.softmax_cross_entropy_with_grad(x, y, aux=True)
    got = dask.compute(*nld.softmax_cross_entropy_with_grad(da.from_array(x, chunks=(4, 5)), y, aux=True),
                       scheduler="synchronous")
    assert got[0].dtype == np.float32 and got[1].dtype == x.dtype and got[2].lse.dtype == np.float32
    assert_close(got[0], want[0], "float32")
    assert same(got[1], want[1])
