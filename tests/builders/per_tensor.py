"""A MobileNet-style network that collapses under per-tensor int8 weights, with trained-looking statistics.

No real collapsing MobileNetV1 is among the models here (its Keras weights need the network), so the
collapse is built in the way training makes it: some channels of a pointwise layer are nearly dead (their
batch norm's beta far below zero, so only the tail of their pre-activation passes the ReLU6), and the
batch norm of the depthwise layer after it, whose statistics come from a real pass over data (train mode,
momentum 1), normalises those tiny inputs with tiny running variances. Folded, that depthwise layer's
per-channel weight ranges differ by two to three orders of magnitude (the Keras MobileNetV1-0.25 of
issue 14 spans 0.07 to 26.7), every channel still carries signal downstream, and the wide fan-in of the
pointwise layer leaves its ReLU6 provably inactive on no channel (interval arithmetic bounds its
pre-activation above 6). ReLU6 sits between every pair, as in MobileNet.
"""
from __future__ import annotations

import io
import warnings

import numpy as np
import onnx
import torch
from torch import nn

from edgeopt.ir import Graph
from edgeopt.pipeline.frontend.onnx import onnx_to_graph
from edgeopt.pipeline.optimize import optimize

INPUT_SHAPE = (1, 3, 16, 16)


def _bn(c: int, beta: torch.Tensor | None = None) -> nn.BatchNorm2d:
    bn = nn.BatchNorm2d(c, momentum=1.0)  # one train-mode pass sets the running statistics to the data's
    if beta is not None:
        with torch.no_grad():
            bn.bias.copy_(beta)
    return bn


class CollapsingMobileNet(nn.Module):
    """stem conv (32) → BN → ReLU6 → pointwise (16) → BN → ReLU6 → depthwise 3x3 → BN → ReLU6 → pointwise
    (24) → BN → ReLU6, the last feature map the output (so output SQNR weighs every channel)."""

    def __init__(self, seed: int = 0, deadness: float = 4.0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        c = 16
        beta = -torch.linspace(0.0, deadness, c)[torch.randperm(c)]  # channel i passes the tail above -beta_i
        self.stem = nn.Sequential(nn.Conv2d(3, 32, 3, padding=1), _bn(32), nn.ReLU6())
        self.pw1 = nn.Sequential(nn.Conv2d(32, c, 1), _bn(c, beta), nn.ReLU6())
        self.dw = nn.Sequential(nn.Conv2d(c, c, 3, padding=1, groups=c, bias=False), _bn(c), nn.ReLU6())
        self.pw2 = nn.Sequential(nn.Conv2d(c, 24, 1), _bn(24), nn.ReLU6())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pw2(self.dw(self.pw1(self.stem(x))))


def images(seed: int, n: int) -> np.ndarray:
    """``n`` standard-normal inputs, NCHW 3x16x16."""
    return np.random.default_rng(seed).normal(size=(n, *INPUT_SHAPE[1:])).astype(np.float32)


def collapsing_graph(seed: int = 0, deadness: float = 4.0) -> Graph:
    """``CollapsingMobileNet`` with batch-norm statistics from 256 inputs, exported with its batch norms
    (so folding records beta and gamma), folded and fused."""
    module = CollapsingMobileNet(seed, deadness)
    with torch.no_grad():
        module.train()(torch.from_numpy(images(seed + 100, 256)))
    f = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module.eval(), (torch.zeros(INPUT_SHAPE),), f, dynamo=False, opset_version=18,
                          training=torch.onnx.TrainingMode.PRESERVE)
    return optimize(onnx_to_graph(onnx.load_from_string(f.getvalue()), "collapsing_mobilenet"))
