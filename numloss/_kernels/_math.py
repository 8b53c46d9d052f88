"""Vectorisable elementary functions for the loss kernels.

Numba 0.62+ ships no SVML, so ``math.exp``/``np.exp`` inside a loop compile
to scalar libm calls and the loop does not vectorise.  The functions here are
plain arithmetic that LLVM vectorises (8 float32 or 4 float64 lanes with
AVX2, 16 or 8 with AVX-512 in the functions that call :func:`wide_vectors`):
range reduction by ln 2 (Cody-Waite, two constants), a polynomial, and the
power of two built from integer bits.  They work in the precision of
their argument (float32 in, float32 out).

Accuracy (checked against mpmath in ``tests/test_math.py``): ``exp`` and
``expm1`` within a few ulp over their whole range, ``log1p_unit`` within a
few ulp on [0, 1], NaN in -> NaN out, +-inf handled.

Every step whose rounding matters goes through the ``llvm.fmuladd``
intrinsic: the kernels are compiled with the ``reassoc`` fast-math flag (so
that row sums vectorise), and ``reassoc`` would otherwise be free to merge
``x - n*ln2_hi - n*ln2_lo`` into ``x - n*(ln2_hi + ln2_lo)`` and lose the
extra precision.  LLVM does not reassociate across an intrinsic call.
"""

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.core.base import BaseContext as TargetContext
from numba.core.typing.context import BaseContext as TypingContext
from numba.core.typing.templates import Signature
from numba.extending import intrinsic, overload

from ._jit import OVERLOAD_OPTIONS, jit_inline

#: a float in, the same float type out (the dtype-generic entry points below)
_FloatT = TypeVar("_FloatT", bound=float | np.floating)
#: what an ``@intrinsic`` typing function returns: the signature and its code generator, or ``None``
_IntrinsicTyping = tuple[Signature, Callable[..., Any]] | None

# ---------------------------------------------------------------- intrinsics


def _intrinsic(definition: Callable[..., _IntrinsicTyping]) -> Any:
    # numba.extending.intrinsic, typed as the kernels call it (Any: a result has the precision of the
    # arguments).  Numba's stubs type the call with the typing context as its first parameter, returning Never.
    return intrinsic(definition)


def _float_ir_type(numba_type: types.Type) -> ir.Type | None:
    if numba_type == types.float32:
        return ir.FloatType()
    if numba_type == types.float64:
        return ir.DoubleType()
    return None


def _declare(builder: ir.IRBuilder, name: str, ir_type: ir.Type, nargs: int) -> ir.Function:
    module = builder.module
    return module.declare_intrinsic(name, [ir_type], ir.FunctionType(ir_type, [ir_type] * nargs))


@_intrinsic
def fmuladd(typingctx: TypingContext, a: types.Type, b: types.Type, c: types.Type) -> _IntrinsicTyping:
    """``a * b + c``, fused where the CPU has FMA; opaque to reassociation."""
    if not (a == b == c) or _float_ir_type(a) is None:
        return None

    def codegen(context: TargetContext, builder: ir.IRBuilder, signature: Signature,
                args: Sequence[ir.Value]) -> ir.Value:
        fn = _declare(builder, "llvm.fmuladd", _float_ir_type(a), 3)
        return builder.call(fn, list(args))

    return a(a, b, c), codegen


@_intrinsic
def float16_bits_to_float32(typingctx: TypingContext, bits: types.Type) -> _IntrinsicTyping:
    """The float32 value of IEEE half-precision bits (``uint16``): exact (LLVM's ``fpext half``; F16C's
    ``vcvtph2ps`` on x86, vectorised)."""
    if bits != types.uint16:
        return None
    sig = types.float32(types.uint16)

    def codegen(context: TargetContext, builder: ir.IRBuilder, signature: Signature,
                args: Sequence[ir.Value]) -> ir.Value:
        return builder.fpext(builder.bitcast(args[0], ir.HalfType()), ir.FloatType())

    return sig, codegen


