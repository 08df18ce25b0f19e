"""Attention-mask ops: EQUAL, LOGICAL_AND, BROADCAST_TO and SELECT_V2, which make and combine boolean masks
and turn them into the additive float mask a softmax reads (they compute no arithmetic on quantized values,
so they take no Prepare).

* EQUAL: ``kernels/comparisons.cc`` (``EqualEval``, ``reference_ops::Equal`` with broadcasting), ``a == b``
  on int32 or bool tensors (a padding mask ``ids == 0``); quantized int8 operands, which TFLite rescales
  before comparing, are refused.
* LOGICAL_AND: ``kernels/logical.cc``, ``a && b`` with numpy broadcasting.
* BROADCAST_TO: ``kernels/broadcast_to.cc`` with ``reference_ops.h`` ``BroadcastTo``: the input repeated
  along its size-1 axes (right-aligned) up to the constant shape; values are copied, whatever their type.
* SELECT_V2: ``kernels/select.cc`` (``SelectV2``), ``condition ? x : y`` with numpy broadcasting of the
  three operands.
"""
from __future__ import annotations

import numpy as np

from edgeopt.errors import UnsupportedOpError
from edgeopt.qprogram import QOp, QProgram
from edgeopt.runtimes.reference.registry import KERNELS, output_shape


def _aligned(value: np.ndarray, rank: int) -> np.ndarray:
    """A run-axis value with its program axes right-aligned to ``rank`` program axes."""
    return value.reshape(value.shape[:1] + (1,) * (rank + 1 - value.ndim) + value.shape[1:])


@KERNELS.register("EQUAL", mode="int8")
def _run_equal(op: QOp, args: list[np.ndarray], program: QProgram) -> np.ndarray:
    if any(program.tensor(name).qparams is not None for name in op.inputs):
        raise UnsupportedOpError(op.kind, op.source, "EQUAL of quantized int8 values has no kernel here; compare "
                                 "integer or boolean tensors")
    rank = len(output_shape(op, program))
    return np.equal(*(_aligned(a, rank) for a in args))


@KERNELS.register("LOGICAL_AND", mode="int8")
def _run_logical_and(op: QOp, args: list[np.ndarray], program: QProgram) -> np.ndarray:
    rank = len(output_shape(op, program))
    return np.logical_and(*(_aligned(a, rank) for a in args))


@KERNELS.register("BROADCAST_TO", mode=("int8", "float32"))
def _run_broadcast_to(op: QOp, args: list[np.ndarray], program: QProgram) -> np.ndarray:
    shape = output_shape(op, program)
    x = _aligned(args[0], len(shape))
    return np.ascontiguousarray(np.broadcast_to(x, (x.shape[0], *shape)))


@KERNELS.register("SELECT_V2", mode="float32")
def _run_select_v2(op: QOp, args: list[np.ndarray], program: QProgram) -> np.ndarray:
    rank = len(output_shape(op, program))
    condition, x, y = (_aligned(a, rank) for a in args)
    return np.where(condition, x, y).astype(np.float32)
