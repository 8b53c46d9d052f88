"""sigmoid_cross_entropy(_with_grad) against tests/reference.py, PyTorch and finite differences."""

import mpmath
import numpy as np
import pytest
import reference as ref
from conftest import DTYPES, REDUCTIONS, assert_close, assert_loss_type, central_difference, dtype_id
from hypothesis import given, settings
from hypothesis import strategies as st

from numloss import sigmoid_cross_entropy, sigmoid_cross_entropy_with_grad


def gscale(x, reduction="mean", weight=None, pos_weight=None, normalizer=None, **_):
    """Size of the terms a gradient/loss element is a difference of: max|w| max(1, |pw|) / denominator."""
    w = 1.0 if weight is None else float(np.max(np.abs(weight), initial=0.0))
    pw = 1.0 if pos_weight is None else max(1.0, float(np.max(np.abs(pos_weight), initial=0.0)))
    s = max(w, 1e-300) * pw
    if reduction == "mean":
        d = normalizer if normalizer is not None else np.asarray(x).size
        s = s / d if d > 0 else 1.0
    return s


def make_inputs(rng, shape, dtype, target="soft", scale=2.0):
    x = (rng.standard_normal(shape) * scale).astype(dtype)
    if target == "soft":
        t = rng.uniform(0, 1, size=shape).astype(dtype)
    elif target == "hard":
        t = (rng.uniform(size=shape) < 0.5).astype(dtype)
    elif target == "bool":
        t = rng.uniform(size=shape) < 0.5
    elif target == "int":
        t = (rng.uniform(size=shape) < 0.5).astype(np.int64)
    else:
        raise AssertionError(target)
    return x, t


def case(id, shape=(6, 5), target="soft", scale=2.0, **opts):
    return pytest.param(dict(shape=shape, target=target, scale=scale, opts=opts), id=id)


CASES = [
    case("soft"),
    case("hard", target="hard"),
    case("weight-C", weight=np.linspace(0.5, 2, 5)),
    case("weight-N1", weight=np.linspace(0.5, 2, 6)[:, None]),
    case("weight-NC", weight=np.linspace(0.1, 3, 30).reshape(6, 5)),
    case("weight-scalar", weight=2.5),
    case("pos_weight-C", pos_weight=np.array([1.0, 2.0, 3.0, 0.5, 10.0])),
    case("pos_weight-1C", pos_weight=np.array([[1.0, 2.0, 3.0, 0.5, 10.0]])),
    case("weight-pos_weight", weight=np.linspace(0.5, 2, 5), pos_weight=np.array([1.0, 2.0, 3.0, 0.5, 10.0])),
    case("eps", eps=0.05, scale=4.0),
    case("eps-weight-pos_weight", eps=0.05, scale=4.0, weight=np.linspace(0.5, 2, 5), pos_weight=3.0),
    case("normalizer", normalizer=7.5, weight=2.0),
    case("1d", shape=(7,), pos_weight=np.linspace(1, 3, 7)),
    case("0d", shape=()),
    case("3d", shape=(2, 3, 4), weight=np.linspace(0.5, 2, 4), pos_weight=np.array([[[2.0], [1.0], [0.5]]])),
    case("3d-weight-middle", shape=(2, 3, 4), weight=np.linspace(0.5, 2, 3)[:, None]),
    case("3d-weight-lead", shape=(2, 3, 4), weight=np.array([1.5, 0.5])[:, None, None], eps=1e-3),
    case("C1", shape=(5, 1), weight=np.linspace(0.5, 2, 5)[:, None]),
]


def build(rng, c, dtype):
    x, t = make_inputs(rng, c["shape"], dtype, c["target"], c["scale"])
    if c["opts"].get("eps") and x.size >= 2:
        # make the clipping bite at both ends
        x.reshape(-1)[0], x.reshape(-1)[1] = 15.0, -15.0
    return x, t, dict(c["opts"])


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("c", CASES)
@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_matches_reference(c, dtype, reduction, rng):
    x, t, opts = build(rng, c, dtype)
    x0, t0 = x.copy(), t.copy()
    want_loss, want_grad = ref.sigmoid_cross_entropy(x, t, reduction=reduction, **opts)
    gs = gscale(x, reduction, **opts)
    loss = sigmoid_cross_entropy(x, t, reduction=reduction, **opts)
    assert_loss_type(loss, dtype, reduction, x.shape)
    assert_close(loss, want_loss, dtype, scale=gs, what="loss")
    loss2, grad = sigmoid_cross_entropy_with_grad(x, t, reduction=reduction, **opts)
    assert_loss_type(loss2, dtype, reduction, x.shape)
    assert grad.shape == x.shape and grad.dtype == x.dtype
    assert_close(loss2, want_loss, dtype, scale=gs, what="loss (with_grad)")
    assert_close(grad, want_grad, dtype, scale=gs, what="grad")
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(t, t0)


