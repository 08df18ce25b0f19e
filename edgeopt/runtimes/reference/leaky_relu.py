"""LEAKY_RELU and PRELU: Prepare and the int8 and float32 kernels, TFLite ``kernels/activations.cc``
(``LeakyReluPrepare``/``LeakyReluEval``, ``PreluPrepare``/``PreluEval``). TensorFlow's converter writes them
for Keras ``LeakyReLU`` (YOLO-style detectors) and ``PReLU``.

int8: the input minus its zero point takes one of two multipliers by its sign, ``QuantizeMultiplier`` of
scale ratios the Prepare computes in float32 and widens to double:

* LEAKY_RELU (``reference_ops::QuantizeLeakyRelu``): ``v = x - zp_in``; ``out = zp_out +
  MultiplyByQuantizedMultiplier(v, m_identity, s_identity)`` for ``v >= 0`` (``s_in / s_out``), else with
  ``m_alpha, s_alpha`` (``s_in * alpha / s_out``).
* PRELU (``reference_ops::BroadcastPrelu4DSlow``): ``v = x - zp_in``; ``out = zp_out + MBQM(v, m_1, s_1)``
  (``s_in / s_out``) for ``v >= 0``, else ``MBQM(v * (alpha_q - zp_alpha), m_2, s_2)`` (``s_in * s_alpha /
  s_out``), ``alpha`` a constant broadcast against the input like numpy.

Both clamp to [-128, 127]. float32: ``x`` where ``x >= 0``, else ``alpha * x`` (one float32 product).
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from edgeopt.qprogram import QOp, QProgram, Rounding
from edgeopt.runtimes.reference.activations import INT8_VALUES, lookup
from edgeopt.runtimes.reference.arith.fixedpoint import multiply_by_quantized_multiplier, quantize_multiplier
from edgeopt.runtimes.reference.prepare import per_tensor
from edgeopt.runtimes.reference.registry import F32, KERNELS, PREPARERS, Params, right_aligned


def _ratio(numerator: np.float32, divisor: np.float32, factor: np.float32 | None = None) -> float:
    """``numerator [* factor] / divisor`` in float32 (the C++ multiplies and divides floats), widened to
    double for ``QuantizeMultiplier``."""
    top = F32(numerator) if factor is None else F32(F32(numerator) * F32(factor))
    return float(F32(top / F32(divisor)))


@PREPARERS.register("LEAKY_RELU", mode="int8")
def prepare_leaky_relu(op: QOp, program: QProgram) -> Params:
    """``LeakyReluPrepare`` for int8: ``QuantizeMultiplier(float(s_in * alpha / s_out))`` and
    ``QuantizeMultiplier(float(s_in / s_out))``, the zero points."""
    s_in, zp_in = per_tensor(program, op.inputs[0], op)
    s_out, zp_out = per_tensor(program, op.outputs[0], op)
    alpha = F32(op.options.get("alpha", 0.2))
    m_alpha, s_alpha = quantize_multiplier(_ratio(s_in, s_out, alpha), program.rounding)
    m_identity, s_identity = quantize_multiplier(_ratio(s_in, s_out), program.rounding)
    return {"input_offset": zp_in, "output_offset": zp_out, "multiplier_alpha": m_alpha, "shift_alpha": s_alpha,
            "multiplier_identity": m_identity, "shift_identity": s_identity}


def leaky_relu(x: np.ndarray, p: Mapping[str, Any], rounding: Rounding) -> np.ndarray:
    """``QuantizeLeakyRelu<int8_t>`` elementwise (see the module docstring)."""
    v = x.astype(np.int64) - p["input_offset"]
    identity = multiply_by_quantized_multiplier(v, p["multiplier_identity"], p["shift_identity"], rounding)
    negative = multiply_by_quantized_multiplier(v, p["multiplier_alpha"], p["shift_alpha"], rounding)
    return np.clip(np.where(v >= 0, identity, negative) + p["output_offset"], -128, 127).astype(np.int8)


@KERNELS.register("LEAKY_RELU", mode="int8")
def _run_leaky_relu_int8(op: QOp, args: list[np.ndarray], program: QProgram) -> np.ndarray:
    return lookup(leaky_relu(INT8_VALUES, op.params, program.rounding), args[0])


@KERNELS.register("LEAKY_RELU", mode="float32")
def _run_leaky_relu_float32(op: QOp, args: list[np.ndarray], program: QProgram) -> np.ndarray:
    x = np.asarray(args[0], F32)
    return np.where(x >= 0, x, F32(op.options.get("alpha", 0.2)) * x).astype(F32)


@PREPARERS.register("PRELU", mode="int8")
def prepare_prelu(op: QOp, program: QProgram) -> Params:
    """``PreluPrepare`` for int8: ``QuantizeMultiplier(float(s_in / s_out))`` and ``QuantizeMultiplier(
    float(s_in * s_alpha / s_out))``, offsets ``-zp_in``, ``-zp_alpha``, ``zp_out``."""
    s_in, zp_in = per_tensor(program, op.inputs[0], op)
    s_alpha, zp_alpha = per_tensor(program, op.inputs[1], op)
    s_out, zp_out = per_tensor(program, op.outputs[0], op)
    m1, s1 = quantize_multiplier(_ratio(s_in, s_out), program.rounding)
    m2, s2 = quantize_multiplier(_ratio(s_in, s_out, s_alpha), program.rounding)
    return {"input_offset": -zp_in, "alpha_offset": -zp_alpha, "output_offset": zp_out,
            "multiplier_1": m1, "shift_1": s1, "multiplier_2": m2, "shift_2": s2}


def prelu(x: np.ndarray, alpha: np.ndarray, p: Mapping[str, Any], rounding: Rounding) -> np.ndarray:
    """``BroadcastPrelu4DSlow<int8_t>`` (see the module docstring); ``x`` and ``alpha`` broadcast."""
    v = x.astype(np.int64) + p["input_offset"]
    a = alpha.astype(np.int64) + p["alpha_offset"]
    positive = multiply_by_quantized_multiplier(v, p["multiplier_1"], p["shift_1"], rounding)
    negative = multiply_by_quantized_multiplier(v * a, p["multiplier_2"], p["shift_2"], rounding)
    return np.clip(np.where(v >= 0, positive, negative) + p["output_offset"], -128, 127).astype(np.int8)


@KERNELS.register("PRELU", mode="int8")
def _run_prelu_int8(op: QOp, args: list[np.ndarray], program: QProgram) -> np.ndarray:
    return prelu(*right_aligned(*args[:2]), op.params, program.rounding)


@KERNELS.register("PRELU", mode="float32")
def _run_prelu_float32(op: QOp, args: list[np.ndarray], program: QProgram) -> np.ndarray:
    x, alpha = right_aligned(*(np.asarray(v, F32) for v in args[:2]))
    return np.where(x >= 0, x, alpha * x).astype(F32)
