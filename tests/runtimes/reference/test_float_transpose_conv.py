"""A ConvTranspose kept in float (a float island around TRANSPOSE_CONV) against LiteRT 2.3 BUILTIN_REF:
the float32 tensor it writes bit for bit, and the int8 program output, for the geometries the lowering
writes as one TRANSPOSE_CONV (SAME, VALID) or as one followed by a STRIDED_SLICE crop.

Measured (``python -m pytest tests/runtimes/reference/test_float_transpose_conv.py``, 40 inputs each): every float32 value
equal, which is stricter than CONV_2D's tolerance (``tests/pipeline/lower/test_float_nodes.py``): the kernel adds the
products in the order the reference's scatter loop does.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper

from edgeopt.ir import QuantizedGraph
from edgeopt.pipeline.calibrate import calibrate
from edgeopt.workflows.deploy import deploy
from edgeopt.pipeline.emit.tflite import program_to_tflite
from edgeopt.pipeline.evaluate import quantize_input
from edgeopt.pipeline.lower import lower
from edgeopt.pipeline.frontend.onnx import onnx_to_graph
from edgeopt.pipeline.optimize import optimize
from edgeopt.pipeline.quantize.minmax import quantize_minmax
from edgeopt.runtimes.litert import LiteRT
from edgeopt.runtimes.reference.executor import run_program
from tests.builders.onnx_models import model

GEOMETRIES = {  # name: (ConvTranspose attributes, kernel, bias, output H/W, the TFLite ops it lowers to)
    "same_stride2_k3": ({"strides": [2, 2], "pads": [1, 1, 1, 1], "output_padding": [1, 1]}, 3, True, 16,
                        ["TRANSPOSE_CONV", "STRIDED_SLICE"]),
    "valid_stride2_k3": ({"strides": [2, 2]}, 3, True, 17, ["TRANSPOSE_CONV"]),
    "stride1_k3": ({"pads": [1, 1, 1, 1]}, 3, False, 8, ["TRANSPOSE_CONV"]),
    "stride2_k2_no_overlap": ({"strides": [2, 2]}, 2, True, 16, ["TRANSPOSE_CONV"]),
    "stride3_k2_gaps": ({"strides": [3, 3]}, 2, False, 23, ["TRANSPOSE_CONV"]),
    "stride2_k4_asymmetric_crop": ({"strides": [2, 2], "pads": [2, 1, 1, 2]}, 4, True, 15,
                                   ["TRANSPOSE_CONV", "STRIDED_SLICE"]),
}


def _model(attrs: dict, kernel: int, bias: bool, out: int, seed: int) -> onnx.ModelProto:
    """x (N, 4, 8, 8) → ConvTranspose (4 → 6 channels) → Relu → y."""
    rng = np.random.default_rng(seed)
    inits = {"w": rng.normal(0, 0.3, (4, 6, kernel, kernel)).astype(np.float32)}
    inputs = ["x", "w"]
    if bias:
        inits["b"] = rng.normal(0, 0.2, 6).astype(np.float32)
        inputs.append("b")
    nodes = [helper.make_node("ConvTranspose", inputs, ["c"], name="deconv", **attrs),
             helper.make_node("Relu", ["c"], ["y"], name="relu")]
    return model(nodes, inits, ["N", 4, 8, 8], ["N", 6, out, out])


@pytest.mark.parametrize("name", GEOMETRIES)
def test_float_transpose_conv_matches_litert_reference(name: str) -> None:
    attrs, kernel, bias, out, kinds = GEOMETRIES[name]
    seed = list(GEOMETRIES).index(name)
    rng = np.random.default_rng(100 + seed)
    graph = optimize(onnx_to_graph(_model(attrs, kernel, bias, out, seed), "m", None))
    qgraph = quantize_minmax(graph, calibrate(graph, rng.normal(size=(16, 4, 8, 8)).astype(np.float32)))
    program = lower(QuantizedGraph(qgraph.graph, qgraph.encodings, frozenset({"deconv"})), rounding="double")
    assert [op.kind for op in program.ops if op.source == "deconv"] == ["DEQUANTIZE", *kinds, "QUANTIZE"]
    assert all(program.tensor(op.outputs[0]).dtype == "float32" for op in program.ops if op.kind in kinds)
    x = [quantize_input(program, rng.normal(size=(40, 4, 8, 8)).astype(np.float32))]
    tflite = program_to_tflite(program)
    np.testing.assert_array_equal(run_program(program, x)[0], LiteRT(tflite, kernels="reference").run(x)[0])
    LiteRT(tflite, kernels="default").run(x)  # XNNPACK takes the mixed file too
    as_float = program.replace(outputs=("c/float",))
    got = run_program(as_float, x)[0]
    want = LiteRT(program_to_tflite(as_float), kernels="reference").run(x)[0]
    assert got.dtype == want.dtype == np.float32 and got.shape == want.shape == (40, out, out, 6)
    np.testing.assert_array_equal(got, want)


def test_deploy_keeps_a_conv_transpose_in_float_by_override(tmp_path: Path) -> None:
    attrs, kernel, bias, out, _ = GEOMETRIES["same_stride2_k3"]
    onnx.save(_model(attrs, kernel, bias, out, 0), tmp_path / "m.onnx")
    rng = np.random.default_rng(7)
    np.savez(tmp_path / "d.npz", x=rng.normal(size=(32, 4, 8, 8)).astype(np.float32))
    result = deploy(str(tmp_path / "m.onnx"), "arm-cortex-a78-xnnpack", data=tmp_path / "d.npz",
                    out=tmp_path / "out", precision_overrides={"ConvTranspose": "float"})
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["float_nodes"] == ["deconv"] and report["precision"]["mode"] == "mixed"
    rows = [r for r in report["placement"]["ops"] if r["op"] == "TRANSPOSE_CONV"]
    assert [r["dtype"] for r in rows] == ["fp32"]
    x = [quantize_input(result.program, np.load(tmp_path / "d.npz")["x"])]
    tflite = (tmp_path / "out" / "model.int8.tflite").read_bytes()
    program = result.program.replace(rounding="double")  # BUILTIN_REF's rounding (the profile's is single)
    np.testing.assert_array_equal(run_program(program, x)[0], LiteRT(tflite, kernels="reference").run(x)[0])
