"""Back-to-back TRANSPOSEs of the lowered program, composed: a pair that cancels is removed, another
pair becomes one TRANSPOSE.

They arise where a source model moves between layouts itself: a float ``.tflite`` read into the NCHW
IR reshapes NHWC data as ``Transpose(0, 2, 3, 1) → Reshape``, and the Reshape's own lowering first
transposes its (program NHWC) input back to the source order, so the program holds TRANSPOSE (0, 2, 3, 1)
→ TRANSPOSE (0, 3, 1, 2): the identity. A TRANSPOSE only moves elements, so the pair's output equals its
input exactly when both tensors share one encoding; the pair is left alone where they do not, where the
middle tensor has another reader or is a graph output, and where the pair's output is a graph output.
"""
from __future__ import annotations

from collections.abc import Collection

import numpy as np

from edgeopt.qprogram import QOp, QTensor


def compose_transposes(ops: list[QOp], tensors: dict[str, QTensor], outputs: Collection[str]) -> list[QOp]:
    """``ops`` with each cancelling TRANSPOSE pair removed (readers of its output read its input) and each
    other pair merged into one TRANSPOSE; ``tensors`` gains the merged permutations.

    Args:
        ops: the program's ops in execution order.
        tensors: the program's tensors (updated with the new permutation constants).
        outputs: the program's graph outputs.
    """
    ops = list(ops)
    changed = True
    while changed:
        changed = False
        for i, second in enumerate(ops):
            first = _producer(ops[:i], second.inputs[0]) if second.kind == "TRANSPOSE" else None
            if first is None or first.kind != "TRANSPOSE" or not _removable(first, second, ops, tensors, outputs):
                continue
            x, y = first.inputs[0], second.outputs[0]
            p1, p2 = (tensors[op.inputs[1]].data.reshape(-1).tolist() for op in (first, second))
            perm = [p1[p] for p in p2]
            ops.remove(first)
            if perm == list(range(len(perm))):
                ops.remove(second)
                ops = [QOp(op.kind, tuple(x if t == y else t for t in op.inputs), op.outputs, op.options, op.params,
                           op.source) for op in ops]
            else:
                name = f"{second.inputs[1]}/composed"
                tensors[name] = QTensor(name, (len(perm),), "int32", None, np.array(perm, np.int32))
                ops[ops.index(second)] = QOp("TRANSPOSE", (x, name), second.outputs, second.options, second.params,
                                             second.source)
            changed = True
            break
    return ops


def _producer(ops: list[QOp], tensor: str) -> QOp | None:
    return next((op for op in reversed(ops) if tensor in op.outputs), None)


def _removable(first: QOp, second: QOp, ops: list[QOp], tensors: dict[str, QTensor],
               outputs: Collection[str]) -> bool:
    middle = first.outputs[0]
    readers = [op for op in ops if middle in op.inputs]
    x, y = tensors[first.inputs[0]], tensors[second.outputs[0]]
    same = (x.qparams is None and y.qparams is None) or (
        x.qparams is not None and y.qparams is not None and x.qparams.same_as(y.qparams))
    constant_perms = all(tensors[op.inputs[1]].is_constant for op in (first, second))
    return (readers == [second] and middle not in outputs and second.outputs[0] not in outputs and same
            and x.dtype == y.dtype and constant_perms)
