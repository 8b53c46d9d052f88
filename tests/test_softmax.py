"""softmax_cross_entropy(_with_grad) against tests/reference.py, PyTorch and finite differences."""

import mpmath
import numpy as np
import pytest
import reference as ref
from conftest import (
    DTYPES,
    REDUCTIONS,
    assert_close,
    assert_loss_type,
    central_difference,
    dtype_id,
    make_softmax_inputs,
    softmax_batch_shape,
)
from hypothesis import given, settings
from hypothesis import strategies as st

import numloss
from numloss import softmax_cross_entropy, softmax_cross_entropy_with_grad

TOL_R = {np.dtype(np.float32): 1e-5, np.dtype(np.float64): 1e-12}
W7 = np.array([0.5, 2.0, 1.0, 0.25, 3.0, 1.5, 0.75])


def gscale(x, t, axis=-1, reduction="mean", weight=None, ignore_index=-100, z_loss=0.0, normalizer=None, **_):
    """The size of the terms a softmax gradient entry is a difference of (see conftest.assert_close).

    ``w_max (1 + 2 z |lse|) / denominator``: a float32 gradient is accurate
    to a few ulp of this, not of the (possibly much smaller) difference.
    """
    x = np.moveaxis(np.asarray(x, dtype=np.float64), axis, -1)
    C = x.shape[-1]
    w = np.ones(C) if weight is None else np.asarray(weight, dtype=np.float64)
    finite = np.abs(x[np.isfinite(x)])
    lse = (finite.max() if finite.size else 0.0) + np.log(C)
    s = float(np.max(np.abs(w))) * (1.0 + 2.0 * z_loss * lse)
    if reduction == "mean":
        if normalizer is not None:
            d = normalizer
        elif np.asarray(t).dtype.kind in "iu":
            tt = np.asarray(t).reshape(-1)
            d = w[tt[tt != ignore_index]].sum()
        else:
            d = x.size // C
        s = s / d if d > 0 else 1.0
    return s


def case(id, shape=(6, 7), axis=-1, kind="int", n_ignored=1, scale=2.0, **opts):
    return pytest.param(dict(shape=shape, axis=axis, kind=kind, n_ignored=n_ignored, scale=scale, opts=opts), id=id)


# One row per option and per interaction the SPEC names.  ``eps=0.05`` with
# logits of scale 3 makes the clipping bite at both ends (checked below).
CASES = [
    case("int-plain", n_ignored=0),
    case("int-ignore"),
    case("int-ignore-custom", ignore_index=3, n_ignored=2),
    case("int-weight", weight=W7),
    case("int-weight-ignore", weight=W7, n_ignored=2),
    case("int-ls", label_smoothing=0.1),
    case("int-ls-1", label_smoothing=1.0),
    case("int-z", z_loss=0.01),
    case("int-softcap", softcap=1.5, scale=4.0),
    case("int-eps", eps=0.05, scale=3.0),
    case("int-eps-weight-ignore", eps=0.05, weight=W7, n_ignored=2, scale=3.0),
    case("int-weight-ignore-ls", weight=W7, label_smoothing=0.2, n_ignored=2),
    case("int-all", weight=W7, label_smoothing=0.2, z_loss=0.01, softcap=3.0, n_ignored=2),
    case("int-normalizer", normalizer=7.5, weight=W7),
    case("int-axis0", shape=(7, 5), axis=0, weight=W7, label_smoothing=0.1),
    case("int-1d", shape=(7,), n_ignored=0),
    case("int-1d-all", shape=(7,), n_ignored=0, weight=W7, label_smoothing=0.3, z_loss=0.05, softcap=2.0),
    case("int-3d", shape=(3, 4, 5), n_ignored=2, label_smoothing=0.1),
    case("int-3d-axis1", shape=(3, 7, 4), axis=1, n_ignored=2, weight=W7, z_loss=0.01),
    case("int-3d-axis0-eps", shape=(7, 3, 2), axis=0, n_ignored=1, eps=0.05, scale=3.0),
    case("int-C1", shape=(5, 1), n_ignored=1, label_smoothing=0.1, z_loss=0.01),
    case("int-C2", shape=(5, 2), label_smoothing=0.1, weight=np.array([0.3, 2.0])),
    case("prob-plain", kind="prob"),
    case("prob-onehot", kind="onehot"),
    case("prob-weight", kind="prob", weight=W7),
    case("prob-ls", kind="prob", label_smoothing=0.15),
    case("prob-z", kind="prob", z_loss=0.02),
    case("prob-softcap", kind="prob", softcap=1.5, scale=4.0),
    case("prob-eps", kind="prob", eps=0.05, scale=3.0),
    case("prob-eps-weight", kind="prob", eps=0.05, weight=W7, scale=3.0),
    case("prob-all", kind="prob", weight=W7, label_smoothing=0.2, z_loss=0.01, softcap=3.0),
    case("prob-normalizer", kind="prob", normalizer=2.5, label_smoothing=0.1),
    case("prob-axis0", kind="prob", shape=(7, 5), axis=0, weight=W7),
    case("prob-1d", kind="prob", shape=(7,), label_smoothing=0.1, z_loss=0.01),
    case("prob-3d-axis1", kind="prob", shape=(3, 7, 4), axis=1, weight=W7, softcap=2.0),
    case("prob-C1", kind="prob", shape=(5, 1), label_smoothing=0.1),
    case("prob-C2-eps", kind="onehot", shape=(5, 2), eps=0.05, scale=3.0),
]


