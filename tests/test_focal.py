"""sigmoid_focal_loss and softmax_focal_loss (+ _with_grad) against tests/reference.py, PyTorch and finite
differences."""

import numpy as np
import pytest
import reference as ref
from conftest import DTYPES, REDUCTIONS, assert_close, assert_loss_type, central_difference, dtype_id
from hypothesis import given, settings
from hypothesis import strategies as st

import numloss
from numloss import (
    sigmoid_focal_loss,
    sigmoid_focal_loss_with_grad,
    softmax_focal_loss,
    softmax_focal_loss_with_grad,
)

W7 = np.array([0.5, 2.0, 1.0, 0.25, 3.0, 1.5, 0.75])


def sigmoid_inputs(rng, shape, dtype, soft=False, scale=2.0):
    x = (rng.standard_normal(shape) * scale).astype(dtype)
    t = rng.uniform(0, 1, shape) if soft else (rng.random(shape) < 0.3)
    return x, t.astype(dtype)


def softmax_inputs(rng, shape, dtype, n_ignored=1, ignore_index=-100, scale=2.0):
    x = (rng.standard_normal(shape) * scale).astype(dtype)
    t = rng.integers(0, shape[-1], size=shape[:-1])
    flat = t.reshape(-1)
    if n_ignored and flat.size:
        flat[rng.choice(flat.size, size=min(n_ignored, flat.size), replace=False)] = ignore_index
    return x, t


# ------------------------------------------------------------ sigmoid focal

SIGMOID_OPTS = [
    pytest.param(dict(), id="default"),
    pytest.param(dict(alpha=None, gamma=0.5), id="noalpha-g0.5"),
    pytest.param(dict(alpha=0.7, gamma=0.0), id="g0"),
    pytest.param(dict(alpha=-1, gamma=1.5), id="alpha-1-g1.5"),
    pytest.param(dict(alpha=0.25, gamma=1.0, soft=True), id="soft-g1"),
    pytest.param(dict(alpha=0.25, gamma=3.0, soft=True), id="soft-g3"),
    # the kernel's forms of q**gamma: q * q (gamma 2), a square root and products (gamma = n / 2 up to
    # 7.5, all of the above), exp(gamma log q) from the softplus (hard targets), libm pow (soft targets)
    pytest.param(dict(alpha=0.25, gamma=7.5), id="g7.5"),
    pytest.param(dict(alpha=0.25, gamma=8.0), id="g8"),
    pytest.param(dict(alpha=0.25, gamma=0.75), id="g0.75"),
    pytest.param(dict(alpha=0.25, gamma=2.3, soft=True), id="soft-g2.3"),
]


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("opts", SIGMOID_OPTS)
def test_sigmoid_focal_matches_reference(rng, dtype, reduction, opts):
    opts = dict(opts)
    x, t = sigmoid_inputs(rng, (6, 7), dtype, soft=opts.pop("soft", False))
    want_loss, want_grad = ref.sigmoid_focal_loss(x, t, reduction=reduction, **opts)
    loss, grad = sigmoid_focal_loss_with_grad(x, t, reduction=reduction, **opts)
    assert_loss_type(loss, dtype, reduction, x.shape)
    assert grad.dtype == dtype and grad.shape == x.shape
    assert_close(loss, want_loss, dtype, what="loss")
    assert_close(grad, want_grad, dtype, what="grad")
    assert_close(sigmoid_focal_loss(x, t, reduction=reduction, **opts), want_loss, dtype, what="plain loss")


@pytest.mark.parametrize("shape", [(), (5,), (2, 3, 4)], ids=str)
def test_sigmoid_focal_any_shape_and_strides(rng, shape):
    x, t = sigmoid_inputs(rng, shape, np.float64)
    want_loss, want_grad = ref.sigmoid_focal_loss(x, t, reduction="none")
    loss, grad = sigmoid_focal_loss_with_grad(x, t, reduction="none")
    assert_close(loss, want_loss, np.float64)
    assert_close(grad, want_grad, np.float64)
    if x.ndim == 3:  # strided views run the in-place loops (compiled for float32 only, to save test time)
        xv, tv = x.astype(np.float32).transpose(2, 0, 1), t.transpose(2, 0, 1)[..., ::-1]
        want_loss, want_grad = ref.sigmoid_focal_loss(xv, tv)
        loss, grad = sigmoid_focal_loss_with_grad(xv, tv)
        assert_close(loss, want_loss, np.float32)
        assert_close(grad, want_grad, np.float32)


