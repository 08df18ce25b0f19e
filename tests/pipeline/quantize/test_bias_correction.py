"""Bias correction: the mean int8 output error per channel shrinks (empirical and analytical)."""
from __future__ import annotations

import numpy as np
import onnx
from onnx import helper

from edgeopt.ir import Graph, Node, QuantizedGraph
from edgeopt.pipeline.calibrate import calibrate
from edgeopt.pipeline.evaluate import run_float, run_int8
from edgeopt.pipeline.lower import lower
from edgeopt.pipeline.frontend.onnx import onnx_to_graph
from edgeopt.pipeline.optimize import optimize
from edgeopt.pipeline.quantize.minmax import quantize_minmax
from edgeopt.pipeline.quantize.bias_correction import (
    analytical_bias_correction, clipped_normal_mean, empirical_bias_correction)
from edgeopt.pipeline.quantize.per_tensor_weights import per_tensor_weights
from tests.builders.onnx_models import model


def _coarse_model(rng: np.random.Generator) -> onnx.ModelProto:
    """Conv → BN → Relu → Conv(1x1, no bias) → BN: the second conv has one huge channel, so per-tensor
    weights quantize the others coarsely, and its input (a ReLU output) has a large positive mean."""
    w2 = rng.normal(0, 0.1, (6, 8, 1, 1)).astype(np.float32)
    w2[0] *= 40.0
    inits = {
        "w1": rng.normal(0, 0.4, (8, 3, 3, 3)).astype(np.float32),
        "g1": rng.uniform(0.5, 1.0, 8).astype(np.float32), "b1": rng.uniform(1.0, 2.0, 8).astype(np.float32),
        "m1": np.zeros(8, np.float32), "v1": np.full(8, 4.0, np.float32),
        "w2": w2,
        "g2": np.ones(6, np.float32), "b2": np.zeros(6, np.float32),
        "m2": np.zeros(6, np.float32), "v2": np.ones(6, np.float32),
    }
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c1", "g1", "b1", "m1", "v1"], ["n1"], name="bn1"),
        helper.make_node("Relu", ["n1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "w2"], ["c2"], name="conv2"),
        helper.make_node("BatchNormalization", ["c2", "g2", "b2", "m2", "v2"], ["y"], name="bn2"),
    ]
    return model(nodes, inits, [1, 3, 8, 8], [1, 6, 8, 8])


def _setup() -> tuple[Graph, QuantizedGraph, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    graph = optimize(onnx_to_graph(_coarse_model(rng), "t"))
    calib = rng.normal(size=(32, 3, 8, 8)).astype(np.float32)
    x = rng.normal(size=(64, 3, 8, 8)).astype(np.float32)
    return graph, per_tensor_weights(quantize_minmax(graph, calibrate(graph, calib))), calib, x


def _mean_error(qgraph: QuantizedGraph, graph: Graph, x: np.ndarray) -> np.ndarray:
    """Per output channel, |mean(int8 executor - float)| over samples and positions."""
    diff = run_int8(lower(qgraph, "double"), x) - run_float(graph, x)
    return np.abs(diff.mean(axis=(0, 2, 3)))


def test_empirical_bias_correction_reduces_mean_output_error() -> None:
    graph, qgraph, calib, x = _setup()
    corrected = empirical_bias_correction(qgraph, calib)
    before, after = _mean_error(qgraph, graph, x), _mean_error(corrected, graph, x)
    assert after.mean() < 0.5 * before.mean(), (before, after)
    assert qgraph.graph.initializers.keys() != corrected.graph.initializers.keys(), "new biases, input untouched"
    conv2 = corrected.graph.nodes[1]
    assert conv2.inputs[2] in corrected.encodings and corrected.encodings[conv2.inputs[2]].dtype == "int32"


def test_analytical_bias_correction_reduces_mean_output_error() -> None:
    graph, qgraph, _, x = _setup()
    assert "bn_beta" in graph.nodes[0].attrs
    corrected = analytical_bias_correction(qgraph)
    before, after = _mean_error(qgraph, graph, x), _mean_error(corrected, graph, x)
    assert after.mean() < 0.7 * before.mean(), (before, after)


def test_analytical_bias_correction_without_statistics_is_a_no_op() -> None:
    graph, qgraph, _, _ = _setup()
    stripped = graph.replace(nodes=tuple(
        Node(n.op, n.name, n.inputs, n.outputs, {k: v for k, v in n.attrs.items() if not k.startswith("bn_")})
        for n in graph.nodes))
    bare = QuantizedGraph(stripped, qgraph.encodings)
    assert analytical_bias_correction(bare) is bare


def test_clipped_normal_mean_matches_sampling() -> None:
    rng = np.random.default_rng(1)
    mu, sigma = np.array([-1.0, 0.5, 3.0, 7.0]), np.array([1.0, 2.0, 1.5, 0.5])
    z = rng.normal(mu, sigma, size=(200_000, 4))
    for lo, hi in ((0.0, np.inf), (0.0, 6.0), (-np.inf, np.inf)):
        np.testing.assert_allclose(clipped_normal_mean(mu, sigma, lo, hi), np.clip(z, lo, hi).mean(0), atol=0.02)
