"""numloss.dask on a real dask.distributed cluster against the in-memory numloss result.

The cluster (two worker processes, one thread each, on 127.0.0.1) is started
once for the module.  Each case builds the lazy graphs (loss, gradient and
the plain loss), computes them together and compares them with the in-memory
function on the same NumPy arrays: the dask version must be the same
computation, only split into blocks with a global normalisation.  A
representative set of cases runs on the cluster (in one round trip); the
full grid of options x dtypes x reductions runs the same graphs on dask's
in-process scheduler.
"""

import subprocess
import sys
import warnings
import zlib

import numpy as np
import pytest

distributed = pytest.importorskip("distributed")
da = pytest.importorskip("dask.array")

import dask  # noqa: E402
from dask.array import PerformanceWarning  # noqa: E402

import numloss  # noqa: E402
import numloss.dask as nld  # noqa: E402

DTYPES = (np.float32, np.float64)
REDUCTIONS = ("mean", "sum", "none")
RTOL = {np.dtype(np.float32): 2e-5, np.dtype(np.float64): 1e-12}
N, C = 103, 7
#: uneven batch chunks (the last one short) so that block means differ from the global mean
ROW_CHUNKS = (40, 40, 23)
W7 = np.array([0.5, 2.0, 1.0, 0.25, 3.0, 1.5, 0.75])


@pytest.fixture(scope="module")
def client():
    with warnings.catch_warnings():
        # Only what a LocalCluster itself may say on a busy machine while starting.
        warnings.filterwarnings("ignore", message=".*[Pp]ort .* is already in use.*")
        warnings.filterwarnings("ignore", message=".*scratch directories is taking a surprisingly long time.*")
        cluster = distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None,
            # one Numba thread per worker: the workers are the parallelism
            env={"NUMBA_NUM_THREADS": "1"},
        )
        client = distributed.Client(cluster)
    yield client
    client.close()
    cluster.close()


def seeded(*key):
    return np.random.default_rng(zlib.crc32(repr(key).encode()))


@pytest.fixture
def rng(request):
    return seeded(request.node.nodeid)


def compute(client, *arrays):
    return client.compute(list(arrays), sync=True)


def assert_same(got, want, dtype, what):
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape, what
    assert got.dtype == np.dtype(dtype), what
    scale = float(np.max(np.abs(want[np.isfinite(want)]), initial=1.0))
    np.testing.assert_allclose(got, want, rtol=RTOL[np.dtype(dtype)], atol=RTOL[np.dtype(dtype)] * scale * 0.1,
                               equal_nan=True, err_msg=what)


def softmax_inputs(rng, dtype, kind, shape=(N, C), axis=-1, n_ignored=0, ignore_index=-100):
    x = (rng.standard_normal(shape) * 2).astype(dtype)
    batch = shape[:axis % len(shape)] + shape[axis % len(shape) + 1:]
    if kind == "int":
        t = rng.integers(0, shape[axis], size=batch)
        t.reshape(-1)[rng.choice(t.size, size=n_ignored, replace=False)] = ignore_index
    else:
        t = np.moveaxis(rng.dirichlet(np.full(shape[axis], 0.7), size=batch), -1, axis).astype(dtype)
    return x, t


SOFTMAX_CASES = {
    "plain": dict(),
    "ignore": dict(n_ignored=9),
    "ignore-custom": dict(n_ignored=5, ignore_index=3),
    "weight": dict(weight=W7),
    "weight-ignore": dict(weight=W7, n_ignored=12),
    "label-smoothing": dict(label_smoothing=0.1),
    "weight-ignore-ls": dict(weight=W7, n_ignored=12, label_smoothing=0.2),
    "z-softcap": dict(z_loss=0.01, softcap=3.0, n_ignored=3),
    "eps": dict(eps=0.05, weight=W7, n_ignored=4),
    "normalizer": dict(normalizer=250.0, n_ignored=4),
    "prob": dict(kind="prob"),
    "prob-weight-ls": dict(kind="prob", weight=W7, label_smoothing=0.1),
    # class axis first, two batch axes each split in chunks; the target arrives in one chunk
    "axis0-3d": dict(shape=(C, 11, 12), axis=0, chunks=(C, (5, 6), (4, 4, 4)), n_ignored=10, weight=W7),
    "axis0-3d-prob": dict(shape=(C, 11, 12), axis=0, chunks=(C, (5, 6), (4, 4, 4)), kind="prob", weight=W7),
    # the other row losses with integer targets (classes last, no normalizer: the block sum is scaled in the block)
    "softmax-focal": dict(loss="softmax_focal_loss", gamma=2.0, weight=W7, n_ignored=6),
    "cosface": dict(loss="cosface_cross_entropy", cosine=True, weight=W7, label_smoothing=0.1, n_ignored=6),
    "arcface": dict(loss="arcface_cross_entropy", cosine=True, easy_margin=True, n_ignored=6),
}
SIGMOID_CASES = {
    "plain": dict(),
    "pos-weight": dict(pos_weight=np.linspace(0.5, 3.0, C)),
    "weight-full-dask": dict(weight="full"),
    "weight-rows": dict(weight="rows", pos_weight=np.linspace(0.5, 3.0, C)),
    "eps": dict(eps=1e-3),
    "normalizer": dict(normalizer=17.0),
    "int-target": dict(target="int"),
    "sigmoid-focal": dict(loss="sigmoid_focal_loss", alpha=0.3, gamma=1.5),
}
GRID = [(d, r) for d in DTYPES for r in REDUCTIONS]


