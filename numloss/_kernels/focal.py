"""Fused focal-loss kernels: loss and gradient in one pass per element / row.

Sigmoid focal loss (RetinaNet; ``torchvision.ops.sigmoid_focal_loss``), per
element with ``p = sigma(x)``, ``ce = t sp(-x) + (1 - t) sp(x)`` (``sp`` the
softplus, so ``log sigma`` is never formed from a tiny ``sigma``),
``q = 1 - p_t = p (1 - t) + (1 - p) t`` and ``a_t = alpha t + (1 - alpha)(1 - t)``
(1 when alpha weighting is off):

    loss = a_t q**gamma ce
    grad = a_t q**gamma ((p - t) + gamma ce r (1 - 2t)) * inv_denom,   r = p (1 - p) / q

``r`` folds the ``q**(gamma - 1)`` of the chain rule into ``q**gamma``:
``q**(gamma - 1) dq/dx = q**gamma r (1 - 2t)`` with ``0 <= r <= 1``, so the
gradient stays finite for ``gamma < 1`` where ``q**(gamma - 1)`` alone blows
up as ``q -> 0``.  ``q = 0`` only happens for a hard target met exactly
(``p`` rounds to ``t``); there ``r`` takes its limit 1 and ``q**gamma = 0``
(``gamma > 0``).  ``p - t`` is formed as ``p (1 - t) - (1 - p) t`` from the
two separately computed sigmoids, so nothing cancels.

Softmax focal loss, per row with class index ``y``, ``nll = -log p_y`` and
``u = 1 - p_y = -expm1(-nll)`` (the public wrapper hands ``gamma = 0`` to
the softmax cross-entropy, so the two agree bit for bit):

    loss = w_y u**gamma nll
    grad = w_y A (p - onehot(y)) * inv_denom,   A = u**gamma (1 + gamma p_y nll / u)

``nll / u -> 1`` as ``u -> 0``, so ``A`` is finite for every ``gamma >= 0``
(``A = 0`` at ``u = 0`` for ``gamma > 0``).

Shapes: ``x`` and ``grad`` are ``(N, C)`` C-contiguous float32/float64
(``grad`` may be ``x`` itself, or ``(0, C)`` when not wanted); the sigmoid
target is ``(N, C)`` in the logits' dtype, the softmax target ``(N,)`` int64;
``row_loss`` is ``(N,)`` float64.
"""

import math
from typing import Any

import numpy as np
from numba import prange
from numpy.typing import NDArray

from .._typing import AnyArray, Float64Array, FloatScalar, IndexArray, IntScalar
from ._jit import jit, jit_inline, jit_parallel
from ._math import (
    cast_like,
    exp,
    exp_nonpositive,
    log1p_unit,
    normal_or_zero,
    rescale_floor,
    select,
    wide_vectors,
)
from ._rows import (
    HalfKernels,
    KernelSet,
    chunk_bounds,
    float32_rows_to_half,
    fused_sums,
    gradient_array,
    half_rows_to_float32,
    half_sub_rows,
    half_tasks,
    prefetch_row_block,
    row_chunks,
    row_sum,
    rows_of,
    sample_weight_of,
    scale_row,
    scratch_rows,
    skip_elements,
    skip_row,
    target_rows,
)
from .softmax import SUM_BLOCK, _exp_sum_block, _row_max, _stored_below_max, _sum_and_log

#: how a row of the sigmoid focal loss forms q**gamma (see _sigmoid_focal_row and _sigmoid_focal_range)
SQUARE, STEPS, HARD, POW = 0, 1, 2, 3

#: gamma = n / 2 for a whole n up to this is formed from a square root and products (the STEPS form)
MAX_HALF_STEPS = 15


