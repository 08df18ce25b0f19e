"""GATHER and CAST, one kernel each for every mode they run in (they compute no arithmetic on quantized
values, so they take no Prepare).

* GATHER: ``kernels/gather.cc`` with ``reference_ops.h`` ``Gather`` (``batch_dims`` 0):
  ``out[a..., i..., b...] = params[a..., indices[i...], b...]`` along ``axis``; the values are copied, so
  an int8 output has its input's encoding. A position outside ``[0, dim)`` fails the op, as in TFLite.
* CAST: ``kernels/cast.cc``: ``static_cast`` of each element; to bool, ``x != 0``.
"""
from __future__ import annotations

import numpy as np

from edgeopt.errors import DataError
from edgeopt.qprogram import QOp, QProgram
from edgeopt.runtimes.reference.registry import KERNELS


def gather(params: np.ndarray, indices: np.ndarray, axis: int) -> np.ndarray:
    """``np.take(params, indices, axis)`` per run: ``params`` and ``indices`` carry a leading run axis of
    length N or 1 (a constant), ``axis`` counts the program axes of ``params`` (after the run axis)."""
    if len(params) == 1:
        return np.moveaxis(np.take(params[0], indices, axis=axis), axis, 0)
    if len(indices) == 1:
        return np.take(params, indices[0], axis=axis + 1)
    return np.stack([np.take(p, i, axis=axis) for p, i in zip(params, indices)])


@KERNELS.register("GATHER", mode=("int8", "float32"))
def _run_gather(op: QOp, args: list[np.ndarray], program: QProgram) -> np.ndarray:
    params, indices = args
    axis = int(op.options.get("axis", 0)) % (params.ndim - 1)
    dim = params.shape[axis + 1]
    if indices.size and (indices.min() < 0 or indices.max() >= dim):
        bad = int(indices[(indices < 0) | (indices >= dim)].reshape(-1)[0])
        raise DataError(f"GATHER op '{op.source}': index {bad} is outside [0, {dim}) (token id beyond the "
                        "vocabulary?); TFLite fails the same way")
    return np.ascontiguousarray(gather(params, indices.astype(np.int64), axis))


@KERNELS.register("CAST", mode=("int8", "float32"))
def _run_cast(op: QOp, args: list[np.ndarray], program: QProgram) -> np.ndarray:
    dtype = np.dtype(program.tensor(op.outputs[0]).dtype)
    x = args[0]
    return x != 0 if dtype == np.bool_ else x.astype(dtype)
