"""SOFTMAX and TRANSPOSE_CONV: bit-exact with LiteRT 2.3 BUILTIN_REF, end to end from ONNX, and the
variants that must be refused."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from tests.builders.programs import random_inputs
from tests.builders.compute import batch_matmul_program, grouped_conv_program, softmax_program, transpose_conv_program
from onnx import helper

from edgeopt.errors import UnsupportedOpError
from edgeopt.ir import Graph, QParams
from edgeopt.pipeline.calibrate import calibrate
from edgeopt.pipeline.emit.tflite import program_to_tflite
from edgeopt.pipeline.evaluate import dequantize_output, quantize_input, run_float
from edgeopt.pipeline.lower import lower
from edgeopt.pipeline.frontend.onnx import onnx_to_graph
from edgeopt.pipeline.optimize import optimize
from edgeopt.pipeline.quantize.minmax import quantize_minmax
from edgeopt.qprogram import QProgram, QTensor
from edgeopt.runtimes.cost import MAC_COUNTERS
from edgeopt.runtimes.litert import LiteRT
from edgeopt.runtimes.reference.executor import run_program
from tests.builders.onnx_models import model


def assert_bitexact(program: QProgram, inputs: list[np.ndarray]) -> None:
    program = program.replace(rounding="double")
    expected = LiteRT(program_to_tflite(program), kernels="reference").run(inputs)
    got = run_program(program, inputs)
    for g, e in zip(got, expected, strict=True):
        np.testing.assert_array_equal(g, e)


# -- SOFTMAX --------------------------------------------------------------------------------------


def test_random_softmax_programs_match_litert_reference() -> None:
    """Shapes, betas and input scales from tiny (every difference counts) to large (``diff_min`` cuts)."""
    rng = np.random.default_rng(20)
    for _ in range(30):
        shape = (1, int(rng.integers(1, 4)), int(rng.integers(1, 48)))
        beta = float(rng.choice([1.0, 0.5, 2.0, 0.125]))
        scale_range = ((0.003, 0.3), (0.3, 20.0))[int(rng.integers(0, 2))]
        program = softmax_program(rng, shape, beta, scale_range)
        assert_bitexact(program, random_inputs(rng, program, 100))


def test_softmax_of_4d_and_1000_classes_matches_litert_reference() -> None:
    rng = np.random.default_rng(21)
    for shape in ((1, 3, 4, 5), (1, 1000)):
        program = softmax_program(rng, shape)
        assert_bitexact(program, random_inputs(rng, program, 50))


# -- TRANSPOSE_CONV -------------------------------------------------------------------------------


def test_random_transpose_conv_programs_match_litert_reference() -> None:
    """Kernel sizes, strides, SAME/VALID and every output size LiteRT accepts for them, with and without bias."""
    rng = np.random.default_rng(22)
    for _ in range(30):
        kh, kw = (int(k) for k in rng.integers(1, 5, 2))
        stride = (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
        padding = str(rng.choice(["SAME", "VALID"]))
        h, w = int(rng.integers(1, 7)), int(rng.integers(1, 7))
        r = [int(rng.integers(0, s)) for s in stride]
        out_hw = ((stride[0] * h - r[0], stride[1] * w - r[1]) if padding == "SAME"
                  else ((h - 1) * stride[0] + kh + r[0], (w - 1) * stride[1] + kw + r[1]))
        program = transpose_conv_program(
            rng, h=h, w=w, cin=int(rng.integers(1, 9)), cout=int(rng.integers(1, 9)), kernel=(kh, kw),
            stride=stride, padding=padding, out_hw=out_hw, bias=bool(rng.random() < 0.8))
        assert_bitexact(program, random_inputs(rng, program, 100))


def test_transpose_conv_cost_counts_scattered_macs() -> None:
    program = transpose_conv_program(np.random.default_rng(23), h=4, w=5, cin=3, cout=4, kernel=(3, 3))
    assert MAC_COUNTERS.get("TRANSPOSE_CONV")(program.ops[0], program) == 4 * 5 * 3 * 3 * 3 * 4


# -- BATCH_MATMUL ---------------------------------------------------------------------------------


def test_random_batch_matmul_programs_match_litert_reference() -> None:
    """Two int8 activations with any zero points, batch dims equal or broadcast (ranks 2 to 5)."""
    rng = np.random.default_rng(31)
    for i in range(20):
        b, m, k, n = (int(v) for v in rng.integers(1, 9, 4))
        shapes = [((m, k), (k, n)), ((1, m, k), (1, k, n)), ((b, m, k), (b, k, n)),
                  ((1, b, m, k), (1, 1, k, n)), ((1, 2, b, m, k), (1, 2, b, k, n))][i % 5]
        program = batch_matmul_program(rng, *shapes)
        assert_bitexact(program, random_inputs(rng, program, 50))


# -- grouped CONV_2D ------------------------------------------------------------------------------


def test_random_grouped_conv_programs_match_litert_reference() -> None:
    """LiteRT 2.3's reference CONV_2D runs filters with Ci / groups input channels (op version 6)."""
    rng = np.random.default_rng(29)
    for _ in range(20):
        groups = int(rng.integers(2, 4))
        program = grouped_conv_program(
            rng, h=int(rng.integers(6, 10)), w=int(rng.integers(6, 10)), cin=groups * int(rng.integers(1, 4)),
            cout=groups * int(rng.integers(1, 4)), groups=groups,
            kernel=(int(rng.integers(1, 4)), int(rng.integers(1, 4))),
            stride=(int(rng.integers(1, 3)), int(rng.integers(1, 3))),
            dilation=(int(rng.integers(1, 3)), int(rng.integers(1, 3))),
            padding=str(rng.choice(["SAME", "VALID"])), activation=str(rng.choice(["NONE", "RELU", "RELU6"])))
        assert_bitexact(program, random_inputs(rng, program, 100))


