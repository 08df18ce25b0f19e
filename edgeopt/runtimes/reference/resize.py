"""RESIZE_NEAREST_NEIGHBOR and RESIZE_BILINEAR: Prepare and the int8 and float32 kernels, TFLite
``reference/resize_nearest_neighbor.h`` and ``reference/resize_bilinear.h`` (int8: the int8 overload of
``ResizeBilinear``).

Neither int8 kernel rescales: LiteRT's int8 kernels copy or interpolate raw values, so input and output
share one encoding (the quantizer's shared-scale rule). The float32 nearest-neighbour kernel copies
(bit-exact); the float32 bilinear one computes in float32 in the reference's order
(``tests/pipeline/lower/test_float_nodes.py`` allows it an ulp-sized step).
"""
from __future__ import annotations

import numpy as np

from edgeopt.errors import UnsupportedOpError
from edgeopt.qprogram import QOp, QProgram, Rounding
from edgeopt.runtimes.reference.arith.fixedpoint import round_half_away_from_zero
from edgeopt.runtimes.reference.registry import F32, KERNELS, PREPARERS, Params, fold_run_axis, output_shape


def nearest_neighbor_indices(out_size: int, in_size: int, align_corners: bool, half_pixel_centers: bool) -> np.ndarray:
    """TFLite ``GetNearestNeighbor`` for every output index, in float32 as the C++ computes it.

    ``scale = float(in - 1) / float(out - 1)`` (align_corners, ``out > 1``) else ``float(in) /
    float(out)``; ``index = min(round_or_floor((o + offset) * scale), in - 1)`` with ``offset`` 0.5 for
    half-pixel centers (then also ``max(index, 0)``), ``round`` (half away from zero) for align_corners,
    ``floor`` otherwise.
    """
    if align_corners and out_size > 1:
        scale = np.float32(in_size - 1) / np.float32(out_size - 1)
    else:
        scale = np.float32(in_size) / np.float32(out_size)
    offset = np.float32(0.5 if half_pixel_centers else 0.0)
    pos = (np.arange(out_size, dtype=np.float32) + offset) * scale
    if align_corners:
        idx = round_half_away_from_zero(pos.astype(np.float64))  # TfLiteRound; float32 -> 64 is exact
    else:
        idx = np.floor(pos)
    idx = np.minimum(idx.astype(np.int64), in_size - 1)
    return np.maximum(idx, 0) if half_pixel_centers else idx


def resize_nearest_neighbor(x: np.ndarray, out_hw: tuple[int, int], align_corners: bool,
                            half_pixel_centers: bool) -> np.ndarray:
    """``out[n, y, x, c] = in[n, iy(y), ix(x), c]`` with ``nearest_neighbor_indices`` per axis."""
    _, h, w, _ = x.shape
    rows = nearest_neighbor_indices(out_hw[0], h, align_corners, half_pixel_centers)
    cols = nearest_neighbor_indices(out_hw[1], w, align_corners, half_pixel_centers)
    return x[:, rows][:, :, cols]