@pytest.mark.parametrize("opts", [dict(), dict(alpha=None, gamma=0.5), dict(gamma=1.5, soft=True)],
                         ids=["default", "g0.5", "soft-g1.5"])
def test_sigmoid_focal_gradient_is_finite_difference(rng, opts):
    opts = dict(opts)
    x, t = sigmoid_inputs(rng, (4, 5), np.float64, soft=opts.pop("soft", False))
    _, grad = sigmoid_focal_loss_with_grad(x, t, reduction="sum", **opts)
    fd = central_difference(lambda z: sigmoid_focal_loss(z, t, reduction="sum", **opts), x)
    np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-8)


def test_sigmoid_focal_matches_torch_autograd(rng):
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F

    for alpha, gamma, soft in [(0.25, 2.0, False), (-1.0, 0.5, False), (0.6, 1.5, True)]:
        x, t = sigmoid_inputs(rng, (5, 6), np.float64, soft=soft)
        xt = torch.from_numpy(x.copy()).requires_grad_()
        tt = torch.from_numpy(t)
        # torchvision.ops.sigmoid_focal_loss, written out
        p = torch.sigmoid(xt)
        ce = F.binary_cross_entropy_with_logits(xt, tt, reduction="none")
        p_t = p * tt + (1 - p) * (1 - tt)
        loss = ce * ((1 - p_t) ** gamma)
        if alpha >= 0:
            loss = (alpha * tt + (1 - alpha) * (1 - tt)) * loss
        loss = loss.mean()
        loss.backward()
        got_loss, got_grad = sigmoid_focal_loss_with_grad(x, t, alpha=alpha, gamma=gamma)
        assert_close(got_loss, loss.item(), np.float64)
        assert_close(got_grad, xt.grad.numpy(), np.float64)


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("gamma", [2.0, 0.3])
def test_sigmoid_focal_extreme_logits_are_finite_limits(dtype, gamma):
    x = np.array([1e4, -1e4, 1e4, -1e4, 40.0, -40.0, 0.0], dtype=dtype)
    t = np.array([1, 0, 0, 1, 1, 0, 1], dtype=dtype)
    loss, grad = sigmoid_focal_loss_with_grad(x, t, alpha=0.25, gamma=gamma, reduction="none")
    assert np.all(np.isfinite(loss)) and np.all(np.isfinite(grad))
    # confidently right: loss and gradient 0; confidently wrong: (1 - alpha_t) |x|-ish loss, gradient +-alpha_t
    np.testing.assert_array_equal(loss[:2], 0)
    np.testing.assert_array_equal(grad[:2], 0)
    np.testing.assert_allclose(loss[2:4], [0.75e4, 0.25e4], rtol=1e-6)
    np.testing.assert_allclose(grad[2:4], [0.75, -0.25], rtol=1e-6)
    want_loss, want_grad = ref.sigmoid_focal_loss(x, t, gamma=gamma, reduction="none")
    assert_close(loss, want_loss, dtype)
    assert_close(grad, want_grad, dtype)