@_intrinsic
def float32_to_float16_bits(typingctx: TypingContext, value: types.Type) -> _IntrinsicTyping:
    """IEEE half-precision bits (``uint16``) of a float32, rounded to nearest even (``fptrunc``; overflow to
    +-inf, NaN stays NaN)."""
    if value != types.float32:
        return None
    sig = types.uint16(types.float32)

    def codegen(context: TargetContext, builder: ir.IRBuilder, signature: Signature,
                args: Sequence[ir.Value]) -> ir.Value:
        return builder.bitcast(builder.fptrunc(args[0], ir.HalfType()), ir.IntType(16))

    return sig, codegen


@_intrinsic
def bfloat16_bits_to_float32(typingctx: TypingContext, bits: types.Type) -> _IntrinsicTyping:
    """The float32 value of bfloat16 bits (``uint16``): the upper half of a float32, exact (32-bit IR, so the
    loops vectorise with all lanes: Numba's own integer arithmetic would widen to 64 bits)."""
    if bits != types.uint16:
        return None
    sig = types.float32(types.uint16)

    def codegen(context: TargetContext, builder: ir.IRBuilder, signature: Signature,
                args: Sequence[ir.Value]) -> ir.Value:
        i32 = ir.IntType(32)
        wide = builder.shl(builder.zext(args[0], i32), ir.Constant(i32, 16))
        return builder.bitcast(wide, ir.FloatType())

    return sig, codegen


@_intrinsic
def float32_to_bfloat16_bits(typingctx: TypingContext, value: types.Type) -> _IntrinsicTyping:
    """bfloat16 bits (``uint16``) of a float32, rounded to nearest even (as ``ml_dtypes``); a NaN stays a
    quiet NaN of its sign.  32-bit IR (see :func:`bfloat16_bits_to_float32`)."""
    if value != types.float32:
        return None
    sig = types.uint16(types.float32)

    def codegen(context: TargetContext, builder: ir.IRBuilder, signature: Signature,
                args: Sequence[ir.Value]) -> ir.Value:
        i32 = ir.IntType(32)
        u = builder.bitcast(args[0], i32)
        high = builder.lshr(u, ir.Constant(i32, 16))
        bias = builder.add(ir.Constant(i32, 0x7FFF), builder.and_(high, ir.Constant(i32, 1)))
        rounded = builder.lshr(builder.add(u, bias), ir.Constant(i32, 16))
        is_nan = builder.icmp_unsigned(">", builder.and_(u, ir.Constant(i32, 0x7FFFFFFF)), ir.Constant(i32, 0x7F800000))
        quiet = builder.or_(high, ir.Constant(i32, 0x40))
        return builder.trunc(builder.select(is_nan, quiet, rounded), ir.IntType(16))

    return sig, codegen


@_intrinsic
def prefetch_address(typingctx: TypingContext, address: types.Type) -> _IntrinsicTyping:
    """Ask the caches for the line at ``address`` (an integer byte address), to read (``llvm.prefetch``;
    x86's ``prefetcht0``).  A hint: it never faults, whatever the address."""
    if not isinstance(address, types.Integer):
        return None

    def codegen(context: TargetContext, builder: ir.IRBuilder, signature: Signature,
                args: Sequence[ir.Value]) -> ir.Value:
        i32 = ir.IntType(32)
        pointer = builder.inttoptr(args[0], ir.PointerType(ir.IntType(8)))
        fnty = ir.FunctionType(ir.VoidType(), [pointer.type, i32, i32, i32])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch.p0")
        # (address, 0 = read, 3 = keep in every cache level, 1 = data)
        builder.call(fn, [pointer, ir.Constant(i32, 0), ir.Constant(i32, 3), ir.Constant(i32, 1)])
        return context.get_dummy_value()

    return types.void(address), codegen


