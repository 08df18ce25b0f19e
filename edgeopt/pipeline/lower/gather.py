"""Gather → GATHER: embedding lookups (a constant table, integer indices the model computes or takes as
input) and gathers with constant indices on activations (a ViT's class token ``x[:, 0]``, a mask's
reordering).

TFLite's GATHER (``kernels/gather.cc``) copies values: an int8 output must carry its input's scale and
zero point, so the table is quantized per-tensor over its own range and its rows keep that encoding
(``quantize.spec.TABLE_OPS``, ``SHARED_SCALE_OPS``). Positions may be int32 or int64; the program's are
int32 (``context.program_dtype``). Constant indices are written with ONNX's negative indices already
counted from the end, since GATHER takes only ``[0, dim)``.

GATHER works on the source order of its operands: a 4-D operand (NHWC in the program) is transposed back
to NCHW first, and a 4-D result is transposed to NHWC after.
"""
from __future__ import annotations

import numpy as np

from edgeopt.errors import UnsupportedOpError
from edgeopt.ir import Node
from edgeopt.pipeline.lower.context import LOWERINGS, NHWC, LowerContext, program_dtype, program_perm

NCHW_FROM_NHWC = (0, 3, 1, 2)


def transposed(node: Node, ctx: LowerContext, x: str, shape: tuple[int, ...], perm: tuple[int, ...],
                out: str | None = None) -> str:
    """TRANSPOSE of program tensor ``x`` by ``perm`` into ``out`` (default: a new tensor of ``shape``)."""
    y = out or ctx.temp_like(f"{x}/transposed", shape, x)
    ctx.emit("TRANSPOSE", [x, ctx.constant(f"{node.name}/perm", np.array(perm, np.int32), "int32")], [y], node)
    return y


def in_source_order(node: Node, ctx: LowerContext, name: str) -> str:
    """Program tensor of source tensor ``name`` in the source's axis order (4-D: NHWC transposed to NCHW)."""
    x = ctx.activation(name, node)
    src_shape = ctx.src_shape(name)
    return transposed(node, ctx, x, src_shape, NCHW_FROM_NHWC) if program_perm(len(src_shape)) else x


def _table(node: Node, ctx: LowerContext) -> str:
    """The constant data operand: int8 over its own encoding (float32 in a float island), or int32/bool."""
    name = node.inputs[0]
    value = ctx.const(name)
    if np.issubdtype(value.dtype, np.floating):
        q = ctx.encoding(name, node)
        return ctx.constant(name, ctx.quantized(value, q), q.dtype, q)
    dtype = program_dtype(value.dtype.name)
    return ctx.constant(name, value.astype(dtype), dtype)


def _indices(node: Node, ctx: LowerContext, dim: int) -> str:
    name = node.inputs[1]
    if not ctx.is_const(name):
        if not ctx.is_integer(name):
            raise UnsupportedOpError("Gather", node.name, f"indices '{name}' are not integers")
        return in_source_order(node, ctx, name)
    idx = ctx.const(name).astype(np.int64)
    if np.any(idx < -dim) or np.any(idx >= dim):
        raise UnsupportedOpError("Gather", node.name, f"constant indices outside [-{dim}, {dim})")
    return ctx.constant(f"{node.name}/indices", np.where(idx < 0, idx + dim, idx).astype(np.int32), "int32")


@LOWERINGS.register("Gather")
def lower_gather(node: Node, ctx: LowerContext) -> None:
    """Gather (``axis``) → GATHER (``axis``, ``batch_dims`` 0), with TRANSPOSEs around 4-D operands."""
    data_shape = ctx.src_shape(node.inputs[0])
    axis = int(node.attrs.get("axis", 0)) % len(data_shape)
    data = _table(node, ctx) if ctx.is_const(node.inputs[0]) else in_source_order(node, ctx, node.inputs[0])
    indices = _indices(node, ctx, data_shape[axis])
    y = ctx.activation(node.outputs[0], node)
    out_shape = ctx.src_shape(node.outputs[0])
    perm = program_perm(len(out_shape))
    target = ctx.temp_like(f"{node.name}/gathered", out_shape, y) if perm else y
    ctx.emit("GATHER", [data, indices], [target], node, axis=axis, batch_dims=0)
    if perm:
        transposed(node, ctx, target, ctx.shape(y), NHWC, out=y)
