"""The output shape each op's Prepare gives in TFLite, for checking ``.tflite`` files before they run.

TFLite's Prepare functions check operand ranks and constant operands and resize every output from its
inputs; a file whose stored shapes disagree never runs there. The integer kernels here trust the
program's shapes instead, so the reader checks a file against these rules first: a corrupt file then
ends in one ``ModelLoadError`` rather than a kernel indexing past an array. One rule per op kind, in
``OUTPUT_SHAPES``; a kind without a rule is read unchecked.
"""
from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from edgeopt.errors import ModelLoadError
from edgeopt.qprogram import QOp, QProgram
from edgeopt.registry import OpRegistry, Registry
from edgeopt.runtimes.reference.movement import axis_indices

Shape = tuple[int, ...]
ShapeRule = Callable[[QOp, QProgram], Shape]
OUTPUT_SHAPES: Registry[ShapeRule] = OpRegistry("TFLite output-shape rule")


class ShapeMismatch(ValueError):
    """A rule's own finding: the operands do not fit the op."""


def check_output_shapes(program: QProgram) -> None:
    """Check every op with a rule: operands well formed, output shape the one TFLite would give.

    Raises:
        ModelLoadError: naming the op, its index and output, and what does not fit (a corrupt file).
    """
    for i, op in enumerate(program.ops):
        if op.kind not in OUTPUT_SHAPES:
            continue
        where = f"{op.kind} operator {i} → '{op.outputs[0]}'"
        try:
            want = OUTPUT_SHAPES.get(op.kind)(op, program)
        except (ShapeMismatch, IndexError, KeyError) as exc:
            raise ModelLoadError(f"'{program.name}': {where}: {exc or 'missing operand'} (corrupt file?)") from exc
        have = program.tensor(op.outputs[0]).shape
        if have != want:
            raise ModelLoadError(f"'{program.name}': {where} has output shape {have}, but its inputs give {want} "
                                 "(corrupt file?)")


def _shape(program: QProgram, op: QOp, i: int, rank: int | None = None) -> Shape:
    if len(op.inputs) <= i or not op.inputs[i]:
        raise ShapeMismatch(f"input {i} is missing")
    shape = program.tensor(op.inputs[i]).shape
    if rank is not None and len(shape) != rank:
        raise ShapeMismatch(f"input {i} has rank {len(shape)}, not {rank}")
    return shape


def _constant(program: QProgram, op: QOp, i: int, shape: Shape) -> np.ndarray:
    _shape(program, op, i)
    data = program.tensor(op.inputs[i]).data
    if data is None or data.shape != shape:
        raise ShapeMismatch(f"input {i} must be a constant of shape {shape}")
    return data.astype(np.int64)


def _windowed(op: QOp, n: int, channels: int) -> Shape:
    if "output_height" not in op.params:
        raise ShapeMismatch("no window parameters")
    return (n, int(op.params["output_height"]), int(op.params["output_width"]), channels)


@OUTPUT_SHAPES.register("CONV_2D")
def _conv(op: QOp, program: QProgram) -> Shape:
    n, _, _, cin = _shape(program, op, 0, 4)
    co, _, _, ci = _shape(program, op, 1, 4)
    if ci == 0 or cin % ci:
        raise ShapeMismatch(f"{cin} input channels for filters of depth {ci}")
    if len(op.inputs) > 2 and op.inputs[2] and _shape(program, op, 2) != (co,):
        raise ShapeMismatch(f"bias shape {_shape(program, op, 2)} for {co} output channels")
    return _windowed(op, n, co)


@OUTPUT_SHAPES.register("DEPTHWISE_CONV_2D")
def _depthwise(op: QOp, program: QProgram) -> Shape:
    n = _shape(program, op, 0, 4)[0]
    co = _shape(program, op, 1, 4)[3]
    if len(op.inputs) > 2 and op.inputs[2] and _shape(program, op, 2) != (co,):
        raise ShapeMismatch(f"bias shape {_shape(program, op, 2)} for {co} output channels")
    return _windowed(op, n, co)


@OUTPUT_SHAPES.register("AVERAGE_POOL_2D", "MAX_POOL_2D")
def _pool(op: QOp, program: QProgram) -> Shape:
    n, _, _, c = _shape(program, op, 0, 4)
    return _windowed(op, n, c)


