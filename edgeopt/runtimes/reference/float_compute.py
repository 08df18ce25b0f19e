"""Float32 kernels of the weighted ops a float island may hold: CONV_2D (grouped too), DEPTHWISE_CONV_2D,
TRANSPOSE_CONV, FULLY_CONNECTED and BATCH_MATMUL, as LiteRT 2.3's float reference kernels
(``reference/conv.h``, ``reference/depthwiseconv_float.h``, ``reference/transpose_conv.h``,
``reference/fully_connected.h``, ``reference/batch_matmul.h``).

LiteRT sums each dot product in float32, one term after another, then adds the bias in float32 and
clamps to the fused activation. Here a dot product is a float64 BLAS matmul rounded once to float32
(vectorised; its result does not depend on how BLAS orders the sum, within float64's precision), which
is closer to the exact sum than LiteRT's running float32 total: the two differ by the accumulated
float32 rounding, a few ulp of the sum's magnitude (``tests/test_float_nodes.py`` measures it).
TRANSPOSE_CONV's reference scatters each input pixel's products into float32 outputs; gathered here in
the order it adds them, the running sums are bit-exact too.
Depthwise convolutions have few terms per output (``KH * KW``) and are summed here exactly like the
reference: a float32 running total over the filter taps in row-major order, which is bit-exact.
"""
from __future__ import annotations

import numpy as np

from edgeopt.qprogram import QOp, QProgram
from edgeopt.runtimes.reference.float_ops import F32, FLOAT_KERNELS, _fused
from edgeopt.runtimes.reference.arith.im2col import pad_for_windows, samples_per_chunk, window_tap, windows
from edgeopt.runtimes.reference.prepare import _window
from edgeopt.runtimes.reference.registry import constant, fold_run_axis, output_shape
from edgeopt.runtimes.reference.transpose_conv import transpose_conv_geometry


def _bias(args: list[np.ndarray], index: int, channels: int) -> np.ndarray:
    """The float32 bias input, or zeros when it is left out (an empty optional input, which the
    executor does not pass)."""
    return constant(args[index]).astype(F32) if len(args) > index else np.zeros(channels, F32)


@FLOAT_KERNELS.register("CONV_2D")
def _run_conv(op: QOp, args: list[np.ndarray], program: QProgram) -> np.ndarray:
    """``out[n, y, x, c] = act(sum_{i, j, k} w[c, i, j, k] * in[n, y*sh - ph + i*dh, x*sw - pw + j*dw, k]
    + bias[c])``, points outside the image skipped; output channel group g reads input channels
    ``[g * Ci, (g + 1) * Ci)`` for filters of Ci channels (a grouped convolution)."""
    x = fold_run_axis(args[0])
    w = constant(args[1]).astype(np.float64)
    co, kh, kw, ci = w.shape
    bias = _bias(args, 2, co)
    p = _window(op, program.tensor(op.inputs[0]).shape, kh, kw, dilated=True)
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
    y = _fused(op, out + bias)
    return y.reshape((args[0].shape[0],) + output_shape(op, program))


@FLOAT_KERNELS.register("DEPTHWISE_CONV_2D")
def _run_depthwise_conv(op: QOp, args: list[np.ndarray], program: QProgram) -> np.ndarray:
    """Output channel ``c = k * depth_multiplier + m`` reads input channel k: a float32 running sum of
    ``w[0, i, j, c] * in[...]`` over the taps (i, j) inside the image, plus ``bias[c]``, then the
    fused activation."""
    x = fold_run_axis(args[0])
    w = constant(args[1]).astype(F32)
    _, kh, kw, co = w.shape
    bias = _bias(args, 2, co)
    p = _window(op, program.tensor(op.inputs[0]).shape, kh, kw, dilated=True)
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
    y = _fused(op, out)
    return y.reshape((args[0].shape[0],) + output_shape(op, program))


@FLOAT_KERNELS.register("TRANSPOSE_CONV")
def _run_transpose_conv(op: QOp, args: list[np.ndarray], program: QProgram) -> np.ndarray:
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
    y = _fused(op, total + _bias(args, 3, co))
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


@FLOAT_KERNELS.register("FULLY_CONNECTED")
def _run_fully_connected(op: QOp, args: list[np.ndarray], program: QProgram) -> np.ndarray:
    """``out[b, c] = act(sum_d w[c, d] * in[b, d] + bias[c])`` over the input's last axis."""
    w = constant(args[1]).astype(np.float64)
    bias = _bias(args, 2, w.shape[0])
    acc = (args[0].reshape(-1, w.shape[1]).astype(np.float64) @ w.T).astype(F32)
    y = _fused(op, acc + bias)
    return y.reshape((args[0].shape[0],) + output_shape(op, program))


@FLOAT_KERNELS.register("BATCH_MATMUL")
def _run_batch_matmul(op: QOp, args: list[np.ndarray], program: QProgram) -> np.ndarray:
    """``out[..., m, n] = sum_k a[..., m, k] * b[..., k, n]`` (``adj_x``/``adj_y`` transpose an operand)."""
    a, b = (np.asarray(v, np.float64) for v in args[:2])
    if op.options.get("adj_x", False):
        a = np.swapaxes(a, -1, -2)
    if op.options.get("adj_y", False):
        b = np.swapaxes(b, -1, -2)
    y = (a @ b).astype(F32)
    return y.reshape((args[0].shape[0],) + output_shape(op, program))
