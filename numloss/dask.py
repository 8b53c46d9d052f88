"""numloss losses for dask arrays chunked along the batch axis (optional extra ``dask``).

The functions have the names and arguments of the in-memory ones (without
``out=``) and take :class:`dask.array.Array` logits and targets:
softmax and sigmoid cross-entropy, the softmax and sigmoid focal losses,
CosFace and ArcFace, each with its ``_with_grad`` form.
(``linear_cross_entropy`` has none: its ``d_weight`` is a sum over the whole
batch, not a blockwise result.)  They build
lazy graphs: the loss is a dask scalar (an array for ``reduction="none"``),
the gradient a dask array with the logits' chunks.  Nothing is computed until
you call ``.compute()`` / ``dask.compute`` -- on the threaded scheduler, a
local cluster or a multi-machine ``dask.distributed`` cluster alike.

How a graph is built (``softmax_cross_entropy_with_grad``, reduction "mean"):

1. the **denominator** is computed first from the targets alone (the summed
   class weights of the non-ignored samples; no logits are read), as a
   0-d dask array.  It is static (no task at all) for probability targets,
   sigmoid losses (the element count) and an explicit ``normalizer=``;
2. every block of logits runs the fused numloss kernel **once**, with
   ``normalizer=`` that global denominator, producing the pair (the block's
   share of the loss, the block's gradient).  The gradient is therefore
   already scaled by the global denominator: no second pass over it;
3. the pairs are split into the gradient (blockwise, same chunks) and the
   per-block partial losses, which are summed (in float64) to the loss.

Compute the loss and the gradient **together** (``dask.compute(loss, grad)``,
or ``persist``): computing them one after the other runs the kernels twice.

The softmax losses need the class axis in one chunk; when it is split, the
logits (and a probability target) are rechunked along it with a
:class:`dask.array.PerformanceWarning`, and the gradient is rechunked back to
the logits' chunks.  Sigmoid losses are elementwise and take any chunking.

Errors that depend only on shapes, dtypes and options are raised when the
graph is built; an out-of-range class index is found only when the blocks
run and raises its ``IndexError`` from ``compute()``.

Importing this module imports dask; ``import numloss`` does not.
"""

import functools
import importlib
import math
import warnings
from collections.abc import Callable
from typing import Any, Union, cast

import dask.array as da
import numpy as np
from dask.array import PerformanceWarning
from numpy.typing import ArrayLike, DTypeLike

from . import _plumbing, _registry
from . import _validate as V
from . import focal as _focal
from . import margin as _margin
from ._kernels import margin as _margin_kernels
from ._typing import AnyArray, Float64Array, FloatScalar, Grad, LossValue, Real, Reduction

#: a ``dask.array.Array``: dask ships ``py.typed`` but leaves its functions and methods unannotated (every
#: graph operation gives Any), so its arrays are Any here
DaskArray = Any
#: an input: a dask array, or an array_like (wrapped in one)
DaskLike = Union[DaskArray, ArrayLike]
#: a ``chunks=`` of dask: the block sizes per axis, or ``{axis: size, -1 or "auto"}``
Chunks = Union[tuple[tuple[int, ...], ...], dict[int, Union[int, str]]]

__all__ = [
    "arcface_cross_entropy",
    "arcface_cross_entropy_with_grad",
    "cosface_cross_entropy",
    "cosface_cross_entropy_with_grad",
    "sigmoid_cross_entropy",
    "sigmoid_cross_entropy_with_grad",
    "sigmoid_focal_loss",
    "sigmoid_focal_loss_with_grad",
    "softmax_cross_entropy",
    "softmax_cross_entropy_with_grad",
    "softmax_focal_loss",
    "softmax_focal_loss_with_grad",
]


# --------------------------------------------------------------------------- run in the workers, once per block
def _call_block(fn: Callable[..., Any], x: AnyArray, t: AnyArray, denom: FloatScalar | AnyArray | None, reduction: str,
                with_grad: bool, takes_normalizer: bool, kwargs: dict[str, Any]
                ) -> tuple[LossValue, Grad | None, _plumbing.Aux | None]:
    """One call of the in-memory loss on one block; returns ``(loss, grad or None, aux or None)``.

    For "mean", ``denom`` is the global denominator.  Positive: passed as
    ``normalizer`` where the loss takes one (the kernel then scales the
    gradient in its single pass), else the block's sum is divided here (an
    in-block multiply, still no second task).  Zero: the block's own mean,
    which then has the same zero denominator (NaN loss, zero rows for ignored
    samples, as in memory).  The reduced terms of ``aux`` (``aux=True``) are
    scaled as the loss is.
    """
    want_aux = kwargs.get("aux", False)

    def split(result: Any) -> tuple[LossValue, Grad | None, _plumbing.Aux | None]:
        parts: tuple[Any, ...] = result if (with_grad or want_aux) else (result,)
        return parts[0], parts[1] if with_grad else None, parts[-1] if want_aux else None

    if reduction != "mean":
        return split(fn(x, t, reduction=reduction, **kwargs))
    assert denom is not None  # "mean": the graph always passes its denominator
    d = float(denom)
    if d > 0.0 and math.isfinite(d) and takes_normalizer:
        return split(fn(x, t, reduction="mean", normalizer=d, **kwargs))
    if d == 0.0 or d != d:
        _, grad, aux = split(fn(x, t, reduction="mean", **kwargs))
        nan = x.dtype.type(np.nan)
        return nan, grad, None if aux is None else aux._replace(cross_entropy=nan, z_loss=nan)
    loss, grad, aux = split(fn(x, t, reduction="sum", **kwargs))
    if grad is not None:
        grad *= grad.dtype.type(1.0 / d)
    if aux is not None:
        aux = aux._replace(cross_entropy=aux.cross_entropy / d, z_loss=aux.z_loss / d)
    return loss / d, grad, aux


