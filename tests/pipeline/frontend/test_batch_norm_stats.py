"""Batch-norm statistics survive the dynamo exporter's BN folding and reach CLE and bias correction."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from edgeopt.ir import Graph
from edgeopt.pipeline.calibrate import calibrate
from edgeopt.pipeline.evaluate import run_float
from edgeopt.pipeline.frontend.load import export_torch, load
from edgeopt.pipeline.frontend.onnx import onnx_to_graph
from edgeopt.pipeline.optimize import optimize
from edgeopt.pipeline.optimize.cross_layer_equalization import cross_layer_equalization
from edgeopt.pipeline.quantize.minmax import quantize_minmax
from edgeopt.pipeline.quantize.bias_correction import analytical_bias_correction
from tests.builders.paths import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))
from cifar_resnet import CifarResNet  # noqa: E402


def _randomize_batch_norms(module: nn.Module, seed: int) -> nn.Module:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for bn in module.modules():
            if isinstance(bn, nn.BatchNorm2d):
                n = bn.num_features
                bn.running_mean.copy_(torch.rand(n, generator=gen) * 2 - 1)
                bn.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
                bn.weight.copy_(torch.rand(n, generator=gen) + 0.5)
                bn.bias.copy_(torch.rand(n, generator=gen) * 2 - 1)
    return module.eval()


def _layers(graph: Graph) -> list:
    return [n for n in graph.nodes if n.op in ("Conv", "Gemm")]


def _bias_changes(before: Graph, after: Graph) -> int:
    """How many layers' bias values differ between two graphs (node names are kept)."""
    old = {n.name: n for n in _layers(before)}
    changed = 0
    for node in _layers(after):
        b_old = before.initializers.get(old[node.name].inputs[2]) if len(old[node.name].inputs) > 2 else None
        b_new = after.initializers.get(node.inputs[2]) if len(node.inputs) > 2 else None
        changed += b_old is None or b_new is None or not np.array_equal(b_old, b_new)
    return changed


@pytest.fixture(scope="module")
def resnet20() -> tuple[nn.Module, Graph]:
    module = _randomize_batch_norms(CifarResNet(3), seed=0)
    return module, optimize(onnx_to_graph(export_torch(module, torch.zeros(1, 3, 32, 32)), "resnet20"))


def test_resnet20_convs_carry_their_batch_norm_statistics(resnet20: tuple[nn.Module, Graph]) -> None:
    module, graph = resnet20
    convs = [n for n in graph.nodes if n.op == "Conv"]
    assert len(convs) == 19 and not any(n.op == "BatchNormalization" for n in graph.nodes)
    modules = dict(module.named_modules())
    for conv in convs:  # "layer1.0.conv2.weight" was followed by "layer1.0.bn2"
        prefix, _, suffix = conv.inputs[1].removesuffix(".weight").rpartition("conv")
        bn = modules[f"{prefix}bn{suffix}"]
        np.testing.assert_allclose(conv.attrs["bn_beta"], bn.bias.detach().numpy(), rtol=1e-6)
        np.testing.assert_allclose(conv.attrs["bn_gamma"], bn.weight.detach().abs().numpy(), rtol=1e-6)


def test_analytical_bias_correction_runs_on_exported_resnet20(resnet20: tuple[nn.Module, Graph]) -> None:
    _, graph = resnet20
    x = np.random.default_rng(0).normal(size=(8, 3, 32, 32)).astype(np.float32)
    qgraph = quantize_minmax(graph, calibrate(graph, x))
    corrected = analytical_bias_correction(qgraph)
    # Each layer reading a conv+BN+ReLU output: every block's conv2 (9) and the first block's conv1 (it
    # reads the stem); the other conv1s and the linear layer read an Add's output, whose mean is unknown.
    assert _bias_changes(graph, corrected.graph) == 10


def test_builtin_example_keeps_batch_norm_statistics() -> None:
    loaded = load(None)
    graph = optimize(loaded.graph)
    assert sum("bn_beta" in n.attrs for n in graph.nodes) == 5  # stem, dw1, pw1, dw2, pw2
    qgraph = quantize_minmax(graph, calibrate(graph, loaded.calib[:64]))
    assert _bias_changes(graph, analytical_bias_correction(qgraph).graph) >= 3


class _HighBias(nn.Module):
    """conv3x3 → BN (large positive beta) → ReLU → conv1x1 (no padding) → BN: high bias to absorb."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 4, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))


def test_high_bias_absorption_runs_on_exported_model(tmp_path: Path) -> None:
    # Absorption keeps outputs exactly only where every pre-activation stays above beta - 3|gamma| (the DFQ
    # paper's 3-sigma assumption); with unseeded conv weights about one draw in five put a few of the 4096
    # outputs below it, so the weights are seeded.
    torch.manual_seed(0)
    module = _randomize_batch_norms(_HighBias(), seed=1)
    with torch.no_grad():
        module.bn1.bias.copy_(torch.linspace(4.0, 8.0, 8))  # beta - 3 |gamma| > 0 on every channel
    path = tmp_path / "high_bias.onnx"
    path.write_bytes(export_torch(module, torch.zeros(1, 3, 8, 8)).SerializeToString())
    graph = optimize(load(str(path)).graph)  # the statistics travel in the saved file's metadata
    absorbed = cross_layer_equalization(graph)
    plain = cross_layer_equalization(graph, absorb_high_bias=False)
    first = _layers(absorbed)[0]
    b_absorbed = absorbed.initializers[first.inputs[2]]
    b_plain = plain.initializers[_layers(plain)[0].inputs[2]]
    assert np.all(b_absorbed < b_plain - 1e-3)
    x = np.random.default_rng(2).normal(size=(16, 3, 8, 8)).astype(np.float32)
    np.testing.assert_allclose(run_float(absorbed, x), run_float(graph, x), atol=1e-3)
    np.testing.assert_allclose(run_float(graph, x), module(torch.from_numpy(x)).detach().numpy(), atol=1e-4)
