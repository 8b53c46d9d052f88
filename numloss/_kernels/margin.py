"""Fused margin softmax kernels (CosFace, ArcFace) on cosine similarities.

Per row of cosines ``c`` with class index ``y`` and scale ``s``, the logits
are ``z_j = s c_j`` for ``j != y`` and ``z_y = s phi(c_y)`` with

* CosFace (``kind`` 0): ``phi(c) = c - margin``;
* ArcFace (``kind`` 1): ``phi(c) = cos(arccos c + margin)`` if ``c > th``
  else ``c - mm``, ``th = cos(pi - margin)``, ``mm = sin(pi - margin) margin``
  (insightface's threshold-and-fallback keeps ``phi`` decreasing in the angle);
* ArcFace easy margin (``kind`` 2): ``cos(arccos c + margin)`` if ``c > 0``
  else ``c``.

Then the softmax cross-entropy of ``z`` with PyTorch's class weights and
label smoothing (``q_j = (1 - ls) w_y [j = y] + ls w_j / K [z_j > -inf]``):

    row_loss = sum_j q_j (lse(z) - z_j)
    grad_j   = s (Q p_j - q_j) * inv_denom        (j != y),   Q = sum_j q_j
    grad_y   = s phi'(c_y) (Q p_y - q_y) * inv_denom

For ArcFace the target cosine is clamped into [-1, 1] before ``arccos``
(the derivative of the clamp is 0 outside, 1 inside and at +-1, as
``torch.clamp``), and ``cos(theta + m) = c cos m - sqrt(1 - c^2) sin m`` with
``phi'(c) = cos m + sin m c / sqrt(1 - c^2)``.  At ``c = 1`` exactly that
derivative is infinite; the kernel uses ``max(sqrt(1 - c^2), sin_floor)``
where ``sin_floor`` is ``sqrt(1 - c^2)`` at the largest cosine below 1 that
the logits' dtype can represent, so the derivative is exact at every
representable cosine except 1, where it takes the value of its neighbour.
Non-target cosines enter as ``s c`` unchanged (a ``-inf`` masks the class, as
in the softmax cross-entropy); a NaN or ``+inf`` anywhere makes the row NaN.

Shapes: ``x`` and ``grad`` ``(N, C)`` C-contiguous float32/float64 (``grad``
may be ``x``, or ``(0, C)`` when not wanted); ``target`` ``(N,)`` int64;
``weight`` ``(C,)`` float64; ``row_loss`` ``(N,)`` float64.
"""

import math
from typing import Any

import numpy as np
from numba import prange
from numpy.typing import NDArray

from .._typing import AnyArray, Float64Array, FloatScalar, IndexArray, IntScalar
from ._jit import jit, jit_inline, jit_parallel
from ._math import cast_like, exp_nonpositive, maxnum, normal_or_zero, rescale_floor, select
from ._rows import (
    HalfKernels,
    KernelSet,
    all_ones,
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
    terms_sum,
)

#: classes per float32/float64 partial sum of exponentials (then summed in float64)
SUM_BLOCK = 512

COSFACE = 0
ARCFACE = 1
ARCFACE_EASY = 2


@jit_inline
def _target_phi(c: float, kind: int, margin: float, cos_m: float, sin_m: float, th: float, mm: float,
                sin_floor: float) -> tuple[float, float]:
    """``(phi(c), phi'(c))`` in float64 for the target cosine ``c``."""
    if kind == COSFACE:
        return c - margin, 1.0
    if not c < np.inf:  # NaN or +inf
        return c - c, c - c
    if c == -np.inf:
        return c, 1.0  # a masked target: infinite loss, the linear branch's slope
    d_clamp = 1.0 if (c >= -1.0 and c <= 1.0) else 0.0
    cc = -1.0 if c < -1.0 else (1.0 if c > 1.0 else c)
    sin_t = math.sqrt(max((1.0 - cc) * (1.0 + cc), 0.0))
    if (cc > 0.0) if kind == ARCFACE_EASY else (cc > th):
        phi = cc * cos_m - sin_t * sin_m
        d = cos_m + sin_m * cc / max(sin_t, sin_floor)
    else:
        phi = cc if kind == ARCFACE_EASY else cc - mm
        d = 1.0
    return phi, d * d_clamp


