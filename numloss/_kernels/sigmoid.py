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
    grad = w (sigma(x) (pw t + 1 - t) - pw t) * inv_denom

A term whose coefficient is 0 is skipped (``t = 0`` with ``x = -inf`` is a
loss of 0, not ``0 * inf``), and a ``+inf`` or NaN logit gives NaN for the
loss and the gradient.  With ``eps > 0`` (the seed's clipped mode)
``log sigma`` and ``log(1 - sigma)`` are clipped to ``[log eps,
log(1 - eps)]`` and ``sigma`` to ``[eps, 1 - eps]`` in the gradient.
"""

import math

import numpy as np
from numba import prange

from ._jit import jit, jit_inline, jit_parallel
from ._math import cast_like, exp, log1p_unit


@jit_inline
def _sigmoid_ce_row(x, t, wrow, wcols, pwrow, pwcols, eps, inv_denom, g, want_grad, el, want_elem):
    """Loss (float64 sum) of one row; writes ``g`` and ``el`` when wanted."""
    x0 = x[0]
    zero = cast_like(0.0, x0)
    one = cast_like(1.0, x0)
    invd = cast_like(inv_denom, x0)
    clipped = eps > 0.0
    epst = cast_like(eps, x0)
    hi_p = one - epst
    log_lo = cast_like(math.log(eps) if clipped else 0.0, x0)
    log_hi = cast_like(math.log1p(-eps) if clipped else 0.0, x0)
    total = 0.0
    for j in range(x.shape[0]):
        v = x[j]
        tj = cast_like(t[j], x0)
        w = wrow[j] if wcols > 1 else wrow[0]
        pw = pwrow[j] if pwcols > 1 else pwrow[0]
        a = v if v >= zero else -v
        e = exp(-a)
        l1p = log1p_unit(e)
        sp_pos = (v if v > zero else zero) + l1p  # log(1 + e^v)
        sp_neg = (-v if v < zero else zero) + l1p  # log(1 + e^-v)
        inv1pe = one / (one + e)
        sig = inv1pe if v >= zero else e * inv1pe
        if clipped:
            lp = -sp_neg
            lp = log_lo if lp < log_lo else lp
            lp = log_hi if lp > log_hi else lp
            lq = -sp_pos
            lq = log_lo if lq < log_lo else lq
            lq = log_hi if lq > log_hi else lq
            sp_neg = -lp
            sp_pos = -lq
            sig = epst if sig < epst else sig
            sig = hi_p if sig > hi_p else sig
        pt = pw * tj
        term_pos = pt * sp_neg if tj != zero else zero
        term_neg = (one - tj) * sp_pos if tj != one else zero
        lj = w * (term_pos + term_neg)
        lj = lj if v < np.inf else v - v
        total += lj
        if want_elem:
            el[j] = lj
        if want_grad:
            gj = w * (sig * (pt + one - tj) - pt) * invd
            g[j] = gj if v < np.inf else v - v
    return total


@jit
def sigmoid_ce_serial(x, target, weight, pos_weight, eps, inv_denom, grad, elem_loss, row_loss):
    want_grad = grad.shape[0] == x.shape[0]
    want_elem = elem_loss.shape[0] == x.shape[0]
    wr, wc = weight.shape
    pr, pc = pos_weight.shape
    for i in range(x.shape[0]):
        row_loss[i] = _sigmoid_ce_row(
            x[i], target[i], weight[i if wr > 1 else 0], wc, pos_weight[i if pr > 1 else 0], pc, eps, inv_denom,
            grad[i] if want_grad else x[i], want_grad, elem_loss[i] if want_elem else x[i], want_elem,
        )


@jit_parallel
def sigmoid_ce_parallel(x, target, weight, pos_weight, eps, inv_denom, grad, elem_loss, row_loss):
    want_grad = grad.shape[0] == x.shape[0]
    want_elem = elem_loss.shape[0] == x.shape[0]
    wr, wc = weight.shape
    pr, pc = pos_weight.shape
    for i in prange(x.shape[0]):
        row_loss[i] = _sigmoid_ce_row(
            x[i], target[i], weight[i if wr > 1 else 0], wc, pos_weight[i if pr > 1 else 0], pc, eps, inv_denom,
            grad[i] if want_grad else x[i], want_grad, elem_loss[i] if want_elem else x[i], want_elem,
        )
