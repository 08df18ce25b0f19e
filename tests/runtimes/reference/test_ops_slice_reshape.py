"""STRIDED_SLICE with negative strides and masks (bit-exact with LiteRT's reference kernel), Slice with
negative steps from ONNX, and the Reshape/Flatten/Squeeze/Unsqueeze corner cases end to end."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from tests.builders.split_mean import random_qparams
from onnx import TensorProto, helper, numpy_helper

from edgeopt.pipeline.calibrate import calibrate
from edgeopt.pipeline.emit.tflite import program_to_tflite
from edgeopt.pipeline.evaluate import dequantize_output, quantize_input
from edgeopt.pipeline.frontend.load import load
from edgeopt.pipeline.lower import lower
from edgeopt.pipeline.optimize import optimize
from edgeopt.pipeline.quantize.minmax import quantize_minmax
from edgeopt.qprogram import QOp, QProgram, QTensor
from edgeopt.runtimes.litert import LiteRT
from edgeopt.runtimes.reference.executor import run_program
from edgeopt.runtimes.reference.movement import axis_indices


def _slice_program(rng: np.random.Generator, shape: tuple[int, ...], begin: list[int], end: list[int],
                   strides: list[int], begin_mask: int, end_mask: int) -> QProgram:
    out = tuple(len(axis_indices(d, b, e, s, bool(begin_mask >> i & 1), bool(end_mask >> i & 1)))
                for i, (d, b, e, s) in enumerate(zip(shape, begin, end, strides)))
    q = random_qparams(rng)
    consts = [QTensor(k, (len(shape),), "int32", data=np.array(v, np.int32))
              for k, v in (("begin", begin), ("end", end), ("strides", strides))]
    tensors = {t.name: t for t in (QTensor("x", shape, "int8", q), *consts, QTensor("y", out, "int8", q))}
    op = QOp("STRIDED_SLICE", ("x", "begin", "end", "strides"), ("y",),
             {"begin_mask": begin_mask, "end_mask": end_mask}, source="ss")
    return QProgram("ss", tensors, [op], ("x",), ("y",), rounding="double")


def test_random_strided_slices_with_negative_strides_and_masks_match_litert_reference() -> None:
    """Begin/end anywhere in [-2 * dim, 2 * dim], strides of either sign, random masks (batch axis
    whole): the clamping of LiteRT's StartForAxis/StopForAxis in both directions."""
    rng = np.random.default_rng(30)
    checked = 0
    while checked < 60:
        shape = (1, *(int(d) for d in rng.integers(1, 7, int(rng.integers(1, 4)))))
        rank = len(shape)
        begin = [0] + [int(rng.integers(-2 * d, 2 * d + 1)) for d in shape[1:]]
        end = [1] + [int(rng.integers(-2 * d - 1, 2 * d + 1)) for d in shape[1:]]
        strides = [1] + [int(rng.choice([-3, -2, -1, 1, 2, 3])) for _ in shape[1:]]
        begin_mask, end_mask = (int(rng.integers(0, 1 << rank)) & ~1 for _ in range(2))
        program = _slice_program(rng, shape, begin, end, strides, begin_mask, end_mask)
        if 0 in program.tensor("y").shape:
            continue  # LiteRT's Python API cannot hand back empty outputs
        x = rng.integers(-128, 128, (20, *shape[1:]), dtype=np.int8)
        (want,) = LiteRT(program_to_tflite(program), kernels="reference").run([x])
        np.testing.assert_array_equal(run_program(program, [x])[0], want)
        checked += 1


def _model(nodes: list, inits: dict, in_shape: list, out_shape: list) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes, "t", [helper.make_tensor_value_info("x", TensorProto.FLOAT, in_shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)],
        initializer=[numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()],
    )
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    m.ir_version = 10
    return m


