"""Bad input: the right exception, a message naming the argument, and nothing half-written."""

import numpy as np
import pytest

from numloss import (
    sigmoid_cross_entropy,
    sigmoid_cross_entropy_with_grad,
    softmax_cross_entropy,
    softmax_cross_entropy_with_grad,
)

X = np.arange(12, dtype=np.float64).reshape(3, 4) / 7.0
Y = np.array([0, 3, 1])
P = np.full((3, 4), 0.25)
SENTINEL = 12345.0


def _softmax_both(x, t, **kw):
    """Call both softmax entry points (the ``_with_grad`` one with a sentinel-filled ``out``)."""
    yield lambda: softmax_cross_entropy(x, t, **kw)
    yield lambda: softmax_cross_entropy_with_grad(x, t, **kw)


def _sigmoid_both(x, t, **kw):
    yield lambda: sigmoid_cross_entropy(x, t, **kw)
    yield lambda: sigmoid_cross_entropy_with_grad(x, t, **kw)


def _raises_and_leaves_out_untouched(fn_with_out, x, exc, match):
    """``fn_with_out(out)`` raises ``exc`` matching ``match`` and leaves ``out`` (a fresh
    sentinel-filled array of the logits' shape, when that is an array) untouched."""
    xa = np.asarray(x)
    if xa.dtype in (np.float32, np.float64) and xa.ndim:
        out = np.full(xa.shape, SENTINEL, dtype=xa.dtype)
        with pytest.raises(exc, match=match):
            fn_with_out(out)
        assert np.all(out == SENTINEL), "out was written before the error"


# --------------------------------------------------------------------- dtypes

BAD_DTYPES = [np.int32, np.int64, np.longdouble, np.bool_, np.complex128, np.uint8]


@pytest.mark.parametrize("dtype", BAD_DTYPES, ids=lambda d: np.dtype(d).name)
def test_logits_dtype_is_a_type_error_naming_the_cast(dtype):
    x = np.ones((3, 4), dtype=dtype)
    for call in (*_softmax_both(x, Y), *_sigmoid_both(x, np.ones((3, 4)))):
        with pytest.raises(TypeError, match=r"logits.*astype\(np\.float32\)"):
            call()


def test_python_lists_of_ints_are_a_type_error():
    with pytest.raises(TypeError, match="logits"):
        softmax_cross_entropy([[1, 2], [3, 4]], [0, 1])
    with pytest.raises(TypeError, match="logits"):
        sigmoid_cross_entropy([1, 2], [0, 1])


def test_python_float_lists_are_accepted():
    assert np.isfinite(softmax_cross_entropy([[1.0, 2.0], [3.0, 4.0]], [0, 1]))
    assert np.isfinite(sigmoid_cross_entropy([1.0, 2.0], [0.0, 1.0]))


# ---------------------------------------------------------------- class index


@pytest.mark.parametrize("bad", [4, -1, 1000, -101, 2**40])
def test_class_index_out_of_range_is_an_index_error(bad):
    y = np.array([0, bad, 1])
    for call in _softmax_both(X, y):
        with pytest.raises(IndexError, match=rf"target.*{bad}"):
            call()
    _raises_and_leaves_out_untouched(lambda out: softmax_cross_entropy_with_grad(X, y, out=out), X, IndexError,
                                     "target")
    # in place: the logits must not have been overwritten either
    x = X.copy()
    with pytest.raises(IndexError):
        softmax_cross_entropy_with_grad(x, y, out=x)
    np.testing.assert_array_equal(x, X)


def test_class_index_error_with_ignore_index_and_weights():
    y = np.array([7, 0, 4])  # 7 is ignore_index, 4 is out of range
    with pytest.raises(IndexError, match="4"):
        softmax_cross_entropy(X, y, ignore_index=7, weight=np.ones(4))
    # -100 is only valid because it is ignore_index
    with pytest.raises(IndexError, match="-100"):
        softmax_cross_entropy(X, np.array([0, -100, 1]), ignore_index=5)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.uint32, np.uint64, np.int8])
def test_class_index_error_for_every_label_dtype(dtype):
    y = np.array([0, 4, 1], dtype=dtype)
    with pytest.raises(IndexError, match="4"):
        softmax_cross_entropy(X, y)


def test_uint64_index_beyond_int64_is_an_index_error():
    y = np.array([0, 2**63 + 5, 1], dtype=np.uint64)
    with pytest.raises(IndexError, match=str(2**63 + 5)):
        softmax_cross_entropy(X, y)


# --------------------------------------------------------------------- shapes


