"""The output shapes each op's Prepare gives in TFLite, for checking ``.tflite`` files before they run.

TFLite's Prepare functions check operand ranks and constant operands and resize every output from its
inputs (``ResizeOutputTensor`` and the like); a file whose stored shapes disagree never runs there. The
integer kernels here trust the program's shapes instead, so the reader checks a file against these rules
first: a corrupt file then ends in one ``ModelLoadError`` rather than a kernel indexing past an array.
One rule per op kind of ``qprogram.OPS``, in ``OUTPUT_SHAPES``: it returns the shape of the op's output,
or a list with one shape per output for an op with several (SPLIT, SPLIT_V).
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import replace

import numpy as np

from edgeopt.errors import ModelLoadError, RegistryError
from edgeopt.qprogram import QOp, QProgram, QTensor
from edgeopt.registry import OpRegistry, Registry
from edgeopt.runtimes.reference.movement import axis_indices

Shape = tuple[int, ...]
ShapeRule = Callable[[QOp, QProgram], Shape | list[Shape]]
OUTPUT_SHAPES: Registry[ShapeRule] = OpRegistry("TFLite output-shape rule")


class ShapeMismatch(ValueError):
    """A rule's own finding: the operands do not fit the op."""


def output_shapes(op: QOp, program: QProgram) -> list[Shape]:
    """The shape of each output of ``op`` that TFLite's Prepare gives from its inputs.

    Raises:
        ShapeMismatch: the operands do not fit the op (or an operand is missing: IndexError, KeyError).
        RegistryError: ``op.kind`` has no rule (a kind outside ``qprogram.OPS``).
    """
    shapes = OUTPUT_SHAPES.get(op.kind)(op, program)
    return shapes if isinstance(shapes, list) else [shapes]


def resized_outputs(op: QOp, tensors: Mapping[str, QTensor]) -> dict[str, QTensor]:
    """``op``'s outputs with the shapes its rule gives from ``tensors`` (TFLite's Prepare resizing them),
    for outputs whose stored shape is a placeholder. An op whose rule cannot tell before Prepare (a
    windowed op needs its parameters) or whose operands do not fit keeps its stored shapes: the check
    after Prepare (``check_output_shapes``) judges them; a kind outside the table is refused by name later.
    """
    scratch = QProgram(name="", tensors=tensors, ops=(op,), inputs=(), outputs=())
    try:
        shapes = output_shapes(op, scratch)
    except (ShapeMismatch, IndexError, KeyError, RegistryError):
        return {}
    return {name: replace(tensors[name], shape=shape) for name, shape in zip(op.outputs, shapes)
            if tensors[name].data is None}


def check_output_shapes(program: QProgram) -> None:
    """Check every op: operands well formed, output shapes the ones TFLite would give.

    Raises:
        ModelLoadError: naming the op, its index and output, and what does not fit (a corrupt file).
    """
    for i, op in enumerate(program.ops):
        where = f"{op.kind} operator {i} → '{op.outputs[0]}'"
        try:
            wants = output_shapes(op, program)
        except (ShapeMismatch, IndexError, KeyError) as exc:
            raise ModelLoadError(f"'{program.name}': {where}: {exc or 'missing operand'} (corrupt file?)") from exc
        if len(wants) != len(op.outputs):
            raise ModelLoadError(f"'{program.name}': {where} has {len(op.outputs)} outputs, but its inputs give "
                                 f"{len(wants)} (corrupt file?)")
        for name, want in zip(op.outputs, wants):
            have = program.tensor(name).shape
            if have != want:
                raise ModelLoadError(f"'{program.name}': {where} has output '{name}' of shape {have}, but its inputs "
                                     f"give {want} (corrupt file?)")


def _shape(program: QProgram, op: QOp, i: int, rank: int | None = None) -> Shape:
    if len(op.inputs) <= i or not op.inputs[i]:
        raise ShapeMismatch(f"input {i} is missing")
    shape = program.tensor(op.inputs[i]).shape
    if rank is not None and len(shape) != rank:
        raise ShapeMismatch(f"input {i} has rank {len(shape)}, not {rank}")
    return shape


def _constant(program: QProgram, op: QOp, i: int, shape: Shape | None = None) -> np.ndarray:
    """Input ``i``'s constant value (of ``shape``, when given) as int64."""
    _shape(program, op, i)
    data = program.tensor(op.inputs[i]).data
    if data is None or (shape is not None and data.shape != shape):
        raise ShapeMismatch(f"input {i} must be a constant" + (f" of shape {shape}" if shape is not None else ""))
    return data.astype(np.int64)


