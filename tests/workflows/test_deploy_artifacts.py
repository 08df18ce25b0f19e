"""The artifacts a deploy writes agree with the integer executor: .tflite bit for bit, QDQ .onnx within a step."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from edgeopt.workflows.deploy import deploy
from edgeopt.pipeline.calibrate import calibrate
from edgeopt.pipeline.evaluate import quantize_input
from edgeopt.pipeline.frontend.load import load
from edgeopt.pipeline.lower import lower
from edgeopt.pipeline.optimize import optimize
from edgeopt.pipeline.quantize.minmax import quantize_minmax
from edgeopt.runtimes.litert import LiteRT
from edgeopt.runtimes.onnxruntime import OnnxRuntime
from edgeopt.runtimes.reference.executor import run_program
from tests.builders.onnx_models import conv_bn_relu6


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory):
    """The built-in example deployed once, plus its int8 program and held-out data."""
    out = tmp_path_factory.mktemp("example")
    result = deploy(None, "arm-cortex-a78-xnnpack", out=out)
    loaded = load(None)
    graph = optimize(loaded.graph)
    # LiteRT 2.3's reference kernels round twice (gemmlowp) in conv and add: emulate them with "double".
    program = lower(quantize_minmax(graph, calibrate(graph, loaded.calib[:500])), rounding="double")
    return result, program, loaded.data[0]


def test_tflite_from_deploy_is_the_program_the_executor_runs(example):
    result, program, x = example
    tflite = Path(result.report["artifacts"]["tflite"]).read_bytes()
    q = quantize_input(program, x)
    want = run_program(program, [q])[0]
    got = LiteRT(tflite, kernels="reference").run([q])[0]
    np.testing.assert_array_equal(got, want)


def test_fp32_tflite_is_the_float_twin_of_the_shipped_program(example):
    """``model.fp32.tflite``: the shipped program's ops in float32 (no QUANTIZE/DEQUANTIZE, dequantized
    weights), float input; LiteRT's top-1 on it agrees with the float model's on the held-out data."""
    result, _, x = example
    path = Path(result.report["artifacts"]["fp32_tflite"])
    assert result.report["size_bytes"]["fp32_tflite"] == path.stat().st_size
    runtime = LiteRT(path, kernels="reference")
    assert runtime.input_details[0].dtype == np.float32
    fp32 = OnnxRuntime(onnx.load(result.report["artifacts"]["fp32_onnx"])).run([x])[0]
    twin = runtime.run([np.ascontiguousarray(x.transpose(0, 2, 3, 1))])[0]
    assert np.mean(twin.reshape(len(x), -1).argmax(1) == fp32.reshape(len(x), -1).argmax(1)) >= 0.98


def test_qdq_onnx_agrees_with_executor_within_one_step(example):
    result, program, x = example
    qdq = onnx.load(result.report["artifacts"]["onnx"])
    assert {n.op_type for n in qdq.graph.node} >= {"QuantizeLinear", "DequantizeLinear", "Conv"}
    ort_out = OnnxRuntime(qdq).run([x])[0]
    out_q = program.tensor(program.outputs[0]).qparams
    ours = out_q.dequantize(run_program(program, [quantize_input(program, x)])[0])
    within = np.abs(ort_out - ours) <= out_q.scale[0] * 1.0001
    assert within.mean() >= 0.999, f"only {within.mean():.4%} of outputs within one step"


def test_explicit_padding_and_flatten_model_bit_exact(tmp_path: Path):
    """A stride-2 conv with ONNX pads (not TFLite SAME) lowers to PAD + VALID conv and stays bit-exact."""
    rng = np.random.default_rng(3)
    path = tmp_path / "m.onnx"
    path.write_bytes(conv_bn_relu6(rng).SerializeToString())
    x = rng.normal(size=(200, 3, 8, 8)).astype(np.float32)
    np.savez(tmp_path / "d.npz", x=x)
    result = deploy(str(path), "arm-cortex-a78-xnnpack", data=tmp_path / "d.npz", out=tmp_path / "out")
    graph = optimize(load(str(path)).graph)
    program = lower(quantize_minmax(graph, calibrate(graph, x)), rounding="double")
    assert [op.kind for op in program.ops][:2] == ["PAD", "CONV_2D"]
    tflite = Path(result.report["artifacts"]["tflite"]).read_bytes()
    q = quantize_input(program, x)
    np.testing.assert_array_equal(LiteRT(tflite, kernels="reference").run([q])[0], run_program(program, [q])[0])
    assert result.report["accuracy"]["metric"] == "top1_agreement"
