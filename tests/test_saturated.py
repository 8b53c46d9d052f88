"""Confident (saturated) rows in float64 against mpmath: loss and gradient within 1e-12 relative.

A row whose target logit leads the others by 20-600 has a loss of about
``exp(-gap)``: ``log(sum exp(x - max))`` formed as ``log(1 + small)`` rounds
it to 0 or to a few bits, and ``p_y - 1`` formed as ``1/s - 1`` is the
rounding residue of 1.  These are the rows a converged model produces, so
every loss with a softmax (and the seed modules, and the sigmoid losses at
large ``|x|``) is held to mpmath at 60 digits here, element by element.
"""

import mpmath
import numpy as np
import pytest

import numloss
from numloss import nn

mpmath.mp.dps = 60
M = mpmath.mpf
RTOL = 1e-12
GAPS = (5.0, 12.0, 20.0, 30.0, 45.0, 60.0, 200.0, 600.0, 690.0)  # 690: a loss near 1e-300


def confident_rows(C, rng, target=3):
    """One row per gap with the target ``gap`` above the others' maximum, plus a row with two tied maxima."""
    rows = []
    for gap in GAPS:
        r = rng.normal(size=C)
        r[target] = r.max() + gap
        rows.append(r)
    r = rng.normal(size=C)
    r[target] = r[(target + 2) % C] = r.max() + 30.0
    rows.append(r)
    x = np.array(rows)
    return x, np.full(x.shape[0], target)


def mp_softmax_ce(z, k):
    """``(-log softmax(z)_k, softmax(z))`` in mpmath, the loss as ``log1p(sum_{j != k} exp(z_j - z_k))``."""
    z = [M(float(v)) if not isinstance(v, mpmath.mpf) else v for v in z]
    nll = mpmath.log1p(mpmath.fsum(mpmath.exp(v - z[k]) for j, v in enumerate(z) if j != k))
    p = [mpmath.exp(v - z[k] - nll) for v in z]
    p_k_minus_1 = -mpmath.fsum(p[j] for j in range(len(z)) if j != k)
    return nll, p, p_k_minus_1


def assert_rel(got, want, what):
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray([float(v) for v in np.ravel(want)]).reshape(got.shape)
    with np.errstate(divide="ignore", invalid="ignore"):  # 0 / 0 where both underflow to 0 (masked by the where)
        err = np.where(got == want, 0.0, np.abs(got - want) / np.abs(want))
    worst = np.unravel_index(np.argmax(err), err.shape)
    assert err.max() <= RTOL, (f"{what}: relative error {err.max():.2e} at {worst} "
                               f"(got {got[worst]!r}, want {want[worst]!r})")


@pytest.mark.parametrize("C", [10, 37, 600])  # the few-classes tile, one block, two blocks of the row kernel
@pytest.mark.parametrize("form", ["index", "weight_z", "onehot"])
def test_softmax_cross_entropy(C, form, rng):
    x, y = confident_rows(C, rng)
    weight = np.linspace(0.5, 2.0, C)
    z = 1e-4 if form == "weight_z" else 0.0
    if form == "onehot":
        loss, grad = numloss.softmax_cross_entropy_with_grad(x, np.eye(C)[y], reduction="none")
        w_y = np.ones(len(y))
    else:
        kw = dict(weight=weight, z_loss=z) if form == "weight_z" else {}
        loss, grad = numloss.softmax_cross_entropy_with_grad(x, y, reduction="none", **kw)
        w_y = weight[y] if form == "weight_z" else np.ones(len(y))
    want_loss, want_grad = [], []
    for row, k, w in zip(x, y, w_y, strict=True):
        nll, p, pm1 = mp_softmax_ce(row, k)
        lse = M(float(row[k])) + nll
        want_loss.append(w * nll + z * w * lse**2)
        g = [w * (1 + 2 * z * lse) * pj for pj in p]
        g[k] = w * (pm1 + 2 * z * lse * p[k])
        want_grad.append(g)
    assert_rel(loss, want_loss, "loss")
    assert_rel(grad, want_grad, "grad")


@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
def test_softmax_focal_loss(gamma, rng):
    x, y = confident_rows(37, rng)
    loss, grad = numloss.softmax_focal_loss_with_grad(x, y, gamma=gamma, reduction="none")
    want_loss, want_grad = [], []
    for row, k in zip(x, y, strict=True):
        nll, p, pm1 = mp_softmax_ce(row, k)
        u = -pm1
        want_loss.append(u**gamma * nll)
        a = u**gamma * (1 + gamma * p[k] * nll / u)  # d loss / d z = a (p - onehot)
        g = [a * pj for pj in p]
        g[k] = a * pm1
        want_grad.append(g)
    assert_rel(loss, want_loss, "loss")
    assert_rel(grad, want_grad, "grad")


def _mp_arcface_phi(c, margin):
    c = M(float(c))
    return c * mpmath.cos(margin) - mpmath.sqrt(1 - c * c) * mpmath.sin(margin), (
        mpmath.cos(margin) + mpmath.sin(margin) * c / mpmath.sqrt(1 - c * c))


