"""Fused sigmoid (binary) cross-entropy kernels: loss and gradient per element.

Shapes: ``x`` ``(N, C)`` C-contiguous float32/float64; ``target`` ``(N, C)``
of any real or bool dtype; ``weight`` ``(Rw, Cw)`` and ``pos_weight``
``(Rp, Cp)`` in the logits' dtype with ``R in {1, N}`` and ``C in {1, C}``
(broadcast inside the loop); ``grad`` and ``elem_loss`` ``(N, C)`` or
``(0, C)`` when not wanted; ``row_loss`` ``(N,)`` float64.

Per element, with ``sp(x) = log(1 + e^x) = max(x, 0) + log1p(e^{-|x|})``,
``pw`` the positive weight and ``w`` the weight (PyTorch's
``binary_cross_entropy_with_logits``):

    loss = w (pw t sp(-x) + (1 - t) sp(x))
    grad = w (sigma(x) (1 - t) - sigma(-x) pw t) * inv_denom

A term whose coefficient is 0 is skipped (``t = 0`` with ``x = -inf`` is a
loss of 0, not ``0 * inf``), and a ``+inf`` or NaN logit gives NaN for the
loss and the gradient.  ``row_weight`` (empty, or one sample weight per
row) scales a row's losses and gradient; 0 skips the row unread.  With ``eps > 0`` (the seed's clipped mode)
``log sigma`` and ``log(1 - sigma)`` are clipped to ``[log eps,
log(1 - eps)]`` and ``sigma`` to ``[eps, 1 - eps]`` in the gradient.
"""

import math

import numpy as np
from numba import prange
from numpy.typing import NDArray

from .._typing import AnyArray, Float64Array, FloatScalar, IntScalar
from ._jit import jit, jit_inline, jit_parallel
from ._math import cast_like, exp_nonpositive, log1p_unit, maxnum, minnum, rescale_floor, select, wide_vectors
from ._rows import (
    HalfKernels,
    KernelSet,
    chunk_bounds,
    float32_rows_to_half,
    gradient_array,
    half_rows_to_float32,
    half_sub_rows,
    half_tasks,
    row_chunks,
    row_sum,
    rows_of,
    sample_weight_of,
    scale_row,
    scratch_rows,
    skip_elements,
    target_rows,
)
from .softmax import SUM_BLOCK


@jit_inline
def _softplus_pair(v: FloatScalar, zero: FloatScalar,
                   one: FloatScalar) -> tuple[FloatScalar, FloatScalar, FloatScalar, FloatScalar]:
    """``(log(1 + e^v), log(1 + e^-v), sigmoid(v), sigmoid(-v))`` from one exponential.

    ``sigmoid(-v)`` is formed directly (not as ``1 - sigmoid(v)``), so the
    gradient ``sigmoid(v) - 1`` of a positive target keeps its relative
    accuracy where ``sigmoid(v)`` rounds to 1.
    """
    a = v if v >= zero else -v
    e = exp_nonpositive(-a)
    l1p = log1p_unit(e)
    inv1pe = one / (one + e)
    sp_pos = (v if v > zero else zero) + l1p
    sp_neg = (-v if v < zero else zero) + l1p
    small = e * inv1pe
    sig = inv1pe if v >= zero else small
    sig_neg = small if v >= zero else inv1pe
    return sp_pos, sp_neg, sig, sig_neg


