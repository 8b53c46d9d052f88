"""``numloss check``: a self-test a user can run on their own machine.

For every registered loss and option group: the ``_with_grad`` gradient
against central finite differences of the plain loss (float64), the plain
loss against the ``_with_grad`` loss, float32 against float64, and the plain
cases against the NumPy baseline.
"""

from collections.abc import Callable
from typing import Any, TextIO, cast

import numpy as np
from numpy.typing import ArrayLike, DTypeLike

from ._typing import AnyArray

#: a builder's ``(args, kwargs)``: the positional arrays (logits first) and the keyword options of one call
Call = tuple[tuple[AnyArray, ...], dict[str, Any]]
#: ``builder(rng, dtype) -> (args, kwargs)``
Builder = Callable[[np.random.Generator, DTypeLike], Call]
#: ``report(ok, what)``: counts a failure, prints a line
Report = Callable[[bool | np.bool_, str], None]

#: (label, function name, builder(rng, dtype) -> (args, kwargs))
CHECKS: list[tuple[str, str, Builder]] = []


def register(label: str, name: str) -> Callable[[Builder], Builder]:
    def deco(builder: Builder) -> Builder:
        CHECKS.append((label, name, builder))
        return builder

    return deco


def _logits(rng: np.random.Generator, shape: tuple[int, ...], dtype: DTypeLike) -> AnyArray:
    return (rng.standard_normal(shape) * 2).astype(dtype)


# (the casts: the option dicts differ in their value types, which mypy would join to object)
for _label, _opts in cast("list[tuple[str, dict[str, Any]]]", [
    ("plain", {}),
    ("weight+ignore_index", {"weight": "w", "ignore_index": 1}),
    ("label_smoothing", {"label_smoothing": 0.2}),
    ("z_loss", {"z_loss": 1e-2}),
    ("softcap", {"softcap": 2.0}),
    ("sum", {"reduction": "sum"}),
]):
    def _softmax_builder(rng: np.random.Generator, dtype: DTypeLike, _opts: dict[str, Any] = _opts) -> Call:
        kw = dict(_opts)
        if kw.get("weight") == "w":
            kw["weight"] = rng.uniform(0.5, 2, 7)
        return (_logits(rng, (5, 7), dtype), rng.integers(0, 7, 5)), kw

    register(f"softmax {_label}", "softmax_cross_entropy")(_softmax_builder)


@register("softmax probability targets", "softmax_cross_entropy")
def _softmax_prob(rng: np.random.Generator, dtype: DTypeLike) -> Call:
    return (_logits(rng, (5, 7), dtype), rng.dirichlet(np.ones(7), 5).astype(dtype)), {}


for _label, _opts in cast("list[tuple[str, dict[str, Any]]]",
                         [("plain", {}), ("weight+pos_weight", {"w": True}), ("none", {"reduction": "none"})]):
    def _sigmoid_builder(rng: np.random.Generator, dtype: DTypeLike, _opts: dict[str, Any] = _opts) -> Call:
        kw = dict(_opts)
        if kw.pop("w", False):
            kw["weight"] = rng.uniform(0.5, 2, 7)
            kw["pos_weight"] = rng.uniform(0.5, 2, 7)
        return (_logits(rng, (5, 7), dtype), rng.uniform(0, 1, (5, 7)).astype(dtype)), kw

    register(f"sigmoid {_label}", "sigmoid_cross_entropy")(_sigmoid_builder)


def _finite_difference(f: Callable[..., ArrayLike], x: AnyArray, h: float = 1e-6) -> AnyArray:
    g = np.zeros_like(x)
    flat, gflat = x.reshape(-1), g.reshape(-1)
    for k in range(flat.size):
        old = flat[k]
        flat[k] = old + h
        up = float(np.sum(f(x)))
        flat[k] = old - h
        down = float(np.sum(f(x)))
        flat[k] = old
        gflat[k] = (up - down) / (2 * h)
    return g


