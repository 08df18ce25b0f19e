"""Split → SPLIT/SPLIT_V (multi-output ops) and ReduceMean → MEAN: bit-exact with LiteRT's reference
kernels on every MEAN path, end to end from ONNX, and clear errors for what is not supported."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from tests.builders.programs import random_inputs
from tests.builders.split_mean import mean_program, random_qparams, split_program
from onnx import TensorProto, helper, numpy_helper

from edgeopt.errors import UnsupportedOpError
from edgeopt.ir import QParams
from edgeopt.pipeline.calibrate import calibrate
from edgeopt.pipeline.emit.tflite import program_to_tflite
from edgeopt.pipeline.evaluate import dequantize_output, quantize_input
from edgeopt.pipeline.frontend.load import load
from edgeopt.pipeline.lower import lower
from edgeopt.pipeline.optimize import optimize
from edgeopt.pipeline.quantize.minmax import quantize_minmax
from edgeopt.qprogram import QProgram
from edgeopt.runtimes.litert import LiteRT
from edgeopt.runtimes.reference.executor import run_program


def assert_bitexact(program: QProgram, rng: np.random.Generator, batches: int = 50) -> None:
    program = program.replace(rounding="double")
    inputs = random_inputs(rng, program, batches)
    expected = LiteRT(program_to_tflite(program), kernels="reference").run(inputs)
    got = run_program(program, inputs)
    assert len(got) == len(expected)
    for g, want in zip(got, expected, strict=True):
        np.testing.assert_array_equal(g, want)


# ---------------------------------------------------------------------------------------------------
# Kernels against LiteRT BUILTIN_REF


@pytest.mark.parametrize(("shape", "axis", "sizes", "as_split"), [
    ((1, 4, 6, 8), 3, [4, 4], True),
    ((1, 4, 6, 8), -1, [2, 2, 2, 2], True),
    ((1, 4, 6, 8), 1, [1, 3], False),
    ((1, 4, 6, 8), 2, [2, 2, 2], False),  # equal sizes written as SPLIT_V
    ((2, 9), 1, [2, 3, 4], False),
    ((3, 5, 7), -2, [1, 4], False),
    ((6,), 0, [3, 3], True),
])
def test_splits_match_litert_reference(shape, axis, sizes, as_split) -> None:
    rng = np.random.default_rng(sum(sizes) + len(shape))
    assert_bitexact(split_program(rng, shape, axis, sizes, as_split), rng)


MEAN_CASES = [  # shape, axes as written, keep_dims
    ((1, 5, 7, 3), [1, 2], True),  # reference_integer_ops::Mean when the encodings differ
    ((1, 5, 7, 3), [2, 1], True),
    ((1, 5, 7, 3), [-3, -2], True),  # not [1, 2] as written: the general path
    ((1, 5, 7, 3), [1, 2], False),
    ((1, 5, 7, 3), [3], True),
    ((1, 5, 7, 3), [-1], False),
    ((1, 4, 6, 16), [1], False),
    ((2, 6, 10), [2], True),
    ((2, 6, 10), [1, 2], False),
    ((1, 12), [1], True),
    ((1, 3, 4, 5), [0, 1, 2, 3], True),
    ((1, 40, 30, 2), [1, 2], True),  # n = 1200: the 1/n folding at a large count
]


@pytest.mark.parametrize(("shape", "axes", "keep_dims"), MEAN_CASES)
@pytest.mark.parametrize("encodings", ["same", "different"])
def test_means_match_litert_reference(shape, axes, keep_dims, encodings: str) -> None:
    rng = np.random.default_rng(len(shape) * 10 + len(axes))
    for _ in range(6):
        x_q = random_qparams(rng)
        y_q = x_q if encodings == "same" else random_qparams(rng)
        assert_bitexact(mean_program(shape, axes, keep_dims, x_q, y_q), rng)


def test_mean_has_one_integer_path_in_litert() -> None:
    """LiteRT 2.3 folds 1/n into the multiplier and rounds the whole mean once: a 2x2 H,W mean of
    raw sum 5 (1.25) gives 2 in double rounding, where TFLite's older 4-D kernel (round(1.25)) gave 1."""
    q = QParams(0.1, 0)
    program = mean_program((1, 2, 2, 1), [1, 2], True, q, q).replace(rounding="double")
    x = np.array([2, 1, 1, 1], np.int8).reshape(1, 2, 2, 1)
    (want,) = LiteRT(program_to_tflite(program), kernels="reference").run([x])
    assert int(want.ravel()[0]) == 2
    np.testing.assert_array_equal(run_program(program, [x])[0], want)


# ---------------------------------------------------------------------------------------------------
# End to end from ONNX


def _model(nodes: list, inits: dict, in_shape: list, outputs: dict[str, list]) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes, "t", [helper.make_tensor_value_info("x", TensorProto.FLOAT, in_shape)],
        [helper.make_tensor_value_info(k, TensorProto.FLOAT, v) for k, v in outputs.items()],
        initializer=[numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()],
    )
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    m.ir_version = 10
    return m


