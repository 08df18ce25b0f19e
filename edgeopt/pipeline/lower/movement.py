"""Data-movement lowerings: Concat → CONCATENATION, Transpose → TRANSPOSE (NHWC-aware).

Source 4-D tensors are NCHW and their program tensors NHWC (``context.program_perm``), so axes and
permutations are translated between the two layouts here.
"""
from __future__ import annotations

import numpy as np

from edgeopt.errors import UnsupportedOpError
from edgeopt.ir import Node
from edgeopt.pipeline.lower.context import LOWERINGS, LowerContext, program_perm


def program_axis(axis: int, rank: int) -> int:
    """The program axis holding source axis ``axis`` (negative axes count from the end)."""
    axis %= rank
    perm = program_perm(rank)
    return perm.index(axis) if perm else axis


def program_transpose_perm(perm: tuple[int, ...]) -> tuple[int, ...]:
    """The TRANSPOSE permutation, on program tensors, of an ONNX Transpose ``perm`` on source tensors.

    Program axis j of x holds source axis ``pin[j]``, program axis k of y holds source-y axis
    ``pout[k]``, which is source-x axis ``perm[pout[k]]``: so y's program axis k is x's program axis
    ``pin⁻¹[perm[pout[k]]]``.
    """
    rank = len(perm)
    pin = pout = program_perm(rank) or tuple(range(rank))
    inverse = np.argsort(pin)
    return tuple(int(inverse[perm[pout[k]]]) for k in range(rank))


@LOWERINGS.register("Concat")
def lower_concat(node: Node, ctx: LowerContext) -> None:
    """Concat → CONCATENATION on the program layout's axis; constant inputs quantized with the output's
    encoding, which the quantizer gave every input it could (``quantize.shared_ranges``); any other input
    is requantized to it by a QUANTIZE."""
    rank = len(ctx.src_shape(node.outputs[0]))
    y = ctx.activation(node.outputs[0], node)
    y_q = ctx.tensors[y].qparams
    perm = program_perm(rank)
    inputs = []
    for t in node.inputs:
        if ctx.is_const(t):
            data = ctx.const(t)
            if data.size == 0:
                continue  # an empty constant contributes nothing (TFLite rejects zero-sized inputs)
            inputs.append(ctx.constant(t, ctx.quantized(data.transpose(perm) if perm else data, y_q), y_q.dtype, y_q))
        else:
            x = ctx.activation(t, node)
            if not ctx.tensors[x].qparams.same_as(y_q):
                # TFLite's int8 CONCATENATION copies bytes: an input of another encoding (a fixed one, e.g. a
                # Sigmoid's: ``quantize.shared_ranges``; or a QDQ file's) is requantized first.
                requantized = ctx.temp(f"{node.name}/{t}/requantized", ctx.shape(x), y_q)
                ctx.emit("QUANTIZE", [x], [requantized], node)
                x = requantized
            inputs.append(x)
    ctx.emit("CONCATENATION", inputs, [y], node, axis=program_axis(node.attrs["axis"], rank),
             fused_activation_function="NONE")


@LOWERINGS.register("Transpose")
def lower_transpose(node: Node, ctx: LowerContext) -> None:
    """Transpose → TRANSPOSE with the permutation translated to program layouts (a RESHAPE copy when the
    translated permutation is the identity, e.g. NCHW→NHWC of a tensor the program already holds NHWC
    into a rank-4 result)."""
    rank = len(ctx.src_shape(node.inputs[0]))
    perm = tuple(int(p) % rank for p in node.attrs.get("perm", range(rank - 1, -1, -1)))
    x, y = ctx.activation(node.inputs[0], node), ctx.activation(node.outputs[0], node)
    q = program_transpose_perm(perm)
    if q == tuple(range(rank)):
        shape = np.array(ctx.shape(y), np.int32)
        ctx.emit("RESHAPE", [x, ctx.constant(f"{node.name}/shape", shape, "int32")], [y], node,
                 new_shape=shape.tolist())
        return
    ctx.emit("TRANSPOSE", [x, ctx.constant(f"{node.name}/perm", np.array(q, np.int32), "int32")], [y], node)


MIRROR_MODES = {"reflect": "REFLECT"}


def lower_mirror_pad(node: Node, ctx: LowerContext, pads: list[int]) -> None:
    """Pad with ``mode="reflect"`` → MIRROR_PAD REFLECT (output shares the input's encoding).

    ONNX ``edge`` (repeat the border value) and ``wrap`` have no TFLite int8 kernel; reflecting needs
    each padding below its axis size, as both ONNX and TFLite require.
    """
    mode = node.attrs.get("mode", "constant")
    if mode not in MIRROR_MODES:
        raise UnsupportedOpError("Pad", node.name, f"mode '{mode}' has no TFLite int8 kernel (constant and "
                                                   "reflect do)")
    if len(node.inputs) > 3 and node.inputs[3]:
        raise UnsupportedOpError("Pad", node.name, "Pad with an axes input is not supported yet")
    shape = ctx.src_shape(node.inputs[0])
    rank = len(shape)
    paddings = [(int(pads[i]), int(pads[i + rank])) for i in range(rank)]
    if any(a < 0 or b < 0 or max(a, b) >= size for (a, b), size in zip(paddings, shape)):
        raise UnsupportedOpError("Pad", node.name, f"reflect pads {pads} must be non-negative and below the "
                                                   f"axis sizes {list(shape)}")
    perm = program_perm(rank)
    if perm:
        paddings = [paddings[p] for p in perm]
    x, y = ctx.activation(node.inputs[0], node), ctx.activation(node.outputs[0], node)
    ctx.emit("MIRROR_PAD", [x, ctx.constant(f"{node.name}/paddings", np.array(paddings, np.int32), "int32")], [y],
             node, mode=MIRROR_MODES[mode])
