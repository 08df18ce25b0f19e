"""Float islands: nodes that run in float32 inside the int8 program.

Two kinds of node run in float: LayerNormalization, Gelu, Div (by a computed tensor) and Sqrt always
(``FLOAT_ISLAND_OPS``: TFLite has no int8 kernel for them), and any node named in ``QuantizedGraph.float_nodes`` (an op the device runs only
in float, ``pipeline.place``, or a layer mixed precision keeps in float, ``quantize.precision``). An
attention mask's real values start islands too: a Cast of integers to float (``lower_cast``) and a
Where (``lower_where``, also in ``FLOAT_ISLAND_OPS``), with what applies them (``mask_float_nodes``).

The island's edges are the same for both: a float node reads DEQUANTIZE(int8 input), one per tensor
shared by all its float readers; consecutive float nodes share one island (the float tensor passes
straight from one to the next, with no QUANTIZE/DEQUANTIZE between them); a float output is QUANTIZE'd
back to the encoding calibration gave it (int8, or int16 under a w8a16 plan) only where an integer op
reads it or it is a graph output. Tensors inside an island are float32 with no quantization parameters;
the executor runs them with the float32 kernels of their op families (``qprogram.op_mode``).

A node of ``float_nodes`` is lowered generically (``lower_float_node``): its own int8 lowering runs in
a sub-context whose constants keep their float values (``LowerContext.quantized``), and its ops are then
moved into the program with every tensor float32, as ``emit.float_program.dequantize_program`` turns a
whole program float: the same TFLite ops (PAD before a convolution, TRANSPOSEs around a softmax, ...) in
their float32 versions, with the model's float weights and biases. Constants that only exist quantized
(a max pool's pad value, an all-zero bias) are dequantized.

LayerNormalization has no TFLite builtin. TensorFlow's converter writes Keras's LayerNormalization as
``tf.nn.batch_normalization`` of ``tf.nn.moments``: MEAN, SQUARED_DIFFERENCE, MEAN, ADD eps, RSQRT,
MUL gamma, then ``x * inv + (beta - mean * inv)`` (MUL, MUL, SUB, ADD). The same builtins here follow
ONNX's own definition instead, ``(x - mean) * rsqrt(var + eps) * gamma + beta``: MEAN,
SQUARED_DIFFERENCE, MEAN, ADD eps, RSQRT, SUB, MUL, MUL gamma, ADD beta, which avoids the
cancellation in ``x * inv - mean * inv`` and so stays closer to the float model. Gelu → GELU with
``approximate`` for ``approximate="tanh"``; Div → DIV and Sqrt → SQRT.
"""
from __future__ import annotations

import numpy as np

from edgeopt.errors import UnsupportedOpError
from edgeopt.ir import Node
from edgeopt.pipeline.quantize.float_plan import FLOAT_ISLAND_OPS
from edgeopt.pipeline.lower.context import LOWERINGS, Lowering, LowerContext, program_perm
from edgeopt.pipeline.lower.masks import aligned_operand
from edgeopt.qprogram import CONVERSION_KINDS, QTensor


def is_float(node: Node, ctx: LowerContext) -> bool:
    """Whether ``node`` runs in a float island (a Cast of integers to float starts one: ``lower_cast``)."""
    return node.op in FLOAT_ISLAND_OPS or node.name in ctx.qgraph.float_nodes or _casts_to_float(node, ctx)


def _casts_to_float(node: Node, ctx: LowerContext) -> bool:
    return node.op == "Cast" and ctx.is_integer(node.inputs[0]) and not ctx.is_integer(node.outputs[0])


def lowering_of(node: Node, ctx: LowerContext) -> Lowering:
    """The lowering that honours ``float_nodes``: ``lower_float_node`` for a listed node that has an int8
    lowering of its own, else the op's registered lowering."""
    if node.op not in FLOAT_ISLAND_OPS and node.name in ctx.qgraph.float_nodes and not _casts_to_float(node, ctx):
        return lower_float_node
    return LOWERINGS.get(node.op)


