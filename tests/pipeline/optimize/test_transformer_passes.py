"""The passes that make exported transformer blocks lowerable keep the float model's outputs.

``fuse_layer_norm`` (TorchScript's opset-13 LayerNorm chain, over the last axes or over NCHW channels),
``fuse_gelu`` on the TorchScript and onnxsim forms, ``div_by_constant_as_mul``, ``square_as_mul``,
``gather_as_slice`` and the frontend's removal of no-op Casts: each is checked with ONNX Runtime on the
graph before and after.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from onnx import helper
from torch import nn

from edgeopt.errors import UnsupportedOpError
from edgeopt.pipeline.evaluate import run_float
from edgeopt.pipeline.frontend.onnx import onnx_to_graph
from edgeopt.pipeline.lower import check_lowerable
from edgeopt.pipeline.optimize import optimize
from tests.builders.onnx_models import model as onnx_model
from tests.builders.torch_export import export, normal_data

CHAIN_OPS = {"ReduceMean", "Sub", "Pow", "Sqrt", "Div"}


class LayerNorm2d(nn.Module):
    """ConvNeXt-style LayerNorm over the channels of an NCHW tensor, written out as timm's old one was."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.rand(channels) + 0.5)
        self.bias = nn.Parameter(torch.rand(channels) - 0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = x.mean(1, keepdim=True)
        s = (x - u).pow(2).mean(1, keepdim=True)
        x = (x - u) / torch.sqrt(s + 1e-6)
        return self.weight[:, None, None] * x + self.bias[:, None, None]


def _layer_norm(affine: bool) -> nn.Module:
    torch.manual_seed(0)
    ln = nn.LayerNorm(16, elementwise_affine=affine)
    if affine:
        with torch.no_grad():
            ln.weight.uniform_(0.5, 1.5)
            ln.bias.uniform_(-0.5, 0.5)
    return nn.Sequential(nn.Linear(16, 16), ln)


@pytest.mark.parametrize("affine", [True, False])
def test_fuse_layer_norm_torchscript13_chain(affine: bool) -> None:
    graph = onnx_to_graph(export(_layer_norm(affine), (1, 5, 16), "torchscript13"), "ln")
    assert CHAIN_OPS <= set(graph.ops())
    fused = optimize(graph, ["fuse_layer_norm"])
    assert not CHAIN_OPS & set(fused.ops()) and fused.ops().count("LayerNormalization") == 1
    assert fused.opset >= 17
    x = normal_data(0, 8, (1, 5, 16)) * 3 + 1
    np.testing.assert_allclose(run_float(fused, x), run_float(graph, x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("exporter", ["torchscript13", "torchscript17", "dynamo"])
def test_fuse_layer_norm_over_nchw_channels(exporter: str) -> None:
    torch.manual_seed(0)
    module = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), LayerNorm2d(8)).eval()
    graph = onnx_to_graph(export(module, (1, 3, 6, 6), exporter), "ln2d")
    fused = optimize(graph, ["fuse_layer_norm"])
    assert fused.ops() == ["Conv", "Transpose", "LayerNormalization", "Transpose"]
    x = normal_data(1, 8, (1, 3, 6, 6))
    np.testing.assert_allclose(run_float(fused, x), run_float(graph, x), rtol=1e-5, atol=1e-5)


def test_fuse_layer_norm_leaves_a_shared_intermediate_alone() -> None:
    """The centred input also read outside the chain: no LayerNormalization computes it."""
    consts = {"two": np.float32(2), "eps": np.float32(1e-5)}
    nodes = [helper.make_node("ReduceMean", ["x"], ["m"], axes=[-1]), helper.make_node("Sub", ["x", "m"], ["d"]),
             helper.make_node("Pow", ["d", "two"], ["p"]), helper.make_node("ReduceMean", ["p"], ["v"], axes=[-1]),
             helper.make_node("Add", ["v", "eps"], ["ve"]), helper.make_node("Sqrt", ["ve"], ["s"]),
             helper.make_node("Div", ["d", "s"], ["n"]), helper.make_node("Add", ["n", "d"], ["y"])]
    graph = onnx_to_graph(onnx_model(nodes, consts, [1, 4, 8], [1, 4, 8], opset=13), "shared")
    assert optimize(graph, ["fuse_layer_norm"]) is graph


def test_fuse_gelu_torchscript_form() -> None:
    """TorchScript writes ``(x * (1 + erf(x / sqrt 2))) * 0.5``: the 0.5 multiplies last."""
    torch.manual_seed(0)
    module = nn.Sequential(nn.Linear(16, 16), nn.GELU(), nn.Linear(16, 4))
    graph = onnx_to_graph(export(module, (1, 5, 16), "torchscript17"), "gelu")
    fused = optimize(graph, ["fuse_gelu"])
    assert fused.ops() == ["MatMul", "Add", "Gelu", "MatMul", "Add"]
    x = normal_data(2, 8, (1, 5, 16)) * 3
    np.testing.assert_allclose(run_float(fused, x), run_float(graph, x), rtol=1e-5, atol=1e-5)


def test_fuse_gelu_without_the_half_is_twice_gelu() -> None:
    """onnxsim moves the 0.5 into the next layer's weights, leaving ``x * (1 + erf(x / sqrt 2))``."""
    consts = {"s": np.float32(np.sqrt(2)), "one": np.float32(1)}
    nodes = [helper.make_node("Div", ["x", "s"], ["d"]), helper.make_node("Erf", ["d"], ["e"]),
             helper.make_node("Add", ["e", "one"], ["a"]), helper.make_node("Mul", ["x", "a"], ["y"])]
    graph = onnx_to_graph(onnx_model(nodes, consts, [1, 4, 8], [1, 4, 8], opset=13), "gelu2")
    fused = optimize(graph, ["fuse_gelu"])
    assert fused.ops() == ["Gelu", "Mul"]
    x = normal_data(3, 8, (1, 4, 8)) * 3
    np.testing.assert_allclose(run_float(fused, x), run_float(graph, x), rtol=1e-5, atol=1e-5)


def test_div_by_constant_and_square_become_mul() -> None:
    rng = np.random.default_rng(0)
    consts = {"c": rng.uniform(0.5, 2, 8).astype(np.float32), "two": np.float32(2), "k": np.float32(3)}
    nodes = [helper.make_node("Div", ["x", "c"], ["d"]), helper.make_node("Pow", ["d", "two"], ["p"]),
             helper.make_node("Div", ["p", "k"], ["y"])]
    graph = onnx_to_graph(onnx_model(nodes, consts, [1, 4, 8], [1, 4, 8], opset=13), "div")
    rewritten = optimize(graph, ["div_by_constant_as_mul", "square_as_mul"])
    assert rewritten.ops() == ["Mul", "Mul", "Mul"]
    square = rewritten.nodes[1]
    assert square.inputs == ("d", "d") and square.name == graph.nodes[1].name
    x = normal_data(4, 8, (1, 4, 8))
    np.testing.assert_allclose(run_float(rewritten, x), run_float(graph, x), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("indices,axis,out_shape", [
    (np.array(1), 1, [1, 5, 8]),                       # x[:, 1]: a scalar index drops the axis
    (np.array([-1]), -1, [1, 3, 5, 1]),                # one element kept
    (np.arange(0, 8, 2).reshape(2, 2), 3, [1, 3, 5, 2, 2]),  # strided, reshaped
    (np.array([4, 3, 2]), 2, [1, 3, 3, 8]),            # reversed run
])
def test_gather_at_evenly_spaced_constants_becomes_slice(indices: np.ndarray, axis: int, out_shape: list) -> None:
    nodes = [helper.make_node("Gather", ["x", "i"], ["y"], axis=axis)]
    graph = onnx_to_graph(onnx_model(nodes, {"i": indices.astype(np.int64)}, [1, 3, 5, 8], out_shape), "gather")
    rewritten = optimize(graph, ["gather_as_slice"])
    assert "Gather" not in rewritten.ops() and rewritten.ops()[0] == "Slice"
    x = normal_data(5, 4, (1, 3, 5, 8))
    np.testing.assert_array_equal(run_float(rewritten, x), run_float(graph, x))


def test_gather_at_irregular_indices_is_left_alone() -> None:
    nodes = [helper.make_node("Gather", ["x", "i"], ["y"], axis=1)]
    graph = onnx_to_graph(onnx_model(nodes, {"i": np.array([0, 2, 1], np.int64)}, [1, 3, 4], [1, 3, 4]), "gather")
    assert optimize(graph, ["gather_as_slice"]) is graph


def test_a_cast_to_the_inputs_own_type_is_dropped_at_load() -> None:
    nodes = [helper.make_node("Cast", ["x"], ["c"], to=1), helper.make_node("Relu", ["c"], ["y"])]
    graph = onnx_to_graph(onnx_model(nodes, {}, [1, 4], [1, 4]), "cast")
    assert graph.ops() == ["Relu"] and graph.nodes[0].inputs == ("x",)


def test_an_erf_outside_gelu_is_refused_in_one_line() -> None:
    nodes = [helper.make_node("Erf", ["x"], ["y"], name="erf")]
    graph = optimize(onnx_to_graph(onnx_model(nodes, {}, [1, 4], [1, 4]), "erf"))
    with pytest.raises(UnsupportedOpError, match="Erf \\(node 'erf'\\).*no ERF.*nn.GELU") as err:
        check_lowerable(graph)
    assert "\n" not in str(err.value)


def test_a_gather_of_integer_data_is_left_alone() -> None:
    """Token ids and masks are not quantized activations: their Gathers are not this pass's."""
    nodes = [helper.make_node("Cast", ["x"], ["ids"], to=7), helper.make_node("Gather", ["ids", "i"], ["g"], axis=1),
             helper.make_node("Cast", ["g"], ["y"], to=1)]
    graph = onnx_to_graph(onnx_model(nodes, {"i": np.array(0, np.int64)}, [1, 4], [1]), "ids")
    assert optimize(graph, ["gather_as_slice"]) is graph