def test_sigmoid_focal_small_gamma_gradient_is_finite_near_q0():
    # q = 1 - p_t is tiny: q**(gamma - 1) alone would be huge
    x = np.array([30.0, 35.0, -30.0, -36.0, 700.0, -745.0])
    t = np.array([1.0, 1.0, 0.0, 0.0, 1.0, 0.0])
    for gamma in (0.1, 0.5, 0.999):
        loss, grad = sigmoid_focal_loss_with_grad(x, t, gamma=gamma, reduction="none")
        want_loss, want_grad = ref.sigmoid_focal_loss(x, t, gamma=gamma, reduction="none")
        assert np.all(np.isfinite(grad))
        assert_close(loss, want_loss, np.float64)
        assert_close(grad, want_grad, np.float64)


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_sigmoid_focal_nonfinite_logits(dtype):
    x = np.array([[np.nan, 1.0], [np.inf, -1.0], [-np.inf, 0.5], [-np.inf, 0.5]], dtype=dtype)
    t = np.array([[1, 0], [1, 0], [0, 1], [1, 1]], dtype=dtype)
    loss, grad = sigmoid_focal_loss_with_grad(x, t, reduction="none")
    assert np.isnan(loss[0, 0]) and np.isnan(grad[0, 0]) and np.isnan(loss[1, 0]) and np.isnan(grad[1, 0])
    # -inf is a sure negative: 0 for t = 0, an infinite loss with a finite gradient for t = 1
    assert loss[2, 0] == 0 and grad[2, 0] == 0
    assert loss[3, 0] == np.inf and grad[3, 0] == -0.25
    finite = np.isfinite(x)
    want_loss, want_grad = ref.sigmoid_focal_loss(x, t, reduction="none")
    assert_close(loss[finite], want_loss[finite], dtype)
    assert_close(grad[finite], want_grad[finite], dtype)
    assert np.isnan(sigmoid_focal_loss(x, t))


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("shape", [(5, 6), (3, 1000)], ids=str)
@pytest.mark.parametrize("gamma", [2.0, 0.5, 1.0, 1.5, 3.0, 7.5])
def test_sigmoid_focal_out_and_in_place(rng, dtype, shape, gamma):
    # out of place, in place and loss-only agree bit for bit for q * q and the square-root-and-products forms
    x, t = sigmoid_inputs(rng, shape, dtype)
    want_loss, want_grad = sigmoid_focal_loss_with_grad(x, t, gamma=gamma)
    out = np.empty_like(x)
    loss, grad = sigmoid_focal_loss_with_grad(x, t, gamma=gamma, out=out)
    assert grad is out and loss == want_loss
    np.testing.assert_array_equal(out, want_grad)
    buf = x.copy()
    loss, grad = sigmoid_focal_loss_with_grad(buf, t, gamma=gamma, out=buf)
    assert grad is buf and loss == want_loss
    np.testing.assert_array_equal(buf, want_grad)
    assert sigmoid_focal_loss(x, t, gamma=gamma) == want_loss
    with pytest.raises(ValueError, match="out"):
        sigmoid_focal_loss_with_grad(x, t, out=np.empty((5, 6), dtype=np.float32 if x.dtype == np.float64
                                                       else np.float64))
    with pytest.raises(ValueError, match="shares memory with target"):
        sigmoid_focal_loss_with_grad(x, t, out=t)


def test_sigmoid_focal_empty_and_bad_input():
    x = np.empty((0, 3))
    loss, grad = sigmoid_focal_loss_with_grad(x, x)
    assert np.isnan(loss) and grad.shape == (0, 3)
    assert sigmoid_focal_loss(x, x, reduction="sum") == 0
    ok = np.zeros((2, 3))
    with pytest.raises(TypeError, match="float32"):
        sigmoid_focal_loss(ok.astype(np.int32), ok)
    with pytest.raises(ValueError, match="target must have the logits' shape"):
        sigmoid_focal_loss(ok, ok[0])
    with pytest.raises(ValueError, match="alpha"):
        sigmoid_focal_loss(ok, ok, alpha=1.5)
    with pytest.raises(ValueError, match="gamma"):
        sigmoid_focal_loss(ok, ok, gamma=-1.0)
    with pytest.raises(ValueError, match="gamma"):
        sigmoid_focal_loss(ok, ok, gamma=float("nan"))
    with pytest.raises(ValueError, match="reduction"):
        sigmoid_focal_loss(ok, ok, reduction="avg")


def test_sigmoid_focal_gamma0_without_alpha_is_sigmoid_cross_entropy(rng):
    x, t = sigmoid_inputs(rng, (6, 7), np.float64, soft=True)
    loss, grad = sigmoid_focal_loss_with_grad(x, t, alpha=None, gamma=0.0)
    want_loss, want_grad = numloss.sigmoid_cross_entropy_with_grad(x, t)
    assert_close(loss, want_loss, np.float64)
    assert_close(grad, want_grad, np.float64)