def build_softmax_case(name, dtype, reduction):
    opts = dict(SOFTMAX_CASES[name])
    loss = opts.pop("loss", "softmax_cross_entropy")
    kind, cosine = opts.pop("kind", "int"), opts.pop("cosine", False)
    shape = opts.pop("shape", (N, C))
    chunks = opts.pop("chunks", (ROW_CHUNKS, C))
    rng = seeded("softmax", name, np.dtype(dtype).name, reduction)
    x, t = softmax_inputs(rng, dtype, kind, shape, opts.get("axis", -1), opts.pop("n_ignored", 0),
                          opts.get("ignore_index", -100))
    if cosine:
        x = np.tanh(x).astype(dtype)
    X = da.from_array(x, chunks=chunks)
    T = da.from_array(t, chunks=-1)  # rechunked to the logits' batch chunks by numloss.dask
    lazy = getattr(nld, loss + "_with_grad")(X, T, reduction=reduction, **opts)
    lazy += (getattr(nld, loss)(X, T, reduction=reduction, **opts),)
    want = getattr(numloss, loss + "_with_grad")(x, t, reduction=reduction, **opts)
    return X, lazy, want


def build_sigmoid_case(name, dtype, reduction):
    opts = dict(SIGMOID_CASES[name])
    loss = opts.pop("loss", "sigmoid_cross_entropy")
    rng = seeded("sigmoid", name, np.dtype(dtype).name, reduction)
    x = (rng.standard_normal((N, C)) * 3).astype(dtype)
    t = rng.integers(0, 2, size=(N, C)) if opts.pop("target", None) == "int" else rng.random((N, C)).astype(dtype)
    # sigmoid is elementwise: chunked along both axes, unevenly
    X = da.from_array(x, chunks=(ROW_CHUNKS, (4, 3)))
    dask_opts = dict(opts)
    if opts.get("weight") == "full":
        opts["weight"] = rng.random((N, C))
        dask_opts["weight"] = da.from_array(opts["weight"], chunks=(50, C))
    elif opts.get("weight") == "rows":
        opts["weight"] = dask_opts["weight"] = rng.random((N, 1))
    lazy = getattr(nld, loss + "_with_grad")(X, t, reduction=reduction, **dask_opts)
    lazy += (getattr(nld, loss)(X, t, reduction=reduction, **dask_opts),)
    want = getattr(numloss, loss + "_with_grad")(x, t, reduction=reduction, **opts)
    return X, lazy, want


#: The cases also computed on the cluster: every dtype and reduction with weights, ignore_index and
#: label smoothing, plus probability targets, a 3-d class-axis-first array, CosFace and sigmoid weights.  (The
#: scheduler's overhead per task on a loaded 2-core machine keeps the full grid on the in-process one.)
CLUSTER_SOFTMAX = [("weight-ignore-ls", d, r) for d, r in GRID] + [
    ("prob", np.float32, "mean"), ("axis0-3d", np.float64, "mean"), ("cosface", np.float32, "mean")]
CLUSTER_SIGMOID = [("weight-rows", d, "mean") for d in DTYPES] + [("weight-full-dask", np.float64, "none")]


def compute_all(compute_many, build, keys):
    """Build every case's graphs, then compute them all in ONE call (one round trip to a cluster)."""
    built = {key: build(*key) for key in keys}
    got = compute_many(*(g for _, lazy, _ in built.values() for g in lazy))
    return {key: (X, lazy, got[3 * i: 3 * i + 3], want) for i, (key, (X, lazy, want)) in enumerate(built.items())}