@jit_inline
def _sigmoid_focal_range(x: AnyArray, t: AnyArray, i: IntScalar, lo: IntScalar, hi: IntScalar, use_alpha: bool,
                         alpha_t: FloatScalar, gamma: float, gamma_t: FloatScalar, invd: FloatScalar, g: AnyArray,
                         want_grad: bool, el: AnyArray, ei: IntScalar, fused: bool, power: int) -> Any:
    """Sum (row's dtype) of the losses of ``x[i, lo:hi]``; writes ``g`` there when wanted.

    The losses are stored in row ``ei`` of ``el`` (the output's row ``i``,
    or a one-row scratch) and summed in the loop, or unless ``fused`` from
    where they are stored (see :func:`._rows.fused_sums`).
    ``power`` (a literal at each call site) says how the focal factor
    ``q**gamma`` is formed: SQUARE ``q * q`` (the common ``gamma = 2``);
    STEPS for another ``gamma = n / 2`` (``n`` a whole number up to
    MAX_HALF_STEPS: 0, 0.5, 1, 1.5, 2.5, ...) as ``sqrt(q)**(n & 1)
    q**(n & 2) (q**2)**(n & 4) (q**4)**(n & 8)``, the factors chosen by
    loop-invariant selects; HARD ``exp(gamma log q)`` with ``log q`` the
    softplus already computed (exact for targets 0 and 1 only); POW
    ``q**gamma`` (a libm ``pow`` per element: scalar code).  The first three
    keep the loop free of libm calls, so it vectorises.  (SQUARE is not
    folded into STEPS: the out-of-place, in-place and loss-only forms of
    SQUARE agree bit for bit, and with the selects LLVM compiled them to
    code that differed in the last bit for a few short-row elements.)
    """
    x0 = x[i, lo]
    zero = cast_like(0.0, x0)
    one = cast_like(1.0, x0)
    n_halves = np.int64(2.0 * gamma) if power == STEPS else np.int64(0)
    # 1 or 0 for each factor: f x + (1 - f) is x or 1 exactly, fused or not (arithmetic, not a select
    # on a loop-invariant condition, which LLVM compiled differently in the three forms)
    f_root = cast_like(n_halves & 1, x0)
    f_q1 = cast_like((n_halves >> 1) & 1, x0)
    f_q2 = cast_like((n_halves >> 2) & 1, x0)
    f_q4 = cast_like((n_halves >> 3) & 1, x0)
    total = zero
    for j in range(np.uint64(lo), np.uint64(hi)):
        v = x[i, j]
        tj = t[i, j]
        a = v if v >= zero else -v
        e = exp(-a)
        l1p = log1p_unit(e)
        sp_pos = (v if v > zero else zero) + l1p  # log(1 + e^v) = -log(1 - p)
        sp_neg = (-v if v < zero else zero) + l1p  # log(1 + e^-v) = -log p
        inv1pe = one / (one + e)
        p = inv1pe if v >= zero else e * inv1pe
        p_neg = e * inv1pe if v >= zero else inv1pe  # 1 - p without cancellation
        ce = (tj * sp_neg if tj != zero else zero) + ((one - tj) * sp_pos if tj != one else zero)
        q = p * (one - tj) + p_neg * tj
        if power == SQUARE:
            qg = q * q
        elif power == STEPS:
            q2 = q * q
            qg = ((math.sqrt(f_root * q + (one - f_root)) * (f_q1 * q + (one - f_q1)))
                  * ((f_q2 * q2 + (one - f_q2)) * (f_q4 * (q2 * q2) + (one - f_q4))))
        elif power == HARD:  # log q = log(1 - p) = -sp_pos for t = 1, log p = -sp_neg for t = 0
            qg = exp_nonpositive(-gamma_t * (tj * sp_pos + (one - tj) * sp_neg))
        else:
            qg = q**gamma_t
        w = alpha_t * tj + (one - alpha_t) * (one - tj) if use_alpha else one
        wq = w * qg
        lj = wq * ce
        lj = lj if v < np.inf else v - v
        total += lj
        el[ei, j] = lj
        if want_grad:
            r = p * p_neg / q if q > zero else one
            # r = 0 where p = 0 (v = -inf): the limit of ce * r is 0, not inf * 0
            extra = gamma_t * ce * r * (one - tj - tj) if r != zero else zero
            gj = wq * ((p * (one - tj) - p_neg * tj) + extra) * invd
            g[i, j] = gj if v < np.inf else v - v
    return total if fused else row_sum(el, ei, lo, hi, zero)


