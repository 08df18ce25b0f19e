"""16x8 mixed precision (int16 activations, int8 weights, int64 biases) is bit-exact with LiteRT.

Random 16x8 programs per op kind and a mixed int8/int16 program (``builders_int16``) run in the executor
(``rounding="double"``) and in ai-edge-litert 2.3's reference kernels (``BUILTIN_REF``) element for
element; the files carry the op versions of ``op_version.cc``; an ONNX model deployed with
``--precision w8a16`` tracks the float model more closely than with ``w8a8`` and its .tflite runs in
LiteRT's reference and default kernels. Measured facts pinned here: LiteRT 2.3 requantizes int16
CONV_2D and DEPTHWISE_CONV_2D with the int64 ``MultiplyByQuantizedMultiplier`` (16-bit multiplier, one
rounding), FULLY_CONNECTED with a double-precision scale, and ADD as ``AddFunc`` with left shift 15.
"""
from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from ai_edge_litert import schema_py_generated as schema
from tests.builders.int16 import CASES_16X8, Int16ProgramBuilder

from edgeopt.errors import UnsupportedOpError
from edgeopt.ir import QuantizedGraph
from edgeopt.pipeline.calibrate import calibrate
from edgeopt.workflows.deploy import deploy
from edgeopt.pipeline.emit.onnx import quantized_to_onnx
from edgeopt.pipeline.emit.tflite import program_to_tflite
from edgeopt.pipeline.evaluate import dequantize_output, quantize_input, run_float
from edgeopt.pipeline.frontend.load import load
from edgeopt.pipeline.lower import lower
from edgeopt.pipeline.optimize import optimize
from edgeopt.pipeline.quantize.minmax import quantize_minmax
from edgeopt.pipeline.quantize.precision import apply_precision, precision_plan
from edgeopt.pipeline.report.precision import precision_summary
from edgeopt.qprogram import QOp, QProgram
from edgeopt.runtimes.litert import LiteRT
from edgeopt.runtimes.reference.arith.fixedpoint import multiply_by_quantized_multiplier_int64
from edgeopt.runtimes.reference.executor import run_program
from edgeopt.runtimes.reference.prepare import prepare_program
from tests.builders.int16 import assert_bitexact_16x8, opcode_versions



@pytest.mark.parametrize("case", sorted(CASES_16X8))
def test_16x8_programs_match_litert_reference(case: str) -> None:
    for seed in range(4):
        rng = np.random.default_rng(seed)
        assert_bitexact_16x8(CASES_16X8[case](rng), rng)


def test_mixed_program_has_int8_and_int16_ops_joined_by_quantize() -> None:
    program = CASES_16X8["mixed"](np.random.default_rng(0))
    dtypes = {(op.kind, program.tensor(op.inputs[0]).dtype, program.tensor(op.outputs[0]).dtype) for op in program.ops}
    assert ("QUANTIZE", "int8", "int16") in dtypes and ("QUANTIZE", "int16", "int8") in dtypes
    assert ("CONV_2D", "int8", "int8") in dtypes and ("DEPTHWISE_CONV_2D", "int16", "int16") in dtypes


def test_int64_multiply_by_quantized_multiplier_uses_a_16_bit_multiplier() -> None:
    # (m + 2**15) >> 16, then one rounding half up: 2**30 → 2**14, shift 0 → x * 2**14 / 2**15.
    x = np.array([3, -3, 1 << 40, -(1 << 40)], dtype=np.int64)
    assert multiply_by_quantized_multiplier_int64(x, 1 << 30, -10).tolist() == [0, 0, 1 << 29, -(1 << 29)]
    assert multiply_by_quantized_multiplier_int64(x[:2], 1 << 30, 0).tolist() == [2, -1]  # ties round up
    # Multipliers from 0x7FFF0000 up would round to 2**15 and saturate to 0x7FFF instead.
    assert multiply_by_quantized_multiplier_int64(np.array([1 << 20]), 0x7FFFFFFF, 0).tolist() == [(0x7FFF << 20) >> 15]


