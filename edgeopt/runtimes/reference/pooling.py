"""AVERAGE_POOL_2D and MAX_POOL_2D: Prepare and the int8, 16x8 and float32 kernels (TFLite
``kernels/pooling.cc``).

* int8 and 16x8: ``reference/integer_ops/pooling.h`` ``AveragePool`` and ``MaxPool`` (their ``int8_t``
  and ``int16_t`` overloads: one arithmetic on either dtype, so one kernel serves both modes). Neither
  rescales: input and output share one encoding.
* float32: ``reference/pooling.h``.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from edgeopt.errors import InternalError, UnsupportedOpError
from edgeopt.qprogram import QOp, QProgram
from edgeopt.runtimes.reference.arith.im2col import pad_for_windows, samples_per_chunk, window_tap
from edgeopt.runtimes.reference.prepare import activation_params, symmetric_16x8, window
from edgeopt.runtimes.reference.registry import (
    F32,
    KERNELS,
    PREPARERS,
    Params,
    fold_run_axis,
    fused_activation_float,
    output_shape,
)


@PREPARERS.register("AVERAGE_POOL_2D", mode="int8")
def prepare_average_pool(op: QOp, program: QProgram) -> Params:
    """``pooling.cc`` Prepare: ``stride_height``, ``stride_width``, ``filter_height``, ``filter_width``,
    ``pad_height``, ``pad_width``, ``output_height``, ``output_width``, ``activation_min``,
    ``activation_max``; the kernel never rescales, so LiteRT expects (and only DCHECKs) equal input and
    output quantization."""
    in_shape = program.tensor(op.inputs[0]).shape
    fh, fw = int(op.options["filter_height"]), int(op.options["filter_width"])
    return {
        **window(op, in_shape, fh, fw, dilated=False),
        "filter_height": fh,
        "filter_width": fw,
        **activation_params(program, op),
    }


@PREPARERS.register("AVERAGE_POOL_2D", mode="16x8")
def prepare_average_pool_16x8(op: QOp, program: QProgram) -> Params:
    """``pooling.cc`` Prepare for int16: padding as for int8, the int16 activation range."""
    return {**prepare_average_pool(op, program), **symmetric_16x8(op, program)}


def average_pool(x: np.ndarray, p: Mapping[str, Any]) -> np.ndarray:
    """Int8 (or int16) average over the part of each window inside the image, without rescaling.

    ``acc`` = sum of the raw values in the window's valid part, ``n`` = their count;
    ``avg = (acc + n/2) / n`` if ``acc > 0`` else ``(acc - n/2) / n`` (C integer division, truncating
    towards zero: a rounding half away from zero), then ``clamp(avg, act_min, act_max)``. LiteRT
    expects the input and output quantization to be equal and does not rescale.

    Args:
        x: int8 or int16 input (N, H, W, C).
        p: the op's params from ``prepare_average_pool`` (or ``prepare_average_pool_16x8``).

    Returns:
        output (N, OH, OW, C) of ``x``'s dtype.
    """
    n, h, w, c = x.shape
    fh, fw = p["filter_height"], p["filter_width"]
    oh, ow = p["output_height"], p["output_width"]
    # |acc| <= |lowest| * fh * fw (2**7 or 2**15 times the window size): exact in int32, the faster,
    # while that bound is below 2**31 (int8: any window under 2**24 points; int16: under 2**16), else int64.
    acc_dtype = np.int32 if -int(np.iinfo(x.dtype).min) * fh * fw < 1 << 31 else np.int64
    ones = pad_for_windows(np.ones((1, h, w, 1), dtype=acc_dtype), p, fh, fw, 1, 1)
    count = sum(window_tap(ones, p, i, j, 1, 1) for i in range(fh) for j in range(fw))
    if np.any(count == 0):
        raise InternalError("AVERAGE_POOL_2D has a window entirely outside its input")
    half = count // 2
    out = np.empty((n, oh, ow, c), dtype=x.dtype)
    chunk = samples_per_chunk(oh * ow * c * np.dtype(acc_dtype).itemsize // 2)
    for start in range(0, n, chunk):
        xp = pad_for_windows(x[start : start + chunk].astype(acc_dtype), p, fh, fw, 1, 1)
        acc = sum(window_tap(xp, p, i, j, 1, 1) for i in range(fh) for j in range(fw))
        avg = np.where(acc > 0, (acc + half) // count, -((half - acc) // count))
        out[start : start + xp.shape[0]] = np.clip(avg, p["activation_min"], p["activation_max"])
    return out


@KERNELS.register("AVERAGE_POOL_2D", mode=("int8", "16x8"))
def _run_average_pool(op: QOp, args: list[np.ndarray], program: QProgram) -> np.ndarray:
    x = args[0]
    return average_pool(fold_run_axis(x), op.params).reshape((x.shape[0],) + output_shape(op, program))


@PREPARERS.register("MAX_POOL_2D", mode="int8")
def prepare_max_pool(op: QOp, program: QProgram) -> Params:
    """``pooling.cc`` Prepare: padding, activation range; int8 input and output share one encoding."""
    x, y = program.tensor(op.inputs[0]), program.tensor(op.outputs[0])
    if x.qparams is None or y.qparams is None or not x.qparams.same_as(y.qparams):
        raise UnsupportedOpError(op.kind, op.source, "int8 max pooling needs the input's encoding on its output")
    fh, fw = int(op.options["filter_height"]), int(op.options["filter_width"])
    return {
        **window(op, x.shape, fh, fw, dilated=False),
        "filter_height": fh,
        "filter_width": fw,
        **activation_params(program, op),
    }


@PREPARERS.register("MAX_POOL_2D", mode="16x8")
def prepare_max_pool_16x8(op: QOp, program: QProgram) -> Params:
    """``pooling.cc`` Prepare for int16: the int8 window and shared encoding, the int16 activation range."""
    return {**prepare_max_pool(op, program), **symmetric_16x8(op, program)}


def max_pool(x: np.ndarray, p: Mapping[str, Any]) -> np.ndarray:
    """Int8 maximum over the part of each window inside the image, then ``clamp(max, act_min, act_max)``.

    The reference kernel starts each window at ``numeric_limits<int8_t>::lowest()`` and skips points
    outside the image; padding with -128 gives the same maximum, as every window holds at least one
    point of the image (TFLite's SAME and VALID padding never make an empty window).

    Args:
        x: int8 (or int16) input (N, H, W, C).
        p: the op's params from ``prepare_max_pool``.

    Returns:
        output (N, OH, OW, C) of ``x``'s dtype.
    """
    n, h, w, c = x.shape
    lowest = np.iinfo(x.dtype).min  # int8, or int16 in 16x8 mode
    fh, fw = p["filter_height"], p["filter_width"]
    oh, ow, sh, sw = p["output_height"], p["output_width"], p["stride_height"], p["stride_width"]
    top, left = p["pad_height"], p["pad_width"]
    rows, cols = max((oh - 1) * sh + fh, top + h), max((ow - 1) * sw + fw, left + w)
    xp = np.full((n, rows, cols, c), lowest, dtype=x.dtype)
    xp[:, top : top + h, left : left + w] = x
    out = np.full((n, oh, ow, c), lowest, dtype=x.dtype)
    for i in range(fh):
        for j in range(fw):
            np.maximum(out, xp[:, i : i + (oh - 1) * sh + 1 : sh, j : j + (ow - 1) * sw + 1 : sw], out=out)
    return np.clip(out, p["activation_min"], p["activation_max"]).astype(x.dtype)


@KERNELS.register("MAX_POOL_2D", mode=("int8", "16x8"))  # starts from the dtype's lowest value
def _run_max_pool(op: QOp, args: list[np.ndarray], program: QProgram) -> np.ndarray:
    x = args[0]
    return max_pool(fold_run_axis(x), op.params).reshape((x.shape[0],) + output_shape(op, program))


def _pool_window(op: QOp, program: QProgram) -> tuple[dict, int, int]:
    fh, fw = int(op.options["filter_height"]), int(op.options["filter_width"])
    return window(op, program.tensor(op.inputs[0]).shape, fh, fw, dilated=False), fh, fw


@KERNELS.register("AVERAGE_POOL_2D", mode="float32")
def _run_average_pool_float32(op: QOp, args: list[np.ndarray], program: QProgram) -> np.ndarray:
    """A float32 running sum over the window's points inside the image (row-major), divided by their
    count, in the reference's order (``tests/pipeline/lower/test_float_nodes.py`` allows it an ulp-sized step)."""
    x = fold_run_axis(args[0]).astype(F32)
    p, fh, fw = _pool_window(op, program)
    ones = pad_for_windows(np.ones((1,) + x.shape[1:3] + (1,), F32), p, fh, fw, 1, 1)
    count = sum(window_tap(ones, p, i, j, 1, 1) for i in range(fh) for j in range(fw))
    xp = pad_for_windows(x, p, fh, fw, 1, 1)
    total = np.zeros((x.shape[0], p["output_height"], p["output_width"], x.shape[3]), F32)
    for i in range(fh):
        for j in range(fw):
            total = total + window_tap(xp, p, i, j, 1, 1)
    y = fused_activation_float(op, total / count.astype(F32))
    return y.reshape((args[0].shape[0],) + output_shape(op, program))


@KERNELS.register("MAX_POOL_2D", mode="float32")
def _run_max_pool_float32(op: QOp, args: list[np.ndarray], program: QProgram) -> np.ndarray:
    """The maximum over the window's points inside the image (padding with -inf never wins): bit-exact."""
    x = fold_run_axis(args[0]).astype(F32)
    p, fh, fw = _pool_window(op, program)
    n, h, w, c = x.shape
    top, left = p["pad_height"], p["pad_width"]
    rows = max((p["output_height"] - 1) * p["stride_height"] + fh, top + h)
    cols = max((p["output_width"] - 1) * p["stride_width"] + fw, left + w)
    xp = np.full((n, rows, cols, c), -np.inf, F32)
    xp[:, top : top + h, left : left + w] = x
    out = np.full((n, p["output_height"], p["output_width"], c), -np.inf, F32)
    for i in range(fh):
        for j in range(fw):
            np.maximum(out, window_tap(xp, p, i, j, 1, 1), out=out)
    return fused_activation_float(op, out).reshape((args[0].shape[0],) + output_shape(op, program))
