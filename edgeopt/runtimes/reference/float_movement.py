"""Float32 kernels of pooling and data movement in a float island: AVERAGE_POOL_2D, MAX_POOL_2D,
CONCATENATION, PAD, PADV2, MIRROR_PAD, RESHAPE, TRANSPOSE, STRIDED_SLICE, SPLIT, SPLIT_V,
RESIZE_NEAREST_NEIGHBOR and RESIZE_BILINEAR, as LiteRT 2.3's float reference kernels.

Data movement copies values whatever their type, so RESHAPE, TRANSPOSE, STRIDED_SLICE, SPLIT and SPLIT_V
reuse the integer kernels (which take no parameters); the others read their options here because a
float op has no integer Prepare (``prepare_program`` leaves its params empty). Every kernel here is
bit-exact with the reference but AVERAGE_POOL_2D and RESIZE_BILINEAR, which compute in float32 in the
reference's order and are expected to be (``tests/test_float_nodes.py`` checks them with a tolerance
of one ulp-sized step).
"""
from __future__ import annotations

import numpy as np

from edgeopt.errors import UnsupportedOpError
from edgeopt.qprogram import QOp, QProgram
from edgeopt.runtimes.reference.float_ops import F32, FLOAT_KERNELS, _fused
from edgeopt.runtimes.reference.arith.im2col import pad_for_windows, window_tap
from edgeopt.runtimes.reference.pad_variants import mirror_pad
from edgeopt.runtimes.reference.prepare import _window
from edgeopt.runtimes.reference import reshape, split, strided_slice, transpose
from edgeopt.runtimes.reference.registry import constant, fold_run_axis, output_shape
from edgeopt.runtimes.reference.resize import resize_nearest_neighbor

FLOAT_KERNELS.register("RESHAPE")(reshape._run_reshape)
FLOAT_KERNELS.register("TRANSPOSE")(transpose._run_transpose)
FLOAT_KERNELS.register("STRIDED_SLICE")(strided_slice._run_strided_slice)
FLOAT_KERNELS.register("SPLIT")(split._run_split)
FLOAT_KERNELS.register("SPLIT_V")(split._run_split_v)


def _pool_window(op: QOp, program: QProgram) -> tuple[dict, int, int]:
    fh, fw = int(op.options["filter_height"]), int(op.options["filter_width"])
    return _window(op, program.tensor(op.inputs[0]).shape, fh, fw, dilated=False), fh, fw


@FLOAT_KERNELS.register("AVERAGE_POOL_2D")
def _run_average_pool(op: QOp, args: list[np.ndarray], program: QProgram) -> np.ndarray:
    """A float32 running sum over the window's points inside the image (row-major), divided by their count."""
    x = fold_run_axis(args[0]).astype(F32)
    p, fh, fw = _pool_window(op, program)
    ones = pad_for_windows(np.ones((1,) + x.shape[1:3] + (1,), F32), p, fh, fw, 1, 1)
    count = sum(window_tap(ones, p, i, j, 1, 1) for i in range(fh) for j in range(fw))
    xp = pad_for_windows(x, p, fh, fw, 1, 1)
    total = np.zeros((x.shape[0], p["output_height"], p["output_width"], x.shape[3]), F32)
    for i in range(fh):
        for j in range(fw):
            total = total + window_tap(xp, p, i, j, 1, 1)
    y = _fused(op, total / count.astype(F32))
    return y.reshape((args[0].shape[0],) + output_shape(op, program))


@FLOAT_KERNELS.register("MAX_POOL_2D")
def _run_max_pool(op: QOp, args: list[np.ndarray], program: QProgram) -> np.ndarray:
    """The maximum over the window's points inside the image (padding with -inf never wins)."""
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
    return _fused(op, out).reshape((args[0].shape[0],) + output_shape(op, program))


