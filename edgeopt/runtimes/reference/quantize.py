"""QUANTIZE and DEQUANTIZE: the conversions between precisions, Prepare and kernels (TFLite
``kernels/quantize.cc``, ``kernels/dequantize.cc``).

* QUANTIZE float32 → int8 (mode int8, leaving a float island; ``reference/quantize.h``
  ``AffineQuantize``): ``round(x / float(scale))`` with a float32 division and rounding half away from
  zero, plus the zero point, saturated: bit-exact.
* QUANTIZE int8 → int8 (mode int8) and int8 → int16 or back (mode 16x8; ``reference_ops::Requantize``): ``clamp(
  MultiplyByQuantizedMultiplier(x - zp_in, m, s) + zp_out)`` with ``m, s`` from
  ``QuantizeMultiplier(double(s_in) / double(s_out))`` and the build's rounding.
* DEQUANTIZE int8 → float32 (mode float32, entering a float island; ``reference/dequantize.h``):
  ``float(double(scale) * (q - zero_point))``: bit-exact.
"""
from __future__ import annotations

import numpy as np

from edgeopt.errors import UnsupportedOpError
from edgeopt.qprogram import QOp, QProgram
from edgeopt.runtimes.reference.arith.fixedpoint import multiply_by_quantized_multiplier, quantize_multiplier
from edgeopt.runtimes.reference.prepare import per_tensor
from edgeopt.runtimes.reference.registry import F32, KERNELS, PREPARERS, Params


@PREPARERS.register("QUANTIZE", mode="int8")
def prepare_quantize(op: QOp, program: QProgram) -> Params:
    """``quantize.cc`` Prepare for float32 → int8: the output's float32 ``scale`` and its ``zero_point``; for
    int8 → int8, the requantization's (``prepare_requantize``)."""
    dtype = program.tensor(op.inputs[0]).dtype
    if dtype == "int8":
        return prepare_requantize(op, program)
    if dtype != "float32":
        raise UnsupportedOpError(op.kind, op.source, f"no {dtype} → int8 QUANTIZE kernel")
    scale, zero_point = per_tensor(program, op.outputs[0], op)
    return {"scale": scale, "zero_point": zero_point}


def affine_quantize(x: np.ndarray, scale: np.float32, zero_point: int) -> np.ndarray:
    """TFLite ``AffineQuantize`` to int8: ``clamp(round_half_away(float32(x / scale)) + zp, -128, 127)``."""
    q = np.asarray(x, dtype=F32) / F32(scale)
    whole = np.trunc(q)
    # std::round: away from zero from a fraction of exactly one half on (the fraction is exact in float32).
    rounded = np.where(np.abs(q - whole) >= F32(0.5), whole + np.sign(q), whole)
    clamped = np.clip(rounded.astype(np.float64) + zero_point, -128, 127)
    return clamped.astype(np.int8)


@KERNELS.register("QUANTIZE", mode="int8")
def _run_quantize(op: QOp, args: list[np.ndarray], program: QProgram) -> np.ndarray:
    if "output_multiplier" in op.params:  # int8 → int8
        return _run_requantize(op, args, program)
    return affine_quantize(args[0], op.params["scale"], op.params["zero_point"])


@PREPARERS.register("QUANTIZE", mode="16x8")
def prepare_requantize(op: QOp, program: QProgram) -> Params:
    """``quantize.cc`` Prepare for an int8 <-> int16 requantization: ``QuantizeMultiplier(double(s_in) /
    double(s_out))`` and both zero points."""
    dtypes = (program.tensor(op.inputs[0]).dtype, program.tensor(op.outputs[0]).dtype)
    if dtypes not in (("int8", "int8"), ("int8", "int16"), ("int16", "int8"), ("int16", "int16")):
        raise UnsupportedOpError(op.kind, op.source, f"no {dtypes[0]} → {dtypes[1]} QUANTIZE kernel")
    s_in, zp_in = per_tensor(program, op.inputs[0], op)
    s_out, zp_out = per_tensor(program, op.outputs[0], op)
    multiplier, shift = quantize_multiplier(float(np.float64(s_in) / np.float64(s_out)), program.rounding)
    return {"input_zero_point": zp_in, "output_zero_point": zp_out, "output_multiplier": multiplier,
            "output_shift": shift}


@KERNELS.register("QUANTIZE", mode="16x8")
def _run_requantize(op: QOp, args: list[np.ndarray], program: QProgram) -> np.ndarray:
    """``reference_ops::Requantize``: ``clamp(MBQM(x - zp_in, m, s) + zp_out)`` to the output dtype."""
    p = op.params
    out_dtype = np.dtype(program.tensor(op.outputs[0]).dtype)
    info = np.iinfo(out_dtype)
    x = args[0].astype(np.int64) - p["input_zero_point"]
    y = multiply_by_quantized_multiplier(x, p["output_multiplier"], p["output_shift"], program.rounding)
    return np.clip(y + p["output_zero_point"], info.min, info.max).astype(out_dtype)


@KERNELS.register("DEQUANTIZE", mode="float32")
def _run_dequantize(op: QOp, args: list[np.ndarray], program: QProgram) -> np.ndarray:
    """``reference/dequantize.h``: ``static_cast<float>(double(scale) * (q - zero_point))``, exact in
    double, rounded once: bit-exact."""
    q = program.tensor(op.inputs[0]).qparams
    if q is None or q.per_channel:
        raise UnsupportedOpError(op.kind, op.source, "only per-tensor int8 → float32 DEQUANTIZE is supported")
    centred = args[0].astype(np.int64) - int(q.zero_point[0])
    return (np.float64(q.scale[0]) * centred).astype(F32)
