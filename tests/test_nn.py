"""numloss.nn against a plain NumPy transcription of the seed's two classes.

The ``Seed*`` classes below are the seed's code (shared/seed, "深度学习基础系列 |
损失函数") with its two typos repaired: the sigmoid's mask ``x 0`` (the page
lost the ``<``) and the softmax backward's ``batch_siz``.  ``eps`` is a
constructor argument so other values can be checked; the seed hard-codes 1e-6.
"""

import numpy as np
import pytest
from conftest import DTYPES, assert_close, dtype_id

import numloss
from numloss.nn import Module, Parameter, SigmoidCrossEntropy, SoftmaxCrossEntropy

# ------------------------------------------------------------ the seed's code


class SeedParameter:
    def __init__(self, data):
        self.data = np.array(data, dtype=np.float64)
        self.grad = np.zeros_like(self.data)


class SeedModule:
    def __init__(self):
        self.params = []
        self.weight_decay = 0.0

    def decay_backward(self):
        for p in self.params:
            p.grad += self.weight_decay * p.data


class SeedSigmoidCrossEntropy(SeedModule):
    def __init__(self, params, weight_decay=1e-5, eps=1e-6):
        super().__init__()
        self.params = params
        self.weight_decay = weight_decay
        self.eps = eps

    def sigmoid(self, x):
        p0 = x < 0
        p1 = ~p0
        x = x.copy()
        x[p0] = np.exp(x[p0]) / (1 + np.exp(x[p0]))
        x[p1] = 1 / (1 + np.exp(-x[p1]))
        return x

    def forward(self, x, label_onehot):
        eps = self.eps
        self.label_onehot = label_onehot
        self.predict = self.sigmoid(x)
        self.predict = np.clip(self.predict, a_max=1 - eps, a_min=eps)
        self.batch_size = self.predict.shape[0]
        return -np.sum(label_onehot * np.log(self.predict) + (1 - label_onehot) * np.log(1 - self.predict)) / \
            self.batch_size

    def backward(self):
        self.decay_backward()
        return (self.predict - self.label_onehot) / self.batch_size


class SeedSoftmaxCrossEntropy(SeedModule):
    def __init__(self, eps=1e-6):
        super().__init__()
        self.eps = eps

    def softmax(self, x):
        max_x = np.max(x, axis=1, keepdims=True)
        exp_x = np.exp(x - max_x)
        return exp_x / np.sum(exp_x, axis=1, keepdims=True)

    def forward(self, x, label_onehot):
        eps = self.eps
        self.label_onehot = label_onehot
        self.predict = self.softmax(x)
        self.predict = np.clip(self.predict, a_max=1 - eps, a_min=eps)
        self.batch_size = self.predict.shape[0]
        return -np.sum(label_onehot * np.log(self.predict)) / self.batch_size

    def backward(self):
        return (self.predict - self.label_onehot) / self.batch_size


# ------------------------------------------------------------------- helpers

RTOL = {np.dtype(np.float32): 1e-5, np.dtype(np.float64): 1e-12}


def _logits(rng, shape, dtype, scale=3.0):
    x = rng.standard_normal(shape) * scale
    x.reshape(-1)[:4] = [25.0, -25.0, 14.0, -14.0]  # clipped at 1 - eps and eps (sigmoid, and softmax rows)
    return x.astype(dtype)


def _onehot(rng, n, c):
    return np.eye(c)[rng.integers(0, c, size=n)]


# ------------------------------------------------------------------- sigmoid


