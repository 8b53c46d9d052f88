"""Fused softmax cross-entropy kernels: loss and gradient in one pass per row.

Shapes: ``x`` and ``grad`` are ``(N, C)`` C-contiguous arrays of float32 or
float64 (``grad`` may be ``x`` itself for the in-place form, or a ``(0, C)``
array when no gradient is wanted); ``row_loss`` is ``(N,)`` float64.

Per row ``i`` with (softcapped) logits ``x'``, ``m = max x'``,
``s = sum_c exp(x'_c - m)``, ``lse = m + log s``, ``p = softmax(x')`` and a
target distribution ``q`` (class weights folded in):

    row_loss[i] = sum_c q_c (lse - x'_c) + z_loss * w_i * lse**2
    grad[i, j]  = ((sum_c q_c + 2 z_loss w_i lse) p_j - q_j) * dx'_j/dx_j * inv_denom

where ``w_i`` is the sample's weight (``weight[target]`` for class indices,
1 for probability targets).  Each row is read three times while it is in
cache (max, sum of exponentials, gradient) and the gradient is written once.
``lse - x'_c`` is formed as ``(m - x'_c) + log s`` so nothing cancels for
large logits, and terms with ``q_c == 0`` are skipped so a masked (``-inf``)
class contributes 0 rather than ``0 * inf``.

Confident rows (``s < 1.5``: one class at the maximum, whose term is
exactly 1): ``s - 1`` is summed over the other classes alone, so
``log s = log1p(s - 1)`` and, at the class on the maximum,
``p - 1 = -(s - 1) / s`` (see :func:`_sum_and_log`).  A row whose loss is
1e-200 gets it to a few ulp (``log(1 + small)`` would round it to 0), and
the target's gradient is not the rounding residue of ``1/s - 1``.  Terms
below the smallest normal number (``x_c - m < -708`` in float64, ``-87`` in
float32) are flushed to 0, so only losses below about 1e-300 (1e-36) lose
relative accuracy.

With ``eps > 0`` (the seed's clipped mode) every probability is clipped to
``[eps, 1 - eps]`` before it enters ``-sum q log p`` and ``p - q``.
"""

import collections
import math
from typing import Any

import numpy as np
from numba import prange
from numpy.typing import NDArray

from .._typing import AnyArray, Float64Array, FloatScalar, IndexArray, IntScalar
from ._jit import jit, jit_inline, jit_parallel
from ._math import (
    cast_like,
    exp_nonpositive,
    log1p_0_to_127,
    maxnum,
    normal_or_zero,
    rescale_floor,
    select,
    tanh_and_sech2,
    wide_vectors,
)
from ._rows import (
    HalfKernels,
    KernelSet,
    all_ones,
    below_max_sum,
    chunk_bounds,
    distance_sums,
    float32_rows_to_half,
    fused_sums,
    gradient_array,
    half_rows_to_float32,
    half_sub_rows,
    half_tasks,
    prefetch_row_block,
    row_chunks,
    rows_of,
    sample_weight_of,
    scratch_rows,
    skip_row,
    target_rows,
    terms_sum,
)

# int64 operands of ``select`` (two integer literals would have two literal types)
_ONE = np.int64(1)
_ZERO = np.int64(0)

# Row sums of exponentials are accumulated in the row's dtype over blocks of
# this many classes (fast: 8 or 16 float32 lanes), and the block sums in float64,
# so a float32 sum never runs over more than SUM_BLOCK terms.
SUM_BLOCK = 512


@jit_inline
def _capped(v: FloatScalar, softcap: FloatScalar) -> Any:
    """``softcap * tanh(v / softcap)``; -inf stays -inf, +inf becomes NaN."""
    th, _ = tanh_and_sech2(v / softcap)
    c = softcap * th
    c = select(v > -np.inf, c, v)
    return select(v < np.inf, c, v - v)


# A vectorised loop over n classes does n // (lanes x unroll) vector steps
# and leaves the rest to a scalar loop: at C = 1000 with 16 float32 lanes
# unrolled 4 times, 40 scalar exponentials a row, a quarter of the row's
# time.  The hot loops below instead run over the row's first
# C - C % TAIL_STEP classes and then once over its last TAIL_STEP classes
# (a constant trip count: vector code only), masking the classes already done.

#: classes of the last, overlapping vector step of a row (a multiple of every vector loop's step)
TAIL_STEP = 64


@jit_inline
def _body_end(C: int) -> int:
    """Where a row's vector body ends: ``C`` minus ``C % TAIL_STEP`` (``C`` itself for a row shorter than
    TAIL_STEP, which the body loop takes whole); classes ``_body_end(C):C`` go to the tail step."""
    return C - C % TAIL_STEP if C >= TAIL_STEP else C


@jit_inline
def _row_max(x: AnyArray, i: IntScalar) -> Any:
    C = x.shape[1]
    body = _body_end(C)
    m = x[i, 0]
    for j in range(np.uint64(body)):
        m = maxnum(m, x[i, j])
    if body < C:  # the last TAIL_STEP classes (those in the body again: a max does not mind)
        first = np.uint64(C - TAIL_STEP)
        for k in range(np.uint64(TAIL_STEP)):
            m = maxnum(m, x[i, first + k])
    return m


@jit_inline
def _clip_probability(p: FloatScalar, eps: FloatScalar, one_minus_eps: FloatScalar) -> Any:
    # Written so that a NaN passes through both comparisons unchanged.
    p = select(p < eps, eps, p)
    return select(p > one_minus_eps, one_minus_eps, p)


@jit_inline
def _add_unless_zero(a: FloatScalar, b: FloatScalar) -> Any:
    """``a + b`` that stays ``b`` exactly when ``a == 0``, whatever LLVM reassociates around it."""
    return select(a == cast_like(0.0, a), b, a + b)


@jit_inline
def _exp_sum_block(x: AnyArray, g: AnyArray, i: IntScalar, lo: IntScalar, hi: IntScalar, m: FloatScalar, store: bool,
                   masked_mark: FloatScalar, fused: bool, terms: AnyArray) -> tuple[FloatScalar, FloatScalar]:
    """``(below, total)``: sums of ``exp(x[i, c] - m)`` over classes ``lo:hi``
    (at most SUM_BLOCK) in the row's dtype, ``total`` over all of them and
    ``below`` over those under the maximum ``m`` (see :func:`_sum_and_log`).

    With ``store`` each term is also written to ``g[i, c]``, and
    ``masked_mark`` (a negative number, or 0) in place of a masked (``-inf``)
    class, so a later pass can tell it from an unmasked class whose
    exponential underflowed to 0; ``below`` is then not summed here (it is
    returned as ``total``): the caller takes ``s - 1`` from the stored terms
    with :func:`_stored_below_max` when the row needs it.  Unless ``fused``
    (:func:`._rows.fused_sums`), the sum taken in the storing loop is
    replaced by the sum of the stored terms (:func:`._rows.terms_sum`; its
    order does not depend on the arrays' addresses), and without ``store``
    the terms go to the scratch row ``terms[0]`` to be summed by
    :func:`._rows.terms_sum` and :func:`._rows.below_max_sum`, as the
    stored ones are.  The loops read a block before they write it: ``g``
    may be ``x``.
    """
    zero = cast_like(0.0, masked_mark)
    below = zero
    total = zero
    if store:
        for j in range(lo, hi):
            v = x[i, j]
            e = exp_nonpositive(v - m)
            total += e
            g[i, j] = select(v == -np.inf, masked_mark, e)
        if not fused:
            total = terms_sum(g, i, lo, hi, zero)
        return total, total
    if fused:
        for j in range(lo, hi):
            v = x[i, j]
            e = exp_nonpositive(v - m)
            below += select(v == m, zero, e)
            total += e
        return below, total
    n = np.uint64(hi) - np.uint64(lo)
    for k in range(n):
        terms[0, k] = exp_nonpositive(x[i, lo + k] - m)
    return below_max_sum(terms, 0, 0, n, zero), terms_sum(terms, 0, 0, n, zero)


