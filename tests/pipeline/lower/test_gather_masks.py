"""GATHER on 4-D activations (NHWC in the program) and a scalar index, and the boolean mask path of
Hugging Face's exporters in 4-D (Cast to bool, GatherND with constant indices, And with a constant,
Expand, Where): the executor equals LiteRT's reference kernels element for element, and the values
follow ONNX Runtime's."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgeopt.pipeline.evaluate import dequantize_output, program_inputs
from edgeopt.pipeline.frontend.data import load_npz
from edgeopt.pipeline.frontend.load import load
from edgeopt.runtimes.litert import LiteRT
from edgeopt.runtimes.reference.executor import run_program
from edgeopt.workflows.deploy import deploy

S = 6


def _mask_and_gather_model() -> onnx.ModelProto:
    idx = np.stack([np.zeros(S, np.int64), np.arange(S)], -1).reshape(1, 1, 1, S, 2)
    allowed = np.tril(np.ones((S, S), bool), 2).reshape(1, 1, S, S)
    inits = [
        numpy_helper.from_array(idx, "nd_idx"),
        numpy_helper.from_array(allowed, "allowed"),
        numpy_helper.from_array(np.array([1, 2, S, S], np.int64), "expand_to"),
        numpy_helper.from_array(np.array(1.0, np.float32), "one"),
        numpy_helper.from_array(np.array(-1.0, np.float32), "minus_one"),
        numpy_helper.from_array(np.array([1, S, 2, 2], np.int64), "to4d"),
        numpy_helper.from_array(np.array([1, 0], np.int64), "swap"),
        numpy_helper.from_array(np.array(-1, np.int64), "last"),
    ]
    nodes = [
        helper.make_node("Cast", ["mask"], ["keep"], to=TensorProto.BOOL),
        helper.make_node("GatherND", ["keep", "nd_idx"], ["keep4"]),
        helper.make_node("And", ["keep4", "allowed"], ["both"]),
        helper.make_node("Expand", ["both", "expand_to"], ["wide"]),
        helper.make_node("Where", ["wide", "one", "minus_one"], ["signs"]),
        helper.make_node("Reshape", ["x", "to4d"], ["x4"]),
        helper.make_node("Gather", ["x4", "swap"], ["swapped"], axis=2),
        helper.make_node("Gather", ["x", "last"], ["last_token"], axis=1),
    ]
    graph = helper.make_graph(
        nodes, "masks",
        [helper.make_tensor_value_info("mask", TensorProto.INT64, [1, S]),
         helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, S, 4])],
        [helper.make_tensor_value_info("signs", TensorProto.FLOAT, [1, 2, S, S]),
         helper.make_tensor_value_info("swapped", TensorProto.FLOAT, [1, S, 2, 2]),
         helper.make_tensor_value_info("last_token", TensorProto.FLOAT, [1, 4])],
        initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9  # what ONNX Runtime here reads
    return model


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    rng = np.random.default_rng(0)
    kept = rng.integers(1, S + 1, 16)
    data = {"mask": (np.arange(S)[None, :] < kept[:, None]).astype(np.int64),
            "x": rng.normal(size=(16, S, 4)).astype(np.float32)}
    model, npz = tmp_path / "masks.onnx", tmp_path / "masks.npz"
    onnx.save(_mask_and_gather_model(), str(model))
    np.savez(npz, **data)
    return model, npz


def test_gathers_and_mask_path_equal_litert_and_onnx_runtime(files: tuple[Path, Path], tmp_path: Path):
    model, npz = files
    result = deploy(str(model), "arm-cortex-a78-xnnpack", data=str(npz), out=str(tmp_path / "out"))
    program = result.program.replace(rounding="double")
    kinds = {op.kind for op in program.ops}
    assert {"CAST", "GATHER", "LOGICAL_AND", "BROADCAST_TO", "SELECT_V2"} <= kinds
    x, _ = load_npz(npz, load(str(model)).graph.inputs, labels=False)
    inputs = program_inputs(program, x)
    expected = LiteRT(result.out_dir / "model.int8.tflite", kernels="reference").run(inputs)
    got = run_program(program, inputs)
    assert all(np.array_equal(g, e) for g, e in zip(got, expected, strict=True))
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    fp32 = [np.concatenate(o) for o in zip(*(session.run(None, {"mask": x["mask"][i:i + 1], "x": x["x"][i:i + 1]})
                                             for i in range(len(x))))]
    for i, (ours, theirs) in enumerate(zip(got, fp32)):
        scale = float(program.tensor(program.outputs[i]).qparams.scale[0])
        assert np.abs(dequantize_output(program, ours, i) - theirs).max() <= scale / 2 + 1e-6
