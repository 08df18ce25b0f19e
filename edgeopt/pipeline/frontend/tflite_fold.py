"""Shape-computing subgraphs of a ``.tflite`` file, evaluated into constants at load.

TensorFlow's converter writes the new shape of a RESHAPE (Keras ``Flatten``, ``Reshape`` with a batch
of ``None``) as a chain SHAPE → STRIDED_SLICE → PACK, sometimes with CONCATENATION, GATHER, CAST or
integer arithmetic. Every value in such a chain is static: SHAPE reads only the static shape of its
input. ``fold_constants`` evaluates, in execution order, every op of ``FOLDERS`` whose inputs are all
constant (SHAPE: whose input has a static shape) and whose tensors carry no quantization, and turns its
outputs into constants. In execution order each op's inputs are final before it is visited, so one
pass reaches the fixed point: the chain disappears and RESHAPE reads a constant shape. None of these
kinds needs to run at run time, so none is in ``qprogram.OPS``.

Each folder follows its TFLite kernel on plain integer values (``kernels/shape.cc``, ``pack.cc``,
``strided_slice.cc`` with ``strided_slice_logic.h``, ``gather.cc``, ``cast.cc``, ...).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from edgeopt.errors import EdgeoptError, ModelLoadError, UnsupportedOpError, first_line
from edgeopt.pipeline.frontend.tflite_shapes import resized_outputs
from edgeopt.qprogram import QOp, QTensor
from edgeopt.registry import Registry
from edgeopt.runtimes.reference.movement import axis_indices

Folder = Callable[[QOp, list[np.ndarray], list[QTensor]], np.ndarray]
"""``(op, input values, input tensors) → output value`` (SHAPE reads the tensor, the others the values)."""
FOLDERS: Registry[Folder] = Registry("TFLite constant folder")


class CannotFold(ValueError):
    """The folder's own finding: the operands do not fit the op (a corrupt file)."""


def fold_constants(ops: list[tuple[int, QOp]], tensors: Mapping[str, QTensor], name: str,
                   dynamic: frozenset[str] = frozenset()) -> tuple[list[tuple[int, QOp]], dict[str, QTensor]]:
    """Evaluate the shape-computing ops of a file into constants, and give the outputs of the ops left
    the shapes TFLite's Prepare gives them where the file's shape is a placeholder (``dynamic``).

    In execution order, so that a SHAPE reads the final shape of its input, and a RESHAPE whose target a
    chain computes has its shape before the ops after it are resized.

    Args:
        ops: ``(operator index in the file, op)`` in execution order.
        tensors: every tensor by name.
        name: the file's name, for errors.
        dynamic: the tensors whose stored shape has unknown dimensions (``shape_signature`` with -1).

    Returns:
        The ops left to run (same order, same indices) and the tensors, the folded outputs now constants.

    Raises:
        ModelLoadError: a foldable op whose operands do not fit it (corrupt file).
        UnsupportedOpError: a foldable op with an option its folder cannot evaluate (named by op and node).
    """
    values = dict(tensors)
    kept: list[tuple[int, QOp]] = []
    for index, op in ops:
        if not _foldable(op, values):
            if op.kind in ("EXPAND_DIMS", "SQUEEZE"):
                op, shape = as_reshape(op, values)
                values[shape.name] = shape
            kept.append((index, op))
            if any(t in dynamic for t in op.outputs):
                values.update(resized_outputs(op, values))
            continue
        where = f"operator {index} → '{op.outputs[0]}'"
        args = [values[t] for t in op.inputs if t]
        # QTensor stores a scalar constant as shape (1,) (``frozen_array``); the folders need its own rank.
        arrays = [None if a.data is None else a.data.reshape(a.shape) for a in args]
        try:
            result = FOLDERS.get(op.kind)(op, arrays, args)
        except EdgeoptError:
            raise
        except (CannotFold, IndexError, ValueError, TypeError) as exc:
            raise ModelLoadError(f"'{name}': {op.kind} {where} cannot be evaluated at load: "
                                 f"{first_line(exc)} (corrupt file?)") from exc
        out = values[op.outputs[0]]
        result = np.asarray(result)
        if tuple(result.shape) != out.shape:
            raise ModelLoadError(f"'{name}': {op.kind} {where} has output of shape {out.shape}, but its inputs "
                                 f"give {tuple(result.shape)} (corrupt file?)")
        values[out.name] = QTensor(out.name, out.shape, out.dtype, None, result.astype(out.dtype))
    return kept, values


