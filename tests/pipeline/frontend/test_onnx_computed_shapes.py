"""ONNX files whose static shapes only appear after constant folding load and deploy.

PyTorch's TorchScript exporter (``dynamo=False``) writes ``F.pad`` as a Pad whose pads are computed by a
ConstantOfShape/Concat/Slice/Transpose/Cast/Reshape chain, so ONNX shape inference run once leaves the
Pad's output shape unknown. Two models people deploy use it: TF-style asymmetric padding before a
stride-2 convolution (MobileNet/EfficientNet ports from TensorFlow) and the option-A shortcut of a CIFAR
ResNet (``F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, planes // 4, planes // 4))``). Each is exported by the
TorchScript exporter at opsets 13 and 17 and by the dynamo exporter; the loaded Graph's float outputs
equal torch's, and ``deploy`` to the Cortex-A78 profile writes a .tflite that LiteRT's reference kernels
run bit-exactly like the executor.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from edgeopt.pipeline.evaluate import quantize_input, run_float
from edgeopt.pipeline.frontend.onnx import onnx_to_graph
from tests.builders.torch_export import deployed, export, normal_data, run_bitexact

A78 = "arm-cortex-a78-xnnpack"
SHAPE = (1, 3, 16, 16)


class TFPaddedConv(nn.Module):
    """Pad right and bottom by one, then a stride-2 3x3 convolution without padding (TensorFlow's SAME)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, 2, bias=False), nn.BatchNorm2d(8), nn.ReLU6())
        self.head = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.stem(F.pad(x, (0, 1, 0, 1)))
        return self.head(torch.flatten(F.adaptive_avg_pool2d(y, 1), 1))


class OptionAShortcut(nn.Module):
    """A CIFAR ResNet block that halves the resolution and doubles the channels, with an option-A shortcut."""

    def __init__(self, planes: int = 8) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, planes, 3, 1, 1, bias=False), nn.BatchNorm2d(planes), nn.ReLU())
        self.body = nn.Sequential(nn.Conv2d(planes, 2 * planes, 3, 2, 1, bias=False), nn.BatchNorm2d(2 * planes),
                                  nn.ReLU(), nn.Conv2d(2 * planes, 2 * planes, 3, 1, 1, bias=False),
                                  nn.BatchNorm2d(2 * planes))
        self.pad = planes // 2  # planes // 4 of the output's 2 * planes on each side
        self.head = nn.Linear(2 * planes, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        shortcut = F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.pad, self.pad))
        y = F.relu(self.body(x) + shortcut)
        return self.head(torch.flatten(F.adaptive_avg_pool2d(y, 1), 1))


MODELS = {"tf_padded_conv": TFPaddedConv, "option_a_shortcut": OptionAShortcut}
EXPORTERS = ["torchscript13", "torchscript17", "dynamo"]


def _module(name: str) -> nn.Module:
    torch.manual_seed(0)
    module = MODELS[name]()
    for m in module.modules():  # running statistics away from the identity, so folding them matters
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)
    return module.eval()


def test_torchscript_export_has_the_computed_pad_chain() -> None:
    """The files under test really hold a Pad whose pads no initializer gives (the case being fixed)."""
    model = export(_module("tf_padded_conv"), SHAPE, "torchscript17")
    pads = next(n.input[1] for n in model.graph.node if n.op_type == "Pad")
    assert pads not in {t.name for t in model.graph.initializer}
    assert {"ConstantOfShape", "Concat", "Slice", "Transpose"} <= {n.op_type for n in model.graph.node}


@pytest.mark.parametrize("exporter", EXPORTERS)
@pytest.mark.parametrize("name", sorted(MODELS))
def test_loads_with_static_shapes_and_torch_outputs(name: str, exporter: str) -> None:
    module = _module(name)
    graph = onnx_to_graph(export(module, SHAPE, exporter), name)
    assert all(d > 0 for t in graph.tensors.values() for d in t.shape)
    if exporter != "dynamo":  # the dynamo exporter's optimizer merges the pads into the convolution
        assert "Pad" in {n.op for n in graph.nodes}
    assert not {"ConstantOfShape", "Shape", "Concat", "Transpose", "Cast"} & {n.op for n in graph.nodes}
    x = normal_data(1, 8, SHAPE)
    with torch.no_grad():
        expected = module(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(run_float(graph, x), expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("exporter", ["torchscript13", "torchscript17"])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_deploys_bitexact_with_litert(name: str, exporter: str, tmp_path: Path) -> None:
    result, program = deployed(export(_module(name), SHAPE, exporter), normal_data(0, 32, SHAPE), tmp_path, A78)
    assert {op.kind for op in program.ops} >= {"PAD", "CONV_2D"}
    run_bitexact(result, program, quantize_input(program, normal_data(2, 16, SHAPE)))


def test_gather_elements_on_constants_folds_like_onnx_runtime() -> None:
    """BERT's ``token_type_ids[:, :seq]`` gather: indices shorter than the data along the axis, where onnx's
    reference evaluator fails; the frontend folds it as ONNX Runtime computes it."""
    data = np.arange(2 * 64, dtype=np.int64).reshape(2, 64)
    indices = np.array([[3, -1, 0, 7]], dtype=np.int64)  # 1 row of 2, 4 columns of 64, a negative index
    x = helper.make_tensor_value_info("x", TensorProto.INT64, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.INT64, [1, 4])
    nodes = [helper.make_node("GatherElements", ["data", "indices"], ["g"], axis=1),
             helper.make_node("Add", ["x", "g"], ["y"])]
    model = helper.make_model(helper.make_graph(nodes, "gather", [x], [y], [numpy_helper.from_array(data, "data"),
                                                                          numpy_helper.from_array(indices, "indices")]),
                              opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    graph = onnx_to_graph(model, "gather")
    assert [n.op for n in graph.nodes] == ["Add"]
    folded = graph.initializers[graph.nodes[0].inputs[1]]
    expected = ort.InferenceSession(model.SerializeToString()).run(None, {"x": np.zeros((1, 4), np.int64)})[0]
    np.testing.assert_array_equal(folded, expected)
