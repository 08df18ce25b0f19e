"""Resize (nearest, linear) → RESIZE_NEAREST_NEIGHBOR / RESIZE_BILINEAR on NHWC.

TFLite's resizes know two flags, ``align_corners`` and ``half_pixel_centers``; ONNX knows a
``coordinate_transformation_mode`` (and, for nearest, a ``nearest_mode``). Mapping:

* linear: ``asymmetric`` → neither flag, ``align_corners`` → align_corners, ``half_pixel`` →
  half_pixel_centers, ``pytorch_half_pixel`` → half_pixel_centers when no output axis has length 1
  (where PyTorch's mode samples index 0 and TFLite the centre). asymmetric and the half-pixel modes
  also need ONNX's scale to be exactly ``out / in`` (TFLite always uses ``in / out``).
* nearest: the source index ONNX picks for every output row and column is computed for the actual
  sizes and compared with each TFLite flag combination's (``GetNearestNeighbor``); the first that
  agrees everywhere is used. E.g. ``asymmetric`` + ``floor`` (PyTorch's ``nearest``) → no flag,
  ``half_pixel`` + ``round_prefer_ceil`` → half_pixel_centers, ``align_corners`` +
  ``round_prefer_ceil`` → align_corners.

Anything else (cubic, antialias, ``tf_crop_and_resize``, resizing N or C, or index maps TFLite cannot
produce) raises UnsupportedOpError naming the node and the reason.
"""
from __future__ import annotations

import math

import numpy as np

from edgeopt.errors import UnsupportedOpError
from edgeopt.ir import Node
from edgeopt.pipeline.lower.context import LOWERINGS, LowerContext
from edgeopt.runtimes.reference.resize import nearest_neighbor_indices

TFLITE_FLAGS = ((False, False), (True, False), (False, True))  # (align_corners, half_pixel_centers)
LINEAR_MODES = {"asymmetric": (False, False), "align_corners": (True, False), "half_pixel": (False, True),
                "pytorch_half_pixel": (False, True)}


def onnx_source_coordinate(mode: str, out_size: int, in_size: int, scale: float) -> np.ndarray:
    """ONNX Resize's ``x_original`` for every output index (float64), or raise KeyError for other modes."""
    x = np.arange(out_size, dtype=np.float64)
    if mode == "asymmetric":
        return x / scale
    if mode == "half_pixel":
        return (x + 0.5) / scale - 0.5
    if mode == "pytorch_half_pixel":
        return (x + 0.5) / scale - 0.5 if out_size > 1 else np.zeros(1)
    if mode == "align_corners":
        return x * (in_size - 1) / (out_size - 1) if out_size > 1 else np.zeros(1)
    if mode == "tf_half_pixel_for_nn":
        return (x + 0.5) / scale
    raise KeyError(mode)


def onnx_nearest_indices(mode: str, nearest_mode: str, out_size: int, in_size: int, scale: float) -> np.ndarray:
    """The input index ONNX's nearest Resize reads for each output index (clamped into the input)."""
    pos = onnx_source_coordinate(mode, out_size, in_size, scale)
    frac = pos - np.floor(pos)
    rounders = {
        "round_prefer_floor": lambda p: np.where(frac == 0.5, np.floor(p), np.floor(p + 0.5)),
        "round_prefer_ceil": lambda p: np.where(frac == 0.5, np.ceil(p), np.floor(p + 0.5)),
        "floor": np.floor,
        "ceil": np.ceil,
    }
    if nearest_mode not in rounders:
        raise KeyError(nearest_mode)
    return np.clip(rounders[nearest_mode](pos), 0, in_size - 1).astype(np.int64)


def _scales(node: Node, ctx: LowerContext, in_shape: tuple[int, ...], out_shape: tuple[int, ...]) -> list[float]:
    """ONNX's per-axis scales: the ``scales`` input when given, else ``out / in`` (sizes given)."""
    scales_name = node.inputs[2] if len(node.inputs) > 2 else ""
    if scales_name and ctx.is_const(scales_name) and ctx.const(scales_name).size:
        scales = [float(s) for s in ctx.const(scales_name)]
        if len(scales) == len(in_shape):
            return scales
    return [o / i for o, i in zip(out_shape, in_shape)]


