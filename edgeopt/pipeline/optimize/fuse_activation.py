"""Fuse Relu and Relu6-like Clip into the op that produces their input (Conv, Gemm, Add, Sub, Mul).

The fused op gets ``attrs["fused_activation"]`` ("Relu" or "Relu6") and writes the activation's output
tensor, so the quantizer sees one group and quantizes after the activation, however the model wrote it
(``nn.ReLU6``, ``F.relu6``, ``torch.clamp(x, 0, 6)`` and ``hardtanh(0, 6)`` all export as Clip).
"""
from __future__ import annotations

import numpy as np

from edgeopt.ir import Graph, Node
from edgeopt.pipeline.optimize import PASSES

FUSABLE_PRODUCERS = {"Conv", "Gemm", "Add", "Sub", "Mul"}


def activation_kind(node: Node, graph: Graph) -> str | None:
    """"Relu" or "Relu6" when ``node`` is an activation TFLite can fuse, else None."""
    if node.op == "Relu":
        return "Relu"
    if node.op != "Clip":
        return None
    lo, hi = clip_bounds(node, graph)
    if lo == 0.0 and hi == 6.0:
        return "Relu6"
    if lo == 0.0 and hi == np.inf:
        return "Relu"
    return None


def clip_bounds(node: Node, graph: Graph) -> tuple[float | None, float | None]:
    """A Clip's ``(min, max)``: attributes before opset 11, else its constant inputs; an absent bound is
    infinite, and ``(None, None)`` means a bound is computed at run time."""
    if graph.opset < 11:
        return float(node.attrs.get("min", -np.inf)), float(node.attrs.get("max", np.inf))
    bounds = []
    for i, default in ((1, -np.inf), (2, np.inf)):
        name = node.inputs[i] if len(node.inputs) > i else ""
        if name == "":
            bounds.append(default)
        elif name in graph.initializers and graph.initializers[name].size == 1:
            bounds.append(float(graph.initializers[name].reshape(())))
        else:
            return None, None  # bounds computed at run time: not fusable
    return bounds[0], bounds[1]


@PASSES.register("fuse_activation")
def fuse_activation(graph: Graph) -> Graph:
    """Merge each fusable activation into its producer when it is the producer's only consumer."""
    nodes = list(graph.nodes)
    tensors = dict(graph.tensors)
    for act in graph.nodes:
        kind = activation_kind(act, graph)
        producer = graph.producer(act.inputs[0])
        if (
            kind is None
            or producer is None
            or producer.op not in FUSABLE_PRODUCERS
            or "fused_activation" in producer.attrs
            or len(graph.consumers(act.inputs[0])) != 1
            or graph.is_output(act.inputs[0])
        ):
            continue
        index = nodes.index(producer)
        nodes[index] = producer.with_(outputs=act.outputs, attrs={"fused_activation": kind})
        nodes.remove(act)
        del tensors[act.inputs[0]]
    return graph.replace(nodes=tuple(nodes), tensors=tensors).without_unused_initializers()
