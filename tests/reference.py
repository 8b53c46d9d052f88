"""The plain float64 NumPy reference every numloss test compares against.

Deliberately slow and obvious: straight from the formulas in SPEC.md, with
whole-array NumPy (no loops over classes unless clearer), in float64.  Each
function returns ``(loss, grad)`` where ``grad`` is the gradient of ``loss``
(of ``loss.sum()`` for ``reduction="none"``), computed analytically; the
tests check these gradients against central finite differences separately.
"""

import numpy as np


def _reduce(per_sample, reduction, denom, normalizer):
    if reduction == "none":
        return per_sample, 1.0
    if reduction == "sum":
        return per_sample.sum(), 1.0
    d = np.float64(normalizer if normalizer is not None else denom)  # (0 -> inf/NaN, not ZeroDivisionError)
    with np.errstate(invalid="ignore", divide="ignore"):
        return per_sample.sum() / d, 1.0 / d


def _times(q, v):
    """q * v with 0 * inf = 0 (a zero target on a masked class contributes 0)."""
    with np.errstate(invalid="ignore"):
        return np.where(q == 0, 0.0, q * v)


def _softmax_parts(x):
    """Per row of ``x`` (N, C): ``m = max``, ``log s`` and ``s - 1`` with ``s = sum_c exp(x_c - m)``,
    and a mask of the class at the maximum of rows that have one.

    ``s - 1`` is summed without the maximum's term (exactly 1), so a confident
    row's small loss keeps its relative precision (``log(1 + small)`` rounds it
    away); at that class ``p - 1 = -(s - 1) / s``.
    """
    m = np.max(x, axis=1, keepdims=True)
    e = np.exp(x - m)
    at_max = x == m
    n_max = at_max.sum(axis=1, keepdims=True)
    s_minus_1 = np.where(at_max, 0.0, e).sum(axis=1, keepdims=True) + (n_max - 1)
    s_minus_1 = np.where(np.isfinite(m), s_minus_1, np.nan)  # a +inf (or all -inf) row is NaN, as exp(inf - inf)
    return m, np.log1p(s_minus_1), s_minus_1, at_max & (n_max == 1)


def _minus_q(coef, p, q, top, s_minus_1):
    """``coef p - q``, at the class ``top`` as ``coef (p - 1) + (coef - q)`` with ``p - 1 = -(s - 1) / s``."""
    with np.errstate(invalid="ignore"):  # (NaN and inf rows: their NaN is the answer)
        p_minus_1 = -s_minus_1 / (1.0 + s_minus_1)
        return np.where(top, coef * p_minus_1 + (coef - q), coef * p - q)


