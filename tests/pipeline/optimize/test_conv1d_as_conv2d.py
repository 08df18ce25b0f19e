"""1-D convolutions (audio models, ``[N, C, L]`` inputs) deploy as CONV_2D / DEPTHWISE_CONV_2D of height 1.

A small keyword-spotting-style front end (Conv1d → BatchNorm1d → ReLU → MaxPool1d → depthwise Conv1d →
ReLU → pointwise Conv1d → ReLU → AvgPool1d → global average → Linear), exported by PyTorch's TorchScript
and dynamo exporters: ``conv1d_as_conv2d`` keeps its float outputs (equal to torch's), leaves no Squeeze/Unsqueeze
between two 1-D layers, and ``deploy`` writes a .tflite that LiteRT's reference kernels run bit-exactly
like the executor, with a TRANSPOSE where the chain starts (channels-first input to NHWC) and one where it
ends, none between its layers.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import helper
from torch import nn

from edgeopt.pipeline.evaluate import quantize_input, run_float
from edgeopt.pipeline.frontend.onnx import onnx_to_graph
from edgeopt.pipeline.optimize import optimize
from tests.builders.onnx_models import model as onnx_model
from tests.builders.torch_export import deployed, export, normal_data, run_bitexact

SHAPE = (1, 8, 40)  # 8 features (e.g. MFCCs) over 40 frames


class AudioFrontEnd(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv1d(8, 16, 5, stride=2, padding=2, bias=False), nn.BatchNorm1d(16), nn.ReLU(),
            nn.MaxPool1d(2),
            nn.Conv1d(16, 16, 3, padding=2, dilation=2, groups=16), nn.ReLU(),
            nn.Conv1d(16, 24, 1), nn.ReLU(),
            nn.AvgPool1d(2),
        )
        self.head = nn.Linear(24, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x).mean(dim=-1))


@pytest.fixture(scope="module", params=["torchscript", "dynamo"])
def exported(request: pytest.FixtureRequest) -> tuple[nn.Module, onnx.ModelProto]:
    torch.manual_seed(0)
    module = AudioFrontEnd()
    bn = module.body[1]
    bn.running_mean.uniform_(-0.2, 0.2)
    bn.running_var.uniform_(0.5, 2.0)
    module.eval()
    return module, export(module, SHAPE, request.param)


def test_one_d_layers_run_as_height_one_two_d_layers(exported: tuple[nn.Module, onnx.ModelProto]) -> None:
    module, model = exported
    graph = optimize(onnx_to_graph(model, "audio"))
    layers = [n for n in graph.nodes if n.op in ("Conv", "MaxPool", "AveragePool")]
    assert len(layers) == 5
    assert all(len(graph.shape(n.inputs[0])) == 4 and graph.shape(n.inputs[0])[2] == 1 for n in layers)
    assert [n.op for n in graph.nodes].count("Unsqueeze") == 1  # only where the chain starts
    assert [n.op for n in graph.nodes].count("Squeeze") == 1  # only where it ends
    x = normal_data(1, 8, SHAPE)
    with torch.no_grad():
        expected = module(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(run_float(graph, x), expected, rtol=1e-4, atol=1e-5)


def test_the_pass_leaves_its_input_and_a_rewritten_graph_alone(exported: tuple[nn.Module, onnx.ModelProto]) -> None:
    _, model = exported
    graph = optimize(onnx_to_graph(model, "audio"), ["fold_batch_norm", "fuse_activation"])
    before = dict(graph.initializers)
    rewritten = optimize(graph, ["conv1d_as_conv2d"])
    assert rewritten is not graph and all(len(graph.shape(n.inputs[0])) == 3 for n in graph.nodes
                                          if n.op == "Conv")
    assert all(np.array_equal(before[k], graph.initializers[k]) for k in before)
    assert optimize(rewritten, ["conv1d_as_conv2d"]) is rewritten  # nothing 1-D is left


def test_deploys_bitexact_with_litert(exported: tuple[nn.Module, onnx.ModelProto], tmp_path: Path) -> None:
    _, model = exported
    result, program = deployed(model, normal_data(0, 32, SHAPE), tmp_path)
    kinds = [op.kind for op in program.ops]
    assert {"CONV_2D", "DEPTHWISE_CONV_2D", "MAX_POOL_2D", "AVERAGE_POOL_2D"} <= set(kinds)
    assert kinds.count("TRANSPOSE") == 2
    assert kinds.index("TRANSPOSE") < kinds.index("CONV_2D") and kinds[::-1].index("TRANSPOSE") < kinds[::-1].index(
        "AVERAGE_POOL_2D")
    run_bitexact(result, program, quantize_input(program, normal_data(2, 16, SHAPE)))


def test_a_weight_tied_to_another_op_keeps_its_one_d_form_there() -> None:
    """A tied autoencoder's Conv1d and ConvTranspose1d share one weight: the Conv reads a 4-D copy."""
    w = np.random.default_rng(0).normal(size=(4, 4, 3)).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1]),
             helper.make_node("ConvTranspose", ["c", "w"], ["y"], name="deconv", pads=[1, 1])]
    graph = onnx_to_graph(onnx_model(nodes, {"w": w}, [1, 4, 10], [1, 4, 10]), "tied")
    rewritten = optimize(graph, ["conv1d_as_conv2d"])
    conv = next(n for n in rewritten.nodes if n.op == "Conv")
    deconv = next(n for n in rewritten.nodes if n.op == "ConvTranspose")
    assert rewritten.shape(conv.inputs[1]) == (4, 4, 1, 3) and rewritten.shape(deconv.inputs[1]) == (4, 4, 3)
    x = np.random.default_rng(3).normal(size=(2, 4, 10)).astype(np.float32)
    np.testing.assert_allclose(run_float(rewritten, x), run_float(graph, x), rtol=1e-5, atol=1e-6)