def as_reshape(op: QOp, tensors: Mapping[str, QTensor]) -> tuple[QOp, QTensor]:
    """EXPAND_DIMS or SQUEEZE of an activation as the RESHAPE it is (both copy the bytes under a new
    shape: ``expand_dims.cc``, ``squeeze.cc``), reading a new constant with the output shape, so that
    no kernel of their own is needed. A non-constant axis is refused by name."""
    x = tensors[op.inputs[0]].shape
    if op.kind == "EXPAND_DIMS":
        axis_tensor = tensors[op.inputs[1]] if len(op.inputs) > 1 and op.inputs[1] else None
        if axis_tensor is None or axis_tensor.data is None or axis_tensor.data.size != 1:
            raise UnsupportedOpError(op.kind, op.outputs[0], "the axis must be one constant value")
        axis = int(axis_tensor.data.reshape(-1)[0])
        axis += len(x) + 1 if axis < 0 else 0
        shape = (*x[:axis], 1, *x[axis:])
    else:
        dims = {int(d) % len(x) for d in op.options.get("squeeze_dims", ())} or {
            i for i, d in enumerate(x) if d == 1}
        shape = tuple(d for i, d in enumerate(x) if i not in dims)
    name = f"{op.outputs[0]}/shape"
    while name in tensors:
        name += "#"
    constant = QTensor(name, (len(shape),), "int32", data=np.array(shape, np.int32))
    return QOp("RESHAPE", (op.inputs[0], name), op.outputs, {}, source=op.source), constant


def _foldable(op: QOp, tensors: Mapping[str, QTensor]) -> bool:
    if op.kind not in FOLDERS or len(op.outputs) != 1:
        return False
    args = [tensors[t] for t in op.inputs if t]
    if not args or any(tensors[t].qparams is not None for t in op.outputs):
        return False
    if op.kind == "SHAPE":  # reads only the static shape, of a constant or an activation alike
        return True
    return all(a.is_constant and a.qparams is None for a in args)


def _scalar_int(value: np.ndarray) -> int:
    if value.size != 1:
        raise CannotFold(f"expected one value, got shape {value.shape}")
    return int(value.reshape(-1)[0])


@FOLDERS.register("SHAPE")
def _shape(op: QOp, values: list[np.ndarray], tensors: list[QTensor]) -> np.ndarray:
    """``shape.cc``: the input's static shape as a vector."""
    return np.array(tensors[0].shape, dtype=np.int64)


@FOLDERS.register("PACK")
def _pack(op: QOp, values: list[np.ndarray], tensors: list[QTensor]) -> np.ndarray:
    """``pack.cc``: the inputs (one shape) stacked along a new ``axis`` (negative counts from the end)."""
    return np.stack(values, axis=int(op.options.get("axis", 0)))


@FOLDERS.register("CONCATENATION")
def _concatenation(op: QOp, values: list[np.ndarray], tensors: list[QTensor]) -> np.ndarray:
    """``concatenation.cc`` on plain values (no fused activation: it applies to float and quantized only)."""
    return np.concatenate(values, axis=int(op.options.get("axis", 0)))


@FOLDERS.register("GATHER")
def _gather(op: QOp, values: list[np.ndarray], tensors: list[QTensor]) -> np.ndarray:
    """``gather.cc``: ``params`` indexed by ``indices`` along ``axis``; out-of-range indices are an error."""
    if int(op.options.get("batch_dims", 0)):
        raise UnsupportedOpError(op.kind, op.outputs[0], "batch_dims has no evaluation at load here")
    params, indices = values
    axis = int(op.options.get("axis", 0)) % params.ndim
    if np.any(indices < 0) or np.any(indices >= params.shape[axis]):
        raise CannotFold(f"indices {indices.tolist()} out of range for axis {axis} of size {params.shape[axis]}")
    return np.take(params, indices.astype(np.int64), axis=axis)


@FOLDERS.register("CAST")
def _cast(op: QOp, values: list[np.ndarray], tensors: list[QTensor]) -> np.ndarray:
    """``cast.cc``: a C++ ``static_cast`` to the output type, which the caller's ``astype`` performs."""
    return values[0]


