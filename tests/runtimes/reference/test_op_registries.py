"""The reference executor's registries cover ``qprogram.OPS`` exactly: a kernel for every kind in every mode
of its row, a Prepare for every mode in its ``prepared``, nothing else; and they refuse what the table
does not declare."""
from __future__ import annotations

import numpy as np
import pytest

from edgeopt.errors import RegistryError, UnsupportedOpError
from edgeopt.ir import QParams
from edgeopt.qprogram import MODES, OPS, QOp, QProgram, QTensor
from edgeopt.registry import OpModeRegistry
from edgeopt.runtimes.reference.prepare import prepare_program
from edgeopt.runtimes.reference.registry import KERNELS, PREPARERS, kernel_for


@pytest.mark.parametrize("kind", sorted(OPS))
def test_every_kind_and_mode_of_ops_has_a_kernel_and_its_prepare(kind: str) -> None:
    row = OPS[kind]
    assert set(KERNELS.modes(kind)) == set(row.modes)
    assert set(PREPARERS.modes(kind)) == set(row.prepared)


def test_registries_hold_nothing_outside_ops() -> None:
    declared = {(kind, mode) for kind, row in OPS.items() for mode in row.modes}
    prepared = {(kind, mode) for kind, row in OPS.items() for mode in row.prepared}
    assert set(KERNELS) == declared
    assert set(PREPARERS) == prepared


def _kernel(op: QOp, args: list[np.ndarray], program: QProgram) -> np.ndarray:
    return args[0]


def test_a_kind_outside_ops_is_refused() -> None:
    registry: OpModeRegistry = OpModeRegistry("test kernel")
    with pytest.raises(RegistryError, match="LSTM not in qprogram.OPS"):
        registry.register("LSTM", mode="int8")(_kernel)
    assert "LSTM" not in {kind for kind, _ in registry}


def test_a_mode_the_row_does_not_declare_is_refused() -> None:
    kernels: OpModeRegistry = OpModeRegistry("test kernel", column="modes")
    with pytest.raises(RegistryError, match="NEG has no mode 'int8'"):
        kernels.register("NEG", mode="int8")(_kernel)
    with pytest.raises(RegistryError, match="SOFTMAX has no mode '16x8'"):
        kernels.register("SOFTMAX", mode=("int8", "16x8"))(_kernel)
    assert list(kernels) == []  # refused as a whole: no mode of it was registered


def test_a_prepare_for_an_unprepared_mode_is_refused() -> None:
    preparers: OpModeRegistry = OpModeRegistry("test Prepare", column="prepared")
    with pytest.raises(RegistryError, match="RESHAPE has no mode 'int8'"):
        preparers.register("RESHAPE", mode="int8")(_kernel)
    with pytest.raises(RegistryError, match="CONV_2D has no mode 'float32'"):
        preparers.register("CONV_2D", mode="float32")(_kernel)


def test_registering_twice_is_refused() -> None:
    kernels: OpModeRegistry = OpModeRegistry("test kernel")
    kernels.register("RESHAPE", mode=MODES)(_kernel)
    with pytest.raises(RegistryError, match="'RESHAPE' \\(16x8\\) registered twice"):
        kernels.register("RESHAPE", mode="16x8")(_kernel)


def test_failed_lookups_list_what_exists() -> None:
    with pytest.raises(RegistryError, match="no 16x8 kernel for 'SOFTMAX' \\(known: .*CONV_2D"):
        KERNELS.get("SOFTMAX", "16x8")
    op = QOp("LOGISTIC", ("x",), ("y",), source="sig")
    with pytest.raises(UnsupportedOpError, match="LOGISTIC.*'sig'.*no int16 \\(16x8\\) kernel \\(supported: .*ADD"):
        kernel_for(op, "16x8")


def test_prepare_refuses_an_op_without_a_kernel_in_its_mode_by_name() -> None:
    q8 = QParams(np.array([0.1], np.float32), np.array([0], np.int64), dtype="int8")
    q16 = QParams(np.array([0.001], np.float32), np.array([0], np.int64), dtype="int16")
    program = QProgram("p", {"x": QTensor("x", (1, 4), "int16", q16), "y": QTensor("y", (1, 4), "int8", q8)},
                       (QOp("SOFTMAX", ("x",), ("y",), {"beta": 1.0}, source="sm"),), ("x",), ("y",))
    with pytest.raises(UnsupportedOpError, match="SOFTMAX.*'sm'.*no int16 \\(16x8\\) kernel"):
        prepare_program(program)