@_intrinsic
def wide_vectors(typingctx: TypingContext) -> _IntrinsicTyping:
    """Let LLVM vectorise the calling function's loops at the widest vectors the CPU has.

    LLVM targets 256-bit vectors on CPUs with AVX-512 unless a function asks
    for more (its ``"prefer-vector-width"`` attribute: Intel's early AVX-512
    parts lowered their clock for 512-bit arithmetic).  The exponentials'
    loops are arithmetic-bound, and on this project's AVX-512 machine (Xeon,
    Emerald Rapids) 512-bit vectors take 0.28 instead of 0.38 ns per
    float32 exponential.  On a CPU without AVX-512 the attribute changes
    nothing (the vectors are as wide as the registers).
    """
    def codegen(context: TargetContext, builder: ir.IRBuilder, signature: Signature,
                args: Sequence[ir.Value]) -> ir.Value:
        # a string attribute: llvmlite's FunctionAttributes.add knows only the enumerated ones
        set.add(builder.function.attributes, '"prefer-vector-width"="512"')
        return context.get_dummy_value()

    return types.void(), codegen


@_intrinsic
def maxnum(typingctx: TypingContext, a: types.Type, b: types.Type) -> _IntrinsicTyping:
    """IEEE maxNum: the larger of ``a`` and ``b``; a NaN argument is ignored.

    Unlike ``max()`` (a compare and select), LLVM vectorises a reduction
    over ``llvm.maxnum``.  Callers that must propagate NaN detect it
    separately (a NaN logit makes the row's sum of exponentials NaN).
    """
    if a != b or _float_ir_type(a) is None:
        return None

    def codegen(context: TargetContext, builder: ir.IRBuilder, signature: Signature,
                args: Sequence[ir.Value]) -> ir.Value:
        fn = _declare(builder, "llvm.maxnum", _float_ir_type(a), 2)
        return builder.call(fn, list(args))

    return a(a, b), codegen


@_intrinsic
def minnum(typingctx: TypingContext, a: types.Type, b: types.Type) -> _IntrinsicTyping:
    """IEEE minNum: the smaller of ``a`` and ``b``; a NaN argument is ignored."""
    if a != b or _float_ir_type(a) is None:
        return None

    def codegen(context: TargetContext, builder: ir.IRBuilder, signature: Signature,
                args: Sequence[ir.Value]) -> ir.Value:
        fn = _declare(builder, "llvm.minnum", _float_ir_type(a), 2)
        return builder.call(fn, list(args))

    return a(a, b), codegen


@_intrinsic
def rint(typingctx: TypingContext, a: types.Type) -> _IntrinsicTyping:
    """Round to the nearest integer (ties to even), as a float."""
    if _float_ir_type(a) is None:
        return None

    def codegen(context: TargetContext, builder: ir.IRBuilder, signature: Signature,
                args: Sequence[ir.Value]) -> ir.Value:
        fn = _declare(builder, "llvm.rint", _float_ir_type(a), 1)
        return builder.call(fn, list(args))

    return a(a), codegen


@_intrinsic
def select(typingctx: TypingContext, cond: types.Type, a: types.Type, b: types.Type) -> _IntrinsicTyping:
    """``a if cond else b`` as one LLVM ``select`` (no branch, no phi).

    The elementary functions below use it instead of conditional
    expressions so that they stay single basic blocks: they are then inlined
    at the Numba IR level into every loop (a call left in a loop stops LLVM
    from vectorising it) without upsetting Numba's SSA pass.
    """
    if cond != types.boolean or a != b:
        return None

    def codegen(context: TargetContext, builder: ir.IRBuilder, signature: Signature,
                args: Sequence[ir.Value]) -> ir.Value:
        return builder.select(args[0], args[1], args[2])

    return a(cond, a, b), codegen


