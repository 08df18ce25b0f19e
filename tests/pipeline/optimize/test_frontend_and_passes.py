"""ONNX frontend, batch-norm folding and activation fusion: structure changes, float outputs do not."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import helper

from edgeopt.errors import ModelLoadError, UnsupportedOpError
from edgeopt.pipeline.emit.onnx import graph_to_onnx
from edgeopt.pipeline.frontend.onnx import onnx_to_graph
from edgeopt.pipeline.optimize import optimize
from edgeopt.pipeline.optimize.fold_batch_norm import fold_batch_norm
from edgeopt.pipeline.optimize.fuse_activation import fuse_activation
from edgeopt.runtimes.onnxruntime import OnnxRuntime
from tests.builders.onnx_models import conv_bn_relu6, model


def _run(m: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    return OnnxRuntime(m).run([x])[0]


def test_frontend_fixes_batch_and_folds_shape_arithmetic():
    rng = np.random.default_rng(0)
    # y = Reshape(x, Concat(Shape(x)[0:1], [-1])): the shape subgraph must fold to a constant.
    nodes = [
        helper.make_node("Shape", ["x"], ["s"], name="shape"),
        helper.make_node("Gather", ["s", "index"], ["n"], name="gather", axis=0),
        helper.make_node("Unsqueeze", ["n", "zero"], ["n1"], name="unsqueeze"),
        helper.make_node("Concat", ["n1", "minus1"], ["target"], name="concat", axis=0),
        helper.make_node("Identity", ["x"], ["xi"], name="identity"),
        helper.make_node("Reshape", ["xi", "target"], ["y"], name="reshape"),
    ]
    m = model(nodes, {"index": np.array(0, np.int64), "zero": np.array([0], np.int64), "minus1": np.array([-1], np.int64)}, ["N", 2, 3, 4],
              ["N", 24])
    g = onnx_to_graph(m, "t")
    assert g.ops() == ["Reshape"]
    assert g.inputs[0].shape == (1, 2, 3, 4)
    assert g.outputs[0].shape == (1, 24)
    x = rng.normal(size=(1, 2, 3, 4)).astype(np.float32)
    np.testing.assert_array_equal(_run(graph_to_onnx(g), x), x.reshape(1, 24))


def test_fold_batch_norm_and_fuse_relu6_preserve_outputs():
    rng = np.random.default_rng(1)
    m = conv_bn_relu6(rng)
    g = onnx_to_graph(m, "t")
    assert g.ops() == ["Conv", "BatchNormalization", "Clip", "GlobalAveragePool", "Flatten", "Gemm"]
    folded = fold_batch_norm(g)
    fused = fuse_activation(folded)
    assert folded.ops() == ["Conv", "Clip", "GlobalAveragePool", "Flatten", "Gemm"]
    assert fused.ops() == ["Conv", "GlobalAveragePool", "Flatten", "Gemm"]
    assert fused.nodes[0].attrs["fused_activation"] == "Relu6"
    assert g.ops()[1] == "BatchNormalization", "passes must not mutate their input"
    x = rng.normal(size=(4, 3, 8, 8)).astype(np.float32) * 2
    want = _run(m, x[:1])
    for graph in (g, folded, fused):
        np.testing.assert_allclose(_run(graph_to_onnx(graph), x[:1]), want, rtol=1e-5, atol=1e-5)


class _ClampForms(torch.nn.Module):
    """ReLU6 written four ways, as real models write it; each must fuse into its conv."""

    def __init__(self) -> None:
        super().__init__()
        self.convs = torch.nn.ModuleList(torch.nn.Conv2d(4, 4, 1) for _ in range(4))
        self.relu6 = torch.nn.ReLU6()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu6(self.convs[0](x))
        x = torch.nn.functional.relu6(self.convs[1](x))
        x = torch.clamp(self.convs[2](x), 0, 6)
        return torch.nn.functional.hardtanh(self.convs[3](x), 0.0, 6.0)


def test_every_relu6_spelling_fuses():
    from edgeopt.pipeline.frontend.load import export_torch

    g = optimize(onnx_to_graph(export_torch(_ClampForms().eval(), torch.zeros(1, 4, 5, 5)), "clamp"))
    assert g.ops() == ["Conv"] * 4
    assert [n.attrs["fused_activation"] for n in g.nodes] == ["Relu6"] * 4


def test_custom_domain_op_is_named():
    node = helper.make_node("MyOp", ["x"], ["y"], name="mine", domain="com.example")
    m = model([node], {}, [1, 3], [1, 3])
    m.opset_import.append(helper.make_opsetid("com.example", 1))
    with pytest.raises((UnsupportedOpError, ModelLoadError), match="MyOp"):
        onnx_to_graph(m, "t")