@jit_inline
def _sum_exp_scaled(x: AnyArray, g: AnyArray, i: IntScalar, lo: IntScalar, hi: IntScalar, st: FloatScalar,
                    m: FloatScalar, store: bool, masked_mark: FloatScalar, fused: bool, terms: AnyArray) -> Any:
    """``sum_{lo <= j < hi} exp(st x[i, j] - m)`` in the row's dtype (``hi - lo <= SUM_BLOCK``, or no classes
    when ``hi <= lo``).

    With ``store`` the terms are written to ``g[i]``, with ``masked_mark``
    (negative, or 0) in place of a masked (``-inf``) class.  Unless ``fused``
    (:func:`._rows.fused_sums`), the sum taken in the storing loop is
    replaced by the sum of the stored terms (:func:`._rows.terms_sum`), and
    without ``store`` the terms go to the scratch row ``terms[0]`` to be
    summed the same way.
    """
    zero = cast_like(0.0, st)
    sb = zero
    if store:
        for j in range(np.uint64(lo), np.uint64(hi)):
            v = x[i, j]
            e = exp_nonpositive(v * st - m)
            g[i, j] = select(v == -np.inf, masked_mark, e)
            sb += e
        if not fused:
            sb = terms_sum(g, i, lo, hi, zero)
        return sb
    if fused:
        for j in range(np.uint64(lo), np.uint64(hi)):
            sb += exp_nonpositive(x[i, j] * st - m)
        return sb
    n = np.uint64(max(hi - lo, 0))
    for k in range(n):
        terms[0, k] = exp_nonpositive(x[i, lo + k] * st - m)
    return terms_sum(terms, 0, 0, n, zero)