@jit_inline
def _sigmoid_ce_element(v: FloatScalar, tj: FloatScalar, w: FloatScalar, pw: FloatScalar, zero: FloatScalar,
                        one: FloatScalar, invd: FloatScalar, epst: FloatScalar, hi_p: FloatScalar, log_lo: FloatScalar,
                        log_hi: FloatScalar, floor: FloatScalar, plain: bool) -> tuple[FloatScalar, FloatScalar]:
    """``(loss, grad)`` of one element (see the module docstring).

    ``plain`` (a constant at every call site, so LLVM drops the other
    branch): no weights and ``eps = 0``, the common case, without the
    multiplications by unit weights and the no-op clamps (measured 15-20 %
    of the loop's time).  ``floor`` is ``_math.rescale_floor(invd)``: a
    ``sigma(x) - t`` below it gives a gradient of 0, not a subnormal product.
    """
    sp_pos, sp_neg, sig, sig_neg = _softplus_pair(v, zero, one)
    # sigma(x) - t as sigma(x) (1 - t) - sigma(-x) t: no cancellation for hard targets
    if plain:
        term_pos = select(tj != zero, tj * sp_neg, zero)
        term_neg = select(tj != one, (one - tj) * sp_pos, zero)
        lj = term_pos + term_neg
        d = sig * (one - tj) - sig_neg * tj
        gj = select(abs(d) < floor, zero, d) * invd
    else:
        pt = pw * tj
        sp_neg = -minnum(maxnum(-sp_neg, log_lo), log_hi)
        sp_pos = -minnum(maxnum(-sp_pos, log_lo), log_hi)
        sig = minnum(maxnum(sig, epst), hi_p)
        sig_neg = minnum(maxnum(sig_neg, epst), hi_p)  # 1 - clip(sigma) = clip(1 - sigma)
        term_pos = select(tj != zero, pt * sp_neg, zero)
        term_neg = select(tj != one, (one - tj) * sp_pos, zero)
        lj = w * (term_pos + term_neg)
        d = sig * (one - tj) - sig_neg * pt
        gj = w * select(abs(d) < floor, zero, d) * invd
    bad = not (v < np.inf)  # NaN or +inf logit: NaN loss and gradient
    return select(bad, v - v, lj), select(bad, v - v, gj)


@jit_inline
def _sigmoid_ce_row_blocks(x: AnyArray, g: AnyArray, i: IntScalar, want_grad: bool, target: AnyArray, weight: AnyArray,
                           pos_weight: AnyArray, wi: IntScalar, pi: IntScalar, eps: float, invd: FloatScalar,
                           el: AnyArray, ei: IntScalar, plain: bool) -> float:
    """Loss (float64 sum) of row ``i``, with the element of ``plain`` kind."""
    x0 = x[i, 0]
    zero = cast_like(0.0, x0)
    one = cast_like(1.0, x0)
    # The seed's clipping (eps > 0) as bounds that are no-ops for eps = 0:
    # log-probabilities in [log eps, log(1 - eps)], probabilities in
    # [eps, 1 - eps].  No branch in the loop; NaN is restored by ``bad``.
    epst = cast_like(eps, x0)
    hi_p = one - epst
    log_lo = cast_like(math.log(eps) if eps > 0.0 else -np.inf, x0)
    log_hi = cast_like(math.log1p(-eps), x0)
    floor = rescale_floor(invd)  # (no subnormal products: see _math.rescale_floor)
    total = 0.0
    C = x.shape[1]
    # Losses are summed in the row dtype over blocks of SUM_BLOCK elements
    # (8 or 16 float32 lanes), the block sums in float64.  Unsigned class indices:
    # no wraparound selects, so the in-place loops vectorise too.  One loop
    # with and one without the gradient: a store under a condition inside the
    # loop keeps LLVM from vectorising it (measured: 6x slower).  The element
    # losses are always stored, to row ``ei`` of ``el``: the output row for
    # reduction="none", else a one-row scratch (two loops instead of four:
    # about half the row function's compile time, for one store per element
    # into L1), and summed from there by a loop of their own.  Summed in the
    # loops, the sum depended on where the arrays were for short rows (see
    # _rows.fused_sums), and for long rows the loss-only loop added in another
    # order than the one with the gradient (measured: last-bit differences at
    # 600 float32 and 280 float64 elements); the loop of its own costs 3-7 %
    # at 4096 x 1000 float32 and up to 25 % at 65536 x 80 in place (rows of
    # 320 elements after merging), single thread.  Tried: one loop that also
    # writes a loss-only call's gradient to a scratch row (in place back to
    # the fused speed, but out of place 20 % and loss-only 40 % slower).
    for j0 in range(0, C, SUM_BLOCK):
        lo, hi = np.uint64(j0), np.uint64(min(j0 + SUM_BLOCK, C))
        if want_grad:
            for j in range(lo, hi):
                lj, gj = _sigmoid_ce_element(x[i, j], cast_like(target[i, j], x0), weight[wi, j], pos_weight[pi, j],
                                             zero, one, invd, epst, hi_p, log_lo, log_hi, floor, plain)
                el[ei, j] = lj
                g[i, j] = gj
        else:
            for j in range(lo, hi):
                lj, gj = _sigmoid_ce_element(x[i, j], cast_like(target[i, j], x0), weight[wi, j], pos_weight[pi, j],
                                             zero, one, invd, epst, hi_p, log_lo, log_hi, floor, plain)
                el[ei, j] = lj
        total += row_sum(el, ei, lo, hi, zero)
    return total


