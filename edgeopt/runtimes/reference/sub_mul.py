"""SUB and MUL: Prepare and the int8 and float32 kernels, broadcasting like numpy (TFLite
``kernels/sub.cc``, ``kernels/mul.cc``).

* int8: SUB is ``add.add_func`` with the second input's multiplier negated (``reference/integer_ops/add.h``
  as ``sub.cc`` calls it), MUL ``reference/integer_ops/mul.h``. Both outputs depend on nothing but the
  two int8 operands, so each op is tabulated once for all 256 x 256 pairs (``add.binary_lookup``) and
  the output is one lookup per element (the same integers as the C++ loops).
* float32 (``reference/sub.h``, ``mul.h``): one float32 operation per element, then the fused
  activation's clamp: bit-exact.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from edgeopt.qprogram import QOp, QProgram, Rounding
from edgeopt.runtimes.reference.add import add_func, binary_lookup, prepare_add
from edgeopt.runtimes.reference.arith.fixedpoint import multiply_by_quantized_multiplier, quantize_multiplier
from edgeopt.runtimes.reference.prepare import activation_params, per_tensor
from edgeopt.runtimes.reference.registry import (
    F32,
    KERNELS,
    PREPARERS,
    Params,
    fused_activation_float,
    right_aligned,
)


@PREPARERS.register("SUB", mode="int8")
def prepare_sub(op: QOp, program: QProgram) -> Params:
    """``sub.cc`` ``PrepareGeneralSubOp`` for int8: ADD's parameters with ``input2_multiplier`` negated
    (``op_sign = -1``), so that the ADD kernel computes ``x1 - x2``."""
    params = prepare_add(op, program)
    params["input2_multiplier"] = -params["input2_multiplier"]
    return params


@PREPARERS.register("MUL", mode="int8")
def prepare_mul(op: QOp, program: QProgram) -> Params:
    """``mul.cc`` Prepare for int8: ``QuantizeMultiplier(s1 * s2 / s_out)`` with the product and the
    quotient in float32, as the C++ computes them (``input1->params.scale * input2->params.scale /
    output->params.scale``, all floats, widened to double only when assigned). Measured: on a MUL whose
    exact ``product * multiplier`` lies within 0.008 of a half, LiteRT 2.3's reference kernel rounds as
    this float32 multiplier does and not as the double one (densenet121's batch norm as MUL)."""
    s1, zp1 = per_tensor(program, op.inputs[0], op)
    s2, zp2 = per_tensor(program, op.inputs[1], op)
    s_out, zp_out = per_tensor(program, op.outputs[0], op)
    real = np.float32(np.float32(s1) * np.float32(s2)) / np.float32(s_out)
    multiplier, shift = quantize_multiplier(float(real), program.rounding)
    return {
        "input1_offset": -zp1,
        "input2_offset": -zp2,
        "output_offset": zp_out,
        "output_multiplier": multiplier,
        "output_shift": shift,
        **activation_params(program, op),
    }


def mul_func(a: np.ndarray, b: np.ndarray, p: Mapping[str, Any], rounding: Rounding) -> np.ndarray:
    """TFLite ``MulElementwise`` (int8): ``clamp(output_offset + MultiplyByQuantizedMultiplier((a +
    input1_offset) * (b + input2_offset), m, s), act_min, act_max)``; ``|product| <= 255**2`` fits int32."""
    product = (a.astype(np.int64) + p["input1_offset"]) * (b.astype(np.int64) + p["input2_offset"])
    out = multiply_by_quantized_multiplier(product, p["output_multiplier"], p["output_shift"], rounding)
    out += p["output_offset"]
    return np.clip(out, p["activation_min"], p["activation_max"]).astype(np.int8)


@KERNELS.register("SUB", mode="int8")
def _run_sub_int8(op: QOp, args: list[np.ndarray], program: QProgram) -> np.ndarray:
    return binary_lookup(add_func, *right_aligned(*args), op.params, program.rounding)


@KERNELS.register("MUL", mode="int8")
def _run_mul_int8(op: QOp, args: list[np.ndarray], program: QProgram) -> np.ndarray:
    return binary_lookup(mul_func, *right_aligned(*args), op.params, program.rounding)


@KERNELS.register("SUB", mode="float32")
def _run_sub_float32(op: QOp, args: list[np.ndarray], program: QProgram) -> np.ndarray:
    a, b = right_aligned(*(np.asarray(x, dtype=F32) for x in args))
    return fused_activation_float(op, a - b)


@KERNELS.register("MUL", mode="float32")
def _run_mul_float32(op: QOp, args: list[np.ndarray], program: QProgram) -> np.ndarray:
    a, b = right_aligned(*(np.asarray(x, dtype=F32) for x in args))
    return fused_activation_float(op, a * b)
