"""Back-to-back TRANSPOSEs (and RESHAPEs) composed after lowering: a pair that cancels disappears, another
becomes one op, and a pair whose middle tensor is read elsewhere (or re-encoded) is kept."""
from __future__ import annotations

import numpy as np

from edgeopt.ir import QParams
from edgeopt.pipeline.lower.movement_pairs import compose_movement
from edgeopt.qprogram import QOp, QTensor

Q = QParams(0.1, 0)


def _program(p1: tuple[int, ...], p2: tuple[int, ...], y_q: QParams = Q) -> tuple[list[QOp], dict[str, QTensor]]:
    tensors = {
        "x": QTensor("x", (1, 2, 3, 4), "int8", Q),
        "t": QTensor("t", tuple((1, 2, 3, 4)[p] for p in p1), "int8", Q),
        "y": QTensor("y", tuple(tuple((1, 2, 3, 4)[p] for p in p1)[p] for p in p2), "int8", y_q),
        "z": QTensor("z", (1, 24), "int8", Q),
        "p1": QTensor("p1", (4,), "int32", None, np.array(p1, np.int32)),
        "p2": QTensor("p2", (4,), "int32", None, np.array(p2, np.int32)),
        "shape": QTensor("shape", (2,), "int32", None, np.array([1, 24], np.int32)),
    }
    ops = [QOp("TRANSPOSE", ("x", "p1"), ("t",)), QOp("TRANSPOSE", ("t", "p2"), ("y",)),
           QOp("RESHAPE", ("y", "shape"), ("z",))]
    return ops, tensors


def test_cancelling_pair_is_removed_and_its_reader_reads_the_input() -> None:
    ops, tensors = _program((0, 2, 3, 1), (0, 3, 1, 2))
    assert compose_movement(ops, tensors, {"z"}) == [QOp("RESHAPE", ("x", "shape"), ("z",))]


def test_other_pair_becomes_one_transpose() -> None:
    ops, tensors = _program((0, 2, 3, 1), (0, 2, 1, 3))
    out = compose_movement(ops, tensors, {"z"})
    assert [op.kind for op in out] == ["TRANSPOSE", "RESHAPE"] and out[0].inputs[0] == "x"
    x = np.arange(24).reshape(1, 2, 3, 4)
    composed = tensors[out[0].inputs[1]].data.tolist()
    np.testing.assert_array_equal(x.transpose(composed), x.transpose(0, 2, 3, 1).transpose(0, 2, 1, 3))


def test_pair_is_kept_when_the_middle_is_read_elsewhere_or_encodings_differ() -> None:
    ops, tensors = _program((0, 2, 3, 1), (0, 3, 1, 2))
    tensors["w"] = QTensor("w", tensors["t"].shape, "int8", Q)
    shared = [*ops, QOp("RELU", ("t",), ("w",))]
    assert compose_movement(shared, tensors, {"z", "w"}) == shared
    ops, tensors = _program((0, 2, 3, 1), (0, 3, 1, 2), y_q=QParams(0.2, 0))
    assert compose_movement(ops, tensors, {"z"}) == ops
    ops, tensors = _program((0, 2, 3, 1), (0, 3, 1, 2))
    assert compose_movement(ops[:2], tensors, {"y"}) == ops[:2]  # the pair's output is a graph output


def test_reshape_pairs_compose() -> None:
    """Keras's squeeze-excite: MEAN → [1, C] → RESHAPE back to [1, 1, 1, C] is no reshape at all; a pair
    ending elsewhere is one RESHAPE."""
    tensors = {
        "x": QTensor("x", (1, 1, 1, 8), "int8", Q),
        "t": QTensor("t", (1, 8), "int8", Q),
        "y": QTensor("y", (1, 1, 1, 8), "int8", Q),
        "w": QTensor("w", (2, 4), "int8", Q),
        "s1": QTensor("s1", (2,), "int32", None, np.array([1, 8], np.int32)),
        "s2": QTensor("s2", (4,), "int32", None, np.array([1, 1, 1, 8], np.int32)),
        "s3": QTensor("s3", (2,), "int32", None, np.array([2, 4], np.int32)),
    }
    first = QOp("RESHAPE", ("x", "s1"), ("t",))
    relu = QOp("RELU", ("y",), ("z",))
    assert compose_movement([first, QOp("RESHAPE", ("t", "s2"), ("y",)), relu], tensors, {"z"}) == \
        [QOp("RELU", ("x",), ("z",))]
    out = compose_movement([first, QOp("RESHAPE", ("t", "s3"), ("w",)), QOp("RELU", ("w",), ("z",))], tensors, {"z"})
    assert [(op.kind, op.inputs) for op in out] == [("RESHAPE", ("x", "s3")), ("RELU", ("w",))]