def _block(x: AnyArray, t: AnyArray, *arrays: AnyArray, fn: tuple[str, str], reduction: str, with_grad: bool,
           takes_normalizer: bool, array_names: tuple[str, ...], class_axis: int | None,
           denom: FloatScalar | AnyArray | None = None, kwargs: dict[str, Any]
           ) -> LossValue | None | tuple[LossValue | None, ...]:
    """The block's ``loss`` (with ``grad``, and with ``lse, cross_entropy, z_loss`` for ``aux=True``)."""
    # The loss keeps the class axis with length 1 (squeezed out by the graph
    # for "none"): dask cannot drop an axis of a block holding a tuple.
    if denom is None and len(arrays) > len(array_names):
        arrays, denom = arrays[:-1], arrays[-1]  # (a tuple kept: the *arrays type)
    module, name = fn
    fn = getattr(importlib.import_module(module), name + ("_with_grad" if with_grad else ""))
    kwargs = dict(kwargs, **dict(zip(array_names, arrays, strict=True)))
    loss, grad, aux = _call_block(cast("Callable[..., Any]", fn),  # fn: now the function (the parameter was its name)
                                  x, t, denom, reduction, with_grad, takes_normalizer, kwargs)

    def keep_shape(value: LossValue) -> LossValue:
        if reduction != "none":
            return np.full((1,) * x.ndim, value, dtype=np.float64)
        return value if class_axis is None else np.expand_dims(value, class_axis)

    out: tuple[LossValue | None, ...] = (keep_shape(loss),) + ((grad,) if with_grad else ())
    if aux is not None:
        assert class_axis is not None  # aux: the row losses only, which have a class axis
        out += (np.expand_dims(aux.lse, class_axis), keep_shape(aux.cross_entropy), keep_shape(aux.z_loss))
    return out if len(out) > 1 else out[0]


def _class_weight_sum_block(t: AnyArray, *row_weight: AnyArray, weight: Float64Array, ignore_index: int,
                            num_classes: int) -> Float64Array:
    """Summed class weights of the kept samples of one target block (float64, shape (1, ..., 1)), each
    times its sample weight when ``row_weight`` (one block of :func:`_row_weight_block`) is given.

    Indices outside ``[0, C)`` are skipped here; the loss kernel reports them.
    """
    t = np.asarray(t)
    flat = t.reshape(-1)
    keep = (flat != ignore_index) & (flat >= 0) & (flat < num_classes)
    w = weight[np.where(keep, flat, 0)] * keep
    if row_weight:
        w = w * np.asarray(row_weight[0]).reshape(-1)
    return np.full((1,) * t.ndim, w.sum(), dtype=np.float64)


def _row_weight_block(*blocks: AnyArray, names: tuple[str, ...]) -> Float64Array:
    """One block of ``sample_weight * where`` (float64), validated as in memory (the same messages)."""
    given = dict(zip(names, blocks, strict=True))
    shape = blocks[0].shape
    return _plumbing.row_weights(given.get("sample_weight"), given.get("where"), shape).reshape(shape)


def _row_weight_graph(sample_weight: DaskLike | None, where: DaskLike | None, shape: tuple[int, ...],
                      chunks: Chunks) -> DaskArray | None:
    """``sample_weight * where`` broadcast to ``shape`` as a float64 dask array with ``chunks``, or None.

    What the blocks then get as their ``sample_weight`` (a 0 skips a sample,
    as ``where=False`` does).  Dtypes and shapes are checked here, the
    values (negative, NaN, inf) when the blocks run.
    """
    arrays, names = [], []
    for name, value in (("sample_weight", sample_weight), ("where", where)):
        if value is None:
            continue
        a: DaskArray = value if isinstance(value, da.Array) else da.from_array(np.asarray(value))
        if name == "sample_weight" and not V.is_real(a.dtype):
            raise ValueError(f"sample_weight must hold real numbers; got dtype {a.dtype}")
        if name == "where" and a.dtype != np.bool_:
            raise ValueError(f"where must be a bool array (True: use the sample); got dtype {a.dtype}")
        try:
            a = da.broadcast_to(a, shape)
        except ValueError:
            raise ValueError(f"{name} of shape {a.shape} does not broadcast to {tuple(shape)}") from None
        arrays.append(a.rechunk(chunks))
        names.append(name)
    if not arrays:
        return None
    return da.map_blocks(_row_weight_block, *arrays, names=tuple(names), dtype=np.float64,
                         meta=np.empty((0,) * len(shape), dtype=np.float64))


