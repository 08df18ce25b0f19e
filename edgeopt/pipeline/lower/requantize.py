"""The requantizing node of a mixed-precision graph (``quantize.precision.apply_precision``) → QUANTIZE.

TFLite's QUANTIZE with an int8 input and an int16 output (or the reverse) requantizes between the two
encodings (``kernels/quantize.cc``), which is how TensorFlow's converter joins int8 and 16x8 ops.
"""
from __future__ import annotations

from edgeopt.errors import UnsupportedOpError
from edgeopt.ir import Node
from edgeopt.pipeline.lower.context import LOWERINGS, LowerContext
from edgeopt.pipeline.quantize.precision import REQUANTIZE_OP


@LOWERINGS.register(REQUANTIZE_OP)
def lower_requantize(node: Node, ctx: LowerContext) -> None:
    """An Identity between an int8 and an int16 tensor → QUANTIZE.

    Raises:
        UnsupportedOpError: input and output have the same dtype (an Identity that changes nothing).
    """
    x, y = ctx.activation(node.inputs[0], node), ctx.activation(node.outputs[0], node)
    if ctx.tensors[x].dtype == ctx.tensors[y].dtype:
        raise UnsupportedOpError(node.op, node.name, "only a change of precision (int8 <-> int16) is lowered; "
                                 "remove the Identity before lowering")
    ctx.emit("QUANTIZE", [x], [y], node)