@_intrinsic
def pow2_of_integral(typingctx: TypingContext, k: types.Type) -> _IntrinsicTyping:
    """``2.0 ** k`` for an integral float ``k`` in the normal exponent range.

    ``k + 1.5 * 2**52`` (2**23 for float32) puts ``k`` into the low bits of
    the mantissa; adding the exponent bias and shifting it into the exponent
    field gives the power of two.  Pure integer arithmetic: it vectorises,
    unlike a float -> int64 conversion, which AVX2 has no instruction for.
    """
    fty = _float_ir_type(k)
    if fty is None:
        return None
    if k == types.float64:
        ity, magic, bias, shift = ir.IntType(64), 6755399441055744.0, 1023, 52
    else:
        ity, magic, bias, shift = ir.IntType(32), 12582912.0, 127, 23

    def codegen(context: TargetContext, builder: ir.IRBuilder, signature: Signature,
                args: Sequence[ir.Value]) -> ir.Value:
        shifted = builder.fadd(args[0], ir.Constant(fty, magic))
        bits = builder.bitcast(shifted, ity)
        biased = builder.add(bits, ir.Constant(ity, bias))
        return builder.bitcast(builder.shl(biased, ir.Constant(ity, shift)), fty)

    return k(k), codegen


# ------------------------------------------------------------------ constants

LOG2E = 1.4426950408889634
LN2 = 0.6931471805599453
# fdlibm's split of ln 2: LN2_HI has 32 significant bits, so n * LN2_HI is
# exact for every n the clamps below allow.
LN2_HI = 6.93147180369123816490e-01
LN2_LO = 1.90821492927058770002e-10
# Cephes' split for float32.
LN2_HI_F32 = np.float32(0.693359375)
LN2_LO_F32 = np.float32(-2.12194440e-4)


# ----------------------------------------------------------------------- exp


@jit_inline
def exp64_poly(r: float) -> Any:
    """``exp(r)`` for ``|r| <= 0.347``: Taylor to degree 13 (error < 5e-18)."""
    p = 1.0 / 6227020800.0
    p = fmuladd(p, r, 1.0 / 479001600.0)
    p = fmuladd(p, r, 1.0 / 39916800.0)
    p = fmuladd(p, r, 1.0 / 3628800.0)
    p = fmuladd(p, r, 1.0 / 362880.0)
    p = fmuladd(p, r, 1.0 / 40320.0)
    p = fmuladd(p, r, 1.0 / 5040.0)
    p = fmuladd(p, r, 1.0 / 720.0)
    p = fmuladd(p, r, 1.0 / 120.0)
    p = fmuladd(p, r, 1.0 / 24.0)
    p = fmuladd(p, r, 1.0 / 6.0)
    p = fmuladd(p, r, 0.5)
    # expm1(r) = r + r*r*p ; exp(r) = 1 + expm1(r)
    return fmuladd(r * r, p, r)


@jit_inline
def exp32_poly(r: np.float32) -> Any:
    """``expm1(r)`` for ``|r| <= 0.347`` in float32 (Cephes' expf polynomial)."""
    p = np.float32(1.9875691500e-4)
    p = fmuladd(p, r, np.float32(1.3981999507e-3))
    p = fmuladd(p, r, np.float32(8.3334519073e-3))
    p = fmuladd(p, r, np.float32(4.1665795894e-2))
    p = fmuladd(p, r, np.float32(1.6666665459e-1))
    p = fmuladd(p, r, np.float32(5.0000001201e-1))
    return fmuladd(r * r, p, r)


@jit_inline
def exp64(x: float) -> Any:
    """``exp(x)`` for float64, vectorisable; NaN -> NaN, -inf -> 0, +inf -> inf."""
    xc = select(x > -1400.0, x, -1400.0)
    xc = select(xc < 710.0, xc, 710.0)
    k = rint(xc * LOG2E)
    r = fmuladd(-k, LN2_HI, xc)
    r = fmuladd(-k, LN2_LO, r)
    em = exp64_poly(r)
    # 2**k in two factors so that subnormal results and k = 1024 work.
    k1 = rint(k * 0.5 - 0.25)
    s1 = pow2_of_integral(k1)
    s2 = pow2_of_integral(k - k1)
    y = fmuladd(s1, em, s1) * s2
    return select(x == x, y, x)


