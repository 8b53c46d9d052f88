"""numloss.linear_cross_entropy: chunked fused linear + softmax CE against the materialising reference."""

import zlib

import numpy as np
import pytest
import reference as ref
from conftest import assert_close

import numloss
from numloss import _blas
from numloss.linear import default_chunk_size

OPTIONS = {
    "plain": {},
    "weight_classes+ignore": {"weight_classes": "w", "ignore_index": 2},
    "label_smoothing": {"label_smoothing": 0.15},
    "z_loss": {"z_loss": 1e-2},
    "softcap": {"softcap": 3.0},
    "all": {"weight_classes": "w", "ignore_index": -100, "label_smoothing": 0.1, "z_loss": 1e-3, "softcap": 5.0},
    "sum": {"reduction": "sum"},
    "none": {"reduction": "none"},
    "normalizer": {"normalizer": 40.0, "ignore_index": 0},
}

TOL = {np.float32: dict(rtol=2e-4, atol=2e-6), np.float64: dict(rtol=1e-10, atol=1e-13)}


def make(rng, n, d, v, dtype, bias=True, ignore_every=0, ignore_index=-100):
    hidden = rng.standard_normal((n, d)).astype(dtype)
    weight = (rng.standard_normal((v, d)) / np.sqrt(max(d, 1)) * 2).astype(dtype)
    b = (rng.standard_normal(v) * 0.5).astype(dtype) if bias else None
    target = rng.integers(0, v, n)
    if ignore_every:
        target[::ignore_every] = ignore_index
    return hidden, weight, target, b


def resolve(opts, rng, v):
    kw = dict(opts)
    if kw.get("weight_classes") == "w":
        kw["weight_classes"] = rng.uniform(0.5, 2.0, v)
    return kw


def assert_matches(result, expected, dtype, bias):
    (loss, (dh, dw, db)), (rloss, (rdh, rdw, rdb)) = result, expected
    tol = TOL[dtype]
    np.testing.assert_allclose(loss, rloss, **tol)
    scale = max(1.0, np.abs(rdw).max(), np.abs(rdh).max())
    for got, want in ((dh, rdh), (dw, rdw)):
        assert got.dtype == dtype and got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=tol["rtol"], atol=tol["atol"] * scale * 10)
    if bias:
        assert db.dtype == dtype and db.shape == rdb.shape
        np.testing.assert_allclose(db, rdb, rtol=tol["rtol"], atol=tol["atol"] * 10)
    else:
        assert db is None


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", list(OPTIONS))
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("chunk_size", [None, 1, 7])
def test_matches_materialising_reference(dtype, name, bias, chunk_size):
    rng = np.random.default_rng(zlib.crc32(f"{name}-{bias}-{chunk_size}".encode()))  # stable across processes
    n, d, v = 23, 9, 13  # 23 rows: not a multiple of 7
    hidden, weight, target, b = make(rng, n, d, v, dtype, bias, ignore_every=5 if "ignore" in str(OPTIONS[name])
                                     else 0, ignore_index=OPTIONS[name].get("ignore_index", -100))
    kw = resolve(OPTIONS[name], rng, v)
    got = numloss.linear_cross_entropy_with_grad(hidden, weight, target, bias=b, chunk_size=chunk_size, **kw)
    want = ref.linear_cross_entropy(hidden, weight, target, bias=b, **kw)
    assert_matches(got, want, dtype, bias)
    plain = numloss.linear_cross_entropy(hidden, weight, target, bias=b, chunk_size=chunk_size, **kw)
    np.testing.assert_allclose(plain, got[0], rtol=1e-6 if dtype == np.float32 else 1e-14)
    assert np.asarray(plain).dtype == dtype


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_blas_fallback_matches_blas_path(dtype, monkeypatch):
    rng = np.random.default_rng(3)
    hidden, weight, target, b = make(rng, 50, 16, 37, dtype, ignore_every=6)
    want = numloss.linear_cross_entropy_with_grad(hidden, weight, target, bias=b, chunk_size=8)
    monkeypatch.setattr(_blas, "enabled", False)
    got = numloss.linear_cross_entropy_with_grad(hidden, weight, target, bias=b, chunk_size=8)
    assert_matches(got, want, dtype, True)


