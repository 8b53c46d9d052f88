"""Argument checking shared by every public wrapper.

Each check raises before any output is written, with a message that names
the argument and the offending value or shapes: ``TypeError`` for a logits
dtype numloss does not compute in, ``IndexError`` for a class index outside
``[0, C)``, ``ValueError`` for everything else.
"""

import numbers
from collections.abc import Iterable
from typing import Any, NoReturn, TypeVar

import numpy as np

from ._typing import AnyArray, ArrayLike, Float64Array, IndexArray

#: an array type kept by a function (a view or copy of the same kind)
_ArrayT = TypeVar("_ArrayT", bound=np.ndarray[Any, Any])

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
REDUCTIONS = ("mean", "sum", "none")


def half_kind(dtype: np.dtype[Any]) -> int | None:
    """0 for float16, 1 for bfloat16 (``ml_dtypes.bfloat16``: recognised by name, ml_dtypes need not be
    imported), ``None`` for any other dtype: the half drivers' ``kind``."""
    if dtype.itemsize != 2 or dtype.kind in "biuc":  # (C-level attributes: float32/float64 cost ~0.1 us here)
        return None
    if dtype.kind == "f":
        return 0 if dtype == np.float16 else None
    return 1 if dtype.name == "bfloat16" else None


def is_real(dtype: np.dtype[Any]) -> bool:
    """bool, integer or float, half formats included (``ml_dtypes.bfloat16`` has NumPy kind ``"V"``)."""
    return dtype.kind in "biuf" or half_kind(dtype) is not None


def is_float(dtype: np.dtype[Any]) -> bool:
    return dtype.kind == "f" or half_kind(dtype) is not None


def compute_dtype(dtype: np.dtype[Any]) -> np.dtype[Any]:
    """The dtype numloss computes and returns losses in: float32 for half inputs, else ``dtype``."""
    if dtype.itemsize != 2:
        return dtype
    return _FLOAT32 if half_kind(dtype) is not None else dtype


_FLOAT32 = np.dtype(np.float32)


def float_array(value: ArrayLike, name: str = "logits") -> AnyArray:
    """``value`` as a float32/float64/float16/bfloat16 ndarray (never copied if it is one)."""
    arr = np.asarray(value)
    if arr.dtype not in FLOAT_DTYPES and half_kind(arr.dtype) is None:
        raise TypeError(
            f"{name} has dtype {arr.dtype}; numloss computes in float32 or float64 (float16 and bfloat16 "
            f"inputs in float32): cast it first, e.g. {name}.astype(np.float32)"
        )
    return arr


def reduction(value: object) -> str:
    if not isinstance(value, str) or value not in REDUCTIONS:
        raise ValueError(f"reduction must be one of 'mean', 'sum', 'none'; got {value!r}")
    return value


def _scalar(value: object) -> object:
    """A 0-d real array (what NumPy code and config loaders often hand over) as its Python number."""
    if isinstance(value, np.ndarray) and value.ndim == 0 and value.dtype.kind in "iuf":
        return value.item()
    return value


def _real(value: object, name: str) -> float:
    if type(value) is float:  # the common case, without the ABC check below
        if value != value:
            raise ValueError(f"{name} must not be NaN")
        return value
    value = _scalar(value)
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a real number; got {value!r}")
    value = float(value)
    if value != value:
        raise ValueError(f"{name} must not be NaN")
    return value


def eps(value: object) -> float:
    value = _real(value, "eps")
    if not 0.0 <= value < 0.5:
        raise ValueError(f"eps must be in [0, 0.5); got {value!r}")
    return value


def label_smoothing(value: object) -> float:
    value = _real(value, "label_smoothing")
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1]; got {value!r}")
    return value


def z_loss(value: object) -> float:
    value = _real(value, "z_loss")
    if not (value >= 0.0 and value < np.inf):
        raise ValueError(f"z_loss must be a finite number >= 0; got {value!r}")
    return value


def softcap(value: object) -> float:
    """``None`` -> 0.0 (no capping), else a finite positive float."""
    if value is None:
        return 0.0
    value = _real(value, "softcap")
    if not (0.0 < value < np.inf):
        raise ValueError(f"softcap must be None or a finite number > 0; got {value!r}")
    return value


def normalizer(value: object) -> float | None:
    if value is None:
        return None
    value = _real(value, "normalizer")
    if not (0.0 < value < np.inf):
        raise ValueError(f"normalizer must be None or a finite number > 0; got {value!r}")
    return value


def eps_combinations(eps_value: float, ls: float = 0.0, z: float = 0.0, cap: float = 0.0) -> None:
    if eps_value > 0.0:
        used = [name for name, v in (("label_smoothing", ls), ("z_loss", z), ("softcap", cap)) if v]
        if used:
            raise ValueError(
                f"eps={eps_value!r} (the seed's clipped log-loss) cannot be combined with "
                f"{', '.join(used)}; use eps=0.0 for those options"
            )


