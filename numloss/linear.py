"""Fused linear + softmax cross-entropy without materialising the ``(N, V)`` logits.

The rows of ``hidden`` are processed in chunks.  For each chunk the logits
``hidden[chunk] @ weight.T (+ bias)`` go into one reused ``(chunk_size, V)``
buffer, the fused softmax kernel (:mod:`numloss._kernels.softmax`) turns that
buffer into the gradient in place with the *global* ``1 / denominator``, and
the gradient chunk is immediately consumed by the two backward products:
``d_hidden[chunk] = g @ weight`` and ``d_weight += g.T @ hidden[chunk]``.
See docs/linear.md for the memory formula and the measurements.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, cast

import numpy as np

from . import _blas, _parallel, _plumbing
from . import _validate as V
from ._kernels import linear as KL
from ._kernels import softmax as KS
from ._typing import AnyArray, ArrayLike, Float64Array, Real, Reduction
from .softmax import run_int_kernel, z_loss_rows

#: Default size of the reused logits buffer; ``chunk_size=None`` picks the rows
#: that fill about this much (see :func:`default_chunk_size`): 512 rows at
#: V = 32000 float32, a working memory of 1/11 of the materialised logits.
#: Each chunk streams all of ``weight`` through BLAS twice and ``d_weight``
#: once, but the products are compute-bound at these sizes: at 8192 x 2048 x
#: 32000, chunks of 512, 768 and 1024 rows timed the same within this
#: project's machine's noise (docs/linear.md).
DEFAULT_CHUNK_BYTES = 64 << 20


def default_chunk_size(num_rows: int, num_classes: int, itemsize: int) -> int:
    """Rows per chunk when ``chunk_size=None``.

    About :data:`DEFAULT_CHUNK_BYTES` of logits per chunk (at least 1 row),
    rounded down to a multiple of 16 rows (BLAS micro-kernel friendly) when
    that many fit, then evened out so the chunks of ``num_rows`` rows have
    equal sizes (no small ragged last chunk).
    """
    rows = max(1, DEFAULT_CHUNK_BYTES // max(1, num_classes * itemsize))
    if rows >= 16:
        rows -= rows % 16
    if num_rows <= rows:
        return max(1, num_rows)
    nchunks = -(-num_rows // rows)
    return -(-num_rows // nchunks)


def _same_float_array(value: ArrayLike, name: str, dtype: np.dtype[Any]) -> AnyArray:
    arr = np.asarray(value)
    if arr.dtype != dtype:
        raise TypeError(
            f"{name} has dtype {arr.dtype} but hidden has {dtype}; all float inputs of linear_cross_entropy "
            f"must share one dtype (float32 or float64): cast it first, e.g. {name}.astype(np.{dtype.name})"
        )
    return arr


def _chunk_size(value: object) -> int | None:
    if value is None:
        return None
    value = V._scalar(value)
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"chunk_size must be None or a positive integer; got {value!r}")
    return int(value)


_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
          "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}


def _max_memory(value: object) -> int | None:
    """``max_memory`` as a number of bytes (``None`` stays ``None``): an integer, or a string such as
    ``"256MiB"``, ``"1.5 GB"`` or ``"4096"`` (B, KB/MB/GB/TB powers of 1000, KiB/MiB/GiB/TiB of 1024)."""
    if value is None:
        return None
    value = V._scalar(value)
    if isinstance(value, str):
        text = value.strip().replace(" ", "")
        number = text.rstrip("BbKkMmGgTtIi")
        unit = text[len(number):].upper()
        try:
            if unit not in _UNITS:
                raise ValueError
            nbytes = float(number) * _UNITS[unit]
        except ValueError:
            raise ValueError(f"max_memory must be a number of bytes or a string like '256MiB' or '1GB'; "
                             f"got {value!r}") from None
    elif isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_)):
        nbytes = float(value)
    else:
        raise ValueError(f"max_memory must be a number of bytes or a string like '256MiB'; got {value!r}")
    if not (0 < nbytes < float("inf")):
        raise ValueError(f"max_memory must be a positive number of bytes; got {value!r}")
    return int(nbytes)


def chunk_rows_for_budget(budget: int, N: int, V: int, D: int, itemsize: int, want_grad: bool, gather: bool,
                          blas_accumulate: bool, copied: int, bias: bool = False, target_rows: bool = False) -> int:
    """The most rows per chunk whose working memory (docs/linear.md's formula) stays within ``budget`` bytes.

    Fixed part: the per-row float64 losses, the int64 targets and the kept-row
    mask (``17 N``), the gather indices (``8 N``) when some rows are ignored,
    the float64 bias accumulator (``8 V``) with gradients, NumPy's ufunc
    buffer for adding the bias to a chunk (``8192 s``, measured with
    tracemalloc), and the copies of a non-contiguous ``hidden`` / ``weight``
    (``copied``).  Per row of a chunk:
    the logits (``V s``), the gathered hidden row, target and loss
    (``D s + 16``) and its ``d_hidden`` row (``D s``), and without a BLAS
    accumulate another ``V s`` for the ``d_weight`` blocks, and with
    ``target_rows`` (probability targets gathered or converted per chunk)
    another ``V s`` for the chunk's targets.  With sample weights or
    ``aux`` another ``16 N`` (:func:`_prepare` adds it to ``copied``).
    Raises ``ValueError`` naming the minimum when not even one row fits.
    """
    fixed = 17 * N + copied + (8 * N if gather else 0) + (8 * V if want_grad else 0) + (8192 * itemsize if bias else 0)
    per_row = V * itemsize
    if gather:
        per_row += D * itemsize + 16 + (D * itemsize if want_grad else 0)
    if want_grad and not blas_accumulate:
        per_row += V * itemsize
    if target_rows:
        per_row += V * itemsize
    rows = (budget - fixed) // per_row
    if rows < 1:
        raise ValueError(
            f"max_memory={budget} bytes is below the working memory of one-row chunks here, "
            f"{fixed + per_row} bytes ({fixed} fixed + {per_row} per row); raise it to at least that"
        )
    return int(rows)


def _prepare(hidden: ArrayLike, weight: ArrayLike, target: ArrayLike, bias: ArrayLike | None,
             weight_classes: ArrayLike | None, ignore_index: int, label_smoothing: Real, z_loss: Real,
             softcap: Real | None, reduction: str, normalizer: Real | None, chunk_size: object,
             max_memory: object = None, sample_weight: ArrayLike | None = None, where: ArrayLike | None = None,
             aux: bool = False) -> dict[str, Any]:
    """Validate everything before any work; return what the chunk loop needs."""
    h = V.float_array(hidden, "hidden")
    if h.ndim < 1:
        raise ValueError("hidden must have at least one dimension (the feature axis); got a 0-d array")
    dtype = h.dtype
    w = _same_float_array(weight, "weight", dtype)
    D = h.shape[-1]
    if w.ndim != 2 or w.shape[1] != D:
        raise ValueError(
            f"weight must have shape (V, D) with D = hidden.shape[-1] = {D} (nn.Linear's layout); "
            f"got {w.shape}"
        )
    num_classes = w.shape[0]
    if num_classes < 1:
        raise ValueError(f"weight must have at least one row (one class); got shape {w.shape}")
    b = None
    if bias is not None:
        b = _same_float_array(bias, "bias", dtype)
        if b.shape != (num_classes,):
            raise ValueError(f"bias must have shape ({num_classes},) (one per row of weight); got {b.shape}")
        b = np.ascontiguousarray(b, dtype=V.compute_dtype(dtype))  # (float32 for half inputs: V values)
    reduction = V.reduction(reduction)
    ls = V.label_smoothing(label_smoothing)
    z = V.z_loss(z_loss)
    cap = V.softcap(softcap)
    norm = V.normalizer(normalizer)
    ignore = V.ignore_index(ignore_index)
    rows = _chunk_size(chunk_size)
    budget = _max_memory(max_memory)
    if rows is not None and budget is not None:
        raise ValueError(f"pass chunk_size or max_memory, not both; got chunk_size={chunk_size!r} and "
                         f"max_memory={max_memory!r}")
    wc = V.class_weights(weight_classes, num_classes, name="weight_classes")

    batch_shape = h.shape[:-1]
    N = math.prod(batch_shape)
    rw = _plumbing.row_weights(sample_weight, where, batch_shape)
    aux = V.flag(aux, "aux")
    t = np.asarray(target)
    if t.dtype.kind in "iu":
        if t.shape != batch_shape:
            raise ValueError(
                f"target of class indices must have hidden's shape without the feature axis, {batch_shape}; "
                f"got {t.shape}"
            )
        tflat = V.class_indices(t, batch_shape, num_classes, ignore)
        bad, count = KS.int_target_denominator(tflat, wc, ignore, num_classes, rw)
        if bad >= 0:
            V.raise_bad_index(tflat, bad, num_classes, ignore)
        probs = None
    elif V.is_float(t.dtype):
        if t.shape != batch_shape + (num_classes,):
            raise ValueError(
                f"a float target (probabilities) must have shape hidden.shape[:-1] + (V,) = "
                f"{batch_shape + (num_classes,)}; got {t.shape}"
            )
        # read chunk by chunk (converted to hidden's dtype per chunk when it differs): no (N, V) copy
        probs = t if t.ndim == 2 else t.reshape(N, num_classes)
        tflat = None
        count = float(N) if rw is _plumbing.NO_ROWS else float(rw.sum())
    else:
        raise ValueError(
            f"target must hold integer class indices (any integer dtype) or float probabilities of shape "
            f"hidden.shape[:-1] + (V,); got dtype {t.dtype}"
        )
    rows_batch = _plumbing.batch(h, N, num_classes, batch_shape, reduction, count, norm, rw, aux)

    # BLAS needs a unit stride along one axis; anything else is copied once
    # here (O(N D) / O(V D), never O(N V)) rather than per chunk by matmul.
    h2 = np.ascontiguousarray(h.reshape(N, D))
    w2 = np.ascontiguousarray(w)
    copied = (0 if np.shares_memory(h2, h) else h2.nbytes) + (0 if np.shares_memory(w2, w) else w2.nbytes)
    copied += 16 * N if (aux or rw is not _plumbing.NO_ROWS) else 0
    if V.half_kind(dtype) is not None:  # the float32 d_weight accumulator and one converted block of weight
        copied += 4 * num_classes * D + 4 * _weight_block_rows(num_classes, D) * D
    return dict(
        dtype=dtype, h=h2, w=w2, b=b, target=tflat, probs=probs, raw_target=t, wc=wc, ignore=ignore, ls=ls, z=z,
        cap=cap, batch=rows_batch, inv_denom=rows_batch.inv_denom, N=N, D=D, V=num_classes,
        batch_shape=batch_shape, chunk_size=rows, max_memory=budget, copied=copied, aux=aux,
    )


#: bytes of ``weight`` converted to float32 at a time for half inputs (one block, reused)
HALF_WEIGHT_BLOCK_BYTES = 4 << 20


def _weight_block_rows(num_classes: int, D: int) -> int:
    return max(1, min(num_classes, HALF_WEIGHT_BLOCK_BYTES // max(1, 4 * D)))


def _logits_of(hc: AnyArray, w: AnyArray, out: AnyArray, wblock: AnyArray | None) -> None:
    """``out = hc @ w.T``; for a half ``w``, one float32 block of ``wblock.shape[0]`` rows of it at a time."""
    if wblock is None:
        np.matmul(hc, w.T, out=out)
        return
    vb = wblock.shape[0]
    for s in range(0, w.shape[0], vb):
        e = min(w.shape[0], s + vb)
        wb = wblock[: e - s]
        wb[...] = w[s:e]
        np.matmul(hc, wb.T, out=out[:, s:e])


def _grad_times_weight(g: AnyArray, w: AnyArray, out: AnyArray, wblock: AnyArray | None, tmp: AnyArray | None
                       ) -> None:
    """``out = g @ w``, blockwise over the classes for a half ``w`` (``tmp`` of ``out``'s shape)."""
    if wblock is None:
        np.matmul(g, w, out=out)
        return
    vb = wblock.shape[0]
    for s in range(0, w.shape[0], vb):
        e = min(w.shape[0], s + vb)
        wb = wblock[: e - s]
        wb[...] = w[s:e]
        if s == 0:
            np.matmul(g[:, s:e], wb, out=out)
        else:
            np.matmul(g[:, s:e], wb, out=tmp)
            out += tmp


def _accumulate_weight_grad(g: AnyArray, hc: AnyArray, d_weight: AnyArray, first: bool, tmp: AnyArray | None
                            ) -> None:
    """``d_weight (+)= g.T @ hc`` without a ``(V, D)`` temporary."""
    if _blas.available(g.dtype):
        # BLAS beta = 1: the GEMM kernel updates d_weight in place, on all of BLAS's threads
        _blas.gemm_tn_accumulate(g, hc, d_weight, 0.0 if first else 1.0)
    elif first:
        np.matmul(g.T, hc, out=d_weight)
    else:
        assert tmp is not None  # (_run allocates it when BLAS is not available)
        vb = tmp.shape[0]
        for s in range(0, d_weight.shape[0], vb):
            e = min(d_weight.shape[0], s + vb)
            np.matmul(g[:, s:e].T, hc, out=tmp[: e - s])
            d_weight[s:e] += tmp[: e - s]


def _run(p: dict[str, Any], want_grad: bool
         ) -> tuple[Float64Array, AnyArray | None, AnyArray | None, Float64Array | None]:
    """The chunk loop.  Returns ``(row_loss, d_hidden, d_weight, d_bias)`` (grads None without ``want_grad``)."""
    N, D, Vn, out_dtype = p["N"], p["D"], p["V"], p["dtype"]
    # half inputs: products and kernel in float32 (hidden converted per chunk, weight per block), d_weight
    # accumulated in float32 and rounded once (by the caller)
    dtype = V.compute_dtype(out_dtype)
    half = dtype != out_dtype
    h, w, b, t, probs = p["h"], p["w"], p["b"], p["target"], p["probs"]
    rw, lse = p["batch"].row_weight, p["batch"].lse
    weighted, want_lse = rw is not _plumbing.NO_ROWS, lse is not _plumbing.NO_ROWS
    row_loss = np.zeros(N, dtype=np.float64)
    if want_lse:
        lse[:] = np.nan  # rows not computed (ignored, where=False) keep NaN
    d_hidden = d_weight = dbias_acc = None
    if want_grad:
        d_weight = np.zeros((Vn, D), dtype=dtype)
        if b is not None:
            dbias_acc = np.zeros(Vn, dtype=np.float64)

    # Ignored rows (and rows of weight 0: where=False) contribute nothing to the loss or any gradient:
    # only the kept rows are computed (gathered into a small buffer when some are skipped).
    kept = t != p["ignore"] if probs is None else np.ones(N, dtype=bool)
    if weighted:
        kept &= rw != 0.0
    n_kept = int(np.count_nonzero(kept))
    gather = n_kept < N
    # probability targets of another dtype, or of skipped rows, are copied per chunk
    target_rows = probs is not None and (gather or probs.dtype != dtype or not probs.flags.c_contiguous)
    rows = p["chunk_size"] or default_chunk_size(max(n_kept, 1), Vn, dtype.itemsize)
    if p["max_memory"] is not None:  # checked before any buffer is made
        rows = min(rows, chunk_rows_for_budget(p["max_memory"], N, Vn, D, dtype.itemsize, want_grad, gather or half,
                                               _blas.available(dtype), p["copied"], b is not None, target_rows))
        if n_kept:  # evened out as the default is (never above the budget's rows)
            rows = -(-n_kept // -(-n_kept // rows))
    idx = np.flatnonzero(kept) if gather else None
    if want_grad:
        d_hidden = np.zeros((N, D), dtype=out_dtype) if gather else np.empty((N, D), dtype=out_dtype)
    if n_kept == 0:
        return row_loss, d_hidden, d_weight, dbias_acc

    rows = min(rows, n_kept)
    buf = np.empty((rows, Vn), dtype=dtype)
    empty_grad = np.empty((0, Vn), dtype=dtype)
    if gather or half:  # gathered rows, or hidden rows converted to float32
        hbuf = np.empty((rows, D), dtype=dtype)
        dhbuf = np.empty((rows, D), dtype=dtype) if want_grad else None
    wblock = np.empty((_weight_block_rows(Vn, D), D), dtype=dtype) if half else None
    dhtmp = np.empty((rows, D), dtype=dtype) if half and want_grad else None
    if gather:
        tbuf = np.empty(rows, dtype=np.int64)
        lbuf = np.empty(rows, dtype=np.float64)
        rwbuf = np.empty(rows, dtype=np.float64) if weighted else rw
        lsebuf = np.empty(rows, dtype=np.float64) if want_lse else lse
    pbuf = np.empty((rows, Vn), dtype=dtype) if target_rows else None
    tmp = None
    if want_grad and not _blas.available(dtype):
        # fallback accumulation block: about as many bytes as the logits buffer
        tmp = np.empty((min(Vn, max(1, -(-rows * Vn // max(1, D)))), D), dtype=dtype)

    for start in range(0, n_kept, rows):
        stop = min(n_kept, start + rows)
        m = stop - start
        x = buf[:m]
        if gather:
            assert idx is not None  # (the kept rows' indices, when gathering)
            sel = idx[start:stop]
            hc = hbuf[:m]
            if half:
                hc[...] = h[sel]
            else:
                np.take(h, sel, axis=0, out=hc, mode="clip")
            lc = lbuf[:m]
            if probs is None:
                tc = tbuf[:m]
                np.take(t, sel, out=tc, mode="clip")
            else:
                assert pbuf is not None  # (gathered probability targets are copied: target_rows)
                tc = pbuf[:m]
                tc[...] = probs[sel]
            rwc = rwbuf[:m] if weighted else rw
            if weighted:
                np.take(rw, sel, out=rwc, mode="clip")
            lsec = lsebuf[:m] if want_lse else lse
        else:
            hc, lc = h[start:stop], row_loss[start:stop]
            if half:
                hbuf[:m] = hc
                hc = hbuf[:m]
            if probs is None:
                tc = t[start:stop]
            elif target_rows:
                assert pbuf is not None
                tc = pbuf[:m]
                tc[...] = probs[start:stop]
            else:
                tc = probs[start:stop]
            rwc = rw[start:stop] if weighted else rw
            lsec = lse[start:stop] if want_lse else lse
        _logits_of(hc, w, x, wblock)
        if b is not None:
            x += b
        # the gradient overwrites the logits chunk in place (a read-only view of the logits
        # for the loss alone: the kernel specialisations the softmax wrappers use)
        grad = x if want_grad else empty_grad
        xin = x if want_grad else _plumbing.readonly(x)
        if probs is None:
            run_int_kernel(xin, tc, p["wc"], p["ignore"], p["ls"], p["z"], p["cap"], 0.0, p["inv_denom"], rwc, grad,
                           lc, lsec)
        else:
            _plumbing.launch(KS.PROB, xin, grad, (_plumbing.readonly(tc), p["wc"], p["ls"], p["z"], p["cap"], 0.0,
                                                  p["inv_denom"], rwc), (lc, lsec))
        g = x
        if gather:
            row_loss[sel] = lc
            if want_lse:
                lse[sel] = lsec
        if not want_grad:
            continue
        # (the gradient buffers exist with want_grad; dhbuf when gathering or half, dhtmp when half)
        assert d_hidden is not None and d_weight is not None
        if gather:
            assert dhbuf is not None
            _grad_times_weight(g, w, dhbuf[:m], wblock, cast(AnyArray, dhtmp)[:m] if half else None)
            d_hidden[sel] = dhbuf[:m]
        elif half:
            assert dhbuf is not None and dhtmp is not None
            _grad_times_weight(g, w, dhbuf[:m], wblock, dhtmp[:m])
            d_hidden[start:stop] = dhbuf[:m]  # rounded to nearest even
        else:
            np.matmul(g, w, out=d_hidden[start:stop])
        _accumulate_weight_grad(g, hc, d_weight, start == 0, tmp)
        if b is not None:
            _parallel.run(KL.add_column_sums_serial, KL.add_column_sums_parallel,
                          _parallel.use_parallel(m * Vn, m), g, dbias_acc)
    return row_loss, d_hidden, d_weight, dbias_acc


# (Any: the loss, or ``(loss, aux)``)
def _reduce(p: dict[str, Any], row_loss: Float64Array) -> Any:
    """The reduced loss, and the :class:`~numloss.Aux` when ``aux=True``."""
    b, dtype = p["batch"], p["dtype"]
    loss = _plumbing.reduce(b, row_loss, dtype)
    if not p["aux"]:
        return loss
    z_rows = z_loss_rows(p["z"], b, p["target"], p["wc"], p["ignore"])
    return loss, _plumbing.aux_result(b, row_loss, z_rows, dtype)


def linear_cross_entropy(
    hidden: ArrayLike, weight: ArrayLike, target: ArrayLike, *, bias: ArrayLike | None = None,
    weight_classes: ArrayLike | None = None, ignore_index: int = -100, label_smoothing: Real = 0.0,
    z_loss: Real = 0.0, softcap: Real | None = None, reduction: Reduction = "mean", normalizer: Real | None = None,
    chunk_size: int | None = None, max_memory: int | str | None = None, sample_weight: ArrayLike | None = None,
    where: ArrayLike | None = None, aux: bool = False,
) -> Any:
    r"""Softmax cross-entropy of a linear layer's output, never holding all its logits.

    With logits :math:`x = h W^\top + b` for each row :math:`h` of ``hidden``,
    the loss is :func:`numloss.softmax_cross_entropy` of ``x``:

    .. math::

        \ell = -\sum_c q_c \log \mathrm{softmax}(x')_c
               + \texttt{z\_loss}\, w_y\, \mathrm{lse}(x')^2,
        \qquad x' = s \tanh(x / s) \text{ with softcap } s \text{ (else } x' = x)

    with :math:`q_c = w_y (1-\varepsilon)[c=y] + \varepsilon\, w_c / V`
    (``weight_classes`` :math:`w`, ``label_smoothing`` :math:`\varepsilon`).
    The rows are processed ``chunk_size`` at a time in one reused
    ``(chunk_size, V)`` buffer, so the extra memory is
    ``chunk_size * V * itemsize`` (plus ``O(N)``), not ``N * V * itemsize``.

    Parameters
    ----------
    hidden : array_like, float32 or float64, shape ``(..., D)``
        The inputs of the output layer (usually ``(N, D)``).
    weight : array_like, shape ``(V, D)``, the dtype of ``hidden``
        The output layer's weight in ``nn.Linear``'s layout (one row per class).
    target : array_like
        Class indices in ``[0, V)`` or ``ignore_index`` (any integer dtype),
        shape ``hidden.shape[:-1]``; or probabilities (float, e.g. a
        teacher's, for distillation) of shape ``hidden.shape[:-1] + (V,)``,
        read chunk by chunk (``ignore_index`` does not apply to them).
    bias : array_like, shape ``(V,)``, the dtype of ``hidden``, optional
        The output layer's bias.
    weight_classes : array_like, shape ``(V,)``, optional
        Per-class loss weights (PyTorch's ``weight=``).
    ignore_index : int
        Target value whose rows contribute nothing (loss 0, zero gradients).
    label_smoothing : float in [0, 1]
        PyTorch's label smoothing.
    z_loss : float >= 0
        Adds ``z_loss * lse**2`` per row (PaLM), weighted like the loss.
    softcap : float > 0 or None
        Gemma 2 logit soft-capping ``softcap * tanh(logits / softcap)``.
    reduction : {"mean", "sum", "none"}
        "mean" divides by the sum of ``weight_classes[target]`` over the kept
        rows (their count without ``weight_classes``; the number of rows for
        probability targets), computed once for the whole batch (never per
        chunk).  An empty or all-ignored batch gives
        NaN for "mean" (as PyTorch; pass ``normalizer`` for 0).
    normalizer : float > 0, optional
        Replaces the denominator of "mean" (e.g. the global token count).
    chunk_size : int > 0 or None
        Rows per chunk.  ``None`` picks about 64 MiB of logits per chunk
        (:func:`default_chunk_size`), evened out over the kept rows.
    max_memory : int or str, optional
        A budget for numloss's working memory beyond the inputs and the
        returned gradients, in bytes or as ``"256MiB"`` / ``"1GB"``: the
        chunk is the default one, or fewer rows if that would exceed the
        budget (docs/linear.md's formula, :func:`chunk_rows_for_budget`).
        Not with ``chunk_size``; a budget below one row's needs raises
        ``ValueError`` naming the minimum.
    sample_weight, where, aux
        See below.

    Returns
    -------
    loss : NumPy scalar of hidden's dtype, or an array of shape
        ``hidden.shape[:-1]`` for ``reduction="none"`` (ignored rows 0).

    Notes
    -----
    Matches ``F.cross_entropy(F.linear(hidden, weight, bias), target, ...)``
    and PyTorch 2.13's ``F.linear_cross_entropy`` (which has no ``z_loss``
    or ``softcap``).  The matrix products run on NumPy's BLAS (its own
    threads; ``numba.set_num_threads`` limits the softmax part only) in the
    inputs' dtype, as ``nn.Linear`` does.  Rows whose target is
    ``ignore_index`` are skipped entirely, so they cost no time and a
    non-finite ``hidden`` row there changes nothing (PyTorch would spread its
    NaN into ``d_weight`` through ``0 * NaN``).  Non-contiguous ``hidden`` or
    ``weight`` are copied once to a contiguous array.

    Examples
    --------
    >>> import numpy as np, numloss
    >>> hidden = np.array([[1.0, 0.0], [0.0, 1.0]])
    >>> weight = np.array([[2.0, 0.0], [0.0, 1.0], [0.0, 0.0]])
    >>> round(float(numloss.linear_cross_entropy(hidden, weight, np.array([0, 1]))), 6)
    0.395495
    """
    p = _prepare(hidden, weight, target, bias, weight_classes, ignore_index, label_smoothing, z_loss, softcap,
                 reduction, normalizer, chunk_size, max_memory, sample_weight, where, aux)
    row_loss, _, _, _ = _run(p, want_grad=False)
    return _reduce(p, row_loss)


def linear_cross_entropy_with_grad(
    hidden: ArrayLike, weight: ArrayLike, target: ArrayLike, *, bias: ArrayLike | None = None,
    weight_classes: ArrayLike | None = None, ignore_index: int = -100, label_smoothing: Real = 0.0,
    z_loss: Real = 0.0, softcap: Real | None = None, reduction: Reduction = "mean", normalizer: Real | None = None,
    chunk_size: int | None = None, max_memory: int | str | None = None, sample_weight: ArrayLike | None = None,
    where: ArrayLike | None = None, aux: bool = False,
) -> Any:
    r"""Fused linear + softmax cross-entropy and its gradients, chunk by chunk.

    The loss is :func:`linear_cross_entropy`'s.  With ``G`` the gradient of
    the loss with respect to the logits (:func:`numloss.softmax_cross_entropy_with_grad`'s,
    with the global "mean" denominator), the gradients are

    .. math::

        \frac{\partial L}{\partial H} = G W, \qquad
        \frac{\partial L}{\partial W} = G^\top H, \qquad
        \frac{\partial L}{\partial b} = \textstyle\sum_i G_{i,:}

    computed one chunk of rows at a time: ``G`` never exists as a whole.
    ``d_weight`` is accumulated in place by BLAS (``beta = 1``) when NumPy's
    OpenBLAS is reachable (see :mod:`numloss._blas`), else through a blocked
    temporary of about the chunk's size; ``d_bias`` is accumulated in float64.

    Parameters
    ----------
    hidden, weight, target, bias, weight_classes
        As :func:`linear_cross_entropy`.
    ignore_index, label_smoothing, z_loss, softcap, reduction, normalizer, chunk_size, max_memory
        As :func:`linear_cross_entropy`.
    sample_weight, where, aux
        As :func:`linear_cross_entropy`; ``aux=True`` returns ``(loss, grads, aux)``.

    Returns
    -------
    loss : as :func:`linear_cross_entropy`
    grads : tuple ``(d_hidden, d_weight, d_bias)``
        ``d_hidden`` of hidden's shape, ``d_weight`` ``(V, D)``, ``d_bias``
        ``(V,)`` (``None`` when ``bias`` is ``None``), all of hidden's dtype:
        the gradients of ``loss`` (of ``loss.sum()`` for ``reduction="none"``).
        Rows of ``d_hidden`` whose target is ``ignore_index`` are 0.

    Notes
    -----
    Matches ``F.linear_cross_entropy(...).backward()`` (and ``F.linear`` +
    ``F.cross_entropy`` + ``backward``) in the gradients of ``input``,
    ``linear_weight`` and ``linear_bias``.

    Examples
    --------
    >>> import numpy as np, numloss
    >>> hidden = np.array([[1.0, 0.0]])
    >>> weight = np.zeros((2, 2))
    >>> loss, (d_hidden, d_weight, d_bias) = numloss.linear_cross_entropy_with_grad(
    ...     hidden, weight, np.array([1]), bias=np.zeros(2))
    >>> d_weight
    array([[ 0.5,  0. ],
           [-0.5,  0. ]])
    >>> d_bias
    array([ 0.5, -0.5])
    """
    p = _prepare(hidden, weight, target, bias, weight_classes, ignore_index, label_smoothing, z_loss, softcap,
                 reduction, normalizer, chunk_size, max_memory, sample_weight, where, aux)
    row_loss, d_hidden, d_weight, dbias_acc = _run(p, want_grad=True)
    assert d_hidden is not None and d_weight is not None  # (want_grad=True)
    d_bias = dbias_acc.astype(p["dtype"]) if dbias_acc is not None else None
    d_weight = d_weight.astype(p["dtype"], copy=False)  # (half inputs: the float32 sum rounded once)
    d_hidden = d_hidden.reshape(p["batch_shape"] + (p["D"],))
    grads = (d_hidden, d_weight, d_bias)
    if p["aux"]:
        loss, aux_out = _reduce(p, row_loss)
        return loss, grads, aux_out
    return _reduce(p, row_loss), grads


linear_cross_entropy.__doc__ = _plumbing.with_row_options(linear_cross_entropy.__doc__)
