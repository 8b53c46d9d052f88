"""numloss losses for dask arrays chunked along the batch axis (optional extra ``dask``).

The functions have the names and arguments of the in-memory ones (without
``out=``) and take :class:`dask.array.Array` logits and targets.  They build
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
import math
import warnings

import dask.array as da
import numpy as np
from dask.array import PerformanceWarning

from . import _validate as V
from . import sigmoid as _sigmoid
from . import softmax as _softmax

__all__ = [
    "sigmoid_cross_entropy",
    "sigmoid_cross_entropy_with_grad",
    "softmax_cross_entropy",
    "softmax_cross_entropy_with_grad",
]


# --------------------------------------------------------------------------- helpers run in the workers
def _call_block(fn, x, t, denom, reduction, with_grad, kwargs):
    """One call of the in-memory loss on one block; returns loss (and grad).

    For "mean", ``denom`` is the global denominator: positive -> passed as
    ``normalizer`` (the kernel then scales the gradient by it in its single
    pass); zero -> the block's own mean, which then has the same zero
    denominator (NaN loss, zero rows for ignored samples, as in memory);
    negative (negative class weights) -> the block's sum divided here.
    """
    if reduction != "mean":
        return fn(x, t, reduction=reduction, **kwargs)
    d = float(denom)
    if d > 0.0 and math.isfinite(d):
        return fn(x, t, reduction="mean", normalizer=d, **kwargs)
    if d == 0.0 or d != d:
        result = fn(x, t, reduction="mean", **kwargs)
        nan = x.dtype.type(np.nan)
        return (nan, result[1]) if with_grad else nan
    result = fn(x, t, reduction="sum", **kwargs)
    if not with_grad:
        return result / d
    loss, grad = result
    grad *= grad.dtype.type(1.0 / d)
    return loss / d, grad


def _softmax_block(x, t, denom=None, *, fn, reduction, with_grad, kwargs):
    # The loss keeps the class axis with length 1 (squeezed out by the graph
    # for "none"): dask cannot drop an axis of a block holding a tuple.
    result = _call_block(fn, x, t, denom, reduction, with_grad, kwargs)
    loss = result[0] if with_grad else result
    if reduction == "none":
        loss = np.expand_dims(loss, kwargs["axis"])
    else:
        loss = np.full((1,) * x.ndim, loss, dtype=np.float64)
    return (loss, result[1]) if with_grad else loss


def _sigmoid_block(x, t, weight, pos_weight, *, fn, reduction, with_grad, denom, kwargs):
    kwargs = dict(kwargs, weight=weight, pos_weight=pos_weight)
    result = _call_block(fn, x, t, denom, reduction, with_grad, kwargs)
    loss = result[0] if with_grad else result
    if reduction != "none":
        loss = np.full((1,) * x.ndim, loss, dtype=np.float64)
    return (loss, result[1]) if with_grad else loss


def _class_weight_sum_block(t, weight, ignore_index, num_classes):
    """Summed class weights of the kept samples of one target block (float64, shape (1, ..., 1)).

    Indices outside ``[0, C)`` are skipped here; the loss kernel reports them.
    """
    t = np.asarray(t)
    flat = t.reshape(-1)
    keep = (flat != ignore_index) & (flat >= 0) & (flat < num_classes)
    return np.full((1,) * t.ndim, weight[flat[keep]].sum(), dtype=np.float64)


def _first(pair):
    return pair[0]


def _second(pair):
    return pair[1]


# --------------------------------------------------------------------------- graph building
def _as_dask(value, name, chunks=None):
    if isinstance(value, da.Array):
        arr = value
    else:
        arr = np.asarray(value)
        arr = da.from_array(arr, chunks=chunks if chunks is not None else "auto")
    if any(math.isnan(c) for dim in arr.chunks for c in dim):
        raise ValueError(
            f"{name} has unknown chunk sizes {arr.chunks}; call {name}.compute_chunk_sizes() first"
        )
    return arr


def _check_shape(value, shape, message):
    got = tuple(getattr(value, "shape", np.shape(value)))
    if got != tuple(shape):
        raise ValueError(f"{message}; got {got}")


def _aligned(value, name, chunks):
    """``value`` (dask or array_like, of the right shape) as a dask array with ``chunks``."""
    if isinstance(value, da.Array):
        return _as_dask(value, name).rechunk(chunks)
    return _as_dask(value, name, chunks)


def _logits(value, class_axis=None):
    dtype = getattr(value, "dtype", None)
    if dtype is None:
        value = np.asarray(value)
        dtype = value.dtype
    if np.dtype(dtype) not in V.FLOAT_DTYPES:
        raise TypeError(
            f"logits has dtype {np.dtype(dtype)}; numloss computes in float32 or float64: "
            f"cast it first, e.g. logits.astype(np.float32)"
        )
    chunks = None
    if not isinstance(value, da.Array) and class_axis is not None:
        ndim = np.ndim(value)
        if ndim:
            chunks = {i: ("auto" if i != class_axis % ndim else -1) for i in range(ndim)}
    return _as_dask(value, "logits", chunks)


def _class_axis_in_one_chunk(x, axis, what):
    if len(x.chunks[axis]) <= 1:
        return x, False
    warnings.warn(
        f"{what}: the class axis {axis} of logits is split into {len(x.chunks[axis])} chunks "
        f"{x.chunks[axis]}; rechunking it into one chunk (chunk the logits along the batch axes only "
        f"to avoid this copy)",
        PerformanceWarning,
        stacklevel=4,
    )
    return x.rechunk({axis: -1}), True


def _reduce_partials(partials, reduction, dtype):
    if reduction == "none":
        return partials
    return partials.sum(dtype=np.float64).astype(dtype)


def _softmax_graph(name, logits, target, with_grad, weight, ignore_index, label_smoothing, z_loss, softcap, eps,
                   axis, reduction, normalizer):
    if isinstance(axis, (bool, np.bool_)) or not isinstance(axis, (int, np.integer)):
        raise ValueError(f"axis must be an integer; got {axis!r}")
    x = _logits(logits, class_axis=int(axis))
    if x.ndim == 0:
        raise ValueError("logits must have at least one dimension (the class axis); got a 0-d array")
    if not -x.ndim <= axis < x.ndim:
        raise ValueError(f"axis {axis} is out of bounds for logits with {x.ndim} dimensions")
    axis = int(axis) % x.ndim
    reduction = V.reduction(reduction)
    ls, z, cap, eps = V.label_smoothing(label_smoothing), V.z_loss(z_loss), V.softcap(softcap), V.eps(eps)
    V.eps_combinations(eps, ls, z, cap)
    norm = V.normalizer(normalizer)
    ignore = V.ignore_index(ignore_index)
    C = x.shape[axis]
    if C < 1:
        raise ValueError(f"logits must have at least one class along axis {axis}; got shape {x.shape}")
    w = V.class_weights(None if weight is None else np.asarray(weight), C)

    tdtype = getattr(target, "dtype", None)
    tdtype = np.asarray(target).dtype if tdtype is None else np.dtype(tdtype)
    if tdtype.kind in "iu":
        kind = "int"
        batch_shape = x.shape[:axis] + x.shape[axis + 1:]
        _check_shape(target, batch_shape, "target of class indices must have the logits' shape without the class "
                                          f"axis, {batch_shape}")
    elif tdtype.kind == "f":
        kind = "prob"
        _check_shape(target, x.shape, f"a float target (probabilities) must have the logits' shape {x.shape}")
    else:
        raise ValueError(f"target must hold integer class indices or float probabilities; got dtype {tdtype}")

    original_chunks = x.chunks
    x, rechunked = _class_axis_in_one_chunk(x, axis, name)
    batch_shape = x.shape[:axis] + x.shape[axis + 1:]
    batch_chunks = x.chunks[:axis] + x.chunks[axis + 1:]
    t = _aligned(target, "target", batch_chunks if kind == "int" else x.chunks)

    # The global denominator of "mean", known before any block of logits runs.
    denom = None
    if reduction == "mean":
        if norm is not None:
            denom = norm
        elif kind == "prob":
            denom = float(math.prod(batch_shape))
        else:
            parts = da.map_blocks(
                _class_weight_sum_block, t, w, ignore, C, dtype=np.float64,
                chunks=tuple((1,) * len(c) for c in t.chunks), meta=np.empty((0,) * t.ndim, dtype=np.float64),
            )
            denom = parts.sum(dtype=np.float64)

    fn = _softmax.softmax_cross_entropy_with_grad if with_grad else _softmax.softmax_cross_entropy
    kwargs = dict(weight=None if weight is None else w, ignore_index=ignore, label_smoothing=ls, z_loss=z,
                  softcap=None if cap == 0.0 else cap, eps=eps, axis=axis)
    block = functools.partial(_softmax_block, fn=fn, reduction=reduction, with_grad=with_grad, kwargs=kwargs)
    ind = tuple(range(x.ndim))
    tind = ind if kind == "prob" else ind[:axis] + ind[axis + 1:]
    args = [x, ind, t, tind]
    if isinstance(denom, da.Array):
        args += [denom, ()]
    elif denom is not None:
        block = functools.partial(block, denom=denom)
    loss_dtype = np.float64 if reduction != "none" else x.dtype
    loss_chunks = tuple((1,) if i == axis else (c if reduction == "none" else (1,) * len(c))
                        for i, c in enumerate(x.chunks))
    loss_meta = np.empty((0,) * x.ndim, dtype=loss_dtype)
    if with_grad:
        pairs = da.blockwise(block, ind, *args, dtype=x.dtype, meta=np.empty((0,) * x.ndim, dtype=object),
                             align_arrays=False, concatenate=True)
        partial = pairs.map_blocks(_first, dtype=loss_dtype, chunks=loss_chunks, meta=loss_meta)
        grad = pairs.map_blocks(_second, dtype=x.dtype, chunks=x.chunks, meta=np.empty((0,) * x.ndim, dtype=x.dtype))
        if rechunked:
            grad = grad.rechunk(original_chunks)
    else:
        partial = da.blockwise(block, ind, *args, dtype=loss_dtype, align_arrays=False, concatenate=True,
                               meta=loss_meta, adjust_chunks=dict(zip(ind, loss_chunks, strict=True)))
    if reduction == "none":
        partial = partial.squeeze(axis=axis)
    loss = _reduce_partials(partial, reduction, x.dtype)
    return (loss, grad) if with_grad else loss


def _sigmoid_weight(value, x, name):
    """A weight broadcastable to the logits as a dask array chunked to match them (or None)."""
    if value is None:
        return None, None
    shape = tuple(getattr(value, "shape", np.shape(value)))
    try:
        full = np.broadcast_shapes(shape, x.shape)
    except ValueError:
        full = None
    if full != x.shape:
        raise ValueError(f"{name} of shape {shape} does not broadcast to the logits' shape {x.shape}")
    offset = x.ndim - len(shape)
    chunks = tuple((1,) if n == 1 else x.chunks[offset + i] for i, n in enumerate(shape))
    w = _aligned(value, name, chunks)
    if w.dtype.kind not in "biuf":
        raise ValueError(f"{name} must be numeric; got dtype {w.dtype}")
    return w, tuple(range(offset, x.ndim))


def _sigmoid_graph(logits, target, with_grad, weight, pos_weight, eps, reduction, normalizer):
    x = _logits(logits)
    reduction = V.reduction(reduction)
    eps = V.eps(eps)
    norm = V.normalizer(normalizer)
    tdtype = getattr(target, "dtype", None)
    tdtype = np.asarray(target).dtype if tdtype is None else np.dtype(tdtype)
    if tdtype.kind not in "biuf":
        raise ValueError(f"target must be bool, integer or float; got dtype {tdtype}")
    _check_shape(target, x.shape, f"target must have the logits' shape {x.shape}")
    t = _aligned(target, "target", x.chunks)
    w, wind = _sigmoid_weight(weight, x, "weight")
    pw, pwind = _sigmoid_weight(pos_weight, x, "pos_weight")

    denom = None
    if reduction == "mean":
        denom = norm if norm is not None else float(math.prod(x.shape))
    fn = _sigmoid.sigmoid_cross_entropy_with_grad if with_grad else _sigmoid.sigmoid_cross_entropy
    block = functools.partial(_sigmoid_block, fn=fn, reduction=reduction, with_grad=with_grad, denom=denom,
                              kwargs=dict(eps=eps))
    ind = tuple(range(x.ndim))
    args = [x, ind, t, ind, w, wind, pw, pwind]
    loss_dtype = np.float64 if reduction != "none" else x.dtype
    loss_chunks = x.chunks if reduction == "none" else tuple((1,) * len(c) for c in x.chunks)
    if with_grad:
        pairs = da.blockwise(block, ind, *args, dtype=x.dtype, meta=np.empty((0,) * x.ndim, dtype=object),
                             align_arrays=False, concatenate=True)
        partial = pairs.map_blocks(_first, dtype=loss_dtype, chunks=loss_chunks,
                                   meta=np.empty((0,) * x.ndim, dtype=loss_dtype))
        grad = pairs.map_blocks(_second, dtype=x.dtype, chunks=x.chunks, meta=np.empty((0,) * x.ndim, dtype=x.dtype))
        return _reduce_partials(partial, reduction, x.dtype), grad
    partial = da.blockwise(block, ind, *args, dtype=loss_dtype, align_arrays=False, concatenate=True,
                           meta=np.empty((0,) * x.ndim, dtype=loss_dtype),
                           adjust_chunks=dict(zip(ind, loss_chunks, strict=True)))
    return _reduce_partials(partial, reduction, x.dtype)


# --------------------------------------------------------------------------- public functions
def softmax_cross_entropy(
    logits, target, *, weight=None, ignore_index=-100, label_smoothing=0.0, z_loss=0.0, softcap=None,
    eps=0.0, axis=-1, reduction="mean", normalizer=None,
):
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
                          z_loss, softcap, eps, axis, reduction, normalizer)


def softmax_cross_entropy_with_grad(
    logits, target, *, weight=None, ignore_index=-100, label_smoothing=0.0, z_loss=0.0, softcap=None,
    eps=0.0, axis=-1, reduction="mean", normalizer=None,
):
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
                          label_smoothing, z_loss, softcap, eps, axis, reduction, normalizer)


def sigmoid_cross_entropy(logits, target, *, weight=None, pos_weight=None, eps=0.0, reduction="mean",
                          normalizer=None):
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
    1.41323
    """
    return _sigmoid_graph(logits, target, False, weight, pos_weight, eps, reduction, normalizer)


def sigmoid_cross_entropy_with_grad(logits, target, *, weight=None, pos_weight=None, eps=0.0, reduction="mean",
                                    normalizer=None):
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
    return _sigmoid_graph(logits, target, True, weight, pos_weight, eps, reduction, normalizer)
