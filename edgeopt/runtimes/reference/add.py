"""ADD: Prepare and the int8, 16x8 and float32 kernels (TFLite ``kernels/add.cc``), broadcasting like numpy.

* int8: ``reference/integer_ops/add.h`` ``AddFunc``.
* 16x8 (``add.cc`` with ``pot_scale_int16 = false``, the general int16 path, then ``AddFunc<int16_t>``):
  the int8 formula with ``left_shift = 15`` (``65535 * 2**15 < 2**31``, so every intermediate fits
  int32) and zero points 0.
* float32 (``reference/add.h``): one float32 addition per element, then the fused activation's clamp:
  bit-exact.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from edgeopt.errors import UnsupportedOpError
from edgeopt.qprogram import QOp, QProgram, Rounding
from edgeopt.runtimes.reference.arith.fixedpoint import (
    multiply_by_quantized_multiplier_smaller_than_one_exp as rescale,
)
from edgeopt.runtimes.reference.arith.fixedpoint import quantize_multiplier
from edgeopt.runtimes.reference.prepare import activation_params, activation_range_int16, per_tensor
from edgeopt.runtimes.reference.registry import (
    F32,
    KERNELS,
    PREPARERS,
    Params,
    fused_activation_float,
    right_aligned,
)

ADD_LEFT_SHIFT = 20
ADD_LEFT_SHIFT_16 = 15
PairFunc = Callable[[np.ndarray, np.ndarray, Mapping[str, Any], Rounding], np.ndarray]


def _smaller_than_one(real: float, rounding: Rounding, op: QOp) -> tuple[int, int]:
    """TFLite ``QuantizeMultiplierSmallerThanOneExp``: checks ``0 <= real < 1``."""
    if not 0.0 <= real < 1.0:
        raise UnsupportedOpError(op.kind, op.source, f"rescale factor {real} is not below 1")
    return quantize_multiplier(real, rounding)


def _rescaling(op: QOp, program: QProgram, left_shift: int) -> Params:
    """``add.cc``'s multipliers: both inputs rescaled to ``2 * max(s1, s2)`` with ``left_shift`` bits of
    headroom, ``input{1,2}_multiplier``/``_shift`` from ``s_i / (2 * max(s_1, s_2))`` and
    ``output_multiplier``/``output_shift`` from ``2 * max(s_1, s_2) / (2**left_shift * s_out)``."""
    s1, _ = per_tensor(program, op.inputs[0], op)
    s2, _ = per_tensor(program, op.inputs[1], op)
    s_out, _ = per_tensor(program, op.outputs[0], op)
    twice_max = 2 * np.float64(max(s1, s2))
    m1, sh1 = _smaller_than_one(float(np.float64(s1) / twice_max), program.rounding, op)
    m2, sh2 = _smaller_than_one(float(np.float64(s2) / twice_max), program.rounding, op)
    real_out = twice_max / (np.float64(1 << left_shift) * np.float64(s_out))
    mo, sho = _smaller_than_one(float(real_out), program.rounding, op)
    return {"left_shift": left_shift, "input1_multiplier": m1, "input1_shift": sh1, "input2_multiplier": m2,
            "input2_shift": sh2, "output_multiplier": mo, "output_shift": sho}


@PREPARERS.register("ADD", mode="int8")
def prepare_add(op: QOp, program: QProgram) -> Params:
    """``add.cc`` Prepare for int8: ``input1_offset``, ``input2_offset``, ``output_offset`` (minus the
    input zero points, the output zero point), ``_rescaling`` with 20 bits of headroom,
    ``activation_min``, ``activation_max``."""
    _, zp1 = per_tensor(program, op.inputs[0], op)
    _, zp2 = per_tensor(program, op.inputs[1], op)
    _, zp_out = per_tensor(program, op.outputs[0], op)
    return {"input1_offset": -zp1, "input2_offset": -zp2, "output_offset": zp_out,
            **_rescaling(op, program, ADD_LEFT_SHIFT), **activation_params(program, op)}


@PREPARERS.register("ADD", mode="16x8")
def prepare_add_16x8(op: QOp, program: QProgram) -> Params:
    """``add.cc`` Prepare, general int16 scales: ``_rescaling`` with 15 bits of headroom and the int16
    activation range; all zero points must be 0."""
    zero_points = [per_tensor(program, t, op)[1] for t in (*op.inputs[:2], op.outputs[0])]
    if any(zero_points) or any(program.tensor(t).dtype != "int16" for t in (*op.inputs, *op.outputs)):
        raise UnsupportedOpError(op.kind, op.source, "int16 ADD needs int16 inputs and output with zero point 0")
    act = op.options.get("fused_activation_function", "NONE")
    lo, hi = activation_range_int16(act, program.tensor(op.outputs[0]).qparams, op)
    return {**_rescaling(op, program, ADD_LEFT_SHIFT_16), "activation_min": lo, "activation_max": hi}


def add_func(a: np.ndarray, b: np.ndarray, p: Mapping[str, Any], rounding: Rounding) -> np.ndarray:
    """TFLite ``AddFunc``: the int8 sum of two differently quantized values, elementwise.

    ``v_i = (x_i + input_i_offset) * 2**left_shift`` (left_shift = 20, so ``|v_i| <= 255 * 2**20 <
    2**28``), ``r_i = MBQMSmallerThanOneExp(v_i, m_i, s_i)`` (``|r_i| <= |v_i| / 2``, as ``m_i *
    2**s_i <= 1/2``), ``out = clamp(MBQMSmallerThanOneExp(r_1 + r_2, m_o, s_o) + output_offset,
    act_min, act_max)``: every intermediate fits int32 as in the C++.
    """
    v1 = (a.astype(np.int64) + p["input1_offset"]) << p["left_shift"]
    v2 = (b.astype(np.int64) + p["input2_offset"]) << p["left_shift"]
    r1 = rescale(v1, p["input1_multiplier"], p["input1_shift"], rounding)
    r2 = rescale(v2, p["input2_multiplier"], p["input2_shift"], rounding)
    out = rescale(r1 + r2, p["output_multiplier"], p["output_shift"], rounding) + p["output_offset"]
    return np.clip(out, p["activation_min"], p["activation_max"]).astype(np.int8)


def binary_lookup(func: PairFunc, a: np.ndarray, b: np.ndarray, p: Mapping[str, Any],
                  rounding: Rounding) -> np.ndarray:
    """``func`` on ``a`` and ``b`` broadcast like numpy, through a 256 x 256 table of all int8 pairs
    (a tensor's bytes index it directly: ``byte(a) * 256 + byte(b)``)."""
    values = np.arange(256, dtype=np.uint8).view(np.int8)
    table = func(values[:, None], values[None, :], p, rounding).ravel()
    return table[(a.view(np.uint8).astype(np.uint16) << 8) | b.view(np.uint8)]


def add(a: np.ndarray, b: np.ndarray, p: Mapping[str, Any], rounding: Rounding) -> np.ndarray:
    """Int8 ADD (``reference/integer_ops/add.h``), broadcasting like numpy: ``add_func``, which depends
    on nothing but the two int8 operands, through ``binary_lookup``'s table of all 256 x 256 pairs (the
    same integers, far fewer passes).

    Args:
        a: int8 first input.
        b: int8 second input, same shape as ``a`` or broadcastable with it.
        p: the op's params from ``prepare_add``.
        rounding: the rounding of ``MultiplyByQuantizedMultiplier``.

    Returns:
        int8 sum, of the broadcast shape.
    """
    return binary_lookup(add_func, a, b, p, rounding)


@KERNELS.register("ADD", mode="int8")
def _run_add_int8(op: QOp, args: list[np.ndarray], program: QProgram) -> np.ndarray:
    return add(*right_aligned(*args), op.params, program.rounding)


def add_16x8(a: np.ndarray, b: np.ndarray, p: Mapping[str, Any], rounding: Rounding) -> np.ndarray:
    """``AddFunc<int16_t>``: ``r_i = MBQMSmallerThanOneExp(x_i * 2**15, m_i, s_i)``, ``out =
    clamp(MBQMSmallerThanOneExp(r_1 + r_2, m_o, s_o), act_min, act_max)``, broadcasting like numpy."""
    r1 = rescale(a.astype(np.int64) << p["left_shift"], p["input1_multiplier"], p["input1_shift"], rounding)
    r2 = rescale(b.astype(np.int64) << p["left_shift"], p["input2_multiplier"], p["input2_shift"], rounding)
    out = rescale(r1 + r2, p["output_multiplier"], p["output_shift"], rounding)
    return np.clip(out, p["activation_min"], p["activation_max"]).astype(np.int16)


@KERNELS.register("ADD", mode="16x8")
def _run_add_16x8(op: QOp, args: list[np.ndarray], program: QProgram) -> np.ndarray:
    return add_16x8(*right_aligned(*args), op.params, program.rounding)


@KERNELS.register("ADD", mode="float32")
def _run_add_float32(op: QOp, args: list[np.ndarray], program: QProgram) -> np.ndarray:
    a, b = right_aligned(*(np.asarray(x, dtype=F32) for x in args))
    return fused_activation_float(op, a + b)
