"""Fixed-point requantization: TFLite's ``QuantizeMultiplier`` and ``MultiplyByQuantizedMultiplier``.

A real multiplier ``M`` is stored as an int32 ``multiplier`` in Q0.31 and a power-of-two ``shift``
(positive = left shift, negative = right shift, as in TFLite): ``M ~= multiplier * 2**(shift - 31)``.
Two roundings of ``x * M`` exist in TFLite builds (``tensorflow/lite/kernels/internal/common.cc``):

* ``"single"`` (builds defining ``TFLITE_SINGLE_ROUNDING``): one 64-bit product, rounded once, half
  up (towards +inf): ``(x * multiplier + 2**(30 - shift)) >> (31 - shift)``.
* ``"double"`` (gemmlowp, the default): ``RoundingDivideByPOT(SaturatingRoundingDoublingHighMul(
  x << left, m), right)``: the high half of ``2 * x * m`` rounded half up, then a right shift rounded
  half away from zero. The reference kernels of ai-edge-litert 2.3.0 and of tflite-runtime 2.14 both
  round this way (measured by ``tests/runtimes/reference/test_bitexact_litert.py``).

Everything here is vectorised numpy on int64; ``multiplier`` and ``shift`` broadcast against ``x``
(per-channel values broadcast along the channel axis).
"""
from __future__ import annotations

import math

import numpy as np

from edgeopt.errors import InternalError
from edgeopt.qprogram import Rounding

INT32_MIN = -(1 << 31)
INT32_MAX = (1 << 31) - 1
# Largest |w * (x - zp)| of int8 operands: |w| <= 128 and |x - zp| <= 255.
MAX_PRODUCT = 128 * 255
# Largest |(w - zp_w) * (x - zp)| of int8 operands with a weight zero point (``weights_offset``): both <= 255.
MAX_OFFSET_PRODUCT = 255 * 255
INT16_MIN, INT16_MAX = -(1 << 15), (1 << 15) - 1


def quantize_multiplier(real: float, rounding: Rounding = "single") -> tuple[int, int]:
    """TFLite ``QuantizeMultiplier`` (``kernels/internal/quantization_util.cc``).

    ``q, shift = frexp(real)`` (``0.5 <= |q| < 1``), ``multiplier = round(q * 2**31)`` half away from
    zero; a rounding up to ``2**31`` becomes ``2**30`` with ``shift + 1``; ``shift < -31`` flushes to
    ``(0, 0)``; single rounding saturates ``shift > 30`` to ``(2**31 - 1, 30)``.

    Args:
        real: the real multiplier, computed in double precision by the caller as TFLite does.
        rounding: the build's rounding; only the saturation of huge multipliers depends on it.

    Returns:
        ``(multiplier, shift)``: an int32 value (in ``[0, 2**31 - 1]`` for ``real >= 0``) and an
        exponent.
    """
    if real == 0.0:
        return 0, 0
    q, shift = math.frexp(real)
    # q * 2**31 is exact; it has at most 22 fraction bits, so adding 0.5 is exact too.
    scaled = abs(q) * (1 << 31)
    q_fixed = int(math.floor(scaled + 0.5))
    q_fixed = q_fixed if q >= 0 else -q_fixed
    if abs(q_fixed) == 1 << 31:
        q_fixed //= 2
        shift += 1
    if shift < -31:
        return 0, 0
    if rounding == "single" and shift > 30:
        return INT32_MAX, 30
    return q_fixed, shift


def wrap_int32(x: np.ndarray) -> np.ndarray:
    """``static_cast<int32_t>`` of int64 values (two's complement wrap), returned as int64."""
    return x.astype(np.int32).astype(np.int64)