@jit
def _stored_below_max(g: AnyArray, i: IntScalar, end: int, C: int) -> float:
    """``s - 1`` of a confident row ``i`` (``s < 1.5``) from its stored terms ``exp(x_c - m)`` in ``g[i]``.

    The one term above 1/2 is the maximum's 1; the others are summed
    without it, so the small part of ``s`` keeps its relative precision (in
    the sum of all terms it was rounded against the 1).  Stored masks
    (negative marks) count as 0.  Reading the stored row again (in cache)
    costs only the confident rows, where a select in the fused loops would
    cost every row (measured +15 % at 4096 x 1000 float32).  The classes are
    summed in the blocks the exponentials' loops ran in (SUM_BLOCK classes up
    to ``end``, then ``end:C``, the tail step), each by
    :func:`._rows.below_max_sum`, as the loss-only form sums its scratch
    rows: the two forms agree bit for bit.
    """
    wide_vectors()
    zero = cast_like(0.0, g[i, 0])
    below = 0.0
    for j0 in range(0, end, SUM_BLOCK):
        below += below_max_sum(g, i, j0, min(j0 + SUM_BLOCK, end), zero)
    if end < C:
        below += below_max_sum(g, i, end, C, zero)
    return below


@jit_inline
def _sum_and_log(below: float, total: float, m: FloatScalar) -> tuple[float, float, float]:
    """``(s, s - 1, log s)`` of a row's ``s = sum_c exp(x_c - m)``, given the
    sum over all classes (``total``) and, for a confident row, over the
    classes below the maximum ``m`` (``below``), both float64.

    A confident row (``total < 1.5``) has one class at the maximum, and
    ``s - 1`` is ``below`` itself: the small part at full relative precision
    (in ``total`` it is rounded against the 1), so ``log s = log1p(s - 1)``
    keeps a loss of 1e-200.  Any other row has ``s >= 1.5`` and takes
    ``total - 1`` (``below`` is not read).  A row whose maximum is not finite
    (``+inf``, or every class masked) gives NaN, as ``exp(inf - inf)`` would.
    """
    # a branch, not arithmetic mixing total and below: under the reassoc flag
    # LLVM may regroup such a sum in ways that cancel
    if total < 1.5:
        s_minus_1 = below
    else:
        s_minus_1 = total - 1.0
    if not abs(m) < np.inf:
        s_minus_1 = np.nan
    return 1.0 + s_minus_1, s_minus_1, math.log1p(s_minus_1)


@jit_inline
def _smoothing_sums(x: AnyArray, i: IntScalar, weight: Float64Array, lo: IntScalar, hi: IntScalar, m64: float,
                    capt: FloatScalar, capped: bool) -> tuple[int, float, float]:
    """Label smoothing's sums over classes ``lo:hi`` of row ``i``.

    ``(K, sum_c w_c, sum_c w_c (m - x'_c))`` over the unmasked classes
    (``x_c > -inf``), in float64 (``m - x'`` overflows float32 for logits
    near +-3e38); ``x' = softcap(x)`` when ``capped`` (a constant at every
    call site, so LLVM drops the other branch).
    """
    k = 0
    w_sum = 0.0
    w_dist = 0.0
    for j in range(lo, hi):
        v = x[i, j]
        unmasked = v > -np.inf
        xc = _capped(v, capt) if capped else v
        wj = weight[j]
        k += select(unmasked, _ONE, _ZERO)
        w_sum += select(unmasked, wj, 0.0)
        w_dist += select(unmasked, wj * (m64 - xc), 0.0)
    return k, w_sum, w_dist