@pytest.mark.parametrize("kind", ["cosface", "arcface"])
def test_margin_losses(kind, rng):
    """Target cosines 0.7-0.99 against others near -0.5: at scale 64 the rows lead by 60-95 logits."""
    C = 37
    cos = rng.uniform(-0.6, -0.4, size=(6, C))
    y = np.arange(6) % C
    cos[np.arange(6), y] = [0.7, 0.8, 0.9, 0.95, 0.98, 0.99]
    scale = 64.0
    if kind == "cosface":
        margin = 0.35
        loss, grad = numloss.cosface_cross_entropy_with_grad(cos, y, scale=scale, margin=margin, reduction="none")
    else:
        margin = 0.5
        loss, grad = numloss.arcface_cross_entropy_with_grad(cos, y, scale=scale, margin=margin, reduction="none")
    want_loss, want_grad = [], []
    for row, k in zip(cos, y, strict=True):
        if kind == "cosface":
            phi, dphi = M(float(row[k])) - M(margin), M(1)
        else:
            phi, dphi = _mp_arcface_phi(row[k], M(margin))
        z = [scale * M(float(v)) for v in row]
        z[k] = scale * phi
        nll, p, pm1 = mp_softmax_ce(z, k)
        want_loss.append(nll)
        g = [scale * pj for pj in p]
        g[k] = scale * dphi * pm1
        want_grad.append(g)
    assert_rel(loss, want_loss, "loss")
    assert_rel(grad, want_grad, "grad")


def test_linear_cross_entropy(rng):
    """One-hot hidden rows make the logits exactly the weight's entries; the bias gradient is the logits'."""
    V, H = 37, 4
    x, y = confident_rows(V, rng)
    for row, k in zip(x, y, strict=True):
        weight = np.zeros((V, H))
        weight[:, 0] = row
        hidden = np.eye(H)[:1]
        loss, (_, _, d_bias) = numloss.linear_cross_entropy_with_grad(
            hidden, weight, np.array([k]), bias=np.zeros(V), reduction="none")
        nll, p, pm1 = mp_softmax_ce(row, k)
        p[k] = pm1
        assert_rel(loss, [nll], "loss")
        assert_rel(d_bias, p, "d_bias")


@pytest.mark.parametrize("eps", [1e-6, 1e-12])
def test_seed_softmax_module(eps, rng):
    """``SoftmaxCrossEntropy``: ``p`` clipped to ``[eps, 1 - eps]`` (real numbers), loss ``-log p_y``, grad
    ``p - y``."""
    x, y = confident_rows(37, rng)
    module = nn.SoftmaxCrossEntropy(eps=eps)
    loss = module.forward(x, np.eye(37)[y])
    grad = module.backward()
    n = x.shape[0]
    want_loss, want_grad = M(0), []
    lo, hi_m1 = M(eps), -M(eps)  # clip p to [eps, 1 - eps]; p - 1 to [eps - 1, -eps]
    for row, k in zip(x, y, strict=True):
        nll, p, pm1 = mp_softmax_ce(row, k)
        pm1 = min(pm1, hi_m1)
        want_loss += -mpmath.log1p(pm1)
        g = [max(pj, lo) for pj in p]
        g[k] = pm1
        want_grad.append([v / n for v in g])
    assert_rel(loss, want_loss / n, "loss")
    assert_rel(grad, want_grad, "grad")


SIGMOID_X = np.array([[8.0, 20.0, 35.0, 300.0, 700.0, -8.0, -20.0, -35.0, -300.0, -700.0, 0.5]])


def _mp_log_sigmoid(v):
    """``log sigma(v)`` without rounding 1 + e^-v."""
    return -mpmath.log1p(mpmath.exp(-v))


@pytest.mark.parametrize("eps", [1e-6, 1e-12])
def test_seed_sigmoid_module(eps):
    x = np.concatenate([SIGMOID_X, SIGMOID_X])
    t = np.concatenate([np.ones_like(SIGMOID_X), np.zeros_like(SIGMOID_X)])
    module = nn.SigmoidCrossEntropy(eps=eps)
    loss = module.forward(x, t)
    grad = module.backward()
    n = x.shape[0]
    e = M(eps)
    total, want_grad = M(0), []
    for row, trow in zip(x, t, strict=True):
        g = []
        for v, tj in zip(row, trow, strict=True):
            v = M(float(v))
            # p = clip(sigma(v)); with t = 1 the loss is -log p and p - 1 = -sigma(-v), clipped to <= -eps
            if tj == 1:
                pm1 = min(-1 / (1 + mpmath.exp(v)), -e)
                pm1 = max(pm1, e - 1)
                total += -mpmath.log1p(pm1)
                g.append(pm1 / n)
            else:
                p = min(max(1 / (1 + mpmath.exp(-v)), e), 1 - e)
                total += -mpmath.log1p(-p)
                g.append(p / n)
        want_grad.append(g)
    assert_rel(loss, total / n / x.shape[1] * x.shape[1], "loss")
    assert_rel(grad, want_grad, "grad")


@pytest.mark.parametrize("gamma", [2.0, 1.5])
def test_sigmoid_focal_loss(gamma):
    x = np.concatenate([SIGMOID_X, SIGMOID_X])
    t = np.concatenate([np.ones_like(SIGMOID_X), np.zeros_like(SIGMOID_X)])
    alpha = 0.25
    loss, grad = numloss.sigmoid_focal_loss_with_grad(x, t, alpha=alpha, gamma=gamma, reduction="none")
    want_loss, want_grad = [], []
    for row, trow in zip(x, t, strict=True):
        lr, gr = [], []
        for v, tj in zip(row, trow, strict=True):
            v = M(float(v))
            s = v if tj == 1 else -v  # the target's side: p_t = sigma(s)
            a = alpha if tj == 1 else 1 - alpha
            q = 1 / (1 + mpmath.exp(s))  # 1 - p_t
            ce = -_mp_log_sigmoid(s)
            lr.append(a * q**gamma * ce)
            # d/ds [q^g ce] with dq/ds = -q (1 - q), dce/ds = -q; ds/dv = +-1
            d = a * (-gamma * q**gamma * (1 - q) * ce - q ** (gamma + 1))
            gr.append(d if tj == 1 else -d)
        want_loss.append(lr)
        want_grad.append(gr)
    assert_rel(loss, want_loss, "loss")
    assert_rel(grad, want_grad, "grad")