def build(rng, c, dtype):
    opts = dict(c["opts"])
    x, t = make_softmax_inputs(rng, c["shape"], c["axis"], c["kind"], dtype, scale=c["scale"],
                               ignore_index=opts.get("ignore_index", -100), n_ignored=c["n_ignored"])
    xm = np.moveaxis(x, c["axis"], -1)
    batch, C = xm.shape[:-1], xm.shape[-1]
    if opts.get("eps") and int(np.prod(batch)) >= 2 and C >= 2:
        # make the clipping bite at 1 - eps (sample 0, target the dominant
        # class) and at eps (sample 1, target a class of tiny probability)
        i0, i1 = np.unravel_index(0, batch), np.unravel_index(1, batch)
        xm[i0 + (0,)] = 15.0
        xm[i1 + (0,)] = 15.0
        if c["kind"] == "int":
            t[i0], t[i1] = 0, 1
        else:
            tm = np.moveaxis(t, c["axis"], -1)
            tm[i0], tm[i1] = 0, 0
            tm[i0 + (0,)] = 1
            tm[i1 + (1,)] = 1
    return x, t, opts


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("c", CASES)
@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_matches_reference(c, dtype, reduction, rng):
    x, t, opts = build(rng, c, dtype)
    x0, t0 = x.copy(), t.copy()
    want_loss, want_grad = ref.softmax_cross_entropy(x, t, axis=c["axis"], reduction=reduction, **opts)
    batch = softmax_batch_shape(x.shape, c["axis"])

    loss = softmax_cross_entropy(x, t, axis=c["axis"], reduction=reduction, **opts)
    assert_loss_type(loss, dtype, reduction, batch)
    assert_close(loss, want_loss, dtype, what="loss", scale=gscale(x, t, c["axis"], reduction, **opts))

    loss2, grad = softmax_cross_entropy_with_grad(x, t, axis=c["axis"], reduction=reduction, **opts)
    assert_loss_type(loss2, dtype, reduction, batch)
    assert grad.shape == x.shape and grad.dtype == x.dtype
    assert_close(loss2, want_loss, dtype, what="loss (with_grad)", scale=gscale(x, t, c["axis"], reduction, **opts))
    assert_close(grad, want_grad, dtype, what="grad", scale=gscale(x, t, c["axis"], reduction, **opts))
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(t, t0)


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_eps_clips_both_bounds_against_reference(dtype):
    """Rows built so that p_y > 1 - eps and p_y < eps: the seed's clipped loss and p - t."""
    x = np.array([[12.0, 0.0, -1.0, 0.5], [12.0, 0.0, -1.0, 0.5], [0.1, 0.2, 0.3, 0.4]], dtype=dtype)
    for t in (np.array([0, 2, 3]), np.eye(4, dtype=dtype)[[0, 2, 3]]):
        for reduction in REDUCTIONS:
            want_loss, want_grad = ref.softmax_cross_entropy(x, t, eps=0.01, reduction=reduction)
            loss, grad = softmax_cross_entropy_with_grad(x, t, eps=0.01, reduction=reduction)
            assert_close(loss, want_loss, dtype, scale=gscale(x, t, reduction=reduction))
            assert_close(grad, want_grad, dtype, scale=gscale(x, t, reduction=reduction))
    # row 0: p_0 clipped to 0.99, loss -log(0.99); row 1: p_2 clipped to 0.01, loss -log(0.01)
    loss = softmax_cross_entropy(x.astype(np.float64), np.array([0, 2, 3]), eps=0.01, reduction="none")
    np.testing.assert_allclose(loss[:2], [-np.log(0.99), -np.log(0.01)], rtol=1e-12)


# --------------------------------------------------------------------- PyTorch


def _torch_ce(x, t, reduction, **kw):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    xt = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    if t.dtype.kind in "iu":
        tt = torch.tensor(t.astype(np.int64))
    else:
        tt = torch.tensor(t, dtype=torch.float64)
    if kw.get("weight") is not None:
        kw["weight"] = torch.tensor(kw["weight"], dtype=torch.float64)
    loss = F.cross_entropy(xt, tt, reduction=reduction, **kw)
    loss.sum().backward()
    return loss.detach().numpy(), xt.grad.numpy()


TORCH_CASES = [
    pytest.param(dict(kind="int"), id="int"),
    pytest.param(dict(kind="int", weight=W7), id="int-weight"),
    pytest.param(dict(kind="int", ignore_index=2, n_ignored=0), id="int-ignore-2"),
    pytest.param(dict(kind="int", n_ignored=2), id="int-ignore"),
    pytest.param(dict(kind="int", label_smoothing=0.2), id="int-ls"),
    pytest.param(dict(kind="int", weight=W7, n_ignored=2, label_smoothing=0.3), id="int-weight-ignore-ls"),
    pytest.param(dict(kind="prob"), id="prob"),
    pytest.param(dict(kind="prob", weight=W7, label_smoothing=0.3), id="prob-weight-ls"),
]


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("c", TORCH_CASES)
def test_matches_pytorch(c, reduction, rng):
    c = dict(c)
    kind = c.pop("kind")
    n_ignored = c.pop("n_ignored", 1 if kind == "int" else 0)
    x, t = make_softmax_inputs(rng, (9, 7), -1, kind, np.float64, n_ignored=n_ignored,
                               ignore_index=c.get("ignore_index", -100))
    want_loss, want_grad = _torch_ce(x, t, reduction, **dict(c))
    loss, grad = softmax_cross_entropy_with_grad(x, t, reduction=reduction, **c)
    assert_close(loss, want_loss, np.float64)
    assert_close(grad, want_grad, np.float64)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_matches_pytorch_3d_class_axis_1(reduction, rng):
    """PyTorch's (N, C, d1) layout is numloss's axis=1."""
    x, t = make_softmax_inputs(rng, (3, 7, 4), 1, "int", np.float64, n_ignored=2)
    want_loss, want_grad = _torch_ce(x, t, reduction, weight=W7, label_smoothing=0.1)
    loss, grad = softmax_cross_entropy_with_grad(x, t, axis=1, reduction=reduction, weight=W7, label_smoothing=0.1)
    assert_close(loss, want_loss, np.float64)
    assert_close(grad, want_grad, np.float64)


# ---------------------------------------------------------- finite differences

FD_CASES = [
    pytest.param(dict(kind="int"), id="int"),
    pytest.param(dict(kind="int", weight=W7, n_ignored=1), id="int-weight-ignore"),
    pytest.param(dict(kind="int", label_smoothing=0.2, weight=W7), id="int-ls-weight"),
    pytest.param(dict(kind="int", z_loss=0.05, weight=W7, n_ignored=1), id="int-z"),
    pytest.param(dict(kind="int", softcap=1.5), id="int-softcap"),
    pytest.param(dict(kind="int", eps=1e-6), id="int-eps"),
    pytest.param(dict(kind="int", normalizer=3.0, label_smoothing=0.1), id="int-normalizer"),
    pytest.param(dict(kind="int", weight=W7, label_smoothing=0.2, z_loss=0.05, softcap=2.0, n_ignored=1),
                 id="int-all"),
    pytest.param(dict(kind="prob"), id="prob"),
    pytest.param(dict(kind="prob", weight=W7, label_smoothing=0.2), id="prob-weight-ls"),
    pytest.param(dict(kind="prob", z_loss=0.05), id="prob-z"),
    pytest.param(dict(kind="prob", softcap=1.5), id="prob-softcap"),
    pytest.param(dict(kind="prob", eps=1e-6, weight=W7), id="prob-eps"),
    pytest.param(dict(kind="prob", weight=W7, label_smoothing=0.2, z_loss=0.05, softcap=2.0), id="prob-all"),
    pytest.param(dict(kind="int", axis=0, shape=(7, 3), label_smoothing=0.1, weight=W7), id="int-axis0"),
]


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("c", FD_CASES)
def test_gradient_matches_finite_differences(c, reduction, rng):
    c = dict(c)
    kind, n_ignored = c.pop("kind"), c.pop("n_ignored", 0)
    shape, axis = c.pop("shape", (3, 7)), c.pop("axis", -1)
    x, t = make_softmax_inputs(rng, shape, axis, kind, np.float64, scale=1.5, n_ignored=n_ignored)

    def f(z):
        return np.sum(softmax_cross_entropy(z, t, axis=axis, reduction=reduction, **c))

    _, grad = softmax_cross_entropy_with_grad(x, t, axis=axis, reduction=reduction, **c)
    fd = central_difference(f, x)
    scale = np.max(np.abs(fd))
    assert scale > 1e-3
    np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-8 * scale)