def test_tflite_carries_16x8_types_and_op_versions() -> None:
    rng = np.random.default_rng(1)
    b = Int16ProgramBuilder(rng, "versions")
    x = b.requantize(b.input((1, 5, 5, 3)), "int16")
    d = b.conv(x, 3, depthwise=True)
    y = b.average_pool(b.add(b.conv(x, 3), d), (2, 2), (1, 1))
    program = b.build([b.fully_connected(b.reshape(y, (1, 48)), 4)])
    tflite = program_to_tflite(program)
    assert opcode_versions(tflite) == {"QUANTIZE": 2, "CONV_2D": 4, "DEPTHWISE_CONV_2D": 5, "ADD": 3,
                                "AVERAGE_POOL_2D": 3, "RESHAPE": 1, "FULLY_CONNECTED": 7}
    model = schema.ModelT.InitFromObj(schema.Model.GetRootAs(tflite, 0))
    types = {t.name.decode(): t.type for t in model.subgraphs[0].tensors}
    assert types[f"{d}/bias"] == schema.TensorType.INT64 and types[d] == schema.TensorType.INT16
    add = next(op for op in model.subgraphs[0].operators
               if model.operatorCodes[op.opcodeIndex].builtinCode == schema.BuiltinOperator.ADD)
    assert add.builtinOptions.potScaleInt16 is False  # the general-scale int16 kernel


def test_int16_op_without_a_16x8_kernel_is_refused_by_name() -> None:
    b = Int16ProgramBuilder(np.random.default_rng(0), "logistic_16")
    x = b.requantize(b.input((1, 4, 4, 2)), "int16")
    moved = b.build([b.transpose(x, [0, 2, 1, 3])])
    program = moved.replace(ops=(moved.ops[0], QOp("LOGISTIC", moved.ops[1].inputs[:1], moved.ops[1].outputs,
                                                   source="logistic")))
    with pytest.raises(UnsupportedOpError, match="LOGISTIC.*int16"):
        prepare_program(program)


