"""DEPTHWISE_CONV_2D, int8 per-channel: TFLite ``reference/integer_ops/depthwise_conv.h``."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from edgeopt.qprogram import QOp, QProgram, Rounding
from edgeopt.runtimes.reference.arith.fixedpoint import Requantizer
from edgeopt.runtimes.reference.arith.im2col import (
    output_blocks,
    pad_for_windows,
    samples_per_chunk,
    tile_channels,
    unit_stride_taps,
)
from edgeopt.runtimes.reference.registry import KERNELS, constant, fold_run_axis, output_shape


def depthwise_conv_per_channel(
    x: np.ndarray, w: np.ndarray, bias: np.ndarray, p: Mapping[str, Any], rounding: Rounding
) -> np.ndarray:
    """Int8 depthwise convolution with per-channel requantization (``DepthwiseConvPerChannel``).

    Output channel ``c = k * depth_multiplier + m`` reads input channel ``k``:
    ``acc[n, y, x, c] = bias[c] + sum over (i, j) inside the image of
    w[0, i, j, c] * (in[n, y*sh - ph + i*dh, x*sw - pw + j*dw, k] + input_offset)``, then
    ``clamp(MultiplyByQuantizedMultiplier(acc, m[c], s[c]) + output_offset, act_min, act_max)``.

    The accumulator is numpy int32, as in the C++: each product fits (``|.| <= 32640``) and int32
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
    taps = [tile_channels(w[0, i, j].astype(np.int32), ow) for i in range(kh) for j in range(kw)]
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


@KERNELS.register("DEPTHWISE_CONV_2D")
def _run_depthwise_conv(op: QOp, args: list[np.ndarray], program: QProgram) -> np.ndarray:
    x = args[0]
    y = depthwise_conv_per_channel(
        fold_run_axis(x), constant(args[1]), constant(args[2]), op.params, program.rounding
    )
    return y.reshape((x.shape[0],) + output_shape(op, program))