@pytest.mark.parametrize("target", ["bool", "int", "hard"])
def test_bool_and_integer_targets_equal_float_targets(target, rng):
    x, t = make_inputs(rng, (4, 6), np.float32, target)
    tf = t.astype(np.float32)
    for reduction in REDUCTIONS:
        want_loss, want_grad = sigmoid_cross_entropy_with_grad(x, tf, reduction=reduction, pos_weight=2.0)
        loss, grad = sigmoid_cross_entropy_with_grad(x, t, reduction=reduction, pos_weight=2.0)
        gs = gscale(x, reduction, pos_weight=2.0)
        assert_close(loss, want_loss, np.float32, scale=gs, rtol=1e-6)
        assert_close(grad, want_grad, np.float32, scale=gs, rtol=1e-6)
        ref_loss, ref_grad = ref.sigmoid_cross_entropy(x, t, reduction=reduction, pos_weight=2.0)
        assert_close(loss, ref_loss, np.float32, scale=gs)
        assert_close(grad, ref_grad, np.float32, scale=gs)


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_eps_reproduces_the_seed_formula(dtype):
    """eps > 0: -(t log clip(p) + (1 - t) log(1 - clip(p))), gradient clip(p) - t, by a direct formula."""
    x = np.array([[20.0, -20.0, 0.3], [-1.0, 2.0, 40.0]], dtype=dtype)
    t = np.array([[1.0, 1.0, 0.25], [0.0, 1.0, 0.0]], dtype=dtype)
    eps = 1e-3
    xd = x.astype(np.float64)
    p = np.clip(1 / (1 + np.exp(-xd)), eps, 1 - eps)
    want = -(t * np.log(p) + (1 - t) * np.log(1 - p))
    loss, grad = sigmoid_cross_entropy_with_grad(x, t, eps=eps, reduction="none")
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(loss, want, rtol=rtol)
    np.testing.assert_allclose(grad, p - t, rtol=rtol, atol=rtol)


# --------------------------------------------------------------------- PyTorch

TORCH_CASES = [
    pytest.param(dict(), id="plain"),
    pytest.param(dict(weight=np.linspace(0.5, 2, 5)), id="weight"),
    pytest.param(dict(pos_weight=np.array([1.0, 2.0, 3.0, 0.5, 10.0])), id="pos_weight"),
    pytest.param(dict(weight=np.linspace(0.1, 3, 30).reshape(6, 5), pos_weight=np.array([1.0, 2.0, 3.0, 0.5, 10.0])),
                 id="weight-NC-pos_weight"),
]


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("opts", TORCH_CASES)
def test_matches_pytorch(opts, reduction, rng):
    torch = pytest.importorskip("torch")
    x, t = make_inputs(rng, (6, 5), np.float64, "soft")
    xt = torch.tensor(x, requires_grad=True)
    topts = {k: torch.tensor(v) for k, v in opts.items()}
    want = torch.nn.functional.binary_cross_entropy_with_logits(xt, torch.tensor(t), reduction=reduction, **topts)
    want.sum().backward()
    loss, grad = sigmoid_cross_entropy_with_grad(x, t, reduction=reduction, **opts)
    assert_close(loss, want.detach().numpy(), np.float64)
    assert_close(grad, xt.grad.numpy(), np.float64)


# ---------------------------------------------------------- finite differences

