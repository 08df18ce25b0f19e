"""ir.weight_out_axis: one answer to "which axis of this node's weight is the output channel"."""
from __future__ import annotations

import pytest

from edgeopt.errors import InternalError
from edgeopt.ir import Node, weight_out_axis


@pytest.mark.parametrize(("op", "attrs", "axis"), [
    ("Conv", {}, 0),
    ("Conv", {"group": 4}, 0),
    ("ConvTranspose", {}, 1),
    ("MatMul", {}, 1),
    ("Gemm", {}, 1),
    ("Gemm", {"transB": 0}, 1),
    ("Gemm", {"transB": 1}, 0),
])
def test_weight_out_axis(op: str, attrs: dict, axis: int) -> None:
    assert weight_out_axis(Node(op, "n", ("x", "w"), ("y",), attrs)) == axis


def test_weight_out_axis_refuses_an_op_without_weight() -> None:
    with pytest.raises(InternalError, match="Relu"):
        weight_out_axis(Node("Relu", "r", ("x",), ("y",)))
