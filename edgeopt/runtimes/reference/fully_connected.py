"""FULLY_CONNECTED: Prepare and the int8, 16x8 and float32 kernels (TFLite ``kernels/fully_connected.cc``).

int8 and 16x8: ``reference/integer_ops/fully_connected.h`` (its ``int8_t`` and ``int16_t`` overloads;
16x8 accumulates ``w * x`` in int64 without an input offset, and clamps to int16). int8 weights with a
zero point (``weights_offset``, per-tensor asymmetric) enter as the ``filter_offset`` of that kernel and of
the legacy uint8 ``reference/fully_connected.h``; LiteRT 2.3's int8 kernel applies it (measured). float32:
``reference/fully_connected.h``, a float64 matmul rounded once to float32 (see ``conv``).

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

from edgeopt.ir import frozen_array
from edgeopt.qprogram import QOp, QProgram, Rounding
from edgeopt.runtimes.reference.arith.fixedpoint import (
    INT32_MIN,
    MAX_OFFSET_PRODUCT,
    MAX_PRODUCT,
    int32_accumulator,
    requantize,
    requantize_16,
    round_half_away_from_zero,
    wrap_int32,
)
from edgeopt.runtimes.reference.prepare import (
    activation_params,
    check_bias_int64,
    effective_scales,
    io_offsets,
    multipliers,
    symmetric_16x8,
    symmetric_weights,
    weights_offset,
)
from edgeopt.runtimes.reference.registry import (
    F32,
    KERNELS,
    PREPARERS,
    Params,
    constant,
    float_bias,
    fused_activation_float,
    output_shape,
)


@PREPARERS.register("FULLY_CONNECTED", mode="int8")
def prepare_fully_connected(op: QOp, program: QProgram) -> Params:
    """``fully_connected.cc`` Prepare: ``input_offset``, ``output_offset``, ``effective_scale`` (float64 per
    output channel, ``double(s_in) * double(s_w[c]) / double(s_out)``), or, when the program's
    ``fully_connected_requantization`` is ``"fixed_point"``, their ``output_multiplier`` and
    ``output_shift`` instead, ``activation_min``, ``activation_max``, and ``weights_offset`` (``-zp_w``)
    for weights with a non-zero zero point."""
    return {**io_offsets(program, op), **_requantization(op, program), **activation_params(program, op),
            **weights_offset(program, op)}


@PREPARERS.register("FULLY_CONNECTED", mode="16x8")
def prepare_fully_connected_16x8(op: QOp, program: QProgram) -> Params:
    """``fully_connected.cc`` Prepare for int16 input: the double effective scales ``s_in * s_w[c] /
    s_out`` (ai-edge-litert 2.3 requantizes the int16 kernel's accumulator with them, as its int8 one:
    measured by ``tests/runtimes/reference/test_int16.py``), or, for a ``"fixed_point"`` program, their ``QuantizeMultiplier``
    pairs for the int64 ``MultiplyByQuantizedMultiplier`` of ``reference/integer_ops/fully_connected.h``."""
    check_bias_int64(op, program)
    symmetric_weights(op, program)
    return {**_requantization(op, program), **symmetric_16x8(op, program)}


def _requantization(op: QOp, program: QProgram) -> Params:
    """``effective_scale`` per output channel, or their ``output_multiplier``/``output_shift`` for a
    ``"fixed_point"`` program."""
    scales = effective_scales(program, op, program.tensor(op.inputs[1]).shape[0])
    if program.fully_connected_requantization == "fixed_point":
        multiplier, shift = multipliers(scales, program.rounding)
        return {"output_multiplier": multiplier, "output_shift": shift}
    return {"effective_scale": frozen_array(scales)}


def fully_connected_per_channel(
    x: np.ndarray, w: np.ndarray, bias: np.ndarray | None, p: Mapping[str, Any],
    rounding: Rounding = "single",
) -> np.ndarray:
    """Int8 matrix product with per-output-channel scales.

    ``acc[b, c] = bias[c] + sum_d (w[c, d] + weights_offset) * (x[b, d] + input_offset)`` (int32;
    ``weights_offset`` is 0 when ``p`` has none), then, with an
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
    w_mat, max_product = w.T.astype(np.float64), MAX_PRODUCT
    if offset := p.get("weights_offset", 0):
        w_mat, max_product = w_mat + offset, MAX_OFFSET_PRODUCT
    acc = (xs @ w_mat).astype(np.int64)
    bias = np.zeros(w.shape[0], dtype=np.int64) if bias is None else bias.astype(np.int64)
    acc += bias
    acc = int32_accumulator(acc, w.shape[1] * max_product + int(np.abs(bias).max(initial=0)))
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