@jit_inline
def _softmax_row_int(x: AnyArray, g: AnyArray, i: IntScalar, want_grad: bool, y: IntScalar, weight: Float64Array,
                     ls: float, z: float, softcap: float, eps: float, inv_denom: float, ahead: AnyArray,
                     ahead_row: IntScalar, terms: AnyArray, unit_weights: bool) -> tuple[float, float]:
    """Loss of one row with class index ``y``; writes ``g`` if ``want_grad``.

    ``q_c = (1 - ls) w_y [c == y] + ls w_c / K [x_c > -inf]``, ``K`` the
    number of unmasked classes (PyTorch's definition when nothing is masked).
    Returns the row's loss and log-sum-exp (of the softcapped logits), float64.
    While it computes, it asks the caches for row ``ahead_row`` of ``ahead``
    (the next row's logits, read next; see :func:`_rows.prefetch_row_block`).
    ``terms``: a ``(1, SUM_BLOCK)`` scratch of the logits' dtype (a block's
    exponentials when there is no gradient row to hold them, to be summed).
    ``unit_weights``: every class weight is 1 (label smoothing's sums and
    gradient then read no weight: :func:`._rows.distance_sums`).
    """
    C = x.shape[1]
    Cu = np.uint64(C)  # unsigned class indices: no wraparound selects, so in-place loops vectorise
    x0 = x[i, 0]
    zero = cast_like(0.0, x0)
    one = cast_like(1.0, x0)
    w_y = weight[y]
    use_cap = softcap > 0.0
    capt = cast_like(softcap, x0)
    m = _row_max(x, i)
    if use_cap:
        m = _capped(m, capt)

    x_y = x[i, y]  # read before an in-place pass overwrites the row
    x_y_raw = x_y
    # Every loop below that has the gradient to write stores exp(x' - m) (or,
    # with softcap, exp(x' - m) dx'/dx) into the gradient row while summing
    # it, so the gradient pass rescales in cache instead of recomputing one
    # exponential (and one tanh) per element.  eps > 0 never comes with
    # label smoothing, z-loss or softcap (the wrappers refuse it).
    plain = not use_cap and ls == 0.0  # eps may be > 0
    store = want_grad
    below = 0.0  # sum of exp(x' - m) over the classes below the maximum
    total = 0.0  # over all classes
    k_unmasked = 0
    w_unmasked = 0.0
    w_dist = 0.0  # sum over unmasked c of w_c (m - x'_c)
    m64 = np.float64(m)  # m - x can overflow float32 (logits of +-3e38)
    masked_mark = -one  # stored for a masked (-inf) class under label smoothing
    # the plain case's loops stop at the body's end and take the rest in one tail step (label
    # smoothing's loops too were measured no faster so, and compiled longer)
    end = _body_end(C) if plain else C
    fused = fused_sums(x)  # sums in the storing loops (long rows), or of the stored terms
    # Explicit loops per case: no branch inside a loop (a conditional in the
    # loop body kept LLVM from vectorising it).
    for j0 in range(0, end, SUM_BLOCK):
        sb = zero
        tb = zero
        lo, hi = np.uint64(j0), np.uint64(min(j0 + SUM_BLOCK, end))
        prefetch_row_block(ahead, ahead_row, j0, min(j0 + SUM_BLOCK, end))
        if plain and store:
            for j in range(lo, hi):
                e = exp_nonpositive(x[i, j] - m)
                g[i, j] = e
                tb += e
            if not fused:  # (the loop's sum depends on where the arrays are: see _rows.fused_sums)
                tb = terms_sum(g, i, lo, hi, zero)
        elif not use_cap:
            if ls > 0.0:
                # label smoothing's float64 sums, read before this block is
                # overwritten (in the exponentials' loop they ran 2x slower)
                if unit_weights:
                    dkf, dd = distance_sums(x, i, lo, hi, one, m, m64)
                    dk = np.int64(dkf)
                    dw = dkf
                else:
                    dk, dw, dd = _smoothing_sums(x, i, weight, lo, hi, m64, capt, False)
                k_unmasked += dk
                w_unmasked += dw
                w_dist += dd
            sb, tb = _exp_sum_block(x, g, i, lo, hi, m, store, masked_mark, fused, terms)
        else:
            # softcap: x' = cap tanh(x / cap).  Its sums run in a loop that stores nothing (loss only,
            # label smoothing, short rows: the same loop in every form), or for long rows with the
            # gradient in the loop that stores exp(x' - m) dx'/dx (see _rows.fused_sums).  Short rows
            # run both, the sums first (in place, the storing loop overwrites x).
            store_sums = ls == 0.0 and store and fused
            if not store_sums:
                for j in range(lo, hi):
                    c = _capped(x[i, j], capt)
                    e = exp_nonpositive(c - m)
                    sb += select(c == m, zero, e)
                    tb += e
            if ls == 0.0 and store:  # dx'/dx = 1 - tanh**2
                sbs = zero
                tbs = zero
                for j in range(lo, hi):
                    v = x[i, j]
                    th, d = tanh_and_sech2(v / capt)
                    c = select(v > -np.inf, capt * th, v)
                    c = select(v < np.inf, c, v - v)
                    e = exp_nonpositive(c - m)
                    sbs += select(c == m, zero, e)
                    tbs += e
                    g[i, j] = e * d
                if store_sums:
                    sb = sbs
                    tb = tbs
        below += sb
        total += tb
    if end < C:  # the tail step
        first = np.uint64(C - TAIL_STEP)
        # Its terms are stored (in the gradient row, those before ``end`` kept; or in ``terms``) and
        # summed as a block of their own, as every block is (see _rows.terms_sum).
        if store:
            for k in range(np.uint64(TAIL_STEP)):
                j = first + k
                e = exp_nonpositive(x[i, j] - m)  # (in place, x[i, j] for j < end is a stored term: not kept)
                g[i, j] = select(j >= np.uint64(end), e, g[i, j])
            total += terms_sum(g, i, end, C, zero)
        else:
            for k in range(np.uint64(TAIL_STEP)):
                terms[0, k] = exp_nonpositive(x[i, first + k] - m)
            total += terms_sum(terms, 0, np.uint64(end) - first, TAIL_STEP, zero)
            below += below_max_sum(terms, 0, np.uint64(end) - first, TAIL_STEP, zero)
    if ls > 0.0 and use_cap:
        k_unmasked, w_unmasked, w_dist = _smoothing_sums(x, i, weight, np.uint64(0), Cu, m64, capt, True)

    if store and not use_cap:  # the stored terms are exp(x - m)
        below = _stored_below_max(g, i, end, C) if total < 1.5 else 0.0
    s, s_minus_1, log_s = _sum_and_log(below, total, m)
    lse = m + log_s
    if use_cap:
        x_y = _capped(x_y, capt)
    nll = (m - x_y) + log_s
    if eps > 0.0:
        log_lo = math.log(eps)
        log_hi = math.log1p(-eps)
        lp = -nll
        lp = log_lo if lp < log_lo else lp
        lp = log_hi if lp > log_hi else lp
        nll = -lp
    ls_over_k = ls / k_unmasked if ls > 0.0 else 0.0
    loss = (1.0 - ls) * w_y * nll
    if ls > 0.0:
        loss += ls_over_k * (w_dist + log_s * w_unmasked)
    if z > 0.0:
        loss += z * w_y * lse * lse

    if want_grad:
        coef_total = (1.0 - ls) * w_y + ls_over_k * w_unmasked + 2.0 * z * w_y * lse
        scale = cast_like(coef_total / s * inv_denom, x0)
        smooth = cast_like(ls_over_k * inv_denom, x0)
        if eps > 0.0:
            epst = cast_like(eps, x0)
            hit = one - epst
            inv_s = cast_like(1.0 / s, x0)
            wsc = cast_like(w_y * inv_denom, x0)
            for j in range(Cu):
                g[i, j] = _clip_probability(g[i, j] * inv_s, epst, hit) * wsc
        elif ls == 0.0:
            floor = rescale_floor(scale)  # (no subnormal products: see _math.rescale_floor)
            body = np.uint64(_body_end(C))
            for j in range(body):
                e = g[i, j]
                g[i, j] = select(e < floor, zero, e) * scale
            if body < Cu:
                first = Cu - np.uint64(TAIL_STEP)
                for k in range(np.uint64(TAIL_STEP)):
                    j = first + k
                    e = g[i, j]
                    g[i, j] = select(j >= body, select(e < floor, zero, e) * scale, e)
        elif not use_cap:
            masked_g = zero * scale  # 0, or NaN for a NaN row, as 0 * scale elsewhere
            if unit_weights:
                for j in range(Cu):
                    e = g[i, j]
                    g[i, j] = select(e < zero, masked_g, e * scale - smooth)
            else:
                for j in range(Cu):
                    e = g[i, j]
                    smooth_j = smooth * cast_like(weight[j], x0)
                    g[i, j] = select(e < zero, masked_g, e * scale - smooth_j)
        else:
            for j in range(Cu):
                v = x[i, j]
                th, d = tanh_and_sech2(v / capt)
                c = capt * th
                c = select(v > -np.inf, c, v)
                c = select(v < np.inf, c, v - v)
                smooth_j = smooth * cast_like(weight[j], x0)
                g[i, j] = (exp_nonpositive(c - m) * scale - select(v > -np.inf, smooth_j, zero)) * d
        # the one-hot part of q: -(1 - ls) w_y at the target, times dx'/dx
        d_y = one
        if use_cap:
            _, d_y = tanh_and_sech2(x_y_raw / capt)
        if x_y == m:
            # the target at the maximum: p_y = 1 / s and p_y - 1 = -(s - 1) / s, in float64
            p_y = 1.0 / s
            pm1 = -s_minus_1 * p_y
            if eps > 0.0:
                pm1 = min(max(pm1, eps - 1.0), -eps)  # clip(p_y, eps, 1 - eps) - 1
                g_y = w_y * pm1
            else:
                g_y = (1.0 - ls) * w_y * pm1 + (ls_over_k * w_unmasked + 2.0 * z * w_y * lse) * p_y
                g_y -= ls_over_k * weight[y]
            g[i, y] = normal_or_zero(cast_like(g_y * inv_denom, x0) * d_y)
        else:
            g[i, y] = normal_or_zero(g[i, y] - cast_like((1.0 - ls) * w_y * inv_denom, x0) * d_y)
    return loss, lse


