"""Standalone activations: RELU, RELU6, RELU_N1_TO_1, HARD_SWISH, LOGISTIC, TANH: Prepare and the int8,
16x8 and float32 kernels (TFLite ``kernels/activations.cc`` with ``reference_ops::ReluX`` and
``reference/hard_swish.h``).

* int8: each output element depends on its input element alone, so every kernel evaluates TFLite's
  integer recipe once on the 256 int8 values and looks the tensor up in that table: the same integers
  as the C++ loops. LOGISTIC and TANH are table lookups in TFLite itself (Prepare's ``LUTPopulate``).
* 16x8, RELU and RELU6 (``QuantizedReluX<int16_t>``): ``clamp(zp_out + MultiplyByQuantizedMultiplier(x -
  zp_in, m, s), act_min, act_max)`` with the int32 multiply of the build's rounding and the int16
  bounds ``round(f / s_out)``. RELU_N1_TO_1 has no int16 case in LiteRT.
* float32, as LiteRT 2.3's float reference kernels compute them: RELU, RELU6, RELU_N1_TO_1 a clamp;
  HARD_SWISH (``reference/hard_swish.h``) ``x * min(6, max(0, x + 3)) / 6``, each step one float32
  operation: both bit-exact. LOGISTIC (``reference/logistic.h``): 1 above 16.619047164916992188,
  ``exp(x)`` below -9, else ``1 / (1 + exp(-x))`` in float32, with ``expf`` taken as the correctly
  rounded float64 ``exp``; TANH: ``std::tanh`` taken as the correctly rounded float64 ``tanh``.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from edgeopt.errors import UnsupportedOpError
from edgeopt.ir import frozen_array
from edgeopt.qprogram import QOp, QProgram, Rounding
from edgeopt.runtimes.reference.arith.fixedpoint import (
    INT16_MAX,
    INT16_MIN,
    multiply_by_quantized_multiplier,
    quantize_multiplier,
    round_half_away_from_zero,
)
from edgeopt.runtimes.reference.prepare import (
    activation_range_int16,
    calculate_activation_range_quantized,
    per_tensor,
    qparams_of,
    zero_points_zero,
)
from edgeopt.runtimes.reference.registry import ACTIVATION_BOUNDS, F32, KERNELS, PREPARERS, Params

INT8_VALUES = np.arange(-128, 128, dtype=np.int64)
RELU_KINDS = ("RELU", "RELU6", "RELU_N1_TO_1")
INT16_RELU_KINDS = ("RELU", "RELU6")
# The float reference's LOGISTIC cut-offs (reference/logistic.h).
_LOGISTIC_UPPER = F32(16.619047164916992188)
_LOGISTIC_LOWER = F32(-9.0)


def lookup(table: np.ndarray, x: np.ndarray) -> np.ndarray:
    """``table[x + 128]``: the int8 image of every element of ``x`` under a 256-entry table."""
    return table[x.astype(np.int16) + 128]


# -- RELU, RELU6, RELU_N1_TO_1 ----------------------------------------------------------------------


@PREPARERS.register(*RELU_KINDS, mode="int8")
def prepare_relu(op: QOp, program: QProgram) -> Params:
    """``ReluPrepare`` + ``QuantizedReluX``: ``QuantizeMultiplier(double(float32(s_in / s_out)))`` (the
    division is float32: both operands are floats) and the clamp bounds of the op's real range."""
    s_in, zp_in = per_tensor(program, op.inputs[0], op)
    s_out, zp_out = per_tensor(program, op.outputs[0], op)
    multiplier, shift = quantize_multiplier(float(np.float32(s_in) / np.float32(s_out)), program.rounding)
    lo, hi = calculate_activation_range_quantized(op.kind, qparams_of(program, op.outputs[0], op), op)
    return {"input_offset": zp_in, "output_offset": zp_out, "output_multiplier": multiplier,
            "output_shift": shift, "activation_min": lo, "activation_max": hi}


def relu_x(x: np.ndarray, p: Mapping[str, Any], rounding: Rounding, dtype: type = np.int8) -> np.ndarray:
    """``reference_ops::ReluX``: ``clamp(output_offset + MultiplyByQuantizedMultiplier(x - input_offset,
    m, s), act_min, act_max)`` (TFLite's ``input_offset`` here is the input zero point itself), as
    ``dtype`` (int16 in 16x8 mode)."""
    out = multiply_by_quantized_multiplier(x.astype(np.int64) - p["input_offset"], p["output_multiplier"],
                                           p["output_shift"], rounding)
    out += p["output_offset"]
    return np.clip(out, p["activation_min"], p["activation_max"]).astype(dtype)