class _Net(torch.nn.Module):
    """Conv → ReLU → MaxPool → depthwise/pointwise residual → GAP → FC."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = torch.nn.Conv2d(3, 16, 3, padding=1)
        self.dw = torch.nn.Conv2d(16, 16, 3, padding=1, groups=16)
        self.pw = torch.nn.Conv2d(16, 16, 1)
        self.fc = torch.nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.nn.functional.max_pool2d(torch.relu(self.c1(x)), 2)
        r = self.pw(torch.relu(self.dw(h))) + h
        return self.fc(torch.flatten(torch.nn.functional.adaptive_avg_pool2d(r, 1), 1))


@dataclass(frozen=True)
class Converted:
    program: QProgram
    qgraph: QuantizedGraph
    tflite: bytes


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray, dict[str, Converted]]:
    """The ONNX export of ``_Net`` converted at both precisions, through the stages ``deploy`` runs."""
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("int16")
    path = out / "net.onnx"
    with warnings.catch_warnings():  # the TorchScript exporter is deprecated, and far faster on small models
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(_Net().eval(), (torch.zeros(1, 3, 16, 16),), str(path), dynamo=False)
    x = np.random.default_rng(0).normal(size=(200, 3, 16, 16)).astype(np.float32)
    np.savez(out / "d.npz", x=x)
    graph = optimize(load(str(path)).graph)
    stats = calibrate(graph, x)
    results = {}
    for precision in ("w8a8", "w8a16"):
        qgraph = apply_precision(quantize_minmax(graph, stats), stats, precision_plan(graph, precision))
        program = lower(qgraph, rounding="double")
        results[precision] = Converted(program, qgraph, program_to_tflite(program))
    return path, x, results


def test_w8a16_tracks_the_float_model_better_than_w8a8(converted) -> None:
    path, x, results = converted
    fp32 = run_float(load(str(path)).graph, x)
    errors, agreement = {}, {}
    for precision, result in results.items():
        program = result.program
        y = dequantize_output(program, run_program(program, [quantize_input(program, x)])[0])
        errors[precision] = float(np.abs(y - fp32).mean())
        agreement[precision] = float(np.mean(y.argmax(1) == fp32.argmax(1)))
    assert errors["w8a16"] < errors["w8a8"] / 2, errors
    assert agreement["w8a16"] >= agreement["w8a8"], agreement


def test_w8a16_tflite_is_bit_exact_and_loads_in_default_kernels(converted) -> None:
    _, x, results = converted
    program, tflite = results["w8a16"].program, results["w8a16"].tflite
    q = quantize_input(program, x)
    want = run_program(program, [q])[0]
    assert want.dtype == np.int16
    np.testing.assert_array_equal(LiteRT(tflite, kernels="reference").run([q])[0], want)
    default = LiteRT(tflite).run([q])[0]
    assert default.shape == want.shape and np.abs(default.astype(np.int64) - want).max() <= 1


def test_w8a16_program_is_int16_from_the_input_on(converted) -> None:
    summary = precision_summary(converted[2]["w8a16"].program, "w8a16")
    assert summary["int16_ops"] >= 8 and summary["ops_by_dtype"]["MAX_POOL_2D"] == {"int16": 1}
    assert summary["requantize_ops"] == 1  # the int8 input into int16; MAX_POOL_2D has a 16x8 kernel
    assert precision_summary(converted[2]["w8a8"].program, "w8a8")["int16_ops"] == 0


def test_w8a16_qdq_onnx_runs_in_onnxruntime(converted) -> None:
    import onnxruntime as ort

    _, x, results = converted
    model = quantized_to_onnx(results["w8a16"].qgraph)
    session = ort.InferenceSession(model.SerializeToString())
    y = session.run(None, {session.get_inputs()[0].name: x[:1]})[0]
    assert y.shape == (1, 10)


def test_deploy_reports_precision(converted, tmp_path: Path) -> None:
    path = converted[0]
    result = deploy(str(path), "arm-cortex-a78-xnnpack", data=path.parent / "d.npz", out=tmp_path,
                    precision="w8a16")
    assert result.report["precision"]["mode"] == "w8a16" and result.report["precision"]["int16_ops"] >= 6
    assert result.report["precision"]["tensor_dtypes"][result.program.outputs[0]] == "int16"
    assert LiteRT((tmp_path / "model.int8.tflite").read_bytes(), kernels="reference").run(
        [quantize_input(result.program, np.zeros((1, 3, 16, 16), np.float32))])[0].dtype == np.int16


def test_precision_plan_overrides(converted) -> None:
    graph = load(str(converted[0])).graph
    plan = precision_plan(graph, "w8a16", {"Gemm": "int8"})
    assert {n.op for n in graph.nodes if plan[n.name] == "int8"} == {"Gemm"}
    assert precision_plan(graph, "w8a8") == {n.name: "int8" for n in graph.nodes}
    with pytest.raises(UnsupportedOpError, match="unknown precision"):
        precision_plan(graph, "w4a16")  # type: ignore[arg-type]
    with pytest.raises(UnsupportedOpError, match="is not int8"):
        precision_plan(graph, "w8a8", {"MaxPool": "int4"})  # type: ignore[dict-item]


def test_cli_deploy_precision_w8a16(converted, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from edgeopt.cli import app

    path = converted[0]
    result = CliRunner().invoke(app, ["deploy", str(path), "--data", str(path.parent / "d.npz"), "--out", str(tmp_path),
                                      "--precision", "w8a16"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["precision"]["mode"] == "w8a16" and report["precision"]["int16_ops"] >= 6