def _axis(program: QProgram, op: QOp, i: int, rank: int) -> int:
    """A one-element constant axis (SPLIT, SPLIT_V), negative counting from the end, within ``rank``."""
    axis = _constant(program, op, i)
    if axis.size != 1 or not -rank <= int(axis.reshape(-1)[0]) < rank:
        raise ShapeMismatch(f"axis {axis.tolist()} for an input of rank {rank}")
    return int(axis.reshape(-1)[0]) % rank


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


@OUTPUT_SHAPES.register("TRANSPOSE_CONV")
def _transpose_conv(op: QOp, program: QProgram) -> Shape:
    """``transpose_conv.cc``: inputs (output_shape, weights, input[, bias]); the output takes the constant
    output_shape, which the kernel reads with the batch of the input and the depth of the weights."""
    w = _shape(program, op, 1, 4)
    x = _shape(program, op, 2, 4)
    out = tuple(int(d) for d in _constant(program, op, 0, (4,)))
    if x[3] != w[3]:
        raise ShapeMismatch(f"{x[3]} input channels for filters of depth {w[3]}")
    if len(op.inputs) > 3 and op.inputs[3] and _shape(program, op, 3) != (w[0],):
        raise ShapeMismatch(f"bias shape {_shape(program, op, 3)} for {w[0]} output channels")
    if min(out) < 1 or out[0] != x[0] or out[3] != w[0]:
        raise ShapeMismatch(f"output shape {out} for a batch of {x[0]} and {w[0]} filters")
    return out


@OUTPUT_SHAPES.register("BATCH_MATMUL")
def _batch_matmul(op: QOp, program: QProgram) -> Shape:
    """``batch_matmul.cc``: ranks 2 to 5, the batch dimensions broadcast (aligned from the right), the
    reduced dimensions (the last of lhs and the second last of rhs, or the other one when adjoint) equal."""
    lhs, rhs = _shape(program, op, 0), _shape(program, op, 1)
    if not (2 <= len(lhs) <= 5 and 2 <= len(rhs) <= 5):
        raise ShapeMismatch(f"operands of rank {len(lhs)} and {len(rhs)} (2 to 5 allowed)")
    rank = max(len(lhs), len(rhs))
    lhs, rhs = (1,) * (rank - len(lhs)) + lhs, (1,) * (rank - len(rhs)) + rhs
    adj_x, adj_y = bool(op.options.get("adj_x", False)), bool(op.options.get("adj_y", False))
    rows, lhs_depth = (lhs[-1], lhs[-2]) if adj_x else (lhs[-2], lhs[-1])
    rhs_depth, cols = (rhs[-1], rhs[-2]) if adj_y else (rhs[-2], rhs[-1])
    if lhs_depth != rhs_depth:
        raise ShapeMismatch(f"operands {lhs} and {rhs} do not agree on the reduced dimension")
    batch = []
    for a, b in zip(lhs[:-2], rhs[:-2]):
        if a != b and 1 not in (a, b):
            raise ShapeMismatch(f"batch dimensions of {lhs} and {rhs} do not broadcast")
        batch.append(b if a == 1 else a)
    return (*batch, rows, cols)


@OUTPUT_SHAPES.register("ADD", "SUB", "MUL", "SQUARED_DIFFERENCE", "DIV", "MINIMUM")
def _broadcast(op: QOp, program: QProgram) -> Shape:
    return _broadcast_shapes(_shape(program, op, 0), _shape(program, op, 1))


@OUTPUT_SHAPES.register("SOFTMAX", "LOGISTIC", "TANH", "HARD_SWISH", "RELU", "RELU6", "RELU_N1_TO_1", "GELU",
                        "RSQRT", "QUANTIZE", "DEQUANTIZE", "SQRT", "NEG", "LEAKY_RELU")
def _same(op: QOp, program: QProgram) -> Shape:
    return _shape(program, op, 0)


