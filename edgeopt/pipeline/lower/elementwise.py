"""Lowerings of the elementwise ops and activations: Add, Sub, Mul (numpy broadcasting, constant
operands), Min (of an activation and a constant), Relu, Clip, HardSwish, HardSigmoid, Sigmoid, Tanh.

Broadcasting: ONNX aligns shapes to the right. A constant operand is aligned to the output's rank and,
for a 4-D output, permuted to NHWC like the activations, so the TFLite kernels broadcast it the same
way; an activation operand must already have the output's rank (both then share the program layout).

HardSigmoid has no TFLite builtin. It is lowered as Keras's MobileNetV3 writes it and TensorFlow's
converter emits it, ``relu6(x + 3) * (1/6)``, generalised to ``clip(alpha * x + beta, 0, 1) =
relu6(6 alpha x + 6 beta) / 6``: [MUL by ``6 alpha`` when it is not 1] → ADD ``6 beta`` with a fused
RELU6 → MUL by ``1/6``.
"""
from __future__ import annotations

import numpy as np

from edgeopt.errors import UnsupportedOpError
from edgeopt.ir import Node
from edgeopt.pipeline.lower.context import LOWERINGS, LowerContext, program_perm
from edgeopt.pipeline.lower.ops import fused_activation
from edgeopt.pipeline.optimize.fuse_activation import clip_bounds
from edgeopt.pipeline.quantize.encodings import activation_qparams

BINARY_KINDS = {"Add": "ADD", "Sub": "SUB", "Mul": "MUL"}
# Clip bounds (lo, hi) that a TFLite activation op computes.
CLIP_KINDS = {(0.0, np.inf): "RELU", (0.0, 6.0): "RELU6", (-1.0, 1.0): "RELU_N1_TO_1"}
UNARY_KINDS = {"HardSwish": "HARD_SWISH", "Sigmoid": "LOGISTIC", "Tanh": "TANH"}


def _operand(node: Node, ctx: LowerContext, name: str, out_rank: int) -> str:
    """The program tensor of one binary-op input: an activation, or a constant quantized as int8 and
    laid out for broadcasting against an output of rank ``out_rank``."""
    if not ctx.is_const(name):
        if len(ctx.src_shape(name)) != out_rank:
            raise UnsupportedOpError(node.op, node.name, f"input '{name}' of rank {len(ctx.src_shape(name))} "
                                     f"broadcast to rank {out_rank}: only constants may have a lower rank")
        return ctx.activation(name, node)
    q = ctx.encoding(name, node)
    value = np.asarray(ctx.const(name), dtype=np.float32)
    value = value.reshape((1,) * (out_rank - value.ndim) + value.shape)
    perm = program_perm(out_rank)
    if perm:
        value = value.transpose(perm)
    return ctx.constant(name, ctx.quantized(value, q), q.dtype, q)  # int16 for a 16x8 ADD


@LOWERINGS.register(*BINARY_KINDS)
def lower_binary(node: Node, ctx: LowerContext) -> None:
    """Add, Sub, Mul → ADD, SUB, MUL with numpy broadcasting and the fused activation.

    Raises:
        UnsupportedOpError: both inputs are constants, or an activation input has a lower rank than
            the output.
    """
    if all(ctx.is_const(t) for t in node.inputs):
        raise UnsupportedOpError(node.op, node.name, "both inputs are constants (fold them before lowering)")
    out_rank = len(ctx.src_shape(node.outputs[0]))
    a, b = (_operand(node, ctx, t, out_rank) for t in node.inputs)
    y = ctx.activation(node.outputs[0], node)
    ctx.emit(BINARY_KINDS[node.op], [a, b], [y], node, fused_activation_function=fused_activation(node))


@LOWERINGS.register("Min")
def lower_min(node: Node, ctx: LowerContext) -> None:
    """Min of an activation and a constant → MINIMUM (numpy broadcasting), the constant quantized on the
    activation's encoding, which the output shares (``quantize.spec.SHARED_OPERAND_OPS``).

    Raises:
        UnsupportedOpError: not two inputs, input 0 a constant, or input 1 an activation.
    """
    if len(node.inputs) != 2 or ctx.is_const(node.inputs[0]) or not ctx.is_const(node.inputs[1]):
        raise UnsupportedOpError("Min", node.name, "only the Min of an activation (input 0) and a constant "
                                 "(input 1) is lowered; reorder the inputs or compute the minimum another way")
    out_rank = len(ctx.src_shape(node.outputs[0]))
    a, b = (_operand(node, ctx, t, out_rank) for t in node.inputs)
    ctx.emit("MINIMUM", [a, b], [ctx.activation(node.outputs[0], node)], node)


