"""The guarantees every loss gives, checked on every loss of the registry (``numloss._registry``).

A loss added to the registry is tested here without another list to edit:
agreement with its plain float64 reference (``tests/reference.py``, same
name), the three ``out`` forms, layouts and read-only inputs, inputs never
modified, empty and all-ignored batches, NaN rows, float32 logits near its
range, bad input, Python threads, a forked child, and 0-d options.
"""

import concurrent.futures
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import reference
from conftest import assert_close

import numloss
from numloss import _registry

LOSSES = _registry.LOSSES
#: the losses with one gradient array of the input's shape (and an ``out=``)
WITH_OUT = [loss for loss in LOSSES if loss.input != "hidden"]
INDEXED = [loss for loss in LOSSES if "index" in loss.targets]
DTYPES = ("float32", "float64")


def _ids(losses):
    return [loss.name for loss in losses]


def make_inputs(loss, dtype, rng, N=6, C=5, scale=2.0):
    """``(args, kwargs)`` of a call of ``loss``: the input (gradient-shaped) first, then the rest."""
    dtype = np.dtype(dtype)
    if loss.input == "hidden":
        D = 3
        hidden = rng.standard_normal((N, D)).astype(dtype)
        weight = rng.standard_normal((C, D)).astype(dtype)
        return (hidden, weight, rng.integers(0, C, size=N)), {}
    if loss.input == "cosine":
        x = rng.uniform(-1.0, 1.0, size=(N, C)).astype(dtype)
    else:
        x = (rng.standard_normal((N, C)) * scale).astype(dtype)
    if "index" in loss.targets:
        t = rng.integers(0, C, size=N)
    else:
        t = (rng.random((N, C)) < 0.4).astype(dtype)
    return (x, t), {}


def call(loss, args, kwargs, with_grad=True, **extra):
    fn = getattr(numloss, loss.with_grad if with_grad else loss.name)
    return fn(*args, **kwargs, **extra)


def same(a, b):
    """Bitwise equal (NaN where NaN), for arrays, scalars and tuples of them."""
    if isinstance(a, tuple):
        return len(a) == len(b) and all(same(u, v) for u, v in zip(a, b, strict=True))
    if a is None or b is None:
        return a is b
    return np.array_equal(np.asarray(a), np.asarray(b), equal_nan=True)


# ------------------------------------------------------------------------ values


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("loss", LOSSES, ids=_ids(LOSSES))
def test_loss_and_gradient_match_the_float64_reference(loss, dtype, reduction, rng):
    args, kwargs = make_inputs(loss, dtype, rng)
    got_loss, got_grad = call(loss, args, kwargs, reduction=reduction)
    want_loss, want_grad = getattr(reference, loss.name)(*[np.asarray(a, np.float64) if np.asarray(a).dtype.kind == "f"
                                                           else a for a in args], reduction=reduction)
    assert np.asarray(got_loss).dtype == np.dtype(dtype)
    assert_close(got_loss, want_loss, dtype, what=f"{loss.name} loss")
    if loss.input == "hidden":
        for g, w, name in zip(got_grad[:2], want_grad[:2], ("d_hidden", "d_weight"), strict=True):
            assert_close(g, w, dtype, what=f"{loss.name} {name}")
    else:
        assert got_grad.dtype == np.dtype(dtype)
        assert_close(got_grad, want_grad, dtype, what=f"{loss.name} grad")
    assert same(call(loss, args, kwargs, with_grad=False, reduction=reduction), got_loss)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("loss", WITH_OUT, ids=_ids(WITH_OUT))
def test_three_out_forms_agree_and_grad_is_out(loss, dtype, rng):
    args, kwargs = make_inputs(loss, dtype, rng)
    x, rest = args[0], args[1:]
    loss_new, grad_new = call(loss, args, kwargs)
    buf = np.full_like(x, 7.0)
    loss_buf, grad_buf = call(loss, args, kwargs, out=buf)
    inplace = x.copy()
    loss_in, grad_in = call(loss, (inplace, *rest), kwargs, out=inplace)
    assert grad_buf is buf and grad_in is inplace
    assert same(loss_new, loss_buf) and same(loss_new, loss_in)
    assert same(grad_new, grad_buf) and same(grad_new, grad_in)


