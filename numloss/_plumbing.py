"""The one path from validated arguments to a reduced loss, shared by every public wrapper.

A wrapper validates its own options, builds a :class:`Batch` (the rows, the
"mean" denominator, the shape of ``reduction="none"``), and hands a
``run(x2, grad2) -> losses`` closure that launches its family's
:class:`KernelSet` to :func:`loss_only` or :func:`loss_and_grad`.  Those two
hold, once for every loss: the ``(N, C)`` row view (a copy only for
non-contiguous input), the gradient buffer for ``out=None`` / ``out=buf`` /
``out=logits``, and the reduction with the float32 overflow guard.

Numba types a read-only array apart from a writable one, so each kernel
argument has one fixed kind: the logits (when not written) and the dense
targets and weights go in as read-only views (free: no copy), the small
per-sample and per-class arrays as writable arrays (copied in the rare
case the caller's is read-only).  Without this a read-only input (a memory
map, a broadcast, a dask block) compiled every kernel again.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, NamedTuple, cast

import numpy as np
from numpy.typing import DTypeLike, NDArray

from . import _parallel
from . import _validate as V
from ._kernels.reduce import sum_float64
from ._typing import AnyArray, ArrayLike, Float64Array, LossValue

if TYPE_CHECKING:
    from ._kernels._rows import KernelSet

#: ``run(x2, grad2) -> losses``: launches a family's kernels on the ``(N, C)`` rows (see the module docstring)
Runner = Callable[[AnyArray, AnyArray], AnyArray]

_FLOAT32_MAX = float(np.finfo(np.float32).max)


#: an empty float64 array: the kernels' "no sample weights" / "no log-sum-exp wanted"
#: (never written: an empty array has nothing to write)
NO_ROWS: Float64Array = np.empty(0, dtype=np.float64)


@dataclasses.dataclass(slots=True)
class Batch:
    """A loss's input seen as ``(N, C)`` rows, and how its losses are reduced.

    ``x`` is the validated input (any strides, the class axis last);
    ``shape`` the shape of ``reduction="none"``'s result; ``denom`` the
    "mean" denominator (1 for "sum" and "none") and ``inv_denom`` its
    inverse (``inf`` for a zero denominator: the gradient is 0 there anyway).
    """

    x: np.ndarray
    N: int
    C: int
    shape: tuple[int, ...]
    reduction: str
    denom: float = 1.0
    inv_denom: float = 1.0
    row_weight: Float64Array = dataclasses.field(default_factory=lambda: NO_ROWS)  # (N,) sample weights, or NO_ROWS
    lse: Float64Array = dataclasses.field(default_factory=lambda: NO_ROWS)  # (N,) each row's log-sum-exp, or NO_ROWS



def batch(x: AnyArray, N: int, C: int, shape: tuple[int, ...], reduction: str, count: float,
          normalizer: float | None = None, row_weight: Float64Array = NO_ROWS, aux: bool = False) -> Batch:
    """A :class:`Batch` whose "mean" divides by ``normalizer`` if given, else ``count``.

    ``row_weight`` (from :func:`row_weights`) goes to the kernels; ``aux``
    allocates the per-row log-sum-exp they fill.
    """
    lse = np.empty(N, dtype=np.float64) if aux else NO_ROWS
    if reduction == "mean":
        denom = normalizer if normalizer is not None else count
        return Batch(x, N, C, shape, reduction, denom, 1.0 / denom if denom != 0 else np.inf, row_weight, lse)
    return Batch(x, N, C, shape, reduction, row_weight=row_weight, lse=lse)


# ------------------------------------------------------------ sample weights, row masks, auxiliary outputs


class Aux(NamedTuple):
    """What ``aux=True`` returns beside the loss, from the same pass over the logits.

    ``lse``: each sample's log-sum-exp of its logits (soft-capped when
    ``softcap`` is set; with CosFace/ArcFace, of the scaled margin logits),
    in the batch shape and the logits' dtype (float32 for half logits);
    NaN for a sample not read (``ignore_index``, ``where=False``, sample
    weight 0).
    ``z_loss``: the z-loss term alone, and ``cross_entropy`` the loss
    without it, each reduced as the loss is (they sum to it up to
    rounding; ``z_loss`` is 0 for the losses without a z-loss).
    """

    lse: np.ndarray
    cross_entropy: np.floating | np.ndarray
    z_loss: np.floating | np.ndarray


#: the parameters :func:`row_weights` and ``aux`` add to a loss's docstring
ROW_OPTIONS_DOC = """
    sample_weight : array_like, optional
        One weight >= 0 per sample (broadcast to the batch shape; any real
        dtype): multiplies the sample's loss and gradient.  "mean" divides by
        the summed products of sample and class weights over the kept
        samples (Keras divides by the sample count: pass ``normalizer=N``
        where the loss takes one).  A weight of 0 skips the sample, as
        ``where=False`` does.
    where : array_like of bool, optional
        ``False`` skips a sample as ``ignore_index`` does: it is not read (a
        NaN there gives 0), its loss and gradient are 0, and it is not
        counted in "mean" (optax's ``where``).
    aux : bool
        Also return an :class:`numloss.Aux` ``(lse, cross_entropy, z_loss)``
        from the same pass: ``(loss, aux)``, or ``(loss, grad, aux)`` from
        the ``_with_grad`` form."""


def with_row_options(doc: str | None) -> str | None:
    """``doc`` with its ``sample_weight, where, aux`` placeholder entry replaced by :data:`ROW_OPTIONS_DOC`."""
    marker = "    sample_weight, where, aux\n        See below.\n"
    if doc is None:  # python -OO
        return doc
    return doc.replace(marker, ROW_OPTIONS_DOC.lstrip("\n") + "\n")


def _sample_weight_array(sample_weight: ArrayLike, shape: tuple[int, ...]) -> Float64Array:
    """``sample_weight`` broadcast to ``shape`` (float64, read-only view); ValueError for bad dtypes or values."""
    sw = np.asarray(sample_weight)
    if not V.is_real(sw.dtype):
        raise ValueError(f"sample_weight must hold real numbers; got dtype {sw.dtype}")
    try:
        sw = np.broadcast_to(sw, shape)
    except ValueError:
        raise ValueError(f"sample_weight of shape {sw.shape} does not broadcast to {tuple(shape)}") from None
    sw = sw.astype(np.float64, copy=False)
    bad = ~(sw >= 0.0) | (sw == np.inf)
    if bad.any():
        pos = tuple(int(i) for i in np.unravel_index(int(np.argmax(bad)), shape)) if len(shape) else ()
        raise ValueError(f"sample_weight must be finite and >= 0; got {float(sw[pos])!r} at position {pos}")
    return sw


def _where_array(where: ArrayLike, shape: tuple[int, ...]) -> NDArray[np.bool_]:
    """``where`` broadcast to ``shape`` (bool); ValueError for a non-bool dtype or a shape that does not fit."""
    w = np.asarray(where)
    if w.dtype != np.bool_:
        raise ValueError(f"where must be a bool array (True: use the sample); got dtype {w.dtype}")
    try:
        return np.broadcast_to(w, shape)
    except ValueError:
        raise ValueError(f"where of shape {w.shape} does not broadcast to {tuple(shape)}") from None


def row_weights(sample_weight: ArrayLike | None, where: ArrayLike | None, batch_shape: tuple[int, ...]
                ) -> Float64Array:
    """The kernels' per-row weights: ``sample_weight * where`` as a flat float64 array, or :data:`NO_ROWS`.

    Both broadcast to ``batch_shape`` (the logits' shape without the class
    axis).  A row of weight 0 is skipped: not read, loss 0, gradient 0, and
    not counted in "mean".
    """
    if sample_weight is None and where is None:
        return NO_ROWS
    shape = tuple(batch_shape)
    rw = np.ones(shape, dtype=np.float64) if sample_weight is None else np.array(
        _sample_weight_array(sample_weight, shape), dtype=np.float64)
    if where is not None:
        rw[~_where_array(where, shape)] = 0.0
    return rw.reshape(-1)


def elementwise_weights(sample_weight: ArrayLike | None, where: ArrayLike | None, shape: tuple[int, ...]
                        ) -> tuple[Float64Array, Float64Array | None]:
    """Sigmoid losses: ``(row weights or NO_ROWS, element weights (N, C) float64 or None)``.

    An array of the batch shape ``shape[:-1]`` holds one value per row (this
    reading wins when the batch shape also broadcasts against the last axis,
    as ``(N,)`` does for ``N == C``); any other shape broadcasts to the
    logits' ``shape`` by NumPy's rules, one value per element, and is taken
    per row again when it is constant along the last axis (``(N, 1)``).
    """
    if sample_weight is None and where is None:
        return NO_ROWS, None
    shape = tuple(shape) if len(shape) else (1,)
    batch_shape = shape[:-1]
    per_row = all(a is None or np.shape(a) == batch_shape for a in (sample_weight, where))
    if per_row:
        return row_weights(sample_weight, where, batch_shape), None
    sw = None if sample_weight is None else _sample_weight_array(sample_weight, shape)
    wh = None if where is None else _where_array(where, shape)
    if all(a is None or a.strides[-1] == 0 or shape[-1] == 1 for a in (sw, wh)):
        return row_weights(None if sw is None else sw[..., 0], None if wh is None else wh[..., 0], batch_shape), None
    ew = np.ones(shape, dtype=np.float64) if sw is None else np.array(sw, dtype=np.float64)
    if wh is not None:
        ew[~wh] = 0.0
    return NO_ROWS, ew.reshape(-1, shape[-1])


def aux_result(b: Batch, row_loss: Float64Array, z_rows: Float64Array | None, dtype: DTypeLike) -> Aux:
    """:class:`Aux` from the filled ``b.lse``, the per-row losses and the per-row z-loss terms (float64)."""
    lse = b.lse.astype(V.compute_dtype(np.dtype(dtype))).reshape(b.shape)
    if z_rows is None:
        z_rows = np.zeros_like(row_loss)
    return Aux(lse, reduce(b, row_loss - z_rows, dtype), reduce(b, z_rows, dtype))


#: a read-only view of an array (never a copy): one Numba type whatever the caller's flags
readonly = V._readonly


def rows(x: AnyArray, N: int, C: int) -> AnyArray:
    """``x`` as a C-contiguous ``(N, C)`` array (a view when ``x`` is C-contiguous)."""
    return x.reshape(N, C) if x.flags.c_contiguous else np.ascontiguousarray(x).reshape(N, C)


def launch(kernels: KernelSet, x2: AnyArray, grad2: AnyArray, head: tuple[object, ...], tail: tuple[object, ...]
           ) -> None:
    """Call the right driver of ``kernels`` on ``x2`` (N, C): in place when ``grad2 is x2``.

    Half-precision ``x2`` (float16, bfloat16) goes to the family's half
    drivers as its uint16 bits, with the gradient's bits (or a float32
    gradient as it is).
    """
    parallel = _parallel.use_parallel(x2.shape[0] * x2.shape[1], x2.shape[0])
    kind = V.half_kind(x2.dtype)
    if kind is not None:
        xh = readonly(x2.view(np.uint16))
        gh = grad2 if grad2.dtype == np.float32 else grad2.view(np.uint16)
        _parallel.run(kernels.half.serial, kernels.half.parallel, parallel, xh, kind, *head, gh, *tail)
    elif grad2 is x2 and kernels.inplace_serial is not None:
        _parallel.run(kernels.inplace_serial, kernels.inplace_parallel, parallel, x2, *head, *tail)
    else:
        _parallel.run(kernels.serial, kernels.parallel, parallel, x2, *head, grad2, *tail)


def reduce(b: Batch, losses: AnyArray, dtype: DTypeLike) -> LossValue:
    """Per-row (or per-element) float64 ``losses`` -> the requested reduction in ``dtype``.

    A float32 result whose exact value exceeds float32's range (logits near
    3e38, say) is ``inf``; that cast is not an error (no warning).  "mean"
    of an empty or all-ignored batch is NaN, as in PyTorch.
    """
    dtype = V.compute_dtype(np.dtype(dtype))
    if b.reduction == "none":
        if losses.dtype == dtype:
            return losses.reshape(b.shape)
        with np.errstate(over="ignore"):
            return losses.astype(dtype).reshape(b.shape)
    total = sum_float64(losses.reshape(-1))
    if b.reduction == "mean":
        total = total / b.denom if b.denom != 0 else np.float64(np.nan)
    # (a NumPy scalar of dtype, a float type: dtype.type is typed as any type)
    if dtype == np.float32 and abs(total) > _FLOAT32_MAX:  # rare: skip errstate's cost otherwise
        with np.errstate(over="ignore"):
            return cast(np.floating, dtype.type(total))
    return cast(np.floating, dtype.type(total))


def loss_only(b: Batch, run: Runner) -> AnyArray:
    """``run(x2, grad2)`` on the rows with no gradient (a ``(0, C)`` grad): returns its losses."""
    return run(readonly(rows(b.x, b.N, b.C)), np.empty((0, b.C), dtype=b.x.dtype))


def loss_and_grad(b: Batch, out: AnyArray | None, inputs: Iterable[tuple[str, object]], run: Runner
                  ) -> tuple[AnyArray, AnyArray]:
    """``(losses, grad)``: ``run(x2, grad2)`` writes the gradient into ``out``, a new array, or the logits.

    ``inputs`` are ``(name, array)`` pairs that ``out`` must not overlap
    (unless ``out`` is the logits themselves: the in-place form).
    Non-contiguous logits are copied into the gradient buffer, which the
    kernel then overwrites in place: no second ``(N, C)`` array.
    """
    x, N, C = b.x, b.N, b.C
    if out is not None:
        V.out_array(out, x, inputs)
        grad = out
    else:
        grad = np.empty(x.shape, dtype=x.dtype)
    grad2 = grad.reshape(N, C)
    if grad is x:
        losses = run(grad2, grad2)
    elif x.flags.c_contiguous:
        losses = run(readonly(x.reshape(N, C)), grad2)
    else:
        grad[...] = x
        losses = run(grad2, grad2)
    return losses, grad


# ------------------------------------------------------------ elementwise losses (sigmoid family)


#: the rows of an elementwise loss are regrouped up to this many elements each (:func:`merged_rows`)
MERGED_ROW_LENGTH = 512


def merged_rows(b: Batch) -> Batch:
    """``b`` with ``k`` consecutive rows taken as one, for an elementwise loss whose element does not depend
    on its column (no per-class weights) and with no per-row weights; ``b`` itself when ``k`` would be 1.

    ``k`` is the largest power of two that divides ``N`` with ``k C <= 512``
    (so every batch of a power-of-two size regroups).  The rows are views of
    the same C-contiguous memory and each element is computed by the same
    formula (an element that fell in a short row's scalar tail may now be in
    a vector body, which can round differently in the last place), and the
    loss's sum runs in another order.  Short rows cost a row's set-up and
    a vector loop's scalar tail every C elements: sigmoid CE at 65536x10,
    single thread, 4.5 ms as (65536, 10) rows, 0.92 ms as (1280, 512).
    """
    if b.row_weight is not NO_ROWS or b.N < 2 or b.C < 1 or 2 * b.C > MERGED_ROW_LENGTH:
        return b
    k = min(b.N & -b.N, 1 << ((MERGED_ROW_LENGTH // b.C).bit_length() - 1))
    if k < 2:
        return b
    return Batch(b.x, b.N // k, b.C * k, b.shape, b.reduction, b.denom, b.inv_denom, b.row_weight, b.lse)


def elementwise_batch(x: AnyArray, reduction: str, normalizer: float | None = None,
                      sample_weight: ArrayLike | None = None, where: ArrayLike | None = None
                      ) -> tuple[Batch, Float64Array | None]:
    """``(batch, element weights or None)`` for a loss of every element of ``x`` (any shape; the last axis as
    the row).

    "mean" divides by the number of elements (PyTorch), or by ``normalizer``;
    with sample weights (:func:`elementwise_weights`), by their sum over the
    elements.  Per-row weights go to the kernels (``batch.row_weight``); per-element
    ones are returned, for :func:`elementwise_runner`.
    """
    shape2 = x.shape if x.ndim else (1,)
    C = shape2[-1]
    N = math.prod(shape2[:-1])
    rw, ew = elementwise_weights(sample_weight, where, x.shape)
    if ew is not None:
        count = float(ew.sum())
    elif rw is not NO_ROWS:
        count = float(rw.sum()) * C
    else:
        count = float(x.size)
    return batch(x, N, C, x.shape, reduction, count, normalizer, rw), ew


def dense_target(target: ArrayLike, b: Batch, native: tuple[np.dtype[Any], ...] = ()) -> AnyArray:
    """Elementwise (sigmoid) targets of the logits' shape as a read-only ``(N, C)`` array.

    bool, integer or float, not range-checked (as PyTorch).  Targets of the
    logits' dtype (and of the ``native`` dtypes) are read as they are; any
    other dtype is converted to the logits' dtype once, so the kernels
    compile for those few target dtypes only.
    """
    t = np.asarray(target)
    if not V.is_real(t.dtype):
        raise ValueError(f"target must be bool, integer or float; got dtype {t.dtype}")
    if t.shape != b.x.shape:
        raise ValueError(f"target must have the logits' shape {b.x.shape}; got {t.shape}")
    return readonly(half_or_compute(t, b.x.dtype, native).reshape(b.N, b.C))


def half_or_compute(t: AnyArray, logits_dtype: np.dtype[Any], native: tuple[np.dtype[Any], ...] = ()) -> AnyArray:
    """Dense targets as the kernels read them, C-contiguous: in the logits' compute dtype (a copy only for
    another dtype) or one of ``native``; targets in half logits' own format as their uint16 bits (the half
    drivers convert them a few rows at a time, like the logits)."""
    if V.half_kind(logits_dtype) is not None and t.dtype == logits_dtype:
        return np.ascontiguousarray(t).view(np.uint16)
    dtype = V.compute_dtype(logits_dtype)
    keep = t.dtype == dtype or t.dtype in native
    return np.ascontiguousarray(t) if keep else np.ascontiguousarray(t, dtype=dtype)


def elementwise_runner(b: Batch, kernels: KernelSet, head: tuple[object, ...], elem_weight: Float64Array | None = None
                       ) -> Runner:
    """``run(x2, grad2)`` for kernels ``(x, *head, [grad], elem_loss, row_loss)``.

    Returns the per-row float64 sums, or for ``reduction="none"`` the
    per-element losses in the logits' dtype.  ``elem_weight`` ``(N, C)``
    float64 (per-element sample weights, 0 where ``where`` is False)
    multiplies the kernel's element losses and gradient afterwards: one more
    pass over each, and an element of weight 0 gives exactly 0 (NaN logit or
    not).  Per-row weights cost nothing: the kernels take them.
    """

    def run(x2: AnyArray, grad2: AnyArray) -> AnyArray:
        row_loss = np.empty(b.N, dtype=np.float64)
        want_elem = b.reduction == "none" or elem_weight is not None
        dtype = V.compute_dtype(x2.dtype)
        elem = np.empty((b.N, b.C) if want_elem else (0, b.C), dtype=dtype)
        if b.N * b.C == 0:
            row_loss[:] = 0.0
        else:
            launch(kernels, x2, grad2, head, (elem, row_loss))
        if elem_weight is not None:
            skip = elem_weight == 0.0
            with np.errstate(invalid="ignore", over="ignore"):
                weighted = elem * elem_weight
                weighted[skip] = 0.0
                row_loss = weighted.sum(axis=1)
                if b.reduction == "none":
                    elem = weighted.astype(dtype)
                if grad2.shape[0] == b.N and b.N:
                    np.multiply(grad2, elem_weight, out=grad2, casting="unsafe")
                    grad2[skip] = 0.0
        return elem if b.reduction == "none" else row_loss

    return run
