"""``edgeopt convert``: a QDQ .onnx made by ONNX Runtime's own ``quantize_static`` becomes an int8 .tflite
that LiteRT runs and that agrees with ONNX Runtime's QDQ outputs, with the encodings taken from the file."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
from typer.testing import CliRunner

from edgeopt.cli import app
from edgeopt.errors import ModelLoadError, UnsupportedOpError
from edgeopt.pipeline.frontend.qdq_onnx import qdq_to_quantized_graph
from edgeopt.pipeline.frontend.tflite import tflite_to_program
from edgeopt.runtimes.litert import LiteRT
from edgeopt.runtimes.onnxruntime import OnnxRuntime
from tests.builders.onnx_models import conv_bn_relu6, model
from tests.builders.cli import assert_one_line_error

runner = CliRunner()


def float_model(rng: np.random.Generator) -> onnx.ModelProto:
    """Conv → Relu → (Conv → Relu) + 1x1 Conv → Add → Flatten → Gemm."""
    inits = {
        "w1": rng.normal(0, 0.3, (8, 3, 3, 3)), "b1": rng.normal(0, 0.1, 8),
        "w2": rng.normal(0, 0.2, (8, 8, 3, 3)), "b2": rng.normal(0, 0.1, 8),
        "w3": rng.normal(0, 0.2, (8, 8, 1, 1)), "b3": rng.normal(0, 0.1, 8),
        "fw": rng.normal(0, 0.05, (10, 8 * 8 * 8)), "fb": rng.normal(0, 0.1, 10),
    }
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], name="conv2", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
        helper.make_node("Conv", ["r1", "w3", "b3"], ["c3"], name="conv3"),
        helper.make_node("Add", ["r2", "c3"], ["s"], name="add"),
        helper.make_node("Flatten", ["s"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "fw", "fb"], ["y"], name="fc", transB=1),
    ]
    m = model(nodes, {k: v.astype(np.float32) for k, v in inits.items()}, [1, 3, 8, 8], [1, 10])
    m.ir_version = 9  # what onnxruntime's quantizer reads and writes
    return m


class _Reader(CalibrationDataReader):
    def __init__(self, x: np.ndarray) -> None:
        self._batches = iter([{"x": sample[None]} for sample in x])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._batches, None)


@pytest.fixture(scope="module")
def calibration() -> np.ndarray:
    return np.random.default_rng(1).normal(size=(32, 3, 8, 8)).astype(np.float32)


def quantized(tmp_path: Path, activations: QuantType, calibration: np.ndarray) -> Path:
    src, out = tmp_path / "float.onnx", tmp_path / f"qdq_{activations.name}.onnx"
    onnx.save(float_model(np.random.default_rng(0)), src)
    quantize_static(str(src), str(out), _Reader(calibration), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=activations, weight_type=QuantType.QInt8)
    return out


@pytest.mark.parametrize("activations", [QuantType.QInt8, QuantType.QUInt8], ids=["int8", "uint8"])
def test_ort_qdq_model_converts_and_matches_ort(tmp_path: Path, calibration: np.ndarray,
                                                activations: QuantType) -> None:
    qdq = quantized(tmp_path, activations, calibration)
    tflite = tmp_path / "model.int8.tflite"
    result = runner.invoke(app, ["convert", str(qdq), "--out", str(tflite)], catch_exceptions=False)
    assert result.exit_code == 0, result.output

    x = np.random.default_rng(2).normal(size=(100, 3, 8, 8)).astype(np.float32)
    ort_out = OnnxRuntime(onnx.load(qdq)).run([x])[0]
    for kernels in ("reference", "default"):
        runtime = LiteRT(tflite, kernels=kernels)
        (in_scale, in_zp), (out_scale, out_zp) = runtime.input_details[0].quantization, \
            runtime.output_details[0].quantization
        q = np.clip(np.round(x.transpose(0, 2, 3, 1) / in_scale) + in_zp, -128, 127).astype(np.int8)
        ours = (runtime.run([q])[0].astype(np.float32) - out_zp) * out_scale
        within = np.abs(ours - ort_out) <= out_scale * 1.0001
        assert within.mean() >= 0.99, f"{kernels}: only {within.mean():.2%} of outputs within one step"


def test_encodings_come_from_the_file(tmp_path: Path, calibration: np.ndarray) -> None:
    """uint8 activations become int8 with the zero point moved by 128; weights keep the file's integers."""
    qdq = onnx.load(quantized(tmp_path, QuantType.QUInt8, calibration))
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in qdq.graph.initializer}
    qgraph = qdq_to_quantized_graph(qdq)
    x_enc = qgraph.encodings["x"]
    assert x_enc.dtype == "int8" and x_enc.scale[0] == np.float32(inits["x_scale"])
    assert x_enc.zero_point[0] == int(inits["x_zero_point"]) - 128
    conv = next(n for n in qgraph.graph.nodes if n.name == "conv1")
    w_enc = qgraph.encodings[conv.inputs[1]]
    assert w_enc.axis == 0 and w_enc.scale.size == 8
    np.testing.assert_array_equal(w_enc.quantize(qgraph.graph.initializers[conv.inputs[1]]), inits["w1_quantized"])
    np.testing.assert_array_equal(qgraph.encodings[conv.inputs[2]].quantize(qgraph.graph.initializers[conv.inputs[2]]),
                                  inits["b1_quantized"])
    assert {n.op for n in qgraph.graph.nodes} == {"Conv", "Add", "Flatten", "Gemm"}



