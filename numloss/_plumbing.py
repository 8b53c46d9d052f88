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

import dataclasses
import math

import numpy as np

from . import _parallel
from . import _validate as V

_FLOAT32_MAX = float(np.finfo(np.float32).max)


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
    shape: tuple
    reduction: str
    denom: float = 1.0
    inv_denom: float = 1.0


def batch(x, N, C, shape, reduction, count, normalizer=None):
    """A :class:`Batch` whose "mean" divides by ``normalizer`` if given, else ``count``."""
    if reduction == "mean":
        denom = normalizer if normalizer is not None else count
        return Batch(x, N, C, shape, reduction, denom, 1.0 / denom if denom != 0 else np.inf)
    return Batch(x, N, C, shape, reduction)


#: a read-only view of an array (never a copy): one Numba type whatever the caller's flags
readonly = V._readonly


def rows(x, N, C):
    """``x`` as a C-contiguous ``(N, C)`` array (a view when ``x`` is C-contiguous)."""
    return x.reshape(N, C) if x.flags.c_contiguous else np.ascontiguousarray(x).reshape(N, C)


def launch(kernels, x2, grad2, head, tail):
    """Call the right driver of ``kernels`` on ``x2`` (N, C): in place when ``grad2 is x2``."""
    parallel = _parallel.use_parallel(x2.shape[0] * x2.shape[1], x2.shape[0])
    if grad2 is x2 and kernels.inplace_serial is not None:
        _parallel.run(kernels.inplace_serial, kernels.inplace_parallel, parallel, x2, *head, *tail)
    else:
        _parallel.run(kernels.serial, kernels.parallel, parallel, x2, *head, grad2, *tail)


def reduce(b, losses, dtype):
    """Per-row (or per-element) float64 ``losses`` -> the requested reduction in ``dtype``.

    A float32 result whose exact value exceeds float32's range (logits near
    3e38, say) is ``inf``; that cast is not an error (no warning).  "mean"
    of an empty or all-ignored batch is NaN, as in PyTorch.
    """
    dtype = np.dtype(dtype)
    if b.reduction == "none":
        if losses.dtype == dtype:
            return losses.reshape(b.shape)
        with np.errstate(over="ignore"):
            return losses.astype(dtype).reshape(b.shape)
    total = losses.sum()
    if b.reduction == "mean":
        total = total / b.denom if b.denom != 0 else np.float64(np.nan)
    if dtype == np.float32 and abs(total) > _FLOAT32_MAX:  # rare: skip errstate's cost otherwise
        with np.errstate(over="ignore"):
            return dtype.type(total)
    return dtype.type(total)


def loss_only(b, run):
    """``run(x2, grad2)`` on the rows with no gradient (a ``(0, C)`` grad): returns its losses."""
    return run(readonly(rows(b.x, b.N, b.C)), np.empty((0, b.C), dtype=b.x.dtype))


def loss_and_grad(b, out, inputs, run):
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


def elementwise_batch(x, reduction, normalizer=None):
    """A :class:`Batch` for a loss of every element of ``x`` (any shape; the last axis as the row).

    "mean" divides by the number of elements (PyTorch), or by ``normalizer``.
    """
    shape2 = x.shape if x.ndim else (1,)
    C = shape2[-1]
    N = math.prod(shape2[:-1])
    return batch(x, N, C, x.shape, reduction, float(x.size), normalizer)


def dense_target(target, b, native=()):
    """Elementwise (sigmoid) targets of the logits' shape as a read-only ``(N, C)`` array.

    bool, integer or float, not range-checked (as PyTorch).  Targets of the
    logits' dtype (and of the ``native`` dtypes) are read as they are; any
    other dtype is converted to the logits' dtype once, so the kernels
    compile for those few target dtypes only.
    """
    t = np.asarray(target)
    if t.dtype.kind not in "biuf":
        raise ValueError(f"target must be bool, integer or float; got dtype {t.dtype}")
    if t.shape != b.x.shape:
        raise ValueError(f"target must have the logits' shape {b.x.shape}; got {t.shape}")
    keep = t.dtype == b.x.dtype or t.dtype in native
    t = np.ascontiguousarray(t) if keep else np.ascontiguousarray(t, dtype=b.x.dtype)
    return readonly(t.reshape(b.N, b.C))


def elementwise_runner(b, kernels, head):
    """``run(x2, grad2)`` for kernels ``(x, *head, [grad], elem_loss, row_loss)``.

    Returns the per-row float64 sums, or for ``reduction="none"`` the
    per-element losses in the logits' dtype.
    """

    def run(x2, grad2):
        row_loss = np.empty(b.N, dtype=np.float64)
        elem = np.empty((b.N, b.C) if b.reduction == "none" else (0, b.C), dtype=x2.dtype)
        if b.N * b.C == 0:
            row_loss[:] = 0.0
        else:
            launch(kernels, x2, grad2, head, (elem, row_loss))
        return elem if b.reduction == "none" else row_loss

    return run