def softmax_cross_entropy(logits, target, weight=None, ignore_index=-100, label_smoothing=0.0, z_loss=0.0,
                          softcap=None, eps=0.0, axis=-1, reduction="mean", normalizer=None):
    x = np.moveaxis(np.asarray(logits, dtype=np.float64), axis, -1)
    C = x.shape[-1]
    x = x.reshape(-1, C)
    N = x.shape[0]
    w = np.ones(C) if weight is None else np.asarray(weight, dtype=np.float64)
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        if softcap is not None:
            xc = softcap * np.tanh(x / softcap)
            xc = np.where(np.isneginf(x), -np.inf, xc)
            xc = np.where(np.isposinf(x), np.nan, xc)
            dcap = 1.0 - np.tanh(x / softcap) ** 2
        else:
            xc, dcap = x, np.ones_like(x)
        m, log_s, s_minus_1, top = _softmax_parts(xc)
        lse = m + log_s
        # (xc - m) - log_s, not xc - lse: for |logits| ~ 1e38 lse has lost log_s
        logp = (xc - m) - log_s
        p = np.exp(logp)
    unmasked = ~np.isneginf(x)
    K = unmasked.sum(axis=1, keepdims=True)
    t = np.asarray(target)
    if t.dtype.kind in "iu":
        y = t.reshape(-1).astype(np.int64)
        kept = y != ignore_index
        ysafe = np.where(kept, y, 0)
        onehot = np.zeros((N, C))
        onehot[np.arange(N), ysafe] = 1.0
        w_i = w[ysafe] * kept
        with np.errstate(invalid="ignore", divide="ignore"):
            q = (1 - label_smoothing) * onehot * w[ysafe][:, None] + label_smoothing * w * unmasked / K
        q = q * kept[:, None]
        denom = w_i.sum()
    else:
        tt = np.moveaxis(np.asarray(t, dtype=np.float64), axis, -1).reshape(N, C)
        with np.errstate(invalid="ignore", divide="ignore"):
            q = w * ((1 - label_smoothing) * tt + label_smoothing * unmasked / K)
        w_i = np.ones(N)
        kept = np.ones(N, dtype=bool)
        denom = float(N)
    if eps > 0:
        pc = np.clip(p, eps, 1 - eps)
        # log and p - 1 of the clipped p at the maximum from s - 1 (clip(p) - 1 lies in [eps - 1, -eps])
        pc_minus_1 = np.clip(-s_minus_1 / (1.0 + s_minus_1), eps - 1, -eps)
        per = -_times(q, np.where(top, np.log1p(pc_minus_1), np.log(pc))).sum(axis=1)
        coef = q.sum(axis=1, keepdims=True)
        grad = np.where(top, coef * pc_minus_1 + (coef - q), coef * pc - q)
    else:
        per = -_times(q, logp).sum(axis=1)
        coef = q.sum(axis=1, keepdims=True)
        if z_loss:  # (lse**2 may overflow for huge logits: only form it when it is used)
            per = per + z_loss * w_i * lse[:, 0] ** 2 * kept
            coef = coef + 2 * z_loss * (w_i * kept)[:, None] * lse
        grad = _minus_q(coef, p, q, top, s_minus_1) * dcap
    per = np.where(kept, per, 0.0)
    loss, scale = _reduce(per, reduction, denom, normalizer)
    # ignored rows are exactly zero, also when the mean's denominator is 0
    # (an all-ignored batch: scale = inf), as SPEC.md says
    with np.errstate(invalid="ignore"):
        grad = np.where(kept[:, None], grad * scale, 0.0)
    batch_shape = np.moveaxis(np.asarray(logits), axis, -1).shape[:-1]
    if reduction == "none":
        loss = loss.reshape(batch_shape)
    grad = np.moveaxis(grad.reshape(batch_shape + (C,)), -1, axis)
    return loss, grad


def sigmoid_cross_entropy(logits, target, weight=None, pos_weight=None, eps=0.0, reduction="mean",
                          normalizer=None):
    x = np.asarray(logits, dtype=np.float64)
    t = np.asarray(target, dtype=np.float64)
    w = np.broadcast_to(1.0 if weight is None else np.asarray(weight, np.float64), x.shape)
    pw = np.broadcast_to(1.0 if pos_weight is None else np.asarray(pos_weight, np.float64), x.shape)
    with np.errstate(invalid="ignore", over="ignore"):
        sig = 1.0 / (1.0 + np.exp(-x))
        log_p = -np.logaddexp(0.0, -x)  # log sigmoid(x)
        log_1mp = -np.logaddexp(0.0, x)  # log(1 - sigmoid(x))
    if eps > 0:
        sig = np.clip(sig, eps, 1 - eps)
        log_p = np.log(np.clip(np.exp(log_p), eps, 1 - eps))
        log_1mp = np.log(np.clip(np.exp(log_1mp), eps, 1 - eps))
    per = -w * (_times(pw * t, log_p) + _times(1 - t, log_1mp))
    grad = w * (sig * (pw * t + 1 - t) - pw * t)
    bad = ~(x < np.inf)
    per = np.where(bad, np.nan, per)
    grad = np.where(bad, np.nan, grad)
    loss, scale = _reduce(per, reduction, float(x.size), normalizer)
    return loss, grad * scale


def linear_cross_entropy(hidden, weight, target, bias=None, weight_classes=None, ignore_index=-100,
                         label_smoothing=0.0, z_loss=0.0, softcap=None, reduction="mean", normalizer=None):
    """Materialising reference: ``logits = hidden @ weight.T + bias``, then softmax CE.

    Returns ``(loss, (d_hidden, d_weight, d_bias))``; ``d_bias`` is None when ``bias`` is.
    """
    h = np.asarray(hidden, dtype=np.float64)
    w = np.asarray(weight, dtype=np.float64)
    D = h.shape[-1]
    h2 = h.reshape(-1, D)
    logits = h2 @ w.T
    if bias is not None:
        logits = logits + np.asarray(bias, dtype=np.float64)
    t = np.asarray(target).reshape(-1)
    loss, g = softmax_cross_entropy(logits, t, weight=weight_classes, ignore_index=ignore_index,
                                    label_smoothing=label_smoothing, z_loss=z_loss, softcap=softcap,
                                    reduction=reduction, normalizer=normalizer)
    # ignored rows contribute nothing (their gradient row is 0 whatever the logits)
    d_hidden = (g @ w).reshape(h.shape)
    d_weight = g.T @ h2
    d_bias = g.sum(axis=0) if bias is not None else None
    if reduction == "none":
        loss = np.asarray(loss).reshape(h.shape[:-1])
    return loss, (d_hidden, d_weight, d_bias)


