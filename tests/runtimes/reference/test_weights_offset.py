"""Per-tensor asymmetric weights (a non-zero weight zero point, ``weights_offset``) in the int8 executor.

Checked three ways: against an integer formula written out loop by loop; bit for bit against LiteRT's
reference kernels (BUILTIN_REF) running the same program in TFLite's legacy uint8 form, whose kernels take
a filter offset; and, for the int8 kernels, what LiteRT 2.3 itself does with such weights (FULLY_CONNECTED
applies the offset, DEPTHWISE_CONV_2D ignores it, CONV_2D refuses the file), which is why the TFLite writer
refuses them.
"""
from __future__ import annotations

import numpy as np
import pytest
from tests.builders.asymmetric import WEIGHTED, asymmetric_weights, integer_formula, legacy_tflite
from tests.builders.int16 import conv_16x8_program, fully_connected_16x8_program
from tests.builders.programs import conv2d_program, fully_connected_program, random_inputs
from tests.runtimes.reference.test_bitexact_litert import RANDOM_PROGRAMS

from edgeopt.errors import EdgeoptError, UnsupportedOpError
from edgeopt.pipeline.emit.tflite import program_to_tflite
from edgeopt.pipeline.frontend.tflite import tflite_to_program
from edgeopt.ir import QParams
from edgeopt.qprogram import QProgram, QTensor
from edgeopt.runtimes.litert import LiteRT
from edgeopt.runtimes.reference.executor import run_program
from edgeopt.runtimes.reference.prepare import prepare_program

SAMPLES = 40


def _offsets(program: QProgram) -> list[int]:
    return [op.params.get("weights_offset", 0) for op in prepare_program(program).ops]


def _uint8(x: np.ndarray) -> np.ndarray:
    return (x.astype(np.int16) + 128).astype(np.uint8)


@pytest.mark.parametrize("kind", ["CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"])
def test_bitexact_with_litert_legacy_uint8_kernels(kind: str) -> None:
    offsets = []
    for seed in range(6):
        rng = np.random.default_rng(seed)
        program = asymmetric_weights(RANDOM_PROGRAMS[kind](rng), rng).replace(rounding="double")
        offsets += _offsets(program)
        xs = random_inputs(rng, program, SAMPLES)
        got = run_program(program, xs)[0]
        expected = LiteRT(legacy_tflite(program), kernels="reference").run([_uint8(x) for x in xs])[0]
        assert expected.dtype == np.uint8
        np.testing.assert_array_equal(_uint8(got), expected, err_msg=f"{kind} seed {seed}")
    assert sum(o != 0 for o in offsets) >= 5 and max(abs(o) for o in offsets) >= 40  # offsets far from 0 too


def test_deep_filter_split_into_exact_parts_stays_bitexact() -> None:
    """3x3x64 = 576 taps: more than the 258 whose offset products float32 sums hold exactly."""
    rng = np.random.default_rng(7)
    program = asymmetric_weights(conv2d_program(rng, h=7, w=7, cin=64, cout=6), rng).replace(rounding="double")
    xs = random_inputs(rng, program, SAMPLES)
    expected = LiteRT(legacy_tflite(program), kernels="reference").run([_uint8(x) for x in xs])[0]
    np.testing.assert_array_equal(_uint8(run_program(program, xs)[0]), expected)


def test_matches_the_integer_formula() -> None:
    rng = np.random.default_rng(3)
    program = asymmetric_weights(conv2d_program(rng, h=6, w=7, cin=3, cout=4, padding="SAME"), rng)
    (op,) = prepare_program(program).ops
    x = random_inputs(rng, program, 2)[0]
    w, bias = program.tensor(op.inputs[1]), program.tensor(op.inputs[2]).data
    zx, zy = int(program.tensor(op.inputs[0]).qparams.zero_point[0]), int(program.tensor(op.outputs[0]).qparams.zero_point[0])
    zw = int(w.qparams.zero_point[0])
    assert zw != 0 and op.params["weights_offset"] == -zw
    m, s = int(op.params["output_multiplier"][0]), int(op.params["output_shift"][0])
    got = run_program(program.replace(rounding="double"), [x])[0]
    for n in range(len(x)):
        np.testing.assert_array_equal(got[n], integer_formula(x[n], w.data, bias, zx, zw, zy, m, s, pad=1))

    fc = asymmetric_weights(fully_connected_program(rng, cin=37, cout=5), rng)
    fc = fc.replace(rounding="double", fully_connected_requantization="fixed_point")
    (op,) = prepare_program(fc).ops
    x = random_inputs(rng, fc, 3)[0]
    w = fc.tensor(op.inputs[1])
    expected = [integer_formula(row[None, None], w.data[:, None, None], fc.tensor(op.inputs[2]).data,
                                int(fc.tensor(op.inputs[0]).qparams.zero_point[0]), int(w.qparams.zero_point[0]),
                                int(fc.tensor(op.outputs[0]).qparams.zero_point[0]),
                                int(op.params["output_multiplier"][0]), int(op.params["output_shift"][0]))
                for row in x]
    np.testing.assert_array_equal(run_program(fc, [x])[0], np.concatenate(expected).reshape(len(x), -1))