# ------------------------------------------------------------------ hypothesis


@st.composite
def softmax_problems(draw):
    ndim = draw(st.integers(1, 3))
    shape = list(draw(st.lists(st.integers(0, 4), min_size=ndim, max_size=ndim)))
    axis = draw(st.integers(-ndim, ndim - 1))
    shape[axis] = draw(st.sampled_from([1, 2, 3, 6]))
    kind = draw(st.sampled_from(["int", "prob"]))
    dtype = draw(st.sampled_from(DTYPES))
    C = shape[axis]
    opts = {}
    if draw(st.booleans()):
        opts["weight"] = np.linspace(0.25, 2.0, C)
    if draw(st.booleans()):
        opts["eps"] = draw(st.sampled_from([1e-6, 0.05, 0.3]))
    else:
        opts["label_smoothing"] = draw(st.sampled_from([0.0, 0.1, 1.0]))
        opts["z_loss"] = draw(st.sampled_from([0.0, 0.01]))
        opts["softcap"] = draw(st.sampled_from([None, 0.5, 5.0]))
    if kind == "int" and draw(st.booleans()):
        opts["ignore_index"] = draw(st.sampled_from([-100, 0]))
    opts["reduction"] = draw(st.sampled_from(REDUCTIONS))
    if draw(st.booleans()):
        opts["normalizer"] = draw(st.sampled_from([0.5, 3.0]))
    seed = draw(st.integers(0, 2**32 - 1))
    scale = draw(st.sampled_from([0.1, 3.0, 30.0]))
    return tuple(shape), axis, kind, dtype, opts, seed, scale


@settings(max_examples=60, deadline=None)
@given(softmax_problems())
def test_random_problems_match_reference(problem):
    shape, axis, kind, dtype, opts, seed, scale = problem
    rng = np.random.default_rng(seed)
    ignore = opts.get("ignore_index", -100)
    x, t = make_softmax_inputs(rng, shape, axis, kind, dtype, scale=scale, ignore_index=ignore,
                               n_ignored=int(rng.integers(0, 3)) if kind == "int" else 0)
    want_loss, want_grad = ref.softmax_cross_entropy(x, t, axis=axis, **opts)
    loss, grad = softmax_cross_entropy_with_grad(x, t, axis=axis, **opts)
    assert_loss_type(loss, dtype, opts["reduction"], softmax_batch_shape(shape, axis))
    assert_close(loss, want_loss, dtype, scale=gscale(x, t, axis, **opts))
    assert_close(grad, want_grad, dtype, scale=gscale(x, t, axis, **opts))
    assert_close(softmax_cross_entropy(x, t, axis=axis, **opts), want_loss, dtype, scale=gscale(x, t, axis, **opts))


@settings(max_examples=30, deadline=None)
@given(softmax_problems())
def test_integer_labels_equal_one_hot_targets(problem):
    """Without class weights, class indices and their one-hot rows are the same loss (optax's check)."""
    shape, axis, _, dtype, opts, seed, scale = problem
    opts.pop("weight", None)
    opts.pop("ignore_index", None)
    rng = np.random.default_rng(seed)
    x, y = make_softmax_inputs(rng, shape, axis, "int", dtype, scale=scale)
    onehot = np.moveaxis(np.eye(shape[axis], dtype=dtype)[y], -1, axis % len(shape))
    loss_i, grad_i = softmax_cross_entropy_with_grad(x, y, axis=axis, **opts)
    loss_p, grad_p = softmax_cross_entropy_with_grad(x, onehot, axis=axis, **opts)
    assert_close(loss_i, loss_p, dtype, scale=gscale(x, y, axis, **opts))
    assert_close(grad_i, grad_p, dtype, scale=gscale(x, y, axis, **opts))


# ---------------------------------------------------------------- extremes


def _mp_lse(row):
    return mpmath.log(mpmath.fsum(mpmath.exp(mpmath.mpf(float(v))) for v in row))


@pytest.mark.parametrize("big", [1e4, 3e38])
def test_huge_float32_logits_give_finite_exact_loss(big):
    mpmath.mp.dps = 50
    x = np.array([
        [big, -big, 0.0, 1.0],
        [-big, big, big, 0.0],
        [big / 2, -big, big / 2 - 1, 0.0],
        [0.0, -big, -big, 1.5],
    ], dtype=np.float32)
    y = np.array([0, 1, 2, 3])
    want = [float(_mp_lse(row) - mpmath.mpf(float(row[k]))) for row, k in zip(x, y, strict=True)]
    for reduction in REDUCTIONS:
        want_ref, want_grad = ref.softmax_cross_entropy(x, y, reduction=reduction)
        loss, grad = softmax_cross_entropy_with_grad(x, y, reduction=reduction)
        assert np.all(np.isfinite(loss)) and np.all(np.isfinite(grad))
        assert_close(loss, want_ref, np.float32, scale=gscale(x, y, reduction=reduction))
        assert_close(grad, want_grad, np.float32, scale=gscale(x, y, reduction=reduction))
    loss = softmax_cross_entropy(x, y, reduction="none")
    np.testing.assert_allclose(loss.astype(np.float64), want, rtol=1e-6, atol=1e-6)
    # targets on tiny-probability classes: losses up to ~big, still below float32's max
    y = np.array([2, 3, 3, 1])
    # (weights <= 1: a weight of 2 on a loss of 3e38 exceeds float32's range, which is inf, tested below)
    for opts in (dict(), dict(softcap=30.0), dict(label_smoothing=0.1), dict(eps=1e-6), dict(weight=[1, 0.75, 0.5, 1])):
        for reduction in ("none", "mean"):
            want_loss, want_grad = ref.softmax_cross_entropy(x, y, reduction=reduction, **opts)
            loss, grad = softmax_cross_entropy_with_grad(x, y, reduction=reduction, **opts)
            assert np.all(np.isfinite(loss)) and np.all(np.isfinite(grad)), (opts, loss, grad)
            assert_close(loss, want_loss, np.float32, what=str(opts), scale=gscale(x, y, reduction=reduction))
            assert_close(grad, want_grad, np.float32, what=str(opts), scale=gscale(x, y, reduction=reduction, **opts))
    if big == 3e38:
        # the exact loss of row 3 (weight 2 x 3e38) is above float32's max: inf, not an error or a wrong finite value
        loss = softmax_cross_entropy(x, y, weight=[1, 2, 0.5, 1], reduction="none")
        assert loss.dtype == np.float32 and np.isposinf(loss[3]) and np.all(np.isfinite(loss[:3]))


