"""ADD, int8: TFLite ``reference/integer_ops/add.h`` (``AddFunc``, broadcasting like numpy)."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from edgeopt.qprogram import QOp, QProgram, Rounding
from edgeopt.runtimes.reference.arith.fixedpoint import (
    multiply_by_quantized_multiplier_smaller_than_one_exp as rescale,
)
from edgeopt.runtimes.reference.registry import KERNELS


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


def add(a: np.ndarray, b: np.ndarray, p: Mapping[str, Any], rounding: Rounding) -> np.ndarray:
    """Int8 ADD (``reference/integer_ops/add.h``), broadcasting like numpy.

    ``add_func`` depends on nothing but the two int8 operands, so it is tabulated once for all
    256 x 256 pairs and the output is one lookup per element: the same integers, far fewer passes.
    (A tensor's bytes index the table directly: ``byte(a) * 256 + byte(b)``.)

    Args:
        a: int8 first input.
        b: int8 second input, same shape as ``a`` or broadcastable with it.
        p: the op's params from ``prepare_add``.
        rounding: the rounding of ``MultiplyByQuantizedMultiplier``.

    Returns:
        int8 sum, of the broadcast shape.
    """
    # Row/column u of the table is the int8 value whose two's complement byte is u.
    values = np.arange(256, dtype=np.uint8).view(np.int8)
    table = add_func(values[:, None], values[None, :], p, rounding).ravel()
    index = (a.view(np.uint8).astype(np.uint16) << 8) | b.view(np.uint8)
    return table[index]


@KERNELS.register("ADD")
def _run_add(op: QOp, args: list[np.ndarray], program: QProgram) -> np.ndarray:
    a, b = args
    # Align the program axes of a lower-rank operand to the right, after the run axis.
    rank = max(a.ndim, b.ndim)
    a = a.reshape(a.shape[:1] + (1,) * (rank - a.ndim) + a.shape[1:])
    b = b.reshape(b.shape[:1] + (1,) * (rank - b.ndim) + b.shape[1:])
    return add(a, b, op.params, program.rounding)