# ----------------------------------------------------- focal and margin losses (issue 4)


def sigmoid_focal_loss(logits, target, alpha=0.25, gamma=2.0, reduction="mean"):
    """torchvision.ops.sigmoid_focal_loss in float64, with its analytic gradient.

    ``d/dx [a_t ce q**g] = a_t ((p - t) q**g + g q**(g-1) dq/dx ce)``,
    ``dq/dx = p (1 - p) (1 - 2t)``; the second term is taken as its limit 0
    where ``q = 0`` or ``dq/dx = 0``.
    """
    x = np.asarray(logits, dtype=np.float64)
    t = np.asarray(target, dtype=np.float64)
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        p = 1.0 / (1.0 + np.exp(-x))
        one_minus_p = 1.0 / (1.0 + np.exp(x))
        ce = _times(t, np.logaddexp(0.0, -x)) + _times(1 - t, np.logaddexp(0.0, x))
        q = p * (1 - t) + one_minus_p * t
        qg = q**gamma
        a_t = 1.0 if (alpha is None or alpha < 0) else alpha * t + (1 - alpha) * (1 - t)
        per = a_t * ce * qg
        dq = p * one_minus_p * (1 - 2 * t)
        second = np.where((q > 0) & (dq != 0), gamma * q ** (gamma - 1) * dq * ce, 0.0)
        grad = a_t * ((p * (1 - t) - one_minus_p * t) * qg + second)
    bad = ~(x < np.inf)
    per = np.where(bad, np.nan, per)
    grad = np.where(bad, np.nan, grad)
    loss, scale = _reduce(per, reduction, float(x.size), None)
    return loss, grad * scale


def _int_target_rows(logits, target, weight, ignore_index):
    x = np.asarray(logits, dtype=np.float64)
    C = x.shape[-1]
    x2 = x.reshape(-1, C)
    y = np.asarray(target).reshape(-1).astype(np.int64)
    kept = y != ignore_index
    ysafe = np.where(kept, y, 0)
    w = np.ones(C) if weight is None else np.asarray(weight, dtype=np.float64)
    return x2, ysafe, kept, w


def softmax_focal_loss(logits, target, gamma=2.0, weight=None, ignore_index=-100, reduction="mean"):
    """-w_y (1 - p_y)**gamma log p_y, PyTorch's weighted mean, analytic gradient."""
    x, y, kept, w = _int_target_rows(logits, target, weight, ignore_index)
    N, C = x.shape
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        m, log_s, _, _ = _softmax_parts(x)
        p = np.exp((x - m) - log_s)
        logp_y = (x[np.arange(N), y] - m[:, 0]) - log_s[:, 0]  # no cancellation when p_y -> 1
        p_y = np.exp(logp_y)
        u = -np.expm1(logp_y)
        w_y = w[y] * kept
        per = -w_y * u**gamma * logp_y
        # dl/dp_y * p_y = gamma u**(gamma-1) p_y log p_y - u**gamma, with p_y log p_y / u -> -1 at u = 0
        ratio = np.where((u > 0) & (p_y > 0), p_y * -logp_y / u, np.where(u > 0, 0.0, 1.0))
        factor = np.where(u > 0, u**gamma * (1 + gamma * ratio), 1.0 if gamma == 0 else 0.0)
    onehot = np.zeros((N, C))
    onehot[np.arange(N), y] = 1.0
    grad = (w_y * factor)[:, None] * (p - onehot)
    grad[np.arange(N), y] = -(w_y * factor) * u  # p_y - 1 = -u without cancellation
    per = np.where(kept, per, 0.0)
    grad = np.where(kept[:, None], grad, 0.0)
    loss, scale = _reduce(per, reduction, w_y.sum(), None)
    batch_shape = np.shape(logits)[:-1]
    if reduction == "none":
        loss = loss.reshape(batch_shape)
    return loss, (grad * scale).reshape(np.shape(logits))