#: per loss, option sets whose row code differs (stored marks, softcap's scratch terms, probability targets,
#: clipping, a focal power other than 2)
ADDRESS_OPTIONS = {
    "softmax_cross_entropy": [{}, {"label_smoothing": 0.1}, {"softcap": 4.0}, {"eps": 1e-3}, {"prob": True}],
    "sigmoid_cross_entropy": [{}, {"eps": 1e-2}, {"pos_weight": 2.0}],
    "sigmoid_focal_loss": [{}, {"gamma": 1.5}],
    "softmax_focal_loss": [{}],
    "cosface_cross_entropy": [{}, {"label_smoothing": 0.1}],
    "arcface_cross_entropy": [{}],
}


def _carve(buf, byte_offset, like):
    """A C-contiguous array of ``like``'s shape and dtype at ``byte_offset`` of the uint8 ``buf``, holding ``like``."""
    a = buf[byte_offset:byte_offset + like.nbytes].view(like.dtype).reshape(like.shape)
    a[...] = like
    return a


@pytest.mark.parametrize("shape", [(3, 8), (6, 5), (2, 40), (1, 100), (4, 70), (2, 300)], ids=str)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("loss", WITH_OUT, ids=_ids(WITH_OUT))
def test_results_do_not_depend_on_where_the_arrays_are(loss, dtype, shape, rng):
    """The same call gives the same bits wherever the allocator put its arrays.

    LLVM's vectoriser guards a loop that stores to one array while reading
    another with a check of their addresses, and runs a scalar copy of the loop
    when the store lies less than a few vector steps after the load; a sum
    accumulated in such a loop came out in another order, so a loss changed in
    the last bit with the placement of ``out`` (or of a scratch row) right
    after a small input.  Here ``out`` is put at every 4- or 8-byte gap up to
    320 bytes after the logits (past every vector step x unroll of AVX2 and
    AVX-512 code), and before them, and the loss and gradient must equal
    those of a call with the arrays far apart, and the loss-only call's.
    Short rows (stored terms summed apart) and one long row shape (sums in
    the storing loops: ``_rows.FUSED_ROW_BYTES``).
    """
    N, C = shape
    for opts in ADDRESS_OPTIONS[loss.name]:
        opts = dict(opts)
        prob = opts.pop("prob", False)
        (x, t), kwargs = make_inputs(loss, dtype, rng, N=N, C=C)
        if prob:
            t = rng.dirichlet(np.ones(C), size=N).astype(dtype)
        far = np.array(x, copy=True), np.array(t, copy=True)
        want_loss, want_grad = call(loss, far, {**kwargs, **opts})
        assert same(call(loss, far, {**kwargs, **opts}, with_grad=False), want_loss), (loss.name, opts)
        step = np.dtype(dtype).itemsize
        buf = np.zeros(2 * x.nbytes + 2 * 320 + 64, dtype=np.uint8)
        base = (-buf.ctypes.data) % 64  # a cache line boundary: the gaps are the same on every run
        for gap in range(0, 320 + step, step):
            xs = _carve(buf, base, x)
            out = _carve(buf, base + x.nbytes + gap, np.zeros_like(x))
            got_loss, got_grad = call(loss, (xs, t), {**kwargs, **opts}, out=out)
            assert same(got_loss, want_loss) and same(got_grad, want_grad), (loss.name, opts, "out after x", gap)
            out = _carve(buf, base, np.zeros_like(x))
            xs = _carve(buf, base + x.nbytes + gap, x)
            got_loss, got_grad = call(loss, (xs, t), {**kwargs, **opts}, out=out)
            assert same(got_loss, want_loss) and same(got_grad, want_grad), (loss.name, opts, "x after out", gap)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("loss", LOSSES, ids=_ids(LOSSES))
