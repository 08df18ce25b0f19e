"""MatMul → FULLY_CONNECTED (constant 2-D weight) or BATCH_MATMUL (two activations).

Ranks 2 and 3 keep their order in the program (only 4-D tensors become NHWC), so ONNX's
``A[..., M, K] @ B[..., K, N]`` maps onto TFLite directly: FULLY_CONNECTED takes ``B`` transposed as
its per-channel weights ``[N, K]`` (``keep_num_dims`` for a 3-D ``A``), BATCH_MATMUL takes both
activations as they are. A bias (``MatMul`` + ``Add``) stays a separate ADD.
"""
from __future__ import annotations

import numpy as np

from edgeopt.errors import UnsupportedOpError
from edgeopt.ir import Node, QParams
from edgeopt.pipeline.lower.context import LOWERINGS, LowerContext
from edgeopt.pipeline.quantize.encodings import bias_qparams


@LOWERINGS.register("MatMul")
def lower_matmul(node: Node, ctx: LowerContext) -> None:
    """MatMul with a constant 2-D right operand → FULLY_CONNECTED; of two activations → BATCH_MATMUL."""
    a_name, b_name = node.inputs
    if ctx.is_const(a_name):
        raise UnsupportedOpError("MatMul", node.name, "a constant left operand is not supported")
    ranks = [len(ctx.src_shape(t)) for t in (a_name, b_name, node.outputs[0])]
    if 4 in ranks or max(ranks) > 5 or min(ranks) < 2:
        raise UnsupportedOpError("MatMul", node.name, f"operand ranks {ranks[:2]} are not supported "
                                 "(ranks 2, 3 and 5; 4-D operands would be laid out as NHWC images)")
    x = ctx.activation(a_name, node)
    y = ctx.activation(node.outputs[0], node)
    if not ctx.is_const(b_name):
        ctx.emit("BATCH_MATMUL", [x, ctx.activation(b_name, node)], [y], node, adj_x=False, adj_y=False)
        return
    if ranks[1] != 2 or ranks[0] > 3:
        raise UnsupportedOpError("MatMul", node.name, "a constant right operand must be 2-D and the left one "
                                 "at most 3-D (FULLY_CONNECTED)")
    w_q = ctx.encoding(b_name, node)
    if w_q.axis != 1:
        raise UnsupportedOpError("MatMul", node.name, "weights must be quantized per output column (axis 1)")
    w_int = ctx.quantized(ctx.const(b_name), w_q).T  # (N, K), per-channel axis 0
    fc_q = QParams(w_q.scale, w_q.zero_point, "int8", axis=0)
    w = ctx.constant(b_name, w_int, "int8", fc_q)
    n_out = w_int.shape[0]
    bias = ctx.constant(f"{node.name}/bias", np.zeros(n_out, np.int32), "int32",
                        bias_qparams(ctx.tensors[x].qparams, fc_q))
    ctx.emit("FULLY_CONNECTED", [x, w, bias], [y], node, fused_activation_function="NONE",
             keep_num_dims=ranks[0] > 2)
