"""gemmlowp's fixed-point primitives (``fixedpoint/fixedpoint.h``) on int64 numpy arrays holding int32 raws.

TFLite's reference SOFTMAX (and other LUT-free transcendental kernels) compute in ``FixedPoint<int32_t,
IntegerBits>`` values: a raw int32 ``r`` standing for ``r * 2**(IntegerBits - 31)``. Products are
``SaturatingRoundingDoublingHighMul`` of the raws (the integer bits add up), sums are plain int32 adds
(two's complement wrap, as the C++ compiles them), and rescaling between formats is a saturating left
shift or a rounding right shift. Every function here takes and returns int64 arrays whose values are
int32, so that the products below (``|a * b| <= 2**62``) never overflow.
"""
from __future__ import annotations

import numpy as np

from edgeopt.runtimes.reference.arith.fixedpoint import INT32_MAX, INT32_MIN, wrap_int32


def saturating_rounding_doubling_high_mul(a: np.ndarray, b: np.ndarray | int) -> np.ndarray:
    """gemmlowp ``SaturatingRoundingDoublingHighMul``: ``a * b / 2**31``, rounded half away from zero
    (the nudge ``2**30`` or ``1 - 2**30`` then a truncating division), saturating only for
    ``a == b == INT32_MIN``."""
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    ab = a * b
    nudge = np.where(ab >= 0, 1 << 30, 1 - (1 << 30))
    total = ab + nudge
    # C++ integer division truncates towards zero.
    result = np.where(total >= 0, total >> 31, -((-total) >> 31))
    return np.where((a == INT32_MIN) & (b == INT32_MIN), INT32_MAX, result)


def rounding_divide_by_pot(x: np.ndarray, exponent: np.ndarray | int) -> np.ndarray:
    """gemmlowp ``RoundingDivideByPOT``: ``x / 2**exponent`` rounded half away from zero."""
    x = np.asarray(x, dtype=np.int64)
    e = np.asarray(exponent, dtype=np.int64)
    mask = (np.int64(1) << e) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (x < 0)
    return (x >> e) + (remainder > threshold)


def saturating_rounding_multiply_by_pot(x: np.ndarray, exponent: int) -> np.ndarray:
    """gemmlowp ``SaturatingRoundingMultiplyByPOT<exponent>``: a saturating left shift for a positive
    exponent, ``rounding_divide_by_pot`` for a negative one."""
    x = np.asarray(x, dtype=np.int64)
    if exponent > 0:
        threshold = (1 << (31 - exponent)) - 1
        return np.where(x > threshold, INT32_MAX, np.where(x < -threshold, INT32_MIN, x << exponent))
    if exponent < 0:
        return rounding_divide_by_pot(x, -exponent)
    return x


def rescale(x: np.ndarray, src_integer_bits: int, dst_integer_bits: int) -> np.ndarray:
    """gemmlowp ``Rescale<dst>`` of a ``FixedPoint<int32_t, src>`` raw."""
    return saturating_rounding_multiply_by_pot(x, src_integer_bits - dst_integer_bits)


def add(a: np.ndarray, b: np.ndarray | int) -> np.ndarray:
    """The ``+`` of two fixed-point raws: an int32 add, wrapping."""
    return wrap_int32(np.asarray(a, dtype=np.int64) + b)


def sub(a: np.ndarray | int, b: np.ndarray) -> np.ndarray:
    """The ``-`` of two fixed-point raws: an int32 subtraction, wrapping."""
    return wrap_int32(a - np.asarray(b, dtype=np.int64))


def exp_on_interval_between_negative_one_quarter_and_0_excl(a: np.ndarray) -> np.ndarray:
    """gemmlowp's ``exp`` of a Q0.31 raw in ``[-1/4, 0)``: a 4th-order Taylor expansion around -1/8."""
    mul = saturating_rounding_doubling_high_mul
    constant_term = 1895147668  # exp(-1/8) in Q0.31
    constant_1_over_3 = 715827883  # 1/3 in Q0.31
    x = add(a, 1 << 28)  # a + 1/8
    x2 = mul(x, x)
    x3 = mul(x2, x)
    x4 = mul(x2, x2)
    x4_over_4 = saturating_rounding_multiply_by_pot(x4, -2)
    poly = saturating_rounding_multiply_by_pot(add(mul(add(x4_over_4, x3), constant_1_over_3), x2), -1)
    return add(constant_term, mul(constant_term, add(x, poly)))