def test_fortran_order_transposed_and_read_only_inputs_give_the_same_results(loss, dtype, rng):
    args, kwargs = make_inputs(loss, dtype, rng)
    want = call(loss, args, kwargs, reduction="none")

    def read_only(a):
        a = np.array(a)
        a.flags.writeable = False
        return a

    layouts = {
        "fortran": [np.asfortranarray(a) for a in args],
        "transposed": [np.ascontiguousarray(np.asarray(a).T).T for a in args],
        "read-only": [read_only(a) for a in args],
    }
    for name, layout in layouts.items():
        got = call(loss, tuple(layout), kwargs, reduction="none")
        assert same(got, want), f"{loss.name}: {name} inputs"


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("loss", LOSSES, ids=_ids(LOSSES))
def test_inputs_are_never_modified(loss, dtype, rng):
    args, kwargs = make_inputs(loss, dtype, rng)
    args[0].reshape(-1)[0] = np.nan  # a NaN row too
    before = [np.array(a, copy=True) for a in args]
    call(loss, args, kwargs)
    call(loss, args, kwargs, with_grad=False)
    for a, b in zip(args, before, strict=True):
        assert same(a, b), loss.name


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("loss", LOSSES, ids=_ids(LOSSES))
def test_empty_batch_sum_is_zero_mean_is_nan_and_the_gradient_is_empty(loss, dtype, rng):
    args, kwargs = make_inputs(loss, dtype, rng, N=0)
    loss_sum, grad = call(loss, args, kwargs, reduction="sum")
    loss_mean = call(loss, args, kwargs, with_grad=False, reduction="mean")
    assert loss_sum == 0 and np.isnan(loss_mean)
    grads = grad if isinstance(grad, tuple) else (grad,)
    assert grads[0].shape == np.shape(args[0]) and grads[0].size == 0
    if loss.input == "hidden":
        assert not grads[1].any()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("loss", INDEXED, ids=_ids(INDEXED))
def test_all_ignored_batch_gives_nan_mean_zero_sum_and_zero_gradient(loss, dtype, rng):
    args, kwargs = make_inputs(loss, dtype, rng)
    target_at = 2 if loss.input == "hidden" else 1
    args = (*args[:target_at], np.full_like(args[target_at], -100), *args[target_at + 1:])
    assert np.isnan(call(loss, args, kwargs, with_grad=False))
    loss_sum, grad = call(loss, args, kwargs, reduction="sum")
    assert loss_sum == 0
    for g in grad if isinstance(grad, tuple) else (grad,):
        assert g is None or not g.any()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("loss", WITH_OUT, ids=_ids(WITH_OUT))
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_or_plus_inf_input_poisons_its_sample_only(loss, dtype, bad, rng):
    args, kwargs = make_inputs(loss, dtype, rng)
    clean_loss, clean_grad = call(loss, args, kwargs, reduction="none")
    x = args[0].copy()
    x[2, 1] = bad
    got_loss, got_grad = call(loss, (x, *args[1:]), kwargs, reduction="none")
    poisoned = np.zeros(got_loss.shape, dtype=bool)
    poisoned[(2, 1) if got_loss.ndim == 2 else 2] = True
    assert np.isnan(got_loss[poisoned]).all()
    assert same(got_loss[~poisoned], clean_loss[~poisoned])
    rows = np.ones(x.shape[0], dtype=bool)
    rows[2] = False
    assert same(got_grad[rows], clean_grad[rows])
    if got_loss.ndim == 2:  # elementwise: only that element
        assert np.isnan(got_grad[2, 1]) and same(np.delete(got_grad[2], 1), np.delete(clean_grad[2], 1))
    else:
        assert np.isnan(got_grad[2]).all()


@pytest.mark.parametrize("loss", [loss for loss in WITH_OUT if loss.input == "logits"],
                         ids=_ids([loss for loss in WITH_OUT if loss.input == "logits"]))
def test_float32_logits_near_its_range_give_the_exact_value_without_warnings(loss, rng):
    """Logits of +-3e38: each per-sample float32 value is the float64 result rounded (inf where it overflows)."""
    args, kwargs = make_inputs(loss, "float32", rng, N=8, C=5)
    x = args[0]
    x[0, :2] = (3e38, -3e38)
    x[1, :] = -3e38
    x[2, 0] = 3e38
    x[3, :] = 1e4
    x[4, 1] = -1e4
    got_loss, got_grad = call(loss, args, kwargs, reduction="none")
    args64 = (x.astype(np.float64), *[np.asarray(a, np.float64) if np.asarray(a).dtype.kind == "f" else a
                                      for a in args[1:]])
    want_loss, want_grad = call(loss, args64, kwargs, reduction="none")
    assert np.isfinite(want_loss).all()  # the float64 losses are finite: exact values exist
    assert_close(got_loss, want_loss, "float32", what=f"{loss.name} loss")
    assert_close(got_grad, want_grad, "float32", what=f"{loss.name} grad")
    total = call(loss, args, kwargs, with_grad=False, reduction="sum")
    assert_close(total, want_loss.sum(), "float32", what=f"{loss.name} sum")