FD_CASES = [
    pytest.param(dict(), id="plain"),
    pytest.param(dict(weight=np.linspace(0.5, 2, 5), pos_weight=np.array([1.0, 2.0, 3.0, 0.5, 10.0])),
                 id="weight-pos_weight"),
    pytest.param(dict(eps=1e-6, weight=np.linspace(0.5, 2, 5)), id="eps"),
    pytest.param(dict(normalizer=2.5, pos_weight=3.0), id="normalizer"),
]


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("opts", FD_CASES)
def test_gradient_matches_finite_differences(opts, reduction, rng):
    x, t = make_inputs(rng, (3, 5), np.float64, "soft", scale=1.5)

    def f(z):
        return np.sum(sigmoid_cross_entropy(z, t, reduction=reduction, **opts))

    _, grad = sigmoid_cross_entropy_with_grad(x, t, reduction=reduction, **opts)
    fd = central_difference(f, x)
    scale = np.max(np.abs(fd))
    assert scale > 1e-3
    np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-8 * scale)


# ------------------------------------------------------------------ hypothesis


@st.composite
def sigmoid_problems(draw):
    ndim = draw(st.integers(0, 3))
    shape = tuple(draw(st.lists(st.integers(0, 4), min_size=ndim, max_size=ndim)))
    dtype = draw(st.sampled_from(DTYPES))
    opts = {}
    for name in ("weight", "pos_weight"):
        pattern = draw(st.sampled_from(["none", "scalar", "last", "full", "ones-lead"]))
        if pattern == "scalar":
            opts[name] = 1.75
        elif pattern == "last" and ndim:
            opts[name] = np.linspace(0.5, 2.0, shape[-1])
        elif pattern == "full":
            opts[name] = np.linspace(0.25, 3.0, int(np.prod(shape))).reshape(shape)
        elif pattern == "ones-lead" and ndim >= 2:
            opts[name] = np.linspace(0.5, 2.0, shape[0]).reshape((shape[0],) + (1,) * (ndim - 1))
    if draw(st.booleans()):
        opts["eps"] = draw(st.sampled_from([1e-6, 0.05, 0.3]))
    opts["reduction"] = draw(st.sampled_from(REDUCTIONS))
    if draw(st.booleans()):
        opts["normalizer"] = draw(st.sampled_from([0.5, 3.0]))
    seed = draw(st.integers(0, 2**32 - 1))
    scale = draw(st.sampled_from([0.1, 3.0, 30.0]))
    return shape, dtype, opts, seed, scale


@settings(max_examples=60, deadline=None)
@given(sigmoid_problems())
def test_random_problems_match_reference(problem):
    shape, dtype, opts, seed, scale = problem
    rng = np.random.default_rng(seed)
    x, t = make_inputs(rng, shape, dtype, "soft", scale)
    want_loss, want_grad = ref.sigmoid_cross_entropy(x, t, **opts)
    loss, grad = sigmoid_cross_entropy_with_grad(x, t, **opts)
    gs = gscale(x, **opts)
    assert_loss_type(loss, dtype, opts["reduction"], shape)
    assert_close(loss, want_loss, dtype, scale=gs)
    assert_close(grad, want_grad, dtype, scale=gs)
    assert_close(sigmoid_cross_entropy(x, t, **opts), want_loss, dtype, scale=gs)


# -------------------------------------------------------------------- extremes


def _mp_softplus(v):
    v = mpmath.mpf(float(v))
    return mpmath.log1p(mpmath.exp(v)) if v < 0 else v + mpmath.log1p(mpmath.exp(-v))


