"""DEPTHWISE_CONV_2D: Prepare and the int8, 16x8 and float32 kernels (TFLite ``kernels/depthwise_conv.cc``).

* int8: ``reference/integer_ops/depthwise_conv.h`` ``DepthwiseConvPerChannel``; with a weight zero point
  (``weights_offset``, per-tensor asymmetric weights) the filter offset of the legacy uint8
  ``reference/depthwiseconv_uint8.h`` ``DepthwiseConv`` too (LiteRT 2.3's int8 kernel accepts such weights
  but ignores their zero point: measured, ``tests/runtimes/reference/test_weights_offset.py``).
* 16x8: its ``int16_t`` overload: int64 accumulator, no input offset, the int64
  ``MultiplyByQuantizedMultiplier`` and the int16 clamp (see ``conv``).
* float32: ``reference/depthwiseconv_float.h``. A depthwise convolution has few terms per output
  (``KH * KW``), summed here exactly like the reference: a float32 running total over the filter taps
  in row-major order, which is bit-exact.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from edgeopt.errors import UnsupportedOpError
from edgeopt.qprogram import QOp, QProgram, Rounding
from edgeopt.runtimes.reference.arith.fixedpoint import Requantizer, requantize_16
from edgeopt.runtimes.reference.arith.im2col import (
    output_blocks,
    pad_for_windows,
    samples_per_chunk,
    tile_channels,
    unit_stride_taps,
    window_tap,
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
    window,
)
from edgeopt.runtimes.reference.registry import (
    F32,
    KERNELS,
    PREPARERS,
    Params,
    constant,
    float_bias,
    fold_run_axis,
    fused_activation_float,
    output_shape,
)


@PREPARERS.register("DEPTHWISE_CONV_2D", mode="int8")
def prepare_depthwise_conv(op: QOp, program: QProgram) -> Params:
    """``depthwise_conv.cc`` Prepare: ``prepare_conv``'s parameters (``weights_offset`` included) and
    ``depth_multiplier`` (``out_channels // in_channels``)."""
    in_shape = program.tensor(op.inputs[0]).shape
    _, kh, kw, co = program.tensor(op.inputs[1]).shape
    if co % in_shape[3]:
        raise UnsupportedOpError(op.kind, op.source, f"{co} output channels for {in_shape[3]} inputs")
    multiplier, shift = multipliers(effective_scales(program, op, co), program.rounding)
    return {
        **window(op, in_shape, kh, kw, dilated=True),
        "depth_multiplier": co // in_shape[3],
        **io_offsets(program, op),
        "output_multiplier": multiplier,
        "output_shift": shift,
        **activation_params(program, op),
        **weights_offset(program, op),
    }


@PREPARERS.register("DEPTHWISE_CONV_2D", mode="16x8")
def prepare_depthwise_conv_16x8(op: QOp, program: QProgram) -> Params:
    """``depthwise_conv.cc`` Prepare for int16 input."""
    check_bias_int64(op, program)
    symmetric_weights(op, program)
    return {**prepare_depthwise_conv(op, program), **symmetric_16x8(op, program)}


def depthwise_conv_per_channel(
    x: np.ndarray, w: np.ndarray, bias: np.ndarray, p: Mapping[str, Any], rounding: Rounding
) -> np.ndarray:
    """Int8 depthwise convolution with per-channel requantization (``DepthwiseConvPerChannel``).

    Output channel ``c = k * depth_multiplier + m`` reads input channel ``k``:
    ``acc[n, y, x, c] = bias[c] + sum over (i, j) inside the image of
    (w[0, i, j, c] + weights_offset) * (in[n, y*sh - ph + i*dh, x*sw - pw + j*dw, k] + input_offset)``,
    then ``clamp(MultiplyByQuantizedMultiplier(acc, m[c], s[c]) + output_offset, act_min, act_max)``;
    ``weights_offset`` (``-zp_w``, per-tensor asymmetric weights) is 0 when ``p`` has none.

    The accumulator is numpy int32, as in the C++: each product fits (``|.| <= 255 * 255``) and int32
    wrap-around is what the C++ accumulator does too, so overflow, if any, also matches (the order of
    the additions does not matter modulo ``2**32``).

    The work goes block by block (``output_blocks``), each block's accumulator staying in cache: each
    tap adds ``tap * w[0, i, j]`` through one reused product buffer, then the bias; the block is
    requantized straight into the output. Taps are read with unit stride (``unit_stride_taps``) and
    per-channel values tiled along the output width (``tile_channels``), for contiguous inner loops.

    Args:
        x: int8 input (N, H, W, Ci).
        w: int8 filter (1, KH, KW, Ci * depth_multiplier).
        bias: int32 bias (Co,).
        p: the op's params from ``prepare_depthwise_conv``.
        rounding: the rounding of ``MultiplyByQuantizedMultiplier``.

    Returns:
        int8 output (N, OH, OW, Co).
    """
    n = x.shape[0]
    _, kh, kw, co = w.shape
    dh, dw = p["dilation_height_factor"], p["dilation_width_factor"]
    oh, ow = p["output_height"], p["output_width"]
    filters = w[0].astype(np.int32)
    if offset := p.get("weights_offset", 0):
        filters += offset
    taps = [tile_channels(filters[i, j], ow) for i in range(kh) for j in range(kw)]
    bias = tile_channels(bias.astype(np.int32), ow)
    requantizer = Requantizer(
        tile_channels(p["output_multiplier"], ow), tile_channels(p["output_shift"], ow), p["output_offset"],
        p["activation_min"], p["activation_max"], rounding,
    )
    out = np.empty((n, oh, ow, co), dtype=np.int8)
    chunk = samples_per_chunk(x.shape[1] * x.shape[2] * co)
    for start in range(0, n, chunk):
        xs = x[start : start + chunk]
        if p["depth_multiplier"] > 1:
            xs = np.repeat(xs, p["depth_multiplier"], axis=3)
        xp = pad_for_windows(xs, p, kh, kw, dh, dw, p["input_offset"], np.int32)
        views = unit_stride_taps(xp, p, kh, kw, dh, dw)
        y = out[start : start + xs.shape[0]]
        for samples, rows in output_blocks(xs.shape[0], oh, ow * co):
            acc = np.multiply(views[0][samples, rows], taps[0])
            product = np.empty_like(acc)
            for view, tap in zip(views[1:], taps[1:], strict=True):
                acc += np.multiply(view[samples, rows], tap, out=product)
            acc += bias
            requantizer(acc, out=y[samples, rows])
    return out


@KERNELS.register("DEPTHWISE_CONV_2D", mode="int8")
def _run_depthwise_conv_int8(op: QOp, args: list[np.ndarray], program: QProgram) -> np.ndarray:
    x = args[0]
    y = depthwise_conv_per_channel(
        fold_run_axis(x), constant(args[1]), constant(args[2]), op.params, program.rounding
    )
    return y.reshape((x.shape[0],) + output_shape(op, program))


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
        out[start : start + xs.shape[0]] = requantize_16(acc, p["output_multiplier"], p["output_shift"],
                                                        p["activation_min"], p["activation_max"])
    return out


@KERNELS.register("DEPTHWISE_CONV_2D", mode="16x8")
def _run_depthwise_conv_16x8(op: QOp, args: list[np.ndarray], program: QProgram) -> np.ndarray:
    w = constant(args[1])
    bias = constant(args[2]) if len(args) > 2 else np.zeros(w.shape[3], np.int64)
    y = depthwise_conv_per_channel_16x8(fold_run_axis(args[0]), w, bias, op.params)
    return y.reshape((args[0].shape[0],) + output_shape(op, program))


@KERNELS.register("DEPTHWISE_CONV_2D", mode="float32")
def _run_depthwise_conv_float32(op: QOp, args: list[np.ndarray], program: QProgram) -> np.ndarray:
    """Output channel ``c = k * depth_multiplier + m`` reads input channel k: a float32 running sum of
    ``w[0, i, j, c] * in[...]`` over the taps (i, j) inside the image, plus ``bias[c]``, then the
    fused activation."""
    x = fold_run_axis(args[0])
    w = constant(args[1]).astype(F32)
    _, kh, kw, co = w.shape
    bias = float_bias(args, 2, co)
    p = window(op, program.tensor(op.inputs[0]).shape, kh, kw, dilated=True)
    dh, dw = p["dilation_height_factor"], p["dilation_width_factor"]
    multiplier = co // x.shape[3]
    oh, ow = p["output_height"], p["output_width"]
    out = np.empty((x.shape[0], oh, ow, co), F32)
    # A few samples at a time, summed in place: whole-batch temporaries of an early layer (112x112x32
    # floats per sample) cost gigabytes and page faults for nothing.
    chunk = samples_per_chunk(oh * ow * co)
    for start in range(0, x.shape[0], chunk):
        xs = x[start : start + chunk].astype(F32)
        if multiplier > 1:
            xs = np.repeat(xs, multiplier, axis=3)
        xp = pad_for_windows(xs, p, kh, kw, dh, dw)
        # The reference kernel skips taps outside the image; a zero from the padding adds +0.0 to the
        # running sum, which leaves every float32 total unchanged except -0.0, whose sign no later step sees.
        total = out[start : start + chunk]
        total.fill(0)
        product = np.empty_like(total)
        for i in range(kh):
            for j in range(kw):
                np.multiply(window_tap(xp, p, i, j, dh, dw), w[0, i, j], out=product)
                total += product
        total += bias
    y = fused_activation_float(op, out)
    return y.reshape((args[0].shape[0],) + output_shape(op, program))