def _run_end_to_end(m: onnx.ModelProto, x: np.ndarray, tmp_path: Path) -> tuple[QProgram, list, list]:
    """load → optimize → calibrate → quantize → lower("double") → .tflite; bit-exact with LiteRT
    BUILTIN_REF, runs under default kernels; returns the program, dequantized int8 and float outputs."""
    import onnxruntime

    path = tmp_path / "m.onnx"
    path.write_bytes(m.SerializeToString())
    graph = optimize(load(str(path)).graph)
    program = lower(quantize_minmax(graph, calibrate(graph, x)), rounding="double")
    tflite = program_to_tflite(program)
    q = quantize_input(program, x)
    ours = run_program(program, [q])
    for got, want in zip(ours, LiteRT(tflite, kernels="reference").run([q]), strict=True):
        np.testing.assert_array_equal(got, want)
    for got, want in zip(ours, LiteRT(tflite, kernels="default").run([q]), strict=True):
        assert got.shape == want.shape
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    floats = [session.run(None, {"x": x[i : i + 1]}) for i in range(len(x))]
    want = [np.concatenate([f[k] for f in floats]) for k in range(len(program.outputs))]
    return program, [dequantize_output(program, o, i) for i, o in enumerate(ours)], want


def test_split_three_ways_end_to_end(tmp_path: Path) -> None:
    """Conv → Split on channels into unequal pieces (SPLIT_V) and on H into equal ones (SPLIT)."""
    rng = np.random.default_rng(20)
    inits = {"w": rng.normal(0, 0.3, (8, 3, 3, 3)).astype(np.float32), "s": np.array([2, 6], np.int64)}
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("Split", ["c", "s"], ["a", "b"], name="split_c", axis=1),
        helper.make_node("Split", ["b"], ["y1", "y2"], name="split_h", axis=2, num_outputs=2),
    ]
    m = _model(nodes, inits, [1, 3, 6, 6], {"a": [1, 2, 6, 6], "y1": [1, 6, 3, 6], "y2": [1, 6, 3, 6]})
    x = rng.normal(size=(32, 3, 6, 6)).astype(np.float32)
    program, got, want = _run_end_to_end(m, x, tmp_path)
    assert [op.kind for op in program.ops] == ["CONV_2D", "SPLIT_V", "SPLIT"]
    for g, w, name in zip(got, want, program.outputs, strict=True):
        assert np.corrcoef(g.ravel(), w.ravel())[0, 1] > 0.999  # the conv's quantization error only


@pytest.mark.parametrize(("axes", "keepdims", "out_shape"), [
    ([1], 1, [1, 1, 5, 6]),  # over channels (NHWC axis 3)
    ([-3], 0, [1, 5, 6]),
    ([2], 1, [1, 4, 1, 6]),
    ([1, 2, 3], 0, [1]),
])
def test_reduce_mean_over_other_axes_end_to_end(axes, keepdims, out_shape, tmp_path: Path) -> None:
    rng = np.random.default_rng(21)
    inits = {"w": rng.normal(0, 0.3, (4, 3, 1, 1)).astype(np.float32), "axes": np.array(axes, np.int64)}
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], name="conv"),
        helper.make_node("ReduceMean", ["c", "axes"], ["y"], name="mean", keepdims=keepdims),
    ]
    x = rng.normal(size=(32, 3, 5, 6)).astype(np.float32)
    program, (got,), (want,) = _run_end_to_end(_model(nodes, inits, [1, 3, 5, 6], {"y": out_shape}), x, tmp_path)
    assert [op.kind for op in program.ops] == ["CONV_2D", "MEAN"]
    # One encoding for input and output (the "same" path): truncation costs at most one step.
    assert np.abs(got - want).max() <= 1.5 * program.tensor("y").qparams.scale[0]


def test_reduce_mean_keeping_c_and_w_transposes_back_to_the_source_order(tmp_path: Path) -> None:
    """keepdims=0 over H of NCHW leaves (N, C, W), which NHWC's MEAN would give as (N, W, C): the MEAN keeps
    dims, a TRANSPOSE puts C before W and a RESHAPE drops H."""
    rng = np.random.default_rng(22)
    inits = {"w": rng.normal(0, 0.3, (2, 3, 1, 1)).astype(np.float32), "axes": np.array([2], np.int64)}
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv"),
             helper.make_node("ReduceMean", ["c", "axes"], ["y"], name="mh", keepdims=0)]
    x = rng.normal(size=(32, 3, 4, 5)).astype(np.float32)
    program, (got,), (want,) = _run_end_to_end(_model(nodes, inits, [1, 3, 4, 5], {"y": [1, 2, 5]}), x, tmp_path)
    assert [op.kind for op in program.ops] == ["CONV_2D", "MEAN", "TRANSPOSE", "RESHAPE"]
    assert np.abs(got - want).max() <= 1.5 * program.tensor("y").qparams.scale[0]


def test_reduce_mean_noop_with_empty_axes_is_rejected(tmp_path: Path) -> None:
    node = helper.make_node("ReduceMean", ["x"], ["y"], name="noop", noop_with_empty_axes=1)
    path = tmp_path / "m.onnx"
    path.write_bytes(_model([node], {}, [1, 2, 4, 5], {"y": [1, 2, 4, 5]}).SerializeToString())
    graph = optimize(load(str(path)).graph)
    x = np.random.default_rng(0).normal(size=(4, 2, 4, 5)).astype(np.float32)
    with pytest.raises(UnsupportedOpError, match="ReduceMean.*'noop'.*noop_with_empty_axes"):
        lower(quantize_minmax(graph, calibrate(graph, x)))