@pytest.mark.parametrize("dtype,big", [(np.float32, 1e4), (np.float32, 3e38), (np.float64, 1e300)],
                         ids=["float32-1e4", "float32-3e38", "float64-1e300"])
def test_huge_logits_probability_targets(dtype, big):
    # (float32 3e38: m - x overflows float32 in the target sums; their float64 fallback keeps the losses finite)
    x = np.array([[big, -big, 0.0], [-big, 0.0, big]], dtype=dtype)
    t = np.array([[0.5, 0.0, 0.5], [0.2, 0.3, 0.5]], dtype=dtype)
    for opts in ({}, dict(label_smoothing=0.1), dict(softcap=20.0), dict(eps=1e-3)):
        want_loss, want_grad = ref.softmax_cross_entropy(x, t, reduction="none", **opts)
        loss, grad = softmax_cross_entropy_with_grad(x, t, reduction="none", **opts)
        assert np.all(np.isfinite(loss)) and np.all(np.isfinite(grad))
        assert_close(loss, want_loss, dtype, scale=gscale(x, t, reduction="none", **opts))
        assert_close(grad, want_grad, dtype, scale=gscale(x, t, reduction="none", **opts))


MODES = [
    pytest.param(dict(), id="plain"),
    pytest.param(dict(weight=W7), id="weight"),
    pytest.param(dict(label_smoothing=0.2), id="ls"),
    pytest.param(dict(z_loss=0.01), id="z"),
    pytest.param(dict(softcap=2.0), id="softcap"),
    pytest.param(dict(eps=0.05), id="eps"),
    pytest.param(dict(eps=1e-6, weight=W7), id="eps-weight"),
    pytest.param(dict(weight=W7, label_smoothing=0.2, z_loss=0.01, softcap=3.0), id="all"),
]


@pytest.mark.parametrize("kind", ["int", "prob"])
@pytest.mark.parametrize("opts", MODES)
@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_minus_inf_masks(opts, kind, dtype):
    """-inf logits: probability 0, gradient 0, smoothing over unmasked classes only."""
    ninf = -np.inf
    x = np.array([
        [1.0, ninf, 0.5, ninf, -1.0, 2.0, 0.0],
        [ninf, ninf, 3.0, 1.0, ninf, ninf, ninf],
        [0.3, -0.2, 0.1, 1.0, -1.5, 0.7, ninf],
        [0.0, 0.0, ninf, 0.0, 0.0, 0.0, 0.0],
    ], dtype=dtype)
    mask = np.isneginf(x)
    if kind == "int":
        t = np.array([0, 3, 5, 4])
    else:
        t = np.zeros(x.shape, dtype=dtype)
        t[0, [0, 2]] = [0.25, 0.75]
        t[1, [2, 3]] = [0.5, 0.5]
        t[2, [1, 5]] = [0.5, 0.5]
        t[3, 4] = 1.0
    for reduction in REDUCTIONS:
        want_loss, want_grad = ref.softmax_cross_entropy(x, t, reduction=reduction, **opts)
        loss, grad = softmax_cross_entropy_with_grad(x, t, reduction=reduction, **opts)
        assert np.all(np.isfinite(loss)) and np.all(np.isfinite(grad))
        assert_close(loss, want_loss, dtype, scale=gscale(x, t, reduction=reduction, **opts))
        assert_close(grad, want_grad, dtype, scale=gscale(x, t, reduction=reduction, **opts))
        if not opts.get("eps"):
            # (with eps > 0 every probability is clipped to [eps, 1 - eps], a masked one included)
            assert np.all(grad[mask] == 0)
        if not (opts.get("eps") or opts.get("z_loss") or opts.get("softcap")):
            # sum_j (sum(q) p_j - q_j) = 0 for every row
            np.testing.assert_allclose(grad.sum(axis=1), 0, atol=1e-6 if dtype == np.float32 else 1e-15)


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_label_smoothing_with_masks_spreads_over_unmasked_classes(dtype):
    """With K unmasked classes the smoothing is ls/K, by a direct formula independent of reference.py."""
    ls = 0.3
    x = np.array([[2.0, -np.inf, 0.0, -np.inf, 1.0]], dtype=dtype)
    keep = np.array([0, 2, 4])
    xk = x[0, keep].astype(np.float64)
    logp = xk - np.log(np.sum(np.exp(xk)))
    want = -(1 - ls) * logp[1] - ls / 3 * logp.sum()  # target class 2 = kept position 1
    loss, grad = softmax_cross_entropy_with_grad(x, np.array([2]), label_smoothing=ls)
    np.testing.assert_allclose(float(loss), want, rtol=TOL_R[np.dtype(dtype)])
    p = np.exp(logp)
    q = np.full(3, ls / 3)
    q[1] += 1 - ls
    np.testing.assert_allclose(grad[0, keep], p - q, rtol=TOL_R[np.dtype(dtype)], atol=1e-7)
    assert np.all(grad[0, [1, 3]] == 0)
    # and equal to the unmasked problem on the 3 kept classes
    loss3, grad3 = softmax_cross_entropy_with_grad(x[:, keep], np.array([1]), label_smoothing=ls)
    np.testing.assert_allclose(float(loss), float(loss3), rtol=TOL_R[np.dtype(dtype)])
    np.testing.assert_allclose(grad[:, keep], grad3, rtol=TOL_R[np.dtype(dtype)], atol=1e-7)


