"""TRANSPOSE_CONV, int8 per-channel: TFLite ``reference/integer_ops/transpose_conv.h`` ``TransposeConv``.

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
from edgeopt.runtimes.reference.prepare import (
    PREPARERS,
    Params,
    _multipliers,
    _qparams,
    calculate_activation_range_quantized,
)
from edgeopt.runtimes.reference.registry import KERNELS, constant, fold_run_axis, output_shape


@PREPARERS.register("TRANSPOSE_CONV")
def prepare_transpose_conv(op: QOp, program: QProgram) -> Params:
    """``transpose_conv.cc`` Prepare/Eval: padding from ``ComputePaddingHeightWidth`` applied to the
    *output* size (stride, dilation 1), per-channel multipliers from ``double(s_in) * double(s_w[c]) /
    double(s_out)`` (``PopulateConvolutionQuantizationParams``), offsets, activation range."""
    co = program.tensor(op.inputs[1]).shape[0]
    geometry = transpose_conv_geometry(op, program)
    x_q, w_q, y_q = (_qparams(program, name, op) for name in (op.inputs[2], op.inputs[1], op.outputs[0]))
    if np.any(w_q.zero_point != 0) or w_q.scale.size not in (1, co):
        raise UnsupportedOpError(op.kind, op.source, "weights must be symmetric, per-tensor or per output channel")
    w_scale = np.broadcast_to(w_q.scale, (co,)).astype(np.float64)
    scales = np.float64(np.float32(x_q.scale[0])) * w_scale / np.float64(np.float32(y_q.scale[0]))
    multiplier, shift = _multipliers(scales, program.rounding)
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


@KERNELS.register("TRANSPOSE_CONV")
def _run_transpose_conv(op: QOp, args: list[np.ndarray], program: QProgram) -> np.ndarray:
    x = args[2]
    bias = constant(args[3]) if len(args) > 3 else None
    shape = output_shape(op, program)
    y = transpose_conv(fold_run_axis(x), constant(args[1]), bias, shape[1:3], op.params, program.rounding)
    return y.reshape((x.shape[0],) + shape)
