"""CONV_2D, int8 per-channel: TFLite ``reference/integer_ops/conv.h`` ``ConvPerChannel``."""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from edgeopt.qprogram import QOp, QProgram, Rounding
from edgeopt.runtimes.reference.arith.fixedpoint import MAX_PRODUCT, Requantizer
from edgeopt.runtimes.reference.arith.im2col import (
    BLOCK_ELEMENTS,
    pad_for_windows,
    samples_per_chunk,
    tile_channels,
    windows,
)
from edgeopt.runtimes.reference.registry import KERNELS, constant, fold_run_axis, output_shape

# Sums per matmul: large enough that BLAS (and its threads, when it has several) run at speed.
MATMUL_ELEMENTS = 1 << 20
# The most taps whose sums float32 holds exactly: EXACT_DEPTH * MAX_PRODUCT < 2**24.
EXACT_DEPTH = ((1 << 24) - 1) // MAX_PRODUCT


def conv_per_channel(
    x: np.ndarray, w: np.ndarray, bias: np.ndarray, p: Mapping[str, Any], rounding: Rounding
) -> np.ndarray:
    """Int8 convolution with per-output-channel requantization (one group; ``_run_conv`` splits groups).

    ``acc[n, y, x, c] = bias[c] + sum over (i, j, k) inside the image of
    w[c, i, j, k] * (in[n, y*sh - ph + i*dh, x*sw - pw + j*dw, k] + input_offset)`` in int32, then
    ``clamp(MultiplyByQuantizedMultiplier(acc, m[c], s[c]) + output_offset, act_min, act_max)``.

    The sum is computed by float32 BLAS matmuls over im2col patches, exactly: every product is an
    integer with ``|w * (x - zp)| <= 128 * 255 = 32640 < 2**15``, so every partial sum of a K-term dot
    product, in whatever order BLAS adds (FMA included), is an integer of magnitude at most
    ``K * 32640``, exactly representable in float32 (24-bit significand) when ``K * 32640 < 2**24``
    (K <= 514, e.g. 3x3x32). A deeper filter is split into parts of at most 514 taps, one matmul each.
    The parts' sums (integers below ``2**24``) then add up in int32, and so does the bias, wrapping as
    the C++ int32 accumulator does: addition modulo ``2**32`` gives the same value in whatever order.

    The work goes block by block: each block of output rows' sums (channels last) is requantized while
    in cache and lands straight in the output.

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
    w_mat = w.reshape(co, depth).T.astype(np.float32)
    step = math.ceil(depth / math.ceil(depth / EXACT_DEPTH))  # the fewest parts, of equal sizes
    parts = [slice(k, k + step) for k in range(0, depth, step)]
    # Per-channel values for a whole output row: the work below is on (rows, OW, Co) blocks.
    bias = tile_channels(bias.astype(np.int32), ow)
    requantizer = Requantizer(
        tile_channels(p["output_multiplier"], ow), tile_channels(p["output_shift"], ow), p["output_offset"],
        p["activation_min"], p["activation_max"], rounding,
    )
    out = np.empty((n, oh, ow, co), dtype=np.int8)
    chunk = samples_per_chunk(max(x.shape[1] * x.shape[2] * ci, oh * ow * depth))
    # Output rows per matmul (a large product, for BLAS and its threads to run at speed, written into
    # reused buffers) and per requantization block (which stays in cache).
    matmul_rows = max(1, MATMUL_ELEMENTS // (ow * co * len(parts)))
    block_rows = max(1, BLOCK_ELEMENTS // (ow * co))
    buffers = [np.empty((min(matmul_rows, n * oh) * ow, co), dtype=np.float32) for _ in parts]
    for start in range(0, n, chunk):
        xs = x[start : start + chunk]
        xp = pad_for_windows(xs, p, kh, kw, dh, dw, p["input_offset"], np.float32)
        patches = windows(xp, p, kh, kw, dh, dw).reshape(-1, depth)  # a view for 1x1 unit-stride filters
        y = out[start : start + xs.shape[0]].reshape(-1, ow, co)  # a view: out is C-contiguous
        for r0 in range(0, y.shape[0], matmul_rows):
            pixels = patches[r0 * ow : (r0 + matmul_rows) * ow]
            sums = [
                np.matmul(pixels[:, part], w_mat[part], out=buffer[: pixels.shape[0]]).reshape(-1, ow, co)
                for part, buffer in zip(parts, buffers, strict=True)
            ]
            for b0 in range(0, sums[0].shape[0], block_rows):
                rows = slice(b0, b0 + block_rows)
                acc = sums[0][rows].astype(np.int32)
                for more in sums[1:]:
                    acc += more[rows].astype(np.int32)
                acc += bias
                requantizer(acc, out=y[r0 + b0 : r0 + b0 + acc.shape[0]])
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
