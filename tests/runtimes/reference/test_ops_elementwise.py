"""Elementwise ops and activations (ADD/SUB/MUL with broadcasting, RELU/RELU6/RELU_N1_TO_1, HARD_SWISH,
LOGISTIC, TANH, HardSigmoid as builtins): bit-exact with LiteRT 2.3 BUILTIN_REF, end to end from ONNX
(MobileNetV3's squeeze-excite block included), and clear errors for what TFLite cannot run in int8.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper

from edgeopt.errors import UnsupportedOpError
from edgeopt.ir import QParams
from edgeopt.pipeline.calibrate import calibrate
from edgeopt.pipeline.emit.tflite import program_to_tflite
from edgeopt.pipeline.evaluate import dequantize_output, quantize_input, run_float
from edgeopt.pipeline.frontend.load import load
from edgeopt.pipeline.lower import lower
from edgeopt.pipeline.optimize import optimize
from edgeopt.pipeline.quantize.minmax import quantize_minmax
from edgeopt.qprogram import QOp, QProgram, QTensor
from edgeopt.runtimes.litert import LiteRT
from edgeopt.runtimes.reference.executor import run_program
from tests.builders.programs import binary_program
from tests.builders.onnx_models import model

UNARY = ("RELU", "RELU6", "RELU_N1_TO_1", "HARD_SWISH", "LOGISTIC", "TANH")
FIXED = {"LOGISTIC": QParams(1 / 256, -128), "TANH": QParams(1 / 128, 0)}
BINARY_SHAPES = [((1, 3, 4, 5), (1, 3, 4, 5)), ((1, 3, 4, 5), (1, 1, 1, 5)), ((1, 1, 4, 1), (1, 3, 1, 5)),
                 ((2, 6), (6,)), ((1, 4, 4, 3), (3,))]


def _qparams(rng: np.random.Generator, lo: float = 0.002, hi: float = 0.5) -> QParams:
    return QParams(np.exp(rng.uniform(np.log(lo), np.log(hi))), int(rng.integers(-128, 128)))


def _assert_bitexact(program: QProgram, inputs: list[np.ndarray]) -> None:
    program = program.replace(rounding="double")
    expected = LiteRT(program_to_tflite(program), kernels="reference").run(inputs)[0]
    np.testing.assert_array_equal(run_program(program, inputs)[0], expected)


@pytest.mark.parametrize("kind", UNARY)
def test_unary_tables_match_litert_reference(kind: str) -> None:
    """Every int8 input value, under 150 random input/output encodings per op (wide scale ratios)."""
    rng = np.random.default_rng(sum(map(ord, kind)))
    x = np.arange(-128, 128, dtype=np.int8).reshape(1, 256)
    checked = 0
    while checked < 150:
        x_q = _qparams(rng, 0.0005, 2.0)
        y_q = FIXED.get(kind) or _qparams(rng, 0.0005, 2.0)
        if kind == "HARD_SWISH" and x_q.scale[0] / 128 >= y_q.scale[0]:
            continue  # TFLite rejects an output multiplier >= 1 (tested below)
        tensors = {"x": QTensor("x", (1, 256), "int8", x_q), "y": QTensor("y", (1, 256), "int8", y_q)}
        _assert_bitexact(QProgram(kind, tensors, [QOp(kind, ("x",), ("y",))], ("x",), ("y",)), [x])
        checked += 1


@pytest.mark.parametrize("kind", ["ADD", "SUB", "MUL"])
def test_binary_ops_broadcast_like_litert_reference(kind: str) -> None:
    rng = np.random.default_rng(sum(map(ord, kind)))
    for i in range(40):
        a_shape, b_shape = BINARY_SHAPES[i % len(BINARY_SHAPES)]
        program = binary_program(rng, kind, a_shape, b_shape, constant=i % 3 == 0,
                                 activation=("NONE", "RELU", "RELU6", "RELU_N1_TO_1")[i % 4], name=kind.lower())
        data = [rng.integers(-128, 128, (30 * program.tensor(n).shape[0], *program.tensor(n).shape[1:]),
                             dtype=np.int8) for n in program.inputs]
        _assert_bitexact(program, data)


def test_mul_multiplier_is_computed_in_float32_like_litert() -> None:
    """The encodings of a batch norm as MUL in densenet121 (dynamo export): ``product * s1 * s2 / s_out``
    lands within 0.008 of a half for 16 int8 inputs, where the double-precision multiplier rounds the
    other way than LiteRT's, whose Prepare computes it in float32."""
    x_q, w_q, y_q = QParams(0.03719320893287659, -3), QParams(0.010890300385653973, -128), \
        QParams(0.049075640738010406, -12)
    tensors = {"x": QTensor("x", (1, 256), "int8", x_q), "y": QTensor("y", (1, 256), "int8", y_q),
               "w": QTensor("w", (1,), "int8", w_q, data=np.array([84], np.int8))}
    program = QProgram("mul", tensors, [QOp("MUL", ("x", "w"), ("y",), {"fused_activation_function": "NONE"})],
                       ("x",), ("y",))
    _assert_bitexact(program, [np.arange(-128, 128, dtype=np.int8).reshape(1, 256)])