def compute_in_process(*graphs):
    return dask.compute(*graphs, scheduler="sync")


def all_keys(cases):
    return [(n, d, r) for n in cases for d, r in GRID]


@pytest.fixture(scope="module")
def softmax_results():
    return compute_all(compute_in_process, build_softmax_case, all_keys(SOFTMAX_CASES))


@pytest.fixture(scope="module")
def sigmoid_results():
    return compute_all(compute_in_process, build_sigmoid_case, all_keys(SIGMOID_CASES))


@pytest.fixture(scope="module")
def softmax_cluster_results(client):
    return compute_all(lambda *g: compute(client, *g), build_softmax_case, CLUSTER_SOFTMAX)


@pytest.fixture(scope="module")
def sigmoid_cluster_results(client):
    return compute_all(lambda *g: compute(client, *g), build_sigmoid_case, CLUSTER_SIGMOID)


def check_case(results, name, dtype, reduction):
    X, (loss, grad, plain), (got_loss, got_grad, got_plain), (want_loss, want_grad) = results[name, dtype, reduction]
    assert isinstance(loss, da.Array) and isinstance(grad, da.Array) and isinstance(plain, da.Array)
    assert grad.chunks == X.chunks
    assert loss.ndim == (np.ndim(want_loss) if reduction == "none" else 0)
    assert_same(got_loss, want_loss, dtype, "loss")
    assert_same(got_plain, want_loss, dtype, "loss (plain form)")
    assert_same(got_grad, want_grad, dtype, "grad")


def key_params(keys):
    return [pytest.param(n, d, r, id=f"{n}-{np.dtype(d).name}-{r}") for n, d, r in keys]


@pytest.mark.parametrize("name, dtype, reduction", key_params(CLUSTER_SOFTMAX))
def test_softmax_on_cluster_matches_in_memory(softmax_cluster_results, name, dtype, reduction):
    check_case(softmax_cluster_results, name, dtype, reduction)


@pytest.mark.parametrize("name, dtype, reduction", key_params(CLUSTER_SIGMOID))
def test_sigmoid_on_cluster_matches_in_memory(sigmoid_cluster_results, name, dtype, reduction):
    check_case(sigmoid_cluster_results, name, dtype, reduction)


@pytest.mark.parametrize("name, dtype, reduction", key_params(all_keys(SOFTMAX_CASES)))
def test_softmax_graph_matches_in_memory(softmax_results, name, dtype, reduction):
    check_case(softmax_results, name, dtype, reduction)


@pytest.mark.parametrize("name, dtype, reduction", key_params(all_keys(SIGMOID_CASES)))
def test_sigmoid_graph_matches_in_memory(sigmoid_results, name, dtype, reduction):
    check_case(sigmoid_results, name, dtype, reduction)


def test_softmax_class_axis_split_is_rechunked_with_a_warning(client):
    graphs, wants = [], []
    for dtype in DTYPES:
        x, t = softmax_inputs(seeded("split", np.dtype(dtype).name), dtype, "int", n_ignored=5)
        X = da.from_array(x, chunks=((50, 53), (3, 4)))
        with pytest.warns(PerformanceWarning, match="class axis 1 of logits is split into 2 chunks"):
            loss, grad = nld.softmax_cross_entropy_with_grad(X, t, weight=W7, label_smoothing=0.1)
        assert grad.chunks == X.chunks  # rechunked back
        with pytest.warns(PerformanceWarning, match="rechunking it into one chunk"):
            plain = nld.softmax_cross_entropy(X, t, weight=W7, label_smoothing=0.1)
        graphs += [loss, grad, plain]
        wants.append((dtype, numloss.softmax_cross_entropy_with_grad(x, t, weight=W7, label_smoothing=0.1)))
    got = compute(client, *graphs)
    for i, (dtype, (want_loss, want_grad)) in enumerate(wants):
        got_loss, got_grad, got_plain = got[3 * i: 3 * i + 3]
        assert_same(got_loss, want_loss, dtype, "loss")
        assert_same(got_plain, want_loss, dtype, "loss (plain form)")
        assert_same(got_grad, want_grad, dtype, "grad")