@pytest.mark.parametrize("kind", ["int", "prob"])
@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_label_smoothing_masks_and_underflow_across_blocks(kind, dtype, rng):
    """Label smoothing on rows longer than one summation block, with -inf masks and unmasked
    classes whose probability underflows to 0 (gradient -ls w_c / K, not 0): out of place, in
    place and loss only all agree with the reference (the kernels store exp(x - m) in the
    gradient row, -1 marking a masked class)."""
    N, C = 6, 1100
    big = 1e4 if dtype == np.float32 else 1e150  # (z-loss: lse**2 stays finite)
    x = rng.standard_normal((N, C)).astype(dtype)
    x[0, ::3] = -np.inf
    x[1, 600:] = -np.inf
    x[2, 7] = big  # every other class underflows
    x[3, :] = -np.inf
    x[3, 5] = 0.0  # one unmasked class
    x[4, 1000:] = -800.0  # unmasked, underflowing in both dtypes
    t = np.array([1, 3, 9, 5, 2, 1050])
    w = rng.uniform(0.5, 2.0, C)
    masked = np.isneginf(x)
    if kind == "prob":
        t = np.where(masked, 0.0, rng.random((N, C))).astype(dtype)
        t /= t.sum(axis=1, keepdims=True)
    for opts in (dict(label_smoothing=0.1), dict(label_smoothing=0.25, weight=w, z_loss=0.01)):
        for reduction in REDUCTIONS:
            gs = gscale(x, t, reduction=reduction, **opts)
            want_loss, want_grad = ref.softmax_cross_entropy(x, t, reduction=reduction, **opts)
            loss, grad = softmax_cross_entropy_with_grad(x, t, reduction=reduction, **opts)
            assert_close(loss, want_loss, dtype, scale=gs)
            assert_close(grad, want_grad, dtype, scale=gs)
            assert np.all(grad[masked] == 0) and np.all(grad[4, 1000:] < 0)
            x_in = x.copy()
            loss_in, grad_in = softmax_cross_entropy_with_grad(x_in, t, reduction=reduction, out=x_in, **opts)
            assert grad_in is x_in
            np.testing.assert_array_equal(grad_in, grad)
            np.testing.assert_array_equal(loss_in, loss)
            assert_close(softmax_cross_entropy(x, t, reduction=reduction, **opts), want_loss, dtype, scale=gs)