@jit_inline
def exp32(x: np.float32) -> Any:
    """``exp(x)`` for float32, vectorisable; NaN -> NaN, -inf -> 0, +inf -> inf."""
    lo = np.float32(-170.0)
    hi = np.float32(89.0)
    xc = select(x > lo, x, lo)
    xc = select(xc < hi, xc, hi)
    k = rint(xc * np.float32(LOG2E))
    r = fmuladd(-k, LN2_HI_F32, xc)
    r = fmuladd(-k, LN2_LO_F32, r)
    em = exp32_poly(r)
    k1 = rint(k * np.float32(0.5) - np.float32(0.25))
    s1 = pow2_of_integral(k1)
    s2 = pow2_of_integral(k - k1)
    y = fmuladd(s1, em, s1) * s2
    return select(x == x, y, x)


@jit_inline
def expm1_64(x: float) -> Any:
    """``exp(x) - 1`` for float64, accurate near 0, vectorisable."""
    xc = select(x > -60.0, x, -60.0)
    xc = select(xc < 710.0, xc, 710.0)
    k = rint(xc * LOG2E)
    r = fmuladd(-k, LN2_HI, xc)
    r = fmuladd(-k, LN2_LO, r)
    em = exp64_poly(r)
    k1 = rint(k * 0.5 - 0.25)
    s1 = pow2_of_integral(k1)
    s2 = pow2_of_integral(k - k1)
    s = s1 * s2
    # exp(x) - 1 = s * expm1(r) + (s - 1): s - 1 is exact while k <= 53;
    # beyond, the - 1 is below rounding and the two-step scale avoids s = inf.
    y = select(k < 54.0, fmuladd(s, em, s - 1.0), fmuladd(s1, em, s1) * s2)
    return select(x == x, y, x)


@jit_inline
def expm1_32(x: np.float32) -> Any:
    """``exp(x) - 1`` for float32, accurate near 0, vectorisable."""
    lo = np.float32(-30.0)
    hi = np.float32(89.0)
    xc = select(x > lo, x, lo)
    xc = select(xc < hi, xc, hi)
    k = rint(xc * np.float32(LOG2E))
    r = fmuladd(-k, LN2_HI_F32, xc)
    r = fmuladd(-k, LN2_LO_F32, r)
    em = exp32_poly(r)
    k1 = rint(k * np.float32(0.5) - np.float32(0.25))
    s1 = pow2_of_integral(k1)
    s2 = pow2_of_integral(k - k1)
    s = s1 * s2
    y = select(k < np.float32(25.0), fmuladd(s, em, s - np.float32(1.0)), fmuladd(s1, em, s1) * s2)
    return select(x == x, y, x)


# --------------------------------------------------------------------- log1p


@jit_inline
def log1p_unit64(y: float) -> Any:
    """``log(1 + y)`` for ``y`` in [0, 1] (float64), vectorisable.

    ``1 + y = 2**a (1 + t)`` with ``t`` in [-0.293, 0.415], then
    ``log(1 + t) = 2 atanh(s)``, ``s = t / (2 + t)``, a series in ``s**2 <=
    0.0295`` (truncation error < 5e-17 relative).  No ``1 + y`` is formed, so
    nothing cancels.  For ``|s| < 2**-330`` the series' terms are dropped
    (``log(1 + y) = 2 s`` to the last bit there): forming ``s**3`` would give
    a subnormal number, which x86 CPUs compute in microcode, about a hundred
    times slower (the sigmoid losses meet ``y = exp(-|x|)`` that small).
    """
    big = y > 0.41421356237309503
    t = select(big, (y - 1.0) * 0.5, y)
    s = t / (2.0 + t)
    s_series = select(abs(s) < 2.0**-330, 0.0, s)
    z = s_series * s_series
    p = 1.0 / 21.0
    p = fmuladd(p, z, 1.0 / 19.0)
    p = fmuladd(p, z, 1.0 / 17.0)
    p = fmuladd(p, z, 1.0 / 15.0)
    p = fmuladd(p, z, 1.0 / 13.0)
    p = fmuladd(p, z, 1.0 / 11.0)
    p = fmuladd(p, z, 1.0 / 9.0)
    p = fmuladd(p, z, 1.0 / 7.0)
    p = fmuladd(p, z, 1.0 / 5.0)
    p = fmuladd(p, z, 1.0 / 3.0)
    two_s = s + s
    r = fmuladd(two_s * z, p, two_s)
    return select(big, r + LN2, r)


