"""FULLY_CONNECTED, int8 per-channel: TFLite ``reference/integer_ops/fully_connected.h``.

The reference kernels requantize the int32 accumulator differently by runtime version, and Prepare
(``prepare_fully_connected``) stores the parameters of the one the program names in
``fully_connected_requantization``:

* ``"double_precision"``: ai-edge-litert 2.3 (``FullyConnectedPerChannel`` with float scales, chosen by
  ``fully_connected.cc`` for ``kReference``) computes ``round(double(acc) * effective_scale[c])``,
  whatever the build's rounding; params carry ``effective_scale``.
* ``"fixed_point"``: tflite-runtime 2.14 computes ``MultiplyByQuantizedMultiplier(acc,
  output_multiplier[c], output_shift[c])`` as CONV_2D does, with the program's rounding (measured:
  ``tests/compat/check_tflite_runtime.py``); params carry ``output_multiplier`` and ``output_shift``.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from edgeopt.qprogram import QOp, QProgram, Rounding
from edgeopt.runtimes.reference.arith.fixedpoint import (
    INT32_MIN,
    MAX_PRODUCT,
    int32_accumulator,
    requantize,
    round_half_away_from_zero,
    wrap_int32,
)
from edgeopt.runtimes.reference.registry import KERNELS, constant, output_shape


def fully_connected_per_channel(
    x: np.ndarray, w: np.ndarray, bias: np.ndarray | None, p: Mapping[str, Any],
    rounding: Rounding = "single",
) -> np.ndarray:
    """Int8 matrix product with per-output-channel scales.

    ``acc[b, c] = bias[c] + sum_d w[c, d] * (x[b, d] + input_offset)`` (int32), then, with an
    ``effective_scale`` in ``p``: ``clamp(int32(round(double(acc) * effective_scale[c])) +
    output_offset, act_min, act_max)`` with C's ``round`` (half away from zero) and x86's conversion of
    an out-of-range double to int32 (``INT32_MIN``); with ``output_multiplier``/``output_shift``:
    ``clamp(MultiplyByQuantizedMultiplier(acc, m[c], s[c]) + output_offset, act_min, act_max)``.

    The sum is a float64 matmul, exact for the reason given in ``conv.conv_per_channel``.

    Args:
        x: int8 input (B, D).
        w: int8 weights (Co, D).
        bias: int32 bias (Co,) or None.
        p: the op's params from ``prepare_fully_connected``.
        rounding: the rounding of ``MultiplyByQuantizedMultiplier`` (fixed-point params only).

    Returns:
        int8 output (B, Co).
    """
    xs = x.astype(np.float64) + p["input_offset"]
    acc = (xs @ w.T.astype(np.float64)).astype(np.int64)
    bias = np.zeros(w.shape[0], dtype=np.int64) if bias is None else bias.astype(np.int64)
    acc += bias
    acc = int32_accumulator(acc, w.shape[1] * MAX_PRODUCT + int(np.abs(bias).max(initial=0)))
    return requantize_fully_connected(acc, p, rounding)


def requantize_fully_connected(acc: np.ndarray, p: Mapping[str, Any], rounding: Rounding) -> np.ndarray:
    """The int8 tail of ``fully_connected_per_channel``: the int32 accumulators ``acc`` (int64, bias
    included, output channels last) scaled by ``effective_scale`` in double precision or by the
    fixed-point multipliers, whichever ``p`` holds, offset and clamped (also QuantSim's forward value)."""
    if "output_multiplier" in p:
        return requantize(acc, p["output_multiplier"], p["output_shift"], p["output_offset"],
                          p["activation_min"], p["activation_max"], rounding)
    scaled = acc.astype(np.float64) * p["effective_scale"]
    rounded = round_half_away_from_zero(scaled)
    in_range = (rounded >= -(2.0**31)) & (rounded < 2.0**31)
    y = wrap_int32(np.where(in_range, rounded, INT32_MIN).astype(np.int64) + p["output_offset"])
    return np.clip(y, p["activation_min"], p["activation_max"]).astype(np.int8)


@KERNELS.register("FULLY_CONNECTED")
def _run_fully_connected(op: QOp, args: list[np.ndarray], program: QProgram) -> np.ndarray:
    x, w = args[0], constant(args[1])
    bias = constant(args[2]) if len(args) > 2 else None
    y = fully_connected_per_channel(x.reshape(-1, w.shape[1]), w, bias, op.params, program.rounding)
    return y.reshape((x.shape[0],) + output_shape(op, program))
