"""Data movement: RESHAPE, TRANSPOSE, STRIDED_SLICE, SPLIT and SPLIT_V, one kernel each for every mode
(they copy values whatever their type, and take no Prepare).

* RESHAPE: ``kernels/reshape.cc``, a copy of the bytes under the output's static shape.
* TRANSPOSE: ``reference/transpose.h``.
* STRIDED_SLICE: ``reference/strided_slice.h`` with ``strided_slice_logic.h``'s index rules.
* SPLIT, SPLIT_V: ``reference/reference_ops.h`` ``Split`` (``kernels/split.cc``, ``kernels/split_v.cc``):
  consecutive pieces of the input along one axis.
* TILE (``kernels/tile.cc``): the input repeated ``multiples[i]`` times along each axis.
* DEPTH_TO_SPACE (``reference_ops::DepthToSpace``): ``out[n, h * b + i, w * b + j, c] = x[n, h, w, (i * b +
  j) * C_out + c]``.
* SPACE_TO_DEPTH (``reference_ops::SpaceToDepth``), its inverse: ``out[n, h, w, (i * b + j) * C + c] =
  x[n, h * b + i, w * b + j, c]``.
* UNPACK (``kernels/unpack.cc``, ``reference_ops.h`` ``Unpack``): one output per index along ``axis``,
  which the outputs lack.
"""
from __future__ import annotations

import numpy as np

from edgeopt.errors import UnsupportedOpError
from edgeopt.qprogram import MODES, QOp, QProgram
from edgeopt.runtimes.reference.registry import KERNELS, constant, output_shape