# -- end to end from ONNX -------------------------------------------------------------------------


def _pipeline(onnx_model: onnx.ModelProto, x: np.ndarray) -> tuple[Graph, QProgram]:
    graph = optimize(onnx_to_graph(onnx_model, "m"))
    return graph, lower(quantize_minmax(graph, calibrate(graph, x)), rounding="double")


def _check_end_to_end(onnx_model: onnx.ModelProto, x: np.ndarray, min_corr: float) -> QProgram:
    graph, program = _pipeline(onnx_model, x)
    tflite = program_to_tflite(program)
    q = quantize_input(program, x)
    ours = run_program(program, [q])[0]
    np.testing.assert_array_equal(LiteRT(tflite, kernels="reference").run([q])[0], ours)
    assert LiteRT(tflite, kernels="default").run([q])[0].shape == ours.shape
    fp32 = run_float(graph, x)
    corr = np.corrcoef(fp32.ravel(), dequantize_output(program, ours).ravel())[0, 1]
    assert corr > min_corr, f"int8 output correlates {corr:.4f} with float"
    return program


def _conv_transpose_model(rng: np.random.Generator, kernel: int, stride: int, pads: list[int],
                          output_padding: int, cin: int = 4, cout: int = 3, hw: int = 5) -> onnx.ModelProto:
    out_h, out_w = ((hw - 1) * stride + output_padding + kernel - pads[i] - pads[i + 2] for i in (0, 1))
    inits = {"w": rng.normal(0, 0.3, (cin, cout, kernel, kernel)).astype(np.float32),
             "b": rng.normal(0, 0.1, cout).astype(np.float32)}
    node = helper.make_node("ConvTranspose", ["x", "w", "b"], ["y"], name="up", strides=[stride, stride],
                            pads=pads, output_padding=[output_padding, output_padding], kernel_shape=[kernel, kernel])
    return model([node], inits, [1, cin, hw, hw], [1, cout, out_h, out_w])