def _part(parts: tuple[AnyArray, ...], k: int) -> AnyArray:
    return parts[k]


# --------------------------------------------------------------------------- graph building
def _as_dask(value: DaskLike, name: str, chunks: Chunks | None = None) -> DaskArray:
    if isinstance(value, da.Array):
        arr = value
    else:
        arr = da.from_array(np.asarray(value), chunks=chunks if chunks is not None else "auto")
    if any(math.isnan(c) for dim in arr.chunks for c in dim):
        raise ValueError(f"{name} has unknown chunk sizes {arr.chunks}; call {name}.compute_chunk_sizes() first")
    return arr


def _check_shape(value: DaskLike, shape: tuple[int, ...], message: str) -> None:
    got = tuple(getattr(value, "shape", np.shape(value)))
    if got != tuple(shape):
        raise ValueError(f"{message}; got {got}")


def _aligned(value: DaskLike, name: str, chunks: Chunks) -> DaskArray:
    """``value`` (dask or array_like, of the right shape) as a dask array with ``chunks``."""
    if isinstance(value, da.Array):
        return _as_dask(value, name).rechunk(chunks)
    return _as_dask(value, name, chunks)


def _dtype_of(value: DaskLike) -> np.dtype[Any]:
    dtype = getattr(value, "dtype", None)
    return np.asarray(value).dtype if dtype is None else np.dtype(dtype)


def _logits(value: DaskLike, name: str = "logits", class_axis: int | None = None) -> DaskArray:
    dtype = _dtype_of(value)
    if dtype not in V.FLOAT_DTYPES and V.half_kind(dtype) is None:
        raise TypeError(
            f"{name} has dtype {dtype}; numloss computes in float32 or float64 (float16 and bfloat16 inputs "
            f"in float32): cast it first, e.g. {name}.astype(np.float32)"
        )
    chunks: dict[int, int | str] | None = None
    if not isinstance(value, da.Array) and class_axis is not None:
        ndim = np.ndim(value)
        if ndim:
            chunks = {i: ("auto" if i != class_axis % ndim else -1) for i in range(ndim)}
    return _as_dask(value, name, chunks)


def _class_axis_in_one_chunk(x: DaskArray, axis: int, what: str, name: str) -> tuple[DaskArray, bool]:
    if len(x.chunks[axis]) <= 1:
        return x, False
    warnings.warn(
        f"{what}: the class axis {axis} of {name} is split into {len(x.chunks[axis])} chunks "
        f"{x.chunks[axis]}; rechunking it into one chunk (chunk the {name} along the batch axes only "
        f"to avoid this copy)",
        PerformanceWarning,
        stacklevel=4,
    )
    return x.rechunk({axis: -1}), True


def _assemble(block: Callable[..., Any], ind: tuple[int, ...], args: list[Any], x: DaskArray, with_grad: bool,
              reduction: str, class_axis: int | None, denom: DaskArray | float | None, aux: bool = False
              ) -> tuple[DaskArray, DaskArray | None, _plumbing.Aux | None]:
    """One blockwise task per block of ``x``; split its results into the loss and gradient graphs.

    Returns ``(loss, grad or None, Aux of dask arrays or None)``.
    """
    if isinstance(denom, da.Array):
        args = [*args, denom, ()]
    else:
        block = functools.partial(block, denom=denom)
    out_dtype = V.compute_dtype(x.dtype)  # (float32 for half logits)
    loss_dtype = np.float64 if reduction != "none" else out_dtype
    loss_chunks = tuple(
        (1,) if i == class_axis else (c if reduction == "none" else (1,) * len(c)) for i, c in enumerate(x.chunks)
    )
    loss_meta = np.empty((0,) * x.ndim, dtype=loss_dtype)

    def reduced(partial: DaskArray) -> DaskArray:
        if reduction == "none":
            return partial if class_axis is None else partial.squeeze(axis=class_axis)
        return partial.sum(dtype=np.float64).astype(out_dtype)

    grad: DaskArray | None
    aux_out: _plumbing.Aux | None
    grad = aux_out = None
    if with_grad or aux:
        parts = da.blockwise(block, ind, *args, dtype=x.dtype, meta=np.empty((0,) * x.ndim, dtype=object),
                             align_arrays=False, concatenate=True)

        def pick(k: int, dtype: DTypeLike, chunks: Chunks) -> DaskArray:
            return parts.map_blocks(_part, k, dtype=dtype, chunks=chunks, meta=np.empty((0,) * x.ndim, dtype=dtype))

        partial = pick(0, loss_dtype, loss_chunks)
        if with_grad:
            grad = pick(1, x.dtype, x.chunks)
        if aux:
            k = 2 if with_grad else 1
            lse_chunks = tuple((1,) if i == class_axis else c for i, c in enumerate(x.chunks))
            lse = pick(k, out_dtype, lse_chunks).squeeze(axis=class_axis)
            aux_out = _plumbing.Aux(lse, reduced(pick(k + 1, loss_dtype, loss_chunks)),
                                    reduced(pick(k + 2, loss_dtype, loss_chunks)))
    else:
        partial = da.blockwise(block, ind, *args, dtype=loss_dtype, align_arrays=False, concatenate=True,
                               meta=loss_meta, adjust_chunks=dict(zip(ind, loss_chunks, strict=True)))
    return reduced(partial), grad, aux_out