def test_convert_errors_are_one_line(tmp_path: Path) -> None:
    float_path, corrupt = tmp_path / "float.onnx", tmp_path / "corrupt.onnx"
    float_path.write_bytes(conv_bn_relu6(np.random.default_rng(0)).SerializeToString())
    corrupt.write_bytes(float_path.read_bytes()[:100])
    out = tmp_path / "out.tflite"

    def convert(path: Path) -> object:
        return runner.invoke(app, ["convert", str(path), "--out", str(out)], catch_exceptions=False)

    assert_one_line_error(convert(float_path), 3, "is a float model", "edgeopt deploy")
    assert_one_line_error(convert(corrupt), 3, "corrupt.onnx")
    assert_one_line_error(convert(tmp_path / "none.onnx"), 3, "does not exist")
    assert not out.exists()


def test_float_model_is_refused_by_the_reader() -> None:
    with pytest.raises(ModelLoadError, match="use|deploy"):
        qdq_to_quantized_graph(conv_bn_relu6(np.random.default_rng(0)))


def _requantize_chain(second_scale: float) -> onnx.ModelProto:
    """x → Q → DQ → Q(second_scale) → DQ → Conv → Q → DQ → y, with int8 weights."""
    inits = {"s1": np.array(0.05, np.float32), "s2": np.array(second_scale, np.float32), "z": np.array(3, np.int8),
             "w_q": np.ones((2, 3, 1, 1), np.int8), "w_s": np.array(0.01, np.float32), "w_z": np.array(0, np.int8),
             "sy": np.array(0.1, np.float32)}
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "s1", "z"], ["xq"]),
        helper.make_node("DequantizeLinear", ["xq", "s1", "z"], ["xd"]),
        helper.make_node("QuantizeLinear", ["xd", "s2", "z"], ["xq2"]),
        helper.make_node("DequantizeLinear", ["xq2", "s2", "z"], ["xd2"]),
        helper.make_node("DequantizeLinear", ["w_q", "w_s", "w_z"], ["w"]),
        helper.make_node("Conv", ["xd2", "w"], ["c"], name="conv"),
        helper.make_node("QuantizeLinear", ["c", "sy", "z"], ["cq"]),
        helper.make_node("DequantizeLinear", ["cq", "sy", "z"], ["y"]),
    ]
    return model(nodes, inits, [1, 3, 4, 4], [1, 2, 4, 4])


def test_repeated_qdq_with_the_same_parameters_is_one_encoding() -> None:
    qgraph = qdq_to_quantized_graph(_requantize_chain(0.05))
    assert [n.op for n in qgraph.graph.nodes] == ["Conv"] and qgraph.graph.nodes[0].inputs[0] == "x"
    assert qgraph.encodings["x"].zero_point[0] == 3 and qgraph.encodings["y"].scale[0] == np.float32(0.1)


def test_requantization_is_refused_by_name() -> None:
    with pytest.raises(UnsupportedOpError, match="requantizing"):
        qdq_to_quantized_graph(_requantize_chain(0.07))


def _pooled_model(rng: np.random.Generator) -> onnx.ModelProto:
    """Conv → Relu → GlobalAveragePool → Flatten → Gemm: ONNX Runtime gives the pool its own output scale."""
    inits = {"w": rng.normal(0, 0.3, (16, 3, 3, 3)), "b": rng.normal(0, 0.1, 16),
             "fw": rng.normal(0, 0.3, (10, 16)), "fb": rng.normal(0, 0.1, 10)}
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("GlobalAveragePool", ["r"], ["p"], name="pool"),
        helper.make_node("Flatten", ["p"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "fw", "fb"], ["y"], name="fc", transB=1),
    ]
    m = model(nodes, {k: v.astype(np.float32) for k, v in inits.items()}, [1, 3, 8, 8], [1, 10])
    m.ir_version = 9
    return m


def test_global_average_pool_with_its_own_scale_becomes_a_requantizing_mean(tmp_path: Path,
                                                                             calibration: np.ndarray) -> None:
    """The file's pool output encoding is honoured (MEAN requantizes to it): outputs agree with ONNX Runtime."""
    src, qdq, tflite = tmp_path / "float.onnx", tmp_path / "qdq.onnx", tmp_path / "model.int8.tflite"
    onnx.save(_pooled_model(np.random.default_rng(3)), src)
    quantize_static(str(src), str(qdq), _Reader(calibration), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8)
    qgraph = qdq_to_quantized_graph(onnx.load(qdq))
    pool = next(n for n in qgraph.graph.nodes if n.op == "GlobalAveragePool")
    assert not qgraph.encodings[pool.outputs[0]].same_as(qgraph.encodings[pool.inputs[0]])
    result = runner.invoke(app, ["convert", str(qdq), "--out", str(tflite)], catch_exceptions=False)
    assert result.exit_code == 0, result.output

    kinds = {op.kind for op in tflite_to_program(tflite.read_bytes(), "model", "double").ops}
    assert "MEAN" in kinds and "AVERAGE_POOL_2D" not in kinds
    runtime = LiteRT(tflite, kernels="reference")
    x = np.random.default_rng(4).normal(size=(100, 3, 8, 8)).astype(np.float32)
    ort_out = OnnxRuntime(onnx.load(qdq)).run([x])[0]
    (in_scale, in_zp), (out_scale, out_zp) = runtime.input_details[0].quantization, \
        runtime.output_details[0].quantization
    q = np.clip(np.round(x.transpose(0, 2, 3, 1) / in_scale) + in_zp, -128, 127).astype(np.int8)
    ours = (runtime.run([q])[0].astype(np.float32) - out_zp) * out_scale
    assert (np.abs(ours - ort_out) <= out_scale * 1.0001).mean() >= 0.99
