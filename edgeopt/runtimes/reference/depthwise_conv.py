"""DEPTHWISE_CONV_2D, int8 per-channel: TFLite ``reference/integer_ops/depthwise_conv.h``."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from edgeopt.qprogram import QOp, QProgram, Rounding
from edgeopt.runtimes.reference.fixedpoint import requantize
from edgeopt.runtimes.reference.im2col import pad_for_windows, samples_per_chunk, window_tap
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
    wrap-around is what the C++ accumulator does too, so overflow, if any, also matches.

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
    taps = w[0].astype(np.int32)
    out = np.empty((n, oh, ow, co), dtype=np.int8)
    chunk = samples_per_chunk(oh * ow * co * 2)
    for start in range(0, n, chunk):
        xs = x[start : start + chunk].astype(np.int32) + p["input_offset"]
        if p["depth_multiplier"] > 1:
            xs = np.repeat(xs, p["depth_multiplier"], axis=3)
        xp = pad_for_windows(xs, p, kh, kw, dh, dw)
        acc = np.broadcast_to(bias.astype(np.int32), (xs.shape[0], oh, ow, co)).copy()
        for i in range(kh):
            for j in range(kw):
                acc += window_tap(xp, p, i, j, dh, dw) * taps[i, j]
        out[start : start + xs.shape[0]] = requantize(
            acc, p["output_multiplier"], p["output_shift"], p["output_offset"],
            p["activation_min"], p["activation_max"], rounding,
        )
    return out


@KERNELS.register("DEPTHWISE_CONV_2D")
def _run_depthwise_conv(op: QOp, args: list[np.ndarray], program: QProgram) -> np.ndarray:
    x = args[0]
    y = depthwise_conv_per_channel(
        fold_run_axis(x), constant(args[1]), constant(args[2]), op.params, program.rounding
    )
    return y.reshape((x.shape[0],) + output_shape(op, program))