def reshape(x: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """``x`` in row-major order under ``shape`` (same element count)."""
    return x.reshape(shape)


@KERNELS.register("RESHAPE", mode=MODES)
def _run_reshape(op: QOp, args: list[np.ndarray], program: QProgram) -> np.ndarray:
    x = args[0]
    return reshape(x, (x.shape[0],) + output_shape(op, program))


def transpose(x: np.ndarray, perm: tuple[int, ...]) -> np.ndarray:
    """``out.shape[i] = x.shape[perm[i]]``, ``out[..., i_k, ...] = x[... i at axis perm[k] ...]``."""
    return np.ascontiguousarray(np.transpose(x, perm))


@KERNELS.register("TRANSPOSE", mode=MODES)
def _run_transpose(op: QOp, args: list[np.ndarray], program: QProgram) -> np.ndarray:
    perm = [int(a) for a in constant(args[1])]
    return transpose(args[0], (0, *(a + 1 for a in perm)))


def _clamp(v: int, lo: int, hi: int) -> int:
    return max(lo, min(hi, v))


def axis_indices(
    size: int, begin: int, end: int, stride: int, begin_masked: bool = False, end_masked: bool = False
) -> np.ndarray:
    """The indices one axis keeps (``StartForAxis`` / ``StopForAxis`` without shrink or offset).

    A negative begin or end counts from the end (``+ size``); both are then clamped into ``[0, size]``
    for a positive stride and ``[-1, size - 1]`` for a negative one (where -1 means "before index 0");
    a masked begin/end takes the first/last extreme of the iteration direction.
    """
    if size == 0:
        return np.arange(0)
    lo, hi = (0, size) if stride > 0 else (-1, size - 1)
    start = lo if begin_masked and stride > 0 else hi if begin_masked else begin
    stop = hi if end_masked and stride > 0 else lo if end_masked else end
    start = _clamp(start + size if start < 0 and not begin_masked else start, lo, hi)
    stop = _clamp(stop + size if stop < 0 and not end_masked else stop, lo, hi)
    return np.arange(start, stop, stride)


def strided_slice(
    x: np.ndarray,
    begin: np.ndarray,
    end: np.ndarray,
    strides: np.ndarray,
    begin_mask: int = 0,
    end_mask: int = 0,
) -> np.ndarray:
    """``x`` restricted, along each axis d, to ``axis_indices(x.shape[d], begin[d], end[d], strides[d])``."""
    for axis, size in enumerate(x.shape):
        keep = axis_indices(
            size, int(begin[axis]), int(end[axis]), int(strides[axis]),
            bool(begin_mask >> axis & 1), bool(end_mask >> axis & 1),
        )
        x = np.take(x, keep, axis=axis)
    return x


@KERNELS.register("STRIDED_SLICE", mode=MODES)
def _run_strided_slice(op: QOp, args: list[np.ndarray], program: QProgram) -> np.ndarray:
    for unsupported in ("ellipsis_mask", "new_axis_mask", "shrink_axis_mask", "offset"):
        if op.options.get(unsupported):
            raise UnsupportedOpError(op.kind, op.source, f"{unsupported} has no kernel here")
    x = args[0]
    begin, end, strides = (constant(a) for a in args[1:4])
    return strided_slice(
        x,
        np.concatenate([[0], begin]),
        np.concatenate([[x.shape[0]], end]),
        np.concatenate([[1], strides]),
        int(op.options.get("begin_mask", 0)) << 1,
        int(op.options.get("end_mask", 0)) << 1,
    )


def split(x: np.ndarray, axis: int, sizes: list[int]) -> tuple[np.ndarray, ...]:
    """``x`` cut along ``axis`` into consecutive pieces of ``sizes`` (summing to ``x.shape[axis]``)."""
    bounds = np.cumsum(sizes)[:-1]
    return tuple(np.ascontiguousarray(piece) for piece in np.split(x, bounds, axis=axis))


def _sizes(op: QOp, program: QProgram, axis: int) -> list[int]:
    return [program.tensor(name).shape[axis] for name in op.outputs]


@KERNELS.register("SPLIT", mode=("int8", "float32"))
def _run_split(op: QOp, args: list[np.ndarray], program: QProgram) -> tuple[np.ndarray, ...]:
    """Inputs (axis, x): ``num_splits`` equal pieces; a negative axis counts from the end."""
    x = args[1]
    axis = int(constant(args[0]).reshape(-1)[0]) % (x.ndim - 1)
    return split(x, axis + 1, _sizes(op, program, axis))


@KERNELS.register("SPLIT_V", mode=("int8", "float32"))
def _run_split_v(op: QOp, args: list[np.ndarray], program: QProgram) -> tuple[np.ndarray, ...]:
    """Inputs (x, size_splits, axis): pieces of the output tensors' sizes (one size may be -1 in the
    file; the outputs' static shapes already resolve it)."""
    x = args[0]
    axis = int(constant(args[2]).reshape(-1)[0]) % (x.ndim - 1)
    return split(x, axis + 1, _sizes(op, program, axis))


@KERNELS.register("TILE", mode=("int8", "float32"))
def _run_tile(op: QOp, args: list[np.ndarray], program: QProgram) -> np.ndarray:
    """Inputs (x, multiples): ``np.tile`` over the program's axes (the run axis is not repeated)."""
    multiples = constant(args[1]).reshape(-1).astype(np.int64)
    return np.tile(args[0], (1, *multiples))


@KERNELS.register("UNPACK", mode=("int8", "float32"))
def _run_unpack(op: QOp, args: list[np.ndarray], program: QProgram) -> tuple[np.ndarray, ...]:
    """``x`` sliced at each index along ``axis`` (negative counts from the end), that axis removed."""
    x = args[0]
    axis = int(op.options.get("axis", 0)) % (x.ndim - 1)
    return tuple(np.ascontiguousarray(np.take(x, i, axis=axis + 1)) for i in range(x.shape[axis + 1]))


@KERNELS.register("DEPTH_TO_SPACE", mode=("int8", "float32"))
def _run_depth_to_space(op: QOp, args: list[np.ndarray], program: QProgram) -> np.ndarray:
    """Blocks of ``block_size**2`` channels spread over ``block_size x block_size`` pixels (NHWC)."""
    x = args[0]
    b = int(op.options["block_size"])
    r, n, h, w, c = x.shape
    y = x.reshape(r, n, h, w, b, b, c // (b * b)).transpose(0, 1, 2, 4, 3, 5, 6)
    return np.ascontiguousarray(y.reshape(r, n, h * b, w * b, c // (b * b)))


@KERNELS.register("SPACE_TO_DEPTH", mode=("int8", "float32"))
def _run_space_to_depth(op: QOp, args: list[np.ndarray], program: QProgram) -> np.ndarray:
    """Each ``block_size x block_size`` block of pixels stacked into ``block_size**2`` channel groups (NHWC)."""
    x = args[0]
    b = int(op.options["block_size"])
    r, n, h, w, c = x.shape
    y = x.reshape(r, n, h // b, b, w // b, b, c).transpose(0, 1, 2, 4, 3, 5, 6)
    return np.ascontiguousarray(y.reshape(r, n, h // b, w // b, b * b * c))