def _reject(node: Node, why: str) -> UnsupportedOpError:
    return UnsupportedOpError("Resize", node.name, why)


def _flags(node: Node, ctx: LowerContext, in_shape: tuple[int, ...], out_shape: tuple[int, ...]) -> tuple[bool, bool]:
    mode = node.attrs.get("mode", "nearest")
    coord = node.attrs.get("coordinate_transformation_mode", "half_pixel")
    if mode not in ("nearest", "linear"):
        raise _reject(node, f"mode '{mode}' has no TFLite int8 resize (nearest and linear do)")
    if node.attrs.get("antialias", 0):
        raise _reject(node, "antialiased resizing has no TFLite equivalent")
    if node.attrs.get("axes") is not None or node.attrs.get("keep_aspect_ratio_policy", "stretch") != "stretch":
        raise _reject(node, "only Resize without axes and with keep_aspect_ratio_policy 'stretch' is supported")
    scales = _scales(node, ctx, in_shape, out_shape)
    sizes = list(zip(out_shape[2:], in_shape[2:], scales[2:]))
    if mode == "linear":
        if coord not in LINEAR_MODES:
            raise _reject(node, f"linear resizing with coordinate_transformation_mode '{coord}' has no TFLite "
                                f"equivalent (supported: {', '.join(LINEAR_MODES)})")
        if coord != "align_corners" and any(not math.isclose(s, o / i, rel_tol=1e-6) for o, i, s in sizes):
            raise _reject(node, f"scales {scales[2:]} differ from output/input sizes; TFLite scales by in/out")
        if coord == "pytorch_half_pixel" and any(o == 1 < i for o, i, _ in sizes):
            raise _reject(node, "pytorch_half_pixel to an axis of length 1 samples index 0; TFLite samples the centre")
        return LINEAR_MODES[coord]
    nearest_mode = node.attrs.get("nearest_mode", "round_prefer_floor")
    try:
        wanted = [onnx_nearest_indices(coord, nearest_mode, o, i, s) for o, i, s in sizes]
    except KeyError as err:
        raise _reject(node, f"nearest resizing with '{err.args[0]}' is not supported") from None
    for align, half in TFLITE_FLAGS:
        got = [nearest_neighbor_indices(o, i, align, half) for o, i, _ in sizes]
        if all(np.array_equal(g, w) for g, w in zip(got, wanted)):
            return align, half
    raise _reject(node, f"nearest resizing with coordinate_transformation_mode '{coord}' and nearest_mode "
                        f"'{nearest_mode}' picks source pixels no TFLite flag combination picks for these sizes")


@LOWERINGS.register("Resize")
def lower_resize(node: Node, ctx: LowerContext) -> None:
    """Resize of H and W of an NCHW tensor → RESIZE_NEAREST_NEIGHBOR or RESIZE_BILINEAR (shared encoding)."""
    in_shape, out_shape = ctx.src_shape(node.inputs[0]), ctx.src_shape(node.outputs[0])
    if len(in_shape) != 4 or in_shape[:2] != out_shape[:2]:
        raise _reject(node, "only resizing H and W of a 4-D NCHW tensor is supported")
    align, half = _flags(node, ctx, in_shape, out_shape)
    x, y = ctx.activation(node.inputs[0], node), ctx.activation(node.outputs[0], node)
    size = ctx.constant(f"{node.name}/size", np.array(out_shape[2:], np.int32), "int32")
    kind = "RESIZE_BILINEAR" if node.attrs.get("mode", "nearest") == "linear" else "RESIZE_NEAREST_NEIGHBOR"
    ctx.emit(kind, [x, size], [y], node, align_corners=align, half_pixel_centers=half)