def _row_loss_graph(name: str, fns: tuple[str, str], logits: DaskLike, target: DaskLike, with_grad: bool, *,
                    weight: ArrayLike | None, ignore_index: int, reduction: str, normalizer: Real | None = None,
                    axis: int = -1, extra: dict[str, Any] | None = None, logits_name: str = "logits",
                    prob_targets: bool = True, takes_normalizer: bool = True, takes_axis: bool = True,
                    sample_weight: DaskLike | None = None, where: DaskLike | None = None, aux: bool = False) -> Any:
    """Graphs of a softmax-type loss: rows along ``axis``, targets of class indices (or probabilities)."""
    if isinstance(axis, (bool, np.bool_)) or not isinstance(axis, (int, np.integer)):
        raise ValueError(f"axis must be an integer; got {axis!r}")
    x = _logits(logits, logits_name, class_axis=int(axis))
    if x.ndim == 0:
        raise ValueError(f"{logits_name} must have at least one dimension (the class axis); got a 0-d array")
    if not -x.ndim <= axis < x.ndim:
        raise ValueError(f"axis {axis} is out of bounds for {logits_name} with {x.ndim} dimensions")
    axis = int(axis) % x.ndim
    reduction = V.reduction(reduction)
    norm = V.normalizer(normalizer)
    ignore = V.ignore_index(ignore_index)
    C = x.shape[axis]
    if C < 1:
        raise ValueError(f"{logits_name} must have at least one class along axis {axis}; got shape {x.shape}")
    w = V.class_weights(None if weight is None else np.asarray(weight), C)

    tdtype = _dtype_of(target)
    batch_shape = x.shape[:axis] + x.shape[axis + 1:]
    if tdtype.kind in "iu":
        kind = "int"
        _check_shape(target, batch_shape, f"target of class indices must have the {logits_name}' shape without "
                                          f"the class axis, {batch_shape}")
    elif V.is_float(tdtype) and prob_targets:
        kind = "prob"
        _check_shape(target, x.shape, f"a float target (probabilities) must have the {logits_name}' shape {x.shape}")
    elif prob_targets:
        raise ValueError(f"target must hold integer class indices or float probabilities; got dtype {tdtype}")
    else:
        raise ValueError(f"target must hold integer class indices (this loss takes no probability targets); "
                         f"got dtype {tdtype}")

    original_chunks = x.chunks
    x, rechunked = _class_axis_in_one_chunk(x, axis, name, logits_name)
    batch_chunks = x.chunks[:axis] + x.chunks[axis + 1:]
    t = _aligned(target, "target", batch_chunks if kind == "int" else x.chunks)
    rw = _row_weight_graph(sample_weight, where, batch_shape, batch_chunks)

    # The global denominator of "mean", known before any block of logits runs.
    denom = None
    if reduction == "mean":
        if norm is not None:
            denom = norm
        elif kind == "prob":
            denom = float(math.prod(batch_shape)) if rw is None else rw.sum(dtype=np.float64)
        else:
            parts = da.map_blocks(
                _class_weight_sum_block, t, *([] if rw is None else [rw]), weight=w, ignore_index=ignore,
                num_classes=C, dtype=np.float64, chunks=tuple((1,) * len(c) for c in t.chunks),
                meta=np.empty((0,) * t.ndim, dtype=np.float64),
            )
            denom = parts.sum(dtype=np.float64)

    kwargs = dict(extra or {}, weight=None if weight is None else w, ignore_index=ignore)
    if V.flag(aux, "aux"):
        kwargs["aux"] = True
    if takes_axis:
        kwargs["axis"] = axis
    block = functools.partial(_block, fn=fns, reduction=reduction, with_grad=with_grad,
                              takes_normalizer=takes_normalizer, array_names=() if rw is None else ("sample_weight",),
                              class_axis=axis, kwargs=kwargs)
    ind = tuple(range(x.ndim))
    bind = ind[:axis] + ind[axis + 1:]
    args = [x, ind, t, ind if kind == "prob" else bind] + ([] if rw is None else [rw, bind])
    loss, grad, aux_out = _assemble(block, ind, args, x, with_grad, reduction, axis, denom, aux)
    result: tuple[DaskArray | _plumbing.Aux | None, ...] = (loss,)
    if with_grad:
        assert grad is not None  # _assemble returns the gradient with_grad
        result += (grad.rechunk(original_chunks) if rechunked else grad,)
    if aux:
        result += (aux_out,)
    return result if len(result) > 1 else loss