def _float_tensor(ctx: LowerContext, base: str, shape: tuple[int, ...]) -> str:
    """A new float32 activation tensor of the program (no quantization parameters)."""
    name, k = base, 0
    while name in ctx.tensors:
        k += 1
        name = f"{base}__{k}"
    ctx.tensors[name] = QTensor(name, shape, "float32")
    return name


def _float_input(name: str, node: Node, ctx: LowerContext) -> str:
    """The float32 program tensor holding source activation ``name``: the island's own tensor when a
    float node wrote it, else one DEQUANTIZE of its int8 tensor (shared by all float readers)."""
    producer = ctx.graph.producer(name)
    if producer is not None and is_float(producer, ctx):
        return f"{name}/float"
    dequantized = f"{name}/dequantized"
    if dequantized not in ctx.tensors:
        x = ctx.activation(name, node)
        ctx.tensors[dequantized] = QTensor(dequantized, ctx.shape(x), "float32")
        ctx.emit("DEQUANTIZE", [x], [dequantized], node)
    return dequantized


def _float_output(name: str, ctx: LowerContext, shape: tuple[int, ...]) -> str:
    """The float32 tensor a float node writes for its source output ``name``."""
    ctx.tensors[f"{name}/float"] = QTensor(f"{name}/float", shape, "float32")
    return f"{name}/float"


def _leave_island(name: str, node: Node, ctx: LowerContext) -> None:
    """QUANTIZE the float output ``name`` to its calibrated encoding when an integer op reads it or it
    is a graph output; float readers use the float tensor directly."""
    readers = ctx.graph.consumers(name)
    if ctx.graph.is_output(name) or any(not is_float(r, ctx) for r in readers):
        ctx.emit("QUANTIZE", [f"{name}/float"], [ctx.activation(name, node)], node)


def _float_constant(ctx: LowerContext, base: str, value: np.ndarray) -> str:
    return ctx.constant(base, np.asarray(value, dtype=np.float32), "float32")


def lower_float_node(node: Node, ctx: LowerContext) -> None:
    """Lower ``node`` with its own int8 lowering, then move its ops into ``ctx`` in float32.

    Raises:
        UnsupportedOpError: the node has no int8 lowering, or its lowering converts between integer
            precisions (a requantizing node), which has no float form.
    """
    sub = ctx.float_sub_context()
    LOWERINGS.get(node.op)(node, sub)
    if any(op.kind in CONVERSION_KINDS for op in sub.ops):
        raise UnsupportedOpError(node.op, node.name, "a precision conversion cannot run in a float island; "
                                 "keep this node out of float_nodes")
    names: dict[str, str] = {}
    for name in node.inputs:
        if name in sub.tensors and not sub.tensors[name].is_constant:
            # integers (token ids, masks) enter as they are; quantized values through DEQUANTIZE
            names[name] = ctx.activation(name, node) if ctx.is_integer(name) else _float_input(name, node, ctx)
    for name in filter(None, node.outputs):
        names[name] = _float_output(name, ctx, sub.tensors[name].shape)
    for tensor in sub.tensors.values():
        if tensor.name in names:
            continue
        if not tensor.is_constant and tensor.qparams is None:  # an integer or boolean intermediate
            names[tensor.name] = ctx.temp(tensor.name, tensor.shape, None, tensor.dtype)
        elif not tensor.is_constant:
            names[tensor.name] = _float_tensor(ctx, tensor.name, tensor.shape)
        elif tensor.dtype == "float32" or tensor.qparams is not None:  # weights, biases, quantized values
            data = tensor.data if tensor.dtype == "float32" else tensor.qparams.dequantize(tensor.data)
            names[tensor.name] = _float_constant(ctx, tensor.name, data)
        else:  # shapes, paddings, axes: int32 without an encoding, the same in float
            names[tensor.name] = ctx.constant(tensor.name, tensor.data, tensor.dtype)
    for op in sub.ops:
        ctx.emit(op.kind, [names[t] if t else t for t in op.inputs], [names[t] for t in op.outputs], node,
                 **op.options)
    for name in filter(None, node.outputs):
        _leave_island(name, node, ctx)