# exp(-2**k) in Q0.31 for k = -2 .. 4: gemmlowp's barrel-shifter multipliers.
_EXP_BARREL = ((-2, 1672461947), (-1, 1302514674), (0, 790015084), (1, 290630308), (2, 39332535),
               (3, 720401), (4, 242))


def exp_on_negative_values(a: np.ndarray, integer_bits: int) -> np.ndarray:
    """gemmlowp ``exp_on_negative_values``: Q``integer_bits`` raws ``a <= 0`` → ``exp(a)`` as Q0.31 raws.

    ``a`` splits into ``a mod 1/4 - 1/4`` (evaluated by the Taylor polynomial) and a multiple of 1/4
    whose bits select the multipliers ``exp(-2**k)``; ``a == 0`` gives the saturated one,
    ``2**31 - 1``. Only ``integer_bits <= 5`` is implemented (gemmlowp clamps below -32 beyond that).
    """
    if integer_bits > 5:
        raise ValueError("exp_on_negative_values is implemented for at most 5 integer bits")
    fractional_bits = 31 - integer_bits
    one_quarter = 1 << (fractional_bits - 2)
    a = np.asarray(a, dtype=np.int64)
    a_mod_quarter_minus_one_quarter = sub(a & (one_quarter - 1), one_quarter)
    result = exp_on_interval_between_negative_one_quarter_and_0_excl(
        rescale(a_mod_quarter_minus_one_quarter, integer_bits, 0))
    remainder = sub(a_mod_quarter_minus_one_quarter, a)
    for exponent, multiplier in _EXP_BARREL:
        if integer_bits > exponent:
            selected = (remainder & (1 << (fractional_bits + exponent))) != 0
            result = np.where(selected, saturating_rounding_doubling_high_mul(result, multiplier), result)
    return np.where(a == 0, INT32_MAX, result)


def one_over_one_plus_x_for_x_in_0_1(a: np.ndarray) -> np.ndarray:
    """gemmlowp ``one_over_one_plus_x_for_x_in_0_1``: Q0.31 ``a`` in ``[0, 1)`` → ``1 / (1 + a)`` in Q0.31,
    by three Newton-Raphson steps on the half denominator in Q2.29."""
    mul = saturating_rounding_doubling_high_mul
    a = np.asarray(a, dtype=np.int64)
    # RoundingHalfSum(a, One): (a + b + sign) / 2 in 64 bits, truncating.
    total = a + INT32_MAX
    total = total + np.where(total >= 0, 1, -1)
    half_denominator = np.where(total >= 0, total // 2, -((-total) // 2))
    constant_48_over_17 = 1515870810  # Q2.29
    constant_neg_32_over_17 = -1010580540  # Q2.29
    one_q2 = 1 << 29
    x = add(mul(half_denominator, constant_neg_32_over_17), constant_48_over_17)
    for _ in range(3):
        half_denominator_times_x = mul(half_denominator, x)  # Q0 * Q2 -> Q2
        one_minus = sub(one_q2, half_denominator_times_x)
        x = add(x, rescale(mul(x, one_minus), 4, 2))  # Q2 * Q2 -> Q4, rescaled to Q2
    # ExactMulByPot<-1> keeps the raw and reads it as Q1.30; Rescale<0> shifts it left by one.
    return rescale(x, 1, 0)


def count_leading_zeros_u32(x: np.ndarray) -> np.ndarray:
    """``CountLeadingZeros(static_cast<uint32_t>(x))`` for int32 values (32 for zero)."""
    u = np.asarray(x, dtype=np.int64) & 0xFFFFFFFF
    bits = np.zeros(u.shape, dtype=np.int64)
    nonzero = u > 0
    bits[nonzero] = np.floor(np.log2(u[nonzero].astype(np.float64))).astype(np.int64) + 1
    # log2 of a float64 rounds up just below powers of two for large values; correct by one step.
    too_high = nonzero & ((np.int64(1) << np.maximum(bits - 1, 0)) > u)
    bits[too_high] -= 1
    too_low = nonzero & ((np.int64(1) << bits) <= u)
    bits[too_low] += 1
    return 32 - bits