@jit_inline
def _sigmoid_focal_row(x: AnyArray, t: AnyArray, i: IntScalar, alpha: float, gamma: float, inv_denom: float,
                       g: AnyArray, want_grad: bool, el: AnyArray, want_elem: bool) -> float:
    """Loss (float64 sum) of row ``i``; writes ``g[i]`` when wanted, and the element losses to ``el[i]``
    (``want_elem``) or ``el[0]`` (a scratch row).

    Sums run in the row's dtype over blocks of SUM_BLOCK elements (all SIMD
    lanes), the block sums in float64.
    """
    C = x.shape[1]
    x0 = x[i, 0]
    invd = cast_like(inv_denom, x0)
    gamma_t = cast_like(gamma, x0)
    use_alpha = alpha >= 0.0
    alpha_t = cast_like(alpha if use_alpha else 0.5, x0)
    if gamma == 2.0:
        power = SQUARE
    elif 2.0 * gamma == math.floor(2.0 * gamma) and 2.0 * gamma <= MAX_HALF_STEPS:
        power = STEPS  # gamma = 0, 0.5, 1, ..., 7.5: a square root and products, vectorised
    elif want_elem:
        power = POW  # (reduction="none": the exp form is compiled only for the reduced losses)
    else:
        # targets all 0 or 1 (as in detection): q**gamma from the softplus, vectorised
        soft = cast_like(0.0, x0)
        for j in range(np.uint64(C)):
            tj = t[i, j]
            soft += select((tj != cast_like(0.0, x0)) & (tj != cast_like(1.0, x0)), cast_like(1.0, x0),
                           cast_like(0.0, x0))
        power = HARD if soft == cast_like(0.0, x0) else POW
    total = 0.0
    ei = i if want_elem else 0
    fused = fused_sums(x)
    for j0 in range(0, C, SUM_BLOCK):
        j1 = min(j0 + SUM_BLOCK, C)
        # one call per form, each with a literal ``power``
        if power == SQUARE:
            total += _sigmoid_focal_range(x, t, i, j0, j1, use_alpha, alpha_t, gamma, gamma_t, invd, g, want_grad,
                                          el, ei, fused, SQUARE)
        elif power == STEPS:
            total += _sigmoid_focal_range(x, t, i, j0, j1, use_alpha, alpha_t, gamma, gamma_t, invd, g, want_grad,
                                          el, ei, fused, STEPS)
        elif power == HARD:
            total += _sigmoid_focal_range(x, t, i, j0, j1, use_alpha, alpha_t, gamma, gamma_t, invd, g, want_grad,
                                          el, ei, fused, HARD)
        else:  # libm pow per element: scalar code
            total += _sigmoid_focal_range(x, t, i, j0, j1, use_alpha, alpha_t, gamma, gamma_t, invd, g, want_grad,
                                          el, ei, fused, POW)
    return total


# ------------------------------------------------------------ row-range loops
# As in softmax.py: serial and parallel loops, each out-of-place (``grad`` a
# separate array, or ``(0, C)`` for none) and in place (the gradient
# overwrites ``x``: one array, so LLVM vectorises without a runtime overlap
# check that an aliased out-of-place call would fail).  Rows are indexed as
# ``x[i, j]``: passing ``grad[i] if want_grad else x[i]`` instead hides the
# pointer from LLVM and costs the vectorisation (measured 5x).  Parallel loops
# are distinct functions (Numba's cache does not key on ``parallel``).