@jit_inline
def _sigmoid_ce_row(x: AnyArray, g: AnyArray, i: IntScalar, want_grad: bool, target: AnyArray, weight: AnyArray,
                    pos_weight: AnyArray, eps: float, inv_denom: float, el: AnyArray, ei: IntScalar,
                    plain: bool) -> float:
    """Loss (float64 sum) of row ``i``; writes ``g[i]`` and ``el[i]`` when wanted.

    ``weight`` and ``pos_weight`` are ``(1, C)`` or ``(N, C)``; ``plain``
    says they are all ones and ``eps`` is 0.
    """
    wi = min(np.int64(i), weight.shape[0] - 1)  # row 0 or row i
    pi = min(np.int64(i), pos_weight.shape[0] - 1)
    invd = cast_like(inv_denom, x[i, 0])
    if plain:
        return _sigmoid_ce_row_blocks(x, g, i, want_grad, target, weight, pos_weight, wi, pi, eps, invd,
                                      el, ei, True)
    return _sigmoid_ce_row_blocks(x, g, i, want_grad, target, weight, pos_weight, wi, pi, eps, invd,
                                  el, ei, False)


# The row code is compiled in two row functions (unit weights and eps = 0:
# the plain element without no-op multiplications and clamps; anything else:
# the general element), each for the out-of-place form (``g_or_none`` an
# array, or ``(0, C)`` for no gradient) and the in-place form (``None``); the
# eight drivers below only call them (see ``_rows.py``).  The wrappers use the
# plain kernels for targets of the logits' dtype only, so those compile for
# two signatures.  One runtime flag in one row function would compile both
# elements into it, for every target dtype (measured: 2.6x the compile time).


@jit
def _general_rows(x: AnyArray, g_or_none: AnyArray | None, lo: IntScalar, hi: IntScalar, want_grad: bool,
                  target: AnyArray, weight: AnyArray, pos_weight: AnyArray, eps: float, inv_denom: float,
                  row_weight: Float64Array, elem_loss: AnyArray, row_loss: Float64Array) -> None:
    wide_vectors()
    g = gradient_array(x, g_or_none)
    want_elem = elem_loss.shape[0] == x.shape[0]
    el = elem_loss if want_elem else np.empty((1, x.shape[1]), dtype=elem_loss.dtype)
    for i in range(lo, hi):
        rw = sample_weight_of(row_weight, i)
        if rw == 0.0:  # a skipped row: not read
            row_loss[i] = 0.0
            skip_elements(g, el, i, i, want_grad, want_elem)
            continue
        row_loss[i] = rw * _sigmoid_ce_row(x, g, i, want_grad, target, weight, pos_weight, eps, inv_denom * rw,
                                           el, i if want_elem else 0, False)
        if want_elem and rw != 1.0:
            scale_row(el, i, rw)