@LOWERINGS.register("Cast")
def lower_cast(node: Node, ctx: LowerContext) -> None:
    """Cast of integers or booleans (token ids, an attention mask) → CAST: to float32 it starts a float
    island (QUANTIZE'd to its calibrated encoding only where an integer op reads it: ``_leave_island``),
    to an integer or boolean it stays an unquantized int32/bool tensor.

    Raises:
        UnsupportedOpError: a Cast of real values (float to float or to integers), which has no int8 form.
    """
    if not ctx.is_integer(node.inputs[0]):
        raise UnsupportedOpError("Cast", node.name, "only casts of integer or boolean tensors (token ids, masks) "
                                 "are supported")
    x = ctx.activation(node.inputs[0], node)
    if ctx.is_integer(node.outputs[0]):
        ctx.emit("CAST", [x], [ctx.activation(node.outputs[0], node)], node)
        return
    y = _float_output(node.outputs[0], ctx, ctx.shape(x))
    ctx.emit("CAST", [x], [y], node)
    _leave_island(node.outputs[0], node, ctx)


@LOWERINGS.register("Where")
def lower_where(node: Node, ctx: LowerContext) -> None:
    """Where(condition, x, y) → SELECT_V2 in float32 (``quantize.float_plan.FLOAT_ISLAND_OPS``): a boolean
    condition (an attention mask), constants as float32, activations through the island's DEQUANTIZE.

    Raises:
        UnsupportedOpError: the condition is not boolean, or an activation operand of fewer axes than a
            4-D result (its layout differs from the result's).
    """
    condition = node.inputs[0]
    if not ctx.is_integer(condition) and not ctx.is_const(condition):
        raise UnsupportedOpError("Where", node.name, f"condition '{condition}' is not a boolean tensor")
    rank = len(ctx.src_shape(node.outputs[0]))
    operands = [aligned_operand(node, ctx, condition, rank)]
    for name in node.inputs[1:]:
        if ctx.is_const(name):
            operands.append(aligned_operand(node, ctx, name, rank, float32=True))
        elif len(ctx.src_shape(name)) != rank and program_perm(rank):
            raise UnsupportedOpError("Where", node.name, f"operand '{name}' has fewer axes than the 4-D result")
        else:
            operands.append(_float_input(name, node, ctx))
    shape = tuple(ctx.shape(ctx.activation(node.outputs[0], node)))
    ctx.emit("SELECT_V2", operands, [_float_output(node.outputs[0], ctx, shape)], node)
    _leave_island(node.outputs[0], node, ctx)


@LOWERINGS.register("Gelu")
def lower_gelu(node: Node, ctx: LowerContext) -> None:
    """Gelu (opset 20) → GELU in float32, ``approximate`` true for the tanh form."""
    approximate = node.attrs.get("approximate", "none")
    if approximate not in ("none", "tanh"):
        raise UnsupportedOpError("Gelu", node.name, f"approximate={approximate!r} is not 'none' or 'tanh'")
    x = _float_input(node.inputs[0], node, ctx)
    y = _float_output(node.outputs[0], ctx, ctx.shape(x))
    ctx.emit("GELU", [x], [y], node, approximate=approximate == "tanh")
    _leave_island(node.outputs[0], node, ctx)


def _float_operand(name: str, node: Node, ctx: LowerContext, out_rank: int) -> str:
    """A float island's operand: the float tensor of an activation, or a float32 constant aligned to the
    output's rank and laid out like it (NHWC for 4-D), so the TFLite kernel broadcasts it the same way."""
    if not ctx.is_const(name):
        if len(ctx.src_shape(name)) != out_rank:
            raise UnsupportedOpError(node.op, node.name, f"input '{name}' of rank {len(ctx.src_shape(name))} "
                                     f"broadcast to rank {out_rank}: only constants may have a lower rank")
        return _float_input(name, node, ctx)
    value = np.asarray(ctx.const(name), dtype=np.float32)
    value = value.reshape((1,) * (out_rank - value.ndim) + value.shape)
    perm = program_perm(out_rank)
    return _float_constant(ctx, f"{node.name}/{name}", value.transpose(perm) if perm else value)