@jit_inline
def _target_sums(x: AnyArray, t: AnyArray, i: IntScalar, lo: IntScalar, hi: IntScalar, m: FloatScalar,
                 m64: float) -> tuple[float, float]:
    """``(sum_c t_c, sum_c t_c (m - x_c))`` over classes ``lo:hi`` (at most SUM_BLOCK) of row ``i``, terms
    with ``t_c == 0`` skipped: the probability targets' sums without label smoothing and class weights.

    Summed in the row's dtype (the targets are read in it), returned in
    float64; a block whose sum is not finite (``m - x`` overflows float32,
    or a NaN) is summed again in float64, as the other rows' sums are.
    """
    zero = cast_like(0.0, m)
    q_total = zero
    q_dist = zero
    for j in range(lo, hi):
        tj = t[i, j]
        q_total += tj
        q_dist += select(tj != zero, tj * (m - x[i, j]), zero)
    if abs(q_dist) < np.inf and abs(q_total) < np.inf:
        return np.float64(q_total), np.float64(q_dist)
    total64 = 0.0
    dist64 = 0.0
    for j in range(lo, hi):
        q = np.float64(t[i, j])
        total64 += q
        dist64 += select(q != 0.0, q * (m64 - x[i, j]), 0.0)
    return total64, dist64


@jit_inline
def _softmax_row_prob(x: AnyArray, g: AnyArray, i: IntScalar, want_grad: bool, t: AnyArray, weight: Float64Array,
                      ls: float, z: float, softcap: float, eps: float, inv_denom: float, ahead: AnyArray,
                      ahead_row: IntScalar, terms: AnyArray, unit_weights: bool) -> tuple[float, float]:
    """Loss of one row with a target distribution ``t[i]``.

    ``q_c = w_c ((1 - ls) t_c + ls / K [x_c > -inf])``.  Returns the row's
    loss and log-sum-exp (of the softcapped logits), float64.  Prefetches
    row ``ahead_row`` of ``ahead`` and the next target row as
    :func:`_softmax_row_int` does; ``terms`` as there.  ``unit_weights``:
    every class weight is 1 (without label smoothing, the target sums then
    run in the row's dtype, :func:`_target_sums`, and the gradient reads no
    weight).
    """
    C = x.shape[1]
    Cu = np.uint64(C)  # unsigned class indices: no wraparound selects, so in-place loops vectorise
    x0 = x[i, 0]
    zero = cast_like(0.0, x0)
    one = cast_like(1.0, x0)
    use_cap = softcap > 0.0
    capt = cast_like(softcap, x0)
    m = _row_max(x, i)
    if use_cap:
        m = _capped(m, capt)
    k_unmasked = 0
    if ls > 0.0:
        for j in range(Cu):
            k_unmasked += select(x[i, j] > -np.inf, _ONE, _ZERO)
    ls_over_k = ls / k_unmasked if ls > 0.0 else 0.0

    below = 0.0  # sum of exp(x' - m) over the classes below the maximum
    total = 0.0  # over all classes
    q_total = 0.0
    q_dist = 0.0  # sum_c q_c (m - x'_c), terms with q_c == 0 skipped
    m64 = np.float64(m)
    # Without softcap and eps, exp(x - m) is stored into the gradient row
    # (-1 marking a masked class) and rescaled in the gradient pass, as for
    # class indices; the float64 sums over the targets run in a loop of
    # their own per block of SUM_BLOCK classes, before the block is
    # overwritten (in one loop with the exponentials they ran 2x slower).
    store = want_grad and not use_cap and eps == 0.0
    masked_mark = -one
    if use_cap:
        for j in range(Cu):
            v = _capped(x[i, j], capt)
            e = np.float64(exp_nonpositive(v - m))
            below += select(v == m, 0.0, e)
            total += e
            q = (1.0 - ls) * t[i, j]
            if ls > 0.0:
                q += select(x[i, j] > -np.inf, ls_over_k, 0.0)
            q *= weight[j]
            q_total += q
            q_dist += select(q != 0.0, q * (m64 - v), 0.0)
    else:
        for j0 in range(0, C, SUM_BLOCK):
            lo, hi = np.uint64(j0), np.uint64(min(j0 + SUM_BLOCK, C))
            prefetch_row_block(ahead, ahead_row, j0, min(j0 + SUM_BLOCK, C))
            prefetch_row_block(t, i + 1, j0, min(j0 + SUM_BLOCK, C))
            if unit_weights and ls == 0.0:
                dq, dd = _target_sums(x, t, i, lo, hi, m, m64)
                q_total += dq
                q_dist += dd
            else:
                for j in range(lo, hi):
                    v = x[i, j]
                    q = (1.0 - ls) * t[i, j]
                    if ls > 0.0:
                        q += select(v > -np.inf, ls_over_k, 0.0)
                    q *= weight[j]
                    q_total += q
                    q_dist += select(q != 0.0, q * (m64 - v), 0.0)
            sb, tb = _exp_sum_block(x, g, i, lo, hi, m, store, masked_mark, fused_sums(x), terms)
            below += sb
            total += tb
        if store:
            below = _stored_below_max(g, i, C, C) if total < 1.5 else 0.0

    s, s_minus_1, log_s = _sum_and_log(below, total, m)
    lse = m + log_s
    inv_s = 1.0 / s
    if eps > 0.0:
        # -sum q_c log(clip(p_c)); log p_c = (x_c - m) - log s, clipped in log space
        log_lo = math.log(eps)
        log_hi = math.log1p(-eps)
        loss = 0.0
        for j in range(Cu):
            q = t[i, j] * weight[j]
            lp = (x[i, j] - m) - log_s
            lp = select(lp < log_lo, log_lo, lp)
            lp = select(lp > log_hi, log_hi, lp)
            loss -= select(q != 0.0, q * lp, 0.0)
    else:
        loss = q_dist + q_total * log_s
        if z > 0.0:  # not 0 * lse**2: lse**2 overflows for logits of 1e300
            loss += z * lse * lse

    if want_grad:
        # A confident row (s < 1.5) has one class at the maximum, where p = 1 / s
        # is close to 1 and Q p - q would be the rounding residue of Q / s - q:
        # that one class is found now (before an in-place pass overwrites x)
        # and rewritten after the loops below (see _top_gradient).
        top = -1
        top_raw = zero
        if total < 1.5:
            for j in range(Cu):
                v = x[i, j]
                at_top = g[i, j] > cast_like(0.5, x0) if store else (_capped(v, capt) if use_cap else v) == m
                if at_top:
                    top = np.int64(j)
                    top_raw = v
                    break
        scale = cast_like((q_total + 2.0 * z * lse) * inv_s * inv_denom, x0)
        invd = cast_like(inv_denom, x0)
        one_minus_ls = cast_like(1.0 - ls, x0)
        lsk = cast_like(ls_over_k, x0)
        if eps > 0.0:
            epst = cast_like(eps, x0)
            hit = one - epst
            inv_st = cast_like(inv_s, x0)
            qt = cast_like(q_total * inv_denom, x0)
            for j in range(Cu):
                p = _clip_probability(exp_nonpositive(x[i, j] - m) * inv_st, epst, hit)
                g[i, j] = p * qt - cast_like(t[i, j] * weight[j], x0) * invd
        elif store and unit_weights and ls == 0.0:
            floor = rescale_floor(scale)  # (also drops the masks' negative marks)
            for j in range(Cu):
                stored = g[i, j]
                g[i, j] = select(stored < floor, zero, stored) * scale - cast_like(t[i, j], x0) * invd
        elif store:
            floor = rescale_floor(scale)
            for j in range(Cu):
                stored = g[i, j]
                masked = stored < zero
                q = one_minus_ls * cast_like(t[i, j], x0)
                if ls > 0.0:
                    q += select(masked, zero, lsk)
                q *= cast_like(weight[j], x0)
                g[i, j] = select(stored < floor, zero, stored) * scale - q * invd
        else:
            for j in range(Cu):
                v = x[i, j]
                d = one
                if use_cap:
                    th, d = tanh_and_sech2(v / capt)
                    c = capt * th
                    c = select(v > -np.inf, c, v)
                    v = select(v < np.inf, c, v - v)
                q = one_minus_ls * cast_like(t[i, j], x0)
                if ls > 0.0:
                    q += select(x[i, j] > -np.inf, lsk, zero)
                q *= cast_like(weight[j], x0)
                g[i, j] = (exp_nonpositive(v - m) * scale - q * invd) * d
        if top >= 0:
            q_top = ((1.0 - ls) * t[i, top] + ls_over_k) * weight[top]
            pm1 = -s_minus_1 * inv_s  # p - 1 at the maximum
            if eps > 0.0:
                pm1 = min(max(pm1, eps - 1.0), -eps)  # clip(p, eps, 1 - eps) - 1
                extra = q_total * pm1
            else:
                extra = q_total * pm1 + 2.0 * z * lse * inv_s
            d_top = one
            if use_cap:
                _, d_top = tanh_and_sech2(top_raw / capt)
            # (Q - q) + extra, kept exactly extra when Q == q (a one-hot target)
            g[i, top] = normal_or_zero(cast_like(_add_unless_zero(q_total - q_top, extra) * inv_denom, x0) * d_top)
    return loss, lse


