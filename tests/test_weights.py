"""``sample_weight=``, ``where=`` and ``aux=`` on every loss of the registry, against ``reference.weighted``.

The reference applies the definitions plainly to the unweighted float64
reference's per-sample results (see its docstring); PyTorch, where
installed, is the second reference for ``reduction="none"`` times the
weights.  Skipped samples hold NaN in these tests: they must not be read.
"""

import numpy as np
import pytest
import reference
from conftest import assert_close
from test_contract import LOSSES, _ids, call, make_inputs, same

import numloss
from numloss import _registry

AUX = [loss for loss in LOSSES if loss.aux]
ELEMENTWISE = [loss for loss in LOSSES if loss.class_axis == "elementwise"]
N, C = 7, 5


def _weights(rng, n=N, dtype=np.float64):
    """Sample weights with a zero (sample 1) and a mask with a False (sample 2)."""
    sw = rng.uniform(0.2, 3.0, size=n).astype(dtype)
    sw[1] = 0
    where = np.ones(n, dtype=bool)
    where[2] = False
    return sw, where


def _poison_skipped(args, rows):
    """NaN in the input rows that are skipped (the input is the first argument)."""
    args[0][rows] = np.nan


def _reference(loss, args, kwargs, **extra):
    f64 = [np.asarray(a, np.float64) if np.asarray(a).dtype.kind == "f" else a for a in args]
    return reference.weighted(loss.name, f64, **kwargs, **extra)


def _assert_matches(loss, got, want, dtype):
    got_loss, got_grad = got
    want_loss, want_grad = want
    assert np.asarray(got_loss).dtype == np.dtype(dtype)
    assert_close(got_loss, want_loss, dtype, what=f"{loss.name} loss")
    if loss.input == "hidden":
        for g, w, name in zip(got_grad, want_grad, ("d_hidden", "d_weight", "d_bias"), strict=True):
            if w is not None:
                assert_close(g, w, dtype, what=f"{loss.name} {name}")
    else:
        assert_close(got_grad, want_grad, dtype, what=f"{loss.name} grad")


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("loss", LOSSES, ids=_ids(LOSSES))
def test_sample_weight_and_where_match_the_weighted_reference(loss, dtype, reduction, rng):
    args, kwargs = make_inputs(loss, dtype, rng, N=N, C=C)
    sw, where = _weights(rng, dtype=np.float32)  # any real dtype: float32 weights for float64 logits too
    _poison_skipped(args, [1, 2])
    got = call(loss, args, kwargs, reduction=reduction, sample_weight=sw, where=where)
    _assert_matches(loss, got, _reference(loss, args, kwargs, sample_weight=sw, where=where, reduction=reduction),
                    dtype)
    assert same(call(loss, args, kwargs, with_grad=False, reduction=reduction, sample_weight=sw, where=where),
                got[0])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("loss", [loss for loss in LOSSES if "prob" in loss.targets], ids=lambda loss: loss.name)
def test_probability_targets_take_sample_weight_and_where(loss, dtype, rng):
    args, kwargs = make_inputs(loss, dtype, rng, N=N, C=C)
    probs = rng.dirichlet(np.ones(C), size=N).astype(dtype)
    args = (*args[:-1], probs)
    sw, where = _weights(rng)
    _poison_skipped(args, [1, 2])
    for reduction in ("mean", "none"):
        got = call(loss, args, kwargs, reduction=reduction, sample_weight=sw, where=where, label_smoothing=0.1)
        want = _reference(loss, args, kwargs, sample_weight=sw, where=where, reduction=reduction,
                          label_smoothing=0.1)
        _assert_matches(loss, got, want, dtype)


@pytest.mark.parametrize("loss", LOSSES, ids=_ids(LOSSES))
def test_unit_sample_weights_and_an_all_true_mask_change_no_bit(loss, rng):
    args, kwargs = make_inputs(loss, "float32", rng, N=N, C=C)
    for reduction in ("mean", "none"):
        want = call(loss, args, kwargs, reduction=reduction)
        got = call(loss, args, kwargs, reduction=reduction, sample_weight=np.ones(N, dtype=np.int8),
                   where=np.ones(N, dtype=bool))
        assert same(got, want), loss.name


@pytest.mark.parametrize("loss", LOSSES, ids=_ids(LOSSES))
def test_an_all_false_mask_is_an_empty_batch(loss, rng):
    args, kwargs = make_inputs(loss, "float64", rng, N=N, C=C)
    args[0][...] = np.nan
    where = np.zeros(N, dtype=bool)
    loss_mean, grad = call(loss, args, kwargs, where=where)
    loss_sum = call(loss, args, kwargs, with_grad=False, where=where, reduction="sum")
    assert np.isnan(loss_mean) and loss_sum == 0.0
    for g in (grad if isinstance(grad, tuple) else (grad,)):
        assert g is None or not np.any(g), loss.name