@settings(max_examples=15)
@given(
    x=st.lists(st.floats(-60, 60), min_size=1, max_size=12),
    bits=st.integers(0, 2**12 - 1),
    gamma=st.sampled_from([0.0, 0.25, 1.0, 2.0, 2.5]),
    alpha=st.sampled_from([None, 0.0, 0.25, 1.0]),
)
def test_sigmoid_focal_property_reference_and_nonnegative(x, bits, gamma, alpha):
    x = np.array(x)
    t = np.array([(bits >> i) & 1 for i in range(x.size)], dtype=np.float64)
    loss, grad = sigmoid_focal_loss_with_grad(x, t, alpha=alpha, gamma=gamma, reduction="none")
    want_loss, want_grad = ref.sigmoid_focal_loss(x, t, alpha=alpha, gamma=gamma, reduction="none")
    assert np.all(loss >= 0)
    assert_close(loss, want_loss, np.float64)
    assert_close(grad, want_grad, np.float64)


def serial_and_parallel(fn):
    """``fn()`` on all of Numba's threads and on one thread."""
    import numba

    threads = numba.get_num_threads()
    many = fn()
    numba.set_num_threads(1)
    try:
        one = fn()
    finally:
        numba.set_num_threads(threads)
    return many, one


def test_sigmoid_focal_parallel_equals_serial(rng):
    x, t = sigmoid_inputs(rng, (512, 80), np.float32)  # above the parallel threshold
    (loss, grad), (loss1, grad1) = serial_and_parallel(lambda: sigmoid_focal_loss_with_grad(x, t))
    assert loss == loss1
    np.testing.assert_array_equal(grad, grad1)
    want_loss, want_grad = ref.sigmoid_focal_loss(x, t)
    assert_close(loss, want_loss, np.float32)
    assert_close(grad, want_grad, np.float32)


# ------------------------------------------------------------ softmax focal

SOFTMAX_OPTS = [
    pytest.param(dict(), id="default"),
    pytest.param(dict(gamma=0.5, weight=W7), id="g0.5-weight"),
    pytest.param(dict(gamma=1.0, ignore_index=2), id="g1-ignore2"),
    pytest.param(dict(gamma=3.0, weight=W7, n_ignored=3), id="g3-weight-ignore"),
]


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("opts", SOFTMAX_OPTS)
def test_softmax_focal_matches_reference(rng, dtype, reduction, opts):
    opts = dict(opts)
    n_ignored = opts.pop("n_ignored", 1)
    x, t = softmax_inputs(rng, (6, 7), dtype, n_ignored=n_ignored, ignore_index=opts.get("ignore_index", -100))
    want_loss, want_grad = ref.softmax_focal_loss(x, t, reduction=reduction, **opts)
    loss, grad = softmax_focal_loss_with_grad(x, t, reduction=reduction, **opts)
    assert_loss_type(loss, dtype, reduction, (6,))
    assert_close(loss, want_loss, dtype, what="loss")
    assert_close(grad, want_grad, dtype, what="grad")
    assert_close(softmax_focal_loss(x, t, reduction=reduction, **opts), want_loss, dtype, what="plain loss")