@jit
def _plain_rows(x: AnyArray, g_or_none: AnyArray | None, lo: IntScalar, hi: IntScalar, want_grad: bool,
                target: AnyArray, weight: AnyArray, pos_weight: AnyArray, eps: float, inv_denom: float,
                row_weight: Float64Array, elem_loss: AnyArray, row_loss: Float64Array) -> None:
    wide_vectors()
    g = gradient_array(x, g_or_none)
    want_elem = elem_loss.shape[0] == x.shape[0]
    el = elem_loss if want_elem else np.empty((1, x.shape[1]), dtype=elem_loss.dtype)
    for i in range(lo, hi):
        rw = sample_weight_of(row_weight, i)
        if rw == 0.0:  # a skipped row: not read
            row_loss[i] = 0.0
            skip_elements(g, el, i, i, want_grad, want_elem)
            continue
        row_loss[i] = rw * _sigmoid_ce_row(x, g, i, want_grad, target, weight, pos_weight, eps, inv_denom * rw,
                                           el, i if want_elem else 0, True)
        if want_elem and rw != 1.0:
            scale_row(el, i, rw)


@jit
def sigmoid_ce_serial(x: AnyArray, target: AnyArray, weight: AnyArray, pos_weight: AnyArray, eps: float,
                      inv_denom: float, row_weight: Float64Array, grad: AnyArray, elem_loss: AnyArray,
                      row_loss: Float64Array) -> None:
    _general_rows(x, grad, np.int64(0), np.int64(x.shape[0]), grad.shape[0] == x.shape[0], target, weight,
                  pos_weight, eps, inv_denom, row_weight, elem_loss, row_loss)


@jit_parallel
def sigmoid_ce_parallel(x: AnyArray, target: AnyArray, weight: AnyArray, pos_weight: AnyArray, eps: float,
                        inv_denom: float, row_weight: Float64Array, grad: AnyArray, elem_loss: AnyArray,
                        row_loss: Float64Array) -> None:
    want_grad = grad.shape[0] == x.shape[0]
    n, rows = row_chunks(x.shape[0], x.shape[1])
    for k in prange(n):
        lo, hi = chunk_bounds(k, rows, x.shape[0])
        _general_rows(x, grad, lo, hi, want_grad, target, weight, pos_weight, eps, inv_denom, row_weight, elem_loss,
                      row_loss)


@jit
def sigmoid_ce_inplace_serial(x: AnyArray, target: AnyArray, weight: AnyArray, pos_weight: AnyArray, eps: float,
                              inv_denom: float, row_weight: Float64Array, elem_loss: AnyArray,
                              row_loss: Float64Array) -> None:
    _general_rows(x, None, np.int64(0), np.int64(x.shape[0]), True, target, weight, pos_weight, eps, inv_denom,
                  row_weight, elem_loss, row_loss)


@jit_parallel
def sigmoid_ce_inplace_parallel(x: AnyArray, target: AnyArray, weight: AnyArray, pos_weight: AnyArray, eps: float,
                                inv_denom: float, row_weight: Float64Array, elem_loss: AnyArray,
                                row_loss: Float64Array) -> None:
    n, rows = row_chunks(x.shape[0], x.shape[1])
    for k in prange(n):
        lo, hi = chunk_bounds(k, rows, x.shape[0])
        _general_rows(x, None, lo, hi, True, target, weight, pos_weight, eps, inv_denom, row_weight, elem_loss,
                      row_loss)


@jit
def sigmoid_ce_plain_serial(x: AnyArray, target: AnyArray, weight: AnyArray, pos_weight: AnyArray, eps: float,
                            inv_denom: float, row_weight: Float64Array, grad: AnyArray, elem_loss: AnyArray,
                            row_loss: Float64Array) -> None:
    _plain_rows(x, grad, np.int64(0), np.int64(x.shape[0]), grad.shape[0] == x.shape[0], target, weight,
                pos_weight, eps, inv_denom, row_weight, elem_loss, row_loss)