#: the losses whose gradient passes keep every product normal (see test_gradients_are_never_subnormal)
NORMAL_PRODUCTS = [loss for loss in WITH_OUT if loss.name != "sigmoid_focal_loss"]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("loss", NORMAL_PRODUCTS, ids=_ids(NORMAL_PRODUCTS))
def test_gradients_are_never_subnormal(loss, dtype, rng):
    """Logits spread so wide that many gradient terms lie below the dtype's smallest normal number:
    those come out 0 (the kernels never form a subnormal product, which x86 CPUs compute in microcode,
    about 100x slower: the whole call was 4-10x slower), every other term matches the reference.
    (The sigmoid focal loss is left out: its q**gamma products can still be subnormal for |x| > 44.)"""
    dtype = np.dtype(dtype)
    tiny = np.finfo(dtype).tiny
    spread = 40.0 if dtype == np.float32 else 300.0
    args, kwargs = make_inputs(loss, dtype, rng, N=64, C=40, scale=spread)
    if loss.input == "cosine":
        kwargs = dict(scale=100.0 if dtype == np.float32 else 700.0)
    else:  # and rows whose logits lie just above the exponential's flush, 0 being the maximum
        lo, hi = (80.0, 87.0) if dtype == np.float32 else (700.0, 708.0)
        args[0][:6] = -rng.uniform(lo, hi, size=(6, args[0].shape[1]))
        args[0][:6, 0] = 0.0
    for extra in ({}, {"out": np.empty_like(args[0])}):
        grad = call(loss, args, kwargs, **extra)[1]
        want = getattr(reference, loss.name)(*[np.asarray(a, np.float64) if np.asarray(a).dtype.kind == "f"
                                               else a for a in args], **kwargs)[1]
        would_be_subnormal = (want != 0) & (np.abs(want) < tiny)
        assert would_be_subnormal.sum() >= 5, "the inputs must reach the subnormal range"
        nonzero = np.abs(grad[grad != 0])
        assert nonzero.min() >= tiny, f"{loss.name}: a subnormal gradient {nonzero.min()!r}"
        assert_close(grad, want, dtype, what=f"{loss.name} grad")


# ------------------------------------------------------------------------ bad input


@pytest.mark.parametrize("loss", LOSSES, ids=_ids(LOSSES))
def test_bad_input_raises_before_anything_is_written(loss, rng):
    args, kwargs = make_inputs(loss, "float32", rng)
    out = np.full_like(args[0], 5.0)
    extra = {} if loss.input == "hidden" else {"out": out}
    for bad_dtype in (np.int32, np.complex64, np.longdouble):
        with pytest.raises(TypeError, match=loss.input):
            call(loss, (args[0].astype(bad_dtype), *args[1:]), kwargs, **extra)
    with pytest.raises(ValueError, match="reduction"):
        call(loss, args, kwargs, reduction="avg", **extra)
    target_at = 2 if loss.input == "hidden" else 1
    t = args[target_at]
    with pytest.raises(ValueError, match="target"):
        call(loss, (*args[:target_at], t[:-1], *args[target_at + 1:]), kwargs, **extra)
    if "index" in loss.targets:
        t_bad = t.copy()
        t_bad[3] = 99
        with pytest.raises(IndexError, match="99"):
            call(loss, (*args[:target_at], t_bad, *args[target_at + 1:]), kwargs, **extra)
    assert (out == 5.0).all(), "out was written before the exception"


@pytest.mark.parametrize("loss", LOSSES, ids=_ids(LOSSES))
def test_zero_dimensional_arrays_and_numpy_scalars_work_as_options(loss, rng):
    args, kwargs = make_inputs(loss, "float64", rng)
    numeric = {name: default for name, default in loss.options
               if isinstance(default, float) and name not in ("eps",)}
    numeric = {name: (0.1 if default == 0.0 else default) for name, default in numeric.items()}
    if loss.normalizer:
        numeric["normalizer"] = 3.0
    assert numeric or loss.name in ("sigmoid_cross_entropy",), loss.name
    want = call(loss, args, kwargs, **numeric)
    for convert in (np.array, np.float64, np.float32):
        options = {name: convert(v) for name, v in numeric.items()}
        got = call(loss, args, kwargs, **options)
        if convert is np.float32:  # a float32 option rounds to another number: close, not equal
            assert np.allclose(got[0], want[0], rtol=1e-6)
        else:
            assert same(got, want), (loss.name, convert)
    if "index" in loss.targets:
        assert same(call(loss, args, kwargs, ignore_index=np.array(-1)), call(loss, args, kwargs, ignore_index=-1))