def test_softmax_focal_3d_and_strided(rng):
    x, t = softmax_inputs(rng, (3, 4, 5), np.float32, n_ignored=2)
    for xs, ts in ((x, t), (x.transpose(1, 0, 2), t.T)):  # the second is a non-contiguous view
        want_loss, want_grad = ref.softmax_focal_loss(xs, ts, gamma=1.5, reduction="none")
        loss, grad = softmax_focal_loss_with_grad(xs, ts, gamma=1.5, reduction="none")
        assert loss.shape == xs.shape[:-1]
        assert_close(loss, want_loss, np.float32)
        assert_close(grad, want_grad, np.float32)


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_softmax_focal_gamma0_equals_softmax_cross_entropy_exactly(rng, dtype, reduction):
    x, t = softmax_inputs(rng, (9, 700), dtype, n_ignored=2)
    kw = dict(weight=rng.uniform(0.5, 2, 700), reduction=reduction)
    loss, grad = softmax_focal_loss_with_grad(x, t, gamma=0.0, **kw)
    want_loss, want_grad = numloss.softmax_cross_entropy_with_grad(x, t, **kw)
    np.testing.assert_array_equal(loss, want_loss)
    np.testing.assert_array_equal(grad, want_grad)
    np.testing.assert_array_equal(softmax_focal_loss(x, t, gamma=0, **kw), numloss.softmax_cross_entropy(x, t, **kw))
    # and the focal kernel's gamma -> 0 limit agrees with it
    loss_eps, grad_eps = softmax_focal_loss_with_grad(x, t, gamma=1e-300, **kw)
    assert_close(loss_eps, want_loss, dtype)
    assert_close(grad_eps, want_grad, dtype)


@pytest.mark.parametrize("gamma", [2.0, 0.5])
def test_softmax_focal_gradient_is_finite_difference(rng, gamma):
    x, t = softmax_inputs(rng, (4, 5), np.float64)
    kw = dict(gamma=gamma, weight=W7[:5])
    _, grad = softmax_focal_loss_with_grad(x, t, **kw)
    fd = central_difference(lambda z: softmax_focal_loss(z, t, **kw), x)
    np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-9)


def test_softmax_focal_matches_torch_autograd(rng):
    torch = pytest.importorskip("torch")

    x, t = softmax_inputs(rng, (6, 7), np.float64, n_ignored=2)
    for gamma in (2.0, 0.5):
        xt = torch.from_numpy(x.copy()).requires_grad_()
        w = torch.from_numpy(W7)
        kept = torch.from_numpy(t != -100)
        y = torch.from_numpy(np.where(t == -100, 0, t))
        logp_y = torch.log_softmax(xt, -1).gather(1, y[:, None])[:, 0]
        per = -w[y] * (1 - logp_y.exp()) ** gamma * logp_y
        loss = (per * kept).sum() / (w[y] * kept).sum()
        loss.backward()
        got_loss, got_grad = softmax_focal_loss_with_grad(x, t, gamma=gamma, weight=W7)
        assert_close(got_loss, loss.item(), np.float64)
        assert_close(got_grad, xt.grad.numpy(), np.float64)


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_softmax_focal_extremes(dtype):
    x = np.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 0.0], [30.0, 0.0, 0.0], [0.0, -np.inf, 1.0],
                  [-np.inf, 0.0, 1.0], [np.nan, 0.0, 1.0], [np.inf, 0.0, 1.0]], dtype=dtype)
    t = np.array([0, 0, 0, 0, 0, 0, 1])
    for gamma in (2.0, 0.5):
        loss, grad = softmax_focal_loss_with_grad(x, t, gamma=gamma, reduction="none")
        want_loss, want_grad = ref.softmax_focal_loss(x, t, gamma=gamma, reduction="none")
        assert_close(loss, want_loss, dtype)
        assert_close(grad, want_grad, dtype)
        assert loss[0] == 0 and np.all(grad[0] == 0)
        np.testing.assert_allclose(loss[1], 2e4, rtol=1e-6)
        assert np.all(np.isfinite(grad[:5]))
        assert grad[3, 1] == 0  # masked class
        assert loss[4] == np.inf  # target on a masked class
        assert np.all(np.isnan(grad[5:])) and np.all(np.isnan(loss[5:]))