# The sigmoid focal kernels keep LLVM's default vector width (no
# _math.wide_vectors): with 512-bit vectors, the out-of-place, in-place and
# loss-only forms put different elements in vector and scalar code, and the
# focal loss's float32 arithmetic (contracted differently there) then differed
# in the last bit between them; with 256-bit vectors they agree bit for bit
# (tests/test_focal.py, test_sigmoid.py).  The wider vectors were 25-32 %
# faster at 4096 x 1000.
@jit
def _sigmoid_focal_rows(x: AnyArray, g_or_none: AnyArray | None, lo: IntScalar, hi: IntScalar, want_grad: bool,
                        target: AnyArray, alpha: float, gamma: float, inv_denom: float, row_weight: Float64Array,
                        elem_loss: AnyArray, row_loss: Float64Array) -> None:
    """Rows ``lo:hi``; ``row_weight`` holds the sample weights (empty: all 1; 0 skips a row unread)."""
    g = gradient_array(x, g_or_none)
    want_elem = elem_loss.shape[0] == x.shape[0]
    el = elem_loss if want_elem else np.empty((1, x.shape[1]), dtype=elem_loss.dtype)
    for i in range(lo, hi):
        rw = sample_weight_of(row_weight, i)
        if rw == 0.0:
            row_loss[i] = 0.0
            skip_elements(g, elem_loss, i, i, want_grad, want_elem)
            continue
        row_loss[i] = rw * _sigmoid_focal_row(x, target, i, alpha, gamma, inv_denom * rw, g, want_grad, el,
                                              want_elem)
        if want_elem and rw != 1.0:
            scale_row(elem_loss, i, rw)


@jit
def sigmoid_focal_serial(x: AnyArray, target: AnyArray, alpha: float, gamma: float, inv_denom: float,
                         row_weight: Float64Array, grad: AnyArray, elem_loss: AnyArray, row_loss: Float64Array) -> None:
    _sigmoid_focal_rows(x, grad, np.int64(0), np.int64(x.shape[0]), grad.shape[0] == x.shape[0], target, alpha,
                        gamma, inv_denom, row_weight, elem_loss, row_loss)


@jit_parallel
def sigmoid_focal_parallel(x: AnyArray, target: AnyArray, alpha: float, gamma: float, inv_denom: float,
                           row_weight: Float64Array, grad: AnyArray, elem_loss: AnyArray,
                           row_loss: Float64Array) -> None:
    want_grad = grad.shape[0] == x.shape[0]
    n, rows = row_chunks(x.shape[0], x.shape[1])
    for k in prange(n):
        lo, hi = chunk_bounds(k, rows, x.shape[0])
        _sigmoid_focal_rows(x, grad, lo, hi, want_grad, target, alpha, gamma, inv_denom, row_weight, elem_loss,
                            row_loss)


@jit
def sigmoid_focal_inplace_serial(x: AnyArray, target: AnyArray, alpha: float, gamma: float, inv_denom: float,
                                 row_weight: Float64Array, elem_loss: AnyArray, row_loss: Float64Array) -> None:
    _sigmoid_focal_rows(x, None, np.int64(0), np.int64(x.shape[0]), True, target, alpha, gamma, inv_denom,
                        row_weight, elem_loss, row_loss)


@jit_parallel
def sigmoid_focal_inplace_parallel(x: AnyArray, target: AnyArray, alpha: float, gamma: float, inv_denom: float,
                                   row_weight: Float64Array, elem_loss: AnyArray, row_loss: Float64Array) -> None:
    n, rows = row_chunks(x.shape[0], x.shape[1])
    for k in prange(n):
        lo, hi = chunk_bounds(k, rows, x.shape[0])
        _sigmoid_focal_rows(x, None, lo, hi, True, target, alpha, gamma, inv_denom, row_weight, elem_loss, row_loss)


