"""Attention-mask computations on integer inputs: Equal → EQUAL, And → LOGICAL_AND, Expand → BROADCAST_TO
(booleans, integers, or int8 values copied on their encoding), GatherND with constant indices → RESHAPE +
GATHER.

Hugging Face's exporters write the mask as ``Cast(attention_mask, bool)`` → reorder (Flatten/Gather/
Reshape, or GatherND) → ``And`` with a constant → ``Expand`` → ``Where(mask, 0, finfo.min)``: every step
before the Where is boolean and runs as such here (unquantized bool tensors); the Where starts a float
island (``float_island.lower_where``, ``quantize.float_plan.mask_float_nodes``).

Broadcasting operands follow numpy's right-aligned rule in the source model. In the program a 4-D result
is NHWC, so a lower-rank operand of a 4-D result is first given the source's 4-D shape (RESHAPE, leading
ones) and then the program's layout (TRANSPOSE); constants are laid out the same way
(``layout_constant``).
"""
from __future__ import annotations

import numpy as np

from edgeopt.errors import UnsupportedOpError
from edgeopt.ir import Node
from edgeopt.pipeline.lower.context import LOWERINGS, LowerContext, program_dtype, program_perm
from edgeopt.pipeline.lower.gather import in_source_order, transposed


def layout_constant(value: np.ndarray, rank: int) -> np.ndarray:
    """A constant operand of a broadcasting op with a ``rank``-D result, in the program's layout:
    right-aligned to ``rank`` axes and, for rank 4, transposed to NHWC."""
    value = np.asarray(value)
    value = value.reshape((1,) * (rank - value.ndim) + value.shape)
    perm = program_perm(rank)
    return value.transpose(perm) if perm else value


def aligned_operand(node: Node, ctx: LowerContext, name: str, rank: int, float32: bool = False) -> str:
    """The program tensor of operand ``name`` of a broadcasting op with a ``rank``-D result: a constant
    through ``layout_constant`` (float32 when ``float32``; booleans and integers as the program holds
    them), an activation as is, or, when it has fewer axes than a 4-D result, reshaped and transposed
    to the result's layout."""
    if ctx.is_const(name):
        value = layout_constant(ctx.const(name), rank)
        dtype = "float32" if float32 else program_dtype(value.dtype.name)
        return ctx.constant(f"{node.name}/{name}", value.astype(dtype), dtype)
    src = ctx.src_shape(name)
    if len(src) == rank or not program_perm(rank):
        return ctx.activation(name, node)
    x = in_source_order(node, ctx, name)
    full = (1,) * (rank - len(src)) + tuple(src)
    reshaped = ctx.temp_like(f"{node.name}/{name}/rank{rank}", full, x)
    shape = np.array(full, np.int32)
    ctx.emit("RESHAPE", [x, ctx.constant(f"{node.name}/shape", shape, "int32")], [reshaped], node,
             new_shape=shape.tolist())
    return transposed(node, ctx, reshaped, tuple(full[p] for p in program_perm(rank)), program_perm(rank))


@LOWERINGS.register("And")
def lower_and(node: Node, ctx: LowerContext) -> None:
    """And of two boolean tensors → LOGICAL_AND."""
    rank = len(ctx.src_shape(node.outputs[0]))
    a, b = (aligned_operand(node, ctx, t, rank) for t in node.inputs)
    ctx.emit("LOGICAL_AND", [a, b], [ctx.activation(node.outputs[0], node)], node)


@LOWERINGS.register("Expand")
def lower_expand(node: Node, ctx: LowerContext) -> None:
    """Expand to a constant shape → BROADCAST_TO the result's program shape (values copied: an int8 input
    keeps its encoding, ``quantize.spec.SHARED_SCALE_OPS``)."""
    if not ctx.is_const(node.inputs[1]):
        raise UnsupportedOpError("Expand", node.name, "the target shape must be a constant")
    y = ctx.activation(node.outputs[0], node)
    x = aligned_operand(node, ctx, node.inputs[0], len(ctx.src_shape(node.outputs[0])))
    shape = np.array(ctx.shape(y), np.int32)
    ctx.emit("BROADCAST_TO", [x, ctx.constant(f"{node.name}/shape", shape, "int32")], [y], node)


@LOWERINGS.register("GatherND")
def lower_gather_nd(node: Node, ctx: LowerContext) -> None:
    """GatherND (``batch_dims`` 0) with constant indices ``[..., k]`` → RESHAPE of the data to
    ``[prod(shape[:k]), *shape[k:]]``, GATHER of the flat positions on axis 0, RESHAPE to the result."""
    data, indices = node.inputs[:2]
    if int(node.attrs.get("batch_dims", 0)) or not ctx.is_const(indices):
        raise UnsupportedOpError("GatherND", node.name, "only batch_dims=0 with constant indices is supported")
    shape = ctx.src_shape(data)
    idx = ctx.const(indices).astype(np.int64)
    k = idx.shape[-1]
    dims = np.array(shape[:k])
    if np.any(idx < -dims) or np.any(idx >= dims):
        raise UnsupportedOpError("GatherND", node.name, f"constant indices outside the data's shape {shape}")
    flat = np.ravel_multi_index(tuple(np.moveaxis(np.where(idx < 0, idx + dims, idx), -1, 0)), shape[:k])
    x = in_source_order(node, ctx, data)
    table_shape = (int(np.prod(shape[:k])), *shape[k:])
    table = ctx.temp_like(f"{node.name}/table", table_shape, x)
    _reshape(node, ctx, x, table)
    positions = ctx.constant(f"{node.name}/positions", flat.astype(np.int32).reshape(-1), "int32")
    rows = ctx.temp_like(f"{node.name}/rows", (flat.size, *shape[k:]), x)
    ctx.emit("GATHER", [table, positions], [rows], node, axis=0, batch_dims=0)
    y = ctx.activation(node.outputs[0], node)
    out_shape = ctx.src_shape(node.outputs[0])
    perm = program_perm(len(out_shape))
    target = ctx.temp_like(f"{node.name}/gathered", out_shape, y) if perm else y
    _reshape(node, ctx, rows, target)
    if perm:
        transposed(node, ctx, target, ctx.shape(y), perm, out=y)


def _reshape(node: Node, ctx: LowerContext, x: str, y: str) -> None:
    shape = np.array(ctx.shape(y), np.int32)
    ctx.emit("RESHAPE", [x, ctx.constant(f"{node.name}/shape", shape, "int32")], [y], node, new_shape=shape.tolist())


@LOWERINGS.register("Equal")
def lower_equal(node: Node, ctx: LowerContext) -> None:
    """Equal of two integer or boolean tensors (a padding mask ``ids == 0``) → EQUAL, a boolean result."""
    if not all(ctx.is_integer(t) or (ctx.is_const(t) and not np.issubdtype(ctx.const(t).dtype, np.floating))
               for t in node.inputs):
        raise UnsupportedOpError("Equal", node.name, "only integer or boolean operands are supported (a mask "
                                 "such as ids == 0); compare float values outside the model")
    rank = len(ctx.src_shape(node.outputs[0]))
    a, b = (aligned_operand(node, ctx, t, rank) for t in node.inputs)
    ctx.emit("EQUAL", [a, b], [ctx.activation(node.outputs[0], node)], node)