@pytest.mark.parametrize("big", [1e4, 3e38])
def test_huge_float32_logits_give_finite_exact_loss(big):
    mpmath.mp.dps = 50
    x = np.array([big, -big, big, -big, big, -big, 0.5], dtype=np.float32)
    t = np.array([0.0, 1.0, 1.0, 0.0, 0.5, 0.25, 1.0], dtype=np.float32)
    want = [float(tt * _mp_softplus(-v) + (1 - tt) * _mp_softplus(v)) for v, tt in zip(x, t, strict=True)]
    loss, grad = sigmoid_cross_entropy_with_grad(x, t, reduction="none")
    assert np.all(np.isfinite(loss)) and np.all(np.isfinite(grad))
    np.testing.assert_allclose(loss.astype(np.float64), want, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(grad.astype(np.float64), [1, -1, 0, 0, 0.5, -0.25, -1 / (1 + np.exp(0.5))],
                               rtol=1e-6, atol=1e-7)
    # The mean over one element per row: SPEC lets a float32 kernel sum within a
    # row in float32 (a row holding several ~3e38 losses may overflow there),
    # but anything summed across rows is accumulated in float64.
    xc, tc = x.reshape(7, 1), t.reshape(7, 1)
    for opts in (dict(), dict(eps=1e-6), dict(weight=0.5, pos_weight=np.linspace(0.5, 1, 7)[:, None])):
        for reduction in ("mean", "none"):
            want_loss, want_grad = ref.sigmoid_cross_entropy(xc, tc, reduction=reduction, **opts)
            loss, grad = sigmoid_cross_entropy_with_grad(xc, tc, reduction=reduction, **opts)
            assert np.all(np.isfinite(loss)) and np.all(np.isfinite(grad))
            gs = gscale(xc, reduction, **opts)
            assert_close(loss, want_loss, np.float32, scale=gs)
            assert_close(grad, want_grad, np.float32, scale=gs)


@pytest.mark.parametrize("opts", [dict(), dict(eps=1e-3), dict(weight=2.0, pos_weight=3.0)])
@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_minus_inf_logits(opts, dtype):
    """t = 0 on -inf: loss 0, gradient 0; t > 0 on -inf: infinite loss (eps > 0 clips both)."""
    x = np.array([-np.inf, -np.inf, -np.inf, 0.5], dtype=dtype)
    t = np.array([0.0, 1.0, 0.5, 1.0], dtype=dtype)
    loss, grad = sigmoid_cross_entropy_with_grad(x, t, reduction="none", **opts)
    want_loss, want_grad = ref.sigmoid_cross_entropy(x, t, reduction="none", **opts)
    if opts.get("eps"):
        # the seed's clipped loss: p = clip(0) = eps, so -log(1 - eps) and a gradient eps
        assert np.all(np.isfinite(loss))
        np.testing.assert_allclose([loss[0], grad[0]], [-np.log1p(-1e-3), 1e-3], rtol=1e-5)
    else:
        assert loss[0] == 0 and grad[0] == 0
        assert loss[1] == np.inf and loss[2] == np.inf
    assert_close(loss, want_loss, dtype)
    assert_close(grad, want_grad, dtype)
    assert np.all(np.isfinite(grad))


MODES = [
    pytest.param(dict(), id="plain"),
    pytest.param(dict(eps=0.05), id="eps"),
    pytest.param(dict(weight=np.linspace(0.5, 2, 5), pos_weight=3.0), id="weight-pos_weight"),
    pytest.param(dict(eps=1e-6, weight=np.linspace(0.5, 2, 5)[None, :]), id="eps-weight"),
]


@pytest.mark.parametrize("bad", [np.nan, np.inf], ids=["nan", "inf"])
@pytest.mark.parametrize("opts", MODES)
@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_nan_and_plus_inf_logits_give_nan_elements(opts, dtype, bad, rng):
    x, t = make_inputs(rng, (4, 5), dtype, "soft")
    t[1, 1] = 0.0  # +inf with t = 0 would be a loss of 0 mathematically: still NaN
    t[2, 3] = 1.0
    x[1, 1] = x[2, 3] = x[3, 0] = bad
    bad_mask = ~(x < np.inf)
    for reduction in REDUCTIONS:
        loss, grad = sigmoid_cross_entropy_with_grad(x, t, reduction=reduction, **opts)
        loss_plain = sigmoid_cross_entropy(x, t, reduction=reduction, **opts)
        assert np.all(np.isnan(grad[bad_mask])) and np.all(np.isfinite(grad[~bad_mask]))
        want_loss, want_grad = ref.sigmoid_cross_entropy(x, t, reduction=reduction, **opts)
        gs = gscale(x, reduction, **opts)
        assert_close(grad, want_grad, dtype, scale=gs)
        if reduction == "none":
            for lo in (loss, loss_plain):
                assert np.all(np.isnan(lo[bad_mask])) and np.all(np.isfinite(lo[~bad_mask]))
                assert_close(lo, want_loss, dtype, scale=gs)
        else:
            assert np.isnan(loss) and np.isnan(loss_plain)


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_empty_inputs(dtype):
    for shape in ((0,), (0, 5), (3, 0), (2, 0, 4)):
        x = np.zeros(shape, dtype=dtype)
        t = np.zeros(shape, dtype=dtype)
        assert sigmoid_cross_entropy(x, t, reduction="sum") == 0
        assert np.isnan(sigmoid_cross_entropy(x, t, reduction="mean"))
        assert sigmoid_cross_entropy(x, t, reduction="mean", normalizer=3.0) == 0
        loss, grad = sigmoid_cross_entropy_with_grad(x, t, reduction="none")
        assert loss.shape == shape and loss.dtype == dtype and grad.shape == shape and grad.dtype == dtype
        loss, grad = sigmoid_cross_entropy_with_grad(x, t, reduction="mean")
        assert np.isnan(loss) and loss.dtype == dtype


def test_zero_weights_give_zero_loss_and_gradient():
    x = np.array([[1.0, -2.0], [0.5, 3.0]])
    loss, grad = sigmoid_cross_entropy_with_grad(x, np.ones_like(x), weight=np.zeros(2))
    assert loss == 0 and np.all(grad == 0)


# ---------------------------------------------------------------------- layout


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_non_contiguous_and_transposed_inputs(dtype, rng):
    base, tbase = make_inputs(rng, (8, 10), dtype, "soft")
    wbase = np.linspace(0.5, 2, 20)
    views = [
        ("strided", base[::2, ::2], tbase[::2, ::2], wbase[::4]),
        ("transposed", base.T, tbase.T, wbase[:8]),
        ("fortran", np.asfortranarray(base), np.asfortranarray(tbase), wbase[::2]),
        ("reversed", base[::-1, ::-1], tbase[::-1, ::-1], wbase[:10][::-1]),
        ("mixed", base.T, np.ascontiguousarray(tbase.T), wbase[1:9]),
    ]
    for name, x, t, w in views:
        x0 = x.copy()
        for reduction in REDUCTIONS:
            opts = dict(reduction=reduction, weight=w, pos_weight=w[::-1].copy())
            want_loss, want_grad = ref.sigmoid_cross_entropy(x, t, **opts)
            loss, grad = sigmoid_cross_entropy_with_grad(x, t, **opts)
            gs = gscale(x, **opts)
            assert_close(loss, want_loss, dtype, scale=gs, what=name)
            assert_close(grad, want_grad, dtype, scale=gs, what=name)
            assert_close(sigmoid_cross_entropy(x, t, **opts), want_loss, dtype, scale=gs, what=name)
            np.testing.assert_array_equal(x, x0)


def test_read_only_inputs_are_accepted_and_untouched(rng):
    x, t = make_inputs(rng, (6, 5), np.float64, "soft")
    w = np.linspace(0.5, 2, 5)
    pw = np.linspace(1, 3, 5)
    for a in (x, t, w, pw):
        a.setflags(write=False)
    want_loss, want_grad = ref.sigmoid_cross_entropy(x, t, weight=w, pos_weight=pw)
    loss, grad = sigmoid_cross_entropy_with_grad(x, t, weight=w, pos_weight=pw)
    assert_close(loss, want_loss, np.float64)
    assert_close(grad, want_grad, np.float64)
    assert grad.flags.writeable
    assert_close(sigmoid_cross_entropy(x, t, weight=w, pos_weight=pw), want_loss, np.float64)


# ------------------------------------------------------------------------- out


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_out_is_filled_and_returned(dtype, rng):
    for shape in ((6, 5), (7,), (2, 3, 4)):
        x, t = make_inputs(rng, shape, dtype, "soft")
        x0 = x.copy()
        want_loss, want_grad = ref.sigmoid_cross_entropy(x, t, pos_weight=2.0, reduction="sum")
        out = np.full_like(x, 7.0)
        loss, grad = sigmoid_cross_entropy_with_grad(x, t, pos_weight=2.0, reduction="sum", out=out)
        assert grad is out
        gs = gscale(x, "sum", pos_weight=2.0)
        assert_close(out, want_grad, dtype, scale=gs)
        assert_close(loss, want_loss, dtype, scale=gs)
        np.testing.assert_array_equal(x, x0)
        loss, grad = sigmoid_cross_entropy_with_grad(x, t, pos_weight=2.0, reduction="sum", out=x)
        assert grad is x
        assert_close(x, want_grad, dtype, scale=gs)
        assert_close(loss, want_loss, dtype, scale=gs)


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_out_with_non_contiguous_logits(dtype, rng):
    base, t = make_inputs(rng, (5, 6), dtype, "soft")
    x = base.T
    t = np.ascontiguousarray(t.T)
    x0 = x.copy()
    out = np.empty((6, 5), dtype=dtype)
    want_loss, want_grad = ref.sigmoid_cross_entropy(x, t, reduction="none", eps=1e-2)
    loss, grad = sigmoid_cross_entropy_with_grad(x, t, reduction="none", eps=1e-2, out=out)
    assert grad is out
    assert_close(loss, want_loss, dtype)
    assert_close(out, want_grad, dtype)
    np.testing.assert_array_equal(x, x0)


@pytest.mark.parametrize("opts", MODES)
@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_in_place_paths_agree_in_every_mode(opts, dtype, rng):
    """out=logits and a non-C-contiguous view run the in-place kernel: same results."""
    x, t = make_inputs(rng, (4, 5), dtype, "soft", scale=4.0)
    x[0, :2] = [30.0, -30.0]
    for reduction in REDUCTIONS:
        want_loss, want_grad = ref.sigmoid_cross_entropy(x, t, reduction=reduction, **opts)
        gs = gscale(x, reduction, **opts)
        xi = x.copy()
        loss, grad = sigmoid_cross_entropy_with_grad(xi, t, reduction=reduction, out=xi, **opts)
        assert grad is xi
        assert_close(loss, want_loss, dtype, scale=gs, what="out=logits")
        assert_close(xi, want_grad, dtype, scale=gs, what="out=logits")
        xf = np.asfortranarray(x)
        loss, grad = sigmoid_cross_entropy_with_grad(xf, t, reduction=reduction, **opts)
        assert_close(loss, want_loss, dtype, scale=gs, what="Fortran-ordered")
        assert_close(grad, want_grad, dtype, scale=gs, what="Fortran-ordered")
        np.testing.assert_array_equal(xf, x)


# ----------------------------------------------------------------------- large


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_large_input_runs_parallel_kernel_correctly(dtype, rng):
    """Large enough to take the threaded kernel (see numloss._parallel)."""
    from numloss import _parallel

    shape = (64, 600)
    assert _parallel.use_parallel(shape[0] * shape[1], shape[0]) or __import__("numba").get_num_threads() < 2
    x, t = make_inputs(rng, shape, dtype, "soft")
    for opts in (dict(), dict(weight=np.linspace(0.5, 2, 600), pos_weight=np.linspace(0.5, 2, 64)[:, None])):
        for reduction in REDUCTIONS:
            want_loss, want_grad = ref.sigmoid_cross_entropy(x, t, reduction=reduction, **opts)
            loss, grad = sigmoid_cross_entropy_with_grad(x, t, reduction=reduction, **opts)
            gs = gscale(x, reduction, **opts)
            assert_close(loss, want_loss, dtype, scale=gs)
            assert_close(grad, want_grad, dtype, scale=gs)
            assert_close(sigmoid_cross_entropy(x, t, reduction=reduction, **opts), want_loss, dtype, scale=gs)
            xi = x.copy()
            loss, grad = sigmoid_cross_entropy_with_grad(xi, t, reduction=reduction, out=xi, **opts)
            assert grad is xi
            assert_close(loss, want_loss, dtype, scale=gs, what="in place")
            assert_close(xi, want_grad, dtype, scale=gs, what="in place")


@pytest.mark.parametrize("kernels", ["plain", "general"])
def test_saturated_float64_elements_match_mpmath_to_1e_12(kernels):
    """Loss and gradient of saturated logits (|x| up to 700, hard targets) against mpmath at 50 digits.

    The gradient ``sigma(x) - t`` is formed as ``sigma(x)(1 - t) - sigma(-x) t``: for ``t = 1`` and large
    ``x`` it is ``-sigma(-x)`` to full relative accuracy, not the rounding residue of ``sigma(x) - 1``.
    """
    mpmath.mp.dps = 50
    x = np.array([[20.0, 35.0, 300.0, 700.0, -20.0, -35.0, -300.0, 0.5]])
    for t in (np.ones_like(x), np.zeros_like(x)):
        kw = {"pos_weight": np.ones(x.shape[1])} if kernels == "general" else {}
        loss, grad = sigmoid_cross_entropy_with_grad(x, t, reduction="none", **kw)
        for j, (v, tj) in enumerate(zip(x[0], t[0], strict=True)):
            xv = mpmath.mpf(float(v))
            # sigma(x) - t with 1 - sigma(x) = 1 / (1 + e^x): exact at any precision (not 1 - 1 at 50 digits)
            want_grad = -1 / (1 + mpmath.exp(xv)) if tj == 1 else 1 / (1 + mpmath.exp(-xv))
            want_loss = mpmath.log1p(mpmath.exp(-xv)) if tj == 1 else mpmath.log1p(mpmath.exp(xv))
            assert loss[0, j] == pytest.approx(float(want_loss), rel=1e-12, abs=0), (v, tj)
            assert grad[0, j] == pytest.approx(float(want_grad), rel=1e-12, abs=0), (v, tj)


# Short rows of the elementwise losses are regrouped into rows of up to 512
# elements (numloss._plumbing.merged_rows) when no weight depends on the row or
# the column.  Each element is computed by the same formula either way, so the
# gradient and the per-element losses must agree with the per-row computation
# (which where= forces: all True, per-row weights of 1, exact) to the dtype's
# tolerance, with NaN and inf at the same places; not bit for bit, since an
# element in the scalar tail of a short row and the same element in a vector
# body may round differently in the last place (seen: the focal loss, 1 ulp).
MERGE_SHAPES = [(256, 10), (96, 3), (64, 1), (2, 255), (1024, 2), (255, 10), (6, 7, 4), (8, 256), (16, 300)]


@pytest.mark.parametrize("shape", MERGE_SHAPES, ids=str)
@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("loss", ["sigmoid", "focal", "focal_gamma_1.5", "sigmoid_eps"])
def test_regrouped_short_rows_match_the_per_row_computation(loss, dtype, shape):
    import numloss

    rng = np.random.default_rng(sum(shape))
    x = (4 * rng.standard_normal(shape)).astype(dtype)
    x.flat[::7] = -np.inf
    x.flat[3::11] = np.nan
    t = (rng.random(shape) < 0.4).astype(dtype)
    every_row = np.ones(shape[:-1], dtype=bool)
    fn, kw = {
        "sigmoid": (numloss.sigmoid_cross_entropy_with_grad, {}),
        "sigmoid_eps": (numloss.sigmoid_cross_entropy_with_grad, {"eps": 1e-3}),
        "focal": (numloss.sigmoid_focal_loss_with_grad, {}),
        "focal_gamma_1.5": (numloss.sigmoid_focal_loss_with_grad, {"gamma": 1.5}),
    }[loss]
    x_before = x.copy()
    for reduction in ("none", "sum", "mean"):
        loss_m, grad_m = fn(x, t, reduction=reduction, **kw)
        loss_r, grad_r = fn(x, t, reduction=reduction, where=every_row, **kw)
        assert_close(grad_m, grad_r.astype(np.float64), dtype, scale=1.0, what="grad")
        if reduction == "none":
            assert_close(loss_m, loss_r.astype(np.float64), dtype, what="losses")
        else:  # NaN logits make both NaN; the finite case is checked on the finite elements below
            np.testing.assert_array_equal(np.isnan(loss_m), np.isnan(loss_r))
    np.testing.assert_array_equal(x, x_before)
    xf = np.where(np.isfinite(x), x, 0).astype(dtype)
    loss_m, grad_m = fn(xf, t, reduction="sum", **kw)
    loss_r, grad_r = fn(xf, t, reduction="sum", where=every_row, **kw)
    assert_close(grad_m, grad_r.astype(np.float64), dtype, scale=1.0, what="grad")
    assert_close(loss_m, np.float64(loss_r), dtype, what="loss")
    # in place: the regrouped rows are views of the logits themselves
    buf = xf.copy()
    loss_i, grad_i = fn(buf, t, reduction="sum", out=buf, **kw)
    assert grad_i is buf
    np.testing.assert_array_equal(grad_i, grad_m)
    assert loss_i == loss_m