@pytest.mark.parametrize("C", [63, 64, 65, 127, 1000, 1088, 1100])
@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("smoothing", ["none", "unit-weights", "weights"])
def test_row_tail_step(C, dtype, smoothing, rng):
    """The plain row kernel's last TAIL_STEP classes are one overlapping vector step that masks the
    classes already done (K.TAIL_STEP): the row's maximum, the target, -inf masks and a NaN placed in
    the overlap and in the tail; out of place, in place and loss only against the reference. The same
    rows with label smoothing (whole-row loops; its unit-weight sums in blocks, and class weights)."""
    from numloss._kernels import softmax as K

    opts = {"none": {}, "unit-weights": dict(label_smoothing=0.1),
            "weights": dict(label_smoothing=0.1, weight=np.linspace(0.5, 2.0, C))}[smoothing]

    step = K.TAIL_STEP
    body = C - C % step if C >= step else C
    lo = max(C - step, 0)  # first class of the tail step
    N = 7
    x = (3 * rng.standard_normal((N, C))).astype(dtype)
    t = rng.integers(0, C, N)
    x[0, lo] = 40.0  # maximum in the overlap (already in the body when body < C)
    t[0] = lo
    x[1, C - 1] = 40.0  # maximum and target in the tail
    t[1] = C - 1
    x[2, max(lo, 1):] = -np.inf  # the whole tail step masked (class 0 kept: the target)
    t[2] = 0
    x[3, (lo + body) // 2] = np.nan  # NaN in the overlap: that row only
    x[4, body:] = -np.inf  # the tail proper masked
    t[4] = 0
    x[5, :] = 0.0
    x[5, C - 1] = 1e4 if dtype == np.float32 else 1e150  # confident row, maximum in the tail
    t[5] = C - 1
    for reduction in REDUCTIONS:
        want_loss, want_grad = ref.softmax_cross_entropy(x, t, reduction=reduction, **opts)
        gs = gscale(x, t, reduction=reduction, **opts)
        loss, grad = softmax_cross_entropy_with_grad(x, t, reduction=reduction, **opts)
        assert_close(loss, want_loss, dtype, scale=gs, what="loss")
        assert_close(grad, want_grad, dtype, scale=gs, what="gradient")
        xi = x.copy()
        loss_in, grad_in = softmax_cross_entropy_with_grad(xi, t, reduction=reduction, out=xi, **opts)
        np.testing.assert_array_equal(grad_in, grad)
        np.testing.assert_array_equal(loss_in, loss)
        assert_close(softmax_cross_entropy(x, t, reduction=reduction, **opts), want_loss, dtype, scale=gs)
    rows = softmax_cross_entropy(x, t, reduction="none", **opts)
    assert np.isnan(rows[3]) and np.isfinite(np.delete(rows, 3)).all()
    # the tail step sums the same terms in the same order with the gradient and without it
    lse_loss_only = softmax_cross_entropy(x, t, reduction="none", aux=True, **opts)[1].lse
    lse_with_grad = softmax_cross_entropy_with_grad(x, t, reduction="none", aux=True, **opts)[2].lse
    np.testing.assert_array_equal(lse_loss_only, lse_with_grad)


@pytest.mark.parametrize("opts", [dict(), dict(softcap=2.0), dict(z_loss=0.01), dict(weight=W7)])
@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_target_on_masked_class_gives_inf_loss(opts, dtype):
    x = np.array([[1.0, -np.inf, 0.5, 0, 0, 0, 0], [1.0, 2.0, 0.5, 0, 0, 0, 0]], dtype=dtype)
    loss = softmax_cross_entropy(x, np.array([1, 0]), reduction="none", **opts)
    assert loss[0] == np.inf and np.isfinite(loss[1])
    assert softmax_cross_entropy(x, np.array([1, 0]), reduction="sum", **opts) == np.inf
    t = np.zeros(x.shape, dtype=dtype)
    t[0, 1] = 0.5
    t[0, 0] = 0.5
    t[1, 0] = 1.0
    loss = softmax_cross_entropy(x, t, reduction="none", **opts)
    assert loss[0] == np.inf and np.isfinite(loss[1])
    _, grad = softmax_cross_entropy_with_grad(x, t, reduction="none", **opts)
    assert np.all(np.isfinite(grad[1]))


BAD = [np.nan, np.inf]


@pytest.mark.parametrize("bad", BAD, ids=["nan", "inf"])
@pytest.mark.parametrize("kind", ["int", "prob"])
@pytest.mark.parametrize("opts", MODES)
@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_nan_and_plus_inf_logits_poison_only_their_row(opts, kind, dtype, bad):
    rng = np.random.default_rng(5)
    x, t = make_softmax_inputs(rng, (5, 7), -1, kind, dtype)
    x[1, 3] = bad  # a non-target, non-max position
    x[3, 0] = bad
    x[3, 4] = -np.inf
    x[4, :] = np.nan  # a whole NaN row
    if kind == "int":
        t[1] = 2
        t[0] = -100  # ignored row with a NaN logit: loss 0, grad 0
        x[0, 5] = np.nan
    bad_rows = [1, 3, 4]
    good_rows = [0, 2] if kind == "int" else [2]
    good = np.zeros(5, dtype=bool)
    good[good_rows] = True
    for reduction in REDUCTIONS:
        loss, grad = softmax_cross_entropy_with_grad(x, t, reduction=reduction, **opts)
        loss_plain = softmax_cross_entropy(x, t, reduction=reduction, **opts)
        assert np.all(np.isnan(grad[bad_rows])), grad
        want_loss, want_grad = ref.softmax_cross_entropy(x, t, reduction=reduction, **opts)
        if reduction == "none":
            for lo in (loss, loss_plain):
                assert np.all(np.isnan(lo[bad_rows]))
                assert_close(lo[good], want_loss[good], dtype, scale=gscale(x, t, reduction=reduction, **opts))
        else:
            assert np.isnan(loss) and np.isnan(loss_plain)
        if kind == "int":
            assert np.all(grad[0] == 0)
        assert_close(grad[good], want_grad[good], dtype, scale=gscale(x, t, reduction=reduction, **opts))


# ---------------------------------------------------- empty and all ignored


@pytest.mark.parametrize("kind", ["int", "prob"])
@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_empty_batch(kind, dtype):
    x = np.zeros((0, 5), dtype=dtype)
    t = np.zeros((0,), dtype=np.int64) if kind == "int" else np.zeros((0, 5), dtype=dtype)
    assert softmax_cross_entropy(x, t, reduction="sum") == 0
    assert np.isnan(softmax_cross_entropy(x, t, reduction="mean"))
    assert softmax_cross_entropy(x, t, reduction="mean", normalizer=4.0) == 0
    loss, grad = softmax_cross_entropy_with_grad(x, t, reduction="none")
    assert loss.shape == (0,) and loss.dtype == dtype and grad.shape == (0, 5) and grad.dtype == dtype
    loss, grad = softmax_cross_entropy_with_grad(x, t, reduction="mean")
    assert np.isnan(loss) and loss.dtype == dtype and grad.shape == (0, 5)
    x3 = np.zeros((2, 0, 5), dtype=dtype)
    t3 = np.zeros((2, 0), dtype=np.int64) if kind == "int" else x3
    loss, grad = softmax_cross_entropy_with_grad(x3, t3.copy(), reduction="none")
    assert loss.shape == (2, 0) and grad.shape == (2, 0, 5)


@pytest.mark.parametrize("opts", [dict(), dict(weight=W7, label_smoothing=0.1, z_loss=0.01), dict(eps=0.01)])
@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_all_ignored_batch(opts, dtype):
    x = np.random.default_rng(1).standard_normal((4, 7)).astype(dtype)
    x[2, 1] = np.nan  # ignored rows never show their logits
    t = np.full(4, -100)
    for reduction, want in (("sum", 0.0), ("mean", np.nan)):
        loss, grad = softmax_cross_entropy_with_grad(x, t, reduction=reduction, **opts)
        np.testing.assert_equal(float(loss), want)
        assert loss.dtype == dtype
        assert np.all(grad == 0)
        np.testing.assert_equal(float(softmax_cross_entropy(x, t, reduction=reduction, **opts)), want)
    loss, grad = softmax_cross_entropy_with_grad(x, t, reduction="mean", normalizer=10.0, **opts)
    assert loss == 0 and np.all(grad == 0)
    loss, grad = softmax_cross_entropy_with_grad(x, t, reduction="none", **opts)
    assert np.all(loss == 0) and np.all(grad == 0)


def test_weights_summing_to_zero_over_kept_samples_give_nan_mean():
    x = np.zeros((2, 3))
    loss, grad = softmax_cross_entropy_with_grad(x, np.array([0, 0]), weight=np.array([0.0, 1.0, 1.0]))
    assert np.isnan(loss)


# ------------------------------------------------------------------- layout


@pytest.mark.parametrize("kind", ["int", "prob"])
@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_non_contiguous_and_transposed_inputs(kind, dtype, rng):
    base, tbase = make_softmax_inputs(rng, (8, 14), -1, kind, dtype)
    views = [
        ("strided", base[::2, ::2], tbase[::2] if kind == "int" else tbase[::2, ::2], -1),
        ("transposed", base[:, :7].T, tbase if kind == "int" else tbase[:, :7].T, 0),
        ("fortran", np.asfortranarray(base[:, :7]), tbase if kind == "int" else np.asfortranarray(tbase[:, :7]),
         -1),
        ("reversed", base[::-1, ::-1], tbase[::-1] if kind == "int" else tbase[::-1, ::-1], -1),
    ]
    if kind == "prob":
        views = [(n, v, t / t.sum(axis=a, keepdims=True), a) for n, v, t, a in views]
    else:
        views = [(n, v, t % v.shape[a], a) for n, v, t, a in views]
    for name, x, t, axis in views:
        x0 = x.copy()
        for reduction in REDUCTIONS:
            opts = dict(axis=axis, reduction=reduction, weight=np.linspace(0.5, 2, x.shape[axis]),
                        label_smoothing=0.1)
            want_loss, want_grad = ref.softmax_cross_entropy(x, t, **opts)
            loss, grad = softmax_cross_entropy_with_grad(x, t, **opts)
            assert_close(loss, want_loss, dtype, what=name, scale=gscale(x, t, **opts))
            assert_close(grad, want_grad, dtype, what=name, scale=gscale(x, t, **opts))
            assert_close(softmax_cross_entropy(x, t, **opts), want_loss, dtype, what=name, scale=gscale(x, t, **opts))
            np.testing.assert_array_equal(x, x0)


def test_read_only_inputs_are_accepted_and_untouched(rng):
    x, t = make_softmax_inputs(rng, (6, 7), -1, "int", np.float64, n_ignored=1)
    w = W7.copy()
    for a in (x, t, w):
        a.setflags(write=False)
    want_loss, want_grad = ref.softmax_cross_entropy(x, t, weight=w, label_smoothing=0.1)
    loss, grad = softmax_cross_entropy_with_grad(x, t, weight=w, label_smoothing=0.1)
    assert_close(loss, want_loss, np.float64)
    assert_close(grad, want_grad, np.float64)
    assert grad.flags.writeable
    assert_close(softmax_cross_entropy(x, t, weight=w, label_smoothing=0.1), want_loss, np.float64)
    xp, tp = make_softmax_inputs(rng, (6, 7), -1, "prob", np.float64)
    xp.setflags(write=False)
    tp.setflags(write=False)
    want_loss, want_grad = ref.softmax_cross_entropy(xp, tp)
    loss, grad = softmax_cross_entropy_with_grad(xp, tp)
    assert_close(loss, want_loss, np.float64)
    assert_close(grad, want_grad, np.float64)


LABEL_DTYPES = [np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64]


@pytest.mark.parametrize("label_dtype", LABEL_DTYPES, ids=dtype_id)
def test_every_integer_label_dtype(label_dtype, rng):
    x, t = make_softmax_inputs(rng, (6, 7), -1, "int", np.float32)
    signed = np.dtype(label_dtype).kind == "i"
    ignore = -1 if signed else 6
    t[[1, 4]] = ignore
    tl = t.astype(label_dtype)
    want_loss, want_grad = ref.softmax_cross_entropy(x, t, ignore_index=ignore, reduction="none")
    loss, grad = softmax_cross_entropy_with_grad(x, tl, ignore_index=ignore, reduction="none")
    assert_close(loss, want_loss, np.float32, scale=gscale(x, t, reduction="none"))
    assert_close(grad, want_grad, np.float32, scale=gscale(x, t, reduction="none"))
    assert loss[1] == 0 and np.all(grad[4] == 0)


# ----------------------------------------------------------------------- out


@pytest.mark.parametrize("kind", ["int", "prob"])
@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_out_is_filled_and_returned(kind, dtype, rng):
    x, t = make_softmax_inputs(rng, (6, 7), -1, kind, dtype, n_ignored=1 if kind == "int" else 0)
    x0 = x.copy()
    want_loss, want_grad = ref.softmax_cross_entropy(x, t, label_smoothing=0.1)
    out = np.full_like(x, 123.0)
    loss, grad = softmax_cross_entropy_with_grad(x, t, label_smoothing=0.1, out=out)
    gs = gscale(x, t)
    assert grad is out
    assert_close(grad, want_grad, dtype, scale=gs)
    assert_close(loss, want_loss, dtype, scale=gs)
    np.testing.assert_array_equal(x, x0)
    # out=logits: the gradient overwrites the logits
    loss, grad = softmax_cross_entropy_with_grad(x, t, label_smoothing=0.1, out=x)
    assert grad is x
    assert_close(x, want_grad, dtype, scale=gs)
    assert_close(loss, want_loss, dtype, scale=gs)


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_out_with_other_axis_and_non_contiguous_logits(dtype, rng):
    x, t = make_softmax_inputs(rng, (3, 7, 4), 1, "int", dtype, n_ignored=1)
    want_loss, want_grad = ref.softmax_cross_entropy(x, t, axis=1, weight=W7)
    gs = gscale(x, t, 1, weight=W7)
    out = np.empty_like(x)
    loss, grad = softmax_cross_entropy_with_grad(x, t, axis=1, weight=W7, out=out)
    assert grad is out
    assert_close(out, want_grad, dtype, scale=gs)
    assert_close(loss, want_loss, dtype, scale=gs)
    loss, grad = softmax_cross_entropy_with_grad(x, t, axis=1, weight=W7, out=x)
    assert grad is x
    assert_close(x, want_grad, dtype, scale=gs)

    base, tt = make_softmax_inputs(rng, (7, 6), 0, "int", dtype)
    xt = base.T  # (6, 7), transposed view
    x0 = xt.copy()
    want_loss, want_grad = ref.softmax_cross_entropy(xt, tt)
    out = np.empty((6, 7), dtype=dtype)
    loss, grad = softmax_cross_entropy_with_grad(xt, tt, out=out)
    assert grad is out
    assert_close(out, want_grad, dtype, scale=gscale(xt, tt))
    np.testing.assert_array_equal(xt, x0)


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_out_in_place_3d_and_1d(dtype, rng):
    for shape in ((2, 3, 7), (7,)):
        x, t = make_softmax_inputs(rng, shape, -1, "prob", dtype)
        want_loss, want_grad = ref.softmax_cross_entropy(x, t, reduction="none", z_loss=0.01)
        gs = gscale(x, t, reduction="none", z_loss=0.01)
        loss, grad = softmax_cross_entropy_with_grad(x, t, reduction="none", z_loss=0.01, out=x)
        assert grad is x
        assert_close(loss, want_loss, dtype, scale=gs)
        assert_close(x, want_grad, dtype, scale=gs)


@pytest.mark.parametrize("kind", ["int", "prob"])
@pytest.mark.parametrize("opts", MODES)
@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_in_place_paths_agree_in_every_mode(opts, kind, dtype, rng):
    """out=logits, a class axis other than the last and a non-C-contiguous view all
    run the kernel in place (on the logits or on a copy of them): same results."""
    x, t = make_softmax_inputs(rng, (5, 7), -1, kind, dtype, n_ignored=1 if kind == "int" else 0, scale=3.0)
    want_loss, want_grad = ref.softmax_cross_entropy(x, t, reduction="sum", **opts)
    gs = gscale(x, t, reduction="sum", **opts)

    xi = x.copy()
    loss, grad = softmax_cross_entropy_with_grad(xi, t, reduction="sum", out=xi, **opts)
    assert grad is xi
    assert_close(loss, want_loss, dtype, scale=gs, what="out=logits")
    assert_close(xi, want_grad, dtype, scale=gs, what="out=logits")

    xa = np.ascontiguousarray(x.T)
    ta = t if kind == "int" else np.ascontiguousarray(t.T)
    loss, grad = softmax_cross_entropy_with_grad(xa, ta, axis=0, reduction="sum", **opts)
    assert_close(loss, want_loss, dtype, scale=gs, what="axis=0")
    assert_close(grad, want_grad.T, dtype, scale=gs, what="axis=0")

    xf = np.asfortranarray(x)
    loss, grad = softmax_cross_entropy_with_grad(xf, t, reduction="sum", **opts)
    assert_close(loss, want_loss, dtype, scale=gs, what="Fortran-ordered")
    assert_close(grad, want_grad, dtype, scale=gs, what="Fortran-ordered")
    np.testing.assert_array_equal(xf, x)


# ------------------------------------------------------------------- large


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_large_batch_runs_parallel_kernel_correctly(dtype, rng):
    """Large enough to take the threaded kernels (see numloss._parallel)."""
    from numloss import _parallel

    shape = (300, 130)
    assert _parallel.use_parallel(shape[0] * shape[1], shape[0]) or __import__("numba").get_num_threads() < 2
    for kind in ("int", "prob"):
        x, t = make_softmax_inputs(rng, shape, -1, kind, dtype, n_ignored=7 if kind == "int" else 0)
        opts = dict(weight=np.linspace(0.5, 2.0, shape[1]), label_smoothing=0.1, z_loss=1e-3)
        for reduction in REDUCTIONS:
            want_loss, want_grad = ref.softmax_cross_entropy(x, t, reduction=reduction, **opts)
            loss, grad = softmax_cross_entropy_with_grad(x, t, reduction=reduction, **opts)
            gs = gscale(x, t, reduction=reduction, **opts)
            assert_close(loss, want_loss, dtype, scale=gs)
            assert_close(grad, want_grad, dtype, scale=gs)
            assert_close(softmax_cross_entropy(x, t, reduction=reduction, **opts), want_loss, dtype, scale=gs)
            xi = x.copy()
            loss, grad = softmax_cross_entropy_with_grad(xi, t, reduction=reduction, out=xi, **opts)
            assert grad is xi
            assert_close(loss, want_loss, dtype, scale=gs, what="in place")
            assert_close(xi, want_grad, dtype, scale=gs, what="in place")


@pytest.mark.parametrize("shape", [(70, 1), (130, 2), (5000, 10), (4100, 31)], ids=str)
@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_few_classes_kernels_across_blocks_and_tasks(shape, dtype, rng):
    """C < SMALL_C takes the transposed-tile kernels: partial tiles, several
    parallel tasks, extreme rows in the middle of a tile, every output form."""
    from numloss._kernels import softmax as K

    N, C = shape
    assert C < K.SMALL_C and N % K.BLOCK_ROWS != 0
    x, t = make_softmax_inputs(rng, shape, -1, "int", dtype, scale=3.0, n_ignored=N // 10)
    big = float(np.finfo(np.float32).max) / 2  # (z_loss's lse**2 stays finite in the float64 reference)
    x[1] = -big if C > 1 else 0.0  # all classes equal (huge and negative)
    x[2, 0] = big  # one huge logit
    x[3] = 1e4 * np.sign(rng.standard_normal(C))
    x[5, -1] = np.nan  # a NaN row, kept
    t[5] = 0
    x[6, 0] = np.nan  # a NaN row, ignored: loss 0, gradient 0
    t[6] = -100
    masks = C > 1  # with one class a mask leaves nothing (NaN, tested elsewhere)
    if masks:
        x[4, 0] = -np.inf  # a masked class, not the target
        t[4] = C - 1
        t[7] = C - 1
        x[7, C - 1] = -np.inf  # target on a masked class: loss inf
    bad = [5, 7] if masks else [5]
    kept_finite = np.ones(N, dtype=bool)
    kept_finite[bad] = False
    for opts in (dict(), dict(weight=np.linspace(0.5, 2.0, C), z_loss=1e-3)):
        want_loss, want_grad = ref.softmax_cross_entropy(x, t, reduction="none", **opts)
        gs = gscale(x, t, reduction="none", **opts)
        loss, grad = softmax_cross_entropy_with_grad(x, t, reduction="none", **opts)
        xi = x.copy()
        loss_in, grad_in = softmax_cross_entropy_with_grad(xi, t, reduction="none", out=xi, **opts)
        assert grad_in is xi
        for what, lo, gr in (("out", loss, grad), ("in place", loss_in, grad_in)):
            assert np.isnan(lo[5]) and np.all(np.isnan(gr[5])), what
            assert lo[6] == 0 and np.all(gr[6] == 0), what
            assert lo[7] == np.inf or not masks, what
            assert_close(lo[kept_finite], want_loss[kept_finite], dtype, scale=gs, what=what)
            assert_close(gr[kept_finite], want_grad[kept_finite], dtype, scale=gs, what=what)
        np.testing.assert_array_equal(softmax_cross_entropy(x, t, reduction="none", **opts), loss)
        for reduction in ("sum", "mean"):
            keep = t != -100
            keep[bad] = False
            xs, ts = x[keep], t[keep]
            want = ref.softmax_cross_entropy(xs, ts, reduction=reduction, **opts)[0]
            got = softmax_cross_entropy(xs, ts, reduction=reduction, **opts)
            assert_close(got, want, dtype, scale=gscale(xs, ts, reduction=reduction, **opts), what=reduction)


@pytest.mark.slow
@pytest.mark.parametrize(
    "dtype",
    [pytest.param(np.float32, marks=pytest.mark.ci_subset, id="float32"), pytest.param(np.float64, id="float64")],
)
def test_llama3_vocabulary(dtype, rng):
    C = 128256
    x, t = make_softmax_inputs(rng, (8, C), -1, "int", dtype, scale=3.0, n_ignored=1)
    x[2, :1000] = -np.inf
    for opts in (dict(), dict(label_smoothing=0.1, z_loss=1e-4)):
        want_loss, want_grad = ref.softmax_cross_entropy(x, t, **opts)
        loss, grad = softmax_cross_entropy_with_grad(x, t, **opts)
        assert_close(loss, want_loss, dtype, scale=gscale(x, t, **opts))
        assert_close(grad, want_grad, dtype, scale=gscale(x, t, **opts))


def test_public_namespace():
    assert set(numloss.__all__) >= {
        "softmax_cross_entropy", "softmax_cross_entropy_with_grad", "sigmoid_cross_entropy",
        "sigmoid_cross_entropy_with_grad", "nn",
    }