@LOWERINGS.register("Relu")
def lower_relu(node: Node, ctx: LowerContext) -> None:
    """A Relu not fused into its producer → RELU (which requantizes from the input's encoding)."""
    ctx.emit("RELU", [ctx.activation(node.inputs[0], node)], [ctx.activation(node.outputs[0], node)], node)


@LOWERINGS.register("Clip")
def lower_clip(node: Node, ctx: LowerContext) -> None:
    """A Clip not fused into its producer → RELU, RELU6 or RELU_N1_TO_1 by its constant bounds.

    Raises:
        UnsupportedOpError: bounds other than [0, inf), [0, 6] and [-1, 1], or bounds computed at run time.
    """
    bounds = clip_bounds(node, ctx.graph)
    if bounds not in CLIP_KINDS:
        raise UnsupportedOpError("Clip", node.name, f"Clip to {bounds} has no TFLite int8 activation "
                                 "(supported: [0, inf), [0, 6], [-1, 1] with constant bounds)")
    x, y = ctx.activation(node.inputs[0], node), ctx.activation(node.outputs[0], node)
    ctx.emit(CLIP_KINDS[bounds], [x], [y], node)


@LOWERINGS.register(*UNARY_KINDS)
def lower_unary(node: Node, ctx: LowerContext) -> None:
    """HardSwish → HARD_SWISH, Sigmoid → LOGISTIC, Tanh → TANH."""
    x, y = ctx.activation(node.inputs[0], node), ctx.activation(node.outputs[0], node)
    ctx.emit(UNARY_KINDS[node.op], [x], [y], node)


def _scalar(node: Node, ctx: LowerContext, stem: str, value: float) -> str:
    """A rank-0-broadcastable int8 constant holding ``value`` over the range ``[min(value, 0), max(value, 0)]``."""
    q = activation_qparams(value, value)
    return ctx.constant(f"{node.name}/{stem}", ctx.quantized(np.full((1,), value), q), "int8", q)


@LOWERINGS.register("HardSigmoid")
def lower_hard_sigmoid(node: Node, ctx: LowerContext) -> None:
    """HardSigmoid ``clip(alpha x + beta, 0, 1)`` → [MUL 6 alpha] → ADD 6 beta (RELU6) → MUL 1/6.

    Intermediate encodings come from the input's representable range pushed through the same
    affine map (what calibrating the converter's float graph would see for in-range inputs): the
    scaled input covers ``6 alpha [x_min, x_max]`` and the RELU6 output ``[0, min(6, ...)]``.

    Raises:
        UnsupportedOpError: ``alpha <= 0``.
    """
    alpha, beta = float(node.attrs.get("alpha", 0.2)), float(node.attrs.get("beta", 0.5))
    if alpha <= 0:
        raise UnsupportedOpError("HardSigmoid", node.name, f"alpha {alpha} <= 0 is not supported")
    x, y = ctx.activation(node.inputs[0], node), ctx.activation(node.outputs[0], node)
    shape = ctx.shape(x)
    x_q = ctx.tensors[x].qparams
    lo, hi = (float(v) for v in x_q.dequantize(np.array([x_q.qmin, x_q.qmax])))
    scaled = x
    if not np.isclose(6 * alpha, 1.0, rtol=1e-6):
        scaled_q = activation_qparams(6 * alpha * lo, 6 * alpha * hi)
        scaled = ctx.temp(f"{node.name}/scaled", shape, scaled_q)
        ctx.emit("MUL", [x, _scalar(node, ctx, "six_alpha", 6 * alpha)], [scaled], node,
                 fused_activation_function="NONE")
        lo, hi = 6 * alpha * lo, 6 * alpha * hi
    relu6_q = activation_qparams(0.0, min(6.0, max(hi + 6 * beta, 1e-3)))
    relu6 = ctx.temp(f"{node.name}/relu6", shape, relu6_q)
    ctx.emit("ADD", [scaled, _scalar(node, ctx, "six_beta", 6 * beta)], [relu6], node,
             fused_activation_function="RELU6")
    ctx.emit("MUL", [relu6, _scalar(node, ctx, "one_sixth", 1 / 6)], [y], node, fused_activation_function="NONE")