def bilinear_scale_10(in_size: int, out_size: int, align_corners: bool) -> int:
    """The Q10 step between output samples: ``round((in [- 1]) * 2**10 / (out [- 1]))`` (integer, half up)."""
    if align_corners and out_size > 1:
        return ((1 << 10) * (in_size - 1) + (out_size - 1) // 2) // (out_size - 1)
    return ((1 << 10) * in_size + out_size // 2) // out_size


def bilinear_interpolation_values(out_size: int, in_size: int, align_corners: bool,
                                  half_pixel_centers: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """TFLite's integer ``ComputeInterpolationValues``: Q10 source position, lower and upper index.

    ``pos = o * s10`` (``+ s10 / 2 - 2**9`` for half-pixel centers, C division), ``lower = max(pos /
    2**10, 0)`` and ``upper = min((pos + 2**10 - 1) / 2**10, in - 1)`` with C division (truncating
    towards zero: ``pos`` is negative near the border for half-pixel upsampling).
    """
    s10 = bilinear_scale_10(in_size, out_size, align_corners)
    pos = np.arange(out_size, dtype=np.int64) * s10
    if half_pixel_centers:
        pos += s10 // 2 - (1 << 9)
    lower = np.maximum(_c_div(pos, 1 << 10), 0)
    upper = np.minimum(_c_div(pos + (1 << 10) - 1, 1 << 10), in_size - 1)
    return pos, lower, upper


def _c_div(a: np.ndarray, b: int) -> np.ndarray:
    """C integer division of int64 values by a positive ``b`` (truncating towards zero)."""
    return np.sign(a) * (np.abs(a) // b)


def resize_bilinear(x: np.ndarray, out_hw: tuple[int, int], align_corners: bool, half_pixel_centers: bool,
                    rounding: Rounding) -> np.ndarray:
    """Int8 bilinear interpolation with Q10 weights, as TFLite's int8 ``ResizeBilinear``.

    With ``dy = pos_y - 2**10 * y0`` and ``dx = pos_x - 2**10 * x0`` (Q10 fractions):
    ``acc = in[y0,x0] (2**10 - dy)(2**10 - dx) + in[y1,x0] dy (2**10 - dx) + in[y0,x1] (2**10 - dy) dx +
    in[y1,x1] dy dx`` in int64 (Q20). Double rounding builds compute ``(acc + sign(acc) 2**19) / 2**20``
    (C division: half away from zero); ``TFLITE_SINGLE_ROUNDING`` builds ``(acc + 2**19) >> 20``
    (half up). The result is cast to int8 without clamping: it is a convex combination of int8 values
    (the weights are non-negative or, at a half-pixel border, sum to 2**20 over one repeated point).
    """
    _, h, w, _ = x.shape
    py, y0, y1 = bilinear_interpolation_values(out_hw[0], h, align_corners, half_pixel_centers)
    px, x0, x1 = bilinear_interpolation_values(out_hw[1], w, align_corners, half_pixel_centers)
    dy = (py - (y0 << 10))[:, None, None]
    dx = (px - (x0 << 10))[None, :, None]
    one = 1 << 10
    xi = x.astype(np.int64)
    top, bottom = xi[:, y0], xi[:, y1]
    acc = (top[:, :, x0] * (one - dy) * (one - dx) + bottom[:, :, x0] * dy * (one - dx)
           + top[:, :, x1] * (one - dy) * dx + bottom[:, :, x1] * dy * dx)
    if rounding == "single":
        out = (acc + (1 << 19)) >> 20
    else:
        out = _c_div(acc + np.where(acc > 0, 1 << 19, -(1 << 19)), 1 << 20)
    return out.astype(np.int8)


@PREPARERS.register("RESIZE_NEAREST_NEIGHBOR", "RESIZE_BILINEAR", mode="int8")
def prepare_resize(op: QOp, program: QProgram) -> Params:
    """``resize_*.cc`` Prepare for int8: ``output_height``, ``output_width``, ``align_corners``,
    ``half_pixel_centers``; a 4-D input, a constant size and one shared encoding."""
    x, y = program.tensor(op.inputs[0]), program.tensor(op.outputs[0])
    if len(x.shape) != 4:
        raise UnsupportedOpError(op.kind, op.source, "only 4-D NHWC inputs can be resized")
    if x.qparams is None or y.qparams is None or not x.qparams.same_as(y.qparams):
        raise UnsupportedOpError(op.kind, op.source, "int8 resizing needs the input's encoding on its output")
    align, half = bool(op.options.get("align_corners", False)), bool(op.options.get("half_pixel_centers", False))
    if align and half:
        raise UnsupportedOpError(op.kind, op.source, "align_corners and half_pixel_centers exclude each other")
    size = program.tensor(op.inputs[1]).data
    if size is None or tuple(int(s) for s in size) != y.shape[1:3]:
        raise UnsupportedOpError(op.kind, op.source, "the size input must be a constant matching the output")
    return {"output_height": y.shape[1], "output_width": y.shape[2], "align_corners": align,
            "half_pixel_centers": half}


@KERNELS.register("RESIZE_NEAREST_NEIGHBOR", mode="int8")
def _run_resize_nearest_neighbor_int8(op: QOp, args: list[np.ndarray], program: QProgram) -> np.ndarray:
    p = op.params
    x = args[0].reshape((-1,) + args[0].shape[2:])
    out = resize_nearest_neighbor(x, (p["output_height"], p["output_width"]), p["align_corners"],
                                  p["half_pixel_centers"])
    return out.reshape(args[0].shape[:2] + out.shape[1:])


@KERNELS.register("RESIZE_BILINEAR", mode="int8")
def _run_resize_bilinear_int8(op: QOp, args: list[np.ndarray], program: QProgram) -> np.ndarray:
    p = op.params
    x = args[0].reshape((-1,) + args[0].shape[2:])
    out = resize_bilinear(x, (p["output_height"], p["output_width"]), p["align_corners"],
                          p["half_pixel_centers"], program.rounding)
    return out.reshape(args[0].shape[:2] + out.shape[1:])


def _resize_options(op: QOp, program: QProgram) -> tuple[tuple[int, int], bool, bool]:
    align, half = bool(op.options.get("align_corners", False)), bool(op.options.get("half_pixel_centers", False))
    if align and half:
        raise UnsupportedOpError(op.kind, op.source, "align_corners and half_pixel_centers exclude each other")
    _, oh, ow, _ = output_shape(op, program)
    return (oh, ow), align, half


@KERNELS.register("RESIZE_NEAREST_NEIGHBOR", mode="float32")
def _run_resize_nearest_neighbor_float32(op: QOp, args: list[np.ndarray], program: QProgram) -> np.ndarray:
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


@KERNELS.register("RESIZE_BILINEAR", mode="float32")
def _run_resize_bilinear_float32(op: QOp, args: list[np.ndarray], program: QProgram) -> np.ndarray:
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