@jit_inline
def log1p_unit32(y: np.float32) -> Any:
    """``log(1 + y)`` for ``y`` in [0, 1] (float32), as :func:`log1p_unit64` (the series dropped for
    ``|s| < 2**-40``)."""
    big = y > np.float32(0.41421356)
    t = select(big, (y - np.float32(1.0)) * np.float32(0.5), y)
    s = t / (np.float32(2.0) + t)
    s_series = select(abs(s) < np.float32(2.0**-40), np.float32(0.0), s)
    z = s_series * s_series
    p = np.float32(1.0 / 11.0)
    p = fmuladd(p, z, np.float32(1.0 / 9.0))
    p = fmuladd(p, z, np.float32(1.0 / 7.0))
    p = fmuladd(p, z, np.float32(1.0 / 5.0))
    p = fmuladd(p, z, np.float32(1.0 / 3.0))
    two_s = s + s
    r = fmuladd(two_s * z, p, two_s)
    return select(big, r + np.float32(LN2), r)


@jit_inline
def log1p_0_to_127(y: float) -> Any:
    """``log(1 + y)`` for float64 ``y`` in [0, 127), vectorisable; NaN -> NaN.

    ``1 + y = 2**k (1 + f)`` with ``k`` counted by comparisons (no exponent
    extraction needed in this range) and ``f`` in [0, 1): ``f = y`` itself
    when ``k = 0`` (so a tiny ``y`` keeps its relative precision), else
    ``(1 + y) / 2**k - 1``; then ``k ln 2 + log1p(f)`` with
    :func:`log1p_unit64`.  A softmax row's sum of exponentials minus 1 lies
    in ``[0, C - 1]``, so for rows of fewer than 128 classes this replaces a
    scalar libm ``log1p`` per row.
    """
    k = select(y >= 1.0, 1.0, 0.0) + select(y >= 3.0, 1.0, 0.0) + select(y >= 7.0, 1.0, 0.0)
    k += select(y >= 15.0, 1.0, 0.0) + select(y >= 31.0, 1.0, 0.0) + select(y >= 63.0, 1.0, 0.0)
    f = select(k == 0.0, y, (1.0 + y) * pow2_of_integral(-k) - 1.0)
    return fmuladd(k, LN2, log1p_unit64(f))


# ------------------------------------------------- dtype-generic entry points


def exp(x: _FloatT) -> _FloatT:
    """``exp(x)`` in the precision of ``x`` (use inside kernels)."""
    raise NotImplementedError("numloss._kernels._math.exp is for use inside @njit code")


def expm1(x: _FloatT) -> _FloatT:
    """``exp(x) - 1`` in the precision of ``x`` (use inside kernels)."""
    raise NotImplementedError("numloss._kernels._math.expm1 is for use inside @njit code")


def log1p_unit(y: _FloatT) -> _FloatT:
    """``log(1 + y)`` for ``y`` in [0, 1] in the precision of ``y``."""
    raise NotImplementedError("numloss._kernels._math.log1p_unit is for use inside @njit code")


# The typing functions of the overloads below and the implementations they return annotate their parameters
# alike (Any): Numba checks that the two signatures are equal, annotations included.


