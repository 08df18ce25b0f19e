"""Golden cases for the GATHER kernel's run-axis handling (constant table, constant indices, both computed)
and the out-of-range refusal, against ``np.take`` sample by sample."""
from __future__ import annotations

import numpy as np
import pytest

from edgeopt.errors import DataError
from edgeopt.qprogram import QOp, QProgram, QTensor
from edgeopt.runtimes.reference.executor import run_program
from edgeopt.runtimes.reference.gather_cast import gather


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_gather_matches_take_per_run(axis: int):
    rng = np.random.default_rng(0)
    params = rng.integers(-128, 128, (3, 4, 5, 6)).astype(np.int8)  # 3 runs of a [4, 5, 6] tensor
    indices = rng.integers(0, params.shape[axis + 1], (3, 2, 2))
    expected = np.stack([np.take(p, i, axis=axis) for p, i in zip(params, indices)])
    assert np.array_equal(gather(params, indices, axis), expected)  # both computed
    assert np.array_equal(gather(params[:1], indices, axis),
                          np.stack([np.take(params[0], i, axis=axis) for i in indices]))  # a constant table
    assert np.array_equal(gather(params, indices[:1], axis),
                          np.stack([np.take(p, indices[0], axis=axis) for p in params]))  # constant indices


def _embedding_program() -> QProgram:
    table = np.arange(12, dtype=np.int32).reshape(4, 3)
    tensors = {
        "ids": QTensor("ids", (1, 5), "int32"),
        "table": QTensor("table", (4, 3), "int32", data=table),
        "rows": QTensor("rows", (1, 5, 3), "int32"),
    }
    return QProgram("embedding", tensors, (QOp("GATHER", ("table", "ids"), ("rows",), {"axis": 0}),), ("ids",),
                    ("rows",))


def test_gather_program_and_an_index_outside_the_table():
    program = _embedding_program()
    ids = np.array([[3, 0, 1, 1, 2], [0, 0, 0, 0, 3]], np.int32)
    (rows,) = run_program(program, [ids], threads=1)
    assert np.array_equal(rows, np.arange(12).reshape(4, 3)[ids])
    with pytest.raises(DataError, match="index 4 is outside \\[0, 4\\)"):
        run_program(program, [np.array([[0, 1, 4, 0, 0]], np.int32)], threads=1)
