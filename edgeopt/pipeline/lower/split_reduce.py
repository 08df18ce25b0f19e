"""Split → SPLIT (equal pieces) or SPLIT_V; ReduceMean over axes other than H and W → MEAN; ReduceMax →
REDUCE_MAX.

All work on program layouts: a 4-D source tensor is NHWC in the program, so source axes are mapped
with ``movement.program_axis``. Split and ReduceMax copy bytes, so their outputs share the input's
encoding (``quantize.spec.SHARED_SCALE_OPS``), which TFLite's SPLIT/SPLIT_V and REDUCE_MAX kernels
assume (they never requantize).
"""
from __future__ import annotations

import numpy as np

from edgeopt.errors import UnsupportedOpError
from edgeopt.ir import Node
from edgeopt.pipeline.lower.context import LOWERINGS, LowerContext, program_perm
from edgeopt.pipeline.lower.gather import NCHW_FROM_NHWC, transposed
from edgeopt.pipeline.lower.movement import program_axis


def split_sizes(node: Node, ctx: LowerContext, size: int) -> list[int]:
    """The ONNX Split piece sizes: the ``split`` input (opset 13+) or attribute (older), else
    ``num_outputs`` (opset 18) or the output count: pieces of ``ceil(size / n)``, the last one smaller."""
    if len(node.inputs) > 1 and node.inputs[1]:
        if not ctx.is_const(node.inputs[1]):
            raise UnsupportedOpError("Split", node.name, "split sizes computed at run time are not supported")
        return [int(s) for s in ctx.const(node.inputs[1]).reshape(-1)]
    if "split" in node.attrs:
        return [int(s) for s in node.attrs["split"]]
    n = int(node.attrs.get("num_outputs", len(node.outputs)))
    piece = -(-size // n)
    return [min(piece, size - i * piece) for i in range(n)]


@LOWERINGS.register("Split")
def lower_split(node: Node, ctx: LowerContext) -> None:
    """Split → SPLIT (inputs: axis, x) when every piece has the same size, else SPLIT_V (inputs: x,
    size_splits, axis), as TensorFlow's converter writes them."""
    shape = ctx.src_shape(node.inputs[0])
    rank = len(shape)
    axis = int(node.attrs.get("axis", 0)) % rank
    sizes = split_sizes(node, ctx, shape[axis])
    if len(sizes) != len(node.outputs) or sum(sizes) != shape[axis] or min(sizes) < 1:
        raise UnsupportedOpError("Split", node.name, f"pieces {sizes} of an axis of {shape[axis]} into "
                                 f"{len(node.outputs)} outputs (TFLite needs non-empty pieces covering the axis)")
    x = ctx.activation(node.inputs[0], node)
    outs = [ctx.activation(t, node) for t in node.outputs]
    p_axis = ctx.constant(f"{node.name}/axis", np.array(program_axis(axis, rank), np.int32), "int32")
    if len(set(sizes)) == 1:
        ctx.emit("SPLIT", [p_axis, x], outs, node, num_splits=len(sizes))
    else:
        size_splits = ctx.constant(f"{node.name}/size_splits", np.array(sizes, np.int32), "int32")
        ctx.emit("SPLIT_V", [x, size_splits, p_axis], outs, node, num_splits=len(sizes))


def lower_mean(node: Node, ctx: LowerContext, axes: list[int], kind: str = "MEAN") -> None:
    """ReduceMean (or ReduceMax) over ``axes`` → MEAN (or ``kind``, REDUCE_MAX) on the program layout,
    ``keep_dims`` as ``keepdims``.

    A keepdims=0 reduction of a 4-D tensor leaves a lower-rank source tensor, whose program layout is the
    source order: when the kept axes are in another order in NHWC (C kept with H or W, e.g. ``x.amax(3)``),
    the op keeps dims, a TRANSPOSE puts them in NCHW order and a RESHAPE drops the reduced ones (all three
    on the output's encoding).
    """
    shape = ctx.src_shape(node.inputs[0])
    rank = len(shape)
    axes = sorted({int(a) % rank for a in axes})
    keep = bool(node.attrs.get("keepdims", 1))
    x = ctx.activation(node.inputs[0], node)
    y = ctx.activation(node.outputs[0], node)
    perm = program_perm(rank)
    if not perm and program_perm(len(ctx.src_shape(node.outputs[0]))):
        raise UnsupportedOpError(node.op, node.name, f"a rank-{rank} reduction with a 4-D result is not supported")
    p_axes = sorted(program_axis(a, rank) for a in axes)
    axis = ctx.constant(f"{node.name}/axis", np.array(p_axes, np.int32), "int32")
    kept_program = [perm[i] for i in range(rank) if i not in p_axes] if perm and not keep else []
    if kept_program == sorted(kept_program):
        ctx.emit(kind, [x, axis], [y], node, keep_dims=keep)
        return
    kept = tuple(1 if i in p_axes else d for i, d in enumerate(ctx.shape(x)))
    reduced = ctx.temp_like(f"{node.name}/kept", kept, y)
    ctx.emit(kind, [x, axis], [reduced], node, keep_dims=True)
    nchw = transposed(node, ctx, reduced, tuple(kept[p] for p in NCHW_FROM_NHWC), NCHW_FROM_NHWC)
    shape = np.array(ctx.shape(y), np.int32)
    ctx.emit("RESHAPE", [nchw, ctx.constant(f"{node.name}/shape", shape, "int32")], [y], node,
             new_shape=shape.tolist())


@LOWERINGS.register("ReduceMax")
def lower_reduce_max(node: Node, ctx: LowerContext) -> None:
    """ReduceMax → REDUCE_MAX over the program axes of ``axes`` (an attribute before opset 18, an input
    from 18; absent: every axis), the maximum of the raw int8 values on the input's encoding."""
    axes = node.attrs.get("axes")
    if axes is None and len(node.inputs) > 1 and node.inputs[1]:
        if not ctx.is_const(node.inputs[1]):
            raise UnsupportedOpError("ReduceMax", node.name, "axes computed at run time are not supported")
        axes = ctx.const(node.inputs[1]).reshape(-1).tolist()
    if not axes and node.attrs.get("noop_with_empty_axes", 0):
        raise UnsupportedOpError("ReduceMax", node.name, "noop_with_empty_axes is not supported")
    lower_mean(node, ctx, list(axes) if axes else list(range(len(ctx.src_shape(node.inputs[0])))), "REDUCE_MAX")