# ------------------------------------------------------------ row-range loops
# Serial and parallel loops, each out-of-place (``grad`` a separate array, or
# ``(0, C)`` for no gradient) and in place (the gradient overwrites ``x``).
# The in-place loops pass the same array as logits and gradient, so LLVM
# sees one pointer and vectorises without a runtime overlap check (which an
# aliased call of the out-of-place loop would fail, falling back to scalar
# code).  The parallel loops are distinct functions, not the serial ones
# compiled twice, because Numba's disk cache does not tell a parallel=True
# and a parallel=False compile of the same function apart.  Every iteration
# writes only its own row of the gradient and of ``row_loss``; the reduction
# over rows happens afterwards, serially.


@jit
def _int_rows(x: AnyArray, g_or_none: AnyArray | None, lo: IntScalar, hi: IntScalar, ahead: AnyArray,
              ahead_shift: IntScalar, want_grad: bool, target: IndexArray, weight: Float64Array, ignore_index: int,
              ls: float, z: float, softcap: float, eps: float, inv_denom: float, row_weight: Float64Array,
              row_loss: Float64Array, lse_out: Float64Array) -> None:
    """Rows ``lo:hi``; the gradient goes to ``g_or_none``, or to ``x`` in place when it is ``None``.

    Row ``i`` prefetches row ``i + ahead_shift`` of ``ahead``: ``x`` and 1,
    or for a half driver's float32 rows ``a:b``, the half logits and ``b``
    (the rows it converts next).

    ``row_weight`` holds the sample weights (empty: all 1; 0 skips a row);
    ``lse_out`` receives each row's log-sum-exp (empty: not wanted).
    Compiled once per (dtype, in place or not) and called by the four
    drivers below, which hold no row code of their own: the serial kernel
    calls it for all rows, the parallel one for chunks of rows.
    """
    wide_vectors()
    g = gradient_array(x, g_or_none)
    terms = np.empty((1, SUM_BLOCK), dtype=x.dtype)
    want_lse = lse_out.shape[0] != 0
    unit_weights = ls > 0.0 and all_ones(weight)
    for i in range(lo, hi):
        y = target[i]
        rw = sample_weight_of(row_weight, i)
        if y == ignore_index or rw == 0.0:
            skip_row(g, i, want_grad, row_loss, lse_out)
        else:
            loss, lse = _softmax_row_int(x, g, i, want_grad, y, weight, ls, z, softcap, eps, inv_denom * rw, ahead,
                                         i + ahead_shift, terms, unit_weights)
            row_loss[i] = loss * rw
            if want_lse:
                lse_out[i] = lse


@jit
def softmax_ce_int_serial(x: AnyArray, target: IndexArray, weight: Float64Array, ignore_index: int, ls: float, z: float,
                          softcap: float, eps: float, inv_denom: float, row_weight: Float64Array, grad: AnyArray,
                          row_loss: Float64Array, lse_out: Float64Array) -> None:
    want_grad = grad.shape[0] == x.shape[0]
    _int_rows(x, grad, np.int64(0), np.int64(x.shape[0]), x, np.int64(1), want_grad, target, weight, ignore_index,
              ls, z, softcap, eps, inv_denom, row_weight, row_loss, lse_out)


@jit_parallel
def softmax_ce_int_parallel(x: AnyArray, target: IndexArray, weight: Float64Array, ignore_index: int, ls: float,
                            z: float, softcap: float, eps: float, inv_denom: float, row_weight: Float64Array,
                            grad: AnyArray, row_loss: Float64Array, lse_out: Float64Array) -> None:
    want_grad = grad.shape[0] == x.shape[0]
    n, rows = row_chunks(x.shape[0], x.shape[1])
    for k in prange(n):
        lo, hi = chunk_bounds(k, rows, x.shape[0])
        _int_rows(x, grad, lo, hi, x, np.int64(1), want_grad, target, weight, ignore_index,
                  ls, z, softcap, eps, inv_denom, row_weight, row_loss, lse_out)