@jit_parallel
def sigmoid_ce_plain_parallel(x: AnyArray, target: AnyArray, weight: AnyArray, pos_weight: AnyArray, eps: float,
                              inv_denom: float, row_weight: Float64Array, grad: AnyArray, elem_loss: AnyArray,
                              row_loss: Float64Array) -> None:
    want_grad = grad.shape[0] == x.shape[0]
    n, rows = row_chunks(x.shape[0], x.shape[1])
    for k in prange(n):
        lo, hi = chunk_bounds(k, rows, x.shape[0])
        _plain_rows(x, grad, lo, hi, want_grad, target, weight, pos_weight, eps, inv_denom, row_weight, elem_loss,
                    row_loss)


@jit
def sigmoid_ce_plain_inplace_serial(x: AnyArray, target: AnyArray, weight: AnyArray, pos_weight: AnyArray, eps: float,
                                    inv_denom: float, row_weight: Float64Array, elem_loss: AnyArray,
                                    row_loss: Float64Array) -> None:
    _plain_rows(x, None, np.int64(0), np.int64(x.shape[0]), True, target, weight, pos_weight, eps, inv_denom,
                row_weight, elem_loss, row_loss)


@jit_parallel
def sigmoid_ce_plain_inplace_parallel(x: AnyArray, target: AnyArray, weight: AnyArray, pos_weight: AnyArray, eps: float,
                                      inv_denom: float, row_weight: Float64Array, elem_loss: AnyArray,
                                      row_loss: Float64Array) -> None:
    n, rows = row_chunks(x.shape[0], x.shape[1])
    for k in prange(n):
        lo, hi = chunk_bounds(k, rows, x.shape[0])
        _plain_rows(x, None, lo, hi, True, target, weight, pos_weight, eps, inv_denom, row_weight, elem_loss,
                    row_loss)


# ------------------------------------------------------ half-precision logits
# The two row functions (plain: unit weights, eps = 0; general: anything else) on rows converted a few at a
# time (see _rows.py).  Targets: float32, bool, or the logits' half format (converted with the rows).


@jit_inline
def _sigmoid_half_rows(xh: NDArray[np.uint16], fmt: int, g: AnyArray, lo: IntScalar, hi: IntScalar, target: AnyArray,
                       weight: AnyArray, pos_weight: AnyArray, eps: float, inv_denom: float, row_weight: Float64Array,
                       elem_loss: AnyArray, row_loss: Float64Array, plain: bool) -> None:
    """Rows ``lo:hi`` of half logits through the plain or the general row function (``plain``: a constant at
    both call sites, so each task compiles one of them)."""
    want_grad = g.shape[0] == xh.shape[0]
    sub = half_sub_rows(xh.shape[1])
    scratch = np.empty((sub, xh.shape[1]), dtype=np.float32)
    tscratch = np.empty((sub, xh.shape[1]), dtype=np.float32)
    for a in range(lo, hi, sub):
        b = min(a + sub, hi)
        xs = scratch_rows(g, scratch, a, b)
        half_rows_to_float32(xh, fmt, a, b, xs)
        ts = target_rows(target, tscratch, fmt, a, b)
        m = np.int64(b - a)
        if plain:
            _plain_rows(xs, None, np.int64(0), m, want_grad, ts, rows_of(weight, a, b), rows_of(pos_weight, a, b),
                        eps, inv_denom, rows_of(row_weight, a, b), rows_of(elem_loss, a, b), row_loss[a:b])
        else:
            _general_rows(xs, None, np.int64(0), m, want_grad, ts, rows_of(weight, a, b), rows_of(pos_weight, a, b),
                          eps, inv_denom, rows_of(row_weight, a, b), rows_of(elem_loss, a, b), row_loss[a:b])
        if want_grad:
            float32_rows_to_half(xs, fmt, g, a, b)


@jit
def _general_half_task(xh: NDArray[np.uint16], fmt: int, g: AnyArray, lo: IntScalar, hi: IntScalar, target: AnyArray,
                       weight: AnyArray, pos_weight: AnyArray, eps: float, inv_denom: float, row_weight: Float64Array,
                       elem_loss: AnyArray, row_loss: Float64Array) -> None:
    wide_vectors()
    _sigmoid_half_rows(xh, fmt, g, lo, hi, target, weight, pos_weight, eps, inv_denom, row_weight, elem_loss,
                       row_loss, False)


