"""CONV_2D, int8 per-channel: TFLite ``reference/integer_ops/conv.h`` ``ConvPerChannel``."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from edgeopt.qprogram import QOp, QProgram, Rounding
from edgeopt.runtimes.reference.fixedpoint import MAX_PRODUCT, int32_accumulator, requantize
from edgeopt.runtimes.reference.im2col import pad_for_windows, samples_per_chunk, windows
from edgeopt.runtimes.reference.registry import KERNELS, constant, fold_run_axis, output_shape


def conv_per_channel(
    x: np.ndarray, w: np.ndarray, bias: np.ndarray, p: Mapping[str, Any], rounding: Rounding
) -> np.ndarray:
    """Int8 convolution with per-output-channel requantization (one group; ``_run_conv`` splits groups).

    ``acc[n, y, x, c] = bias[c] + sum over (i, j, k) inside the image of
    w[c, i, j, k] * (in[n, y*sh - ph + i*dh, x*sw - pw + j*dw, k] + input_offset)`` in int32, then
    ``clamp(MultiplyByQuantizedMultiplier(acc, m[c], s[c]) + output_offset, act_min, act_max)``.

    The sum is one BLAS matmul over im2col patches, exact: every product is an integer with
    ``|w * (x - zp)| <= 128 * 255 = 32640 < 2**15``, so every partial sum of a K-term dot product, in
    whatever order BLAS adds (FMA included), is an integer of magnitude at most ``K * 32640``. That
    is exactly representable in float32 (24-bit significand) when ``K * 32640 < 2**24`` (K <= 514,
    e.g. 3x3x32), used then for speed, and in float64 (53-bit significand) for any ``K < 2**38``.
    ``int32_accumulator`` then gives what the C++ int32 accumulator holds, overflow included.

    Args:
        x: int8 input (N, H, W, Ci).
        w: int8 filter (Co, KH, KW, Ci).
        bias: int32 bias (Co,).
        p: the op's params from ``prepare_conv``.
        rounding: the rounding of ``MultiplyByQuantizedMultiplier``.

    Returns:
        int8 output (N, OH, OW, Co).
    """
    n = x.shape[0]
    co, kh, kw, ci = w.shape
    dh, dw = p["dilation_height_factor"], p["dilation_width_factor"]
    oh, ow = p["output_height"], p["output_width"]
    depth = kh * kw * ci
    dtype = np.float32 if depth * MAX_PRODUCT < 1 << 24 else np.float64
    w_mat = w.reshape(co, depth).astype(dtype)
    # Channels first from here on, so that per-channel values broadcast along long contiguous rows.
    bias = bias.astype(np.int64)[:, np.newaxis]
    multiplier, shift = p["output_multiplier"][:, np.newaxis], p["output_shift"][:, np.newaxis]
    bound = depth * MAX_PRODUCT + int(np.abs(bias).max(initial=0))
    out = np.empty((n, oh, ow, co), dtype=np.int8)
    chunk = samples_per_chunk(oh * ow * depth)
    for start in range(0, n, chunk):
        xs = x[start : start + chunk].astype(dtype)
        xs += p["input_offset"]
        patches = windows(pad_for_windows(xs, p, kh, kw, dh, dw), p, kh, kw, dh, dw)
        acc = (w_mat @ patches.reshape(-1, depth).T).astype(np.int64)
        acc += bias
        y = requantize(
            int32_accumulator(acc, bound), multiplier, shift, p["output_offset"],
            p["activation_min"], p["activation_max"], rounding,
        )
        out[start : start + xs.shape[0]] = y.T.reshape(xs.shape[0], oh, ow, co)
    return out


@KERNELS.register("CONV_2D")
def _run_conv(op: QOp, args: list[np.ndarray], program: QProgram) -> np.ndarray:
    x, w, bias = fold_run_axis(args[0]), constant(args[1]), constant(args[2])
    # Filters with Ci / groups input channels: ConvPerChannel reads input channels
    # [g * Ci / groups, (g + 1) * Ci / groups) for output channel group g, one convolution per group.
    ci, groups = w.shape[3], x.shape[3] // w.shape[3]
    co = w.shape[0] // groups
    parts = []
    for g in range(groups):
        out_c = slice(g * co, (g + 1) * co)
        p = {**op.params, "output_multiplier": op.params["output_multiplier"][out_c],
             "output_shift": op.params["output_shift"][out_c]}
        parts.append(conv_per_channel(x[..., g * ci : (g + 1) * ci], w[out_c], bias[out_c], p, program.rounding))
    y = parts[0] if groups == 1 else np.concatenate(parts, axis=3)
    return y.reshape((args[0].shape[0],) + output_shape(op, program))