@FOLDERS.register("RESHAPE")
def _reshape(op: QOp, values: list[np.ndarray], tensors: list[QTensor]) -> np.ndarray:
    """``reshape.cc``: the values under the shape input (else the ``new_shape`` option); one -1 takes the rest."""
    shape = values[1].reshape(-1) if len(values) > 1 else np.array(op.options.get("new_shape", ()))
    return values[0].reshape(tuple(int(d) for d in shape))


@FOLDERS.register("SQUEEZE")
def _squeeze(op: QOp, values: list[np.ndarray], tensors: list[QTensor]) -> np.ndarray:
    """``squeeze.cc``: the size-1 axes of ``squeeze_dims`` removed (all of them when it is empty)."""
    dims = tuple(int(d) for d in op.options.get("squeeze_dims", ()))
    return np.squeeze(values[0], axis=dims or None)


@FOLDERS.register("EXPAND_DIMS")
def _expand_dims(op: QOp, values: list[np.ndarray], tensors: list[QTensor]) -> np.ndarray:
    """``expand_dims.cc``: a size-1 axis inserted at the scalar second input (negative counts from the end)."""
    return np.expand_dims(values[0], _scalar_int(values[1]))


_ARITHMETIC: Mapping[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "ADD": np.add, "SUB": np.subtract, "MUL": np.multiply, "FLOOR_DIV": np.floor_divide,
}


@FOLDERS.register(*_ARITHMETIC)
def _arithmetic(op: QOp, values: list[np.ndarray], tensors: list[QTensor]) -> np.ndarray:
    """Integer ADD, SUB, MUL, FLOOR_DIV with broadcasting (sizes of dimensions, products of them)."""
    a, b = (v.astype(np.int64) for v in values)
    if op.kind == "FLOOR_DIV" and np.any(b == 0):
        raise CannotFold("division by zero")
    return _ARITHMETIC[op.kind](a, b)


@FOLDERS.register("REDUCE_PROD")
def _reduce_prod(op: QOp, values: list[np.ndarray], tensors: list[QTensor]) -> np.ndarray:
    """``reduce.cc`` product over the axes of the second input (the element count of a flattened block)."""
    x, axes = values[0].astype(np.int64), values[1].reshape(-1)
    axes_tuple = tuple(sorted({int(a) % x.ndim for a in axes}))
    return np.prod(x, axis=axes_tuple, keepdims=bool(op.options.get("keep_dims", False)))


@FOLDERS.register("STRIDED_SLICE")
def _strided_slice(op: QOp, values: list[np.ndarray], tensors: list[QTensor]) -> np.ndarray:
    """``strided_slice_logic.h`` with begin, end and shrink-axis masks and ``offset`` (end = begin + end);
    a shrunk axis keeps the one element at ``begin`` and disappears."""
    for unsupported in ("ellipsis_mask", "new_axis_mask"):
        if op.options.get(unsupported):
            raise UnsupportedOpError(op.kind, op.outputs[0], f"{unsupported} has no evaluation at load here")
    x = values[0]
    begin, end, strides = (v.astype(np.int64).reshape(-1) for v in values[1:4])
    if not len(begin) == len(end) == len(strides) == x.ndim:
        raise CannotFold(f"begin, end and strides of lengths {len(begin)}, {len(end)}, {len(strides)} "
                         f"for rank {x.ndim}")
    if np.any(strides == 0):
        raise CannotFold("a stride is 0")
    begin_mask, end_mask = int(op.options.get("begin_mask", 0)), int(op.options.get("end_mask", 0))
    shrink = int(op.options.get("shrink_axis_mask", 0))
    offset = bool(op.options.get("offset", False))
    shape: list[int] = []
    for axis, size in enumerate(x.shape):
        b, e, s = int(begin[axis]), int(end[axis]), int(strides[axis])
        if shrink >> axis & 1:
            i = b + size if b < 0 else b
            if not 0 <= i < size:
                raise CannotFold(f"index {b} out of range for axis {axis} of size {size}")
            keep = np.array([i])
        else:
            keep = axis_indices(size, b, b + e if offset else e, s, bool(begin_mask >> axis & 1),
                                bool(end_mask >> axis & 1))
            shape.append(len(keep))
        x = np.take(x, keep, axis=axis)
    return x.reshape(shape)
