"""MaxPool → MAX_POOL_2D (input and output share one encoding, as TFLite's int8 kernel requires).

ONNX padding maps to TFLite's SAME or VALID where it matches (as ``ops._spatial_padding``); any other
padding becomes an explicit PADV2 with the int8 minimum -128 as the pad value, which can never win a
maximum, so the padded VALID pool equals ONNX's pool that skips padded points.
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


@LOWERINGS.register("MaxPool")
def lower_max_pool(node: Node, ctx: LowerContext) -> None:
    """2-D MaxPool (any padding, ceil_mode when it adds no window) → [PADV2 →] MAX_POOL_2D."""
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
    top, left, bottom, right = resolved_pads(node, (h, w), kernel, strides)
    floor_out = [(size + a + b - k) // s + 1 for size, a, b, k, s in
                 zip((h, w), (top, left), (bottom, right), kernel, strides)]
    if list(ctx.shape(y)[1:3]) != floor_out:
        # ceil_mode added a last window that starts in the padding: TFLite has no such window.
        raise UnsupportedOpError("MaxPool", node.name,
                                 f"ceil_mode output {ctx.shape(y)[1:3]} differs from floor mode {floor_out}")
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
        lowest = ctx.constant(f"{node.name}/pad_value", np.array(q.qmin, q.dtype), q.dtype, q)  # int8 or int16
        ctx.emit("PADV2", [x, ctx.constant(f"{node.name}/paddings", paddings, "int32"), lowest], [padded], node)
        x, padding = padded, "VALID"
    ctx.emit("MAX_POOL_2D", [x], [y], node, padding=padding, stride_h=strides[0], stride_w=strides[1],
             filter_height=kernel[0], filter_width=kernel[1], fused_activation_function="NONE")