def test_blas_accumulate_matches_matmul():
    rng = np.random.default_rng(4)
    for dtype in (np.float32, np.float64):
        if not _blas.available(dtype):
            pytest.skip("NumPy's OpenBLAS not reachable: the fallback path is what runs")
        a = rng.standard_normal((5, 7)).astype(dtype)
        b = rng.standard_normal((5, 3)).astype(dtype)
        c = rng.standard_normal((7, 3)).astype(dtype)
        want = c + a.T @ b
        np.testing.assert_allclose(_blas.gemm_tn_accumulate(a, b, c, 1.0), want, rtol=1e-5)
        c[:] = np.nan
        np.testing.assert_allclose(_blas.gemm_tn_accumulate(a, b, c, 0.0), a.T @ b, rtol=1e-5)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("name", ["plain", "weight_classes+ignore", "label_smoothing", "z_loss", "softcap", "all",
                                  "sum", "none"])
def test_gradients_match_torch_autograd(name, bias):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    rng = np.random.default_rng(11)
    n, d, v = 19, 6, 11
    opts = OPTIONS[name]
    ignore = opts.get("ignore_index", -100)
    hidden, weight, target, b = make(rng, n, d, v, np.float64, bias, ignore_every=4, ignore_index=ignore)
    kw = resolve(opts, rng, v)
    loss, (dh, dw, db) = numloss.linear_cross_entropy_with_grad(hidden, weight, target, bias=b, chunk_size=5, **kw)

    th = torch.from_numpy(hidden.copy()).requires_grad_()
    tw = torch.from_numpy(weight.copy()).requires_grad_()
    tb = torch.from_numpy(b.copy()).requires_grad_() if bias else None
    tt = torch.from_numpy(target)
    logits = F.linear(th, tw, tb)
    if kw.get("softcap"):
        logits = kw["softcap"] * torch.tanh(logits / kw["softcap"])
    cw = torch.from_numpy(kw["weight_classes"]) if "weight_classes" in kw else None
    red = kw.get("reduction", "mean")
    per = F.cross_entropy(logits, tt, weight=cw, ignore_index=ignore,
                          label_smoothing=kw.get("label_smoothing", 0.0), reduction="none")
    kept = tt != ignore
    if kw.get("z_loss"):
        w_i = (cw[tt.clamp(min=0)] if cw is not None else torch.ones(n, dtype=torch.float64)) * kept
        per = per + kw["z_loss"] * w_i * torch.logsumexp(logits, dim=1) ** 2
    if red == "none":
        tloss = per
        tloss.sum().backward()
    elif red == "sum":
        tloss = per.sum()
        tloss.backward()
    else:
        denom = (cw[tt[kept]].sum() if cw is not None else kept.sum())
        tloss = per.sum() / denom
        tloss.backward()
    np.testing.assert_allclose(loss, tloss.detach().numpy(), rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(dh, th.grad.numpy(), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(dw, tw.grad.numpy(), rtol=1e-9, atol=1e-12)
    if bias:
        np.testing.assert_allclose(db, tb.grad.numpy(), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("bias", [True, False])
def test_matches_torch_linear_cross_entropy_chunked(bias):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    if not hasattr(F, "linear_cross_entropy") or not hasattr(torch.nn, "LinearCrossEntropyOptions"):
        pytest.skip("this PyTorch has no F.linear_cross_entropy")
    rng = np.random.default_rng(12)
    hidden, weight, target, b = make(rng, 40, 8, 17, np.float64, bias, ignore_every=9)
    cw = rng.uniform(0.5, 2, 17)
    loss, (dh, dw, db) = numloss.linear_cross_entropy_with_grad(
        hidden, weight, target, bias=b, weight_classes=cw, label_smoothing=0.05, chunk_size=6)
    th = torch.from_numpy(hidden.copy()).requires_grad_()
    tw = torch.from_numpy(weight.copy()).requires_grad_()
    tb = torch.from_numpy(b.copy()).requires_grad_() if bias else None
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a fallback to the reference path would warn; the values still count
        tl = F.linear_cross_entropy(th, tw, torch.from_numpy(target), linear_bias=tb, weight=torch.from_numpy(cw),
                                    label_smoothing=0.05, options=torch.nn.LinearCrossEntropyOptions())
    tl.backward()
    np.testing.assert_allclose(loss, tl.item(), rtol=1e-10)
    np.testing.assert_allclose(dh, th.grad.numpy(), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(dw, tw.grad.numpy(), rtol=1e-9, atol=1e-12)
    if bias:
        np.testing.assert_allclose(db, tb.grad.numpy(), rtol=1e-9, atol=1e-12)


def test_gradients_match_finite_differences():
    rng = np.random.default_rng(5)
    hidden, weight, target, b = make(rng, 6, 4, 5, np.float64, ignore_every=4)
    kw = dict(label_smoothing=0.1, z_loss=1e-2, softcap=4.0, weight_classes=rng.uniform(0.5, 2, 5), chunk_size=4)
    _, grads = numloss.linear_cross_entropy_with_grad(hidden, weight, target, bias=b, **kw)
    arrays = [hidden, weight, b]
    for k, (arr, grad) in enumerate(zip(arrays, grads, strict=True)):
        fd = np.zeros_like(arr)
        for idx in np.ndindex(arr.shape):
            vals = []
            for step in (1e-6, -1e-6):
                moved = [a.copy() for a in arrays]
                moved[k][idx] += step
                vals.append(float(numloss.linear_cross_entropy(moved[0], moved[1], target, bias=moved[2], **kw)))
            fd[idx] = (vals[0] - vals[1]) / 2e-6
        np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("bias", [True, False])
def test_empty_batch(dtype, bias):
    rng = np.random.default_rng(6)
    hidden, weight, target, b = make(rng, 0, 4, 5, dtype, bias)
    loss, (dh, dw, db) = numloss.linear_cross_entropy_with_grad(hidden, weight, target, bias=b)
    assert np.isnan(loss) and loss.dtype == dtype
    assert dh.shape == (0, 4) and dw.shape == (5, 4) and not dw.any()
    assert (db is None) if not bias else (db.shape == (5,) and not db.any())
    assert numloss.linear_cross_entropy(hidden, weight, target, bias=b, reduction="sum") == 0
    assert numloss.linear_cross_entropy(hidden, weight, target, bias=b, reduction="none").shape == (0,)
    assert numloss.linear_cross_entropy(hidden, weight, target, bias=b, normalizer=3.0) == 0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_all_ignored(dtype):
    rng = np.random.default_rng(7)
    hidden, weight, target, b = make(rng, 9, 4, 5, dtype)
    target[:] = -100
    hidden[3] = np.nan  # an ignored row's hidden state never reaches the gradients
    loss, (dh, dw, db) = numloss.linear_cross_entropy_with_grad(hidden, weight, target, bias=b, chunk_size=2)
    assert np.isnan(loss)
    assert not dh.any() and not dw.any() and not db.any()
    assert numloss.linear_cross_entropy(hidden, weight, target, reduction="sum") == 0
    assert numloss.linear_cross_entropy(hidden, weight, target, normalizer=10) == 0
    np.testing.assert_array_equal(numloss.linear_cross_entropy(hidden, weight, target, reduction="none"), 0)


def test_ignored_row_with_nan_hidden_changes_nothing():
    rng = np.random.default_rng(8)
    hidden, weight, target, b = make(rng, 12, 5, 7, np.float64, ignore_every=3)
    clean = numloss.linear_cross_entropy_with_grad(hidden, weight, target, bias=b, chunk_size=4)
    hidden[0] = np.nan  # target[0] is ignored
    dirty = numloss.linear_cross_entropy_with_grad(hidden, weight, target, bias=b, chunk_size=4)
    assert_matches(dirty, clean, np.float64, True)


def test_nan_in_a_kept_row_gives_nan_not_a_wrong_number():
    rng = np.random.default_rng(9)
    hidden, weight, target, b = make(rng, 6, 3, 4, np.float64)
    hidden[2, 1] = np.nan
    loss, (dh, dw, db) = numloss.linear_cross_entropy_with_grad(hidden, weight, target, bias=b)
    assert np.isnan(loss) and np.isnan(dh[2]).all() and np.isnan(dw).any() and np.isnan(db).all()
    assert np.isfinite(dh[[0, 1, 3, 4, 5]]).all()


def test_batch_dims_any_integer_target_dtype_and_layouts():
    rng = np.random.default_rng(10)
    hidden = rng.standard_normal((3, 5, 6))
    weight = rng.standard_normal((6, 7)).T  # (V=7, D=6), Fortran-ordered view
    target = rng.integers(0, 7, (3, 5)).astype(np.uint8)
    want = ref.linear_cross_entropy(hidden, weight, target)
    got = numloss.linear_cross_entropy_with_grad(hidden, weight, target, chunk_size=4)
    assert got[1][0].shape == (3, 5, 6)
    assert_matches(got, want, np.float64, False)
    # a strided (non-contiguous) hidden
    big = rng.standard_normal((5, 12))
    got = numloss.linear_cross_entropy_with_grad(big[:, ::2], weight, target[0].astype(np.int16), chunk_size=2)
    want = ref.linear_cross_entropy(big[:, ::2], weight, target[0])
    assert_matches(got, want, np.float64, False)
    none = numloss.linear_cross_entropy(hidden, weight, target, reduction="none")
    assert none.shape == (3, 5)


def test_inputs_are_not_modified():
    rng = np.random.default_rng(13)
    hidden, weight, target, b = make(rng, 10, 4, 6, np.float32, ignore_every=3)
    copies = [a.copy() for a in (hidden, weight, target, b)]
    numloss.linear_cross_entropy_with_grad(hidden, weight, target, bias=b, softcap=2.0, chunk_size=3)
    for a, c in zip((hidden, weight, target, b), copies, strict=True):
        np.testing.assert_array_equal(a, c)


def test_global_mean_not_per_chunk():
    rng = np.random.default_rng(14)
    hidden, weight, target, b = make(rng, 10, 3, 4, np.float64)
    target[:7] = -100  # first chunks have 0 or few kept rows
    cw = np.array([1.0, 2.0, 3.0, 4.0])
    losses = [numloss.linear_cross_entropy_with_grad(hidden, weight, target, weight_classes=cw, chunk_size=c)
              for c in (1, 3, 10)]
    for loss, grads in losses[1:]:
        np.testing.assert_allclose(loss, losses[0][0], rtol=1e-13)
        np.testing.assert_allclose(grads[1], losses[0][1][1], rtol=1e-12, atol=1e-15)
    want = ref.linear_cross_entropy(hidden, weight, target, weight_classes=cw)
    np.testing.assert_allclose(losses[0][0], want[0], rtol=1e-12)


def test_default_chunk_size():
    assert default_chunk_size(8192, 32000, 4) == 512
    assert default_chunk_size(8192, 32000, 8) == 256
    assert default_chunk_size(100, 32000, 4) == 100  # fits in one chunk
    assert default_chunk_size(1000, 10**9, 4) == 1  # one row exceeds the target: still 1
    assert default_chunk_size(0, 10, 4) == 1
    # evened out: 600 rows at up to 512 per chunk -> two chunks of 300
    assert default_chunk_size(600, 32000, 4) == 300
    for n in (1, 17, 1000, 100_001):
        c = default_chunk_size(n, 5000, 4)
        chunks = -(-n // c)
        assert c * chunks >= n and c * (chunks - 1) < n


@pytest.mark.parametrize(
    "change, exc, match",
    [
        (dict(hidden=np.zeros((4, 3), dtype=np.int64)), TypeError, "hidden"),
        (dict(hidden=np.zeros((4, 3), dtype=np.float16)), TypeError, "hidden"),
        (dict(weight=np.zeros((5, 3), dtype=np.float32)), TypeError, "weight"),
        (dict(bias=np.zeros(5, dtype=np.float32)), TypeError, "bias"),
        (dict(weight=np.zeros((5, 4))), ValueError, "weight"),
        (dict(weight=np.zeros(15)), ValueError, "weight"),
        (dict(weight=np.zeros((0, 3))), ValueError, "weight"),
        (dict(bias=np.zeros(4)), ValueError, "bias"),
        (dict(hidden=np.float64(1.0)), ValueError, "hidden"),
        (dict(target=np.zeros(4)), ValueError, "target"),
        (dict(target=np.zeros(3, dtype=int)), ValueError, "target"),
        (dict(target=np.array([0, 1, 5, 2])), IndexError, "5"),
        (dict(target=np.array([0, -1, 2, 2])), IndexError, "-1"),
        (dict(weight_classes=np.ones(4)), ValueError, "weight_classes"),
        (dict(chunk_size=0), ValueError, "chunk_size"),
        (dict(chunk_size=-3), ValueError, "chunk_size"),
        (dict(chunk_size=2.5), ValueError, "chunk_size"),
        (dict(chunk_size=True), ValueError, "chunk_size"),
        (dict(reduction="avg"), ValueError, "reduction"),
        (dict(label_smoothing=1.5), ValueError, "label_smoothing"),
        (dict(z_loss=-1.0), ValueError, "z_loss"),
        (dict(softcap=0.0), ValueError, "softcap"),
        (dict(normalizer=0.0), ValueError, "normalizer"),
        (dict(ignore_index=1.5), ValueError, "ignore_index"),
    ],
)
@pytest.mark.parametrize("with_grad", [False, True])
def test_bad_input(change, exc, match, with_grad):
    args = dict(hidden=np.zeros((4, 3)), weight=np.zeros((5, 3)), target=np.array([0, 1, 2, 4]), bias=np.zeros(5))
    args.update(change)
    fn = numloss.linear_cross_entropy_with_grad if with_grad else numloss.linear_cross_entropy
    with pytest.raises(exc, match=match):
        fn(args.pop("hidden"), args.pop("weight"), args.pop("target"), **args)


def test_public_api():
    assert "linear_cross_entropy" in numloss.__all__ and "linear_cross_entropy_with_grad" in numloss.__all__


@pytest.mark.slow
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_large_matches_reference(dtype):
    rng = np.random.default_rng(15)
    hidden, weight, target, b = make(rng, 3000, 256, 10000, dtype, ignore_every=11)
    kw = dict(label_smoothing=0.1, z_loss=1e-4)
    got = numloss.linear_cross_entropy_with_grad(hidden, weight, target, bias=b, **kw)
    want = ref.linear_cross_entropy(hidden, weight, target, bias=b, **kw)
    tol = dict(rtol=1e-3, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(got[0], want[0], **tol)
    for g, w in zip(got[1], want[1], strict=True):
        np.testing.assert_allclose(g, w, rtol=tol["rtol"], atol=tol["atol"] + tol["rtol"] * np.abs(w).max())


# ------------------------------------------------------------------ max_memory


def test_max_memory_parsing_and_bad_values():
    from numloss.linear import _max_memory

    assert _max_memory("256MiB") == 256 * 2**20 and _max_memory("1GB") == 10**9 and _max_memory(4096) == 4096
    assert _max_memory("1.5 KiB") == 1536 and _max_memory("128mib") == 128 * 2**20 and _max_memory(None) is None
    assert _max_memory(np.array(2048)) == 2048
    for bad in ("abc", "5 parsecs", "-1MB", 0, -5, True, float("inf"), [1]):
        with pytest.raises(ValueError, match="max_memory"):
            _max_memory(bad)
    rng = np.random.default_rng(3)
    hidden, weight, target, b = make(rng, 8, 4, 5, np.float32)
    with pytest.raises(ValueError, match="chunk_size or max_memory"):
        numloss.linear_cross_entropy(hidden, weight, target, chunk_size=4, max_memory="1MiB")
    with pytest.raises(ValueError, match="at least"):
        numloss.linear_cross_entropy_with_grad(hidden, weight, target, max_memory=100)


@pytest.mark.parametrize("ignore_every", [0, 3])
def test_max_memory_bounds_the_traced_working_memory_and_keeps_the_values(ignore_every):
    """Peak NumPy allocation during the call, beyond the returned gradients, stays within the budget."""
    import tracemalloc

    from numloss.linear import chunk_rows_for_budget

    rng = np.random.default_rng(11 + ignore_every)
    n, d, v = 256, 16, 1000
    hidden, weight, target, b = make(rng, n, d, v, np.float32, bias=True, ignore_every=ignore_every)
    want = ref.linear_cross_entropy(hidden, weight, target, bias=b)
    budget = 64 * 2**10
    rows = chunk_rows_for_budget(budget, n, v, d, 4, True, ignore_every > 0, _blas.available(np.float32), 0, True)
    assert 1 <= rows < default_chunk_size(n, v, 4)  # the budget, not the default, sets the chunk here
    numloss.linear_cross_entropy_with_grad(hidden, weight, target, bias=b, max_memory=budget)  # warm (compile)
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        got = numloss.linear_cross_entropy_with_grad(hidden, weight, target, bias=b, max_memory="64KiB")
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    loss, (dh, dw, db) = got
    outputs = dh.nbytes + dw.nbytes + db.nbytes
    assert peak - outputs <= budget, (peak, outputs, budget)
    assert_matches(got, want, np.float32, True)


# ------------------------------------------------------------ probability targets (distillation)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_probability_targets_match_torch_linear_cross_entropy_and_linear_then_cross_entropy(bias, reduction):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    rng = np.random.default_rng(21)
    hidden, weight, _, b = make(rng, 40, 8, 17, np.float64, bias)
    probs = rng.dirichlet(np.full(17, 0.3), size=40)
    cw = rng.uniform(0.5, 2, 17)
    loss, (dh, dw, db) = numloss.linear_cross_entropy_with_grad(
        hidden, weight, probs, bias=b, weight_classes=cw, label_smoothing=0.1, reduction=reduction, chunk_size=6)
    plain = numloss.linear_cross_entropy(hidden, weight, probs, bias=b, weight_classes=cw, label_smoothing=0.1,
                                         reduction=reduction, chunk_size=6)
    np.testing.assert_array_equal(plain, loss)
    forms = {"F.cross_entropy(F.linear(...))": lambda th, tw, tb: F.cross_entropy(
        F.linear(th, tw, tb), torch.from_numpy(probs), weight=torch.from_numpy(cw), label_smoothing=0.1,
        reduction=reduction)}
    if hasattr(F, "linear_cross_entropy") and hasattr(torch.nn, "LinearCrossEntropyOptions"):
        forms["F.linear_cross_entropy"] = lambda th, tw, tb: F.linear_cross_entropy(
            th, tw, torch.from_numpy(probs), linear_bias=tb, weight=torch.from_numpy(cw), label_smoothing=0.1,
            reduction=reduction, options=torch.nn.LinearCrossEntropyOptions())
    import warnings

    for name, form in forms.items():
        th = torch.from_numpy(hidden.copy()).requires_grad_()
        tw = torch.from_numpy(weight.copy()).requires_grad_()
        tb = torch.from_numpy(b.copy()).requires_grad_() if bias else None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tl = form(th, tw, tb)
        tl.sum().backward()
        np.testing.assert_allclose(loss, tl.detach().numpy(), rtol=1e-10, atol=1e-13, err_msg=name)
        np.testing.assert_allclose(dh, th.grad.numpy(), rtol=1e-9, atol=1e-12, err_msg=name)
        np.testing.assert_allclose(dw, tw.grad.numpy(), rtol=1e-9, atol=1e-12, err_msg=name)
        if bias:
            np.testing.assert_allclose(db, tb.grad.numpy(), rtol=1e-9, atol=1e-12, err_msg=name)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_probability_targets_chunked_skipped_and_of_another_dtype_match_the_reference(dtype):
    """Chunks (gathered when rows are skipped by where=), targets of another float dtype and 3-d batches."""
    rng = np.random.default_rng(22)
    hidden, weight, _, b = make(rng, 24, 6, 11, dtype, True)
    hidden = hidden.reshape(4, 6, 6)
    probs = rng.dirichlet(np.ones(11), size=(4, 6))  # float64 targets for float32 hidden too
    where = rng.random((4, 6)) < 0.7
    hidden[~where] = np.nan  # not read
    sw = rng.uniform(0.5, 2.0, size=(4, 6))
    want_loss, want_grads = ref.weighted("linear_cross_entropy", (hidden, weight, probs), bias=b, sample_weight=sw,
                                         where=where, z_loss=1e-3)
    for chunk_size in (None, 5):
        loss, grads = numloss.linear_cross_entropy_with_grad(hidden, weight, probs, bias=b, sample_weight=sw,
                                                             where=where, z_loss=1e-3, chunk_size=chunk_size)
        assert_close(loss, want_loss, dtype, what="loss")
        for got, want, name in zip(grads, want_grads, ("d_hidden", "d_weight", "d_bias"), strict=True):
            assert_close(got, want, dtype, what=name)
    assert np.all(grads[0][~where] == 0)


def test_probability_targets_are_read_chunk_by_chunk_under_a_memory_budget():
    """No (N, V) array beyond the targets themselves: the traced peak stays under max_memory."""
    import tracemalloc

    rng = np.random.default_rng(23)
    n, d, v = 256, 16, 1000
    hidden, weight, _, _ = make(rng, n, d, v, np.float32, False)
    probs = rng.dirichlet(np.ones(v), size=n).astype(np.float32)
    want_loss, want_grads = ref.weighted("linear_cross_entropy", (hidden, weight, probs))
    numloss.linear_cross_entropy_with_grad(hidden, weight, probs, max_memory="64KiB")  # warm
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        loss, grads = numloss.linear_cross_entropy_with_grad(hidden, weight, probs, max_memory="64KiB")
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    assert peak - grads[0].nbytes - grads[1].nbytes <= 64 * 2**10, peak
    assert_close(loss, want_loss, np.float32)
    assert_close(grads[1], want_grads[1], np.float32)


def test_probability_targets_of_the_wrong_shape_raise():
    rng = np.random.default_rng(24)
    hidden, weight, _, _ = make(rng, 5, 3, 4, np.float64, False)
    with pytest.raises(ValueError, match=r"must have shape hidden.shape\[:-1\] \+ \(V,\) = \(5, 4\); got \(5, 3\)"):
        numloss.linear_cross_entropy(hidden, weight, np.full((5, 3), 1 / 3))
    with pytest.raises(ValueError, match="integer class indices .* or float probabilities"):
        numloss.linear_cross_entropy(hidden, weight, np.zeros(5, dtype=complex))