# ------------------------------------------------------------------------ threads and fork

#: (N, C) large enough for the parallel kernels
THREAD_SHAPE = (1024, 64)


@pytest.mark.parametrize("loss", LOSSES, ids=_ids(LOSSES))
def test_eight_python_threads_calling_at_once_get_the_one_thread_results(loss):
    from numloss import _parallel

    rng = np.random.default_rng(0)
    cases = [make_inputs(loss, dtype, rng, *THREAD_SHAPE) for dtype in DTYPES]
    assert _parallel.use_parallel(THREAD_SHAPE[0] * THREAD_SHAPE[1], THREAD_SHAPE[0])
    expected = [call(loss, args, kwargs) for args, kwargs in cases]

    def work(k):
        return [same(call(loss, *cases[(k + r) % 2]), expected[(k + r) % 2]) for r in range(4)]

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = [ok for oks in pool.map(work, range(8)) for ok in oks]
    assert all(results)


FORK_SCRIPT = """
import os, sys, numpy as np
sys.path.insert(0, {tests!r})
import numloss
from numloss import _parallel, _registry
from test_contract import THREAD_SHAPE, call, make_inputs, same

cases = {{}}
for loss in _registry.LOSSES:
    rng = np.random.default_rng(0)
    cases[loss.name] = (loss, *make_inputs(loss, "float32", rng, *THREAD_SHAPE))
expected = {{name: call(*c) for name, c in cases.items()}}  # the parent's pool is running now
pid = os.fork()
if pid == 0:
    code = 0
    if not _parallel.use_parallel(THREAD_SHAPE[0] * THREAD_SHAPE[1], THREAD_SHAPE[0]):
        print("the child does not use the parallel kernels", flush=True)
        code = 3
    for name, c in cases.items():
        if not same(call(*c), expected[name]):
            print("child result differs:", name, flush=True)
            code = 4
    os._exit(code)
_, status = os.waitpid(pid, 0)
print("CHILD", os.waitstatus_to_exitcode(status), _parallel.threading_layer())
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork")
def test_a_forked_child_runs_every_loss_on_the_parallel_kernels_with_the_same_results():
    tests = os.path.dirname(os.path.abspath(__file__))
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_THREADING_LAYER"}
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(FORK_SCRIPT.format(tests=tests))],
                          capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0 and "CHILD 0 tbb" in proc.stdout, (proc.stdout, proc.stderr[-3000:])


# ------------------------------------------------------------------------ dask forms

DASK = [loss for loss in LOSSES if loss.input != "hidden"]  # the fused linear CE has no dask form


@pytest.mark.parametrize("reduction", ["mean", "none"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("loss", DASK, ids=_ids(DASK))
def test_dask_form_in_row_chunks_equals_the_in_memory_loss(loss, dtype, reduction, rng):
    """numloss.dask.NAME on inputs split into row chunks gives the in-memory values (global "mean")."""
    da = pytest.importorskip("dask.array")
    dask = pytest.importorskip("dask")
    import numloss.dask as nld

    args, kwargs = make_inputs(loss, dtype, rng, N=12, C=5)
    args[1].reshape(-1)[3] = -100 if "index" in loss.targets else args[1].reshape(-1)[3]
    want_loss, want_grad = call(loss, args, kwargs, reduction=reduction)
    chunked = [da.from_array(a, chunks=(4,) + a.shape[1:]) for a in args]
    got_loss, got_grad = dask.compute(*getattr(nld, loss.with_grad)(*chunked, reduction=reduction, **kwargs),
                                      scheduler="synchronous")
    assert_close(got_loss, want_loss, dtype, what=f"{loss.name} dask loss")
    assert_close(got_grad, want_grad, dtype, what=f"{loss.name} dask grad")
    assert np.asarray(got_loss).dtype == np.dtype(dtype) and got_grad.dtype == np.dtype(dtype)
    got_plain = getattr(nld, loss.name)(*chunked, reduction=reduction, **kwargs).compute(scheduler="synchronous")
    assert_close(got_plain, want_loss, dtype, what=f"{loss.name} dask plain loss")
