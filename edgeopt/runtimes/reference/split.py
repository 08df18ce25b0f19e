"""SPLIT and SPLIT_V: TFLite ``reference/reference_ops.h`` ``Split`` (``kernels/split.cc``,
``kernels/split_v.cc``): consecutive pieces of the input along one axis, bytes copied unchanged."""
from __future__ import annotations

import numpy as np

from edgeopt.qprogram import QOp, QProgram
from edgeopt.runtimes.reference.registry import KERNELS, constant


def split(x: np.ndarray, axis: int, sizes: list[int]) -> tuple[np.ndarray, ...]:
    """``x`` cut along ``axis`` into consecutive pieces of ``sizes`` (summing to ``x.shape[axis]``)."""
    bounds = np.cumsum(sizes)[:-1]
    return tuple(np.ascontiguousarray(piece) for piece in np.split(x, bounds, axis=axis))


def _sizes(op: QOp, program: QProgram, axis: int) -> list[int]:
    return [program.tensor(name).shape[axis] for name in op.outputs]


@KERNELS.register("SPLIT")
def _run_split(op: QOp, args: list[np.ndarray], program: QProgram) -> tuple[np.ndarray, ...]:
    """Inputs (axis, x): ``num_splits`` equal pieces; a negative axis counts from the end."""
    x = args[1]
    axis = int(constant(args[0]).reshape(-1)[0]) % (x.ndim - 1)
    return split(x, axis + 1, _sizes(op, program, axis))


@KERNELS.register("SPLIT_V")
def _run_split_v(op: QOp, args: list[np.ndarray], program: QProgram) -> tuple[np.ndarray, ...]:
    """Inputs (x, size_splits, axis): pieces of the output tensors' sizes (one size may be -1 in the
    file; the outputs' static shapes already resolve it)."""
    x = args[0]
    axis = int(constant(args[2]).reshape(-1)[0]) % (x.ndim - 1)
    return split(x, axis + 1, _sizes(op, program, axis))
