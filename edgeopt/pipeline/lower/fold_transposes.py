"""Fold chains of TRANSPOSE ops the lowering emits back to back into one (or none).

Lowerings of 4-D tensors move axes one op at a time: a RESHAPE into a 4-D result transposes it to NHWC,
an ONNX Transpose of it is translated to program layouts, and a MatMul or Softmax of it transposes it
back to source order. In a transformer's attention that leaves runs of two to five TRANSPOSEs on one
tensor. ``TRANSPOSE(p1)`` then ``TRANSPOSE(p2)`` reading only its output is ``TRANSPOSE(p1[p2])``, and
when that is the identity both go and the later readers read the first input. Data movement only: the
program computes the same values (and the same integers). A tensor kept (a graph output, or one read
twice) ends a chain.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import replace

import numpy as np

from edgeopt.qprogram import QOp, QProgram, QTensor


def _perm(tensors: dict[str, QTensor], op: QOp) -> list[int]:
    return [int(p) for p in tensors[op.inputs[1]].data]


def _fresh(tensors: dict[str, QTensor], base: str) -> str:
    name, k = base, 0
    while name in tensors:
        k += 1
        name = f"{base}__{k}"
    return name


def fold_transposes(program: QProgram) -> QProgram:
    """``program`` with each TRANSPOSE that feeds only another TRANSPOSE merged into it (see the module)."""
    ops = list(program.ops)
    tensors = dict(program.tensors)
    reads = Counter(t for op in ops for t in op.inputs)
    kept = set(program.outputs)
    i = 0
    while i < len(ops):
        first = ops[i]
        mid = first.outputs[0] if first.kind == "TRANSPOSE" else None
        j = next((k for k in range(i + 1, len(ops)) if mid in ops[k].inputs), None) if mid else None
        if j is None or mid in kept or reads[mid] != 1 or ops[j].kind != "TRANSPOSE" or ops[j].inputs[0] != mid:
            i += 1
            continue
        second = ops[j]
        x, y = first.inputs[0], second.outputs[0]
        qx, qy = tensors[x].qparams, tensors[y].qparams
        if (qx is None) != (qy is None) or (qx is not None and not qx.same_as(qy)):
            i += 1
            continue
        p1, p2 = _perm(tensors, first), _perm(tensors, second)
        composed = [p1[k] for k in p2]
        del ops[j]
        del ops[i]
        reads[mid] -= 1
        if composed == sorted(composed) and y not in kept:
            ops = [replace(op, inputs=tuple(x if t == y else t for t in op.inputs)) if y in op.inputs else op
                   for op in ops]
            reads[x] += reads.pop(y, 0) - 1
            continue
        perm = _fresh(tensors, f"{second.inputs[1]}/folded")
        tensors[perm] = QTensor(perm, (len(composed),), "int32", data=np.array(composed, np.int32))
        ops.insert(j - 1, QOp("TRANSPOSE", (x, perm), (y,), {}, source=second.source))
    used = {t for op in ops for t in op.inputs + op.outputs} | set(program.inputs) | set(program.outputs)
    return program.replace(ops=tuple(ops), tensors={k: v for k, v in tensors.items() if k in used})
