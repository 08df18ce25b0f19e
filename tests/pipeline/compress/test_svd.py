"""Spatial and weight SVD: full rank preserves the outputs (ONNX Runtime), rank r costs the MACs computed, and
the pair's second layer re-fitted on calibration data reproduces the layer better than the weights' SVD."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

from edgeopt.pipeline.compress.layers import activations, graph_macs, node_by_name, node_macs, outputs
from edgeopt.pipeline.compress.ratio_selection import Choice, compress_layer
from edgeopt.pipeline.compress.refit import refit_decomposition
from edgeopt.pipeline.compress.svd import decompose, full_rank, macs_per_rank, svd_kind
from edgeopt.pipeline.frontend.onnx import onnx_to_graph
from tests.builders.compress_models import assert_valid, data, tiny_resnet_graph
from tests.builders.onnx_models import model

GRAPH = tiny_resnet_graph()
X = data(8)
LAYERS = [n.name for n in GRAPH.nodes if svd_kind(GRAPH, n)]


def test_every_kind_is_found() -> None:
    kinds = {svd_kind(GRAPH, n) for n in GRAPH.nodes}
    assert {"spatial", "weight"} <= kinds
    assert svd_kind(GRAPH, node_by_name(GRAPH, "/right/right.3/Conv")) is None  # depthwise


@pytest.mark.parametrize("layer", LAYERS)
def test_full_rank_preserves_outputs(layer: str) -> None:
    before = outputs(GRAPH, X)
    svd = decompose(GRAPH, layer, full_rank(GRAPH, node_by_name(GRAPH, layer)))
    assert_valid(svd)
    np.testing.assert_allclose(outputs(svd, X), before, rtol=0, atol=1e-4 * np.abs(before).max())
    assert {f"{layer}.svd0", f"{layer}.svd1"} <= {n.name for n in svd.nodes}


@pytest.mark.parametrize("layer", ["/mix/Conv", "/left/left.0/Conv", "/fc/Gemm"])
def test_rank_r_costs_the_macs_computed(layer: str) -> None:
    node = node_by_name(GRAPH, layer)
    rank = max(1, full_rank(GRAPH, node) // 4)
    svd = decompose(GRAPH, layer, rank)
    assert graph_macs(svd) == graph_macs(GRAPH) - node_macs(GRAPH, node) + rank * macs_per_rank(GRAPH, node)
    assert graph_macs(svd) < graph_macs(GRAPH)
    out = outputs(svd, X)
    assert out.shape == outputs(GRAPH, X).shape and np.isfinite(out).all()


def test_spatial_svd_splits_stride_dilation_and_asymmetric_padding() -> None:
    rng = np.random.default_rng(3)
    w = rng.normal(size=(6, 4, 3, 5)).astype(np.float32)
    b = rng.normal(size=6).astype(np.float32)
    onnx_model = model([helper.make_node("Conv", ["x", "w", "b"], ["y"], name="conv", strides=[2, 3],
                                         dilations=[2, 1], pads=[1, 2, 2, 0], kernel_shape=[3, 5])],
                       {"w": w, "b": b}, [1, 4, 13, 17], [1, 6, 6, 5])
    graph = onnx_to_graph(onnx_model, "strided")
    x = rng.normal(size=(3, 4, 13, 17)).astype(np.float32)
    svd = decompose(graph, "conv", full_rank(graph, node_by_name(graph, "conv")))
    first, second = (node_by_name(svd, f"conv.svd{i}") for i in (0, 1))
    assert (first.attrs["strides"], first.attrs["dilations"], first.attrs["pads"]) == ([2, 1], [2, 1], [1, 0, 2, 0])
    assert (second.attrs["strides"], second.attrs["dilations"], second.attrs["pads"]) == ([1, 3], [1, 1], [0, 2, 0, 0])
    assert_valid(svd)
    np.testing.assert_allclose(outputs(svd, x), outputs(graph, x), atol=1e-4)


def test_input_graph_is_not_mutated() -> None:
    names = [n.name for n in GRAPH.nodes]
    decompose(GRAPH, "/mix/Conv", 3)
    assert [n.name for n in GRAPH.nodes] == names


@pytest.mark.parametrize("layer", ["/mix/Conv", "/left/left.0/Conv", "/fc/Gemm"])
def test_refit_second_factor_reproduces_the_layer_better_than_the_weights_svd(layer: str) -> None:
    """Re-fitted on 8 images, the rank-r pair's output is closer to the uncompressed layer's on 8 others."""
    rank = max(1, full_rank(GRAPH, node_by_name(GRAPH, layer)) // 4)
    out = node_by_name(GRAPH, layer).outputs[0]
    plain = decompose(GRAPH, layer, rank)
    refit = refit_decomposition(plain, GRAPH, GRAPH, layer, X)
    assert f"{layer}.svd1.refit_weight" in refit.initializers
    held = data(8, seed=2)
    want = activations(GRAPH, held, [out])[out]
    errors = [np.sum((activations(g, held, [out])[out] - want) ** 2) for g in (plain, refit)]
    assert errors[1] < 0.9 * errors[0]


def test_compress_layer_refits_its_decomposition() -> None:
    node = node_by_name(GRAPH, "/mix/Conv")
    graph, _ = compress_layer(GRAPH, Choice(node.name, "svd", 0.25), X)
    assert f"{node.name}.svd1.refit_weight" in graph.initializers
