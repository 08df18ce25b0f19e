"""The integer executor is bit-exact with LiteRT's reference kernels (ai-edge-litert 2.3.0, BUILTIN_REF).

Every program is written to ``.tflite`` by ``program_to_tflite`` and run by LiteRT sample by sample;
the executor runs the same program on the whole batch at once. LiteRT's reference kernels round
requantization twice (gemmlowp), so the programs here use ``rounding="double"``; two tests pin down
the measured facts that make that the right setting (and catch a LiteRT upgrade that changes them).
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from tests.builders.programs import (
    CASES,
    ProgramBuilder,
    add_program,
    avg_pool_program,
    chain_program,
    conv2d_program,
    fully_connected_program,
    random_inputs,
)

from edgeopt.ir import QParams
from edgeopt.pipeline.emit.tflite import program_to_tflite
from edgeopt.qprogram import QOp, QProgram, QTensor
from edgeopt.runtimes.litert import LiteRT
from edgeopt.runtimes.reference.executor import run_program
from edgeopt.runtimes.reference.arith.fixedpoint import multiply_by_quantized_multiplier

INPUTS_PER_PROGRAM = 300


def litert_reference(program: QProgram, inputs: list[np.ndarray]) -> list[np.ndarray]:
    return LiteRT(program_to_tflite(program), kernels="reference").run(inputs)


def assert_bitexact(program: QProgram, rng: np.random.Generator, batches: int = INPUTS_PER_PROGRAM) -> None:
    program = program.replace(rounding="double")
    inputs = random_inputs(rng, program, batches)
    expected = litert_reference(program, inputs)
    got = run_program(program, inputs)
    assert len(got) == len(expected)
    for g, e in zip(got, expected, strict=True):
        assert g.dtype == e.dtype == np.int8 and g.shape == e.shape
        mismatches = int((g != e).sum())
        assert mismatches == 0, f"{program.name}: {mismatches} of {e.size} elements differ from LiteRT"


@pytest.mark.parametrize("case", sorted(CASES))
def test_builder_cases_match_litert_reference(case: str) -> None:
    for seed in range(3):
        rng = np.random.default_rng(seed)
        assert_bitexact(CASES[case](rng), rng)


def _random_conv(rng: np.random.Generator, depthwise: bool) -> QProgram:
    kh, kw = (int(k) for k in rng.integers(1, 5, 2))
    return conv2d_program(
        rng, h=int(rng.integers(2 * kh, 13)), w=int(rng.integers(2 * kw, 13)), cin=int(rng.integers(1, 9)),
        cout=int(rng.integers(1, 12)), kh=kh, kw=kw,
        stride=(int(rng.integers(1, 4)), int(rng.integers(1, 4))),
        dilation=(int(rng.integers(1, 3)), int(rng.integers(1, 3))),
        padding=str(rng.choice(["SAME", "VALID"])),
        activation=str(rng.choice(["NONE", "RELU", "RELU6", "RELU_N1_TO_1"])),
        depthwise=depthwise, depth_multiplier=int(rng.integers(1, 4)),
    )


RANDOM_PROGRAMS: dict[str, Callable[[np.random.Generator], QProgram]] = {
    "CONV_2D": lambda rng: _random_conv(rng, depthwise=False),
    "DEPTHWISE_CONV_2D": lambda rng: _random_conv(rng, depthwise=True),
    "FULLY_CONNECTED": lambda rng: fully_connected_program(
        rng, cin=int(rng.integers(1, 300)), cout=int(rng.integers(1, 40)),
        activation=str(rng.choice(["NONE", "RELU", "RELU6", "RELU_N1_TO_1"]))),
    "ADD": lambda rng: add_program(
        rng, shape=(1, *(int(d) for d in rng.integers(1, 7, 3))),
        activation=str(rng.choice(["NONE", "RELU", "RELU6", "RELU_N1_TO_1"]))),
    "AVERAGE_POOL_2D": lambda rng: avg_pool_program(
        rng, h=int(rng.integers(3, 10)), w=int(rng.integers(3, 10)), c=int(rng.integers(1, 6)),
        kernel=(int(rng.integers(1, 4)), int(rng.integers(1, 4))),
        stride=(int(rng.integers(1, 4)), int(rng.integers(1, 4))), padding=str(rng.choice(["SAME", "VALID"])),
        activation=str(rng.choice(["NONE", "RELU", "RELU6"]))),
}


@pytest.mark.parametrize("kind", sorted(RANDOM_PROGRAMS))
def test_random_programs_match_litert_reference(kind: str) -> None:
    rng = np.random.default_rng(sum(map(ord, kind)))
    for _ in range(25):
        assert_bitexact(RANDOM_PROGRAMS[kind](rng), rng, batches=200)


@pytest.mark.parametrize(
    ("a_shape", "b_shape"), [((1, 3, 4, 5), (1, 1, 1, 5)), ((1, 3, 4, 5), (5,)), ((1, 1, 4, 1), (1, 3, 1, 5))]
)
def test_broadcasting_add_with_a_constant_matches_litert_reference(
    a_shape: tuple[int, ...], b_shape: tuple[int, ...]
) -> None:
    rng = np.random.default_rng(15)
    tensors = {
        "a": QTensor("a", a_shape, "int8", QParams(0.03, 3)),
        "b": QTensor("b", b_shape, "int8", QParams(0.05, -9), rng.integers(-128, 128, b_shape)),
        "y": QTensor("y", np.broadcast_shapes(a_shape, b_shape), "int8", QParams(0.07, 2)),
    }
    op = QOp("ADD", ("a", "b"), ("y",), {"fused_activation_function": "RELU"})
    assert_bitexact(QProgram("add_broadcast", tensors, [op], ("a",), ("y",)), rng)


def test_chain_batch_of_1000_matches_litert_reference() -> None:
    rng = np.random.default_rng(10)
    assert_bitexact(chain_program(rng), rng, batches=1000)


def test_deeper_network_matches_litert_reference() -> None:
    """Two residual stages with a stride-2 projection, global pooling and a classifier."""
    rng = np.random.default_rng(11)
    b = ProgramBuilder(rng, "resnet_like")
    x = b.conv(b.input((1, 16, 16, 3)), 8, activation="RELU")
    for width, stride in ((8, (1, 1)), (16, (2, 2))):
        h = b.conv(b.conv(x, width, stride=stride, activation="RELU"), width)
        skip = x if stride == (1, 1) else b.conv(x, width, kernel=(1, 1), stride=stride)
        x = b.add(h, skip, activation="RELU")
    pooled = b.average_pool(x, b.shape(x)[1:3], (1, 1), "VALID")
    assert_bitexact(b.build([b.fully_connected(b.reshape(pooled, (1, 16)), 10)]), rng, batches=200)


def _dyadic_program(kind: str) -> QProgram:
    """A one-op program whose requantization lands exactly on halves: power-of-two scales."""
    rng = np.random.default_rng(12)
    if kind == "FULLY_CONNECTED":
        x_shape, w_shape, y_shape, axis = (1, 4), (6, 4), (1, 6), 0
    else:
        x_shape, w_shape, y_shape, axis = (1, 6, 6, 4), (6, 1, 1, 4), (1, 6, 6, 6), 0
    channels = w_shape[axis]
    w_qparams = QParams(np.full(channels, 2.0**-6), np.zeros(channels), axis=axis)
    b_qparams = QParams(np.full(channels, 2.0**-10), np.zeros(channels), "int32", axis=0)
    tensors = {
        "x": QTensor("x", x_shape, "int8", QParams(2.0**-4, 0)),
        "w": QTensor("w", w_shape, "int8", w_qparams, rng.integers(-8, 9, w_shape)),
        "b": QTensor("b", (channels,), "int32", b_qparams, np.zeros(channels)),
        "y": QTensor("y", y_shape, "int8", QParams(2.0**-5, 0)),
    }
    options = {"fused_activation_function": "NONE"}
    if kind == "CONV_2D":
        options |= {"padding": "VALID", "stride_h": 1, "stride_w": 1}
    return QProgram(kind.lower(), tensors, [QOp(kind, ("x", "w", "b"), ("y",), options)], ("x",), ("y",))


def test_litert_reference_requantizes_with_double_rounding() -> None:
    """Effective scale 2**-5 puts many accumulators on exact halves, where the two roundings differ:
    LiteRT's CONV_2D agrees with gemmlowp's double rounding and not with single rounding."""
    program = _dyadic_program("CONV_2D")
    inputs = random_inputs(np.random.default_rng(13), program, 100)
    (expected,) = litert_reference(program, inputs)
    (double,) = run_program(program.replace(rounding="double"), inputs)
    (single,) = run_program(program.replace(rounding="single"), inputs)
    assert np.array_equal(double, expected)
    assert (single != expected).sum() > 100


def test_litert_reference_fully_connected_rounds_in_double_precision() -> None:
    """LiteRT's reference FULLY_CONNECTED computes ``round(acc * effective_scale)`` in double precision
    (ties away from zero), not with a fixed-point multiplier: on exact halves it matches neither
    rounding of ``MultiplyByQuantizedMultiplier``; the executor follows it in both modes."""
    program = _dyadic_program("FULLY_CONNECTED")
    inputs = random_inputs(np.random.default_rng(14), program, 500)
    (expected,) = litert_reference(program, inputs)
    for rounding in ("single", "double"):
        assert np.array_equal(run_program(program.replace(rounding=rounding), inputs)[0], expected)
    # A fixed-point multiplier (2**30, shift -4 for the scale 2**-5), either rounding, differs on halves.
    acc = inputs[0].astype(np.int64) @ program.tensor("w").data.astype(np.int64).T
    for rounding in ("single", "double"):
        fixed_point = np.clip(multiply_by_quantized_multiplier(acc, 2**30, -4, rounding), -128, 127)
        assert (fixed_point != expected).sum() > 10
