"""Softmax → SOFTMAX (int8, output fixed at scale 1/256 and zero point -128 by the quantizer).

TFLite's SOFTMAX normalises over the last axis. When the ONNX axis lands elsewhere in the program's
layout (a 4-D NCHW tensor becomes NHWC), the lowering moves it last with a TRANSPOSE and back after,
as a converter would.
"""
from __future__ import annotations

import numpy as np

from edgeopt.errors import UnsupportedOpError
from edgeopt.ir import Node
from edgeopt.pipeline.lower.context import LOWERINGS, LowerContext, program_perm


def _transpose(node: Node, ctx: LowerContext, x: str, y: str, perm: list[int]) -> None:
    perm_name = ctx.constant(f"{node.name}/perm", np.array(perm, np.int32), "int32")
    ctx.emit("TRANSPOSE", [x, perm_name], [y], node)


@LOWERINGS.register("Softmax")
def lower_softmax(node: Node, ctx: LowerContext) -> None:
    """Softmax (opset 13+, one axis) → SOFTMAX over the program's last axis, beta 1."""
    rank = len(ctx.src_shape(node.inputs[0]))
    if rank == 0:
        raise UnsupportedOpError("Softmax", node.name, "softmax of a scalar is not supported")
    axis = int(node.attrs.get("axis", -1)) % rank
    perm = program_perm(rank) or tuple(range(rank))
    program_axis = perm.index(axis)
    x = ctx.activation(node.inputs[0], node)
    y = ctx.activation(node.outputs[0], node)
    y_q = ctx.tensors[y].qparams
    if program_axis == rank - 1:
        ctx.emit("SOFTMAX", [x], [y], node, beta=1.0)
        return
    to_last = [i for i in range(rank) if i != program_axis] + [program_axis]
    shape = ctx.shape(x)
    moved_shape = tuple(shape[i] for i in to_last)
    moved = ctx.temp(f"{node.name}/axis_last", moved_shape, ctx.tensors[x].qparams)
    _transpose(node, ctx, x, moved, to_last)
    probs = ctx.temp(f"{node.name}/softmax", moved_shape, y_q)
    ctx.emit("SOFTMAX", [moved], [probs], node, beta=1.0)
    _transpose(node, ctx, probs, y, list(np.argsort(to_last)))