def _margin_softmax_ce(z, dz, y, kept, w, label_smoothing, reduction, shape):
    """Cross-entropy of logits ``z`` (N, C) as F.cross_entropy; gradient through ``dz = dz/dcosine``."""
    N, C = z.shape
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        m, log_s, s_minus_1, top = _softmax_parts(z)
        logp = (z - m) - log_s
        p = np.exp(logp)
        unmasked = ~np.isneginf(z)
        K = unmasked.sum(axis=1, keepdims=True)
        onehot = np.zeros((N, C))
        onehot[np.arange(N), y] = 1.0
        q = (1 - label_smoothing) * onehot * w[y][:, None] + label_smoothing * w * unmasked / K
        per = -_times(q, logp).sum(axis=1)
        grad = _minus_q(q.sum(axis=1, keepdims=True), p, q, top, s_minus_1) * dz
    w_y = w[y] * kept
    per = np.where(kept, per, 0.0)
    grad = np.where(kept[:, None], grad, 0.0)
    loss, scale = _reduce(per, reduction, w_y.sum(), None)
    if reduction == "none":
        loss = loss.reshape(shape[:-1])
    return loss, (grad * scale).reshape(shape)


def cosface_cross_entropy(cosine, target, scale=30.0, margin=0.35, weight=None, ignore_index=-100,
                          label_smoothing=0.0, reduction="mean"):
    c, y, kept, w = _int_target_rows(cosine, target, weight, ignore_index)
    N, C = c.shape
    onehot = np.zeros((N, C))
    onehot[np.arange(N), y] = 1.0
    z = scale * (c - margin * onehot)
    return _margin_softmax_ce(z, np.full((N, C), scale), y, kept, w, label_smoothing, reduction, np.shape(cosine))


def arcface_phi(c, margin, easy_margin=False, sin_floor=0.0):
    """insightface's target logit cos(arccos c + m) with the threshold fallback, and its derivative."""
    c = np.asarray(c, dtype=np.float64)
    inside = (c >= -1) & (c <= 1)
    cc = np.clip(c, -1.0, 1.0)
    sin_t = np.sqrt(np.maximum((1.0 - cc) * (1.0 + cc), 0.0))  # no cancellation near |c| = 1
    cos_tm = cc * np.cos(margin) - sin_t * np.sin(margin)
    with np.errstate(divide="ignore", invalid="ignore"):
        d_tm = np.cos(margin) + np.sin(margin) * cc / np.maximum(sin_t, sin_floor)
    if easy_margin:
        use = cc > 0
        phi = np.where(use, cos_tm, cc)
    else:
        use = cc > np.cos(np.pi - margin)
        phi = np.where(use, cos_tm, cc - np.sin(np.pi - margin) * margin)
    d = np.where(use, d_tm, 1.0) * inside
    return phi, d


def arcface_cross_entropy(cosine, target, scale=64.0, margin=0.5, easy_margin=False, weight=None,
                          ignore_index=-100, label_smoothing=0.0, reduction="mean", sin_floor=0.0):
    c, y, kept, w = _int_target_rows(cosine, target, weight, ignore_index)
    N, C = c.shape
    rows = np.arange(N)
    phi, dphi = arcface_phi(c[rows, y], margin, easy_margin, sin_floor)
    z = scale * c
    z[rows, y] = scale * phi
    dz = np.full((N, C), scale)
    dz[rows, y] = scale * dphi
    return _margin_softmax_ce(z, dz, y, kept, w, label_smoothing, reduction, np.shape(cosine))


# ----------------------------------------------------- sample weights, row masks, log-sum-exp (issue 15)

#: the losses whose ``sample_weight`` / ``where`` may also be per element (the last axis is not a class axis)
ELEMENTWISE = ("sigmoid_cross_entropy", "sigmoid_focal_loss")


def _factors(sample_weight, where, shape, per_element):
    """``sample_weight * where`` as float64 of ``shape`` (a row loss: the batch shape; an elementwise loss:
    the logits' shape, an array of the batch shape read as one value per row)."""
    f = np.ones(shape)
    for a in (sample_weight, where):
        if a is None:
            continue
        a = np.asarray(a, dtype=np.float64)
        if per_element and a.shape == tuple(shape[:-1]):
            a = a[..., None]
        f = f * np.broadcast_to(a, shape)
    return f


