"""Cross-layer equalization: float outputs preserved, channel ranges equalized, per-tensor int8 error lower."""
from __future__ import annotations

import io
import warnings

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from edgeopt.ir import Graph
from edgeopt.pipeline.calibrate import calibrate
from edgeopt.pipeline.evaluate import run_float, run_int8
from edgeopt.pipeline.lower import lower
from edgeopt.pipeline.frontend.onnx import onnx_to_graph
from edgeopt.pipeline.optimize import PASSES, optimize
from edgeopt.pipeline.optimize.cross_layer_equalization import cross_layer_equalization, find_pairs
from edgeopt.pipeline.quantize.minmax import quantize_minmax
from edgeopt.pipeline.quantize.per_tensor_weights import per_tensor_weights


def _bn(c: int, gen: torch.Generator) -> nn.BatchNorm2d:
    bn = nn.BatchNorm2d(c)
    with torch.no_grad():
        bn.weight.copy_(torch.rand(c, generator=gen) * 2 + 0.2)
        bn.bias.copy_(torch.randn(c, generator=gen) * 0.5)
        bn.running_mean.copy_(torch.randn(c, generator=gen) * 0.2)
        bn.running_var.copy_(torch.rand(c, generator=gen) + 0.5)
    return bn


class _Separable(nn.Module):
    """conv → BN → act → depthwise → BN → act → pointwise → BN (+ a Relu conv chain in front)."""

    def __init__(self, act: type[nn.Module], imbalance: float = 1.0, seed: int = 0, beta_shift: float = 0.0) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), _bn(8, gen), nn.ReLU(),
                                  nn.Conv2d(8, 16, 1), _bn(16, gen), act())
        self.dw = nn.Sequential(nn.Conv2d(16, 16, 3, padding=1, groups=16), _bn(16, gen), act())
        self.pw = nn.Sequential(nn.Conv2d(16, 12, 1), _bn(12, gen))
        with torch.no_grad():
            # Depthwise channels whose weights differ by orders of magnitude while every channel matters
            # as much downstream (the pointwise weights compensate): the MobileNet failure.
            spread = torch.logspace(0, np.log10(imbalance), 16)
            self.dw[1].weight.mul_(spread)
            self.pw[0].weight.div_(spread.reshape(1, 16, 1, 1))
            self.stem[1].bias.add_(beta_shift)  # channels with beta > 3 gamma: high biases to absorb

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pw(self.dw(self.stem(x)))


def _graph(module: nn.Module) -> Graph:
    """Folded and fused, with the batch-norm statistics recorded: exported with BatchNormalization nodes
    kept (the dynamo exporter's optimizer folds them itself, losing beta and gamma)."""
    if module not in _GRAPHS:
        f = io.BytesIO()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(module.eval(), (torch.zeros(1, 3, 8, 8),), f, dynamo=False, opset_version=18,
                              training=torch.onnx.TrainingMode.PRESERVE)
        _GRAPHS[module] = optimize(onnx_to_graph(onnx.load_from_string(f.getvalue()), "t"))
    return _GRAPHS[module]


_GRAPHS: dict[nn.Module, Graph] = {}


def _ranges(g: Graph, name: str, axis: int) -> np.ndarray:
    node = next(n for n in g.nodes if n.name == name)
    w = np.abs(g.initializers[node.inputs[1]])
    return w.max(axis=tuple(i for i in range(w.ndim) if i != axis))


@pytest.mark.parametrize("act,relu6", [(nn.ReLU, "exact"), (nn.ReLU6, "exact"), (nn.ReLU6, "skip"), (nn.ReLU6, "clip")])
def test_cle_preserves_float_outputs(act: type[nn.Module], relu6: str) -> None:
    g = _graph(_Separable(act, imbalance=100.0))
    out = cross_layer_equalization(g, relu6=relu6, absorb_high_bias=False)
    x = np.random.default_rng(0).normal(size=(16, 3, 8, 8)).astype(np.float32)
    want, got = run_float(g, x), run_float(out, x)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())