@jit
def softmax_ce_int_inplace_serial(x: AnyArray, target: IndexArray, weight: Float64Array, ignore_index: int, ls: float,
                                  z: float, softcap: float, eps: float, inv_denom: float, row_weight: Float64Array,
                                  row_loss: Float64Array, lse_out: Float64Array) -> None:
    _int_rows(x, None, np.int64(0), np.int64(x.shape[0]), x, np.int64(1), True, target, weight, ignore_index, ls, z,
              softcap, eps, inv_denom, row_weight, row_loss, lse_out)


@jit_parallel
def softmax_ce_int_inplace_parallel(x: AnyArray, target: IndexArray, weight: Float64Array, ignore_index: int, ls: float,
                                    z: float, softcap: float, eps: float, inv_denom: float, row_weight: Float64Array,
                                    row_loss: Float64Array, lse_out: Float64Array) -> None:
    n, rows = row_chunks(x.shape[0], x.shape[1])
    for k in prange(n):
        lo, hi = chunk_bounds(k, rows, x.shape[0])
        _int_rows(x, None, lo, hi, x, np.int64(1), True, target, weight, ignore_index,
                  ls, z, softcap, eps, inv_denom, row_weight, row_loss, lse_out)


@jit
def _prob_rows(x: AnyArray, g_or_none: AnyArray | None, lo: IntScalar, hi: IntScalar, ahead: AnyArray,
               ahead_shift: IntScalar, want_grad: bool, target: AnyArray, weight: Float64Array, ls: float, z: float,
               softcap: float, eps: float, inv_denom: float, row_weight: Float64Array, row_loss: Float64Array,
               lse_out: Float64Array) -> None:
    """Rows ``lo:hi`` with probability targets; gradient to ``g_or_none``, or in place when ``None``
    (``ahead`` and ``ahead_shift`` as for :func:`_int_rows`)."""
    wide_vectors()
    g = gradient_array(x, g_or_none)
    terms = np.empty((1, SUM_BLOCK), dtype=x.dtype)
    want_lse = lse_out.shape[0] != 0
    unit_weights = all_ones(weight)
    for i in range(lo, hi):
        rw = sample_weight_of(row_weight, i)
        if rw == 0.0:
            skip_row(g, i, want_grad, row_loss, lse_out)
        else:
            loss, lse = _softmax_row_prob(x, g, i, want_grad, target, weight, ls, z, softcap, eps, inv_denom * rw,
                                          ahead, i + ahead_shift, terms, unit_weights)
            row_loss[i] = loss * rw
            if want_lse:
                lse_out[i] = lse


@jit
def softmax_ce_prob_serial(x: AnyArray, target: AnyArray, weight: Float64Array, ls: float, z: float, softcap: float,
                           eps: float, inv_denom: float, row_weight: Float64Array, grad: AnyArray,
                           row_loss: Float64Array, lse_out: Float64Array) -> None:
    want_grad = grad.shape[0] == x.shape[0]
    _prob_rows(x, grad, np.int64(0), np.int64(x.shape[0]), x, np.int64(1), want_grad, target, weight, ls, z, softcap,
               eps, inv_denom, row_weight, row_loss, lse_out)


@jit_parallel
def softmax_ce_prob_parallel(x: AnyArray, target: AnyArray, weight: Float64Array, ls: float, z: float, softcap: float,
                             eps: float, inv_denom: float, row_weight: Float64Array, grad: AnyArray,
                             row_loss: Float64Array, lse_out: Float64Array) -> None:
    want_grad = grad.shape[0] == x.shape[0]
    n, rows = row_chunks(x.shape[0], x.shape[1])
    for k in prange(n):
        lo, hi = chunk_bounds(k, rows, x.shape[0])
        _prob_rows(x, grad, lo, hi, x, np.int64(1), want_grad, target, weight, ls, z, softcap, eps, inv_denom,
                   row_weight, row_loss, lse_out)


@jit
def softmax_ce_prob_inplace_serial(x: AnyArray, target: AnyArray, weight: Float64Array, ls: float, z: float,
                                   softcap: float, eps: float, inv_denom: float, row_weight: Float64Array,
                                   row_loss: Float64Array, lse_out: Float64Array) -> None:
    _prob_rows(x, None, np.int64(0), np.int64(x.shape[0]), x, np.int64(1), True, target, weight, ls, z, softcap, eps,
               inv_denom, row_weight, row_loss, lse_out)


@jit_parallel
def softmax_ce_prob_inplace_parallel(x: AnyArray, target: AnyArray, weight: Float64Array, ls: float, z: float,
                                     softcap: float, eps: float, inv_denom: float, row_weight: Float64Array,
                                     row_loss: Float64Array, lse_out: Float64Array) -> None:
    n, rows = row_chunks(x.shape[0], x.shape[1])
    for k in prange(n):
        lo, hi = chunk_bounds(k, rows, x.shape[0])
        _prob_rows(x, None, lo, hi, x, np.int64(1), True, target, weight, ls, z, softcap, eps, inv_denom, row_weight,
                   row_loss, lse_out)


# ------------------------------------------------------ few classes per row
# The row loops above pay a fixed cost per row (a max, a sum and a rescale
# loop, each a vector body of C/8 iterations plus a scalar tail, and a libm
# log): 120-170 ns per row at C = 10 single-threaded on the development
# machine, while the streaming bound is about 2 ns per row.  For rows of fewer than SMALL_C classes the rows are taken
# BLOCK_ROWS at a time and transposed into a (C, BLOCK_ROWS) scratch tile;
# every loop then runs across the rows of the block with unit stride and a
# fixed trip count, so it vectorises across rows, and the log of the row sums
# is the vectorisable log1p_0_to_127 (of s - 1, in [0, C - 1]).
# This covers class indices with class weights, ignore_index and z_loss (q
# stays one-hot); label smoothing, softcap and eps use the row loops.  The
# in-place form calls the same kernels with grad = x: no loop reads x while
# writing grad (the tile sits between them), so the alias costs nothing.

#: rows with fewer classes than this take the transposed-tile kernels
SMALL_C = 32
#: rows per tile: a (C, 64) tile of C < 32 (at most 16 KiB in float64) fits in L1
BLOCK_ROWS = 64
#: rows per parallel task (the tile is allocated once per task)
_TASK_ROWS = 32 * BLOCK_ROWS
#: up to this many classes the tile's transpose out goes class by class
_SCATTER_MAX_C = 12


