"""STRIDED_SLICE: TFLite ``reference/strided_slice.h`` with ``strided_slice_logic.h``'s index rules."""
from __future__ import annotations

import numpy as np

from edgeopt.errors import UnsupportedOpError
from edgeopt.qprogram import QOp, QProgram
from edgeopt.runtimes.reference.registry import KERNELS, constant


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


@KERNELS.register("STRIDED_SLICE")
def _run_strided_slice(op: QOp, args: list[np.ndarray], program: QProgram) -> np.ndarray:
    for unsupported in ("ellipsis_mask", "new_axis_mask", "shrink_axis_mask", "offset"):
        if op.options.get(unsupported):
            raise UnsupportedOpError(op.kind, op.source, f"{unsupported} has no integer kernel here")
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