@KERNELS.register(*RELU_KINDS, mode="int8")
def _run_relu_int8(op: QOp, args: list[np.ndarray], program: QProgram) -> np.ndarray:
    return lookup(relu_x(INT8_VALUES, op.params, program.rounding), args[0])


@PREPARERS.register(*INT16_RELU_KINDS, mode="16x8")
def prepare_relu_16x8(op: QOp, program: QProgram) -> Params:
    """``ReluPrepare`` (the int8 multiplier ``QuantizeMultiplier(s_in / s_out)``) with
    ``QuantizedReluX<int16_t>``'s bounds: the op's real range on the int16 output grid."""
    zero_points_zero(op, program)
    lo, hi = activation_range_int16(op.kind, program.tensor(op.outputs[0]).qparams, op)
    return {**prepare_relu(op, program), "activation_min": lo, "activation_max": hi}


@KERNELS.register(*INT16_RELU_KINDS, mode="16x8")
def _run_relu_16x8(op: QOp, args: list[np.ndarray], program: QProgram) -> np.ndarray:
    return relu_x(args[0], op.params, program.rounding, np.int16)


# -- HARD_SWISH ---------------------------------------------------------------------------------------


def down_scale_int32_to_int16_multiplier(multiplier: int) -> int:
    """``DownScaleInt32ToInt16Multiplier``: the Q0.31 multiplier rounded to Q0.15, saturating."""
    if multiplier >= (1 << 31) - 1 - (1 << 15):
        return INT16_MAX
    return (multiplier + (1 << 15)) >> 16


@PREPARERS.register("HARD_SWISH", mode="int8")
def prepare_hard_swish(op: QOp, program: QProgram) -> Params:
    """``HardSwishPrepare``, in float32 as the C++ computes it: ``hires = s_in / 128``, output multiplier
    ``hires / s_out`` and "reluish" multiplier ``hires / (3 / 32768)``, each quantized to Q0.31 with
    ``QuantizeMultiplier`` and then rounded to Q0.15.

    Raises:
        UnsupportedOpError: the output multiplier needs a left shift, which TFLite rejects.
    """
    s_in, zp_in = per_tensor(program, op.inputs[0], op)
    s_out, zp_out = per_tensor(program, op.outputs[0], op)
    hires_input_scale = np.float32(1.0 / 128.0) * np.float32(s_in)
    output_multiplier, output_exponent = quantize_multiplier(
        float(hires_input_scale / np.float32(s_out)), program.rounding)
    if output_exponent > 0:
        raise UnsupportedOpError(op.kind, op.source, f"output scale {s_out} is below input scale / 128, "
                                 "which TFLite's int8 HARD_SWISH rejects")
    reluish_multiplier, reluish_exponent = quantize_multiplier(
        float(hires_input_scale / np.float32(3.0 / 32768.0)), program.rounding)
    return {
        "input_zero_point": zp_in,
        "output_zero_point": zp_out,
        "output_multiplier_fixedpoint_int16": down_scale_int32_to_int16_multiplier(output_multiplier),
        "output_multiplier_exponent": output_exponent,
        "reluish_multiplier_fixedpoint_int16": down_scale_int32_to_int16_multiplier(reluish_multiplier),
        "reluish_multiplier_exponent": reluish_exponent,
    }