@jit_inline
def _small_c_block(x: AnyArray, g: AnyArray, want_grad: bool, target: IndexArray, weight: Float64Array,
                   ignore_index: int, z: float, inv_denom: float, row_weight: Float64Array, row_loss: Float64Array,
                   lse_out: Float64Array, r0: IntScalar, nrows: IntScalar, t: "_TileFields") -> None:
    """Rows ``r0 .. r0 + nrows`` (``nrows <= BLOCK_ROWS``) through the scratch tile ``t``."""
    Cu = np.uint64(x.shape[1])
    B = np.uint64(nrows)
    first = np.uint64(r0)
    x0 = x[r0, 0]
    zero = cast_like(0.0, x0)
    xt, m, s, total, x_y, scale, hit, floor = t.tile, t.m, t.s, t.total, t.x_y, t.scale, t.hit, t.floor
    w_y, kept, rw = t.w_y, t.kept, t.rw
    want_lse = lse_out.shape[0] != 0
    # The transpose in, class by class across the rows (LLVM gathers the
    # strided column: 10 % faster than row by row, measured at C = 2..31),
    # and the gathers by class index (unsigned indices: no wraparound branch).
    for j in range(Cu):
        for r in range(B):
            xt[j, r] = x[first + r, j]
    for r in range(B):
        y = target[first + r]
        rw[r] = sample_weight_of(row_weight, first + r)
        k = (y != ignore_index) & (rw[r] != 0.0)
        yu = np.uint64(select(k, y, 0))
        kept[r] = k
        w_y[r] = weight[yu]
        x_y[r] = x[first + r, yu]
    # Vectorised across the rows of the block.
    for r in range(B):
        m[r] = xt[0, r]
    for j in range(np.uint64(1), Cu):
        for r in range(B):
            m[r] = maxnum(m[r], xt[j, r])
    for r in range(B):
        s[r] = zero
        total[r] = zero
    # s: the terms below the maximum, total: all terms (see _sum_and_log)
    for j in range(Cu):
        for r in range(B):
            v = xt[j, r]
            e = exp_nonpositive(v - m[r])
            xt[j, r] = e
            s[r] += select(v == m[r], zero, e)
            total[r] += e
    for r in range(B):
        mr = m[r]
        below = np.float64(s[r])
        tot = np.float64(total[r])
        s_minus_1 = select(tot < 1.5, below, tot - 1.0)  # as _sum_and_log
        s_minus_1 = select(abs(mr) < np.inf, s_minus_1, np.nan)
        s64 = 1.0 + s_minus_1
        log_s = log1p_0_to_127(s_minus_1)
        lse = mr + log_s
        nll = (mr - x_y[r]) + log_s
        w = w_y[r]
        idr = inv_denom * rw[r]
        loss = w * nll + select(z > 0.0, z * w * lse * lse, 0.0)
        row_loss[first + r] = select(kept[r], loss * rw[r], 0.0)
        if want_lse:
            lse_out[first + r] = select(kept[r], lse, np.nan)
        scale[r] = select(kept[r], cast_like((w + 2.0 * z * w * lse) / s64 * idr, x0), zero)
        # the target's gradient: subtract w from w p_y, or at the maximum set it to
        # w ((p_y - 1) + 2 z lse p_y) with p_y - 1 = -(s - 1) / s (nothing cancels)
        hit[r] = select(x_y[r] == mr, cast_like(w * (2.0 * z * lse - s_minus_1) / s64 * idr, x0),
                        cast_like(w * idr, x0))
    if want_grad:
        for r in range(B):
            floor[r] = rescale_floor(scale[r])  # (no subnormal products: see _math.rescale_floor)
        for j in range(Cu):
            for r in range(B):
                e = xt[j, r]
                xt[j, r] = select(e < floor[r], zero, e) * scale[r]
        # the transpose out: scattered class by class for a few classes,
        # row by row above (each faster on its side: 25 % at C = 2..10,
        # 12 % at C = 16..31)
        if Cu <= _SCATTER_MAX_C:
            for j in range(Cu):
                for r in range(B):
                    g[first + r, j] = xt[j, r]
        else:
            for r in range(B):
                for j in range(Cu):
                    g[first + r, j] = xt[j, r]
        for r in range(B):
            i = first + r
            yu = np.uint64(target[i])
            if kept[r]:
                if x_y[r] == m[r]:
                    g[i, yu] = normal_or_zero(hit[r])
                else:
                    g[i, yu] = normal_or_zero(g[i, yu] - hit[r])
            else:  # zeros, also where the row holds NaN (0 * NaN would not be)
                for j in range(Cu):
                    g[i, j] = zero


#: the scratch arrays of one task of the few-classes kernels
_TileFields = collections.namedtuple("_TileFields", "tile m s total x_y scale hit floor w_y kept rw")


@jit
def _small_c_rows(x: AnyArray, g: AnyArray, want_grad: bool, target: IndexArray, weight: Float64Array,
                  ignore_index: int, z: float, inv_denom: float, row_weight: Float64Array, row_loss: Float64Array,
                  lse_out: Float64Array, lo: IntScalar, hi: IntScalar) -> None:
    wide_vectors()
    C = x.shape[1]
    dt = x.dtype
    t = _TileFields(np.empty((C, BLOCK_ROWS), dtype=dt), np.empty(BLOCK_ROWS, dtype=dt),
                    np.empty(BLOCK_ROWS, dtype=dt), np.empty(BLOCK_ROWS, dtype=dt), np.empty(BLOCK_ROWS, dtype=dt),
                    np.empty(BLOCK_ROWS, dtype=dt), np.empty(BLOCK_ROWS, dtype=dt), np.empty(BLOCK_ROWS, dtype=dt),
                    np.empty(BLOCK_ROWS, dtype=np.float64), np.empty(BLOCK_ROWS, dtype=np.bool_),
                    np.empty(BLOCK_ROWS, dtype=np.float64))
    for r0 in range(lo, hi, BLOCK_ROWS):
        _small_c_block(x, g, want_grad, target, weight, ignore_index, z, inv_denom, row_weight, row_loss, lse_out,
                       r0, min(BLOCK_ROWS, hi - r0), t)


@jit
def softmax_ce_int_small_serial(x: AnyArray, target: IndexArray, weight: Float64Array, ignore_index: int, z: float,
                                inv_denom: float, row_weight: Float64Array, grad: AnyArray, row_loss: Float64Array,
                                lse_out: Float64Array) -> None:
    """Class indices, ``C < SMALL_C``, no label smoothing / softcap / eps; ``grad`` may be ``x``."""
    want_grad = grad.shape[0] == x.shape[0]
    _small_c_rows(x, grad, want_grad, target, weight, ignore_index, z, inv_denom, row_weight, row_loss, lse_out,
                  np.int64(0), np.int64(x.shape[0]))