@pytest.mark.parametrize("loss", LOSSES, ids=_ids(LOSSES))
def test_a_scalar_sample_weight_scales_sum_and_leaves_mean(loss, rng):
    args, kwargs = make_inputs(loss, "float64", rng, N=N, C=C)
    base_sum = call(loss, args, kwargs, with_grad=False, reduction="sum")
    base_mean = call(loss, args, kwargs, with_grad=False)
    assert_close(call(loss, args, kwargs, with_grad=False, reduction="sum", sample_weight=2.5), 2.5 * base_sum,
                 "float64")
    assert_close(call(loss, args, kwargs, with_grad=False, sample_weight=np.float32(2.5)), base_mean, "float64")


@pytest.mark.parametrize("loss", LOSSES, ids=_ids(LOSSES))
def test_bad_sample_weight_or_where_raises_naming_it_before_anything_is_written(loss, rng):
    args, kwargs = make_inputs(loss, "float64", rng, N=N, C=C)
    out = {} if loss.input == "hidden" else {"out": np.full_like(args[0], 7.0)}
    bad = [
        (dict(sample_weight=np.array([1.0, 2, -0.5, 1, 1, 1, 1])),
         r"sample_weight must be finite and >= 0.*-0\.5.*\(2,\)"),
        (dict(sample_weight=np.array([1.0, np.nan, 1, 1, 1, 1, 1])), r"sample_weight.*nan.*\(1,\)"),
        (dict(sample_weight=np.full(N, np.inf)), r"sample_weight.*inf.*\(0,\)"),
        (dict(sample_weight=np.ones(N + 1)), r"sample_weight of shape \(8,\) does not broadcast"),
        (dict(sample_weight=np.array(["a"] * N)), r"sample_weight must hold real numbers"),
        (dict(where=np.ones(N)), r"where must be a bool array"),
        (dict(where=np.ones((N, C + 1), dtype=bool)), r"where of shape \(7, 6\) does not broadcast"),
    ]
    if loss.aux:
        bad.append((dict(aux=1), r"aux must be True or False"))
    for options, message in bad:
        with pytest.raises(ValueError, match=message):
            call(loss, args, kwargs, **options, **out)
    if out:
        assert np.all(out["out"] == 7.0)


# ------------------------------------------------------------ the elementwise losses: per row or per element


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("loss", ELEMENTWISE, ids=_ids(ELEMENTWISE))
def test_elementwise_weights_per_element_match_the_reference(loss, dtype, rng):
    args, kwargs = make_inputs(loss, dtype, rng, N=N, C=C)
    sw = rng.uniform(0.0, 2.0, size=(N, C))
    sw[0, 1] = 0.0
    where = rng.random((N, C)) < 0.8
    args[0][~where] = np.nan  # masked elements are not read
    args[0][0, 1] = np.nan
    for reduction in ("mean", "sum", "none"):
        got = call(loss, args, kwargs, reduction=reduction, sample_weight=sw, where=where)
        _assert_matches(loss, got, _reference(loss, args, kwargs, sample_weight=sw, where=where,
                                              reduction=reduction), dtype)


@pytest.mark.parametrize("loss", ELEMENTWISE, ids=_ids(ELEMENTWISE))
def test_elementwise_weights_of_the_batch_shape_are_per_row_even_when_they_fit_the_class_axis(loss, rng):
    args, kwargs = make_inputs(loss, "float64", rng, N=C, C=C)  # N == C: (C,) would also broadcast per class
    sw = rng.uniform(0.5, 2.0, size=C)
    got = call(loss, args, kwargs, sample_weight=sw)
    _assert_matches(loss, got, _reference(loss, args, kwargs, sample_weight=sw), "float64")
    per_row_column = call(loss, args, kwargs, sample_weight=sw[:, None])  # (N, 1): per row too, same kernels
    assert same(per_row_column, got)
    per_class = call(loss, args, kwargs, sample_weight=np.broadcast_to(sw, (C, C)))  # along the class axis
    _assert_matches(loss, per_class, _reference(loss, args, kwargs, sample_weight=np.broadcast_to(sw, (C, C))),
                    "float64")


