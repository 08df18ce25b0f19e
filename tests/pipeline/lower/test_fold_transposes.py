"""``fold_transposes`` merges back-to-back TRANSPOSEs and drops those that compose to the identity."""
from __future__ import annotations

import numpy as np

from edgeopt.ir import QParams
from edgeopt.pipeline.emit.tflite import program_to_tflite
from edgeopt.pipeline.lower.fold_transposes import fold_transposes
from edgeopt.qprogram import QOp, QProgram, QTensor
from edgeopt.runtimes.litert import LiteRT
from edgeopt.runtimes.reference.executor import run_program

Q = QParams(0.05, 3)


def _chain(perms: list[tuple[int, ...]], tail: str) -> QProgram:
    """x[1,2,3,4] → TRANSPOSE(perms[0]) → ... → [RESHAPE to a flat output when ``tail == "reshape"``]."""
    shape = (1, 2, 3, 4)
    tensors = {"x": QTensor("x", shape, "int8", Q)}
    ops, last = [], "x"
    for i, perm in enumerate(perms):
        shape = tuple(shape[p] for p in perm)
        tensors[f"p{i}"] = QTensor(f"p{i}", (len(perm),), "int32", data=np.array(perm, np.int32))
        tensors[f"t{i}"] = QTensor(f"t{i}", shape, "int8", Q)
        ops.append(QOp("TRANSPOSE", (last, f"p{i}"), (f"t{i}",), source=f"n{i}"))
        last = f"t{i}"
    if tail == "reshape":
        tensors["s"] = QTensor("s", (2,), "int32", data=np.array([1, 24], np.int32))
        tensors["y"] = QTensor("y", (1, 24), "int8", Q)
        ops.append(QOp("RESHAPE", (last, "s"), ("y",), {"new_shape": [1, 24]}, source="flat"))
        last = "y"
    return QProgram("chain", tensors, ops, ("x",), (last,), rounding="double")


def _same_values(before: QProgram, after: QProgram) -> None:
    x = [np.random.default_rng(0).integers(-128, 128, (5, 2, 3, 4), dtype=np.int8)]
    want = run_program(before, x)[0]
    np.testing.assert_array_equal(run_program(after, x)[0], want)
    np.testing.assert_array_equal(LiteRT(program_to_tflite(after), kernels="reference").run(x)[0], want)


def test_a_run_of_transposes_becomes_one() -> None:
    program = _chain([(0, 2, 3, 1), (0, 3, 1, 2), (0, 1, 3, 2), (2, 0, 1, 3)], "none")
    folded = fold_transposes(program)
    assert [op.kind for op in folded.ops] == ["TRANSPOSE"] and folded.ops[0].outputs == ("t3",)
    _same_values(program, folded)


def test_transposes_that_cancel_disappear() -> None:
    program = _chain([(0, 2, 3, 1), (0, 3, 1, 2)], "reshape")
    folded = fold_transposes(program)
    assert [op.kind for op in folded.ops] == ["RESHAPE"] and folded.ops[0].inputs[0] == "x"
    _same_values(program, folded)


def test_a_tensor_read_twice_ends_the_chain() -> None:
    program = _chain([(0, 2, 3, 1), (0, 3, 1, 2)], "none")
    shared = program.replace(outputs=("t0", "t1"))
    assert fold_transposes(shared).ops == shared.ops