@jit_inline
def _softmax_focal_row(x: AnyArray, g: AnyArray, i: IntScalar, want_grad: bool, y: IntScalar, w_y: float, gamma: float,
                       inv_denom: float, ahead: AnyArray, ahead_row: IntScalar, terms: AnyArray) -> tuple[float, float]:
    """``(loss, log-sum-exp)`` (float64) of row ``i`` with class index ``y``; writes ``g[i]`` if ``want_grad``;
    prefetches row ``ahead_row`` of ``ahead``; ``terms`` a ``(1, SUM_BLOCK)`` scratch (see
    :func:`.softmax._softmax_row_int`)."""
    C = x.shape[1]
    x0 = x[i, 0]
    zero = cast_like(0.0, x0)
    x_y = x[i, y]  # read before the row is overwritten in place
    m = _row_max(x, i)
    # exp(x - m) goes straight into the gradient row and is rescaled below
    # (one exponential per element); sums run in the row's dtype over blocks
    # of SUM_BLOCK classes (all SIMD lanes), the block sums in float64.  A
    # masked class stores exp(-inf) = 0 (mark 0): its gradient is 0 * scale.
    below = 0.0
    total = 0.0
    for j0 in range(0, C, SUM_BLOCK):
        prefetch_row_block(ahead, ahead_row, j0, min(j0 + SUM_BLOCK, C))
        sb, tb = _exp_sum_block(x, g, i, np.uint64(j0), np.uint64(min(j0 + SUM_BLOCK, C)), m, want_grad, zero,
                                fused_sums(x), terms)
        below += sb
        total += tb
    if want_grad:  # the stored terms are exp(x - m)
        below = _stored_below_max(g, i, C, C) if total < 1.5 else 0.0
    s, _, log_s = _sum_and_log(below, total, m)  # log s to full relative precision on a confident row
    nll = (m - x_y) + log_s
    u = -math.expm1(-nll)  # 1 - p_y, accurate when p_y is close to 1
    p_y = math.exp(-nll)
    ug = u**gamma
    # p_y nll / u: its limit is 1 at u = 0 (where ug = 0 for gamma > 0) and 0 at p_y = 0 (nll = inf)
    ratio = p_y * nll / u if (u > 0.0 and p_y > 0.0) else 0.0
    coef = w_y * (ug * (1.0 + gamma * ratio))
    loss = w_y * (ug * nll)
    if want_grad:
        scale = cast_like(coef / s * inv_denom, x0)
        floor = rescale_floor(scale)  # (no subnormal products: see _math.rescale_floor)
        for j in range(np.uint64(C)):
            e = g[i, j]
            g[i, j] = select(e < floor, zero, e) * scale
        g[i, y] = normal_or_zero(cast_like(-coef * u * inv_denom, x0))  # (p_y - 1) as -u: no cancellation
    return loss, m + log_s


@jit
def _softmax_focal_rows(x: AnyArray, g_or_none: AnyArray | None, lo: IntScalar, hi: IntScalar, ahead: AnyArray,
                        ahead_shift: IntScalar, want_grad: bool, target: IndexArray, weight: Float64Array,
                        ignore_index: int, gamma: float, inv_denom: float, row_weight: Float64Array,
                        row_loss: Float64Array, lse_out: Float64Array) -> None:
    wide_vectors()
    g = gradient_array(x, g_or_none)
    terms = np.empty((1, SUM_BLOCK), dtype=x.dtype)
    want_lse = lse_out.shape[0] != 0
    for i in range(lo, hi):
        y = target[i]
        rw = sample_weight_of(row_weight, i)
        if y == ignore_index or rw == 0.0:
            skip_row(g, i, want_grad, row_loss, lse_out)
        else:
            loss, lse = _softmax_focal_row(x, g, i, want_grad, y, weight[y], gamma, inv_denom * rw, ahead,
                                           i + ahead_shift, terms)
            row_loss[i] = loss * rw
            if want_lse:
                lse_out[i] = lse