def _by_precision(impl64: Callable[[Any], Any], impl32: Callable[[Any], Any]
                  ) -> Callable[[Any], Callable[[Any], Any] | None]:
    def typer(x: Any) -> Callable[[Any], Any] | None:
        if x == types.float64:
            def in_float64(x: Any) -> Any:
                return impl64(x)

            return in_float64
        if x == types.float32:
            def in_float32(x: Any) -> Any:
                return impl32(x)

            return in_float32
        return None

    return typer


overload(exp, inline="always", jit_options=OVERLOAD_OPTIONS)(_by_precision(exp64, exp32))
overload(expm1, inline="always", jit_options=OVERLOAD_OPTIONS)(_by_precision(expm1_64, expm1_32))
overload(log1p_unit, inline="always", jit_options=OVERLOAD_OPTIONS)(
    _by_precision(log1p_unit64, log1p_unit32)
)


def cast_like(value: float | np.floating, like: _FloatT) -> _FloatT:
    """``value`` converted to the floating type of ``like`` (inside kernels)."""
    raise NotImplementedError("numloss._kernels._math.cast_like is for use inside @njit code")


def _cast_like_typer(value: Any, like: Any) -> Callable[[Any, Any], Any] | None:
    if like == types.float64:
        def to_float64(value: Any, like: Any) -> Any:
            return np.float64(value)

        return to_float64
    if like == types.float32:
        def to_float32(value: Any, like: Any) -> Any:
            return np.float32(value)

        return to_float32
    return None


overload(cast_like, inline="always", jit_options=OVERLOAD_OPTIONS)(_cast_like_typer)


def rescale_floor(scale: _FloatT) -> _FloatT:
    """The smallest ``e >= 0`` whose ``e * scale`` is a normal number, in the precision of ``scale``
    (inside kernels): ``smallest normal / scale``, at least 0 (0 when ``scale`` is negative or NaN).

    A gradient pass ``g = e * scale`` writes ``select(e < floor, 0, e) * scale``
    instead: the products that would be subnormal (below 1.2e-38 in float32,
    2.2e-308 in float64) come out 0 and are never formed, since x86 CPUs
    compute a subnormal result in microcode, about a hundred times slower
    (softmax 4096 x 1000 float32, one thread, logits of standard deviation
    20: 13.0 ms before this, 3.0-3.2 ms after; 2.6-2.8 ms at deviation 2).
    """
    raise NotImplementedError("numloss._kernels._math.rescale_floor is for use inside @njit code")


def _rescale_floor_typer(scale: Any) -> Callable[[Any], Any] | None:
    if scale == types.float64:
        def in_float64(scale: Any) -> Any:
            f = 2.2250738585072014e-308 / scale
            return select(f > 0.0, f, 0.0)

        return in_float64
    if scale == types.float32:
        def in_float32(scale: Any) -> Any:
            f = np.float32(np.float64(1.1754943508222875e-38) / np.float64(scale))
            return select(f > np.float32(0.0), f, np.float32(0.0))

        return in_float32
    return None


overload(rescale_floor, inline="always", jit_options=OVERLOAD_OPTIONS)(_rescale_floor_typer)


@jit_inline
def normal_or_zero(v: Any) -> Any:
    """``v``, or 0 where ``|v|`` is below the smallest normal number of its dtype: for the gradient
    entries a row computes one at a time (its target's), as :func:`rescale_floor` does for the rest."""
    one = cast_like(1.0, v)
    return select(abs(v) < rescale_floor(one), one - one, v)


def tanh_and_sech2(x: _FloatT) -> tuple[_FloatT, _FloatT]:
    """``(tanh(x), 1 - tanh(x)**2)`` in the precision of ``x`` (inside kernels)."""
    raise NotImplementedError("numloss._kernels._math.tanh_and_sech2 is for use inside @njit code")