@pytest.mark.parametrize(("kernel", "stride", "pads", "output_padding", "kinds"), [
    (2, 2, [0, 0, 0, 0], 0, ["TRANSPOSE_CONV"]),  # U-Net upsampling: VALID
    (3, 2, [0, 0, 1, 1], 0, ["TRANSPOSE_CONV"]),  # SAME (TFLite puts the odd padding last)
    (3, 2, [1, 1, 1, 1], 1, ["TRANSPOSE_CONV", "STRIDED_SLICE"]),  # PyTorch's "same" upsampling: crop
    (4, 2, [1, 1, 1, 1], 0, ["TRANSPOSE_CONV"]),  # SAME, even kernel
    (3, 1, [1, 1, 1, 1], 0, ["TRANSPOSE_CONV"]),  # SAME, stride 1
    (3, 2, [1, 1, 1, 1], 0, ["TRANSPOSE_CONV"]),  # SAME, odd output
    (3, 2, [2, 2, 0, 0], 0, ["TRANSPOSE_CONV", "STRIDED_SLICE"]),  # no TFLite form: VALID + crop
    (5, 3, [2, 0, 1, 2], 1, ["TRANSPOSE_CONV", "STRIDED_SLICE"]),  # asymmetric pads
])
def test_conv_transpose_from_onnx_bit_exact(kernel: int, stride: int, pads: list[int], output_padding: int,
                                            kinds: list[str]) -> None:
    rng = np.random.default_rng(24)
    onnx_model = _conv_transpose_model(rng, kernel, stride, pads, output_padding)
    x = rng.normal(size=(64, 4, 5, 5)).astype(np.float32)
    program = _check_end_to_end(onnx_model, x, 0.99)
    assert [op.kind for op in program.ops] == kinds


def test_softmax_from_onnx_tracks_float_and_is_bit_exact() -> None:
    """Gemm → Softmax (axis -1) and a channel Softmax (axis 1 of NCHW, the program's last axis)."""
    rng = np.random.default_rng(25)
    inits = {"w": rng.normal(0, 0.5, (10, 16)).astype(np.float32), "b": rng.normal(0, 0.1, 10).astype(np.float32)}
    nodes = [helper.make_node("Gemm", ["x", "w", "b"], ["z"], name="fc", transB=1),
             helper.make_node("Softmax", ["z"], ["y"], name="softmax", axis=-1)]
    x = rng.normal(size=(200, 16)).astype(np.float32)
    program = _check_end_to_end(model(nodes, inits, [1, 16], [1, 10]), x, 0.99)
    out_q = program.tensor(program.outputs[0]).qparams
    assert float(out_q.scale[0]) == np.float32(1 / 256) and int(out_q.zero_point[0]) == -128

    nodes = [helper.make_node("Softmax", ["x"], ["y"], name="softmax", axis=1)]
    x = rng.normal(size=(50, 6, 3, 4)).astype(np.float32) * 3
    program = _check_end_to_end(model(nodes, {}, [1, 6, 3, 4], [1, 6, 3, 4]), x, 0.98)
    assert [op.kind for op in program.ops] == ["SOFTMAX"]


def test_softmax_over_a_spatial_axis_moves_it_last() -> None:
    rng = np.random.default_rng(26)
    nodes = [helper.make_node("Softmax", ["x"], ["y"], name="softmax", axis=-1)]
    x = rng.normal(size=(50, 2, 3, 5)).astype(np.float32) * 3
    program = _check_end_to_end(model(nodes, {}, [1, 2, 3, 5], [1, 2, 3, 5]), x, 0.98)
    assert [op.kind for op in program.ops] == ["TRANSPOSE", "SOFTMAX", "TRANSPOSE"]