@OUTPUT_SHAPES.register("RESHAPE")
def _reshape(op: QOp, program: QProgram) -> Shape:
    """``reshape.cc`` GetOutputShape: the constant 1-D shape input, else the ``new_shape`` option, else the
    stored shape; one -1 takes the elements left."""
    size = math.prod(_shape(program, op, 0))
    target = program.tensor(op.outputs[0]).shape
    if len(op.inputs) > 1 and op.inputs[1] and program.tensor(op.inputs[1]).data is not None \
            and len(program.tensor(op.inputs[1]).shape) == 1:
        target = tuple(int(d) for d in _constant(program, op, 1))
    elif "new_shape" in op.options:
        target = tuple(int(d) for d in op.options["new_shape"])
    if target.count(-1) == 1:
        known = math.prod(d for d in target if d != -1)
        target = tuple(size // known if d == -1 and known else d for d in target)
    if math.prod(target) != size or any(d < 0 for d in target):
        raise ShapeMismatch(f"{size} elements cannot take the shape {target}")
    return target


@OUTPUT_SHAPES.register("PAD", "MIRROR_PAD")
def _pad(op: QOp, program: QProgram) -> Shape:
    """``pad.cc`` and ``mirror_pad.cc``: each axis grows by its constant paddings ``[rank, 2]`` (MIRROR_PAD's
    limits on them, below the axis size, are its Prepare's to check)."""
    x = _shape(program, op, 0)
    paddings = _constant(program, op, 1, (len(x), 2))
    if np.any(paddings < 0):
        raise ShapeMismatch("negative paddings")
    return tuple(int(d + a + b) for d, (a, b) in zip(x, paddings))


@OUTPUT_SHAPES.register("PADV2")
def _pad_v2(op: QOp, program: QProgram) -> Shape:
    """PAD's shape, and a pad value of one element of the input's type (``pad.cc``)."""
    value = program.tensor(op.inputs[2]) if len(op.inputs) > 2 and op.inputs[2] else None
    if value is not None and (math.prod(value.shape) != 1 or value.dtype != program.tensor(op.inputs[0]).dtype):
        raise ShapeMismatch(f"pad value of shape {value.shape} and type {value.dtype}")
    return _pad(op, program)


@OUTPUT_SHAPES.register("MEAN", "REDUCE_MAX")
def _mean(op: QOp, program: QProgram) -> Shape:
    """``reduce.cc`` ``ResizeOutputTensor``: the constant axes (negative from the end, repeats counted
    once) become 1 with ``keep_dims``, else are dropped."""
    x = _shape(program, op, 0)
    axes = _constant(program, op, 1).reshape(-1)
    if np.any(axes < -len(x)) or np.any(axes >= len(x)):
        raise ShapeMismatch(f"axes {axes.tolist()} for an input of rank {len(x)}")
    reduced = {int(a) % len(x) for a in axes}
    if op.options.get("keep_dims", False):
        return tuple(1 if i in reduced else d for i, d in enumerate(x))
    return tuple(d for i, d in enumerate(x) if i not in reduced)


@OUTPUT_SHAPES.register("SPLIT")
def _split(op: QOp, program: QProgram) -> list[Shape]:
    """``split.cc``: inputs (axis, x); ``num_splits`` equal pieces along the constant axis."""
    x = _shape(program, op, 1)
    axis = _axis(program, op, 0, len(x))
    pieces = int(op.options.get("num_splits", len(op.outputs)))
    if pieces != len(op.outputs) or pieces < 1 or x[axis] % pieces:
        raise ShapeMismatch(f"{len(op.outputs)} outputs for {pieces} splits of a dimension of {x[axis]}")
    return [(*x[:axis], x[axis] // pieces, *x[axis + 1:])] * pieces


@OUTPUT_SHAPES.register("SPLIT_V")
def _split_v(op: QOp, program: QProgram) -> list[Shape]:
    """``split_v.cc``: inputs (x, size_splits, axis); one constant size per output, at most one -1 (the
    rest of the dimension), summing to the dimension along the constant axis."""
    x = _shape(program, op, 0)
    axis = _axis(program, op, 2, len(x))
    sizes = _constant(program, op, 1, (len(op.outputs),)).tolist()
    known = sum(s for s in sizes if s != -1)
    if sizes.count(-1) == 1 and 0 <= known <= x[axis]:
        sizes[sizes.index(-1)] = x[axis] - known
    if any(s < 0 for s in sizes) or sum(sizes) != x[axis]:
        raise ShapeMismatch(f"sizes {_constant(program, op, 1).tolist()} do not split a dimension of {x[axis]}")
    return [(*x[:axis], s, *x[axis + 1:]) for s in sizes]


@OUTPUT_SHAPES.register("TILE")
def _tile(op: QOp, program: QProgram) -> Shape:
    """``tile.cc``: each axis times its constant multiple."""
    x = _shape(program, op, 0)
    multiples = _constant(program, op, 1, (len(x),))
    if np.any(multiples < 0):
        raise ShapeMismatch(f"negative multiples {multiples.tolist()}")
    return tuple(int(d * m) for d, m in zip(x, multiples))


@OUTPUT_SHAPES.register("PRELU")
def _prelu(op: QOp, program: QProgram) -> Shape:
    """``activations.cc`` PreluPrepare: the input and alpha broadcast."""
    return _broadcast(op, program)


@OUTPUT_SHAPES.register("DEPTH_TO_SPACE")
def _depth_to_space(op: QOp, program: QProgram) -> Shape:
    """``depth_to_space.cc``: 4-D, channels divisible by ``block_size**2``."""
    n, h, w, c = _shape(program, op, 0, 4)
    b = int(op.options.get("block_size", 0))
    if b < 1 or c % (b * b):
        raise ShapeMismatch(f"{c} channels do not split into blocks of {b} x {b}")
    return (n, h * b, w * b, c // (b * b))


@OUTPUT_SHAPES.register("SPACE_TO_DEPTH")
def _space_to_depth(op: QOp, program: QProgram) -> Shape:
    """``space_to_depth.cc``: 4-D, height and width divisible by ``block_size``."""
    n, h, w, c = _shape(program, op, 0, 4)
    b = int(op.options.get("block_size", 0))
    if b < 1 or h % b or w % b:
        raise ShapeMismatch(f"a {h} x {w} map does not split into blocks of {b} x {b}")
    return (n, h // b, w // b, c * b * b)


@OUTPUT_SHAPES.register("UNPACK")
def _unpack(op: QOp, program: QProgram) -> list[Shape]:
    """``unpack.cc``: ``num`` outputs, the input's shape without ``axis`` (negative counts from the end)."""
    x = _shape(program, op, 0)
    axis = int(op.options.get("axis", 0))
    if not -len(x) <= axis < len(x) or x[axis % len(x)] != int(op.options.get("num", len(op.outputs))):
        raise ShapeMismatch(f"axis {axis} of {x} does not unpack into {len(op.outputs)} outputs")
    axis %= len(x)
    return [(*x[:axis], *x[axis + 1:])] * x[axis]


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


@OUTPUT_SHAPES.register("GATHER")
def _gather(op: QOp, program: QProgram) -> Shape:
    """``gather.cc``: ``params.shape[:axis] + indices.shape + params.shape[axis + 1:]`` (``batch_dims`` 0)."""
    params, indices = _shape(program, op, 0), _shape(program, op, 1)
    axis = int(op.options.get("axis", 0))
    if not -len(params) <= axis < len(params) or int(op.options.get("batch_dims", 0)):
        raise ShapeMismatch(f"axis {axis} (batch_dims {op.options.get('batch_dims', 0)}) for params of rank "
                            f"{len(params)}")
    axis %= len(params)
    return (*params[:axis], *indices, *params[axis + 1:])


@OUTPUT_SHAPES.register("CAST")
def _cast(op: QOp, program: QProgram) -> Shape:
    return _shape(program, op, 0)


def _broadcast_shapes(*shapes: Shape) -> Shape:
    try:
        return tuple(np.broadcast_shapes(*shapes))
    except ValueError as exc:
        raise ShapeMismatch(f"input shapes do not broadcast: {exc}") from None


@OUTPUT_SHAPES.register("LOGICAL_AND", "EQUAL")
def _logical_and(op: QOp, program: QProgram) -> Shape:
    return _broadcast(op, program)


@OUTPUT_SHAPES.register("SELECT_V2")
def _select_v2(op: QOp, program: QProgram) -> Shape:
    return _broadcast_shapes(*(_shape(program, op, i) for i in range(3)))


@OUTPUT_SHAPES.register("BROADCAST_TO")
def _broadcast_to(op: QOp, program: QProgram) -> Shape:
    """``broadcast_to.cc``: the constant shape, which the input must broadcast to (right-aligned)."""
    x = _shape(program, op, 0)
    shape = tuple(int(d) for d in _constant(program, op, 1))
    if len(x) > len(shape) or _broadcast_shapes(x, shape) != shape:
        raise ShapeMismatch(f"an input of shape {x} does not broadcast to {shape}")
    return shape
