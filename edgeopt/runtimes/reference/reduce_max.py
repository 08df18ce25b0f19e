"""REDUCE_MAX: the int8 and float32 kernels, TFLite ``kernels/reduce.cc`` (``EvalType`` with the max
reducer: the largest raw value over the axes, no requantization). TensorFlow's converter writes it for Keras
``GlobalMaxPooling2D`` with the output sharing the input's encoding; another output encoding is refused
(the raw maximum would be read at the wrong scale).
"""
from __future__ import annotations

import numpy as np

from edgeopt.errors import UnsupportedOpError
from edgeopt.qprogram import QOp, QProgram
from edgeopt.runtimes.reference.mean import resolve_axes
from edgeopt.runtimes.reference.registry import KERNELS, constant


def reduce_max(x: np.ndarray, axes: tuple[int, ...], keep_dims: bool) -> np.ndarray:
    """The maximum over the program ``axes`` of run-axis values ``x`` (the run axis is kept)."""
    return np.max(x, axis=tuple(a + 1 for a in axes), keepdims=keep_dims)


@KERNELS.register("REDUCE_MAX", mode=("int8", "float32"))
def _run_reduce_max(op: QOp, args: list[np.ndarray], program: QProgram) -> np.ndarray:
    x_q = program.tensor(op.inputs[0]).qparams
    y_q = program.tensor(op.outputs[0]).qparams
    if x_q is not None and (y_q is None or x_q.scale[0] != y_q.scale[0] or x_q.zero_point[0] != y_q.zero_point[0]):
        raise UnsupportedOpError(op.kind, op.source, "an int8 REDUCE_MAX whose output encoding differs from its "
                                 "input's has no kernel here")
    axes = resolve_axes([int(a) for a in constant(args[1]).reshape(-1)], args[0].ndim - 1)
    return reduce_max(args[0], axes, bool(op.options.get("keep_dims", False)))