# ------------------------------------------------------------ aux: the log-sum-exp and the z-loss apart


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("loss", AUX, ids=_ids(AUX))
def test_aux_gives_each_rows_log_sum_exp_and_changes_no_bit_of_the_loss(loss, dtype, rng):
    args, kwargs = make_inputs(loss, dtype, rng, N=N, C=C)
    ignore = 3
    args[-1][ignore] = -100
    sw, where = _weights(rng)
    for reduction in ("mean", "none"):
        plain = call(loss, args, kwargs, reduction=reduction, sample_weight=sw, where=where)
        *got, aux = call(loss, args, kwargs, reduction=reduction, sample_weight=sw, where=where, aux=True)
        assert same(tuple(got), plain)
        lone, aux_lone = call(loss, args, kwargs, with_grad=False, reduction=reduction, sample_weight=sw,
                              where=where, aux=True)
        assert same(lone, plain[0]) and same(tuple(aux_lone), tuple(aux))
        assert isinstance(aux, numloss.Aux) and aux.lse.dtype == np.dtype(dtype) and aux.lse.shape == (N,)
        want = reference.log_sum_exp(loss.name, [np.asarray(a, np.float64) if np.asarray(a).dtype.kind == "f" else a
                                                 for a in args])
        skipped = np.zeros(N, dtype=bool)
        skipped[[1, 2, ignore]] = True
        assert np.all(np.isnan(aux.lse[skipped]))  # not read
        assert_close(aux.lse[~skipped], want[~skipped], dtype, what=f"{loss.name} lse")
        assert same(aux.cross_entropy, plain[0]) and not np.any(aux.z_loss)  # no z-loss asked for


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("loss", [loss for loss in AUX if dict(loss.options).get("z_loss") is not None],
                         ids=lambda loss: loss.name)
def test_aux_z_loss_and_cross_entropy_are_the_two_terms_of_the_loss(loss, dtype, rng):
    args, kwargs = make_inputs(loss, dtype, rng, N=N, C=C)
    args[-1][3] = -100
    sw, where = _weights(rng)
    classes = rng.uniform(0.5, 2.0, size=C)
    kwargs = dict(kwargs, **{"weight_classes" if loss.input == "hidden" else "weight": classes})
    z = 0.05
    for reduction in ("mean", "sum", "none"):
        loss_value, _, aux = call(loss, args, kwargs, reduction=reduction, sample_weight=sw, where=where, z_loss=z,
                                  aux=True)
        f64 = [np.asarray(a, np.float64) if np.asarray(a).dtype.kind == "f" else a for a in args]
        lse = reference.log_sum_exp(loss.name, f64)
        kept = (args[-1] != -100) & where & (sw > 0)
        factor = np.where(kept, sw * classes[np.where(kept, args[-1], 0)], 0.0)
        z_rows = np.where(kept, z * factor * lse * lse, 0.0)
        want_total, _ = _reference(loss, args, kwargs, sample_weight=sw, where=where, reduction=reduction, z_loss=z)
        denom = factor.sum() if reduction == "mean" else 1.0
        want_z = z_rows if reduction == "none" else z_rows.sum() / denom
        assert_close(aux.z_loss, want_z, dtype, what="z_loss")
        assert_close(aux.cross_entropy, np.asarray(want_total) - want_z, dtype, what="cross_entropy")
        assert_close(loss_value, want_total, dtype, what="loss")


# ------------------------------------------------------------ PyTorch: reduction="none" times the weights

def _torch():  # imported per test, so the rest of the file runs without PyTorch
    return pytest.importorskip("torch")


@pytest.mark.parametrize("target", ["index", "prob"])
def test_softmax_sample_weights_equal_pytorchs_unreduced_loss_times_the_weights(target, rng):
    torch = _torch()
    x = rng.standard_normal((N, C))
    y = rng.integers(0, C, size=N) if target == "index" else rng.dirichlet(np.ones(C), size=N)
    w = rng.uniform(0.5, 2.0, size=C)
    sw, where = _weights(rng)
    f = sw * where
    tx = torch.from_numpy(x.copy()).requires_grad_()
    ty = torch.from_numpy(y)
    per = torch.nn.functional.cross_entropy(tx, ty, weight=torch.from_numpy(w), reduction="none",
                                            label_smoothing=0.1)
    denom = (f * w[y]).sum() if target == "index" else f.sum()
    total = (per * torch.from_numpy(f)).sum() / denom
    total.backward()
    loss, grad = numloss.softmax_cross_entropy_with_grad(x, y, weight=w, label_smoothing=0.1, sample_weight=sw,
                                                         where=where)
    assert_close(loss, total.item(), "float64")
    assert_close(grad, tx.grad.numpy(), "float64")