def test_hard_swish_rejects_an_output_scale_below_input_scale_over_128() -> None:
    tensors = {"x": QTensor("x", (1, 8), "int8", QParams(0.5, 0)), "y": QTensor("y", (1, 8), "int8", QParams(0.001, 0))}
    program = QProgram("hs", tensors, [QOp("HARD_SWISH", ("x",), ("y",), source="hs")], ("x",), ("y",))
    with pytest.raises(UnsupportedOpError, match="HARD_SWISH.*hs"):
        run_program(program, [np.zeros((1, 8), np.int8)])


# ---------------------------------------------------------------------------------------------------
# End to end from ONNX


def _weights(rng: np.random.Generator, *shape: int) -> np.ndarray:
    return rng.normal(0, 0.4, shape).astype(np.float32)


def _se_block(rng: np.random.Generator, c: int = 8, squeeze: int = 4) -> onnx.ModelProto:
    """Conv → HardSwish → squeeze-excite (GlobalAveragePool → Conv → Relu → Conv → HardSigmoid →
    Mul(x, gate) broadcast over H and W) → Add a per-channel constant → Sub → Sigmoid/Tanh heads."""
    inits = {
        "w0": _weights(rng, c, 3, 3, 3), "b0": _weights(rng, c),
        "w1": _weights(rng, squeeze, c, 1, 1), "b1": _weights(rng, squeeze),
        "w2": _weights(rng, c, squeeze, 1, 1), "b2": _weights(rng, c),
        "shift": _weights(rng, c, 1, 1), "lo": np.array(-1, np.float32), "hi": np.array(1, np.float32),
    }
    nodes = [
        helper.make_node("Conv", ["x", "w0", "b0"], ["c0"], name="stem", pads=[1, 1, 1, 1]),
        helper.make_node("HardSwish", ["c0"], ["hs"], name="hswish"),
        helper.make_node("GlobalAveragePool", ["hs"], ["gap"], name="se_pool"),
        helper.make_node("Conv", ["gap", "w1", "b1"], ["s1"], name="se_reduce"),
        helper.make_node("Relu", ["s1"], ["s1r"], name="se_relu"),
        helper.make_node("Conv", ["s1r", "w2", "b2"], ["s2"], name="se_expand"),
        helper.make_node("HardSigmoid", ["s2"], ["gate"], name="se_gate", alpha=1 / 6, beta=0.5),
        helper.make_node("Mul", ["hs", "gate"], ["se"], name="se_scale"),
        helper.make_node("Add", ["se", "shift"], ["shifted"], name="add_const"),
        helper.make_node("Sub", ["shifted", "hs"], ["diff"], name="sub"),
        helper.make_node("Relu", ["diff"], ["act"], name="relu_fused_into_sub"),
        helper.make_node("Sigmoid", ["act"], ["sig"], name="sigmoid"),
        helper.make_node("Tanh", ["shifted"], ["th"], name="tanh"),
        helper.make_node("Clip", ["th", "lo", "hi"], ["th1"], name="relu_n1_to_1"),
        helper.make_node("HardSigmoid", ["th1"], ["hsig"], name="hard_sigmoid_default"),
        helper.make_node("Mul", ["sig", "hsig"], ["y"], name="heads"),
    ]
    return model(nodes, inits, [1, 3, 8, 8], [1, c, 8, 8])


def _lowered(path: Path, x: np.ndarray):
    graph = optimize(load(str(path)).graph)
    return graph, lower(quantize_minmax(graph, calibrate(graph, x)), rounding="double")


