"""CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED in TFLite's 16x8 mode: int16 activations (zero point 0),
int8 per-channel weights, int64 biases.

Reproduces ``reference/integer_ops/conv.h``, ``depthwise_conv.h`` and ``fully_connected.h`` (their
``int16_t`` overloads), which LiteRT 2.3 runs for int16 inputs under every op resolver: an int64
accumulator ``acc = bias[c] + sum w * x`` (no input offset), then the int64 overload of
``MultiplyByQuantizedMultiplier`` (``multiply_by_quantized_multiplier_int64``), which rounds once with
a 16-bit multiplier in both rounding builds (FULLY_CONNECTED: a double-precision scale instead, see
``fully_connected_16x8``), then the clamp to the fused activation's int16 range.
Prepare is the int8 one (``QuantizeMultiplier`` of ``s_in * s_w[c] / s_out`` per channel) with the
int16 activation range.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from edgeopt.errors import UnsupportedOpError
from edgeopt.ir import QParams
from edgeopt.qprogram import QOp, QProgram
from edgeopt.runtimes.reference.arith.fixedpoint import (
    INT32_MIN,
    quantize_multiplier,
    round_half_away_from_zero,
    wrap_int32,
)
from edgeopt.runtimes.reference.arith.im2col import pad_for_windows, samples_per_chunk, window_tap, windows
from edgeopt.runtimes.reference.int16_registry import INT16_KERNELS, INT16_PREPARERS
from edgeopt.runtimes.reference.prepare import (
    Params,
    _effective_scales,
    prepare_conv,
    prepare_depthwise_conv,
)
from edgeopt.runtimes.reference.registry import constant, fold_run_axis, output_shape

INT16_MIN, INT16_MAX = -(1 << 15), (1 << 15) - 1
# Largest |w * x| of an int8 weight and an int16 activation: 128 * 32768 = 2**22.
MAX_PRODUCT_16X8 = 1 << 22


def multiply_by_quantized_multiplier_int64(
    x: np.ndarray, multiplier: np.ndarray | int, shift: np.ndarray | int
) -> np.ndarray:
    """TFLite ``MultiplyByQuantizedMultiplier(int64_t x, int32_t multiplier, int shift)`` (``common.cc``).

    The Q0.31 multiplier is first reduced to Q0.15, ``m16 = (m + 2**15) >> 16`` (``0x7FFF`` when ``m >=
    0x7FFF0000``, where that would overflow), then ``(x * m16 + 2**(14 - shift)) >> (15 - shift)``, one
    rounding half up, narrowed to int32. Both the single- and double-rounding builds compute this.
    ``|x| < 2**47`` (TFLite's assumption) and ``m16 <= 2**15`` keep ``x * m16`` inside int64.

    Args:
        x: int64 accumulators.
        multiplier: Q0.31 multipliers in ``[0, 2**31 - 1]``, broadcastable to ``x``.
        shift: exponents in ``[-31, 7]``, broadcastable to ``x``.

    Returns:
        int64 array holding the int32 results.
    """
    m = np.asarray(multiplier, dtype=np.int64)
    reduced = np.where(m < 0x7FFF0000, (m + (1 << 15)) >> 16, 0x7FFF)
    total = 15 - np.asarray(shift, dtype=np.int64)
    result = np.asarray(x, dtype=np.int64) * reduced
    result += np.left_shift(np.int64(1), total - 1)
    result >>= total
    return wrap_int32(result)


def activation_range_int16(op: QOp, qparams: QParams) -> tuple[int, int]:
    """TFLite ``CalculateActivationRangeQuantized`` for an int16 output (zero point 0): each real bound
    ``f`` becomes ``round(float32(f) / float32(scale))`` (half away from zero), clamped to int16."""
    bounds = {"NONE": (None, None), "RELU": (0.0, None), "RELU6": (0.0, 6.0), "RELU_N1_TO_1": (-1.0, 1.0)}
    act = op.options.get("fused_activation_function", "NONE")
    if act not in bounds:
        raise UnsupportedOpError(op.kind, op.source, f"fused activation {act} has no int16 form")
    scale = np.float32(qparams.scale[0])

    def quantize(f: float) -> int:
        tmp = float(np.float32(f) / scale)
        return int(np.copysign(np.floor(abs(tmp) + 0.5), tmp))

    lo, hi = bounds[act]
    return (INT16_MIN if lo is None else max(INT16_MIN, quantize(lo)),
            INT16_MAX if hi is None else min(INT16_MAX, quantize(hi)))


def symmetric_16x8(op: QOp, program: QProgram) -> Params:
    """Checks the 16x8 contract (int16 input and output with zero point 0, as ``conv.cc`` and friends
    ensure) and returns the int16 activation range."""
    for name in (op.inputs[0], op.outputs[0]):
        t = program.tensor(name)
        if t.dtype != "int16" or t.qparams is None or int(t.qparams.zero_point[0]) != 0:
            raise UnsupportedOpError(op.kind, op.source, f"16x8 mode needs int16 tensor '{name}' with zero point 0")
    lo, hi = activation_range_int16(op, program.tensor(op.outputs[0]).qparams)
    return {"activation_min": lo, "activation_max": hi}


def _check_bias(op: QOp, program: QProgram) -> None:
    if len(op.inputs) > 2 and op.inputs[2] and program.tensor(op.inputs[2]).dtype != "int64":
        raise UnsupportedOpError(op.kind, op.source, "16x8 mode needs an int64 bias")


def _requantize_16(acc: np.ndarray, p: Mapping[str, Any], multiplier: np.ndarray, shift: np.ndarray) -> np.ndarray:
    scaled = multiply_by_quantized_multiplier_int64(acc, multiplier, shift)
    return np.clip(scaled, p["activation_min"], p["activation_max"]).astype(np.int16)


@INT16_PREPARERS.register("CONV_2D")
def prepare_conv_16x8(op: QOp, program: QProgram) -> Params:
    """``conv.cc`` Prepare for int16 input: padding and per-channel multipliers as for int8."""
    _check_bias(op, program)
    return {**prepare_conv(op, program), **symmetric_16x8(op, program)}


@INT16_PREPARERS.register("DEPTHWISE_CONV_2D")
def prepare_depthwise_conv_16x8(op: QOp, program: QProgram) -> Params:
    """``depthwise_conv.cc`` Prepare for int16 input."""
    _check_bias(op, program)
    return {**prepare_depthwise_conv(op, program), **symmetric_16x8(op, program)}


@INT16_PREPARERS.register("FULLY_CONNECTED")
def prepare_fully_connected_16x8(op: QOp, program: QProgram) -> Params:
    """``fully_connected.cc`` Prepare for int16 input: the double effective scales ``s_in * s_w[c] /
    s_out`` (ai-edge-litert 2.3 requantizes the int16 kernel's accumulator with them, as its int8 one:
    measured by ``tests/test_int16.py``), or, for a ``"fixed_point"`` program, their ``QuantizeMultiplier``
    pairs for the int64 ``MultiplyByQuantizedMultiplier`` of ``reference/integer_ops/fully_connected.h``."""
    _check_bias(op, program)
    co = program.tensor(op.inputs[1]).shape[0]
    scales = _effective_scales(program, op, co)
    if program.fully_connected_requantization == "fixed_point":
        pairs = [quantize_multiplier(float(s), program.rounding) for s in scales]
        requantization: Params = {"output_multiplier": np.array([m for m, _ in pairs], dtype=np.int32),
                                  "output_shift": np.array([s for _, s in pairs], dtype=np.int32)}
    else:
        requantization = {"effective_scale": scales}
    return {**requantization, **symmetric_16x8(op, program)}


def conv_per_channel_16x8(x: np.ndarray, w: np.ndarray, bias: np.ndarray, p: Mapping[str, Any]) -> np.ndarray:
    """16x8 ``ConvPerChannel`` of one group: ``acc[n, y, x, c] = bias[c] + sum over (i, j, k) inside the
    image of w[c, i, j, k] * in[n, y*sh - ph + i*dh, x*sw - pw + j*dw, k]`` (int64), requantized.

    The sum is one float64 matmul over im2col patches, exact: each product is an integer with
    ``|w * x| <= 2**22``, so every partial sum of a K-term product is an integer below ``K * 2**22``,
    exact in float64 (53-bit significand) for any ``K < 2**31``.

    Args:
        x: int16 input (N, H, W, Ci).
        w: int8 filter (Co, KH, KW, Ci).
        bias: int64 bias (Co,).
        p: the op's params from ``prepare_conv_16x8``.

    Returns:
        int16 output (N, OH, OW, Co).
    """
    n = x.shape[0]
    co, kh, kw, ci = w.shape
    dh, dw = p["dilation_height_factor"], p["dilation_width_factor"]
    oh, ow = p["output_height"], p["output_width"]
    depth = kh * kw * ci
    w_mat = w.reshape(co, depth).astype(np.float64)
    bias = bias.astype(np.int64)[:, np.newaxis]
    multiplier, shift = p["output_multiplier"][:, np.newaxis], p["output_shift"][:, np.newaxis]
    out = np.empty((n, oh, ow, co), dtype=np.int16)
    chunk = samples_per_chunk(oh * ow * depth)
    for start in range(0, n, chunk):
        xs = x[start : start + chunk].astype(np.float64)
        patches = windows(pad_for_windows(xs, p, kh, kw, dh, dw), p, kh, kw, dh, dw)
        acc = (w_mat @ patches.reshape(-1, depth).T).astype(np.int64) + bias
        out[start : start + xs.shape[0]] = _requantize_16(acc, p, multiplier, shift).T.reshape(xs.shape[0], oh, ow, co)
    return out


@INT16_KERNELS.register("CONV_2D")
def _run_conv_16x8(op: QOp, args: list[np.ndarray], program: QProgram) -> np.ndarray:
    x, w = fold_run_axis(args[0]), constant(args[1])
    bias = constant(args[2]) if len(args) > 2 else np.zeros(w.shape[0], np.int64)
    if x.shape[3] != w.shape[3]:
        raise UnsupportedOpError(op.kind, op.source, "grouped convolution has no 16x8 kernel")
    y = conv_per_channel_16x8(x, w, bias, op.params)
    return y.reshape((args[0].shape[0],) + output_shape(op, program))


def depthwise_conv_per_channel_16x8(x: np.ndarray, w: np.ndarray, bias: np.ndarray,
                                    p: Mapping[str, Any]) -> np.ndarray:
    """16x8 ``DepthwiseConvPerChannel``: output channel ``c = k * depth_multiplier + m`` reads input
    channel ``k``; ``acc = bias[c] + sum over (i, j) inside the image of w[0, i, j, c] * in[...]`` in
    int64 (exact: ``kh * kw * 2**22`` is far below ``2**63``), requantized.

    Args:
        x: int16 input (N, H, W, Ci).
        w: int8 filter (1, KH, KW, Co).
        bias: int64 bias (Co,).
        p: the op's params from ``prepare_depthwise_conv_16x8``.

    Returns:
        int16 output (N, OH, OW, Co).
    """
    n = x.shape[0]
    _, kh, kw, co = w.shape
    dh, dw = p["dilation_height_factor"], p["dilation_width_factor"]
    oh, ow = p["output_height"], p["output_width"]
    taps = w[0].astype(np.int64)
    out = np.empty((n, oh, ow, co), dtype=np.int16)
    chunk = samples_per_chunk(oh * ow * co * 4)
    for start in range(0, n, chunk):
        xs = x[start : start + chunk].astype(np.int64)
        if p["depth_multiplier"] > 1:
            xs = np.repeat(xs, p["depth_multiplier"], axis=3)
        xp = pad_for_windows(xs, p, kh, kw, dh, dw)
        acc = np.broadcast_to(bias.astype(np.int64), (xs.shape[0], oh, ow, co)).copy()
        for i in range(kh):
            for j in range(kw):
                acc += window_tap(xp, p, i, j, dh, dw) * taps[i, j]
        out[start : start + xs.shape[0]] = _requantize_16(acc, p, p["output_multiplier"], p["output_shift"])
    return out


@INT16_KERNELS.register("DEPTHWISE_CONV_2D")
def _run_depthwise_conv_16x8(op: QOp, args: list[np.ndarray], program: QProgram) -> np.ndarray:
    w = constant(args[1])
    bias = constant(args[2]) if len(args) > 2 else np.zeros(w.shape[3], np.int64)
    y = depthwise_conv_per_channel_16x8(fold_run_axis(args[0]), w, bias, op.params)
    return y.reshape((args[0].shape[0],) + output_shape(op, program))


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
        return _requantize_16(acc, p, p["output_multiplier"], p["output_shift"])
    rounded = round_half_away_from_zero(acc.astype(np.float64) * p["effective_scale"])
    scaled = np.where((rounded >= -(2.0**31)) & (rounded < 2.0**31), rounded, INT32_MIN).astype(np.int64)
    return np.clip(scaled, p["activation_min"], p["activation_max"]).astype(np.int16)


@INT16_KERNELS.register("FULLY_CONNECTED")
def _run_fully_connected_16x8(op: QOp, args: list[np.ndarray], program: QProgram) -> np.ndarray:
    x, w = args[0], constant(args[1])
    bias = constant(args[2]) if len(args) > 2 else None
    y = fully_connected_16x8(x.reshape(-1, w.shape[1]), w, bias, op.params)
    return y.reshape((x.shape[0],) + output_shape(op, program))