def _broadcast_weight(value: DaskLike | None, x: DaskArray, name: str
                      ) -> tuple[DaskArray, tuple[int, ...]] | tuple[None, None]:
    """A weight broadcastable to the logits as a dask array chunked to match them (or None)."""
    if value is None:
        return None, None
    shape = tuple(getattr(value, "shape", np.shape(value)))
    try:
        full: tuple[int, ...] | None = np.broadcast_shapes(shape, x.shape)
    except ValueError:
        full = None
    if full != x.shape:
        raise ValueError(f"{name} of shape {shape} does not broadcast to the logits' shape {x.shape}")
    offset = x.ndim - len(shape)
    chunks = tuple((1,) if n == 1 else x.chunks[offset + i] for i, n in enumerate(shape))
    w = _aligned(value, name, chunks)
    if not V.is_real(w.dtype):
        raise ValueError(f"{name} must be numeric; got dtype {w.dtype}")
    return w, tuple(range(offset, x.ndim))


def _elementwise_graph(fns: tuple[str, str], logits: DaskLike, target: DaskLike, with_grad: bool, *, reduction: str,
                       weights: dict[str, DaskLike | None] | None = None, normalizer: Real | None = None,
                       extra: dict[str, Any] | None = None, takes_normalizer: bool = True,
                       sample_weight: DaskLike | None = None, where: DaskLike | None = None
                       ) -> DaskArray | tuple[DaskArray, DaskArray]:
    """Graphs of an elementwise (sigmoid-type) loss: any chunking, "mean" over all elements."""
    x = _logits(logits)
    reduction = V.reduction(reduction)
    norm = V.normalizer(normalizer)
    tdtype = _dtype_of(target)
    if not V.is_real(tdtype):
        raise ValueError(f"target must be bool, integer or float; got dtype {tdtype}")
    _check_shape(target, x.shape, f"target must have the logits' shape {x.shape}")
    t = _aligned(target, "target", x.chunks)
    ind = tuple(range(x.ndim))
    args, names = [x, ind, t, ind], []
    for wname, value in (weights or {}).items():
        w, wind = _broadcast_weight(value, x, wname)
        if w is not None:
            args += [w, wind]
            names.append(wname)
    # sample weights / masks: per row as (..., 1) blocks (of the batch shape, as in memory), else per element
    rw, per_row = None, all(a is None or tuple(np.shape(a)) == x.shape[:-1] for a in (sample_weight, where))
    if x.ndim and (sample_weight is not None or where is not None):
        if per_row:
            rw = cast(DaskArray, _row_weight_graph(sample_weight, where, x.shape[:-1], x.chunks[:-1]))[..., None]
        else:
            rw = _row_weight_graph(sample_weight, where, x.shape, x.chunks)
        args += [rw, ind]
        names.append("sample_weight")
    elif sample_weight is not None or where is not None:  # 0-d logits: one element
        rw = _row_weight_graph(sample_weight, where, (), ())
        args += [rw, ()]
        names.append("sample_weight")
    denom = None
    if reduction == "mean":
        if norm is not None:
            denom = norm
        elif rw is not None:
            denom = rw.sum(dtype=np.float64) * (x.shape[-1] if x.ndim and per_row else 1)
        else:
            denom = float(math.prod(x.shape))
    block = functools.partial(_block, fn=fns, reduction=reduction, with_grad=with_grad,
                              takes_normalizer=takes_normalizer, array_names=tuple(names), class_axis=None,
                              kwargs=dict(extra or {}))
    loss, grad, _ = _assemble(block, ind, args, x, with_grad, reduction, None, denom)
    return (loss, grad) if with_grad else loss


# (module, function name): looked up in the worker when the block runs
def _in_memory(name: str) -> tuple[str, str]:
    """``(module, name)`` of the in-memory loss each block runs, from the registry."""
    return f"numloss.{_registry.BY_NAME[name].module}", name


_SOFTMAX = _in_memory("softmax_cross_entropy")
_SIGMOID = _in_memory("sigmoid_cross_entropy")
_SOFTMAX_FOCAL = _in_memory("softmax_focal_loss")
_SIGMOID_FOCAL = _in_memory("sigmoid_focal_loss")
_COSFACE = _in_memory("cosface_cross_entropy")
_ARCFACE = _in_memory("arcface_cross_entropy")


def _softmax_graph(name: str, logits: DaskLike, target: DaskLike, with_grad: bool, weight: ArrayLike | None,
                   ignore_index: int, label_smoothing: Real, z_loss: Real, softcap: Real | None, eps: Real, axis: int,
                   reduction: str, normalizer: Real | None, sample_weight: DaskLike | None = None,
                   where: DaskLike | None = None, aux: bool = False) -> Any:
    ls, z, cap, eps = V.label_smoothing(label_smoothing), V.z_loss(z_loss), V.softcap(softcap), V.eps(eps)
    V.eps_combinations(eps, ls, z, cap)
    extra = dict(label_smoothing=ls, z_loss=z, softcap=None if cap == 0.0 else cap, eps=eps)
    return _row_loss_graph(name, _SOFTMAX, logits, target, with_grad, weight=weight, ignore_index=ignore_index,
                           reduction=reduction, normalizer=normalizer, axis=axis, extra=extra,
                           sample_weight=sample_weight, where=where, aux=aux)