@jit
def _plain_half_task(xh: NDArray[np.uint16], fmt: int, g: AnyArray, lo: IntScalar, hi: IntScalar, target: AnyArray,
                     weight: AnyArray, pos_weight: AnyArray, eps: float, inv_denom: float, row_weight: Float64Array,
                     elem_loss: AnyArray, row_loss: Float64Array) -> None:
    wide_vectors()
    _sigmoid_half_rows(xh, fmt, g, lo, hi, target, weight, pos_weight, eps, inv_denom, row_weight, elem_loss,
                       row_loss, True)


@jit
def sigmoid_ce_half_serial(xh: NDArray[np.uint16], fmt: int, target: AnyArray, weight: AnyArray, pos_weight: AnyArray,
                           eps: float, inv_denom: float, row_weight: Float64Array, grad: AnyArray, elem_loss: AnyArray,
                           row_loss: Float64Array) -> None:
    _general_half_task(xh, fmt, grad, np.int64(0), np.int64(xh.shape[0]), target, weight, pos_weight, eps,
                       inv_denom, row_weight, elem_loss, row_loss)


@jit_parallel
def sigmoid_ce_half_parallel(xh: NDArray[np.uint16], fmt: int, target: AnyArray, weight: AnyArray, pos_weight: AnyArray,
                             eps: float, inv_denom: float, row_weight: Float64Array, grad: AnyArray,
                             elem_loss: AnyArray, row_loss: Float64Array) -> None:
    n, rows = half_tasks(xh.shape[0], xh.shape[1])
    for k in prange(n):
        lo, hi = chunk_bounds(k, rows, xh.shape[0])
        _general_half_task(xh, fmt, grad, lo, hi, target, weight, pos_weight, eps, inv_denom, row_weight, elem_loss,
                           row_loss)


@jit
def sigmoid_ce_plain_half_serial(xh: NDArray[np.uint16], fmt: int, target: AnyArray, weight: AnyArray,
                                 pos_weight: AnyArray, eps: float, inv_denom: float, row_weight: Float64Array,
                                 grad: AnyArray, elem_loss: AnyArray, row_loss: Float64Array) -> None:
    _plain_half_task(xh, fmt, grad, np.int64(0), np.int64(xh.shape[0]), target, weight, pos_weight, eps,
                     inv_denom, row_weight, elem_loss, row_loss)


@jit_parallel
def sigmoid_ce_plain_half_parallel(xh: NDArray[np.uint16], fmt: int, target: AnyArray, weight: AnyArray,
                                   pos_weight: AnyArray, eps: float, inv_denom: float, row_weight: Float64Array,
                                   grad: AnyArray, elem_loss: AnyArray, row_loss: Float64Array) -> None:
    n, rows = half_tasks(xh.shape[0], xh.shape[1])
    for k in prange(n):
        lo, hi = chunk_bounds(k, rows, xh.shape[0])
        _plain_half_task(xh, fmt, grad, lo, hi, target, weight, pos_weight, eps, inv_denom, row_weight, elem_loss,
                         row_loss)


#: the drivers as sets (serial, parallel, in place serial, in place parallel)
GENERAL = KernelSet(sigmoid_ce_serial, sigmoid_ce_parallel,
                    sigmoid_ce_inplace_serial, sigmoid_ce_inplace_parallel,
                    HalfKernels(sigmoid_ce_half_serial, sigmoid_ce_half_parallel))
PLAIN = KernelSet(sigmoid_ce_plain_serial, sigmoid_ce_plain_parallel,
                  sigmoid_ce_plain_inplace_serial, sigmoid_ce_plain_inplace_parallel,
                  HalfKernels(sigmoid_ce_plain_half_serial, sigmoid_ce_plain_half_parallel))