def test_cle_equalizes_ranges_through_relu_and_depthwise() -> None:
    g = _graph(_Separable(nn.ReLU, imbalance=100.0))
    assert len(find_pairs(g)) == 3  # stem conv → 1x1, 1x1 → depthwise, depthwise → pointwise
    out = PASSES.get("cross_layer_equalization")(g)
    dw, pw = [n.name for n in g.nodes if n.op == "Conv"][2:4]
    spread = lambda r: r.max() / r.min()  # noqa: E731
    assert spread(_ranges(out, dw, 0)) < spread(_ranges(g, dw, 0)) / 10
    # Each equalized channel: output range of the depthwise == input range of the pointwise.
    np.testing.assert_allclose(_ranges(out, dw, 0), _ranges(out, pw, 1), rtol=1e-3)
    assert g.nodes[0].inputs[1] != out.nodes[0].inputs[1], "new weights"
    assert "bn_beta" in out.nodes[0].attrs


def test_cle_relu6_policies() -> None:
    g = _graph(_Separable(nn.ReLU6, imbalance=100.0))
    skipped = cross_layer_equalization(g, relu6="skip", absorb_high_bias=False)
    as_relu = cross_layer_equalization(g, relu6="relu", absorb_high_bias=False)
    dw = [n.name for n in g.nodes if n.op == "Conv"][2]
    np.testing.assert_allclose(_ranges(skipped, dw, 0), _ranges(g, dw, 0), rtol=1e-6)
    assert "Relu6" not in [n.attrs.get("fused_activation") for n in as_relu.nodes[1:3]]
    with pytest.raises(ValueError, match="relu6"):
        cross_layer_equalization(g, relu6="bogus")


def test_cle_exact_relu6_scales_channels_that_never_saturate() -> None:
    module = _Separable(nn.ReLU6, imbalance=100.0)
    with torch.no_grad():  # small depthwise weights on half the channels: their outputs stay below 6
        module.dw[0].weight[:8].mul_(0.01)
        module.dw[1].weight[:8].fill_(0.05)
    g = _graph(module)
    out = cross_layer_equalization(g, relu6="exact", absorb_high_bias=False)
    dw = [n.name for n in g.nodes if n.op == "Conv"][2]
    changed = ~np.isclose(_ranges(out, dw, 0), _ranges(g, dw, 0), rtol=1e-6)
    assert changed[:8].any() and not changed[8:].any()
    x = np.random.default_rng(1).normal(size=(16, 3, 8, 8)).astype(np.float32) * 3
    want = run_float(g, x)
    np.testing.assert_allclose(run_float(out, x), want, rtol=1e-4, atol=1e-4 * np.abs(want).max())


def test_high_bias_absorption_shrinks_activation_range() -> None:
    g = _graph(_Separable(nn.ReLU, imbalance=10.0, beta_shift=4.0))
    x = np.random.default_rng(2).normal(size=(32, 3, 8, 8)).astype(np.float32)
    plain = cross_layer_equalization(g, absorb_high_bias=False)
    absorbed = cross_layer_equalization(g, absorb_high_bias=True)
    changed = [n for n, m in zip(plain.nodes, absorbed.nodes)
               if not np.array_equal(plain.initializers[n.inputs[2]], absorbed.initializers[m.inputs[2]])]
    assert changed, "some channel had beta > 3 gamma"
    # Absorption holds where pre-activations stay above beta - 3 gamma: outputs move by little.
    want = run_float(g, x)
    np.testing.assert_allclose(run_float(absorbed, x), want, atol=0.05 * np.abs(want).max())


def test_cle_improves_per_tensor_int8_on_imbalanced_depthwise_model() -> None:
    g = _graph(_Separable(nn.ReLU, imbalance=300.0, seed=3))
    rng = np.random.default_rng(3)
    calib, x = rng.normal(size=(32, 3, 8, 8)).astype(np.float32), rng.normal(size=(64, 3, 8, 8)).astype(np.float32)

    def int8_error(graph: Graph) -> float:
        qgraph = per_tensor_weights(quantize_minmax(graph, calibrate(graph, calib)))
        want = run_float(graph, x)
        return float(np.sqrt(np.mean((run_int8(lower(qgraph, "double"), x) - want) ** 2)) / want.std())

    before, after = int8_error(g), int8_error(cross_layer_equalization(g))
    assert after < 0.5 * before, (before, after)


def test_cle_without_pairs_returns_input() -> None:
    g = _graph(nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten()))
    assert cross_layer_equalization(g) is g