def ignore_index(value: object) -> int:
    if type(value) is int:  # the common case, without the ABC check below
        return value
    value = _scalar(value)
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise ValueError(f"ignore_index must be an integer; got {value!r}")
    return int(value)


#: ``num_classes -> ones`` for ``weight=None`` (kernels never write their weights;
#: reusing the array saves an allocation per call at small shapes)
_UNIT_WEIGHTS: dict[int, Float64Array] = {}


def class_weights(weight: ArrayLike | None, num_classes: int, name: str = "weight") -> Float64Array:
    """Per-class weights as a float64 ``(C,)`` array (ones when ``None``)."""
    if weight is None:
        ones = _UNIT_WEIGHTS.get(num_classes)
        if ones is None:
            if len(_UNIT_WEIGHTS) >= 16:
                _UNIT_WEIGHTS.clear()
            ones = _UNIT_WEIGHTS[num_classes] = np.ones(num_classes, dtype=np.float64)
        return ones
    w = np.asarray(weight)
    if not is_real(w.dtype):
        raise ValueError(f"{name} must be a numeric array; got dtype {w.dtype}")
    if w.shape != (num_classes,):
        raise ValueError(f"{name} must have shape ({num_classes},) (one weight per class); got {w.shape}")
    return _writable(np.ascontiguousarray(w, dtype=np.float64))


def _writable(a: _ArrayT) -> _ArrayT:
    """``a``, or a copy of it if it is read-only: a small kernel input (per class or per sample) always
    has the writable array type, so a read-only one compiles no kernel of its own."""
    return a if a.flags.writeable else a.copy()


def _readonly(a: _ArrayT) -> _ArrayT:
    """A read-only view (one Numba type for the kernels, whatever the caller's array)."""
    if a.flags.writeable:
        a = a.view()
        a.setflags(write=False)  # (half the cost of assigning through a.flags)
    return a


def class_indices(target: ArrayLike, expected_shape: tuple[int, ...], num_classes: int, ignore: int) -> IndexArray:
    """Integer class indices as a flat writable int64 array (the kernels' one target type).

    Raises ``IndexError`` for an index outside ``[0, C)`` that is not
    ``ignore_index`` (naming the first such value and its position).
    """
    t = np.asarray(target)
    if t.shape != tuple(expected_shape):
        raise ValueError(
            f"target of class indices must have the logits' shape without the class axis, "
            f"{tuple(expected_shape)}; got {t.shape}"
        )
    flat = t.reshape(-1)
    if t.dtype.kind == "u" and flat.size and flat.max() > np.iinfo(np.int64).max:
        pos = int(np.argmax(flat > np.iinfo(np.int64).max))
        raise IndexError(
            f"target holds class index {flat[pos]} at flat position {pos}, outside [0, {num_classes})"
        )
    return _writable(np.ascontiguousarray(flat, dtype=np.int64))


def raise_bad_index(target_flat: IndexArray, pos: int, num_classes: int, ignore: int) -> NoReturn:
    raise IndexError(
        f"target holds class index {int(target_flat[pos])} at flat position {pos}, "
        f"outside [0, {num_classes}) and not ignore_index={ignore}"
    )


def out_array(out: object, logits: AnyArray, inputs: Iterable[tuple[str, object]]) -> AnyArray:
    """Check ``out`` for a gradient of ``logits``' shape and dtype.

    ``out`` may be ``logits`` itself (in place) or an array sharing no
    memory with any of ``inputs``.
    """
    if not isinstance(out, np.ndarray):
        raise ValueError(f"out must be a numpy.ndarray; got {type(out).__name__}")
    half_to_float32 = half_kind(logits.dtype) is not None and out.dtype == np.float32
    if out.shape != logits.shape or (out.dtype != logits.dtype and not half_to_float32):
        also = " (or float32 for half logits)" if half_kind(logits.dtype) is not None else ""
        raise ValueError(
            f"out must have the logits' shape {logits.shape} and dtype {logits.dtype}{also}; "
            f"got shape {out.shape} and dtype {out.dtype}"
        )
    if not out.flags.c_contiguous:
        raise ValueError(f"out must be C-contiguous; got strides {out.strides} for shape {out.shape}")
    if not out.flags.writeable:
        raise ValueError("out is read-only; pass a writable array")
    if out is logits:
        return out
    for name, arr in inputs:
        if isinstance(arr, np.ndarray) and arr.size and out.size and np.may_share_memory(out, arr):
            try:
                # (NumPy's stub allows max_work -1 and 0 only; its documentation, any int)
                overlap = np.shares_memory(out, arr, max_work=100_000)  # type: ignore[arg-type]
            except np.exceptions.TooHardError:
                overlap = True
            if overlap:
                raise ValueError(
                    f"out shares memory with {name}; pass out={name} for the in-place form "
                    f"(logits only) or an array that overlaps no input"
                )
    return out


def flag(value: object, name: str) -> bool:
    """``value`` as a bool: only ``True``/``False`` (or NumPy's bools) are accepted."""
    if value is False or value is True:
        return value
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be True or False; got {value!r}")
    return bool(value)
