"""The report's ``precision`` section: which activations and ops of the program are int8 or int16."""
from __future__ import annotations

from collections import Counter

from edgeopt.qprogram import QProgram
from edgeopt.runtimes.reference.int16_registry import runs_in_int16


def precision_summary(program: QProgram, precision: str) -> dict:
    """``mode``, the count of 16x8 ops and of int8 <-> int16 requantizations, ops by kind and dtype, and
    the dtype of every activation tensor (constants left out).

    Args:
        program: the lowered program.
        precision: the ``--precision`` it was made with.
    """
    requantize = sum(1 for op in program.ops if op.kind == "QUANTIZE"
                     and {program.tensor(op.inputs[0]).dtype, program.tensor(op.outputs[0]).dtype} == {"int8", "int16"})
    by_kind: dict[str, Counter] = {}
    for op in program.ops:
        dtype = "int16" if runs_in_int16(op, program) else program.tensor(op.outputs[0]).dtype
        by_kind.setdefault(op.kind, Counter())[dtype] += 1
    return {
        "mode": precision,
        "int16_ops": sum(c["int16"] for c in by_kind.values()),
        "requantize_ops": requantize,
        "ops_by_dtype": {kind: dict(c) for kind, c in sorted(by_kind.items())},
        "tensor_dtypes": {name: t.dtype for name, t in program.tensors.items() if not t.is_constant},
    }