@jit_inline
def _margin_row(x: AnyArray, g: AnyArray, i: IntScalar, want_grad: bool, y: IntScalar, weight: Float64Array, ls: float,
                scale: float, kind: int, margin: float, cos_m: float, sin_m: float, th: float, mm: float,
                sin_floor: float, inv_denom: float, ahead: AnyArray, ahead_row: IntScalar,
                terms: AnyArray, unit_weights: bool) -> tuple[float, float]:
    """``(loss, log-sum-exp of the margin logits)`` (float64) of row ``i`` with class index ``y``; writes
    ``g[i]`` if ``want_grad``; prefetches row ``ahead_row`` of ``ahead`` (see
    :func:`.softmax._softmax_row_int`); ``terms`` a ``(1, SUM_BLOCK)`` scratch; ``unit_weights``: every
    class weight is 1 (label smoothing then reads no weight)."""
    C = x.shape[1]
    x0 = x[i, 0]
    zero = cast_like(0.0, x0)
    ninf = cast_like(-np.inf, x0)
    st = cast_like(scale, x0)
    x_y_raw = x[i, y]  # read before an in-place pass overwrites the row
    phi, dphi = _target_phi(np.float64(x_y_raw), kind, margin, cos_m, sin_m, th, mm, sin_floor)
    zy = scale * phi
    zy_t = cast_like(zy, x0)
    # Loops over the classes other than y run as two plain ranges, [0, y) and
    # (y, C): a per-element "j != y" select keeps LLVM from vectorising them.
    mo = ninf
    for j in range(np.uint64(y)):
        mo = maxnum(mo, x[i, j])
    for j in range(np.uint64(y + 1), np.uint64(C)):
        mo = maxnum(mo, x[i, j])
    m = maxnum(mo * st, zy_t)

    # exp(z - m) goes straight into the gradient row (-1 marking a masked
    # class under label smoothing) and is rescaled below: one exponential per
    # element; sums run in the row's dtype over blocks of SUM_BLOCK classes,
    # the block sums in float64.
    store = want_grad
    masked_mark = cast_like(-1.0 if ls > 0.0 else 0.0, x0)
    # the target's term in float64 from the float64 zy, the same zy as in nll below: with
    # exp(zy_t - m) (zy rounded to the row's dtype) a confident float32 row's loss was off by
    # half an ulp of zy and could come out negative
    m64 = np.float64(m)
    k_unmasked = 0.0
    w_unmasked = 0.0
    w_dist = 0.0  # sum over unmasked j of w_j (m - z_j), in float64
    if ls > 0.0:
        # over every class as if z_y were s x_y (one branch-free loop, vectorised; before
        # the exponentials' pass, which may overwrite x in place), then the target's term swapped for z_y's
        if unit_weights:
            for j0 in range(0, C, SUM_BLOCK):
                dk, dd = distance_sums(x, i, j0, min(j0 + SUM_BLOCK, C), st, m, m64)
                k_unmasked += dk
                w_dist += dd
            w_unmasked = k_unmasked
        else:
            for j in range(np.uint64(C)):
                v = x[i, j]
                unmasked = v > -np.inf
                wj = weight[j]
                k_unmasked += select(unmasked, 1.0, 0.0)
                w_unmasked += select(unmasked, wj, 0.0)
                w_dist += select(unmasked, wj * (m64 - np.float64(v * st)), 0.0)
        w_y = weight[y]
        if x_y_raw > -np.inf:
            k_unmasked -= 1.0
            w_unmasked -= w_y
            w_dist -= w_y * (m64 - np.float64(x_y_raw * st))
        if zy > -np.inf:
            k_unmasked += 1.0
            w_unmasked += w_y
            w_dist += w_y * (m64 - zy)
    s = 0.0  # the classes other than y; the target's term exp(zy - m) is added below
    fused = fused_sums(x)
    for j0 in range(0, C, SUM_BLOCK):
        j1 = min(j0 + SUM_BLOCK, C)
        prefetch_row_block(ahead, ahead_row, j0, j1)
        s += _sum_exp_scaled(x, g, i, j0, min(j1, y), st, m, store, masked_mark, fused, terms) + _sum_exp_scaled(
            x, g, i, max(j0, y + 1), j1, st, m, store, masked_mark, fused, terms)
    # log(exp(zy - m) + s) as log1p(expm1(zy - m) + s): when the target is the maximum
    # (zy - m is 0, or the rounding of zy to the row's dtype) the small part s stays exact
    s_minus_1 = math.expm1(zy - m64) + s
    s = 1.0 + s_minus_1
    log_s = math.log1p(s_minus_1)
    nll = (m64 - zy) + log_s
    w_y = weight[y]
    ls_over_k = ls / k_unmasked if ls > 0.0 else 0.0
    loss = (1.0 - ls) * w_y * nll
    if ls > 0.0:
        loss += ls_over_k * (w_dist + log_s * w_unmasked)

    if want_grad:
        coef_total = (1.0 - ls) * w_y + ls_over_k * w_unmasked
        sc = cast_like(coef_total / s * inv_denom * scale, x0)
        if ls == 0.0:
            floor = rescale_floor(sc)  # (no subnormal products: see _math.rescale_floor)
            for j in range(np.uint64(C)):
                e = g[i, j]
                g[i, j] = select(e < floor, zero, e) * sc
        else:
            smooth = cast_like(ls_over_k * inv_denom * scale, x0)
            masked_g = zero * sc  # 0, or NaN for a NaN row, as 0 * sc elsewhere
            if unit_weights:
                for j in range(np.uint64(C)):
                    e = g[i, j]
                    g[i, j] = select(e < zero, masked_g, e * sc - smooth)
            else:
                for j in range(np.uint64(C)):
                    e = g[i, j]
                    g[i, j] = select(e < zero, masked_g, e * sc - smooth * cast_like(weight[j], x0))
        # the target column, in float64 from the saved target logit (x[i, y] may be overwritten)
        # Q p_y - q_y with p_y - 1 = -u = expm1(-nll): no cancellation as p_y -> 1
        p_y = math.exp(-nll)
        dz_y = (1.0 - ls) * w_y * math.expm1(-nll)
        if ls > 0.0:
            dz_y += ls_over_k * (w_unmasked * p_y - (w_y if zy > -np.inf else 0.0))
        g[i, y] = normal_or_zero(cast_like(dz_y * inv_denom * scale * dphi, x0))
    return loss, m64 + log_s