@OUTPUT_SHAPES.register("FULLY_CONNECTED")
def _fully_connected(op: QOp, program: QProgram) -> Shape:
    x = _shape(program, op, 0)
    co, ci = _shape(program, op, 1, 2)
    if not x or ci == 0 or math.prod(x) % ci:
        raise ShapeMismatch(f"input {x} does not split into rows of {ci}")
    if len(op.inputs) > 2 and op.inputs[2] and _shape(program, op, 2) != (co,):
        raise ShapeMismatch(f"bias shape {_shape(program, op, 2)} for {co} outputs")
    if op.options.get("keep_num_dims", False):
        return (*x[:-1], co)
    return (math.prod(x) // ci, co)


@OUTPUT_SHAPES.register("ADD", "SUB", "MUL")
def _broadcast(op: QOp, program: QProgram) -> Shape:
    try:
        return tuple(np.broadcast_shapes(_shape(program, op, 0), _shape(program, op, 1)))
    except ValueError as exc:
        raise ShapeMismatch(f"input shapes do not broadcast: {exc}") from None


@OUTPUT_SHAPES.register("SOFTMAX", "LOGISTIC", "TANH", "HARD_SWISH", "RELU", "RELU6")
def _same(op: QOp, program: QProgram) -> Shape:
    return _shape(program, op, 0)


@OUTPUT_SHAPES.register("RESHAPE")
def _reshape(op: QOp, program: QProgram) -> Shape:
    out = program.tensor(op.outputs[0]).shape
    if math.prod(out) != math.prod(_shape(program, op, 0)):
        raise ShapeMismatch(f"{math.prod(_shape(program, op, 0))} elements cannot take the shape {out}")
    return out


@OUTPUT_SHAPES.register("PAD")
def _pad(op: QOp, program: QProgram) -> Shape:
    x = _shape(program, op, 0)
    paddings = _constant(program, op, 1, (len(x), 2))
    if np.any(paddings < 0):
        raise ShapeMismatch("negative paddings")
    return tuple(int(d + a + b) for d, (a, b) in zip(x, paddings))


@OUTPUT_SHAPES.register("TRANSPOSE")
def _transpose(op: QOp, program: QProgram) -> Shape:
    x = _shape(program, op, 0)
    perm = _constant(program, op, 1, (len(x),))
    if sorted(perm.tolist()) != list(range(len(x))):
        raise ShapeMismatch(f"{perm.tolist()} is not a permutation of {len(x)} axes")
    return tuple(x[p] for p in perm)


@OUTPUT_SHAPES.register("STRIDED_SLICE")
def _strided_slice(op: QOp, program: QProgram) -> Shape:
    """Three constant vectors of the input's rank, no zero stride, and the kernel's own index rules
    (``axis_indices``) for the size of each axis; the masks the kernel refuses are left to it."""
    x = _shape(program, op, 0)
    begin, end, strides = (_constant(program, op, i, (len(x),)) for i in (1, 2, 3))
    if np.any(strides == 0):
        raise ShapeMismatch("a stride is 0")
    if any(op.options.get(k) for k in ("ellipsis_mask", "new_axis_mask", "shrink_axis_mask", "offset")):
        return program.tensor(op.outputs[0]).shape
    masks = int(op.options.get("begin_mask", 0)), int(op.options.get("end_mask", 0))
    return tuple(len(axis_indices(d, int(b), int(e), int(s), bool(masks[0] >> i & 1), bool(masks[1] >> i & 1)))
                 for i, (d, b, e, s) in enumerate(zip(x, begin, end, strides)))


@OUTPUT_SHAPES.register("CONCATENATION")
def _concatenation(op: QOp, program: QProgram) -> Shape:
    shapes = [_shape(program, op, i) for i in range(len(op.inputs))]
    rank = len(shapes[0])
    axis = int(op.options.get("axis", 0))
    if not -rank <= axis < rank or any(len(s) != rank for s in shapes):
        raise ShapeMismatch(f"axis {axis} or ranks do not fit inputs of shapes {shapes}")
    axis %= rank
    if any(s[:axis] + s[axis + 1:] != shapes[0][:axis] + shapes[0][axis + 1:] for s in shapes):
        raise ShapeMismatch(f"inputs of shapes {shapes} differ off axis {axis}")
    return (*shapes[0][:axis], sum(s[axis] for s in shapes), *shapes[0][axis + 1:])


@OUTPUT_SHAPES.register("RESIZE_BILINEAR", "RESIZE_NEAREST_NEIGHBOR")
def _resize(op: QOp, program: QProgram) -> Shape:
    n, _, _, c = _shape(program, op, 0, 4)
    size = _constant(program, op, 1, (2,))
    if np.any(size <= 0):
        raise ShapeMismatch(f"output size {size.tolist()}")
    return (n, int(size[0]), int(size[1]), c)