class QuantizedMultiplier:
    """TFLite ``MultiplyByQuantizedMultiplier(int32 x, int32 multiplier, int shift)`` for fixed
    (per-channel) multipliers and shifts, as a callable: ``QuantizedMultiplier(m, s, rounding)(x)``.

    single: ``(x * multiplier + 2**(30 - shift)) >> (31 - shift)``, narrowed to int32 as the C++
    ``static_cast<int32_t>`` does (only a positive shift can leave the int32 range).

    double: ``RoundingDivideByPOT(SaturatingRoundingDoublingHighMul(x * 2**left, multiplier),
    right)`` with ``left = max(shift, 0)``, ``right = max(-shift, 0)`` and ``x * 2**left`` wrapping in
    int32 as the C++ does. Computed with fewer passes through two identities (literal ports of the
    gemmlowp functions live in the golden tests, which check the identities against them):

    * ``SaturatingRoundingDoublingHighMul(a, b) == (a * b + 2**30) >> 31`` for ``b >= 0``. For
      ``ab >= 0`` gemmlowp adds ``2**30`` and truncates, the same as flooring. For ``ab < 0`` it
      truncates ``(ab + 1 - 2**30) / 2**31``, i.e. ``-floor((|ab| + 2**30 - 1) / 2**31)``, and
      ``floor((ab + 2**30) / 2**31) = -ceil((|ab| - 2**30) / 2**31)``, equal by
      ``ceil(k / n) = floor((k + n - 1) / n)``. It saturates only for ``a == b == INT32_MIN``,
      impossible with ``b >= 0``.
    * ``RoundingDivideByPOT(v, e) == (v + 2**(e-1) - [v < 0]) >> e`` for ``e >= 1`` (and ``v`` for
      ``e = 0``). gemmlowp returns ``(v >> e) + [r > 2**(e-1) - 1 + [v < 0]]`` with ``r = v & (2**e
      - 1)`` (half away from zero: negative ties go down). With ``v = q * 2**e + r``, the right side
      is ``q + floor((r + 2**(e-1) - [v < 0]) / 2**e)``, whose numerator lies in ``[0, 2**(e+1))``,
      so it is ``q + [r >= 2**(e-1) + [v < 0]]``: the same.

    Everything per channel (constants, which shifts are positive or zero) is computed once, on the
    small ``shift`` array; a call makes one multiply, then in-place adds and shifts, int64.

    Args:
        multiplier: Q0.31 multipliers in ``[0, 2**31 - 1]``, broadcastable to the values.
        shift: exponents in ``[-31, 30]``, broadcastable to the values.
        rounding: ``"single"`` or ``"double"``.
    """

    def __init__(self, multiplier: np.ndarray | int, shift: np.ndarray | int, rounding: Rounding) -> None:
        self.multiplier = np.asarray(multiplier, dtype=np.int64)
        s = np.asarray(shift, dtype=np.int64)
        self.rounding = rounding
        self.left = np.maximum(s, 0) if np.any(s > 0) else None
        if rounding == "single":
            self.right = 31 - s
            self.nudge = np.left_shift(np.int64(1), self.right - 1)
            self.half = self.sign_mask = None
        else:
            self.right = np.maximum(-s, 0) if np.any(s < 0) else None
            self.nudge = np.int64(1 << 30)
            self.half = None if self.right is None else np.left_shift(np.int64(1), self.right) >> 1
            # RoundingDivideByPOT's [v < 0] term applies where right >= 1 only.
            self.sign_mask = None if self.right is None or np.all(self.right > 0) else self.right > 0

    def __call__(self, x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """``MultiplyByQuantizedMultiplier(x)``.

        Args:
            x: int32 values (any integer dtype).
            out: int64 array of the broadcast shape to compute in (``x`` itself, if int64, to
                overwrite it); a new array by default.

        Returns:
            int64 array holding the int32 results (``out`` when given).
        """
        x = np.asarray(x)
        if self.left is not None and self.rounding == "double":
            x = wrap_int32(np.left_shift(x, self.left, dtype=np.int64))
        # |x * m| < 2**31 * 2**31 = 2**62 and the nudge is <= 2**61: no int64 overflow.
        result = np.multiply(x, self.multiplier, out=out, dtype=np.int64)
        result += self.nudge
        if self.rounding == "single":
            result >>= self.right
            return _wrap_int32_in_place(result) if self.left is not None else result
        result >>= 31
        if self.right is not None:
            negative = result < 0
            if self.sign_mask is not None:
                negative &= self.sign_mask
            result -= negative
            result += self.half
            result >>= self.right
        return result


def multiply_by_quantized_multiplier(
    x: np.ndarray, multiplier: np.ndarray | int, shift: np.ndarray | int, rounding: Rounding
) -> np.ndarray:
    """TFLite ``MultiplyByQuantizedMultiplier`` of int32 values ``x`` (any integer dtype) by
    ``multiplier``/``shift`` broadcast against them: ``QuantizedMultiplier``, which states the
    formulas, applied once. Returns a new int64 array holding the int32 results."""
    return QuantizedMultiplier(multiplier, shift, rounding)(x)


def _wrap_int32_in_place(x: np.ndarray) -> np.ndarray:
    """``wrap_int32`` into ``x`` itself (int64), which it returns."""
    np.copyto(x, x.astype(np.int32))
    return x


def multiply_by_quantized_multiplier_smaller_than_one_exp(
    x: np.ndarray, multiplier: np.ndarray | int, shift: np.ndarray | int, rounding: Rounding
) -> np.ndarray:
    """TFLite ``MultiplyByQuantizedMultiplierSmallerThanOneExp`` (``common.h``), used by ADD.

    For ``shift <= 0`` both builds compute exactly ``multiply_by_quantized_multiplier`` (double:
    ``RoundingDivideByPOT(SaturatingRoundingDoublingHighMul(x, m), -shift)``; single: the one-rounding
    formula), so this is that function restricted to non-positive shifts.
    """
    if np.any(np.asarray(shift) > 0):
        raise InternalError("MultiplyByQuantizedMultiplierSmallerThanOneExp needs shift <= 0")
    return multiply_by_quantized_multiplier(x, multiplier, shift, rounding)


def round_half_away_from_zero(v: np.ndarray) -> np.ndarray:
    """C ``round(double)``: float64 to the nearest integer, ties away from zero (still float64).

    Computed as ``floor(|v|)`` plus one when ``|v| - floor(|v|) >= 0.5`` (that difference is exact),
    never as ``floor(v + 0.5)``, which rounds 0.49999999999999994 up.
    """
    a = np.abs(v)
    whole = np.floor(a)
    return np.copysign(whole + (a - whole >= 0.5), v)


class Requantizer:
    """The int8 tail of TFLite's conv/depthwise kernels for one op: scale, add the zero point, clamp,
    narrow; its per-channel constants computed once, for kernels that requantize block by block.

    ``clamp(MultiplyByQuantizedMultiplier(acc, m[c], s[c]) + output_offset, act_min, act_max)``
    (``reference/integer_ops/conv.h``), ``acc`` being the int32 accumulator (bias included) and
    ``m``/``s`` broadcasting along its channel axis.

    The offset is added after the clamp, in int8, the cheapest place: clamping to ``[act_min -
    offset, act_max - offset]`` first is the same (addition is monotonic); the int8 narrowing and the
    int8 addition both wrap modulo ``2**8``, and the sum lies in ``[act_min, act_max]``, inside int8,
    so the wrapped result is the sum itself. (The C++ int32 addition overflows, undefined behaviour,
    only for a scaled value within 128 of the int32 limits, which this clamps instead.)

    Args:
        multiplier: Q0.31 multipliers, broadcastable to the accumulators.
        shift: exponents, broadcastable to the accumulators.
        output_offset: the output zero point.
        activation_min: lower clamp, an int8 value.
        activation_max: upper clamp, an int8 value.
        rounding: the rounding of ``MultiplyByQuantizedMultiplier``.
    """

    def __init__(
        self, multiplier: np.ndarray | int, shift: np.ndarray | int, output_offset: int,
        activation_min: int, activation_max: int, rounding: Rounding,
    ) -> None:
        self.scale = QuantizedMultiplier(multiplier, shift, rounding)
        self.offset = output_offset
        self.low, self.high = activation_min - output_offset, activation_max - output_offset

    def __call__(self, acc: np.ndarray, out: np.ndarray | None = None, work: np.ndarray | None = None) -> np.ndarray:
        """Requantize ``acc``.

        Args:
            acc: the int32 accumulators (any integer dtype).
            out: int8 array of ``acc``'s shape to write to; a new one by default.
            work: int64 array of ``acc``'s shape to compute in (``acc`` itself, if int64, to
                overwrite it); a new one by default.

        Returns:
            The int8 results (``out`` when given).
        """
        scaled = self.scale(acc, out=work)
        np.clip(scaled, self.low, self.high, out=scaled)
        if out is None:
            out = np.empty(scaled.shape, dtype=np.int8)
        np.copyto(out, scaled, casting="unsafe")
        out += np.int8(self.offset)
        return out


def requantize(
    acc: np.ndarray,
    multiplier: np.ndarray,
    shift: np.ndarray,
    output_offset: int,
    activation_min: int,
    activation_max: int,
    rounding: Rounding,
) -> np.ndarray:
    """``Requantizer`` applied once: the int8 results for the int32 accumulators ``acc`` (bias
    included), ``multiplier``/``shift`` broadcasting along their channel axis."""
    return Requantizer(multiplier, shift, output_offset, activation_min, activation_max, rounding)(acc)


def int32_accumulator(acc: np.ndarray, bound: int) -> np.ndarray:
    """The value a C++ int32 accumulator holds for the exact sums ``acc`` (int64), given
    ``bound >= max |acc|``: the sums themselves when they fit, else wrapped as two's complement
    arithmetic (modular, whatever the order of the additions) leaves them."""
    return acc if bound < 1 << 31 else wrap_int32(acc)


def multiply_by_quantized_multiplier_int64(
    x: np.ndarray, multiplier: np.ndarray | int, shift: np.ndarray | int
) -> np.ndarray:
    """TFLite ``MultiplyByQuantizedMultiplier(int64_t x, int32_t multiplier, int shift)`` (``common.cc``).

    The Q0.31 multiplier is first reduced to Q0.15, ``m16 = (m + 2**15) >> 16`` (``0x7FFF`` when ``m >=
    0x7FFF0000``, where that would overflow), then ``(x * m16 + 2**(14 - shift)) >> (15 - shift)``, one
    rounding half up, narrowed to int32. Both the single- and double-rounding builds compute this.
    ``|x| < 2**47`` (TFLite's assumption) and ``m16 <= 2**15`` keep ``x * m16`` inside int64.

    Args:
        x: int64 accumulators.
        multiplier: Q0.31 multipliers in ``[0, 2**31 - 1]``, broadcastable to ``x``.
        shift: exponents in ``[-31, 7]``, broadcastable to ``x``.

    Returns:
        int64 array holding the int32 results.
    """
    m = np.asarray(multiplier, dtype=np.int64)
    reduced = np.where(m < 0x7FFF0000, (m + (1 << 15)) >> 16, 0x7FFF)
    total = 15 - np.asarray(shift, dtype=np.int64)
    result = np.asarray(x, dtype=np.int64) * reduced
    result += np.left_shift(np.int64(1), total - 1)
    result >>= total
    return wrap_int32(result)


def requantize_16(acc: np.ndarray, multiplier: np.ndarray | int, shift: np.ndarray | int,
                  activation_min: int, activation_max: int) -> np.ndarray:
    """The int16 tail of TFLite's 16x8 conv, depthwise and fixed-point fully-connected kernels:
    ``clamp(multiply_by_quantized_multiplier_int64(acc, m[c], s[c]), act_min, act_max)`` as int16
    (the output zero point is 0 in 16x8 mode)."""
    scaled = multiply_by_quantized_multiplier_int64(acc, multiplier, shift)
    return np.clip(scaled, activation_min, activation_max).astype(np.int16)