def test_squeeze_excite_block_end_to_end(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    path = tmp_path / "se.onnx"
    path.write_bytes(_se_block(rng).SerializeToString())
    x = rng.normal(size=(64, 3, 8, 8)).astype(np.float32)
    graph, program = _lowered(path, x)
    kinds = [op.kind for op in program.ops]
    for kind in ("HARD_SWISH", "MUL", "ADD", "SUB", "LOGISTIC", "TANH", "RELU_N1_TO_1"):
        assert kind in kinds
    # Relu after the 1x1 conv and after Sub fuse; HardSigmoid is [MUL 6a] ADD(RELU6) MUL, alpha 1/6 skips MUL.
    assert "RELU" not in kinds
    assert next(op for op in program.ops if op.source == "sub").options["fused_activation_function"] == "RELU"
    assert [op.kind for op in program.ops if op.source == "se_gate"] == ["ADD", "MUL"]
    assert [op.kind for op in program.ops if op.source == "hard_sigmoid_default"] == ["MUL", "ADD", "MUL"]

    q = quantize_input(program, x)
    tflite = program_to_tflite(program)
    ours = run_program(program, [q])[0]
    np.testing.assert_array_equal(LiteRT(tflite, kernels="reference").run([q])[0], ours)
    LiteRT(tflite).run([q[:1]])  # loads and runs under the default (XNNPACK) kernels too

    float_out = run_float(graph, x)
    int8_out = dequantize_output(program, ours)
    corr = np.corrcoef(float_out.ravel(), int8_out.ravel())[0, 1]
    assert corr > 0.98, f"int8 output correlates {corr:.4f} with float"


def test_standalone_relu_and_relu6_requantize(tmp_path: Path) -> None:
    """A Relu/Clip whose input has two consumers cannot fuse: RELU and RELU6 ops, bit-exact."""
    rng = np.random.default_rng(8)
    inits = {"w": _weights(rng, 4, 3, 3, 3), "zero": np.array(0, np.float32), "six": np.array(6, np.float32)}
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("Clip", ["c", "zero", "six"], ["r6"], name="relu6"),
        helper.make_node("Add", ["r", "r6"], ["y"], name="add"),
    ]
    path = tmp_path / "relu.onnx"
    path.write_bytes(model(nodes, inits, [1, 3, 6, 6], [1, 4, 6, 6]).SerializeToString())
    x = rng.normal(size=(32, 3, 6, 6)).astype(np.float32)
    graph, program = _lowered(path, x)
    assert [op.kind for op in program.ops] == ["CONV_2D", "RELU", "RELU6", "ADD"]
    q = quantize_input(program, x)
    ours = run_program(program, [q])[0]
    np.testing.assert_array_equal(LiteRT(program_to_tflite(program), kernels="reference").run([q])[0], ours)
    float_out = run_float(graph, x)
    assert np.corrcoef(float_out.ravel(), dequantize_output(program, ours).ravel())[0, 1] > 0.99


# ---------------------------------------------------------------------------------------------------
# Unsupported variants


def _single_node_graph(tmp_path: Path, node: onnx.NodeProto, inits: dict, shape: list) -> None:
    path = tmp_path / "m.onnx"
    path.write_bytes(model([node], inits, shape, shape).SerializeToString())
    x = np.random.default_rng(0).normal(size=(4, *shape[1:])).astype(np.float32)
    _lowered(path, x)


def test_clip_with_other_bounds_is_unsupported(tmp_path: Path) -> None:
    node = helper.make_node("Clip", ["x", "lo", "hi"], ["y"], name="clip01")
    inits = {"lo": np.array(0, np.float32), "hi": np.array(1, np.float32)}
    with pytest.raises(UnsupportedOpError, match=r"Clip.*clip01.*no TFLite int8 activation"):
        _single_node_graph(tmp_path, node, inits, [1, 3, 4, 4])


def test_lower_rank_activation_operand_is_unsupported(tmp_path: Path) -> None:
    nodes = [helper.make_node("Reshape", ["x", "shape"], ["r"], name="drop_batch"),
             helper.make_node("Mul", ["x", "r"], ["y"], name="scale")]
    path = tmp_path / "m.onnx"
    inits = {"shape": np.array([3, 4, 4], np.int64)}
    path.write_bytes(model(nodes, inits, [1, 3, 4, 4], [1, 3, 4, 4]).SerializeToString())
    graph = optimize(load(str(path)).graph)
    x = np.random.default_rng(0).normal(size=(1, 3, 4, 4)).astype(np.float32)
    with pytest.raises(UnsupportedOpError, match=r"Mul.*scale.*only constants may have a lower rank"):
        lower(quantize_minmax(graph, calibrate(graph, x)))


def test_hard_sigmoid_with_negative_alpha_is_unsupported(tmp_path: Path) -> None:
    node = helper.make_node("HardSigmoid", ["x"], ["y"], name="hsig", alpha=-0.2)
    with pytest.raises(UnsupportedOpError, match=r"HardSigmoid.*hsig.*alpha"):
        _single_node_graph(tmp_path, node, {}, [1, 3, 4, 4])