@jit_inline
def _expm1_nonpositive64(x: float) -> Any:
    # x <= 0 (or NaN): one power of two suffices, exp(x) - 1 = -1 below -40
    xc = maxnum(x, -40.0)
    k = rint(xc * LOG2E)
    r = fmuladd(-k, LN2_HI, xc)
    r = fmuladd(-k, LN2_LO, r)
    s = pow2_of_integral(k)
    return select(x == x, fmuladd(s, exp64_poly(r), s - 1.0), x)


@jit_inline
def _expm1_nonpositive32(x: np.float32) -> Any:
    xc = maxnum(x, np.float32(-20.0))
    k = rint(xc * np.float32(LOG2E))
    r = fmuladd(-k, LN2_HI_F32, xc)
    r = fmuladd(-k, LN2_LO_F32, r)
    s = pow2_of_integral(k)
    return select(x == x, fmuladd(s, exp32_poly(r), s - np.float32(1.0)), x)


def expm1_nonpositive(x: _FloatT) -> _FloatT:
    """``exp(x) - 1`` for ``x <= 0`` in the precision of ``x`` (inside kernels)."""
    raise NotImplementedError("numloss._kernels._math.expm1_nonpositive is for use inside @njit code")


overload(expm1_nonpositive, inline="always", jit_options=OVERLOAD_OPTIONS)(
    _by_precision(_expm1_nonpositive64, _expm1_nonpositive32)
)


def _tanh_and_sech2_impl(x: Any) -> tuple[Any, Any]:
    # tanh|x| = -expm1(-2|x|) / (2 + expm1(-2|x|)): no cancellation near 0,
    # no overflow for large |x| (expm1 -> -1, tanh -> 1).
    one = cast_like(1.0, x)
    a = select(x >= 0, x, -x)
    em = expm1_nonpositive(-(a + a))
    th = -em / (one + one + em)
    th = select(x >= 0, th, -th)
    return th, (one - th) * (one + th)


def _tanh_and_sech2_typer(x: Any) -> Callable[[Any], tuple[Any, Any]] | None:
    return _tanh_and_sech2_impl if isinstance(x, types.Float) else None


overload(tanh_and_sech2, inline="always", jit_options=OVERLOAD_OPTIONS)(_tanh_and_sech2_typer)


@jit_inline
def exp_nonpositive64(x: float) -> Any:
    """``exp(x)`` for ``x <= 0`` (float64): one power of two, results for
    ``x < -708`` (near the smallest normal number) flushed to 0.  NaN -> NaN."""
    lo = -708.0
    xc = select(x < lo, lo, x)  # (NaN stays NaN, and so does y below)
    k = rint(xc * LOG2E)
    r = fmuladd(-k, LN2_HI, xc)
    r = fmuladd(-k, LN2_LO, r)
    s = pow2_of_integral(k)
    y = fmuladd(s, exp64_poly(r), s)
    return select(x < lo, 0.0, y)


@jit_inline
def exp_nonpositive32(x: np.float32) -> Any:
    """``exp(x)`` for ``x <= 0`` (float32): one power of two, results for
    ``x < -87`` (near the smallest normal number) flushed to 0.  NaN -> NaN."""
    lo = np.float32(-87.0)
    xc = select(x < lo, lo, x)  # (NaN stays NaN, and so does y below)
    k = rint(xc * np.float32(LOG2E))
    r = fmuladd(-k, LN2_HI_F32, xc)
    r = fmuladd(-k, LN2_LO_F32, r)
    s = pow2_of_integral(k)
    y = fmuladd(s, exp32_poly(r), s)
    return select(x < lo, np.float32(0.0), y)


def exp_nonpositive(x: _FloatT) -> _FloatT:
    """``exp(x)`` for ``x <= 0`` in the precision of ``x`` (inside kernels);
    the softmax's ``exp(x - max)``.  Tiny results (below the smallest normal
    number) are flushed to 0."""
    raise NotImplementedError("numloss._kernels._math.exp_nonpositive is for use inside @njit code")


overload(exp_nonpositive, inline="always", jit_options=OVERLOAD_OPTIONS)(
    _by_precision(exp_nonpositive64, exp_nonpositive32)
)
