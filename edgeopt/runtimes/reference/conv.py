"""CONV_2D: Prepare and the int8, 16x8 and float32 kernels (TFLite ``kernels/conv.cc``).

* int8: ``reference/integer_ops/conv.h`` ``ConvPerChannel`` (``conv_per_channel``); with a weight zero
  point (``weights_offset``, per-tensor asymmetric weights) the filter offset of the legacy uint8
  ``reference/conv.h`` ``Conv`` too, ``(w + weights_offset) * (x + input_offset)``, which LiteRT's int8
  kernel refuses but a device with asymmetric weights runs.
* 16x8: the ``int16_t`` overload of ``ConvPerChannel`` (``conv_per_channel_16x8``), which LiteRT 2.3
  runs for int16 inputs under every op resolver: int16 activations with zero point 0, int8 per-channel
  weights, an int64 accumulator ``acc = bias[c] + sum w * x`` (no input offset), then the int64
  ``MultiplyByQuantizedMultiplier`` (``arith.fixedpoint.multiply_by_quantized_multiplier_int64``, one
  rounding with a 16-bit multiplier in both rounding builds) and the clamp to the int16 activation
  range. Its Prepare is the int8 one with the int16 activation range.
* float32: ``reference/conv.h``. LiteRT sums each dot product in float32, one term after another, then
  adds the bias in float32 and clamps to the fused activation. Here a dot product is a float64 BLAS
  matmul rounded once to float32 (its result does not depend on how BLAS orders the sum, within
  float64's precision), which is closer to the exact sum than LiteRT's running float32 total: the two
  differ by the accumulated float32 rounding, a few ulp of the sum's magnitude
  (``tests/pipeline/lower/test_float_nodes.py`` measures it).
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from edgeopt.errors import UnsupportedOpError
from edgeopt.qprogram import QOp, QProgram, Rounding
from edgeopt.runtimes.reference.arith.fixedpoint import MAX_OFFSET_PRODUCT, MAX_PRODUCT, Requantizer, requantize_16
from edgeopt.runtimes.reference.arith.im2col import (
    BLOCK_ELEMENTS,
    pad_for_windows,
    samples_per_chunk,
    tile_channels,
    windows,
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

# Sums per matmul: large enough that BLAS (and its threads, when it has several) run at speed.
MATMUL_ELEMENTS = 1 << 20
# The most taps whose sums float32 holds exactly: EXACT_DEPTH * MAX_PRODUCT < 2**24 (and with a weight
# offset, EXACT_OFFSET_DEPTH * MAX_OFFSET_PRODUCT < 2**24).
EXACT_DEPTH = ((1 << 24) - 1) // MAX_PRODUCT
EXACT_OFFSET_DEPTH = ((1 << 24) - 1) // MAX_OFFSET_PRODUCT


@PREPARERS.register("CONV_2D", mode="int8")
def prepare_conv(op: QOp, program: QProgram) -> Params:
    """``conv.cc`` Prepare: ``stride_height``, ``stride_width``, ``dilation_height_factor``,
    ``dilation_width_factor``, ``pad_height``, ``pad_width``, ``output_height``, ``output_width``,
    ``input_offset`` (``-input_zp``), ``output_offset`` (``output_zp``), ``output_multiplier`` and
    ``output_shift`` (int32 per output channel, from ``QuantizeMultiplier(double(s_in) *
    double(s_w[c]) / double(s_out))``), ``activation_min``, ``activation_max``, and ``weights_offset``
    (``-zp_w``) for weights with a non-zero zero point (``prepare.weights_offset``)."""
    in_shape = program.tensor(op.inputs[0]).shape
    co, kh, kw, ci = program.tensor(op.inputs[1]).shape
    if in_shape[3] % ci or co % (in_shape[3] // ci):
        raise UnsupportedOpError(op.kind, op.source, f"{ci}-channel filters do not group {in_shape[3]} inputs")
    multiplier, shift = multipliers(effective_scales(program, op, co), program.rounding)
    return {
        **window(op, in_shape, kh, kw, dilated=True),
        **io_offsets(program, op),
        "output_multiplier": multiplier,
        "output_shift": shift,
        **activation_params(program, op),
        **weights_offset(program, op),
    }


@PREPARERS.register("CONV_2D", mode="16x8")
def prepare_conv_16x8(op: QOp, program: QProgram) -> Params:
    """``conv.cc`` Prepare for int16 input: padding and per-channel multipliers as for int8."""
    check_bias_int64(op, program)
    symmetric_weights(op, program)
    return {**prepare_conv(op, program), **symmetric_16x8(op, program)}


def conv_per_channel(
    x: np.ndarray, w: np.ndarray, bias: np.ndarray, p: Mapping[str, Any], rounding: Rounding
) -> np.ndarray:
    """Int8 convolution with per-output-channel requantization (one group; ``_run_conv_int8`` splits groups).

    ``acc[n, y, x, c] = bias[c] + sum over (i, j, k) inside the image of
    (w[c, i, j, k] + weights_offset) * (in[n, y*sh - ph + i*dh, x*sw - pw + j*dw, k] + input_offset)`` in
    int32, then ``clamp(MultiplyByQuantizedMultiplier(acc, m[c], s[c]) + output_offset, act_min, act_max)``.
    ``weights_offset`` (``-zp_w``) is 0 for TFLite's symmetric int8 weights and absent from ``p``; with
    per-tensor asymmetric weights it is the legacy uint8 ``Conv``'s filter offset, and each product is
    then bounded by ``255 * 255`` instead (parts of at most 258 taps below).

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
    exact_depth = EXACT_DEPTH
    if offset := p.get("weights_offset", 0):
        w_mat += offset  # integers in [-255, 255], exact in float32
        exact_depth = EXACT_OFFSET_DEPTH
    step = math.ceil(depth / math.ceil(depth / exact_depth))  # the fewest parts, of equal sizes
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