@jit
def softmax_focal_serial(x: AnyArray, target: IndexArray, weight: Float64Array, ignore_index: int, gamma: float,
                         inv_denom: float, row_weight: Float64Array, grad: AnyArray, row_loss: Float64Array,
                         lse_out: Float64Array) -> None:
    _softmax_focal_rows(x, grad, np.int64(0), np.int64(x.shape[0]), x, np.int64(1), grad.shape[0] == x.shape[0], target,
                        weight, ignore_index, gamma, inv_denom, row_weight, row_loss, lse_out)


@jit_parallel
def softmax_focal_parallel(x: AnyArray, target: IndexArray, weight: Float64Array, ignore_index: int, gamma: float,
                           inv_denom: float, row_weight: Float64Array, grad: AnyArray, row_loss: Float64Array,
                           lse_out: Float64Array) -> None:
    want_grad = grad.shape[0] == x.shape[0]
    n, rows = row_chunks(x.shape[0], x.shape[1])
    for k in prange(n):
        lo, hi = chunk_bounds(k, rows, x.shape[0])
        _softmax_focal_rows(x, grad, lo, hi, x, np.int64(1), want_grad, target, weight, ignore_index, gamma, inv_denom,
                            row_weight, row_loss, lse_out)


@jit
def softmax_focal_inplace_serial(x: AnyArray, target: IndexArray, weight: Float64Array, ignore_index: int, gamma: float,
                                 inv_denom: float, row_weight: Float64Array, row_loss: Float64Array,
                                 lse_out: Float64Array) -> None:
    _softmax_focal_rows(x, None, np.int64(0), np.int64(x.shape[0]), x, np.int64(1), True, target, weight, ignore_index,
                        gamma, inv_denom, row_weight, row_loss, lse_out)


@jit_parallel
def softmax_focal_inplace_parallel(x: AnyArray, target: IndexArray, weight: Float64Array, ignore_index: int,
                                   gamma: float, inv_denom: float, row_weight: Float64Array, row_loss: Float64Array,
                                   lse_out: Float64Array) -> None:
    n, rows = row_chunks(x.shape[0], x.shape[1])
    for k in prange(n):
        lo, hi = chunk_bounds(k, rows, x.shape[0])
        _softmax_focal_rows(x, None, lo, hi, x, np.int64(1), True, target, weight, ignore_index, gamma, inv_denom,
                            row_weight, row_loss, lse_out)


# ------------------------------------------------------ half-precision logits (see _rows.py)


@jit
def _sigmoid_focal_half_task(xh: NDArray[np.uint16], fmt: int, g: AnyArray, lo: IntScalar, hi: IntScalar,
                             target: AnyArray, alpha: float, gamma: float, inv_denom: float, row_weight: Float64Array,
                             elem_loss: AnyArray, row_loss: Float64Array) -> None:
    C = xh.shape[1]
    want_grad = g.shape[0] == xh.shape[0]
    sub = half_sub_rows(C)
    scratch = np.empty((sub, C), dtype=np.float32)
    tscratch = np.empty((sub, C), dtype=np.float32)
    for a in range(lo, hi, sub):
        b = min(a + sub, hi)
        xs = scratch_rows(g, scratch, a, b)
        half_rows_to_float32(xh, fmt, a, b, xs)
        _sigmoid_focal_rows(xs, None, np.int64(0), np.int64(b - a), want_grad, target_rows(target, tscratch, fmt, a, b),
                            alpha, gamma, inv_denom,
                            rows_of(row_weight, a, b), rows_of(elem_loss, a, b), row_loss[a:b])
        if want_grad:
            float32_rows_to_half(xs, fmt, g, a, b)


@jit
def sigmoid_focal_half_serial(xh: NDArray[np.uint16], fmt: int, target: AnyArray, alpha: float, gamma: float,
                              inv_denom: float, row_weight: Float64Array, grad: AnyArray, elem_loss: AnyArray,
                              row_loss: Float64Array) -> None:
    _sigmoid_focal_half_task(xh, fmt, grad, np.int64(0), np.int64(xh.shape[0]), target, alpha, gamma, inv_denom,
                             row_weight, elem_loss, row_loss)