def _margin_graph(name: str, fns: tuple[str, str], kind: int, cosine: DaskLike, target: DaskLike, with_grad: bool,
                  scale: Real, margin: Real, weight: ArrayLike | None, ignore_index: int, label_smoothing: Real,
                  reduction: str, extra: dict[str, Any], sample_weight: DaskLike | None = None,
                  where: DaskLike | None = None, aux: bool = False) -> Any:
    # the in-memory wrappers' own checks of scale, margin and label_smoothing, run here before any graph
    dtype = _dtype_of(cosine)
    _margin._options(kind, scale, margin, label_smoothing, dtype if dtype in V.FLOAT_DTYPES else np.dtype(np.float64))
    extra = dict(extra, scale=scale, margin=margin, label_smoothing=label_smoothing)
    return _row_loss_graph(name, fns, cosine, target, with_grad, weight=weight, ignore_index=ignore_index,
                           reduction=reduction, extra=extra, logits_name="cosine", prob_targets=False,
                           takes_normalizer=False, takes_axis=False, sample_weight=sample_weight, where=where,
                           aux=aux)


# --------------------------------------------------------------------------- public functions
def softmax_cross_entropy(
    logits: DaskLike, target: DaskLike, *, weight: ArrayLike | None = None, ignore_index: int = -100,
    label_smoothing: Real = 0.0, z_loss: Real = 0.0, softcap: Real | None = None, eps: Real = 0.0, axis: int = -1,
    reduction: Reduction = "mean", normalizer: Real | None = None, sample_weight: DaskLike | None = None,
    where: DaskLike | None = None, aux: bool = False,
) -> Any:
    """Lazy :func:`numloss.softmax_cross_entropy` of dask arrays chunked along the batch axes.

    The formula, options and normalisation are those of
    :func:`numloss.softmax_cross_entropy`; "mean" is normalised globally (the
    sum of the blocks' losses over the summed class weights of all kept
    samples, or over ``normalizer``), so the result equals the in-memory one.

    Parameters
    ----------
    logits : dask.array.Array (or array_like), float32 or float64, shape ``(..., C)``
        Chunked along the batch axes; the class axis ``axis`` should be one
        chunk (otherwise it is rechunked, with a ``PerformanceWarning``).
    target : dask.array.Array or array_like
        Integer class indices of the logits' shape without ``axis``, or float
        probabilities of the logits' shape; rechunked to match the logits.
    weight, ignore_index, label_smoothing, z_loss, softcap, eps, axis, reduction, normalizer
        As :func:`numloss.softmax_cross_entropy`.  ``weight`` is small and
        is sent to every block.

    Returns
    -------
    loss : dask.array.Array
        0-d of the logits' dtype, or for ``reduction="none"`` of the logits'
        shape without ``axis`` (chunked like the logits' batch axes).

    Examples
    --------
    >>> import dask.array as da, numpy as np, numloss.dask
    >>> logits = da.from_array(np.array([[2.0, 1.0, 0.1]] * 4), chunks=(2, 3))
    >>> round(float(numloss.dask.softmax_cross_entropy(logits, np.zeros(4, dtype=int)).compute()), 6)
    0.41703
    """
    return _softmax_graph("softmax_cross_entropy", logits, target, False, weight, ignore_index, label_smoothing,
                          z_loss, softcap, eps, axis, reduction, normalizer, sample_weight, where, aux)


def softmax_cross_entropy_with_grad(
    logits: DaskLike, target: DaskLike, *, weight: ArrayLike | None = None, ignore_index: int = -100,
    label_smoothing: Real = 0.0, z_loss: Real = 0.0, softcap: Real | None = None, eps: Real = 0.0, axis: int = -1,
    reduction: Reduction = "mean", normalizer: Real | None = None, sample_weight: DaskLike | None = None,
    where: DaskLike | None = None, aux: bool = False,
) -> Any:
    """Lazy :func:`numloss.softmax_cross_entropy_with_grad` of dask arrays: one fused kernel call per block.

    Parameters
    ----------
    logits, target, weight, ignore_index, label_smoothing, z_loss, softcap, eps, axis, reduction, normalizer
        As :func:`softmax_cross_entropy` (this module's).  There is no
        ``out=``: dask owns the memory of its blocks.

    Returns
    -------
    loss : dask.array.Array
        As :func:`softmax_cross_entropy` (this module's).
    grad : dask.array.Array
        The gradient of ``loss`` (of ``loss.sum()`` for "none"), of the
        logits' shape, dtype and chunks.  Compute it together with ``loss``
        (``dask.compute(loss, grad)``) so that each block runs once.

    Examples
    --------
    >>> import dask, dask.array as da, numpy as np, numloss.dask
    >>> logits = da.zeros((4, 2), chunks=(2, 2))
    >>> loss, grad = numloss.dask.softmax_cross_entropy_with_grad(logits, np.ones(4, dtype=int))
    >>> loss, grad = dask.compute(loss, grad)
    >>> grad[0]
    array([ 0.125, -0.125])
    """
    return _softmax_graph("softmax_cross_entropy_with_grad", logits, target, True, weight, ignore_index,
                          label_smoothing, z_loss, softcap, eps, axis, reduction, normalizer, sample_weight, where, aux)