def weighted(name, args, sample_weight=None, where=None, reduction="mean", normalizer=None, **options):
    """``(loss, grad)`` of loss ``name`` with ``sample_weight`` and ``where``, from its unweighted reference.

    The definition written out: a sample (an element, for the elementwise
    losses) of factor ``f = sample_weight * where`` contributes ``f * loss``
    and ``f * grad``; a factor of 0 is not read (its input is replaced by 0
    here before the reference sees it).  "mean" divides by the sum of ``f``
    times the class weight of the target over the kept samples (index
    targets), of ``f`` (probability targets), or of ``f`` over the elements
    (elementwise losses); ``normalizer`` replaces it.  ``grad`` is as the
    reference returns it (a tuple for the linear loss).
    """
    x = np.array(args[0], dtype=np.float64)
    fn = globals()[name]
    if name == "linear_cross_entropy":
        W, t = np.asarray(args[1], np.float64), np.asarray(args[2])
        f = _factors(sample_weight, where, x.shape[:-1], False).reshape(-1)
        h = np.where((f == 0)[:, None], 0.0, x.reshape(-1, x.shape[-1])).reshape(x.shape)  # not read
        b = options.pop("bias", None)
        logits = h.reshape(-1, h.shape[-1]) @ W.T + (0.0 if b is None else np.asarray(b, np.float64))
        wc = options.pop("weight_classes", None)
        t2 = t.reshape(-1, W.shape[0]) if t.dtype.kind == "f" else t.reshape(-1)
        loss, g = weighted("softmax_cross_entropy", (logits, t2), sample_weight=f, reduction=reduction,
                           normalizer=normalizer, weight=wc, **options)
        d_bias = g.sum(axis=0) if b is not None else None
        if reduction == "none":
            loss = loss.reshape(h.shape[:-1])
        return loss, ((g @ W).reshape(h.shape), g.T @ h.reshape(-1, h.shape[-1]), d_bias)
    rest = list(args[1:])
    per_element = name in ELEMENTWISE
    shape = x.shape if per_element else x.shape[:-1]
    f = _factors(sample_weight, where, shape, per_element)
    skip = f == 0
    x[skip if per_element else np.broadcast_to(skip[..., None], x.shape)] = 0.0  # not read
    per, grad = fn(x, *rest, reduction="none", **options)
    per = np.where(skip, 0.0, f * per)
    fg = f if per_element else f[..., None]
    grad = np.where(fg == 0, 0.0, fg * grad)
    if per_element:
        denom = f.sum()
    else:
        t = np.asarray(rest[0])
        if t.dtype.kind == "f":
            denom = f.sum()
        else:
            C = x.shape[-1]
            w = np.ones(C) if options.get("weight") is None else np.asarray(options["weight"], np.float64)
            kept = t != options.get("ignore_index", -100)
            denom = (f * np.where(kept, w[np.where(kept, t, 0)], 0.0)).sum()
    loss, scale = _reduce(per, reduction, denom, normalizer)
    return loss, grad * scale


def log_sum_exp(name, args, **options):
    """Each sample's log-sum-exp of the logits the softmax of loss ``name`` sees (``Aux.lse``), float64.

    The soft-capped logits with ``softcap``, the margin logits of CosFace
    (``s (c - m [c = y])``) and ArcFace (``s phi(c_y)`` at the target), the
    linear layer's output for the linear loss.
    """
    x = np.asarray(args[0], dtype=np.float64)
    if name == "linear_cross_entropy":
        x = x @ np.asarray(args[1], np.float64).T
        if options.get("bias") is not None:
            x = x + np.asarray(options["bias"], np.float64)
    elif name in ("cosface_cross_entropy", "arcface_cross_entropy"):
        y = np.asarray(args[1])
        onehot = np.arange(x.shape[-1]) == y[..., None]
        if name == "cosface_cross_entropy":
            x = options.get("scale", 30.0) * (x - options.get("margin", 0.35) * onehot)
        else:
            phi, _ = arcface_phi(x, options.get("margin", 0.5), options.get("easy_margin", False))
            x = options.get("scale", 64.0) * np.where(onehot, phi, x)
    if options.get("softcap") is not None:
        x = options["softcap"] * np.tanh(x / options["softcap"])
    m = np.max(x, axis=-1, keepdims=True)
    return (m + np.log(np.exp(x - m).sum(axis=-1, keepdims=True)))[..., 0]
