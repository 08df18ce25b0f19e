"""TRANSPOSE_CONV: Prepare and the int8 and float32 kernels (TFLite ``kernels/transpose_conv.cc``).

* int8: ``reference/integer_ops/transpose_conv.h`` ``TransposeConv``, per-channel.
* float32: ``reference/transpose_conv.h``. The reference scatters each input pixel's products into
  float32 outputs; gathered here in the order it adds them, the running sums are bit-exact.

Inputs are TFLite's: ``(output_shape, weights[Co, KH, KW, Ci], input[N, H, W, Ci], bias[Co])``.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from edgeopt.errors import UnsupportedOpError
from edgeopt.qprogram import QOp, QProgram, Rounding
from edgeopt.runtimes.reference.arith.fixedpoint import MAX_PRODUCT, int32_accumulator, requantize
from edgeopt.runtimes.reference.arith.padding import compute_padding_height_width
from edgeopt.runtimes.reference.prepare import calculate_activation_range_quantized, multipliers, qparams_of
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


@PREPARERS.register("TRANSPOSE_CONV", mode="int8")
def prepare_transpose_conv(op: QOp, program: QProgram) -> Params:
    """``transpose_conv.cc`` Prepare/Eval: padding from ``ComputePaddingHeightWidth`` applied to the
    *output* size (stride, dilation 1), per-channel multipliers from ``double(s_in) * double(s_w[c]) /
    double(s_out)`` (``PopulateConvolutionQuantizationParams``), offsets, activation range."""
    co = program.tensor(op.inputs[1]).shape[0]
    geometry = transpose_conv_geometry(op, program)
    x_q, w_q, y_q = (qparams_of(program, name, op) for name in (op.inputs[2], op.inputs[1], op.outputs[0]))
    if np.any(w_q.zero_point != 0) or w_q.scale.size not in (1, co):
        raise UnsupportedOpError(op.kind, op.source, "weights must be symmetric, per-tensor or per output channel")
    w_scale = np.broadcast_to(w_q.scale, (co,)).astype(np.float64)
    scales = np.float64(np.float32(x_q.scale[0])) * w_scale / np.float64(np.float32(y_q.scale[0]))
    multiplier, shift = multipliers(scales, program.rounding)
    act_min, act_max = calculate_activation_range_quantized(
        op.options.get("fused_activation_function", "NONE"), y_q, op)
    return {
        **geometry,
        "input_offset": -int(x_q.zero_point[0]),
        "output_offset": int(y_q.zero_point[0]),
        "output_multiplier": multiplier,
        "output_shift": shift,
        "activation_min": act_min,
        "activation_max": act_max,
    }


def transpose_conv_geometry(op: QOp, program: QProgram) -> dict[str, int]:
    """Strides and the padding ``ComputePaddingHeightWidth`` gives for the *output* size (dilation 1).

    Raises:
        UnsupportedOpError: the weights do not fit the input or output channels.
    """
    out_shape = program.tensor(op.outputs[0]).shape
    co, kh, kw, ci = program.tensor(op.inputs[1]).shape
    in_shape = program.tensor(op.inputs[2]).shape
    if ci != in_shape[3] or out_shape[3] != co:
        raise UnsupportedOpError(op.kind, op.source, f"weights {co}x{kh}x{kw}x{ci} do not fit input {in_shape}")
    sh, sw = int(op.options["stride_h"]), int(op.options["stride_w"])
    win = compute_padding_height_width(op.options["padding"], out_shape[1], out_shape[2], kh, kw, sh, sw)
    return {"stride_height": sh, "stride_width": sw, "pad_height": win.pad_height, "pad_width": win.pad_width}


def transpose_conv(x: np.ndarray, w: np.ndarray, bias: np.ndarray | None, out_hw: tuple[int, int],
                   p: Mapping[str, Any], rounding: Rounding) -> np.ndarray:
    """Int8 transposed convolution with per-output-channel requantization.

    Every input pixel scatters ``(x[n, iy, ix, :] + input_offset) · w[c, i, j, :]`` into the int32
    scratch at ``(iy * sh - pad_h + i, ix * sw - pad_w + j, c)`` when that lies inside the output;
    then ``clamp(MultiplyByQuantizedMultiplier(scratch + bias[c], m[c], s[c]) + output_offset,
    act_min, act_max)``.

    Each tap is one float64 matmul, exact as in ``conv.conv_per_channel``; the scratch sums at most
    ``ceil(KH / sh) * ceil(KW / sw) * Ci`` products, and ``int32_accumulator`` wraps it as the int32
    scratch buffer does when that bound passes 2**31.

    Args:
        x: int8 input (N, H, W, Ci).
        w: int8 filter (Co, KH, KW, Ci).
        bias: int32 bias (Co,) or None.
        out_hw: output height and width (the op's ``output_shape``).
        p: params from ``prepare_transpose_conv``.
        rounding: the rounding of ``MultiplyByQuantizedMultiplier``.

    Returns:
        int8 output (N, OH, OW, Co).
    """
    n, h, wd, ci = x.shape
    co, kh, kw, _ = w.shape
    oh, ow = out_hw
    sh, sw, ph, pw = p["stride_height"], p["stride_width"], p["pad_height"], p["pad_width"]
    # The scratch in "unpadded" coordinates: output row oy sits at oy + ph.
    rows = max((h - 1) * sh + kh, ph + oh)
    cols = max((wd - 1) * sw + kw, pw + ow)
    full = np.zeros((n, rows, cols, co), dtype=np.float64)
    xs = x.astype(np.float64) + p["input_offset"]
    for i in range(kh):
        for j in range(kw):
            full[:, i : i + (h - 1) * sh + 1 : sh, j : j + (wd - 1) * sw + 1 : sw] += xs @ w[:, i, j, :].T.astype(np.float64)
    acc = full[:, ph : ph + oh, pw : pw + ow].astype(np.int64)
    taps = -(-kh // sh) * -(-kw // sw)
    bound = taps * ci * MAX_PRODUCT
    acc = int32_accumulator(acc, bound)
    if bias is not None:
        acc = int32_accumulator(acc + bias.astype(np.int64), bound + int(np.abs(bias).max(initial=0)))
    return requantize(acc, p["output_multiplier"], p["output_shift"], p["output_offset"],
                      p["activation_min"], p["activation_max"], rounding)


@KERNELS.register("TRANSPOSE_CONV", mode="int8")
def _run_transpose_conv_int8(op: QOp, args: list[np.ndarray], program: QProgram) -> np.ndarray:
    x = args[2]
    bias = constant(args[3]) if len(args) > 3 else None
    shape = output_shape(op, program)
    y = transpose_conv(fold_run_axis(x), constant(args[1]), bias, shape[1:3], op.params, program.rounding)
    return y.reshape((x.shape[0],) + shape)


@KERNELS.register("TRANSPOSE_CONV", mode="float32")
def _run_transpose_conv_float32(op: QOp, args: list[np.ndarray], program: QProgram) -> np.ndarray:
    """Inputs ``(output_shape, w[Co, KH, KW, Ci], x, bias)``: ``out[n, oy, ox, c] = act(sum w[c, i, j, k] *
    x[n, iy, ix, k] + bias[c])`` over the pixels and taps with ``iy * sh - pad_h + i = oy`` and
    ``ix * sw - pad_w + j = ox`` (padding of the output size, as the int8 kernel's).

    The reference scatters: input pixel after input pixel (row-major), channel after channel, each product
    is added to the float32 output it lands on; the bias comes last. So each output's running float32 sum
    takes its terms ordered by ``(iy, ix, k)``. Here the sums are gathered in that order: the pixels
    reaching output row ``Y = oy + pad_h`` are ``iy = Y // sh - d`` with tap ``i = Y % sh + d * sh``
    (``d`` = 0, 1, ...), so ascending ``iy`` is descending ``d``; a pixel or tap that does not exist adds
    a zero, which leaves a float32 running sum unchanged. Bit-exact with BUILTIN_REF.
    """
    x = fold_run_axis(args[2]).astype(F32)
    w = constant(args[1]).astype(F32)
    co, kh, kw, ci = w.shape
    shape = output_shape(op, program)
    p = transpose_conv_geometry(op, program)
    taps = [_transposed_taps(out, k, s, pad, size) for out, k, s, pad, size in (
        (shape[1], kh, p["stride_height"], p["pad_height"], x.shape[1]),
        (shape[2], kw, p["stride_width"], p["pad_width"], x.shape[2]))]
    total = np.zeros((x.shape[0], shape[1], shape[2], co), F32)
    for rows, fy, valid_y in taps[0]:
        for cols, fx, valid_x in taps[1]:
            valid = (valid_y[:, None] & valid_x[None, :])[None, :, :, None]
            xs = np.where(valid, x[:, rows][:, :, cols], F32(0))  # (N, OH, OW, Ci)
            ws = np.where(valid[0, ..., None], w[:, fy][:, :, fx].transpose(1, 2, 3, 0), F32(0))  # (OH, OW, Ci, Co)
            for k in range(ci):
                total += xs[..., k : k + 1] * ws[:, :, k]  # one float32 product, one float32 sum
    y = fused_activation_float(op, total + float_bias(args, 3, co))
    return y.reshape((args[2].shape[0],) + shape)


def _transposed_taps(out: int, kernel: int, stride: int, pad: int,
                     size: int) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Along one axis, for ``d`` from the last to 0 (ascending input index): the input index and filter
    tap reaching each of the ``out`` outputs (clipped into range) and whether both exist."""
    at = np.arange(out) + pad
    steps = []
    for d in reversed(range(-(-kernel // stride))):
        index, tap = at // stride - d, at % stride + d * stride
        valid = (index >= 0) & (index < size) & (tap < kernel)
        steps.append((np.clip(index, 0, size - 1), np.minimum(tap, kernel - 1), valid))
    return steps