def sigmoid_cross_entropy(logits: DaskLike, target: DaskLike, *, weight: DaskLike | None = None,
                          pos_weight: DaskLike | None = None, eps: Real = 0.0, reduction: Reduction = "mean",
                          normalizer: Real | None = None, sample_weight: DaskLike | None = None,
                          where: DaskLike | None = None) -> DaskArray:
    """Lazy :func:`numloss.sigmoid_cross_entropy` of dask arrays (any chunking: it is elementwise).

    Parameters
    ----------
    logits : dask.array.Array (or array_like), float32 or float64, any shape
    target : dask.array.Array or array_like of the logits' shape
        Rechunked to the logits' chunks.
    weight, pos_weight : dask.array.Array or array_like, optional
        Broadcast to the logits' shape (each chunked to match the logits
        along its non-broadcast axes).
    eps, reduction, normalizer
        As :func:`numloss.sigmoid_cross_entropy`; "mean" divides by the
        logits' total element count (or ``normalizer``).

    Returns
    -------
    loss : dask.array.Array
        0-d of the logits' dtype, or of the logits' shape and chunks for "none".

    Examples
    --------
    >>> import dask.array as da, numpy as np, numloss.dask
    >>> x = da.from_array(np.array([0.0, 2.0, 0.0, 2.0]), chunks=2)
    >>> round(float(numloss.dask.sigmoid_cross_entropy(x, np.array([1.0, 0.0, 1.0, 0.0])).compute()), 6)
    1.410038
    """
    return _elementwise_graph(_SIGMOID, logits, target, False, reduction=reduction, normalizer=normalizer,
                              weights=dict(weight=weight, pos_weight=pos_weight), extra=dict(eps=V.eps(eps)),
                              sample_weight=sample_weight, where=where)


def sigmoid_cross_entropy_with_grad(logits: DaskLike, target: DaskLike, *, weight: DaskLike | None = None,
                                    pos_weight: DaskLike | None = None, eps: Real = 0.0,
                                    reduction: Reduction = "mean", normalizer: Real | None = None,
                                    sample_weight: DaskLike | None = None, where: DaskLike | None = None
                                    ) -> tuple[DaskArray, DaskArray]:
    """Lazy :func:`numloss.sigmoid_cross_entropy_with_grad` of dask arrays: one fused kernel call per block.

    Parameters
    ----------
    logits, target, weight, pos_weight, eps, reduction, normalizer
        As :func:`sigmoid_cross_entropy` (this module's).

    Returns
    -------
    loss : dask.array.Array
        As :func:`sigmoid_cross_entropy` (this module's).
    grad : dask.array.Array
        Of the logits' shape, dtype and chunks; compute it together with
        ``loss``.

    Examples
    --------
    >>> import dask, dask.array as da, numpy as np, numloss.dask
    >>> x = da.zeros(4, chunks=2)
    >>> loss, grad = dask.compute(*numloss.dask.sigmoid_cross_entropy_with_grad(x, np.array([1.0, 0.0, 1.0, 0.0])))
    >>> grad
    array([-0.125,  0.125, -0.125,  0.125])
    """
    return _elementwise_graph(_SIGMOID, logits, target, True, reduction=reduction, normalizer=normalizer,
                              weights=dict(weight=weight, pos_weight=pos_weight), extra=dict(eps=V.eps(eps)),
                              sample_weight=sample_weight, where=where)


def sigmoid_focal_loss(logits: DaskLike, target: DaskLike, *, alpha: Real | None = 0.25, gamma: Real = 2.0,
                       reduction: Reduction = "mean", sample_weight: DaskLike | None = None,
                       where: DaskLike | None = None) -> DaskArray:
    """Lazy :func:`numloss.sigmoid_focal_loss` of dask arrays (any chunking: it is elementwise).

    "mean" divides by the logits' total element count, as in memory.  Other
    parameters and the result as :func:`sigmoid_cross_entropy` (this module's).
    """
    extra = dict(alpha=alpha, gamma=_focal._gamma(gamma))
    _focal._alpha(alpha)
    return _elementwise_graph(_SIGMOID_FOCAL, logits, target, False, reduction=reduction, extra=extra,
                              takes_normalizer=False, sample_weight=sample_weight, where=where)


def sigmoid_focal_loss_with_grad(logits: DaskLike, target: DaskLike, *, alpha: Real | None = 0.25,
                                 gamma: Real = 2.0, reduction: Reduction = "mean",
                                 sample_weight: DaskLike | None = None, where: DaskLike | None = None
                                 ) -> tuple[DaskArray, DaskArray]:
    """Lazy :func:`numloss.sigmoid_focal_loss_with_grad`: one fused kernel call per block.

    Returns ``(loss, grad)`` as :func:`sigmoid_cross_entropy_with_grad` (this module's).
    """
    extra = dict(alpha=alpha, gamma=_focal._gamma(gamma))
    _focal._alpha(alpha)
    return _elementwise_graph(_SIGMOID_FOCAL, logits, target, True, reduction=reduction, extra=extra,
                              takes_normalizer=False, sample_weight=sample_weight, where=where)


