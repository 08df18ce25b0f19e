"""SUB and MUL, int8, broadcasting like numpy: TFLite ``kernels/sub.cc`` and ``reference/integer_ops/mul.h``.

Both outputs depend on nothing but the two int8 operands, so each op is tabulated once for all
256 x 256 pairs and the output is one lookup per element (the same integers as the C++ loops).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from edgeopt.qprogram import QOp, QProgram, Rounding
from edgeopt.runtimes.reference.add import add_func
from edgeopt.runtimes.reference.arith.fixedpoint import multiply_by_quantized_multiplier, quantize_multiplier
from edgeopt.runtimes.reference.prepare import PREPARERS, Params, _activation, _per_tensor, prepare_add
from edgeopt.runtimes.reference.registry import KERNELS

PairFunc = Callable[[np.ndarray, np.ndarray, Mapping[str, Any], Rounding], np.ndarray]


@PREPARERS.register("SUB")
def prepare_sub(op: QOp, program: QProgram) -> Params:
    """``sub.cc`` ``PrepareGeneralSubOp`` for int8: ADD's parameters with ``input2_multiplier`` negated
    (``op_sign = -1``), so that the ADD kernel computes ``x1 - x2``."""
    params = prepare_add(op, program)
    params["input2_multiplier"] = -params["input2_multiplier"]
    return params


@PREPARERS.register("MUL")
def prepare_mul(op: QOp, program: QProgram) -> Params:
    """``mul.cc`` Prepare for int8: ``QuantizeMultiplier(double(s1) * double(s2) / double(s_out))``."""
    s1, zp1 = _per_tensor(program, op.inputs[0], op)
    s2, zp2 = _per_tensor(program, op.inputs[1], op)
    s_out, zp_out = _per_tensor(program, op.outputs[0], op)
    real = np.float64(s1) * np.float64(s2) / np.float64(s_out)
    multiplier, shift = quantize_multiplier(float(real), program.rounding)
    return {
        "input1_offset": -zp1,
        "input2_offset": -zp2,
        "output_offset": zp_out,
        "output_multiplier": multiplier,
        "output_shift": shift,
        **_activation(program, op),
    }


def mul_func(a: np.ndarray, b: np.ndarray, p: Mapping[str, Any], rounding: Rounding) -> np.ndarray:
    """TFLite ``MulElementwise`` (int8): ``clamp(output_offset + MultiplyByQuantizedMultiplier((a +
    input1_offset) * (b + input2_offset), m, s), act_min, act_max)``; ``|product| <= 255**2`` fits int32."""
    product = (a.astype(np.int64) + p["input1_offset"]) * (b.astype(np.int64) + p["input2_offset"])
    out = multiply_by_quantized_multiplier(product, p["output_multiplier"], p["output_shift"], rounding)
    out += p["output_offset"]
    return np.clip(out, p["activation_min"], p["activation_max"]).astype(np.int8)


def binary_lookup(func: PairFunc, a: np.ndarray, b: np.ndarray, p: Mapping[str, Any],
                  rounding: Rounding) -> np.ndarray:
    """``func`` on ``a`` and ``b`` broadcast like numpy, through a 256 x 256 table of all int8 pairs
    (a tensor's bytes index it directly: ``byte(a) * 256 + byte(b)``)."""
    values = np.arange(256, dtype=np.uint8).view(np.int8)
    table = func(values[:, None], values[None, :], p, rounding).ravel()
    return table[(a.view(np.uint8).astype(np.uint16) << 8) | b.view(np.uint8)]


def right_aligned(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two run-axis values with the program axes of the lower-rank one aligned to the right."""
    rank = max(a.ndim, b.ndim)
    a = a.reshape(a.shape[:1] + (1,) * (rank - a.ndim) + a.shape[1:])
    b = b.reshape(b.shape[:1] + (1,) * (rank - b.ndim) + b.shape[1:])
    return a, b


@KERNELS.register("SUB")
def _run_sub(op: QOp, args: list[np.ndarray], program: QProgram) -> np.ndarray:
    return binary_lookup(add_func, *right_aligned(*args), op.params, program.rounding)


@KERNELS.register("MUL")
def _run_mul(op: QOp, args: list[np.ndarray], program: QProgram) -> np.ndarray:
    return binary_lookup(mul_func, *right_aligned(*args), op.params, program.rounding)