@KERNELS.register("FULLY_CONNECTED", mode="int8")
def _run_fully_connected_int8(op: QOp, args: list[np.ndarray], program: QProgram) -> np.ndarray:
    x, w = args[0], constant(args[1])
    bias = constant(args[2]) if len(args) > 2 else None
    y = fully_connected_per_channel(x.reshape(-1, w.shape[1]), w, bias, op.params, program.rounding)
    return y.reshape((x.shape[0],) + output_shape(op, program))


def fully_connected_16x8(x: np.ndarray, w: np.ndarray, bias: np.ndarray | None, p: Mapping[str, Any]) -> np.ndarray:
    """16x8 ``FullyConnected``: ``acc[b, c] = bias[c] + sum_d w[c, d] * x[b, d]`` (int64; a float64
    matmul, exact as in ``conv_per_channel_16x8``), then ``clamp(round(double(acc) * effective_scale[c]))``
    (C ``round``; an out-of-range double becomes ``INT32_MIN`` as on x86) or, with fixed-point params,
    the int64 ``MultiplyByQuantizedMultiplier`` and the clamp.

    Args:
        x: int16 input (B, D).
        w: int8 weights (Co, D).
        bias: int64 bias (Co,) or None.
        p: the op's params from ``prepare_fully_connected_16x8``.

    Returns:
        int16 output (B, Co).
    """
    acc = (x.astype(np.float64) @ w.T.astype(np.float64)).astype(np.int64)
    if bias is not None:
        acc += bias.astype(np.int64)
    return requantize_fully_connected_16x8(acc, p)


def requantize_fully_connected_16x8(acc: np.ndarray, p: Mapping[str, Any]) -> np.ndarray:
    """The tail of ``fully_connected_16x8`` on its int64 accumulators (bias included, output channels
    last): the double-precision or fixed-point scaling ``p`` holds, then the int16 clamp."""
    if "output_multiplier" in p:
        return requantize_16(acc, p["output_multiplier"], p["output_shift"], p["activation_min"], p["activation_max"])
    rounded = round_half_away_from_zero(acc.astype(np.float64) * p["effective_scale"])
    scaled = np.where((rounded >= -(2.0**31)) & (rounded < 2.0**31), rounded, INT32_MIN).astype(np.int64)
    return np.clip(scaled, p["activation_min"], p["activation_max"]).astype(np.int16)


@KERNELS.register("FULLY_CONNECTED", mode="16x8")
def _run_fully_connected_16x8(op: QOp, args: list[np.ndarray], program: QProgram) -> np.ndarray:
    x, w = args[0], constant(args[1])
    bias = constant(args[2]) if len(args) > 2 else None
    y = fully_connected_16x8(x.reshape(-1, w.shape[1]), w, bias, op.params)
    return y.reshape((x.shape[0],) + output_shape(op, program))


@KERNELS.register("FULLY_CONNECTED", mode="float32")
def _run_fully_connected_float32(op: QOp, args: list[np.ndarray], program: QProgram) -> np.ndarray:
    """``out[b, c] = act(sum_d w[c, d] * in[b, d] + bias[c])`` over the input's last axis."""
    w = constant(args[1]).astype(np.float64)
    bias = float_bias(args, 2, w.shape[0])
    acc = (args[0].reshape(-1, w.shape[1]).astype(np.float64) @ w.T).astype(F32)
    y = fused_activation_float(op, acc + bias)
    return y.reshape((args[0].shape[0],) + output_shape(op, program))
