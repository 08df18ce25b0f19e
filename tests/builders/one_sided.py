"""A small network whose weights are one-sided (all positive, as a layer followed by a ReLU and a folded
batch norm can leave them) on image-like inputs in [0, 1]: a symmetric int8 grid spends half its levels
on weights that never occur, an asymmetric one (SNPE's) does not, and the weights' own error is a large
part of the output's (each layer's output channels differ in scale up to ``spread`` times, on one
per-tensor grid).
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import helper

from edgeopt.ir import Graph
from edgeopt.pipeline.frontend.onnx import onnx_to_graph
from edgeopt.pipeline.optimize import optimize
from tests.builders.onnx_models import model

INPUT_SHAPE = (3, 8, 8)
WIDTH = 8


def one_sided_model(seed: int = 0, layers: int = 2, spread: float = 30.0) -> onnx.ModelProto:
    """``layers`` x (1x1 Conv, positive weights, no bias → Relu); the last feature map is the output."""
    rng = np.random.default_rng(seed)
    inits: dict[str, np.ndarray] = {}
    nodes = []
    x, cin = "x", INPUT_SHAPE[0]
    for i in range(layers):
        std = np.exp(rng.uniform(0, np.log(spread), WIDTH))[:, None, None, None]
        inits[f"w{i}"] = (np.abs(rng.normal(0, 1, (WIDTH, cin, 1, 1))) * std / std.max() * 4 / cin).astype(np.float32)
        y = f"r{i}" if i < layers - 1 else "y"
        nodes += [helper.make_node("Conv", [x, f"w{i}"], [f"c{i}"], name=f"conv{i}"),
                  helper.make_node("Relu", [f"c{i}"], [y], name=f"relu{i}")]
        x, cin = y, WIDTH
    return model(nodes, inits, [1, *INPUT_SHAPE], [1, WIDTH, *INPUT_SHAPE[1:]])


def one_sided_graph(seed: int = 0, layers: int = 2) -> Graph:
    """``one_sided_model`` loaded and optimized."""
    return optimize(onnx_to_graph(one_sided_model(seed, layers), "one_sided"))


def images(seed: int, n: int) -> np.ndarray:
    """``n`` inputs uniform in [0, 1], NCHW."""
    return np.random.default_rng(seed).uniform(0, 1, (n, *INPUT_SHAPE)).astype(np.float32)
