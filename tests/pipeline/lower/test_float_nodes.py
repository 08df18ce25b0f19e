"""Float nodes (``QuantizedGraph.float_nodes``): any node lowered as a float island inside the int8 program,
against LiteRT 2.3 BUILTIN_REF, in the QDQ .onnx, from a profile's float-only unit, and from a precision
plan's ``"float"``.

Measured (``python -m pytest tests/pipeline/lower/test_float_nodes.py``, the op zoo of ``float_node_models``, 200 inputs):
every int8 program output equals BUILTIN_REF's, for each node kept in float alone. The float32 tensors a
float node writes are bit-exact for every kind but CONV_2D and FULLY_CONNECTED (float64 dot products here,
running float32 sums in LiteRT: at most 2.4e-7 of the tensor's largest magnitude apart), TANH (2 ulp) and
SOFTMAX (3 ulp).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper

from edgeopt.device_profiles import load_profile
from edgeopt.errors import UnsupportedOpError
from edgeopt.ir import QuantizedGraph
from edgeopt.pipeline.calibrate import calibrate
from edgeopt.workflows.deploy import deploy
from edgeopt.pipeline.emit.onnx import quantized_to_onnx
from edgeopt.pipeline.emit.tflite import program_to_tflite
from edgeopt.pipeline.evaluate import dequantize_output, quantize_input, run_float
from edgeopt.pipeline.target import lower_and_place
from edgeopt.pipeline.lower import lower
from edgeopt.pipeline.frontend.onnx import onnx_to_graph
from edgeopt.pipeline.optimize import optimize
from edgeopt.pipeline.quantize.minmax import quantize_minmax
from edgeopt.pipeline.quantize.precision import apply_precision, precision_plan
from edgeopt.runtimes.litert import LiteRT
from edgeopt.runtimes.onnxruntime import OnnxRuntime
from edgeopt.runtimes.reference.executor import run_program
from tests.builders.float_node_models import op_zoo
from tests.builders.onnx_models import model
from tests.builders.paths import PROFILES

# Float kernels whose float32 results equal BUILTIN_REF's bit for bit (see the module docstring).
INEXACT = frozenset({"CONV_2D", "FULLY_CONNECTED", "TANH", "SOFTMAX"})
FLOAT_RTOL = 4 * 2.0**-23  # TANH, SOFTMAX: a few ulp
DOT_ATOL = 1e-6  # CONV_2D, FULLY_CONNECTED: relative to the tensor's largest magnitude


@pytest.fixture(scope="module")
def zoo() -> tuple[QuantizedGraph, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    graph = optimize(onnx_to_graph(op_zoo(rng), "zoo", None))
    calib = rng.normal(size=(32, 3, 8, 8)).astype(np.float32)
    test = rng.normal(size=(200, 3, 8, 8)).astype(np.float32)
    return quantize_minmax(graph, calibrate(graph, calib)), calib, test


def _floats(qgraph: QuantizedGraph, names: set[str]) -> QuantizedGraph:
    return QuantizedGraph(qgraph.graph, qgraph.encodings, frozenset(names))


def _float_kinds(program) -> list[str]:
    return [op.kind for op in program.ops if program.tensor(op.outputs[0]).dtype == "float32"]


def test_each_node_in_float_matches_litert_reference(zoo) -> None:
    qgraph, _, test = zoo
    x = [quantize_input(lower(qgraph, "double"), test)]
    families = set()
    for node in qgraph.graph.nodes:
        program = lower(_floats(qgraph, {node.name}), rounding="double")
        kinds = _float_kinds(program)
        assert kinds[0] == "DEQUANTIZE" and {op.source for op in program.ops if op.kind == "QUANTIZE"} == {node.name}
        families.update(kinds[1:])
        tflite = program_to_tflite(program)
        np.testing.assert_array_equal(run_program(program, x)[0], LiteRT(tflite, kernels="reference").run(x)[0],
                                      err_msg=node.name)
        LiteRT(tflite, kernels="default").run(x)  # XNNPACK takes the mixed file too
        # The node's float32 output itself, as the program's output.
        as_float = program.replace(outputs=(f"{node.outputs[0]}/float",))
        got = run_program(as_float, x)[0]
        want = LiteRT(program_to_tflite(as_float), kernels="reference").run(x)[0]
        if INEXACT.isdisjoint(kinds):
            np.testing.assert_array_equal(got, want, err_msg=node.name)
        else:
            np.testing.assert_allclose(got, want, rtol=FLOAT_RTOL, atol=DOT_ATOL * np.abs(want).max(), err_msg=node.name)
    assert {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "AVERAGE_POOL_2D", "MAX_POOL_2D", "CONCATENATION",
            "RESHAPE", "PAD", "SOFTMAX", "LOGISTIC", "TANH", "HARD_SWISH", "RELU", "RELU6", "TRANSPOSE", "MEAN",
            "ADD", "MUL", "RESIZE_NEAREST_NEIGHBOR", "RESIZE_BILINEAR"} <= families


def test_consecutive_float_nodes_share_one_island(zoo) -> None:
    qgraph, _, test = zoo
    # depthwise → hard_swish → grouped → sigmoid: one chain; hard_swish's output is also read by the
    # int8 concat, sigmoid's by int8 resizes and flatten: those two (only) leave the island.
    chain = {"depthwise", "hard_swish", "grouped", "sigmoid"}
    program = lower(_floats(qgraph, chain), rounding="double")
    kinds = [op.kind for op in program.ops]
    assert kinds.count("DEQUANTIZE") == 1
    assert [op.source for op in program.ops if op.kind == "QUANTIZE"] == ["hard_swish", "sigmoid"]
    assert set(_float_kinds(program)) == {"DEQUANTIZE", "PAD", "DEPTHWISE_CONV_2D", "HARD_SWISH", "CONV_2D",
                                          "LOGISTIC"}
    x = [quantize_input(program, test)]
    np.testing.assert_array_equal(run_program(program, x)[0],
                                  LiteRT(program_to_tflite(program), kernels="reference").run(x)[0])


def test_all_float_program_and_qdq_onnx_follow_the_float_model(zoo) -> None:
    qgraph, _, test = zoo
    names = {n.name for n in qgraph.graph.nodes}
    program = lower(_floats(qgraph, names), rounding="double")
    assert [op.kind for op in program.ops].count("QUANTIZE") == 1  # the graph output only
    reference = run_float(qgraph.graph, test)
    int8 = dequantize_output(program, run_program(program, [quantize_input(program, test)])[0])
    qdq = quantized_to_onnx(_floats(qgraph, names))
    kinds = [n.op_type for n in qdq.graph.node]
    # Q/DQ of the input and of the output only: weights stay float initializers.
    assert kinds.count("QuantizeLinear") == kinds.count("DequantizeLinear") == 2
    assert {i.name for i in qdq.graph.initializer} >= {"w1", "wdw", "wfc"}
    ort = np.concatenate([OnnxRuntime(qdq).run([t[None]])[0] for t in test[:20]])
    output_step = float(program.tensor(program.outputs[0]).qparams.scale[0])
    # Only the input's and the output's quantization remain.
    assert np.abs(int8 - reference).max() <= 3 * output_step
    assert np.abs(ort - int8[:20]).max() <= output_step


def test_qdq_onnx_quantizes_a_float_output_only_for_int8_readers(zoo) -> None:
    qgraph, _, test = zoo
    qdq = quantized_to_onnx(_floats(qgraph, {"depthwise", "hard_swish"}))
    quantized = {n.input[0].removesuffix("__f") for n in qdq.graph.node if n.op_type == "QuantizeLinear"}
    dequantized_weights = {n.output[0] for n in qdq.graph.node if n.op_type == "DequantizeLinear"}
    assert "b" not in quantized  # depthwise → hard_swish inside the island
    assert "hs" in quantized  # read by the int8 grouped conv and concat
    assert "wdw" not in dequantized_weights and "w1" in dequantized_weights
    OnnxRuntime(qdq).run([test[:1]])


def _softmax_model() -> onnx.ModelProto:
    rng = np.random.default_rng(3)
    inits = {"w": rng.normal(0, 0.3, (6, 3, 3, 3)).astype(np.float32), "b": rng.normal(0, 0.1, 6).astype(np.float32),
             "fc": rng.normal(0, 0.3, (10, 6)).astype(np.float32)}
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("GlobalAveragePool", ["r"], ["g"], name="gap"),
             helper.make_node("Flatten", ["g"], ["f"], name="flatten"),
             helper.make_node("Gemm", ["f", "fc"], ["l"], name="logits", transB=1),
             helper.make_node("Softmax", ["l"], ["y"], name="softmax", axis=-1)]
    return model(nodes, inits, [1, 3, 8, 8], [1, 10])


def _profile(tmp_path: Path, npu_softmax: str, cpu_softmax: str) -> Path:
    """host.toml with an int8 NPU and a CPU whose SOFTMAX rules are ``npu_softmax`` and ``cpu_softmax``."""
    text = (PROFILES / "host.toml").read_text()
    head = text[: text.index("[compute_units.cpu]")]
    units = f'''
[compute_units.npu]
kind = "npu"
name = "test NPU"
defaults = {{ dtypes = ["int8"] }}
ops = {{ "*" = {{}}, SOFTMAX = {npu_softmax}, DEQUANTIZE = {{ dtypes = ["fp32"] }} }}

[compute_units.cpu]
kind = "cpu"
name = "test CPU"
ops = {{ "*" = {{}}, SOFTMAX = {cpu_softmax} }}

[placement]
fallback_order = ["npu", "cpu"]

[crossing]  # test values
overhead_s = 1.0e-6
bandwidth_bytes_per_s = 1.0e10
byte_j = 1.0e-11
'''
    path = tmp_path / "float-softmax.toml"
    # Double rounding: what LiteRT 2.3's BUILTIN_REF kernels do, so the executor matches them exactly.
    head = head.replace('name = "host"', 'name = "float-softmax-test"').replace(
        'requantization_rounding = "single"', 'requantization_rounding = "double"')
    path.write_text(head + units)
    return path


def test_profile_float_only_op_becomes_a_float_island(tmp_path: Path) -> None:
    onnx.save(_softmax_model(), tmp_path / "m.onnx")
    rng = np.random.default_rng(4)
    np.savez(tmp_path / "data.npz", x=rng.normal(size=(64, 3, 8, 8)).astype(np.float32))
    profile = _profile(tmp_path, '{ dtypes = ["fp32"] }', '{ dtypes = ["fp32"] }')
    result = deploy(str(tmp_path / "m.onnx"), str(profile), data=tmp_path / "data.npz", out=tmp_path / "out")
    assert result.report["float_nodes"] == ["softmax"]
    rows = {(r["node"], r["op"]): r for r in result.report["placement"]["ops"]}
    row = rows["softmax", "SOFTMAX"]
    assert row["dtype"] == "fp32" and row["unit"] == "npu"
    assert "SOFTMAX: dtype int8 not supported on test NPU (rule compute_units.npu.ops.SOFTMAX.dtypes" in row["reason"]
    assert row["reason"].endswith("runs in float32 on test NPU")
    assert rows["conv", "CONV_2D"]["dtype"] == "int8"
    program = result.program
    assert _float_kinds(program) == ["DEQUANTIZE", "SOFTMAX"]
    x = [quantize_input(program, np.load(tmp_path / "data.npz")["x"])]
    tflite = (result.out_dir / "model.int8.tflite").read_bytes()
    np.testing.assert_array_equal(run_program(program, x)[0], LiteRT(tflite, kernels="reference").run(x)[0])
    LiteRT(tflite, kernels="default").run(x)
    qdq = onnx.load(result.out_dir / "model.int8.onnx")
    OnnxRuntime(qdq).run([np.load(tmp_path / "data.npz")["x"][:1]])


def test_op_without_any_float_unit_still_names_op_node_and_rule(tmp_path: Path) -> None:
    graph = optimize(onnx_to_graph(_softmax_model(), "m", None))
    qgraph = quantize_minmax(graph, calibrate(graph, np.random.default_rng(5).normal(size=(8, 3, 8, 8)).astype(np.float32)))
    profile = load_profile(str(_profile(tmp_path, '{ dtypes = ["int16"] }', '{ dtypes = ["int16"] }')))
    with pytest.raises(UnsupportedOpError, match=r"SOFTMAX.*'softmax'.*compute_units\.cpu\.ops\.SOFTMAX\.dtypes"):
        lower_and_place(qgraph, profile)


def test_precision_plan_float_override_lowers_the_error() -> None:
    """Conv → Conv whose first filters each have one large tap: per-channel int8 weights then round the
    small taps coarsely. Keeping the first conv in float removes its weight quantization (its output is
    still quantized for the int8 conv reading it); keeping both (op type override) makes one island with
    only the input and output quantized. Measured output MSE against the float model: 0.0238 all int8,
    0.0187 with conv1 float, 0.0103 with both."""
    rng = np.random.default_rng(1)
    w1 = rng.normal(0, 0.05, (8, 3, 3, 3)).astype(np.float32)
    w1[:, 0, 0, 0] = 3.0
    inits = {"w1": w1, "w2": rng.normal(0, 0.3, (4, 8, 3, 3)).astype(np.float32)}
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c"], name="conv1", pads=[1, 1, 1, 1]),
             helper.make_node("Conv", ["c", "w2"], ["y"], name="conv2", pads=[1, 1, 1, 1])]
    graph = optimize(onnx_to_graph(model(nodes, inits, [1, 3, 8, 8], [1, 4, 8, 8]), "m", None))
    calib = rng.normal(size=(32, 3, 8, 8)).astype(np.float32)
    test = rng.normal(size=(64, 3, 8, 8)).astype(np.float32)
    stats = calibrate(graph, calib)
    reference = run_float(graph, test)
    errors, islands = [], []
    for overrides in ({}, {"conv1": "float"}, {"Conv": "float"}):
        plan = precision_plan(graph, "w8a8", overrides)
        qgraph = apply_precision(quantize_minmax(graph, stats), stats, plan)
        assert qgraph.float_nodes == {n for n, dtype in plan.items() if dtype == "float"}
        program = lower(qgraph)
        out = dequantize_output(program, run_program(program, [quantize_input(program, test)])[0])
        errors.append(float(np.mean((out - reference) ** 2)))
        islands.append(_float_kinds(program))
    assert islands == [[], ["DEQUANTIZE", "CONV_2D"], ["DEQUANTIZE", "CONV_2D", "CONV_2D"]]
    assert errors[1] < 0.9 * errors[0] and errors[2] < 0.6 * errors[0], errors