def test_all_ignored_mean_is_nan_and_gradient_zero(client):
    x = np.ones((10, 3))
    X = da.from_array(x, chunks=4)
    t = np.full(10, -100)
    loss, grad = compute(client, *nld.softmax_cross_entropy_with_grad(X.rechunk((4, 3)), t))
    assert np.isnan(loss)
    assert np.array_equal(grad, np.zeros_like(x))
    loss, grad = compute(client, *nld.softmax_cross_entropy_with_grad(X.rechunk((4, 3)), t, normalizer=5.0))
    assert loss == 0.0 and np.array_equal(grad, np.zeros_like(x))


def test_bad_class_index_raises_index_error_at_compute_time(client):
    X = da.zeros((10, 3), chunks=(4, 3))
    t = np.zeros(10, dtype=np.int64)
    t[7] = 3
    loss, grad = nld.softmax_cross_entropy_with_grad(X, t)  # lazy: nothing has looked at the targets yet
    with pytest.raises(IndexError, match="class index 3"):
        compute(client, loss, grad)


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda: nld.softmax_cross_entropy(da.zeros((4, 3), dtype=np.int32), np.zeros(4, int)), TypeError,
         "cast it first"),
        (lambda: nld.softmax_cross_entropy(da.zeros((4, 3)), np.zeros(5, int)), ValueError, r"\(4,\)"),
        (lambda: nld.softmax_cross_entropy(da.zeros((4, 3)), np.zeros(4, int), reduction="avg"), ValueError,
         "reduction"),
        (lambda: nld.softmax_cross_entropy(da.zeros((4, 3)), np.zeros(4, int), weight=np.ones(4)), ValueError,
         "weight"),
        (lambda: nld.softmax_cross_entropy(da.zeros((4, 3)), np.zeros(4, int), eps=0.1, label_smoothing=0.1),
         ValueError, "label_smoothing"),
        (lambda: nld.sigmoid_cross_entropy(da.zeros((4, 3)), np.zeros((4, 2))), ValueError, "logits' shape"),
        (lambda: nld.sigmoid_cross_entropy_with_grad(da.zeros((4, 3)), np.zeros((4, 3)), pos_weight=np.ones(2)),
         ValueError, "pos_weight"),
        (lambda: nld.sigmoid_cross_entropy(da.zeros((4, 3), dtype=np.int16), np.zeros((4, 3))), TypeError,
         "int16"),
    ],
)
def test_bad_arguments_raise_when_the_graph_is_built(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_each_block_runs_the_fused_kernel_once(monkeypatch):
    """Loss and gradient come from the same per-block call, not from two graphs."""
    calls = []
    for module, name in [(numloss.softmax, "softmax_cross_entropy_with_grad"),
                         (numloss.sigmoid, "sigmoid_cross_entropy_with_grad")]:
        original = getattr(module, name)

        def spy(x, *args, _original=original, **kwargs):
            calls.append(x.shape)
            return _original(x, *args, **kwargs)

        monkeypatch.setattr(module, name, spy)
    original = numloss.focal.softmax_focal_loss_with_grad

    def focal_spy(x, *args, **kwargs):
        calls.append(x.shape)
        return original(x, *args, **kwargs)

    monkeypatch.setattr(numloss.focal, "softmax_focal_loss_with_grad", focal_spy)
    X = da.ones((N, C), chunks=(ROW_CHUNKS, C))
    for reduction in REDUCTIONS:
        for loss, grad in [nld.softmax_cross_entropy_with_grad(X, np.zeros(N, int), reduction=reduction),
                           nld.sigmoid_cross_entropy_with_grad(X, np.zeros((N, C)), reduction=reduction),
                           nld.softmax_focal_loss_with_grad(X, np.zeros(N, int), reduction=reduction)]:
            calls.clear()
            dask.compute(loss, grad, scheduler="sync")
            assert sorted(calls) == sorted((n, C) for n in ROW_CHUNKS)


def test_import_numloss_does_not_import_dask():
    code = "import sys, numloss; assert 'dask' not in sys.modules; import numloss.dask; assert 'dask' in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_client_run_warmup_on_one_worker_per_host_loads_every_kernel_from_the_shared_cache(client):
    """The recipe of docs/compilation.md; the session's warmup filled the cache."""
    first = {}
    for address, info in client.scheduler_info()["workers"].items():
        first.setdefault(info["host"], address)
    reports = client.run(numloss.warmup, ["softmax_cross_entropy", "sigmoid_cross_entropy"],
                         workers=list(first.values()))
    assert len(reports) == 1  # one host
    for report in reports.values():
        assert report.jobs == 1  # a daemonic worker process: it works in the worker itself
        assert report.compiled == 0 and report.loaded > 0, str(report)