def softmax_focal_loss(logits: DaskLike, target: DaskLike, *, gamma: Real = 2.0, weight: ArrayLike | None = None,
                       ignore_index: int = -100, reduction: Reduction = "mean", sample_weight: DaskLike | None = None,
                       where: DaskLike | None = None, aux: bool = False) -> Any:
    """Lazy :func:`numloss.softmax_focal_loss` of dask arrays chunked along the batch axes.

    Classes on the last axis (rechunked into one chunk with a warning when
    split); "mean" divides by the summed ``weight[target]`` of all kept
    samples, computed first from the targets.
    """
    extra = dict(gamma=_focal._gamma(gamma))
    return _row_loss_graph("softmax_focal_loss", _SOFTMAX_FOCAL, logits, target, False, weight=weight,
                           ignore_index=ignore_index, reduction=reduction, extra=extra, prob_targets=False,
                           takes_normalizer=False, takes_axis=False, sample_weight=sample_weight,
                           where=where, aux=aux)


def softmax_focal_loss_with_grad(logits: DaskLike, target: DaskLike, *, gamma: Real = 2.0,
                                 weight: ArrayLike | None = None, ignore_index: int = -100,
                                 reduction: Reduction = "mean", sample_weight: DaskLike | None = None,
                                 where: DaskLike | None = None, aux: bool = False) -> Any:
    """Lazy :func:`numloss.softmax_focal_loss_with_grad`: one fused kernel call per block."""
    extra = dict(gamma=_focal._gamma(gamma))
    return _row_loss_graph("softmax_focal_loss_with_grad", _SOFTMAX_FOCAL, logits, target, True, weight=weight,
                           ignore_index=ignore_index, reduction=reduction, extra=extra, prob_targets=False,
                           takes_normalizer=False, takes_axis=False, sample_weight=sample_weight,
                           where=where, aux=aux)


def cosface_cross_entropy(cosine: DaskLike, target: DaskLike, *, scale: Real = 30.0, margin: Real = 0.35,
                          weight: ArrayLike | None = None, ignore_index: int = -100, label_smoothing: Real = 0.0,
                          reduction: Reduction = "mean", sample_weight: DaskLike | None = None,
                          where: DaskLike | None = None, aux: bool = False) -> Any:
    """Lazy :func:`numloss.cosface_cross_entropy` of dask cosines chunked along the batch axes."""
    return _margin_graph("cosface_cross_entropy", _COSFACE, _margin_kernels.COSFACE, cosine, target, False, scale,
                         margin, weight, ignore_index, label_smoothing, reduction, {}, sample_weight, where, aux)


def cosface_cross_entropy_with_grad(cosine: DaskLike, target: DaskLike, *, scale: Real = 30.0,
                                    margin: Real = 0.35, weight: ArrayLike | None = None, ignore_index: int = -100,
                                    label_smoothing: Real = 0.0, reduction: Reduction = "mean",
                                    sample_weight: DaskLike | None = None, where: DaskLike | None = None,
                                    aux: bool = False) -> Any:
    """Lazy :func:`numloss.cosface_cross_entropy_with_grad`: one fused kernel call per block."""
    return _margin_graph("cosface_cross_entropy_with_grad", _COSFACE, _margin_kernels.COSFACE, cosine, target, True,
                         scale, margin, weight, ignore_index, label_smoothing, reduction, {}, sample_weight, where, aux)


def arcface_cross_entropy(cosine: DaskLike, target: DaskLike, *, scale: Real = 64.0, margin: Real = 0.5,
                          easy_margin: bool = False, weight: ArrayLike | None = None, ignore_index: int = -100,
                          label_smoothing: Real = 0.0, reduction: Reduction = "mean",
                          sample_weight: DaskLike | None = None, where: DaskLike | None = None,
                          aux: bool = False) -> Any:
    """Lazy :func:`numloss.arcface_cross_entropy` of dask cosines chunked along the batch axes."""
    kind = _margin_kernels.ARCFACE_EASY if V.flag(easy_margin, "easy_margin") else _margin_kernels.ARCFACE
    return _margin_graph("arcface_cross_entropy", _ARCFACE, kind, cosine, target, False, scale, margin, weight,
                         ignore_index, label_smoothing, reduction, dict(easy_margin=easy_margin), sample_weight,
                         where, aux)


def arcface_cross_entropy_with_grad(cosine: DaskLike, target: DaskLike, *, scale: Real = 64.0, margin: Real = 0.5,
                                    easy_margin: bool = False, weight: ArrayLike | None = None,
                                    ignore_index: int = -100, label_smoothing: Real = 0.0,
                                    reduction: Reduction = "mean", sample_weight: DaskLike | None = None,
                                    where: DaskLike | None = None, aux: bool = False) -> Any:
    """Lazy :func:`numloss.arcface_cross_entropy_with_grad`: one fused kernel call per block."""
    kind = _margin_kernels.ARCFACE_EASY if V.flag(easy_margin, "easy_margin") else _margin_kernels.ARCFACE
    return _margin_graph("arcface_cross_entropy_with_grad", _ARCFACE, kind, cosine, target, True, scale, margin,
                         weight, ignore_index, label_smoothing, reduction, dict(easy_margin=easy_margin), sample_weight,
                         where, aux)