def test_symmetric_weights_take_no_offset() -> None:
    program = conv2d_program(np.random.default_rng(0))
    assert "weights_offset" not in prepare_program(program).ops[0].params


def test_litert_int8_kernels_and_the_writer_refuse_or_mishandle_weight_zero_points() -> None:
    """LiteRT 2.3's int8 FULLY_CONNECTED applies a weight zero point, its DEPTHWISE_CONV_2D ignores it (the
    result is the offset-free one) and its CONV_2D refuses it: the writer writes none."""
    rng = np.random.default_rng(5)
    fc = asymmetric_weights(fully_connected_program(rng, cin=50, cout=8), rng).replace(rounding="double")
    xs = random_inputs(rng, fc, SAMPLES)
    np.testing.assert_array_equal(LiteRT(legacy_tflite(fc, uint8=False), kernels="reference").run(xs)[0],
                                  run_program(fc, xs)[0])

    dw = asymmetric_weights(conv2d_program(rng, cin=6, depthwise=True), rng).replace(rounding="double")
    xs = random_inputs(rng, dw, SAMPLES)
    prepared = prepare_program(dw)
    ignored = prepared.replace(ops=[op.with_params({k: v for k, v in op.params.items() if k != "weights_offset"})
                                    for op in prepared.ops])
    litert = LiteRT(legacy_tflite(dw, uint8=False), kernels="reference").run(xs)[0]
    np.testing.assert_array_equal(litert, run_program(ignored, xs)[0])
    assert np.any(litert != run_program(dw, xs)[0])

    conv = asymmetric_weights(conv2d_program(rng), rng)
    with pytest.raises(EdgeoptError, match="zero_point"):
        LiteRT(legacy_tflite(conv, uint8=False), kernels="reference").run(random_inputs(rng, conv))
    for program in (fc, dw, conv):
        with pytest.raises(UnsupportedOpError, match="have zero point .*symmetric weights"):
            program_to_tflite(program)


def test_reading_files_with_weight_zero_points_follows_litert() -> None:
    """A .tflite with int8 weight zero points: FULLY_CONNECTED reads and runs as LiteRT runs it; CONV_2D and
    DEPTHWISE_CONV_2D, which LiteRT refuses or miscomputes, are refused in one line."""
    rng = np.random.default_rng(9)
    fc = asymmetric_weights(fully_connected_program(rng, cin=30, cout=6), rng).replace(rounding="double")
    blob = legacy_tflite(fc, uint8=False)
    xs = random_inputs(rng, fc, SAMPLES)
    np.testing.assert_array_equal(run_program(tflite_to_program(blob, "fc", "double"), xs)[0],
                                  LiteRT(blob, kernels="reference").run(xs)[0])
    for program in (conv2d_program(rng), conv2d_program(rng, depthwise=True)):
        blob = legacy_tflite(asymmetric_weights(program, rng), uint8=False)
        with pytest.raises(UnsupportedOpError, match="weights have zero point .* LiteRT's int8"):
            tflite_to_program(blob, "conv", "double")


def test_16x8_kernels_refuse_a_weight_zero_point() -> None:
    """TFLite's 16x8 kernels take no weight offset: a program asking for one is refused, not miscomputed."""
    rng = np.random.default_rng(11)
    for program in (conv_16x8_program(rng), conv_16x8_program(rng, depthwise=True), fully_connected_16x8_program(rng)):
        op = next(op for op in program.ops if op.kind in WEIGHTED)
        w = program.tensor(op.inputs[1])
        shifted = QTensor(w.name, w.shape, "int8", QParams(w.qparams.scale, 5, "int8", w.qparams.axis), w.data)
        with pytest.raises(UnsupportedOpError, match="16x8 mode needs weights with zero point 0"):
            prepare_program(program.replace(tensors={**program.tensors, w.name: shifted}))