def run_checks(seed: int = 0, out: TextIO | None = None) -> int:
    import numloss

    from . import _baseline

    failures = 0

    def report(ok: bool | np.bool_, what: str) -> None:
        nonlocal failures
        failures += not ok
        if out is not None:
            print(f"  {'ok  ' if ok else 'FAIL'} {what}", file=out)

    from . import _registry

    checked = {name for _, name, _ in CHECKS} | {"linear_cross_entropy"}  # linear: run_linear_checks
    loss: Any  # a registry record here, a loss value below
    for loss in _registry.LOSSES:  # the registry is the list of losses: each must have its checks here
        report(loss.name in checked, f"{loss.name}: has self-test cases")

    rng = np.random.default_rng(seed)
    for label, name, builder in CHECKS:
        plain = getattr(numloss, name)
        with_grad = getattr(numloss, name + "_with_grad")
        (x, *rest), kw = builder(np.random.default_rng(rng.integers(2**32)), np.float64)
        loss, grad = with_grad(x, *rest, **kw)
        fd = _finite_difference(lambda z, rest=rest, kw=kw, plain=plain: plain(z, *rest, **kw), x.copy())
        err = np.max(np.abs(grad - fd)) / max(1.0, np.max(np.abs(fd)))
        report(err < 1e-6, f"{label}: gradient vs finite differences (max error {err:.1e})")
        report(np.allclose(plain(x, *rest, **kw), loss, rtol=1e-12, atol=0),
               f"{label}: loss equals the _with_grad loss")
        rest32 = [r.astype(np.float32) if isinstance(r, np.ndarray) and r.dtype.kind == "f" else r for r in rest]
        l32, g32 = with_grad(x.astype(np.float32), *rest32, **kw)
        ok = np.allclose(l32, loss, rtol=1e-5, atol=1e-6) and np.allclose(g32, grad, rtol=1e-4, atol=1e-6)
        report(ok, f"{label}: float32 agrees with float64")
    for dtype in (np.float32, np.float64):
        tol = 1e-5 if dtype == np.float32 else 1e-12
        x = _logits(rng, (64, 100), dtype)
        y = rng.integers(0, 100, 64)
        ref_loss, ref_grad = _baseline.softmax_ce_with_grad(x.astype(np.float64), y)
        loss, grad = numloss.softmax_cross_entropy_with_grad(x, y)
        ok = np.isclose(loss, ref_loss, rtol=tol) and np.allclose(grad, ref_grad, rtol=tol, atol=tol * 1e-2)
        report(ok, f"softmax vs NumPy baseline ({np.dtype(dtype).name})")
        t = (rng.random((64, 100)) < 0.3).astype(dtype)
        ref_loss, ref_grad = _baseline.sigmoid_ce_with_grad(x.astype(np.float64), t)
        loss, grad = numloss.sigmoid_cross_entropy_with_grad(x, t)
        ok = np.isclose(loss, ref_loss, rtol=tol) and np.allclose(grad, ref_grad, rtol=tol, atol=tol * 1e-4)
        report(ok, f"sigmoid vs NumPy baseline ({np.dtype(dtype).name})")
    run_linear_checks(report, rng)
    return failures


# ==================================================================== linear_cross_entropy
# (issue 5) Its _with_grad returns three gradients, so it has its own checks
# rather than a CHECKS registration: every gradient against finite differences
# of the plain loss (float64), chunked against one chunk, float32 against
# float64, and against the materialising path (logits, then softmax CE).