def test_softmax_focal_out_empty_and_bad_input(rng):
    x, t = softmax_inputs(rng, (5, 4), np.float32)
    want_loss, want_grad = softmax_focal_loss_with_grad(x, t)
    buf = x.copy()
    loss, grad = softmax_focal_loss_with_grad(buf, t, out=buf)
    assert grad is buf and loss == want_loss
    np.testing.assert_array_equal(buf, want_grad)
    out = np.empty_like(x)
    assert softmax_focal_loss_with_grad(x, t, out=out)[1] is out
    np.testing.assert_array_equal(out, want_grad)
    with pytest.raises(ValueError, match="out"):
        softmax_focal_loss_with_grad(x, t, out=out[:, :2])

    loss, grad = softmax_focal_loss_with_grad(np.empty((0, 4)), np.empty(0, dtype=int))
    assert np.isnan(loss) and grad.shape == (0, 4)
    all_ignored = np.full(5, -100)
    loss, grad = softmax_focal_loss_with_grad(x, all_ignored)
    assert np.isnan(loss) and np.all(grad == 0)
    assert softmax_focal_loss(x, all_ignored, reduction="sum") == 0

    with pytest.raises(ValueError, match="integer class indices"):
        softmax_focal_loss(x, t.astype(np.float32))
    with pytest.raises(IndexError, match="class index 4"):
        softmax_focal_loss(x, np.array([0, 1, 4, 0, 0]))
    with pytest.raises(ValueError, match="target of class indices must have"):
        softmax_focal_loss(x, t[:3])
    with pytest.raises(ValueError, match="weight"):
        softmax_focal_loss(x, t, weight=np.ones(3))
    with pytest.raises(ValueError, match="gamma"):
        softmax_focal_loss(x, t, gamma=-0.5)
    with pytest.raises(TypeError, match="logits"):
        softmax_focal_loss(x.astype(np.int16), t)


@settings(max_examples=15)
@given(
    rows=st.lists(st.lists(st.floats(-50, 50), min_size=3, max_size=3), min_size=1, max_size=5),
    gamma=st.sampled_from([0.25, 1.0, 2.0, 4.0]),
    seed=st.integers(0, 2**16),
)
def test_softmax_focal_property_bounded_by_cross_entropy(rows, gamma, seed):
    x = np.array(rows)
    t = np.random.default_rng(seed).integers(0, 3, size=x.shape[0])
    focal, grad = softmax_focal_loss_with_grad(x, t, gamma=gamma, reduction="none")
    ce = numloss.softmax_cross_entropy(x, t, reduction="none")
    assert np.all(focal >= 0) and np.all(focal <= ce * (1 + 1e-12) + 1e-300)
    want_loss, want_grad = ref.softmax_focal_loss(x, t, gamma=gamma, reduction="none")
    assert_close(focal, want_loss, np.float64)
    assert_close(grad, want_grad, np.float64)
    np.testing.assert_allclose(grad.sum(axis=-1), 0, atol=1e-12)


def test_softmax_focal_parallel_equals_serial(rng):
    x, t = softmax_inputs(rng, (64, 1000), np.float32, n_ignored=5)
    w = rng.uniform(0.5, 2, 1000)
    (loss, grad), (loss1, grad1) = serial_and_parallel(lambda: softmax_focal_loss_with_grad(x, t, weight=w))
    assert loss == loss1
    np.testing.assert_array_equal(grad, grad1)
    want_loss, want_grad = ref.softmax_focal_loss(x, t, weight=w)
    assert_close(loss, want_loss, np.float32)
    assert_close(grad, want_grad, np.float32)


def test_nn_focal_modules_forward_backward(rng):
    from numloss import nn

    x, t = sigmoid_inputs(rng, (4, 5), np.float32)
    m = nn.SigmoidFocalLoss(alpha=0.5, gamma=2.0)
    loss = m.forward(x, t)
    want_loss, want_grad = sigmoid_focal_loss_with_grad(x, t, alpha=0.5, gamma=2.0)
    assert isinstance(loss, float) and loss == float(want_loss)
    np.testing.assert_array_equal(m.backward(), want_grad)
    x, y = softmax_inputs(rng, (4, 5), np.float64)
    m = nn.SoftmaxFocalLoss(gamma=1.0, reduction="sum")
    assert m(x, y) == float(softmax_focal_loss(x, y, gamma=1.0, reduction="sum"))
    assert m.backward().dtype == np.float64
    with pytest.raises(RuntimeError):
        nn.SoftmaxFocalLoss().backward()
    with pytest.raises(ValueError, match="reduction"):
        nn.SigmoidFocalLoss(reduction="none")
