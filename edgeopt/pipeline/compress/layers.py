"""What compression needs to know about a Graph's layers: MACs, conv geometry, activations on data.

MACs are counted on the float Graph (the compressed model is judged before it is lowered): a Conv costs
``N * Co * Ho * Wo * (Ci / group) * KH * KW``, a Gemm ``M * K * N``, a MatMul the product of its output
shape and its contracted dimension. Other ops (activations, pools, adds) are not counted: they are
small next to these and compression does not change them.
"""
from __future__ import annotations

import math

import numpy as np
from onnx import helper

from edgeopt.ir import Graph, Node
from edgeopt.pipeline.emit.onnx import graph_to_onnx
from edgeopt.runtimes.onnxruntime import OnnxRuntime

MAC_OPS = ("Conv", "Gemm", "MatMul")


def node_macs(graph: Graph, node: Node) -> int:
    """Multiply-accumulates of one Conv, Gemm or MatMul node (0 for any other op)."""
    if node.op == "Conv":
        w = graph.shape(node.inputs[1])
        return math.prod(graph.shape(node.outputs[0])) * math.prod(w[1:])
    if node.op == "Gemm":
        a = graph.shape(node.inputs[0])
        k = a[0] if node.attrs.get("transA", 0) else a[1]
        return math.prod(graph.shape(node.outputs[0])) * k
    if node.op == "MatMul":
        return math.prod(graph.shape(node.outputs[0])) * graph.shape(node.inputs[0])[-1]
    return 0


def graph_macs(graph: Graph) -> int:
    """Multiply-accumulates of the whole Graph (its Conv, Gemm and MatMul nodes)."""
    return sum(node_macs(graph, n) for n in graph.nodes)


def graph_params(graph: Graph) -> int:
    """Number of float weights (all initializers' elements)."""
    return int(sum(v.size for v in graph.initializers.values()))


def node_by_name(graph: Graph, name: str) -> Node:
    """The node called ``name``; KeyError when there is none."""
    for node in graph.nodes:
        if node.name == name:
            return node
    raise KeyError(name)


def conv_geometry(node: Node) -> tuple[list[int], list[int], list[int]] | None:
    """``(strides, dilations, pads)`` of a 2-D Conv with explicit padding, or None for ``auto_pad`` SAME.

    ``pads`` is ONNX's ``[top, left, bottom, right]``.
    """
    auto_pad = node.attrs.get("auto_pad", "NOTSET")
    if auto_pad not in ("NOTSET", "VALID"):
        return None
    pads = list(node.attrs.get("pads", [0, 0, 0, 0])) if auto_pad == "NOTSET" else [0, 0, 0, 0]
    return list(node.attrs.get("strides", [1, 1])), list(node.attrs.get("dilations", [1, 1])), pads


def constant_weight(graph: Graph, node: Node) -> np.ndarray | None:
    """``node``'s weight (input 1) when it is a constant, else None."""
    return graph.initializers.get(node.inputs[1]) if len(node.inputs) > 1 else None


def activations(graph: Graph, x: np.ndarray, names: list[str]) -> dict[str, np.ndarray]:
    """The values of the tensors ``names`` (graph inputs, intermediates or outputs) on the batch ``x``.

    Runs the Graph in ONNX Runtime with those tensors exposed as extra outputs, so only they are kept.
    """
    if not names:
        return {}
    inputs = {t.name for t in graph.inputs}
    wanted = [n for n in dict.fromkeys(names) if n not in inputs]
    model = graph_to_onnx(graph)
    present = {o.name for o in model.graph.output}
    for name in wanted:
        if name not in present:
            info = graph.tensors[name]
            model.graph.output.append(helper.make_tensor_value_info(
                name, helper.np_dtype_to_tensor_dtype(np.dtype(info.dtype)), info.shape))
    order = [o.name for o in model.graph.output]
    outs = OnnxRuntime(model.SerializeToString(), num_threads=1).run([x])
    values = dict(zip(order, outs))
    values.update({n: x for n in names if n in inputs})
    return {n: values[n] for n in names}


def outputs(graph: Graph, x: np.ndarray) -> np.ndarray:
    """The Graph's first output on the batch ``x``."""
    return activations(graph, x, [graph.outputs[0].name])[graph.outputs[0].name]