@pytest.mark.parametrize(("attrs", "kinds"), [
    ({"group": 2, "pads": [1, 1, 1, 1]}, ["CONV_2D"]),  # grouped, 1 < groups < channels
    ({"group": 4, "pads": [1, 1, 1, 1]}, ["DEPTHWISE_CONV_2D"]),
    ({"dilations": [2, 2], "pads": [2, 2, 2, 2]}, ["CONV_2D"]),  # dilated SAME
    ({"strides": [2, 2], "auto_pad": "SAME_UPPER"}, ["CONV_2D"]),  # TFLite's SAME: odd padding after
    ({"strides": [2, 2], "auto_pad": "SAME_LOWER"}, ["PAD", "CONV_2D"]),  # odd padding before: explicit PAD
    ({"pads": [0, 1, 2, 1]}, ["PAD", "CONV_2D"]),  # asymmetric explicit pads
])
def test_conv_variants_from_onnx_bit_exact(attrs: dict, kinds: list[str]) -> None:
    rng = np.random.default_rng(30)
    groups = attrs.get("group", 1)
    node = helper.make_node("Conv", ["x", "w", "b"], ["y"], name="conv", kernel_shape=[3, 3], **attrs)
    inits = {"w": rng.normal(0, 0.3, (8, 4 // groups, 3, 3)).astype(np.float32),
             "b": rng.normal(0, 0.1, 8).astype(np.float32)}
    onnx_model = model([node], inits, [1, 4, 9, 8], [1, 8, "oh", "ow"])
    x = rng.normal(size=(64, 4, 9, 8)).astype(np.float32)
    program = _check_end_to_end(onnx_model, x, 0.99)
    assert [op.kind for op in program.ops] == kinds


def test_attention_block_from_torch_bit_exact() -> None:
    """Q/K/V projections (MatMul + Add), Q·Kᵀ and probs·V (BATCH_MATMUL), scaled Softmax, residual Adds
    and a ReLU MLP, exported by torch's dynamo exporter."""
    import torch

    from edgeopt.pipeline.frontend.load import export_torch

    class Attention(torch.nn.Module):
        def __init__(self, d: int = 16) -> None:
            super().__init__()
            self.q, self.k, self.v = (torch.nn.Linear(d, d) for _ in range(3))
            self.fc1, self.fc2 = torch.nn.Linear(d, 32), torch.nn.Linear(32, d)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            probs = torch.softmax(self.q(x) @ self.k(x).transpose(1, 2) * 0.25, dim=-1)
            h = x + probs @ self.v(x)
            return h + self.fc2(torch.relu(self.fc1(h)))

    torch.manual_seed(0)
    onnx_model = export_torch(Attention().eval(), torch.randn(1, 8, 16))
    x = np.random.default_rng(32).normal(size=(100, 8, 16)).astype(np.float32)
    program = _check_end_to_end(onnx_model, x, 0.98)
    kinds = [op.kind for op in program.ops]
    assert kinds.count("BATCH_MATMUL") == 2 and kinds.count("FULLY_CONNECTED") == 5 and "SOFTMAX" in kinds
    assert all(op.options["keep_num_dims"] for op in program.ops if op.kind == "FULLY_CONNECTED")


# -- refused variants -----------------------------------------------------------------------------


@pytest.mark.parametrize(("attrs", "why"), [
    ({"group": 2}, "no groups"),
    ({"dilations": [2, 2]}, "no dilation"),
])
def test_unsupported_conv_transpose_variants_name_op_node_and_reason(attrs: dict, why: str) -> None:
    rng = np.random.default_rng(27)
    w_shape = (4, 2, 3, 3) if "group" in attrs else (4, 3, 3, 3)
    out_c = 4 if "group" in attrs else 3
    out_hw = 7 if "group" in attrs else 9
    node = helper.make_node("ConvTranspose", ["x", "w"], ["y"], name="up", **attrs)
    onnx_model = model([node], {"w": rng.normal(size=w_shape).astype(np.float32)}, [1, 4, 5, 5],
                       [1, out_c, out_hw, out_hw])
    with pytest.raises(UnsupportedOpError, match=f"ConvTranspose \\(node 'up'\\).*{why}"):
        _pipeline(onnx_model, rng.normal(size=(8, 4, 5, 5)).astype(np.float32))


def test_softmax_needs_its_fixed_output_encoding() -> None:
    program = softmax_program(np.random.default_rng(28))
    bad = program.replace(tensors={**program.tensors, "y": QTensor("y", (1, 10), "int8", QParams(0.01, 0))})
    with pytest.raises(UnsupportedOpError, match="SOFTMAX .*scale 1/256"):
        run_program(bad, [np.zeros((1, 10), np.int8)])


def test_unsupported_matmul_variants_name_op_node_and_reason() -> None:
    rng = np.random.default_rng(33)
    node = helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")
    onnx_model = model([node], {"w": rng.normal(size=(2, 4, 3)).astype(np.float32)}, [1, 2, 5, 4], [1, 2, 5, 3])
    with pytest.raises(UnsupportedOpError, match="MatMul \\(node 'mm'\\).*constant right operand must be 2-D"):
        _pipeline(onnx_model, rng.normal(size=(8, 2, 5, 4)).astype(np.float32))
    node = helper.make_node("MatMul", ["w", "x"], ["y"], name="mm")
    onnx_model = model([node], {"w": rng.normal(size=(3, 4)).astype(np.float32)}, [1, 4, 5], [1, 3, 5])
    with pytest.raises(UnsupportedOpError, match="MatMul \\(node 'mm'\\).*constant left operand"):
        _pipeline(onnx_model, rng.normal(size=(8, 4, 5)).astype(np.float32))