@pytest.mark.parametrize("eps", [1e-6, 1e-2])
@pytest.mark.parametrize("shape", [(8, 5), (9,), (4, 3, 2)], ids=str)
@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_sigmoid_forward_backward_match_the_seed(dtype, shape, eps, rng):
    x = _logits(rng, shape, dtype)
    y = (rng.uniform(size=shape) < 0.5).astype(dtype)
    y.reshape(-1)[:4] = [1, 0, 0, 1]
    y.reshape(-1)[4:6] = 0.3  # soft labels work as in the seed
    seed = SeedSigmoidCrossEntropy([], eps=eps)
    mod = SigmoidCrossEntropy(eps=eps)
    want = seed.forward(x.astype(np.float64), y.astype(np.float64))
    got = mod.forward(x, y)
    assert type(got) is float
    np.testing.assert_allclose(got, want, rtol=RTOL[np.dtype(dtype)])
    want_g = seed.backward()
    g = mod.backward()
    assert g.dtype == dtype and g.shape == x.shape
    assert_close(g, want_g, dtype, scale=1.0 / shape[0])
    assert mod(x, y) == got  # __call__ is forward


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_sigmoid_weight_decay_matches_the_seed(dtype, rng):
    datas = [rng.standard_normal((4, 3)).astype(dtype), rng.standard_normal(5).astype(dtype)]
    seed_params = [SeedParameter(d) for d in datas]
    params = [Parameter(d.copy()) for d in datas]
    for p in params:
        assert np.all(p.grad == 0) and p.grad.shape == p.data.shape and p.grad.dtype == p.data.dtype
    wd = 0.1
    seed = SeedSigmoidCrossEntropy(seed_params, weight_decay=wd)
    mod = SigmoidCrossEntropy(params, weight_decay=wd)
    for step in range(3):
        x = _logits(rng, (6, 4), dtype)
        y = (rng.uniform(size=(6, 4)) < 0.5).astype(dtype)
        np.testing.assert_allclose(mod.forward(x, y), seed.forward(x.astype(np.float64), y.astype(np.float64)),
                                   rtol=RTOL[np.dtype(dtype)])
        assert_close(mod.backward(), seed.backward(), dtype, scale=1 / 6)
        for p, sp in zip(params, seed_params, strict=True):
            # grad accumulates wd * data once per backward, as in the seed
            np.testing.assert_allclose(p.grad, sp.grad, rtol=RTOL[np.dtype(dtype)])
            np.testing.assert_allclose(p.grad, (step + 1) * wd * sp.data, rtol=RTOL[np.dtype(dtype)])
            np.testing.assert_array_equal(p.data, sp.data.astype(dtype))  # data is never touched


def test_sigmoid_default_weight_decay_and_eps():
    p = Parameter(np.array([2.0, -4.0]))
    mod = SigmoidCrossEntropy([p])
    assert mod.weight_decay == 1e-5 and mod.eps == 1e-6
    x = np.array([[40.0, -40.0]])
    loss = mod.forward(x, np.array([[0.0, 1.0]]))
    np.testing.assert_allclose(loss, -2 * np.log(1e-6), rtol=1e-12)  # both clipped at eps
    mod.backward()
    np.testing.assert_allclose(p.grad, 1e-5 * p.data, rtol=1e-15)


def test_sigmoid_with_integer_and_bool_labels(rng):
    x = _logits(rng, (5, 3), np.float32)  # (float32: the kernels test_sigmoid.py compiles for these labels)
    y = rng.uniform(size=(5, 3)) < 0.5
    seed = SeedSigmoidCrossEntropy([])
    want = seed.forward(x.astype(np.float64), y.astype(np.float64))
    want_g = seed.backward()
    for labels in (y, y.astype(np.int64)):
        mod = SigmoidCrossEntropy()
        np.testing.assert_allclose(mod.forward(x, labels), want, rtol=1e-5)
        assert_close(mod.backward(), want_g, np.float32, scale=1 / 5)


# ------------------------------------------------------------------- softmax


@pytest.mark.parametrize("eps", [1e-6, 1e-2])
@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_softmax_forward_backward_match_the_seed(dtype, eps, rng):
    x = _logits(rng, (8, 6), dtype)
    y = _onehot(rng, 8, 6).astype(dtype)
    y[0] = np.eye(6)[0]  # row 0: logit 25 on the target: p clipped at 1 - eps
    y[1] = np.eye(6)[0]  # row 1: target on a row with logit 14 elsewhere: p tiny
    y[2] = [0.5, 0.25, 0.25, 0, 0, 0]  # soft labels
    seed = SeedSoftmaxCrossEntropy(eps=eps)
    mod = SoftmaxCrossEntropy(eps=eps)
    want = seed.forward(x.astype(np.float64), y.astype(np.float64))
    got = mod.forward(x, y)
    assert type(got) is float
    np.testing.assert_allclose(got, want, rtol=RTOL[np.dtype(dtype)])
    g = mod.backward()
    assert g.dtype == dtype and g.shape == x.shape
    assert_close(g, seed.backward(), dtype, scale=1 / 8)
    assert mod(x, y) == got


