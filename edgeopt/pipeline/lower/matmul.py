"""MatMul → FULLY_CONNECTED (constant 2-D weight) or BATCH_MATMUL (two activations).

Ranks 2, 3 and 5 keep their order in the program, so ONNX's ``A[..., M, K] @ B[..., K, N]`` maps onto
TFLite directly: FULLY_CONNECTED takes ``B`` transposed as its per-channel weights ``[N, K]``
(``keep_num_dims`` for an ``A`` of rank 3 or more), BATCH_MATMUL takes both activations as they are.
A bias (``MatMul`` + ``Add``) stays a separate ADD.

A 4-D operand (attention heads ``[B, H, S, D]``, or ConvNeXt/Swin's ``[B, H, W, C]`` MLP input) is
held NHWC in the program, so its last program axis is not its last source axis: a TRANSPOSE brings it
back to source order first, and the 4-D result is computed in source order and transposed to NHWC,
as a converter of an NCHW graph would (both TRANSPOSEs keep the encoding).
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np

from edgeopt.errors import UnsupportedOpError
from edgeopt.ir import Node, QParams
from edgeopt.pipeline.lower.context import LOWERINGS, NHWC, LowerContext, program_perm
from edgeopt.pipeline.lower.ops import NCHW_FROM_NHWC
from edgeopt.pipeline.quantize.encodings import bias_qparams


def _in_source_order(node: Node, ctx: LowerContext, name: str) -> str:
    """The program tensor of activation ``name`` with its axes in source order (a TRANSPOSE for 4-D)."""
    x = ctx.activation(name, node)
    if program_perm(len(ctx.src_shape(name))) is None:
        return x
    ordered = ctx.temp(f"{node.name}/{name}/source_order", ctx.src_shape(name), ctx.tensors[x].qparams)
    perm = ctx.constant(f"{node.name}/to_source_order", np.array(NCHW_FROM_NHWC, np.int32), "int32")
    ctx.emit("TRANSPOSE", [x, perm], [ordered], node)
    return ordered


def _output(node: Node, ctx: LowerContext) -> tuple[str, Callable[[], None]]:
    """The tensor the product is written to (in source order) and what lays it out in the program after."""
    y_name = node.outputs[0]
    y = ctx.activation(y_name, node)
    if program_perm(len(ctx.src_shape(y_name))) is None:
        return y, lambda: None
    ordered = ctx.temp(f"{node.name}/product", ctx.src_shape(y_name), ctx.tensors[y].qparams)

    def to_program() -> None:
        perm = ctx.constant(f"{node.name}/to_program", np.array(NHWC, np.int32), "int32")
        ctx.emit("TRANSPOSE", [ordered, perm], [y], node)
    return ordered, to_program


@LOWERINGS.register("MatMul")
def lower_matmul(node: Node, ctx: LowerContext) -> None:
    """MatMul with a constant 2-D right operand → FULLY_CONNECTED; of two activations → BATCH_MATMUL
    (TRANSPOSEs around 4-D operands, see the module)."""
    a_name, b_name = node.inputs
    if ctx.is_const(a_name):
        raise UnsupportedOpError("MatMul", node.name, "a constant left operand is not supported")
    ranks = [len(ctx.src_shape(t)) for t in (a_name, b_name, node.outputs[0])]
    if max(ranks) > 5 or min(ranks) < 2:
        raise UnsupportedOpError("MatMul", node.name, f"operand ranks {ranks[:2]} are not supported "
                                 "(ranks 2 to 5)")
    if ctx.is_const(b_name) and ranks[1] != 2:
        raise UnsupportedOpError("MatMul", node.name, "a constant right operand must be 2-D (FULLY_CONNECTED); "
                                 "fold its batch axes into the weights before export")
    x = _in_source_order(node, ctx, a_name)
    if not ctx.is_const(b_name):
        rhs = _in_source_order(node, ctx, b_name)
        y, to_program = _output(node, ctx)
        ctx.emit("BATCH_MATMUL", [x, rhs], [y], node, adj_x=False, adj_y=False)
        to_program()
        return
    w_q = ctx.encoding(b_name, node)
    if w_q.axis != 1:
        raise UnsupportedOpError("MatMul", node.name, "weights must be quantized per output column (axis 1)")
    w_int = ctx.quantized(ctx.const(b_name), w_q).T  # (N, K), per-channel axis 0
    fc_q = QParams(w_q.scale, w_q.zero_point, "int8", axis=0)
    w = ctx.constant(b_name, w_int, "int8", fc_q)
    n_out = w_int.shape[0]
    bias = ctx.constant(f"{node.name}/bias", np.zeros(n_out, np.int32), "int32",
                        bias_qparams(ctx.tensors[x].qparams, fc_q))
    y, to_program = _output(node, ctx)
    ctx.emit("FULLY_CONNECTED", [x, w, bias], [y], node, fused_activation_function="NONE",
             keep_num_dims=ranks[0] > 2)
    to_program()