@pytest.mark.parametrize(
    "logits, target, match",
    [
        (X, np.array([0, 1]), "target"),
        (X, np.array([[0], [1], [2]]), "target"),
        (X, np.array([0, 1, 2, 3]), "target"),
        (X, np.full((3, 5), 0.2), "target"),
        (X, np.full((4, 3), 0.25), "target"),
        (X, np.array([0.0, 1.0, 2.0]), "target"),  # float class indices
        (X, np.array([True, False, True]), "target"),
        (X, np.array(["a", "b", "c"]), "target"),
        (np.float64(1.0), np.array(0), "logits"),
        (np.zeros((3, 0)), np.zeros(3, dtype=np.int64), "class"),
    ],
    ids=["short", "extra-axis", "long", "prob-C", "prob-transposed", "float-indices", "bool", "str", "0d", "C0"],
)
def test_softmax_shape_and_target_errors(logits, target, match):
    for call in _softmax_both(logits, target):
        with pytest.raises(ValueError, match=match):
            call()
    _raises_and_leaves_out_untouched(lambda out: softmax_cross_entropy_with_grad(logits, target, out=out), logits,
                                     ValueError, match)


@pytest.mark.parametrize("weight", [np.ones(3), np.ones(5), np.ones((1, 4)), np.array(["a"] * 4)],
                         ids=["short", "long", "2d", "str"])
def test_softmax_weight_shape_errors(weight):
    for call in _softmax_both(X, Y, weight=weight):
        with pytest.raises(ValueError, match="weight"):
            call()


@pytest.mark.parametrize("axis", [2, -3, 1.0, "0", None])
def test_softmax_bad_axis(axis):
    for call in _softmax_both(X, Y, axis=axis):
        with pytest.raises(ValueError, match="axis"):
            call()


@pytest.mark.parametrize(
    "target, kw, match",
    [
        (np.ones((3, 5)), {}, "target"),
        (np.ones(4), {}, "target"),
        (np.ones((3, 4, 1)), {}, "target"),
        (np.array([["a"] * 4] * 3), {}, "target"),
        (np.ones((3, 4)), dict(weight=np.ones(3)), "weight"),
        (np.ones((3, 4)), dict(weight=np.ones((1, 3, 4))), "weight"),
        (np.ones((3, 4)), dict(weight=np.ones((4, 4))), "weight"),
        (np.ones((3, 4)), dict(pos_weight=np.ones(5)), "pos_weight"),
        (np.ones((3, 4)), dict(pos_weight=np.ones((3, 1, 1))), "pos_weight"),
        (np.ones((3, 4)), dict(weight=np.array(["x"] * 4)), "weight"),
    ],
)
def test_sigmoid_shape_and_broadcast_errors(target, kw, match):
    for call in _sigmoid_both(X, target, **kw):
        with pytest.raises(ValueError, match=match):
            call()
    _raises_and_leaves_out_untouched(lambda out: sigmoid_cross_entropy_with_grad(X, target, out=out, **kw), X,
                                     ValueError, match)


# ------------------------------------------------------------------- options


def _options_cases():
    yield "reduction", dict(reduction="avg")
    yield "reduction", dict(reduction="MEAN")
    yield "reduction", dict(reduction=None)
    yield "eps", dict(eps=-1e-3)
    yield "eps", dict(eps=0.5)
    yield "eps", dict(eps=0.7)
    yield "eps", dict(eps=float("nan"))
    yield "eps", dict(eps="0.1")
    yield "normalizer", dict(normalizer=0.0)
    yield "normalizer", dict(normalizer=-2.0)
    yield "normalizer", dict(normalizer=float("inf"))
    yield "normalizer", dict(normalizer=float("nan"))


SOFTMAX_ONLY = [
    ("label_smoothing", dict(label_smoothing=-0.1)),
    ("label_smoothing", dict(label_smoothing=1.5)),
    ("label_smoothing", dict(label_smoothing=float("nan"))),
    ("z_loss", dict(z_loss=-1e-4)),
    ("z_loss", dict(z_loss=float("inf"))),
    ("z_loss", dict(z_loss=float("nan"))),
    ("softcap", dict(softcap=0.0)),
    ("softcap", dict(softcap=-5.0)),
    ("softcap", dict(softcap=float("inf"))),
    ("ignore_index", dict(ignore_index=1.5)),
    ("ignore_index", dict(ignore_index=None)),
]

EPS_COMBINATIONS = [
    ("label_smoothing", dict(eps=1e-6, label_smoothing=0.1)),
    ("z_loss", dict(eps=1e-6, z_loss=1e-4)),
    ("softcap", dict(eps=1e-6, softcap=30.0)),
]


@pytest.mark.parametrize("name, kw", list(_options_cases()) + SOFTMAX_ONLY + EPS_COMBINATIONS,
                         ids=lambda v: v if isinstance(v, str) else repr(v))
@pytest.mark.parametrize("kind", ["int", "prob"])
def test_softmax_option_errors(name, kw, kind):
    target = Y if kind == "int" else P
    for call in _softmax_both(X, target, **kw):
        with pytest.raises(ValueError, match=name):
            call()
    _raises_and_leaves_out_untouched(lambda out: softmax_cross_entropy_with_grad(X, target, out=out, **kw), X,
                                     ValueError, name)
    x = X.copy()
    with pytest.raises(ValueError, match=name):
        softmax_cross_entropy_with_grad(x, target, out=x, **kw)
    np.testing.assert_array_equal(x, X)


