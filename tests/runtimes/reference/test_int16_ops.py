"""The 16x8 kernels beyond convolution: MAX_POOL_2D, CONCATENATION, RELU, RELU6, MEAN and ADD with a constant
operand are bit-exact with LiteRT 2.3's reference kernels (``BUILTIN_REF``) on random programs."""
from __future__ import annotations

import numpy as np
import pytest
from tests.builders.int16_ops import CASES_16X8_OPS
from tests.builders.int16 import assert_bitexact_16x8, opcode_versions

from edgeopt.pipeline.emit.tflite import program_to_tflite
from edgeopt.qprogram import op_mode
from edgeopt.runtimes.reference.registry import KERNELS


@pytest.mark.parametrize("case", sorted(CASES_16X8_OPS))
def test_16x8_op_matches_litert_reference(case: str) -> None:
    for seed in range(6):
        rng = np.random.default_rng(seed)
        program = CASES_16X8_OPS[case](rng)
        op = program.ops[-1]
        assert op_mode(op, program) == "16x8" and (op.kind, "16x8") in KERNELS
        assert_bitexact_16x8(program, rng)


def test_16x8_ops_carry_their_int16_op_versions() -> None:

    rng = np.random.default_rng(0)
    versions = {}
    for case in ("max_pool", "concatenation", "relu", "relu6", "mean"):
        versions.update(opcode_versions(program_to_tflite(CASES_16X8_OPS[case](rng))))
    assert {k: versions[k] for k in ("MAX_POOL_2D", "CONCATENATION", "RELU", "RELU6", "MEAN")} == \
        {"MAX_POOL_2D": 3, "CONCATENATION": 3, "RELU": 3, "RELU6": 3, "MEAN": 3}