# The margin kernels keep LLVM's default vector width (no _math.wide_vectors):
# their exponentials run over two ranges split at the target class, whose
# scalar remainders grow with 512-bit vectors (ArcFace at 4096 x 1000 was 5 %
# slower with them, ArcFace with label smoothing 4 % faster).
@jit
def _margin_rows(x: AnyArray, g_or_none: AnyArray | None, lo: IntScalar, hi: IntScalar, ahead: AnyArray,
                 ahead_shift: IntScalar, want_grad: bool, target: IndexArray, weight: Float64Array, ignore_index: int,
                 ls: float, scale: float, kind: int, margin: float, cos_m: float, sin_m: float, th: float, mm: float,
                 sin_floor: float, inv_denom: float, row_weight: Float64Array, row_loss: Float64Array,
                 lse_out: Float64Array) -> None:
    """Rows ``lo:hi``; the gradient goes to ``g_or_none``, or to ``x`` in place when it is ``None`` (``ahead``
    and ``ahead_shift`` as for :func:`.softmax._int_rows`)."""
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
            loss, lse = _margin_row(x, g, i, want_grad, y, weight, ls, scale, kind, margin, cos_m, sin_m, th,
                                    mm, sin_floor, inv_denom * rw, ahead, i + ahead_shift, terms, unit_weights)
            row_loss[i] = loss * rw
            if want_lse:
                lse_out[i] = lse


# The four drivers only call the row function (see _rows.py).


@jit
def margin_ce_serial(x: AnyArray, target: IndexArray, weight: Float64Array, ignore_index: int, ls: float, scale: float,
                     kind: int, margin: float, cos_m: float, sin_m: float, th: float, mm: float, sin_floor: float,
                     inv_denom: float, row_weight: Float64Array, grad: AnyArray, row_loss: Float64Array,
                     lse_out: Float64Array) -> None:
    _margin_rows(x, grad, np.int64(0), np.int64(x.shape[0]), x, np.int64(1), grad.shape[0] == x.shape[0], target,
                 weight, ignore_index, ls, scale, kind, margin, cos_m, sin_m, th, mm, sin_floor, inv_denom, row_weight,
                 row_loss, lse_out)


@jit_parallel
def margin_ce_parallel(x: AnyArray, target: IndexArray, weight: Float64Array, ignore_index: int, ls: float,
                       scale: float, kind: int, margin: float, cos_m: float, sin_m: float, th: float, mm: float,
                       sin_floor: float, inv_denom: float, row_weight: Float64Array, grad: AnyArray,
                       row_loss: Float64Array, lse_out: Float64Array) -> None:
    want_grad = grad.shape[0] == x.shape[0]
    n, rows = row_chunks(x.shape[0], x.shape[1])
    for k in prange(n):
        lo, hi = chunk_bounds(k, rows, x.shape[0])
        _margin_rows(x, grad, lo, hi, x, np.int64(1), want_grad, target, weight, ignore_index, ls, scale, kind, margin,
                     cos_m, sin_m, th, mm, sin_floor, inv_denom, row_weight, row_loss, lse_out)


@jit
def margin_ce_inplace_serial(x: AnyArray, target: IndexArray, weight: Float64Array, ignore_index: int, ls: float,
                             scale: float, kind: int, margin: float, cos_m: float, sin_m: float, th: float, mm: float,
                             sin_floor: float, inv_denom: float, row_weight: Float64Array, row_loss: Float64Array,
                             lse_out: Float64Array) -> None:
    _margin_rows(x, None, np.int64(0), np.int64(x.shape[0]), x, np.int64(1), True, target, weight, ignore_index, ls,
                 scale, kind, margin, cos_m, sin_m, th, mm, sin_floor, inv_denom, row_weight, row_loss, lse_out)


