"""The one list of numloss's public losses, and what each accepts.

Pure data: importing this module imports neither NumPy nor Numba.  Everything
that enumerates losses reads :data:`LOSSES` — the lazy names of
``numloss/__init__.py``, :func:`numloss.warmup` (which kernels to compile),
``numloss check``, the asv suites and the tests — so a loss added here is
warmed, checked and tested without another list to edit.

Adding a loss: a kernel module in ``numloss/_kernels/``, a public module with
``NAME`` and ``NAME_with_grad``, a :class:`Loss` record below (with the
kernel routes a training script can reach, for the warmup) and its plain
float64 reference in ``tests/reference.py``.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Route:
    """One way through a loss's kernel choice: the inputs that reach a distinct compiled kernel.

    ``target``: ``"index"`` (integer class indices), ``"prob"`` (probabilities
    of the logits' shape and dtype) or ``"dense"`` (sigmoid targets of the
    logits' shape, of dtype ``target_dtype``: ``None`` for the logits' own).
    ``num_classes`` picks between kernels chosen by the class count (the
    few-classes tiles below ``SMALL_C``); ``options`` are keyword arguments
    that pick a kernel (e.g. ``weight`` present).  An option whose value is
    ``"classes"`` is filled with an array of one value per class (in the
    input's dtype).
    """

    label: str
    target: str
    num_classes: int = 40
    options: tuple[tuple[str, object], ...] = ()
    target_dtypes: tuple[str | None, ...] = (None,)
    after: tuple[str, int] | None = None  # (loss name, route index) whose kernels this route reuses


@dataclasses.dataclass(frozen=True)
class Loss:
    """One public loss: ``NAME(...)`` and ``NAME_with_grad(..., out=None)`` in ``numloss.<module>``.

    Every loss also takes ``reduction=``, ``sample_weight=`` and ``where=``
    (per sample for the row losses; per row or per element for the
    elementwise ones), which are not listed in ``options``.
    """

    name: str
    module: str
    kernels: str  # module of numloss._kernels whose dispatchers it calls
    input: str  # the first argument: "logits", "cosine" or "hidden"
    targets: tuple[str, ...]  # target kinds accepted: "index", "prob", "dense"
    class_axis: str  # "axis" (an ``axis=`` argument), "last", or "elementwise" (sigmoid: no class axis)
    normalizer: bool  # takes ``normalizer=``
    options: tuple[tuple[str, object], ...]  # ((name, default), ...) keyword options besides reduction/normalizer/out
    peers: tuple[str, ...]  # the functions of other libraries it matches
    routes: tuple[Route, ...]  # Route records: what :func:`numloss.warmup` compiles
    aux: bool = True  # takes ``aux=`` (the losses with a log-sum-exp)

    @property
    def with_grad(self) -> str:
        return self.name + "_with_grad"


LOSSES = (
    Loss(
        name="softmax_cross_entropy",
        module="softmax",
        kernels="softmax",
        input="logits",
        targets=("index", "prob"),
        class_axis="axis",
        normalizer=True,
        options=(("weight", None), ("ignore_index", -100), ("label_smoothing", 0.0), ("z_loss", 0.0),
                 ("softcap", None), ("eps", 0.0), ("axis", -1)),
        peers=("torch.nn.functional.cross_entropy", "optax.losses.softmax_cross_entropy_with_integer_labels",
               "optax.losses.softmax_cross_entropy"),
        routes=(
            Route("class indices", "index"),
            Route("class indices, C < 32", "index", num_classes=8),
            Route("probabilities", "prob"),
        ),
    ),
    Loss(
        name="sigmoid_cross_entropy",
        module="sigmoid",
        kernels="sigmoid",
        input="logits",
        targets=("dense",),
        class_axis="elementwise",
        normalizer=True,
        options=(("weight", None), ("pos_weight", None), ("eps", 0.0)),
        peers=("torch.nn.functional.binary_cross_entropy_with_logits", "optax.losses.sigmoid_binary_cross_entropy"),
        aux=False,
        routes=(
            Route("targets of the logits' dtype", "dense"),
            # the general kernel: weights, eps, or targets of another dtype (bool: multi-label masks)
            Route("weighted, bool targets", "dense", options=(("pos_weight", "classes"),),
                  target_dtypes=(None, "bool")),
        ),
    ),
    Loss(
        name="sigmoid_focal_loss",
        module="focal",
        kernels="focal",
        input="logits",
        targets=("dense",),
        class_axis="elementwise",
        normalizer=False,
        options=(("alpha", 0.25), ("gamma", 2.0)),
        peers=("torchvision.ops.sigmoid_focal_loss",),
        aux=False,
        routes=(Route("targets", "dense"),),
    ),
    Loss(
        name="softmax_focal_loss",
        module="focal",
        kernels="focal",
        input="logits",
        targets=("index",),
        class_axis="last",
        normalizer=False,
        options=(("gamma", 2.0), ("weight", None), ("ignore_index", -100)),
        peers=(),
        routes=(Route("class indices", "index"),),
    ),
    Loss(
        name="cosface_cross_entropy",
        module="margin",
        kernels="margin",
        input="cosine",
        targets=("index",),
        class_axis="last",
        normalizer=False,
        options=(("scale", 30.0), ("margin", 0.35), ("weight", None), ("ignore_index", -100),
                 ("label_smoothing", 0.0)),
        peers=(),
        routes=(Route("class indices", "index"),),
    ),
    Loss(
        name="arcface_cross_entropy",
        module="margin",
        kernels="margin",
        input="cosine",
        targets=("index",),
        class_axis="last",
        normalizer=False,
        options=(("scale", 64.0), ("margin", 0.5), ("easy_margin", False), ("weight", None),
                 ("ignore_index", -100), ("label_smoothing", 0.0)),
        peers=(),
        routes=(),  # the same kernels as CosFace
    ),
    Loss(
        name="linear_cross_entropy",
        module="linear",
        kernels="linear",
        input="hidden",
        targets=("index", "prob"),
        class_axis="last",
        normalizer=True,
        options=(("bias", None), ("weight_classes", None), ("ignore_index", -100), ("label_smoothing", 0.0),
                 ("z_loss", 0.0), ("softcap", None), ("chunk_size", None), ("max_memory", None)),
        peers=("torch.nn.functional.linear_cross_entropy",),
        # the softmax class-index kernels, in place, on each chunk of logits
        routes=(Route("class indices, bias", "index", options=(("bias", "classes"),),
                      after=("softmax_cross_entropy", 0)),
                Route("probabilities", "prob", after=("softmax_cross_entropy", 2))),
    ),
)

BY_NAME = {loss.name: loss for loss in LOSSES}

#: floating dtypes every loss computes in
DTYPES = ("float32", "float64")
#: half-precision inputs every loss accepts (computed in float32; bfloat16 is ``ml_dtypes.bfloat16``)
HALF_DTYPES = ("float16", "bfloat16")
#: what :func:`numloss.warmup` compiles by default: float16 compiles the half drivers bfloat16 shares
WARMUP_DTYPES = DTYPES + ("float16",)


def public_names() -> dict[str, str]:
    """``{public function name: submodule}`` for every loss's two entry points."""
    names = {}
    for loss in LOSSES:
        names[loss.name] = loss.module
        names[loss.with_grad] = loss.module
    return names