@LOWERINGS.register("Div", "Sqrt")
def lower_div_sqrt(node: Node, ctx: LowerContext) -> None:
    """Div by a computed tensor → DIV, Sqrt → SQRT, in float32: TFLite has no int8 kernel for either."""
    out_rank = len(ctx.src_shape(node.outputs[0]))
    if all(ctx.is_const(t) for t in node.inputs):
        raise UnsupportedOpError(node.op, node.name, "all inputs are constants (fold them before lowering)")
    inputs = [_float_operand(t, node, ctx, out_rank) for t in node.inputs]
    shape = ctx.shape(ctx.activation(node.outputs[0], node))
    y = _float_output(node.outputs[0], ctx, shape)
    if node.op == "Div":
        ctx.emit("DIV", inputs, [y], node, fused_activation_function="NONE")
    else:
        ctx.emit("SQRT", inputs, [y], node)
    _leave_island(node.outputs[0], node, ctx)


@LOWERINGS.register("LayerNormalization")
def lower_layer_normalization(node: Node, ctx: LowerContext) -> None:
    """LayerNormalization (opset 17) over axes ``axis..rank-1`` → the float32 ops of the module docstring.

    Raises:
        UnsupportedOpError: scale or bias computed at run time, or the Mean/InvStdDev outputs used.
    """
    if any(node.outputs[1:]):
        raise UnsupportedOpError("LayerNormalization", node.name, "its Mean and InvStdDev outputs are not supported")
    params = [t for t in node.inputs[1:] if t]
    if not all(ctx.is_const(t) for t in params):
        raise UnsupportedOpError("LayerNormalization", node.name, "scale and bias must be constants")
    src_shape = ctx.src_shape(node.inputs[0])
    rank = len(src_shape)
    axis = int(node.attrs.get("axis", -1)) % rank
    perm = program_perm(rank) or tuple(range(rank))
    axes = np.array(sorted(perm.index(a) for a in range(axis, rank)), dtype=np.int32)

    def program_constant(stem: str, value: np.ndarray) -> str:
        """A scale or bias of shape ``src_shape[axis:]``, broadcast to the program's rank and layout."""
        full = np.asarray(value, dtype=np.float32).reshape((1,) * axis + src_shape[axis:])
        return _float_constant(ctx, f"{node.name}/{stem}", full.transpose(perm))

    x = _float_input(node.inputs[0], node, ctx)
    shape = ctx.shape(x)
    reduced = tuple(1 if i in axes else d for i, d in enumerate(shape))
    axes_name = ctx.constant(f"{node.name}/axes", axes, "int32")
    stem = f"{node.name}/"
    mean = _float_tensor(ctx, stem + "mean", reduced)
    ctx.emit("MEAN", [x, axes_name], [mean], node, keep_dims=True)
    squared = _float_tensor(ctx, stem + "squared_difference", shape)
    ctx.emit("SQUARED_DIFFERENCE", [x, mean], [squared], node)
    variance = _float_tensor(ctx, stem + "variance", reduced)
    ctx.emit("MEAN", [squared, axes_name], [variance], node, keep_dims=True)
    eps = _float_constant(ctx, stem + "epsilon", np.full((1,), node.attrs.get("epsilon", 1e-5)))
    shifted = _float_tensor(ctx, stem + "variance_eps", reduced)
    ctx.emit("ADD", [variance, eps], [shifted], node, fused_activation_function="NONE")
    inv_std = _float_tensor(ctx, stem + "rsqrt", reduced)
    ctx.emit("RSQRT", [shifted], [inv_std], node)
    centred = _float_tensor(ctx, stem + "centred", shape)
    ctx.emit("SUB", [x, mean], [centred], node, fused_activation_function="NONE")
    normalized = _float_tensor(ctx, stem + "normalized", shape)
    ctx.emit("MUL", [centred, inv_std], [normalized], node, fused_activation_function="NONE")
    y = _float_output(node.outputs[0], ctx, shape)
    scaled = y if len(params) < 2 else _float_tensor(ctx, stem + "scaled", shape)
    ctx.emit("MUL", [normalized, program_constant("scale", ctx.const(node.inputs[1]))], [scaled], node,
             fused_activation_function="NONE")
    if len(params) == 2:
        ctx.emit("ADD", [scaled, program_constant("bias", ctx.const(node.inputs[2]))], [y], node,
                 fused_activation_function="NONE")
    _leave_island(node.outputs[0], node, ctx)