@jit_parallel
def margin_ce_inplace_parallel(x: AnyArray, target: IndexArray, weight: Float64Array, ignore_index: int, ls: float,
                               scale: float, kind: int, margin: float, cos_m: float, sin_m: float, th: float, mm: float,
                               sin_floor: float, inv_denom: float, row_weight: Float64Array, row_loss: Float64Array,
                               lse_out: Float64Array) -> None:
    n, rows = row_chunks(x.shape[0], x.shape[1])
    for k in prange(n):
        lo, hi = chunk_bounds(k, rows, x.shape[0])
        _margin_rows(x, None, lo, hi, x, np.int64(1), True, target, weight, ignore_index, ls, scale, kind, margin,
                     cos_m, sin_m, th, mm, sin_floor, inv_denom, row_weight, row_loss, lse_out)


# ------------------------------------------------------ half-precision cosines (see _rows.py)


@jit
def _margin_half_task(xh: NDArray[np.uint16], fmt: int, g: AnyArray, lo: IntScalar, hi: IntScalar, target: IndexArray,
                      weight: Float64Array, ignore_index: int, ls: float, scale: float, kind: int, margin: float,
                      cos_m: float, sin_m: float, th: float, mm: float, sin_floor: float, inv_denom: float,
                      row_weight: Float64Array, row_loss: Float64Array, lse_out: Float64Array) -> None:
    C = xh.shape[1]
    want_grad = g.shape[0] == xh.shape[0]
    sub = half_sub_rows(C)
    scratch = np.empty((sub, C), dtype=np.float32)
    for a in range(lo, hi, sub):
        b = min(a + sub, hi)
        xs = scratch_rows(g, scratch, a, b)
        half_rows_to_float32(xh, fmt, a, b, xs)
        _margin_rows(xs, None, np.int64(0), np.int64(b - a), xh, np.int64(b), want_grad, target[a:b], weight,
                     ignore_index, ls, scale, kind, margin, cos_m, sin_m, th, mm, sin_floor, inv_denom,
                     rows_of(row_weight, a, b), row_loss[a:b], rows_of(lse_out, a, b))
        if want_grad:
            float32_rows_to_half(xs, fmt, g, a, b)


@jit
def margin_ce_half_serial(xh: NDArray[np.uint16], fmt: int, target: IndexArray, weight: Float64Array, ignore_index: int,
                          ls: float, scale: float, kind: int, margin: float, cos_m: float, sin_m: float, th: float,
                          mm: float, sin_floor: float, inv_denom: float, row_weight: Float64Array, grad: AnyArray,
                          row_loss: Float64Array, lse_out: Float64Array) -> None:
    _margin_half_task(xh, fmt, grad, np.int64(0), np.int64(xh.shape[0]), target, weight, ignore_index, ls, scale,
                      kind, margin, cos_m, sin_m, th, mm, sin_floor, inv_denom, row_weight, row_loss, lse_out)


@jit_parallel
def margin_ce_half_parallel(xh: NDArray[np.uint16], fmt: int, target: IndexArray, weight: Float64Array,
                            ignore_index: int, ls: float, scale: float, kind: int, margin: float, cos_m: float,
                            sin_m: float, th: float, mm: float, sin_floor: float, inv_denom: float,
                            row_weight: Float64Array, grad: AnyArray, row_loss: Float64Array,
                            lse_out: Float64Array) -> None:
    n, rows = half_tasks(xh.shape[0], xh.shape[1])
    for k in prange(n):
        lo, hi = chunk_bounds(k, rows, xh.shape[0])
        _margin_half_task(xh, fmt, grad, lo, hi, target, weight, ignore_index, ls, scale, kind, margin, cos_m, sin_m,
                          th, mm, sin_floor, inv_denom, row_weight, row_loss, lse_out)


#: the drivers as sets (serial, parallel, in place serial, in place parallel)
MARGIN = KernelSet(margin_ce_serial, margin_ce_parallel, margin_ce_inplace_serial, margin_ce_inplace_parallel,
                   HalfKernels(margin_ce_half_serial, margin_ce_half_parallel))