@jit_parallel
def sigmoid_focal_half_parallel(xh: NDArray[np.uint16], fmt: int, target: AnyArray, alpha: float, gamma: float,
                                inv_denom: float, row_weight: Float64Array, grad: AnyArray, elem_loss: AnyArray,
                                row_loss: Float64Array) -> None:
    n, rows = half_tasks(xh.shape[0], xh.shape[1])
    for k in prange(n):
        lo, hi = chunk_bounds(k, rows, xh.shape[0])
        _sigmoid_focal_half_task(xh, fmt, grad, lo, hi, target, alpha, gamma, inv_denom, row_weight, elem_loss,
                                 row_loss)


@jit
def _softmax_focal_half_task(xh: NDArray[np.uint16], fmt: int, g: AnyArray, lo: IntScalar, hi: IntScalar,
                             target: IndexArray, weight: Float64Array, ignore_index: int, gamma: float,
                             inv_denom: float, row_weight: Float64Array, row_loss: Float64Array,
                             lse_out: Float64Array) -> None:
    wide_vectors()
    C = xh.shape[1]
    want_grad = g.shape[0] == xh.shape[0]
    sub = half_sub_rows(C)
    scratch = np.empty((sub, C), dtype=np.float32)
    for a in range(lo, hi, sub):
        b = min(a + sub, hi)
        xs = scratch_rows(g, scratch, a, b)
        half_rows_to_float32(xh, fmt, a, b, xs)
        _softmax_focal_rows(xs, None, np.int64(0), np.int64(b - a), xh, np.int64(b), want_grad, target[a:b], weight,
                            ignore_index, gamma, inv_denom, rows_of(row_weight, a, b), row_loss[a:b],
                            rows_of(lse_out, a, b))
        if want_grad:
            float32_rows_to_half(xs, fmt, g, a, b)


@jit
def softmax_focal_half_serial(xh: NDArray[np.uint16], fmt: int, target: IndexArray, weight: Float64Array,
                              ignore_index: int, gamma: float, inv_denom: float, row_weight: Float64Array,
                              grad: AnyArray, row_loss: Float64Array, lse_out: Float64Array) -> None:
    _softmax_focal_half_task(xh, fmt, grad, np.int64(0), np.int64(xh.shape[0]), target, weight, ignore_index, gamma,
                             inv_denom, row_weight, row_loss, lse_out)


@jit_parallel
def softmax_focal_half_parallel(xh: NDArray[np.uint16], fmt: int, target: IndexArray, weight: Float64Array,
                                ignore_index: int, gamma: float, inv_denom: float, row_weight: Float64Array,
                                grad: AnyArray, row_loss: Float64Array, lse_out: Float64Array) -> None:
    n, rows = half_tasks(xh.shape[0], xh.shape[1])
    for k in prange(n):
        lo, hi = chunk_bounds(k, rows, xh.shape[0])
        _softmax_focal_half_task(xh, fmt, grad, lo, hi, target, weight, ignore_index, gamma, inv_denom, row_weight,
                                 row_loss, lse_out)


#: the drivers as sets (serial, parallel, in place serial, in place parallel)
SIGMOID = KernelSet(sigmoid_focal_serial, sigmoid_focal_parallel,
                    sigmoid_focal_inplace_serial, sigmoid_focal_inplace_parallel,
                    HalfKernels(sigmoid_focal_half_serial, sigmoid_focal_half_parallel))
SOFTMAX = KernelSet(softmax_focal_serial, softmax_focal_parallel,
                    softmax_focal_inplace_serial, softmax_focal_inplace_parallel,
                    HalfKernels(softmax_focal_half_serial, softmax_focal_half_parallel))
