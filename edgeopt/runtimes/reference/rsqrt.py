"""RSQRT int8: Prepare and kernel, TFLite ``kernels/elementwise.cc`` (``RsqrtEvalQuantizedInt8``; the float32
kernel is in ``float_only``). TensorFlow's converter writes it in int8 for Keras ``LayerNormalization``
(``1 / sqrt(variance + epsilon)``).

Per element ``v = x - zp_in``: 0 gives 127; otherwise ``GetInvSqrtQuantizedMultiplierExp(v)`` (gemmlowp
fixed point, five Newton-Raphson steps) gives ``1 / sqrt(v)`` as a multiplier and shift, applied to 1
with 20 bits of headroom, then requantized by ``1 / (sqrt(s_in) * s_out)``. The output depends on the
int8 input alone, so the kernel is a 256-entry table.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from edgeopt.errors import DataError
from edgeopt.qprogram import QOp, QProgram, Rounding
from edgeopt.runtimes.reference.arith import gemmlowp as gl
from edgeopt.runtimes.reference.arith.fixedpoint import INT32_MAX, multiply_by_quantized_multiplier, quantize_multiplier
from edgeopt.runtimes.reference.prepare import per_tensor
from edgeopt.runtimes.reference.registry import F32, KERNELS, PREPARERS, Params

HEADROOM_SHIFT = 20
NEWTON_STEPS = 5
HALF_SQRT_2_Q0 = 1518500250  # sqrt(2) / 2 in Q0.31


@PREPARERS.register("RSQRT", mode="int8")
def prepare_rsqrt(op: QOp, program: QProgram) -> Params:
    """``elementwise.cc`` GenericPrepare for int8 RSQRT: ``input_offset = zp_in`` (not negated),
    ``output_offset = zp_out``, ``QuantizeMultiplier(1. / (sqrtf(s_in) * s_out))`` (the product in float32,
    the division in double)."""
    s_in, zp_in = per_tensor(program, op.inputs[0], op)
    s_out, zp_out = per_tensor(program, op.outputs[0], op)
    scale = 1.0 / float(np.sqrt(F32(s_in)) * F32(s_out))
    multiplier, shift = quantize_multiplier(scale, program.rounding)
    return {"input_offset": zp_in, "output_offset": zp_out, "multiplier": multiplier, "shift": shift}


def inv_sqrt_quantized_multiplier_exp(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """TFLite ``GetInvSqrtQuantizedMultiplierExp(v, kReverseShift = -1)`` for int32 ``values > 0`` below
    ``2**29``: ``(multiplier, shift)`` with ``1 / sqrt(v) ~ multiplier * 2**(shift - 31)``.

    ``v <= 1`` gives ``(INT32_MAX, 0)``. Else ``v`` is normalised to ``[2**27, 2**29)`` by an even left
    shift of ``2k`` bits (``shift = 11 - k``), read as Q3.28 (``v >> 1``), and five Newton-Raphson steps
    ``x = 1.5 x - (v / 2) x**3`` from ``x = 1`` run in Q3 (products in gemmlowp fixed point), then
    ``x * sqrt(2) / 2``; a negative shift is moved into the multiplier.
    """
    v = np.asarray(values, dtype=np.int64)
    clz = gl.count_leading_zeros_u32(v)
    pairs = (clz - 1) // 2 - 1
    shift = 11 - pairs
    normalised = v << (2 * np.maximum(pairs, 0))
    one_q3 = 1 << 28
    half_three_q3 = (1 << 28) + (1 << 27)
    half_input = gl.saturating_rounding_multiply_by_pot(normalised >> 1, -1)
    mul = gl.saturating_rounding_doubling_high_mul
    x = np.full(v.shape, one_q3, dtype=np.int64)
    for _ in range(NEWTON_STEPS):
        x3 = gl.rescale(mul(mul(x, x), x), 9, 3)  # Q3 * Q3 * Q3 -> Q9, rescaled to Q3
        x = gl.rescale(gl.sub(mul(half_three_q3, x), mul(half_input, x3)), 6, 3)  # Q6 - Q6 -> Q3
    x = mul(x, HALF_SQRT_2_Q0)  # Q3 * Q0 -> Q3
    x = np.where(shift < 0, x << np.maximum(-shift, 0), x)
    shift = np.maximum(shift, 0)
    small = v <= 1
    return np.where(small, INT32_MAX, x), np.where(small, 0, -shift)


def rsqrt_table(p: Mapping[str, Any], rounding: Rounding) -> np.ndarray:
    """The int8 output for each int8 input (indexed by the input's byte): ``RsqrtEvalQuantizedInt8``.

    ``data = MultiplyByQuantizedMultiplier(1, m_v, shift_v + 20)``, ``out = clamp(MultiplyByQuantizedMultiplier(
    data, m, shift - 20) + zp_out, -128, 127)``; ``v = 0`` gives 127; ``v < 0`` is marked -1 here (TFLite
    refuses such an input at run time).
    """
    x = np.arange(256, dtype=np.uint8).view(np.int8).astype(np.int64)
    v = x - p["input_offset"]
    multiplier, shift = inv_sqrt_quantized_multiplier_exp(np.maximum(v, 1))
    data = multiply_by_quantized_multiplier(np.ones_like(v), multiplier, shift + HEADROOM_SHIFT, rounding)
    out = multiply_by_quantized_multiplier(data, p["multiplier"], p["shift"] - HEADROOM_SHIFT, rounding)
    out = np.clip(out + p["output_offset"], -128, 127)
    return np.where(v == 0, 127, np.where(v < 0, -1, out))


@KERNELS.register("RSQRT", mode="int8")
def _run_rsqrt_int8(op: QOp, args: list[np.ndarray], program: QProgram) -> np.ndarray:
    table = rsqrt_table(op.params, program.rounding)
    x = np.asarray(args[0])
    if np.any(x.astype(np.int64) < op.params["input_offset"]):
        raise DataError(f"RSQRT '{op.source}' got a value below its input zero point {op.params['input_offset']} "
                        "(a negative number), which TFLite refuses at run time; check the input data")
    return table[x.view(np.uint8)].astype(np.int8)
