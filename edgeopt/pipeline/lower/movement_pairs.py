"""Back-to-back data-movement ops of the lowered program, composed: two TRANSPOSEs (or two RESHAPEs)
become one, or nothing when together they leave the tensor as it was.

They arise where a source model moves between layouts itself: a float ``.tflite`` read into the NCHW
IR reshapes NHWC data as ``Transpose(0, 2, 3, 1) → Reshape``, and the Reshape's own lowering first
transposes its (program NHWC) input back to the source order, so the program holds TRANSPOSE (0, 2, 3, 1)
→ TRANSPOSE (0, 3, 1, 2): the identity. Keras's squeeze-excite ``Mean → Reshape((1, 1, C))`` lowers to
RESHAPE [1, 1, 1, C] → [1, C] → RESHAPE [1, 1, 1, C]. Both ops only move elements, so a pair's output
equals its input exactly when the tensors share one encoding; a pair is left alone where they do not,
where the middle tensor has another reader or is a graph output, and where the pair's output is a graph
output.
"""
from __future__ import annotations

from collections.abc import Collection

import numpy as np

from edgeopt.qprogram import QOp, QTensor

PAIRED_KINDS = ("TRANSPOSE", "RESHAPE")


def compose_movement(ops: list[QOp], tensors: dict[str, QTensor], outputs: Collection[str]) -> list[QOp]:
    """``ops`` with each TRANSPOSE → TRANSPOSE and RESHAPE → RESHAPE pair composed: removed when it is the
    identity (readers of its output read its input), else one op; ``tensors`` gains the composed
    permutations.

    Args:
        ops: the program's ops in execution order.
        tensors: the program's tensors (updated with new permutation constants).
        outputs: the program's graph outputs.
    """
    ops = list(ops)
    changed = True
    while changed:
        changed = False
        for i, second in enumerate(ops):
            first = _producer(ops[:i], second.inputs[0]) if second.kind in PAIRED_KINDS else None
            if first is None or first.kind != second.kind or not _removable(first, second, ops, tensors, outputs):
                continue
            x, y = first.inputs[0], second.outputs[0]
            ops.remove(first)
            composed = _compose(first, second, tensors)
            if composed is None:
                ops.remove(second)
                ops = [QOp(op.kind, tuple(x if t == y else t for t in op.inputs), op.outputs, op.options, op.params,
                           op.source) for op in ops]
            else:
                ops[ops.index(second)] = QOp(second.kind, (x, composed), second.outputs, second.options,
                                             second.params, second.source)
            changed = True
            break
    return ops


def _compose(first: QOp, second: QOp, tensors: dict[str, QTensor]) -> str | None:
    """The second input of the one op doing both, or None when together they do nothing."""
    if first.kind == "RESHAPE":
        same = tensors[first.inputs[0]].shape == tensors[second.outputs[0]].shape
        return None if same else second.inputs[1]
    p1, p2 = (tensors[op.inputs[1]].data.reshape(-1).tolist() for op in (first, second))
    perm = [p1[p] for p in p2]  # transpose(transpose(x, p1), p2) == transpose(x, p1[p2])
    if perm == list(range(len(perm))):
        return None
    name = f"{second.inputs[1]}/composed"
    tensors[name] = QTensor(name, (len(perm),), "int32", None, np.array(perm, np.int32))
    return name


def _producer(ops: list[QOp], tensor: str) -> QOp | None:
    return next((op for op in reversed(ops) if tensor in op.outputs), None)


def _removable(first: QOp, second: QOp, ops: list[QOp], tensors: dict[str, QTensor],
               outputs: Collection[str]) -> bool:
    middle = first.outputs[0]
    readers = [op for op in ops if middle in op.inputs]
    x, y = tensors[first.inputs[0]], tensors[second.outputs[0]]
    same = (x.qparams is None and y.qparams is None) or (
        x.qparams is not None and y.qparams is not None and x.qparams.same_as(y.qparams))
    constant_args = all(len(op.inputs) > 1 and tensors[op.inputs[1]].is_constant for op in (first, second))
    return (readers == [second] and middle not in outputs and second.outputs[0] not in outputs and same
            and x.dtype == y.dtype and constant_args)