def test_eps_combination_message_names_eps_too():
    with pytest.raises(ValueError, match=r"eps.*label_smoothing.*z_loss.*softcap"):
        softmax_cross_entropy(X, Y, eps=0.1, label_smoothing=0.1, z_loss=0.1, softcap=3.0)


@pytest.mark.parametrize("name, kw", list(_options_cases()), ids=lambda v: v if isinstance(v, str) else repr(v))
def test_sigmoid_option_errors(name, kw):
    for call in _sigmoid_both(X, P, **kw):
        with pytest.raises(ValueError, match=name):
            call()
    _raises_and_leaves_out_untouched(lambda out: sigmoid_cross_entropy_with_grad(X, P, out=out, **kw), X,
                                     ValueError, name)


def test_boundary_values_are_accepted():
    """The edges of the allowed ranges are not errors."""
    softmax_cross_entropy(X, Y, label_smoothing=0.0)
    softmax_cross_entropy(X, Y, label_smoothing=1.0)
    softmax_cross_entropy(X, Y, z_loss=0.0)
    softmax_cross_entropy(X, Y, eps=0.0, label_smoothing=0.5)
    softmax_cross_entropy(X, Y, eps=0.4999)
    softmax_cross_entropy(X, Y, softcap=1e-3)
    softmax_cross_entropy(X, Y, normalizer=1e-9)
    softmax_cross_entropy(X, Y, ignore_index=np.int64(3))
    softmax_cross_entropy(X, Y, axis=np.int32(-1))
    sigmoid_cross_entropy(X, P, eps=0.4999, normalizer=3)


# ------------------------------------------------------------------------ out


def _bad_outs(x):
    yield "shape", np.zeros((x.shape[0] + 1, x.shape[1]), dtype=x.dtype)
    yield "shape", np.zeros(x.shape[::-1], dtype=x.dtype)
    yield "dtype", np.zeros(x.shape, dtype=np.float32)
    yield "dtype", np.zeros(x.shape, dtype=np.int64)
    yield "contiguous", np.zeros(x.shape[::-1], dtype=x.dtype).T
    yield "contiguous", np.zeros((x.shape[0], 2 * x.shape[1]), dtype=x.dtype)[:, ::2]
    ro = np.zeros(x.shape, dtype=x.dtype)
    ro.setflags(write=False)
    yield "read-only", ro
    yield "ndarray", [[0.0] * x.shape[1]] * x.shape[0]


@pytest.mark.parametrize("family", ["softmax", "sigmoid"])
def test_invalid_out(family):
    f = softmax_cross_entropy_with_grad if family == "softmax" else sigmoid_cross_entropy_with_grad
    t = Y if family == "softmax" else P
    for what, out in _bad_outs(X):
        before = np.array(out, copy=True)
        with pytest.raises(ValueError, match="out") as info:
            f(X, t, out=out)
        assert what.split("-")[0] in str(info.value).lower() or what == "ndarray" and "ndarray" in str(info.value)
        np.testing.assert_array_equal(np.asarray(out), before)


@pytest.mark.parametrize("family", ["softmax", "sigmoid"])
def test_out_overlapping_an_input(family):
    f = softmax_cross_entropy_with_grad if family == "softmax" else sigmoid_cross_entropy_with_grad
    buf = np.zeros((3, 8))
    buf[:, :4] = X
    x = buf[:, :4]  # not C-contiguous; out=x is then rejected for the layout
    with pytest.raises(ValueError, match="out"):
        f(x, Y if family == "softmax" else P, out=x)

    big = np.concatenate([X, X]).copy()
    x = big[:3]
    alias = big[:3]  # the same memory as the logits, but not the logits object
    with pytest.raises(ValueError, match=r"out.*logits"):
        f(x, Y if family == "softmax" else P, out=alias)
    np.testing.assert_array_equal(big[:3], X)
    partial = big[1:4]  # overlaps the logits by two rows
    with pytest.raises(ValueError, match=r"out.*logits"):
        f(x, Y if family == "softmax" else P, out=partial)
    np.testing.assert_array_equal(big, np.concatenate([X, X]))

    t = P.copy()
    with pytest.raises(ValueError, match=r"out.*target"):
        f(X, t, out=t)
    np.testing.assert_array_equal(t, P)

    w = np.ones((3, 4))
    with pytest.raises(ValueError, match=r"out.*weight"):
        f(X, t, weight=w[0] if family == "softmax" else w, out=w)
    assert np.all(w == 1)
    if family == "sigmoid":
        pw = np.ones((3, 4))
        with pytest.raises(ValueError, match=r"out.*pos_weight"):
            f(X, t, pos_weight=pw, out=pw)
        assert np.all(pw == 1)


def test_out_disjoint_views_of_one_buffer_are_fine():
    buf = np.zeros((6, 4))
    buf[:3] = X
    loss, grad = softmax_cross_entropy_with_grad(buf[:3], Y, out=buf[3:])
    assert np.shares_memory(grad, buf) and not np.shares_memory(grad, buf[:3])
    np.testing.assert_array_equal(buf[:3], X)
    want_loss, want_grad = softmax_cross_entropy_with_grad(X, Y)
    np.testing.assert_array_equal(buf[3:], want_grad)