def run_linear_checks(report: Report, rng: np.random.Generator) -> None:
    import numloss

    opts: list[tuple[str, dict[str, Any]]] = [
        ("plain", {}), ("weight_classes+ignore_index+bias", {"wc": True, "ignore_index": 1, "bias": True}),
        ("label_smoothing+z_loss+softcap", {"label_smoothing": 0.1, "z_loss": 1e-2, "softcap": 3.0})]
    for label, opts_ in opts:
        r = np.random.default_rng(rng.integers(2**32))
        kw = dict(opts_)
        hidden, weight = r.standard_normal((5, 3)), r.standard_normal((7, 3))
        target = r.integers(0, 7, 5)
        if kw.pop("wc", False):
            kw["weight_classes"] = r.uniform(0.5, 2, 7)
        if kw.pop("bias", False):
            kw["bias"] = r.standard_normal(7)
        loss, grads = numloss.linear_cross_entropy_with_grad(hidden, weight, target, chunk_size=2, **kw)
        named = [("hidden", hidden), ("weight", weight)] + ([("bias", kw["bias"])] if "bias" in kw else [])
        for (name, arr), grad in zip(named, grads, strict=False):
            def f(z: AnyArray, name: str = name, hidden: AnyArray = hidden, weight: AnyArray = weight,
                  target: AnyArray = target, kw: dict[str, Any] = kw) -> Any:
                args = {"hidden": hidden, "weight": weight, **kw, name: z}
                return numloss.linear_cross_entropy(args.pop("hidden"), args.pop("weight"), target, chunk_size=2,
                                                    **args)
            fd = _finite_difference(f, arr.copy())
            err = np.max(np.abs(grad - fd)) / max(1.0, np.max(np.abs(fd)))
            report(err < 1e-6, f"linear {label}: d_{name} vs finite differences (max error {err:.1e})")
        one, one_grads = numloss.linear_cross_entropy_with_grad(hidden, weight, target, **kw)
        ok = np.isclose(one, loss, rtol=1e-12) and all(
            np.allclose(a, b, rtol=1e-12, atol=1e-14) for a, b in zip(grads, one_grads, strict=True) if a is not None)
        report(ok, f"linear {label}: chunk_size=2 equals one chunk")
        l32, g32 = numloss.linear_cross_entropy_with_grad(
            hidden.astype(np.float32), weight.astype(np.float32), target,
            **{k: (v.astype(np.float32) if k == "bias" else v) for k, v in kw.items()})
        ok = np.allclose(l32, loss, rtol=1e-5, atol=1e-6) and all(
            np.allclose(a, b, rtol=1e-4, atol=1e-6) for a, b in zip(g32, grads, strict=True) if a is not None)
        report(ok, f"linear {label}: float32 agrees with float64")
        logits = hidden @ weight.T + kw.get("bias", 0.0)
        sm_kw = {k: v for k, v in kw.items() if k != "bias"}
        if "weight_classes" in sm_kw:
            sm_kw["weight"] = sm_kw.pop("weight_classes")
        ref_loss, g = numloss.softmax_cross_entropy_with_grad(logits, target, **sm_kw)
        ok = np.isclose(loss, ref_loss, rtol=1e-12) and np.allclose(grads[0], g @ weight, rtol=1e-10, atol=1e-14) \
            and np.allclose(grads[1], g.T @ hidden, rtol=1e-10, atol=1e-14)
        report(ok, f"linear {label}: equals materialised logits + softmax_cross_entropy_with_grad")


# ------------------------------------------------ focal and margin losses (issue 4)
# Registered like the core losses: gradient vs finite differences (float64),
# plain vs _with_grad loss, float32 vs float64.  Cosines stay away from ArcFace's
# threshold cos(pi - m), where its target logit jumps (insightface's fallback).


def _sigmoid_focal_builder(opts: dict[str, Any], soft: bool = False) -> Builder:
    def build(rng: np.random.Generator, dtype: DTypeLike) -> Call:
        t = rng.uniform(0, 1, (5, 7)) if soft else (rng.random((5, 7)) < 0.3)
        return (_logits(rng, (5, 7), dtype), t.astype(dtype)), dict(opts)

    return build


for _label, _opts, _soft in cast("list[tuple[str, dict[str, Any], bool]]", [
    ("default", {}, False),
    ("gamma=0.5 alpha=None", {"gamma": 0.5, "alpha": None}, False),
    ("soft targets sum", {"gamma": 1.5, "reduction": "sum"}, True),
]):
    register(f"sigmoid focal {_label}", "sigmoid_focal_loss")(_sigmoid_focal_builder(_opts, _soft))


def _indexed_builder(opts: dict[str, Any], cosine: bool = False) -> Builder:
    def build(rng: np.random.Generator, dtype: DTypeLike) -> Call:
        kw = dict(opts)
        if kw.get("weight") == "w":
            kw["weight"] = rng.uniform(0.5, 2, 7)
        x = rng.uniform(-0.8, 0.95, (5, 7)).astype(dtype) if cosine else _logits(rng, (5, 7), dtype)
        t = rng.integers(0, 7, 5)
        t[1] = kw.get("ignore_index", -100)
        return (x, t), kw

    return build


for _label, _name, _opts, _cos in cast("list[tuple[str, str, dict[str, Any], bool]]", [
    ("softmax focal default", "softmax_focal_loss", {}, False),
    ("softmax focal gamma=0.5 weight", "softmax_focal_loss", {"gamma": 0.5, "weight": "w"}, False),
    ("cosface", "cosface_cross_entropy", {"scale": 16.0}, True),
    ("cosface weight+label_smoothing", "cosface_cross_entropy", {"scale": 16.0, "weight": "w",
                                                                 "label_smoothing": 0.1}, True),
    ("arcface", "arcface_cross_entropy", {"scale": 16.0}, True),
    ("arcface easy_margin+label_smoothing", "arcface_cross_entropy", {"scale": 16.0, "easy_margin": True,
                                                                      "label_smoothing": 0.1}, True),
]):
    register(_label, _name)(_indexed_builder(_opts, _cos))