@FLOAT_KERNELS.register("CONCATENATION")
def _run_concatenation(op: QOp, args: list[np.ndarray], program: QProgram) -> np.ndarray:
    rank = len(output_shape(op, program))
    axis = int(op.options["axis"]) % rank
    n = max(a.shape[0] for a in args)  # constant inputs carry a run axis of 1
    y = np.concatenate([np.broadcast_to(a, (n,) + a.shape[1:]) for a in args], axis=axis + 1)
    return _fused(op, y.astype(F32))


def _paddings(args: list[np.ndarray]) -> list[tuple[int, int]]:
    return [(0, 0)] + [(int(a), int(b)) for a, b in constant(args[1])]


@FLOAT_KERNELS.register("PAD")
def _run_pad(op: QOp, args: list[np.ndarray], program: QProgram) -> np.ndarray:
    """Float PAD pads with 0."""
    return np.pad(args[0], _paddings(args), constant_values=F32(0.0))


@FLOAT_KERNELS.register("PADV2")
def _run_pad_v2(op: QOp, args: list[np.ndarray], program: QProgram) -> np.ndarray:
    """PADV2 pads with its scalar third input."""
    return np.pad(args[0], _paddings(args), constant_values=F32(np.ravel(constant(args[2]))[0]))


@FLOAT_KERNELS.register("MIRROR_PAD")
def _run_mirror_pad(op: QOp, args: list[np.ndarray], program: QProgram) -> np.ndarray:
    return mirror_pad(args[0], np.array(_paddings(args)), op.options["mode"])


def _resize_options(op: QOp, program: QProgram) -> tuple[tuple[int, int], bool, bool]:
    align, half = bool(op.options.get("align_corners", False)), bool(op.options.get("half_pixel_centers", False))
    if align and half:
        raise UnsupportedOpError(op.kind, op.source, "align_corners and half_pixel_centers exclude each other")
    _, oh, ow, _ = output_shape(op, program)
    return (oh, ow), align, half


@FLOAT_KERNELS.register("RESIZE_NEAREST_NEIGHBOR")
def _run_resize_nearest_neighbor(op: QOp, args: list[np.ndarray], program: QProgram) -> np.ndarray:
    out_hw, align, half = _resize_options(op, program)
    y = resize_nearest_neighbor(fold_run_axis(args[0]), out_hw, align, half)
    return y.reshape((args[0].shape[0],) + output_shape(op, program))


def _interpolation(out_size: int, in_size: int, align: bool, half: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``ComputeInterpolationValues`` (float): the source position, its lower and upper neighbours."""
    scale = F32(in_size - 1) / F32(out_size - 1) if align and out_size > 1 else F32(in_size) / F32(out_size)
    pos = np.arange(out_size, dtype=F32)
    value = (pos + F32(0.5)) * scale - F32(0.5) if half else pos * scale
    lower = np.maximum(np.floor(value).astype(np.int64), 0)
    upper = np.minimum(np.ceil(value).astype(np.int64), in_size - 1)
    return value, lower, upper


@FLOAT_KERNELS.register("RESIZE_BILINEAR")
def _run_resize_bilinear(op: QOp, args: list[np.ndarray], program: QProgram) -> np.ndarray:
    """``reference_ops::ResizeBilinear`` (float): the four neighbours weighted by the source position's
    distance to the lower (clamped) neighbour, summed in the reference's order in float32."""
    (oh, ow), align, half = _resize_options(op, program)
    x = fold_run_axis(args[0]).astype(F32)
    vy, y0, y1 = _interpolation(oh, x.shape[1], align, half)
    vx, x0, x1 = _interpolation(ow, x.shape[2], align, half)
    dy = (vy - y0.astype(F32))[:, None, None]
    dx = (vx - x0.astype(F32))[None, :, None]
    one = F32(1.0)
    top, bottom = x[:, y0], x[:, y1]
    y = (top[:, :, x0] * (one - dy) * (one - dx) + bottom[:, :, x0] * dy * (one - dx)
         + top[:, :, x1] * (one - dy) * dx + bottom[:, :, x1] * dy * dx)
    return y.astype(F32).reshape((args[0].shape[0],) + output_shape(op, program))
