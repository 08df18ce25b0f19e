"""MaxPool → MAX_POOL_2D (input and output share one encoding, as TFLite's int8 kernel requires).

ONNX padding maps to TFLite's SAME or VALID where it matches (as ``ops._spatial_padding``); any other
padding becomes an explicit PADV2 with the int8 minimum -128 as the pad value (int16's minimum in 16x8,
the float32 minimum in a float island), which can never win a maximum, so the padded VALID pool equals
ONNX's pool that skips padded points. ``ceil_mode`` has no TFLite form: its extra last window becomes
more of that padding on the bottom/right (``ceil_mode_pads``).
"""
from __future__ import annotations

import math

import numpy as np

from edgeopt.errors import UnsupportedOpError
from edgeopt.ir import Node
from edgeopt.pipeline.lower.context import LOWERINGS, LowerContext
from edgeopt.pipeline.lower.ops import same_padding


def resolved_pads(node: Node, size: tuple[int, int], kernel: tuple[int, int], strides: tuple[int, int]) -> list[int]:
    """ONNX pads [top, left, bottom, right] after resolving auto_pad."""
    auto_pad = node.attrs.get("auto_pad", "NOTSET")
    if auto_pad == "VALID":
        return [0, 0, 0, 0]
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        same = [same_padding(s, k, st, 1) for s, k, st in zip(size, kernel, strides)]
        if auto_pad == "SAME_UPPER":
            return [same[0][0], same[1][0], same[0][1], same[1][1]]
        return [same[0][1], same[1][1], same[0][0], same[1][0]]
    return [int(p) for p in node.attrs.get("pads", [0, 0, 0, 0])]


def ceil_mode_pads(node: Node, size: tuple[int, int], kernel: tuple[int, int],
                   strides: tuple[int, int]) -> list[int]:
    """ONNX pads [top, left, bottom, right] under which a floor-mode pool gives the node's output size.

    Without ``ceil_mode`` these are ``resolved_pads``. With it, bottom and right grow by the rows and
    columns the last window reaches past the padded input, with the output size ONNX and PyTorch use:
    ``ceil((size + begin + end - k) / s) + 1``, less one when that last window would start at or past
    ``size + begin`` (entirely in the end padding), which both drop.

    Args:
        node: the MaxPool or AveragePool node.
        size: the input's spatial size (height, width).
        kernel: the window (height, width).
        strides: the strides (height, width).

    Returns:
        The pads [top, left, bottom, right].
    """
    pads = resolved_pads(node, size, kernel, strides)
    if not node.attrs.get("ceil_mode", 0):
        return pads
    for axis, (n, k, s) in enumerate(zip(size, kernel, strides)):
        begin, end = pads[axis], pads[axis + 2]
        out = -(-(n + begin + end - k) // s) + 1
        if (out - 1) * s >= n + begin:
            out -= 1
        pads[axis + 2] = max(end, (out - 1) * s + k - n - begin)
    return pads


@LOWERINGS.register("MaxPool")
def lower_max_pool(node: Node, ctx: LowerContext) -> None:
    """2-D MaxPool (any padding, ceil_mode) → [PADV2 →] MAX_POOL_2D."""
    if len(ctx.src_shape(node.inputs[0])) != 4:
        raise UnsupportedOpError("MaxPool", node.name, "only 2-D max pooling is supported")
    if len(node.outputs) > 1 and node.outputs[1]:
        raise UnsupportedOpError("MaxPool", node.name, "the Indices output has no TFLite int8 equivalent")
    if any(d != 1 for d in node.attrs.get("dilations", (1, 1))):
        raise UnsupportedOpError("MaxPool", node.name, "dilated max pooling has no TFLite equivalent")
    kernel = tuple(int(k) for k in node.attrs["kernel_shape"])
    strides = tuple(int(s) for s in node.attrs.get("strides", (1, 1)))
    x = ctx.activation(node.inputs[0], node)
    y = ctx.activation(node.outputs[0], node)
    n, h, w, c = ctx.shape(x)
    top, left, bottom, right = ceil_mode_pads(node, (h, w), kernel, strides)
    floor_out = [(size + a + b - k) // s + 1 for size, a, b, k, s in
                 zip((h, w), (top, left), (bottom, right), kernel, strides)]
    if list(ctx.shape(y)[1:3]) != floor_out:
        # ONNX's shape inference (1.23) keeps a ceil-mode window that starts in the end padding, which
        # ONNX Runtime and PyTorch drop: the graph's shape is not the one the model computes.
        raise UnsupportedOpError("MaxPool", node.name, f"the graph's output size {list(ctx.shape(y)[1:3])} "
                                 f"counts a ceil_mode window that starts in the end padding; ONNX Runtime "
                                 f"and PyTorch give {floor_out}: change the pool's padding or ceil_mode")
    same = [same_padding(s, k, st, 1) for s, k, st in zip((h, w), kernel, strides)]
    if not any((top, left, bottom, right)):
        padding = "VALID"
    elif [(top, bottom), (left, right)] == same and floor_out == [math.ceil(h / strides[0]),
                                                                   math.ceil(w / strides[1])]:
        padding = "SAME"
    else:
        q = ctx.tensors[x].qparams
        paddings = np.array([[0, 0], [top, bottom], [left, right], [0, 0]], np.int32)
        padded = ctx.temp(f"{node.name}/pad", (n, h + top + bottom, w + left + right, c), q)
        # The lowest value of the encoding: qmin in int8 or int16; in a float island (constants kept
        # float) the float32 minimum, since an island's float input may lie below the encoding's range.
        lowest = ctx.constant(f"{node.name}/pad_value", ctx.quantized(np.array(np.finfo(np.float32).min), q),
                              q.dtype, q)
        ctx.emit("PADV2", [x, ctx.constant(f"{node.name}/paddings", paddings, "int32"), lowest], [padded], node)
        x, padding = padded, "VALID"
    ctx.emit("MAX_POOL_2D", [x], [y], node, padding=padding, stride_h=strides[0], stride_w=strides[1],
             filter_height=kernel[0], filter_width=kernel[1], fused_activation_function="NONE")