def test_sigmoid_sample_weights_equal_pytorchs_unreduced_loss_times_the_weights(rng):
    torch = _torch()
    x = rng.standard_normal((N, C))
    t = (rng.random((N, C)) < 0.4).astype(np.float64)
    sw = rng.uniform(0.0, 2.0, size=N)
    tx = torch.from_numpy(x.copy()).requires_grad_()
    per = torch.nn.functional.binary_cross_entropy_with_logits(tx, torch.from_numpy(t), reduction="none")
    total = (per * torch.from_numpy(sw[:, None])).sum() / (sw.sum() * C)
    total.backward()
    loss, grad = numloss.sigmoid_cross_entropy_with_grad(x, t, sample_weight=sw)
    assert_close(loss, total.item(), "float64")
    assert_close(grad, tx.grad.numpy(), "float64")


# ------------------------------------------------------------ dask: weights chunked like the batch


@pytest.mark.parametrize("loss", [loss for loss in LOSSES if loss.input != "hidden"],
                         ids=_ids([loss for loss in LOSSES if loss.input != "hidden"]))
def test_dask_takes_sample_weight_and_where_chunked_like_the_batch(loss, rng):
    da = pytest.importorskip("dask.array")
    import dask

    import numloss.dask as nld

    args, kwargs = make_inputs(loss, "float64", rng, N=12, C=C)
    sw, where = _weights(rng, n=12)
    _poison_skipped(args, [1, 2])
    for reduction in ("mean", "none"):
        want_loss, want_grad = call(loss, args, kwargs, reduction=reduction, sample_weight=sw, where=where)
        chunked = [da.from_array(a, chunks=(4,) + a.shape[1:]) for a in args]
        lazy = getattr(nld, loss.with_grad)(*chunked, reduction=reduction, sample_weight=da.from_array(sw, chunks=4),
                                            where=da.from_array(where, chunks=4), **kwargs)
        got_loss, got_grad = dask.compute(*lazy, scheduler="synchronous")
        assert_close(got_loss, want_loss, "float64", what=f"{loss.name} dask loss")
        assert_close(got_grad, want_grad, "float64", what=f"{loss.name} dask grad")


def test_registry_says_which_losses_take_aux():
    for loss in LOSSES:
        assert loss.aux == (loss.class_axis != "elementwise"), loss.name
    assert _registry.BY_NAME["linear_cross_entropy"].targets == ("index", "prob")


@pytest.mark.parametrize("loss", AUX[:-1] if AUX[-1].input == "hidden" else AUX, ids=lambda loss: loss.name)
def test_dask_aux_gives_the_in_memory_aux(loss, rng):
    da = pytest.importorskip("dask.array")
    import dask

    import numloss.dask as nld

    args, kwargs = make_inputs(loss, "float64", rng, N=12, C=C)
    args[-1][5] = -100
    sw, where = _weights(rng, n=12)
    if dict(loss.options).get("z_loss") is not None:
        kwargs = dict(kwargs, z_loss=0.01)
    for reduction in ("mean", "sum", "none"):
        for with_grad in (False, True):
            want = call(loss, args, kwargs, with_grad=with_grad, reduction=reduction, sample_weight=sw, where=where,
                        aux=True)
            chunked = [da.from_array(a, chunks=(4,) + a.shape[1:]) for a in args]
            fn = getattr(nld, loss.with_grad if with_grad else loss.name)
            got = dask.compute(*fn(*chunked, reduction=reduction, sample_weight=sw, where=where, aux=True, **kwargs),
                               scheduler="synchronous")
            for g, w in zip(got[:-1], want[:-1], strict=True):
                assert_close(g, w, "float64", what=f"{loss.name} dask")
            assert isinstance(got[-1], numloss.Aux)
            for g, w, name in zip(got[-1], want[-1], numloss.Aux._fields, strict=True):
                assert_close(g, w, "float64", what=f"{loss.name} dask aux.{name}")


def test_dask_per_element_sigmoid_weights_equal_the_in_memory_ones(rng):
    da = pytest.importorskip("dask.array")
    import dask

    import numloss.dask as nld

    x = rng.standard_normal((12, C))
    t = (rng.random((12, C)) < 0.5).astype(float)
    sw = rng.uniform(0.0, 2.0, size=(12, C))
    where = rng.random((12, C)) < 0.8
    x[~where] = np.nan
    for reduction in ("mean", "none"):
        want = numloss.sigmoid_focal_loss_with_grad(x, t, sample_weight=sw, where=where, reduction=reduction)
        lazy = nld.sigmoid_focal_loss_with_grad(da.from_array(x, chunks=(4, 2)), t, reduction=reduction,
                                                sample_weight=sw, where=where)
        got = dask.compute(*lazy, scheduler="synchronous")
        for g, w in zip(got, want, strict=True):
            assert_close(g, w, "float64")
