"""Every op kind of ``qprogram.OPS`` has a TFLite writer, an output-shape rule and a MAC count; those
registries hold nothing outside the table, and a registry keyed by op kind refuses a kind outside it. (The
kernels and Prepare of every kind and mode: ``tests/runtimes/reference/test_op_registries.py``.)"""
from __future__ import annotations

import pytest

from edgeopt.errors import RegistryError
from edgeopt.pipeline.emit.tflite import OP_WRITERS
from edgeopt.pipeline.frontend.tflite_shapes import OUTPUT_SHAPES
from edgeopt.qprogram import OPS
from edgeopt.registry import Registry
from edgeopt.runtimes.cost import MAC_COUNTERS

REGISTRIES: dict[str, Registry] = {"OP_WRITERS": OP_WRITERS, "OUTPUT_SHAPES": OUTPUT_SHAPES,
                                   "MAC_COUNTERS": MAC_COUNTERS}


@pytest.mark.parametrize("name", sorted(REGISTRIES))
def test_registry_covers_every_kind_of_the_table(name: str) -> None:
    assert sorted(set(OPS) - set(REGISTRIES[name])) == []


@pytest.mark.parametrize("name", sorted(REGISTRIES))
def test_registry_holds_nothing_outside_the_table(name: str) -> None:
    assert sorted(set(REGISTRIES[name]) - set(OPS)) == []


@pytest.mark.parametrize("name", sorted(REGISTRIES))
def test_registry_refuses_a_kind_outside_the_table(name: str) -> None:
    with pytest.raises(RegistryError, match="LSTM.*not in qprogram.OPS"):
        REGISTRIES[name].register("LSTM")(lambda op, program: None)
    assert "LSTM" not in REGISTRIES[name]