def _exact_end_to_end(m: onnx.ModelProto, x: np.ndarray, tmp_path: Path) -> QProgram:
    """Data movement only: the int8 result is exactly the quantized float result, bit-exact with
    LiteRT BUILTIN_REF, and LiteRT's default kernels agree too (they only move bytes)."""
    import onnxruntime

    path = tmp_path / "m.onnx"
    path.write_bytes(m.SerializeToString())
    graph = optimize(load(str(path)).graph)
    program = lower(quantize_minmax(graph, calibrate(graph, x)), rounding="double")
    tflite = program_to_tflite(program)
    q = quantize_input(program, x)
    (ours,) = run_program(program, [q])
    np.testing.assert_array_equal(LiteRT(tflite, kernels="reference").run([q])[0], ours)
    np.testing.assert_array_equal(LiteRT(tflite, kernels="default").run([q])[0], ours)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    b = session.get_inputs()[0].shape[0]
    want = np.concatenate([session.run(None, {"x": x[i : i + b]})[0] for i in range(0, len(x), b)])
    enc = program.tensor(program.inputs[0]).qparams
    np.testing.assert_allclose(dequantize_output(program, ours), enc.dequantize(enc.quantize(want)), atol=1e-6)
    return program


@pytest.mark.parametrize(("starts", "ends", "axes", "steps", "out"), [
    ([-1], [-(2**63)], [3], [-1], [1, 3, 5, 6]),  # flip W: x[..., ::-1]
    ([4, 0], [0, 2**63 - 1], [2, 1], [-2, 1], [1, 3, 2, 6]),  # H 4, 2 (end 0 excluded)
    ([100], [-100], [-1], [-4], [1, 3, 5, 2]),  # clamped start 5, through index 0: 5, 1
    ([2], [-(2**63)], [1], [-1], [1, 3, 5, 6]),  # channels reversed (NHWC axis 3)
])
def test_slice_with_negative_steps_end_to_end(starts, ends, axes, steps, out, tmp_path: Path) -> None:
    inits = {k: np.array(v, np.int64) for k, v in (("s", starts), ("e", ends), ("a", axes), ("st", steps))}
    node = helper.make_node("Slice", ["x", "s", "e", "a", "st"], ["y"], name="slice")
    x = np.random.default_rng(31).normal(size=(8, 3, 5, 6)).astype(np.float32)
    program = _exact_end_to_end(_model([node], inits, [1, 3, 5, 6], out), x, tmp_path)
    assert [op.kind for op in program.ops] == ["STRIDED_SLICE"]


RESHAPE_CASES = [  # nodes, inits, input shape, output shape
    ([helper.make_node("Reshape", ["x", "shape"], ["y"], name="r")], {"shape": np.array([0, -1], np.int64)},
     [1, 3, 4, 5], [1, 60]),
    ([helper.make_node("Reshape", ["x", "shape"], ["y"], name="r")], {"shape": np.array([0, 0, -1, 2], np.int64)},
     [1, 3, 4, 6], [1, 3, 12, 2]),
    ([helper.make_node("Reshape", ["x", "shape"], ["y"], name="r", allowzero=1)],
     {"shape": np.array([1, 6, 10], np.int64)}, [1, 3, 4, 5], [1, 6, 10]),
    ([helper.make_node("Flatten", ["x"], ["y"], name="f", axis=2)], {}, [1, 3, 4, 5], [3, 20]),
    ([helper.make_node("Flatten", ["x"], ["y"], name="f", axis=0)], {}, [1, 3, 4, 5], [1, 60]),
    ([helper.make_node("Flatten", ["x"], ["y"], name="f", axis=-1)], {}, [1, 3, 4, 5], [12, 5]),
    ([helper.make_node("Squeeze", ["x", "ax"], ["y"], name="s")], {"ax": np.array([-2], np.int64)},
     [1, 3, 1, 5], [1, 3, 5]),
    ([helper.make_node("Squeeze", ["x"], ["y"], name="s")], {}, [1, 3, 1, 5], [3, 5]),
    ([helper.make_node("Unsqueeze", ["x", "ax"], ["y"], name="u")], {"ax": np.array([-1], np.int64)},
     [1, 3, 5], [1, 3, 5, 1]),
    ([helper.make_node("Unsqueeze", ["x", "ax"], ["y"], name="u")], {"ax": np.array([1, -2], np.int64)},
     [1, 15], [1, 1, 1, 15]),
]


@pytest.mark.parametrize(("nodes", "inits", "in_shape", "out_shape"), RESHAPE_CASES)
def test_reshape_corner_cases_end_to_end(nodes, inits, in_shape, out_shape, tmp_path: Path) -> None:
    x = np.random.default_rng(32).normal(size=(8 * in_shape[0], *in_shape[1:])).astype(np.float32)
    _exact_end_to_end(_model(nodes, inits, in_shape, out_shape), x, tmp_path)
