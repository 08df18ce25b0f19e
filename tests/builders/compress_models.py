"""Small torch models with the structures compression must get through, exported as users' ONNX files.

A CIFAR-style ResNet with option-A (strided slice + channel zero-pad) shortcuts, a concatenation, a
depthwise-separable block and a squeeze-excitation multiply, all with batch norms holding random
statistics so that exporters keep or fold them as they would in a trained model.
"""
from __future__ import annotations

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from torch import nn

from edgeopt.ir import Graph
from edgeopt.pipeline.emit.onnx import graph_to_onnx
from edgeopt.pipeline.frontend.onnx import onnx_to_graph
from tests.builders.torch_export import export

SHAPE = (1, 3, 16, 16)


def _bn(c: int) -> nn.BatchNorm2d:
    bn = nn.BatchNorm2d(c)
    with torch.no_grad():
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.normal_(0, 0.2)
        bn.running_mean.normal_(0, 0.2)
        bn.running_var.uniform_(0.5, 2.0)
    return bn


class Block(nn.Module):
    """conv3x3-BN-ReLU, conv3x3-BN, + shortcut (option A when the shape changes), ReLU."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False), _bn(cout)
        self.conv2, self.bn2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False), _bn(cout)
        self.pad = (cout - cin) // 2 if stride != 1 or cin != cout else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        short = x if self.pad is None else F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.pad, self.pad))
        return F.relu(y + short)


class TinyResNet(nn.Module):
    """stem 3→8, blocks 8→8, 8→16 (stride 2, option A), then a concat of a 1x1 and a depthwise-separable
    branch with a squeeze-excitation scale, global pooling and a linear classifier."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, 1, 1, bias=False), _bn(8), nn.ReLU())
        self.block1, self.block2 = Block(8, 8, 1), Block(8, 16, 2)
        self.left = nn.Sequential(nn.Conv2d(16, 12, 1), nn.ReLU())
        self.right = nn.Sequential(nn.Conv2d(16, 10, 1), _bn(10), nn.ReLU6(),
                                   nn.Conv2d(10, 10, 3, 1, 1, groups=10), _bn(10), nn.ReLU6())
        self.se = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(22, 6, 1), nn.ReLU(),
                                nn.Conv2d(6, 22, 1), nn.Sigmoid())
        self.mix = nn.Conv2d(22, 24, 3, 1, 1)
        self.fc = nn.Linear(24, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.block2(self.block1(self.stem(x)))
        x = torch.cat([self.left(x), self.right(x)], dim=1)
        x = F.relu(self.mix(x * self.se(x)))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def tiny_resnet(exporter: str = "torchscript", seed: int = 0) -> onnx.ModelProto:
    """``TinyResNet`` with seeded weights, exported by ``exporter`` (see ``torch_export.export``)."""
    torch.manual_seed(seed)
    return export(TinyResNet().eval(), SHAPE, exporter)


def tiny_resnet_graph(exporter: str = "torchscript", seed: int = 0) -> Graph:
    return onnx_to_graph(tiny_resnet(exporter, seed), "tiny_resnet")


class ResidualChain(nn.Module):
    """stem 3→8, five residual blocks on one stream (8, 8, option A to 16, 16, 16), global pooling and a
    linear classifier: pruning the stream cuts every block's first conv and the classifier, in a chain."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, 1, 1, bias=False), _bn(8), nn.ReLU())
        self.blocks = nn.Sequential(Block(8, 8, 1), Block(8, 8, 1), Block(8, 16, 2), Block(16, 16, 1),
                                    Block(16, 16, 1))
        self.fc = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(self.blocks(self.stem(x)), 1), 1))


def residual_chain_graph(seed: int = 0) -> Graph:
    """``ResidualChain`` with seeded weights, exported by TorchScript."""
    torch.manual_seed(seed)
    return onnx_to_graph(export(ResidualChain().eval(), SHAPE, "torchscript"), "residual_chain")


def data(n: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, *SHAPE[1:])).astype(np.float32)


def assert_valid(graph: Graph) -> None:
    """``graph`` writes a checked ONNX file whose strictly inferred shapes are the Graph's own."""
    inferred = onnx.shape_inference.infer_shapes(graph_to_onnx(graph), strict_mode=True)
    for v in inferred.graph.value_info:
        dims = tuple(d.dim_value for d in v.type.tensor_type.shape.dim)
        assert dims == graph.shape(v.name), v.name