@jit_parallel
def softmax_ce_int_small_parallel(x: AnyArray, target: IndexArray, weight: Float64Array, ignore_index: int, z: float,
                                  inv_denom: float, row_weight: Float64Array, grad: AnyArray, row_loss: Float64Array,
                                  lse_out: Float64Array) -> None:
    """As :func:`softmax_ce_int_small_serial`, one task per ``_TASK_ROWS`` rows."""
    want_grad = grad.shape[0] == x.shape[0]
    N = x.shape[0]
    for task in prange((N + _TASK_ROWS - 1) // _TASK_ROWS):
        lo, hi = chunk_bounds(task, _TASK_ROWS, N)
        _small_c_rows(x, grad, want_grad, target, weight, ignore_index, z, inv_denom, row_weight, row_loss, lse_out,
                      lo, hi)


@jit
def int_target_denominator(target: IndexArray, weight: Float64Array, ignore_index: int, num_classes: int,
                           row_weight: Float64Array) -> tuple[int, float]:
    """``(first bad position or -1, sum of row_weight[i] * weight[target[i]] over kept samples)``.

    ``row_weight`` as in the kernels (empty: all 1); a row of weight 0
    (``where=False``) is not kept, and its class index is not checked.
    Run before any kernel writes, so a bad class index raises with nothing
    half-written.
    """
    total = 0.0
    for i in range(target.shape[0]):
        y = target[i]
        rw = sample_weight_of(row_weight, i)
        if y == ignore_index or rw == 0.0:
            continue
        if y < 0 or y >= num_classes:
            return i, total
        total += rw * weight[y]
    return -1, total


# ------------------------------------------------------ half-precision logits
# The float32 row code above, on rows converted a few at a time (see _rows.py).


@jit
def _int_half_task(xh: NDArray[np.uint16], kind: int, g: AnyArray, lo: IntScalar, hi: IntScalar, target: IndexArray,
                   weight: Float64Array, ignore_index: int, ls: float, z: float, softcap: float, eps: float,
                   inv_denom: float, row_weight: Float64Array, row_loss: Float64Array, lse_out: Float64Array) -> None:
    """Rows ``lo:hi`` of half logits with class indices: the few-classes tile or the row kernel, in float32."""
    wide_vectors()
    C = xh.shape[1]
    want_grad = g.shape[0] == xh.shape[0]
    sub = half_sub_rows(C)
    scratch = np.empty((sub, C), dtype=np.float32)
    small = C < SMALL_C and ls == 0.0 and softcap == 0.0 and eps == 0.0
    for a in range(lo, hi, sub):
        b = min(a + sub, hi)
        xs = scratch_rows(g, scratch, a, b)
        half_rows_to_float32(xh, kind, a, b, xs)
        if small:
            _small_c_rows(xs, xs, want_grad, target[a:b], weight, ignore_index, z, inv_denom,
                          rows_of(row_weight, a, b), row_loss[a:b], rows_of(lse_out, a, b), np.int64(0),
                          np.int64(b - a))
        else:
            _int_rows(xs, None, np.int64(0), np.int64(b - a), xh, np.int64(b), want_grad, target[a:b], weight,
                      ignore_index, ls, z, softcap, eps, inv_denom, rows_of(row_weight, a, b), row_loss[a:b],
                      rows_of(lse_out, a, b))
        if want_grad:
            float32_rows_to_half(xs, kind, g, a, b)


@jit
def softmax_ce_int_half_serial(xh: NDArray[np.uint16], kind: int, target: IndexArray, weight: Float64Array,
                               ignore_index: int, ls: float, z: float, softcap: float, eps: float, inv_denom: float,
                               row_weight: Float64Array, grad: AnyArray, row_loss: Float64Array,
                               lse_out: Float64Array) -> None:
    _int_half_task(xh, kind, grad, np.int64(0), np.int64(xh.shape[0]), target, weight, ignore_index, ls, z, softcap,
                   eps, inv_denom, row_weight, row_loss, lse_out)


@jit_parallel
def softmax_ce_int_half_parallel(xh: NDArray[np.uint16], kind: int, target: IndexArray, weight: Float64Array,
                                 ignore_index: int, ls: float, z: float, softcap: float, eps: float, inv_denom: float,
                                 row_weight: Float64Array, grad: AnyArray, row_loss: Float64Array,
                                 lse_out: Float64Array) -> None:
    n, rows = half_tasks(xh.shape[0], xh.shape[1])
    for k in prange(n):
        lo, hi = chunk_bounds(k, rows, xh.shape[0])
        _int_half_task(xh, kind, grad, lo, hi, target, weight, ignore_index, ls, z, softcap, eps, inv_denom,
                       row_weight, row_loss, lse_out)


@jit
def _prob_half_task(xh: NDArray[np.uint16], kind: int, g: AnyArray, lo: IntScalar, hi: IntScalar, target: AnyArray,
                    weight: Float64Array, ls: float, z: float, softcap: float, eps: float, inv_denom: float,
                    row_weight: Float64Array, row_loss: Float64Array, lse_out: Float64Array) -> None:
    """Rows ``lo:hi`` of half logits with float32 probability targets."""
    wide_vectors()
    C = xh.shape[1]
    want_grad = g.shape[0] == xh.shape[0]
    sub = half_sub_rows(C)
    scratch = np.empty((sub, C), dtype=np.float32)
    tscratch = np.empty((sub, C), dtype=np.float32)
    for a in range(lo, hi, sub):
        b = min(a + sub, hi)
        xs = scratch_rows(g, scratch, a, b)
        half_rows_to_float32(xh, kind, a, b, xs)
        _prob_rows(xs, None, np.int64(0), np.int64(b - a), xh, np.int64(b), want_grad,
                   target_rows(target, tscratch, kind, a, b), weight, ls, z, softcap, eps, inv_denom,
                   rows_of(row_weight, a, b), row_loss[a:b], rows_of(lse_out, a, b))
        if want_grad:
            float32_rows_to_half(xs, kind, g, a, b)


@jit
def softmax_ce_prob_half_serial(xh: NDArray[np.uint16], kind: int, target: AnyArray, weight: Float64Array, ls: float,
                                z: float, softcap: float, eps: float, inv_denom: float, row_weight: Float64Array,
                                grad: AnyArray, row_loss: Float64Array, lse_out: Float64Array) -> None:
    _prob_half_task(xh, kind, grad, np.int64(0), np.int64(xh.shape[0]), target, weight, ls, z, softcap, eps,
                    inv_denom, row_weight, row_loss, lse_out)


@jit_parallel
def softmax_ce_prob_half_parallel(xh: NDArray[np.uint16], kind: int, target: AnyArray, weight: Float64Array, ls: float,
                                  z: float, softcap: float, eps: float, inv_denom: float, row_weight: Float64Array,
                                  grad: AnyArray, row_loss: Float64Array, lse_out: Float64Array) -> None:
    n, rows = half_tasks(xh.shape[0], xh.shape[1])
    for k in prange(n):
        lo, hi = chunk_bounds(k, rows, xh.shape[0])
        _prob_half_task(xh, kind, grad, lo, hi, target, weight, ls, z, softcap, eps, inv_denom, row_weight,
                        row_loss, lse_out)


#: the drivers as sets (serial, parallel, in place serial, in place parallel)
INT = KernelSet(softmax_ce_int_serial, softmax_ce_int_parallel,
                softmax_ce_int_inplace_serial, softmax_ce_int_inplace_parallel,
                HalfKernels(softmax_ce_int_half_serial, softmax_ce_int_half_parallel))
PROB = KernelSet(softmax_ce_prob_serial, softmax_ce_prob_parallel,
                 softmax_ce_prob_inplace_serial, softmax_ce_prob_inplace_parallel,
                 HalfKernels(softmax_ce_prob_half_serial, softmax_ce_prob_half_parallel))
INT_SMALL = KernelSet(softmax_ce_int_small_serial, softmax_ce_int_small_parallel, None, None)