def _truncating_div(x: np.ndarray, d: int) -> np.ndarray:
    """C++ integer division (towards zero) of int64 ``x`` by a positive ``d``."""
    return np.where(x >= 0, x // d, -((-x) // d))


def saturating_rounding_doubling_high_mul_int16(a: np.ndarray, b: np.ndarray | int) -> np.ndarray:
    """gemmlowp ``SaturatingRoundingDoublingHighMul`` on int16: ``(a * b + nudge) / 2**15`` truncated,
    ``nudge = 2**14`` or ``1 - 2**14`` by the product's sign; only ``a == b == -2**15`` saturates."""
    ab = a * np.int64(b)
    result = _truncating_div(ab + np.where(ab >= 0, 1 << 14, 1 - (1 << 14)), 1 << 15)
    return np.where((a == INT16_MIN) & (np.int64(b) == INT16_MIN), INT16_MAX, result)


def saturating_doubling_high_mul_int16(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """TFLite ``SaturatingDoublingHighMul`` (int16, like ARM SQDMULH): ``a * b / 2**15`` truncated."""
    result = _truncating_div(a * b, 1 << 15)
    return np.where((a == INT16_MIN) & (b == INT16_MIN), INT16_MAX, result)


def rounding_divide_by_pot_int16(x: np.ndarray, exponent: int) -> np.ndarray:
    """gemmlowp ``RoundingDivideByPOT<int16_t>``: ``x / 2**exponent`` rounded half away from zero.

    The mask ``2**exponent - 1`` is an int16: from ``exponent = 16`` on it wraps to -1, and the C++
    then returns 1 for ``x >= 0`` and -1 for ``x < 0``; reproduced here because TFLite lets such
    exponents through (an output scale over ~500 times the input's).
    """
    mask = int(np.int64((1 << exponent) - 1).astype(np.int16))
    threshold = (mask >> 1) + (x < 0)
    return (x >> exponent) + ((x & mask) > threshold)


def saturating_left_shift_int16(x: np.ndarray, amount: int) -> np.ndarray:
    """TFLite ``SaturatingLeftShift`` (int16): ``x * 2**amount`` clamped to the int16 range."""
    return np.clip(x << amount, INT16_MIN, INT16_MAX)


def hard_swish(x: np.ndarray, p: Mapping[str, Any]) -> np.ndarray:
    """``reference_ops::HardSwish`` (int8), ``x * relu6(x + 3) / 6`` in 16-bit fixed point.

    ``v = (x - zp_in) * 2**7`` ("hires" input, ``|v| <= 255 * 128 < 2**15``); ``o = SRDHM16(v, m_out)``
    (the input on the output scale before the output shift); the "reluish" factor ``r`` is ``v``
    rescaled so that real 3 is ``2**15`` (a saturating left shift by ``e - 1``, ``SRDHM16`` by
    ``m_relu``, a final saturating shift by 1; or a rounding right shift for ``e < 0``), mapped from
    ``[-1, 1]`` to ``[0, 1]`` as ``(r + 2**15) >> 1``; then ``RoundingDivideByPOT(SDHM16(r, o),
    -e_out) + zp_out``, clamped to int8. Every intermediate is an int16 value, as in the C++.
    """
    v = (x.astype(np.int64) - p["input_zero_point"]) * (1 << 7)
    preshift_output = saturating_rounding_doubling_high_mul_int16(v, p["output_multiplier_fixedpoint_int16"])
    exponent = p["reluish_multiplier_exponent"]
    reluish = v
    if exponent > 0:
        reluish = saturating_left_shift_int16(reluish, exponent - 1)
    reluish = saturating_rounding_doubling_high_mul_int16(reluish, p["reluish_multiplier_fixedpoint_int16"])
    if exponent > 0:
        reluish = saturating_left_shift_int16(reluish, 1)
    if exponent < 0:
        reluish = rounding_divide_by_pot_int16(reluish, -exponent)
    reluish = (reluish + (1 << 15)) >> 1
    out = rounding_divide_by_pot_int16(saturating_doubling_high_mul_int16(reluish, preshift_output),
                                 -p["output_multiplier_exponent"])
    return np.clip(out + p["output_zero_point"], -128, 127).astype(np.int8)


@KERNELS.register("HARD_SWISH", mode="int8")
def _run_hard_swish_int8(op: QOp, args: list[np.ndarray], program: QProgram) -> np.ndarray:
    return lookup(hard_swish(INT8_VALUES, op.params), args[0])


# -- LOGISTIC, TANH -----------------------------------------------------------------------------------


def exp_f32(v: np.ndarray) -> np.ndarray:
    """``expf`` taken as the correctly rounded float64 ``exp``, narrowed to float32 (overflow gives inf,
    as ``expf`` does)."""
    with np.errstate(over="ignore"):
        return np.exp(v.astype(np.float64)).astype(F32)


def _sigmoid_f32(v: np.ndarray) -> np.ndarray:
    """``1.0f / (1.0f + std::exp(-v))`` in float32 (an overflowing ``exp`` gives 1 / (1 + inf) = 0)."""
    one = F32(1.0)
    return one / (one + exp_f32(-v))


def tanh_f32(v: np.ndarray) -> np.ndarray:
    """``std::tanh(float)``: the correctly rounded float64 ``tanh``, narrowed to float32."""
    return np.tanh(v.astype(np.float64)).astype(np.float32)


def lut_populate(op: QOp, program: QProgram, transform: Any) -> np.ndarray:
    """TFLite ``LUTPopulate<int8_t>``: for every int8 ``q``, ``clamp(int(TfLiteRound(f(s_in * (q - zp_in))
    * (1 / s_out)) + zp_out), -128, 127)`` with every operation in float32, as the C++ computes it."""
    s_in, zp_in = per_tensor(program, op.inputs[0], op)
    s_out, zp_out = per_tensor(program, op.outputs[0], op)
    dequantized = np.float32(s_in) * (INT8_VALUES - zp_in).astype(np.float32)
    inverse_scale = np.float32(1.0) / np.float32(s_out)
    rescaled = transform(dequantized) * inverse_scale
    # TfLiteRound (roundf) of a float32, done exactly in float64; the sum with zp_out stays float32.
    rounded = round_half_away_from_zero(rescaled.astype(np.float64)).astype(np.float32)
    quantized = (rounded + np.float32(zp_out)).astype(np.int64)
    return frozen_array(np.clip(quantized, -128, 127).astype(np.int8))


@PREPARERS.register("LOGISTIC", mode="int8")
def prepare_logistic(op: QOp, program: QProgram) -> Params:
    """``SigmoidPrepare`` (reference and generic kernels, int8): the output scale must be 1/256; the
    table holds ``1 / (1 + exp(-x))`` quantized to the output encoding.

    Raises:
        UnsupportedOpError: the output scale is not 1/256.
    """
    s_out, _ = per_tensor(program, op.outputs[0], op)
    if float(s_out) != 1.0 / 256:
        raise UnsupportedOpError(op.kind, op.source, f"int8 LOGISTIC needs output scale 1/256, got {s_out}")
    return {"table": lut_populate(op, program, _sigmoid_f32)}


@PREPARERS.register("TANH", mode="int8")
def prepare_tanh(op: QOp, program: QProgram) -> Params:
    """``TanhPrepare`` (reference and generic kernels, int8): a table of ``tanh(x)`` quantized to the
    output encoding (1/128 with zero point 0 as the converter writes it)."""
    return {"table": lut_populate(op, program, tanh_f32)}


@KERNELS.register("LOGISTIC", "TANH", mode="int8")
def _run_table_int8(op: QOp, args: list[np.ndarray], program: QProgram) -> np.ndarray:
    return lookup(op.params["table"], args[0])


# -- float32 ------------------------------------------------------------------------------------------


@KERNELS.register(*RELU_KINDS, mode="float32")
def _run_relu_float32(op: QOp, args: list[np.ndarray], program: QProgram) -> np.ndarray:
    lo, hi = ACTIVATION_BOUNDS[op.kind]
    return np.clip(np.asarray(args[0], F32), F32(lo), F32(hi)).astype(F32)


@KERNELS.register("HARD_SWISH", mode="float32")
def _run_hard_swish_float32(op: QOp, args: list[np.ndarray], program: QProgram) -> np.ndarray:
    x = np.asarray(args[0], F32)
    return x * np.minimum(F32(6.0), np.maximum(F32(0.0), x + F32(3.0))) / F32(6.0)


@KERNELS.register("LOGISTIC", mode="float32")
def _run_logistic_float32(op: QOp, args: list[np.ndarray], program: QProgram) -> np.ndarray:
    x = np.asarray(args[0], F32)
    middle = F32(1.0) / (F32(1.0) + exp_f32(-x))
    return np.where(x > _LOGISTIC_UPPER, F32(1.0), np.where(x < _LOGISTIC_LOWER, exp_f32(x), middle)).astype(F32)


@KERNELS.register("TANH", mode="float32")
def _run_tanh_float32(op: QOp, args: list[np.ndarray], program: QProgram) -> np.ndarray:
    return tanh_f32(np.asarray(args[0], F32))
