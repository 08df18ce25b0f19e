"""Float32 ``.tflite`` files (TensorFlow's converter output for Keras models, built here without TensorFlow)
read into the NCHW float IR: the IR run in ONNX Runtime equals LiteRT on the float file, and
``edgeopt deploy model.tflite`` writes an int8 file with the float file's NHWC input and no TRANSPOSE,
bit-exact with LiteRT's reference kernels."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from ai_edge_litert import schema_py_generated as schema
from tests.builders.cli import assert_one_line_error
from tests.builders.converter_files import add_operator, add_tensor, edit_model
from tests.builders.float_tflite import FloatTFLiteBuilder, keras_like_cnn
from typer.testing import CliRunner

from edgeopt.cli import app
from edgeopt.errors import ModelLoadError, UnsupportedOpError
from edgeopt.pipeline.evaluate import run_float
from edgeopt.pipeline.frontend.load import load
from edgeopt.pipeline.frontend.tflite import read_tflite
from edgeopt.pipeline.frontend.tflite_float import tflite_to_graph
from edgeopt.runtimes.litert import LiteRT
from edgeopt.runtimes.reference.executor import run_program
from edgeopt.workflows.deploy import deploy

runner = CliRunner()


def _nhwc(shape: tuple[int, ...], n: int = 1, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.0, 1.0, (n, *shape[1:])).astype(np.float32)


def _assert_ir_equals_litert(data: bytes, n: int = 2) -> None:
    graph = tflite_to_graph(data, "m")
    litert = LiteRT(data, kernels="reference")
    x = _nhwc(litert.input_details[0].shape, n)
    expected = litert.run([x])[0]
    nchw = x.transpose(0, 3, 1, 2) if x.ndim == 4 else x
    got = np.concatenate([run_float(graph, np.ascontiguousarray(nchw[i:i + 1])) for i in range(n)])
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("flatten", [False, True])
def test_keras_like_cnn_ir_equals_litert(flatten: bool) -> None:
    _assert_ir_equals_litert(keras_like_cnn(np.random.default_rng(0), flatten))


def test_ir_is_nchw_with_weights_in_onnx_layout() -> None:
    graph = tflite_to_graph(keras_like_cnn(np.random.default_rng(0)), "m")
    assert graph.inputs[0].shape == (1, 3, 16, 16)
    convs = [n for n in graph.nodes if n.op == "Conv"]
    assert graph.initializers[convs[0].inputs[1]].shape == (8, 3, 3, 3)  # OHWI (8, 3, 3, 3) → OIHW
    depthwise = convs[1]
    assert depthwise.attrs["group"] == 8 and graph.initializers[depthwise.inputs[1]].shape == (8, 1, 3, 3)
    assert convs[0].attrs["pads"] == [0, 0, 0, 0] and depthwise.attrs["pads"] == [1, 1, 1, 1]
    assert "Transpose" not in graph.ops()  # the MEAN variant reshapes nothing layout-dependent


def test_layout_dependent_ops_match_litert() -> None:
    """Axes and orders that differ between NHWC and NCHW: a flatten of a 3x3 map into a Dense layer, a
    reshape to a 4-D map, a MEAN over one axis without keep_dims, a slice, channel and width concats,
    PAD, a rank-2 activation broadcast against a 4-D one, DIV/SUB by constants, fused RELU_N1_TO_1."""
    b = FloatTFLiteBuilder(np.random.default_rng(2), "layouts")
    x = b.input((1, 6, 6, 4))
    y = b.pad(x, [(0, 0), (1, 0), (0, 2), (0, 0)])  # (1, 7, 8, 4)
    y = b.strided_slice(y, [0, 1, 0, 1], [1, 7, 7, 4], [1, 2, 1, 1])  # (1, 3, 7, 3)
    y = b.unary("TANH", b.conv(y, 5, kernel=3, stride=1, padding="VALID", activation="RELU_N1_TO_1"))  # (1, 1, 5, 5)
    w = b.concat([y, y], axis=2)  # (1, 1, 10, 5)
    row = b.mean(b.conv(x, 3, kernel=1), [1], keep_dims=False)  # (1, 6, 3): transposed to the file's order
    flat = b.reshape(row, (1, 18))
    dense = b.fully_connected(flat, 50, activation="RELU")
    grid = b.reshape(dense, (1, 1, 10, 5))  # a 4-D reshape whose order differs from NCHW's
    z = b.binary("ADD", w, grid)
    z = b.binary("SUB", z, b.const("c", np.float32(0.5)))
    z = b.div(z, b.const("d", np.linspace(1, 2, 5, dtype=np.float32)))
    gate = b.mean(z, [1, 2], keep_dims=False)  # (1, 5): broadcast back over the 4-D map
    z = b.binary("MUL", z, b.unary("LOGISTIC", gate))
    _assert_ir_equals_litert(b.build([b.fully_connected(b.reshape(z, (1, 50)), 7)]))


def test_fully_connected_flattens_a_4d_input_in_nhwc_order() -> None:
    b = FloatTFLiteBuilder(np.random.default_rng(3), "fc4d")
    x = b.conv(b.input((1, 3, 3, 4)), 4, kernel=1)
    _assert_ir_equals_litert(b.build([b.fully_connected(x, 6)]))


def _with_float16_weights(data: bytes) -> bytes:
    """Every CONV_2D/DEPTHWISE_CONV_2D weight stored as float16 behind a DEQUANTIZE, as TensorFlow's
    converter writes a model with ``supported_types = [tf.float16]``."""

    def edit(model: schema.ModelT) -> None:
        subgraph = model.subgraphs[0]
        dequantizes = []
        for op in subgraph.operators:
            code = model.operatorCodes[op.opcodeIndex]
            if code.builtinCode not in (schema.BuiltinOperator.CONV_2D, schema.BuiltinOperator.DEPTHWISE_CONV_2D):
                continue
            w = subgraph.tensors[op.inputs[1]]
            value = np.frombuffer(bytes(model.buffers[w.buffer].data), np.float32).reshape(w.shape)
            half = add_tensor(model, f"{w.name.decode()}_fp16", tuple(w.shape), schema.TensorType.FLOAT16,
                              value.astype(np.float16))
            full = add_tensor(model, f"{w.name.decode()}_dequantized", tuple(w.shape), schema.TensorType.FLOAT32)
            dequantizes.append(add_operator(model, schema.BuiltinOperator.DEQUANTIZE, [half], [full]))
            op.inputs = [int(op.inputs[0]), full, *(int(i) for i in op.inputs[2:])]
        subgraph.operators = dequantizes + subgraph.operators

    return edit_model(data, edit)


def test_float16_weights_are_dequantized_at_load() -> None:
    data = _with_float16_weights(keras_like_cnn(np.random.default_rng(0)))
    assert [op.kind for _, op in read_tflite(data, "m").ops].count("DEQUANTIZE") == 5
    assert tflite_to_graph(data, "m").ops().count("Conv") == 5
    _assert_ir_equals_litert(data)


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray, object]:
    """The Flatten variant deployed through the CLI on NHWC data."""
    tmp = tmp_path_factory.mktemp("float_tflite")
    (tmp / "keras.tflite").write_bytes(keras_like_cnn(np.random.default_rng(0), flatten=True))
    x = _nhwc((1, 16, 16, 3), 8)
    np.savez(tmp / "data.npz", x=x)
    result = runner.invoke(app, ["deploy", str(tmp / "keras.tflite"), "--device", "arm-cortex-a78-xnnpack",
                                 "--data", str(tmp / "data.npz"), "--out", str(tmp / "out")])
    assert result.exit_code == 0, result.output
    program = deploy(str(tmp / "keras.tflite"), "arm-cortex-a78-xnnpack", data=tmp / "data.npz",
                     out=tmp / "api").program
    return tmp, x, program


def test_deploy_writes_int8_file_with_nhwc_input_and_no_transposes(deployed: tuple[Path, np.ndarray, object]) -> None:
    tmp, _, program = deployed
    assert [op.kind for op in program.ops] == [
        "PAD", "CONV_2D", "DEPTHWISE_CONV_2D", "CONV_2D", "HARD_SWISH", "AVERAGE_POOL_2D", "CONV_2D", "CONV_2D",
        "LOGISTIC", "MUL", "ADD", "MAX_POOL_2D", "CONCATENATION", "AVERAGE_POOL_2D", "RESHAPE", "FULLY_CONNECTED",
        "SOFTMAX"]
    litert = LiteRT(tmp / "out" / "model.int8.tflite", kernels="reference")
    assert litert.input_details[0].shape == (1, 16, 16, 3)
    assert litert.input_details[0].dtype == np.int8


def test_deployed_file_is_bit_exact_with_builtin_ref(deployed: tuple[Path, np.ndarray, object]) -> None:
    tmp, x, program = deployed
    program = program.replace(rounding="double")
    q = program.tensor(program.inputs[0]).qparams.quantize(x)  # NHWC: the program's input is the file's
    litert = LiteRT(tmp / "api" / "model.int8.tflite", kernels="reference")
    expected = np.concatenate([litert.run([q[i:i + 1]])[0] for i in range(len(q))])
    np.testing.assert_array_equal(run_program(program, [q])[0], expected)


def test_data_must_be_laid_out_nhwc(tmp_path: Path) -> None:
    (tmp_path / "m.tflite").write_bytes(keras_like_cnn(np.random.default_rng(0)))
    assert load(str(tmp_path / "m.tflite")).data_input.shape == (1, 16, 16, 3)
    np.savez(tmp_path / "nchw.npz", x=np.zeros((2, 3, 16, 16), np.float32))
    result = runner.invoke(app, ["deploy", str(tmp_path / "m.tflite"), "--device", "arm-cortex-a78-xnnpack",
                                 "--data", str(tmp_path / "nchw.npz"), "--out", str(tmp_path / "out")])
    assert_one_line_error(result, 5, "needs [N, 16, 16, 3]")


def test_unsupported_op_names_op_and_node(tmp_path: Path) -> None:
    b = FloatTFLiteBuilder(np.random.default_rng(0), "sqdiff")
    x = b.input((1, 4))
    y = b.op("SQUARED_DIFFERENCE", [x, b.const("c", np.ones((1, 4), np.float32))], (1, 4))
    (tmp_path / "m.tflite").write_bytes(b.build([y]))
    with pytest.raises(UnsupportedOpError, match=rf"unsupported op SQUARED_DIFFERENCE \(node '{y}'\): no conversion"):
        tflite_to_graph((tmp_path / "m.tflite").read_bytes(), "m")
    result = runner.invoke(app, ["deploy", str(tmp_path / "m.tflite"), "--device", "arm-cortex-a78-xnnpack"])
    assert_one_line_error(result, 4, "SQUARED_DIFFERENCE", y, "tf2onnx")


def test_int8_tflite_is_for_emulate(tmp_path: Path, deployed: tuple[Path, np.ndarray, object]) -> None:
    tmp, _, _ = deployed
    with pytest.raises(ModelLoadError, match="is an int8 model, already quantized: run it with `edgeopt emulate`"):
        load(str(tmp / "out" / "model.int8.tflite"))
    result = runner.invoke(app, ["deploy", str(tmp / "out" / "model.int8.tflite"), "--device",
                                 "arm-cortex-a78-xnnpack"])
    assert_one_line_error(result, 3, "edgeopt emulate")


def test_fused_activation_is_fused_back_and_clip_bounds_kept() -> None:
    graph = tflite_to_graph(keras_like_cnn(np.random.default_rng(0)), "m")
    clips = [n for n in graph.nodes if n.op == "Clip"]
    assert len(clips) == 2 and all(graph.initializers[n.inputs[2]] == 6.0 for n in clips)
    assert math.isclose(graph.initializers[clips[0].inputs[1]].item(), 0.0)


def test_same_padded_average_pool_deploys_bit_exact(tmp_path: Path) -> None:
    """AVERAGE_POOL_2D with SAME padding (Keras ``AveragePooling2D(padding="same")``, NASNet) averages the
    real points only: AveragePool with ``count_include_pad=0`` in the IR, AVERAGE_POOL_2D SAME again in int8."""
    b = FloatTFLiteBuilder(np.random.default_rng(4), "avgpool_same")
    x = b.conv(b.input((1, 9, 9, 3)), 6, activation="RELU")
    x = b.pool("AVERAGE_POOL_2D", b.pool("AVERAGE_POOL_2D", x, 3, 1, "SAME"), 3, 2, "SAME")
    data = b.build([b.fully_connected(b.mean(x, [1, 2], keep_dims=False), 4)])
    _assert_ir_equals_litert(data)
    (tmp_path / "m.tflite").write_bytes(data)
    np.savez(tmp_path / "x.npz", x=_nhwc((1, 9, 9, 3), 8))
    program = deploy(str(tmp_path / "m.tflite"), "arm-cortex-a78-xnnpack", data=tmp_path / "x.npz",
                     out=tmp_path / "out").program.replace(rounding="double")
    pools = [op for op in program.ops if op.kind == "AVERAGE_POOL_2D"]
    assert [op.options["padding"] for op in pools] == ["SAME", "SAME", "VALID"]  # the last: the MEAN
    q = program.tensor(program.inputs[0]).qparams.quantize(np.load(tmp_path / "x.npz")["x"])
    litert = LiteRT(tmp_path / "out" / "model.int8.tflite", kernels="reference")
    expected = np.concatenate([litert.run([q[i:i + 1]])[0] for i in range(len(q))])
    np.testing.assert_array_equal(run_program(program, [q])[0], expected)


def test_a_non_float_input_is_refused_by_name() -> None:
    b = FloatTFLiteBuilder(np.random.default_rng(0), "ids")
    ids = b.input((1, 4), dtype="int32")
    y = b.reshape(ids, (4,))
    with pytest.raises(ModelLoadError, match=f"input '{ids}' is int32; deploy reads float32 inputs"):
        tflite_to_graph(b.build([y]), "m")
