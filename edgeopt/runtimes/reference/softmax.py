"""SOFTMAX: Prepare and the int8 and float32 kernels, TFLite ``reference/softmax.h``.

int8 in and out: the quantized ``Softmax`` template. LiteRT's reference registration (``activations.cc``,
``kReference``) prepares with ``PreprocessSoftmaxScaling`` and runs gemmlowp's fixed-point recipe; the
optimised kernels use a float lookup table instead and may differ by one step. Output encoding is fixed: scale 1/256, zero point -128.

Tiny input scales: when ``beta * s_in * 2**26 <= 1``, ``PreprocessSoftmaxScaling``'s
``QuantizeMultiplierGreaterThanOne`` fails its ``TFLITE_CHECK`` and LiteRT's reference resolver
(``BUILTIN_REF``) aborts the process (measured with ai-edge-litert 2.3: SIGABRT, no message). LiteRT's
default kernels run such files with the float lookup table of ``optimized_ops::Softmax`` (x86 builds;
ARM64 clang builds use a uint16 table instead), so that is what Prepare selects there, bit-exact with
LiteRT's default kernels (XNNPACK off). Every input difference then maps to nearly the same
probability, so the two recipes could differ by a step at most anyway.

Wide near-uniform rows: when a row's sum of exponentials reaches ``2**9`` (512 or more classes, none
dominant: what random weights give a 1000-class classifier), the reference kernel's final
``RoundingDivideByPOT`` gets an exponent of 32, and gemmlowp's ``assert(exponent <= 31)`` aborts the process
(measured with ai-edge-litert 2.3's BUILTIN_REF). Such rows are computed as LiteRT's default kernels compute
every row, with the float lookup table; all other rows stay bit-exact with BUILTIN_REF.

float32: ``exp((x - max) * beta) / sum`` over the last axis; the sum is in float64 here (the reference
sums in float32), so values may differ by an ulp or so.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from edgeopt.errors import UnsupportedOpError
from edgeopt.qprogram import QOp, QProgram
from edgeopt.runtimes.reference.arith import gemmlowp as gl
from edgeopt.runtimes.reference.arith.fixedpoint import (
    multiply_by_quantized_multiplier,
    quantize_multiplier,
    round_half_away_from_zero,
    wrap_int32,
)
from edgeopt.runtimes.reference.activations import exp_f32
from edgeopt.runtimes.reference.registry import F32, KERNELS, PREPARERS, Params

SCALED_DIFF_INTEGER_BITS = 5
ACCUMULATION_INTEGER_BITS = 12
MAX_POT_EXPONENT = 31
OUTPUT_SCALE = 1.0 / 256
OUTPUT_ZERO_POINT = -128


def calculate_input_radius(input_integer_bits: int, input_left_shift: int, total_signed_bits: int = 31) -> int:
    """TFLite ``CalculateInputRadius``: the largest input difference whose rescaled value still fits."""
    max_input_rescaled = (1.0 * ((1 << input_integer_bits) - 1) * (1 << (total_signed_bits - input_integer_bits))
                          / (1 << input_left_shift))
    return int(math.floor(max_input_rescaled))


@PREPARERS.register("SOFTMAX", mode="int8")
def prepare_softmax(op: QOp, program: QProgram) -> Params:
    """``activations.cc`` SoftmaxPrepare (kReference) for int8: ``PreprocessSoftmaxScaling`` and ``diff_min``.

    ``input_multiplier``/``input_left_shift`` come from ``QuantizeMultiplierGreaterThanOne(min(beta *
    s_in * 2**26, 2**31 - 1))`` (beta and s_in widened from float32 to double), ``diff_min`` is
    ``-CalculateInputRadius(5, input_left_shift)``.
    """
    x_q = program.tensor(op.inputs[0]).qparams
    y_q = program.tensor(op.outputs[0]).qparams
    if x_q is None or y_q is None or program.tensor(op.inputs[0]).dtype != "int8":
        raise UnsupportedOpError(op.kind, op.source, "only int8 softmax has an integer kernel here")
    if int(y_q.zero_point[0]) != OUTPUT_ZERO_POINT or abs(float(y_q.scale[0]) - OUTPUT_SCALE) > 0.001 * OUTPUT_SCALE:
        raise UnsupportedOpError(op.kind, op.source, "int8 softmax output must have scale 1/256 and zero point -128")
    beta = float(np.float32(op.options.get("beta", 1.0)))
    real = min(beta * float(x_q.scale[0]) * (1 << (31 - SCALED_DIFF_INTEGER_BITS)), (1 << 31) - 1.0)
    if real <= 1.0:  # the reference Prepare aborts here; LiteRT's default kernels run the float table
        return {"table": softmax_lookup_table(float(x_q.scale[0]), beta),
                "output_scale": F32(y_q.scale[0]), "output_zero_point": int(y_q.zero_point[0])}
    multiplier, shift = quantize_multiplier(real, program.rounding)
    return {
        "input_multiplier": multiplier,
        "input_left_shift": shift,
        "diff_min": -calculate_input_radius(SCALED_DIFF_INTEGER_BITS, shift),
        # for the rows on which the reference kernel aborts (see the module docstring)
        "abort_table": softmax_lookup_table(float(x_q.scale[0]), beta),
        "output_scale": F32(y_q.scale[0]), "output_zero_point": int(y_q.zero_point[0]),
    }


def softmax_int8(x: np.ndarray, p: Mapping[str, Any], rounding: str) -> np.ndarray:
    """Int8 softmax over the last axis, as TFLite ``reference_ops::Softmax<int8_t, int8_t>``.

    Per row: ``d = x - max(row)``; entries with ``d < diff_min`` output -128 and add nothing. Others:
    ``e = exp_on_negative_values(MultiplyByQuantizedMultiplierGreaterThanOne(d, m, shift))`` (Q5.26 in,
    Q0.31 out), ``sum = Σ RoundingDivideByPOT(e, 12)`` (Q12.19, int32 wrap), ``r, k =
    GetReciprocal(sum)`` (``k = 12 - clz(sum)``, ``r = one_over_one_plus_x(sum << clz - 1)``),
    ``out = clamp(RoundingDivideByPOT(SRDHM(r, e), k + 23) - 128, -128, 127)``; a row with ``k + 23 > 31``
    (where the reference kernel aborts) takes ``softmax_int8_table``'s values instead.

    ``e`` depends only on ``d`` (256 possible values), so it is tabulated once.

    Args:
        x: int8 input, any rank; softmax runs over the last axis.
        p: params from ``prepare_softmax``.
        rounding: the build's rounding (equal results for both in ``MultiplyByQuantizedMultiplier``
            with a left shift and no overflow, which ``diff_min`` guarantees).

    Returns:
        int8 probabilities, same shape as ``x``.
    """
    diffs = -np.arange(256, dtype=np.int64)  # d = 0, -1, ..., -255
    valid_diff = diffs >= p["diff_min"]
    rescaled = multiply_by_quantized_multiplier(np.where(valid_diff, diffs, 0), p["input_multiplier"],
                                                p["input_left_shift"], rounding)
    exp_table = np.where(valid_diff, gl.exp_on_negative_values(rescaled, SCALED_DIFF_INTEGER_BITS), 0)

    xi = x.astype(np.int64)
    d = xi - xi.max(axis=-1, keepdims=True)
    valid = d >= p["diff_min"]
    e = exp_table[-d]
    terms = np.where(valid, gl.rescale(e, 0, ACCUMULATION_INTEGER_BITS), 0)
    sum_of_exps = wrap_int32(terms.sum(axis=-1, keepdims=True))
    headroom_plus_one = gl.count_leading_zeros_u32(sum_of_exps)
    num_bits_over_unit = ACCUMULATION_INTEGER_BITS - headroom_plus_one
    shifted = ((sum_of_exps & 0xFFFFFFFF) << headroom_plus_one) & 0xFFFFFFFF
    shifted_sum_minus_one = wrap_int32(shifted - (1 << 31))
    shifted_scale = gl.one_over_one_plus_x_for_x_in_0_1(shifted_sum_minus_one)
    exponent = num_bits_over_unit + 31 - 8
    unsat = gl.rounding_divide_by_pot(gl.saturating_rounding_doubling_high_mul(shifted_scale, e),
                                      np.minimum(exponent, MAX_POT_EXPONENT))
    out = np.where(valid, np.clip(unsat - 128, -128, 127), -128).astype(np.int8)
    aborts = exponent > MAX_POT_EXPONENT  # per row: gemmlowp's RoundingDivideByPOT asserts exponent <= 31
    if np.any(aborts) and "abort_table" in p:
        table = {"table": p["abort_table"], "output_scale": p["output_scale"],
                 "output_zero_point": p["output_zero_point"]}
        out = np.where(aborts, softmax_int8_table(x, table), out)
    return out


def softmax_lookup_table(input_scale: float, beta: float) -> np.ndarray:
    """``optimized_ops::PopulateSoftmaxLookupTable``: ``table[255 - v] = expf(float(-s_in * beta) * v)`` for
    ``v`` in 0..255, all in float32 (``table[255 - d]`` is the weight of an input ``d`` below the row's max)."""
    scale = -F32(input_scale) * F32(beta)
    values = np.arange(256, dtype=F32)
    return exp_f32(scale * values)[::-1].copy()


def softmax_int8_table(x: np.ndarray, p: Mapping[str, Any]) -> np.ndarray:
    """Int8 softmax over the last axis, as TFLite ``optimized_ops::Softmax<int8_t, int8_t>`` (float table).

    Per row: ``w = table[255 - (max - x)]``, ``sum`` of ``w`` in float32 in row order, ``inv = 1.0f / (sum *
    s_out)``, ``out = clamp(lround(w * inv) + zp_out, -128, 127)``, every product in float32.
    """
    xi = x.astype(np.int64)
    w = p["table"][255 - (xi.max(axis=-1, keepdims=True) - xi)]
    # cumsum adds in row order, as the C++ loop does (np.sum would add pairwise, rounding differently).
    total = np.cumsum(w, axis=-1, dtype=F32)[..., -1:]
    inv = F32(1.0) / (total * F32(p["output_scale"]))
    prob = (w * inv).astype(F32)
    rounded = round_half_away_from_zero(prob.astype(np.float64))  # std::lround
    return np.clip(rounded + p["output_zero_point"], -128, 127).astype(np.int8)


@KERNELS.register("SOFTMAX", mode="int8")
def _run_softmax_int8(op: QOp, args: list[np.ndarray], program: QProgram) -> np.ndarray:
    if "table" in op.params:
        return softmax_int8_table(args[0], op.params)
    return softmax_int8(args[0], op.params, program.rounding)


@KERNELS.register("SOFTMAX", mode="float32")
def _run_softmax_float32(op: QOp, args: list[np.ndarray], program: QProgram) -> np.ndarray:
    x = np.asarray(args[0], F32)
    beta = F32(op.options.get("beta", 1.0))
    e = exp_f32((x - x.max(axis=-1, keepdims=True)) * beta)
    total = e.astype(np.float64).sum(axis=-1, keepdims=True).astype(F32)
    return (e / total).astype(F32)