def test_softmax_with_integer_one_hot_labels_and_3d_input(rng):
    """Integer one-hot labels are accepted, and (N, C, L) input is softmaxed over axis 1 as in the seed."""
    x = _logits(rng, (4, 5, 3), np.float64)
    y = np.moveaxis(np.eye(5, dtype=np.int64)[rng.integers(0, 5, size=(4, 3))], -1, 1)
    seed = SeedSoftmaxCrossEntropy()
    want = seed.forward(x, y.astype(np.float64))
    mod = SoftmaxCrossEntropy()
    np.testing.assert_allclose(mod.forward(x, y), want, rtol=1e-12)
    assert_close(mod.backward(), seed.backward(), np.float64)


def test_softmax_default_eps():
    mod = SoftmaxCrossEntropy()
    assert mod.eps == 1e-6
    x = np.array([[100.0, 0.0, -100.0]])
    loss = mod.forward(x, np.array([[0.0, 0.0, 1.0]]))
    np.testing.assert_allclose(loss, -np.log(1e-6), rtol=1e-12)
    np.testing.assert_allclose(mod.backward(), [[1 - 1e-6, 1e-6, 1e-6 - 1]], rtol=1e-9)


# -------------------------------------------------------------------- module


def test_module_decay_backward_and_classes():
    p1, p2 = Parameter(np.array([1.0, -2.0])), Parameter(np.ones((2, 2)), grad=np.full((2, 2), 0.5))
    np.testing.assert_array_equal(p2.grad, 0.5)
    m = Module([p1, p2], weight_decay=0.25)
    m.decay_backward()
    np.testing.assert_array_equal(p1.grad, [0.25, -0.5])
    np.testing.assert_array_equal(p2.grad, np.full((2, 2), 0.75))
    assert isinstance(SigmoidCrossEntropy(), Module) and isinstance(SoftmaxCrossEntropy(), Module)
    assert numloss.nn.SoftmaxCrossEntropy is SoftmaxCrossEntropy


def test_softmax_backward_does_not_decay_parameters():
    mod = SoftmaxCrossEntropy()
    mod.params = [Parameter(np.ones(3))]
    mod.weight_decay = 1.0
    mod.forward(np.zeros((2, 3)), np.eye(3)[:2])
    mod.backward()
    assert np.all(mod.params[0].grad == 0)  # the seed's softmax backward has no decay_backward()


@pytest.mark.parametrize("cls", [SigmoidCrossEntropy, SoftmaxCrossEntropy])
def test_backward_before_forward_and_empty_batch(cls):
    with pytest.raises(RuntimeError, match="forward"):
        cls().backward()
    with pytest.raises(ValueError, match="batch"):
        cls().forward(np.zeros((0, 3)), np.zeros((0, 3)))


@pytest.mark.parametrize("cls", [SigmoidCrossEntropy, SoftmaxCrossEntropy])
def test_forward_never_modifies_its_inputs(cls, rng):
    x = _logits(rng, (4, 3), np.float64)
    y = np.eye(3)[[0, 1, 2, 0]]
    x0, y0 = x.copy(), y.copy()
    mod = cls()
    mod.forward(x, y)
    g = mod.backward()
    assert not np.shares_memory(g, x)
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(y, y0)


@pytest.mark.parametrize("name, function, target_kind", [
    ("SigmoidFocalLoss", "sigmoid_focal_loss_with_grad", "dense"),
    ("SoftmaxFocalLoss", "softmax_focal_loss_with_grad", "index"),
    ("CosFaceLoss", "cosface_cross_entropy_with_grad", "index"),
    ("ArcFaceLoss", "arcface_cross_entropy_with_grad", "index"),
])
def test_fused_modules_pass_sample_weight_and_where_to_their_function(name, function, target_kind, rng):
    x = rng.uniform(-1.0, 1.0, size=(6, 4))
    t = rng.integers(0, 4, size=6) if target_kind == "index" else (rng.random((6, 4)) < 0.5).astype(float)
    sw = rng.uniform(0.5, 2.0, size=6)
    where = np.array([True, False, True, True, True, True])
    x[1] = np.nan  # masked: not read
    module = getattr(numloss.nn, name)()
    loss = module.forward(x, t, sample_weight=sw, where=where)
    want_loss, want_grad = getattr(numloss, function)(x, t, sample_weight=sw, where=where)
    assert loss == float(want_loss) and np.isfinite(loss)
    np.testing.assert_array_equal(module.backward(), want_grad)
    assert module.forward(x[[0, 2]], t[[0, 2]]) == float(getattr(numloss, function)(x[[0, 2]], t[[0, 2]])[0])