@KERNELS.register("CONV_2D", mode="int8")
def _run_conv_int8(op: QOp, args: list[np.ndarray], program: QProgram) -> np.ndarray:
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
        y = requantize_16(acc, multiplier, shift, p["activation_min"], p["activation_max"])
        out[start : start + xs.shape[0]] = y.T.reshape(xs.shape[0], oh, ow, co)
    return out


@KERNELS.register("CONV_2D", mode="16x8")
def _run_conv_16x8(op: QOp, args: list[np.ndarray], program: QProgram) -> np.ndarray:
    x, w = fold_run_axis(args[0]), constant(args[1])
    bias = constant(args[2]) if len(args) > 2 else np.zeros(w.shape[0], np.int64)
    if x.shape[3] != w.shape[3]:
        raise UnsupportedOpError(op.kind, op.source, "grouped convolution has no 16x8 kernel")
    y = conv_per_channel_16x8(x, w, bias, op.params)
    return y.reshape((args[0].shape[0],) + output_shape(op, program))


@KERNELS.register("CONV_2D", mode="float32")
def _run_conv_float32(op: QOp, args: list[np.ndarray], program: QProgram) -> np.ndarray:
    """``out[n, y, x, c] = act(sum_{i, j, k} w[c, i, j, k] * in[n, y*sh - ph + i*dh, x*sw - pw + j*dw, k]
    + bias[c])``, points outside the image skipped; output channel group g reads input channels
    ``[g * Ci, (g + 1) * Ci)`` for filters of Ci channels (a grouped convolution)."""
    x = fold_run_axis(args[0])
    w = constant(args[1]).astype(np.float64)
    co, kh, kw, ci = w.shape
    bias = float_bias(args, 2, co)
    p = window(op, program.tensor(op.inputs[0]).shape, kh, kw, dilated=True)
    dh, dw = p["dilation_height_factor"], p["dilation_width_factor"]
    groups = x.shape[3] // ci
    co_g = co // groups
    out = np.empty((x.shape[0], p["output_height"], p["output_width"], co), F32)
    chunk = samples_per_chunk(p["output_height"] * p["output_width"] * kh * kw * x.shape[3])
    for start in range(0, x.shape[0], chunk):
        xs = x[start : start + chunk].astype(np.float64)
        patches = windows(pad_for_windows(xs, p, kh, kw, dh, dw), p, kh, kw, dh, dw)  # (n, OH, OW, KH, KW, C)
        for g in range(groups):
            cols = patches[..., g * ci : (g + 1) * ci].reshape(-1, kh * kw * ci)
            acc = cols @ w[g * co_g : (g + 1) * co_g].reshape(co_g, -1).T
            out[start : start + xs.shape[0], ..., g * co_g : (g + 1) * co_g] = \
                acc.astype(F32).reshape(xs.shape[0], p["output_height"], p["output_width"], co_g)
    y = fused_activation_float(op, out + bias)
    return y.reshape((args[0].shape[0],) + output_shape(op, program))
