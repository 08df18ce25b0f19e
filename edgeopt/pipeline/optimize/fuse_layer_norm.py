"""Fuse the elementwise chains exporters write for LayerNorm into one ``LayerNormalization`` node (opset 17).

PyTorch's TorchScript exporter below opset 17 (and any exporter for a hand-written LayerNorm) writes
``F.layer_norm`` over the last ``k`` axes as::

    mean = ReduceMean(x, axes)          d = Sub(x, mean)
    var  = ReduceMean(Pow(d, 2), axes)  (or Mul(d, d))
    y    = Div(d, Sqrt(Add(var, eps)))  [Mul gamma] [Add beta]

with ``axes`` the trailing axes (``keepdims=1``), the Add's and Mul's operands in either order, and
``gamma``/``beta`` constants of the normalized shape (leading ones allowed). Every intermediate but ``d``
(read by the Pow or Mul and the Div) must feed only the next node of the chain. The chain becomes
``LayerNormalization(x, gamma, beta, axis=-k, epsilon=eps)`` (gamma ones when the chain has no Mul,
beta absent when it has no Add), which lowers as a float island (``lower.float_island``).

ConvNeXt-style LayerNorm over the channels of an NCHW tensor (``axes=[1]`` of a 4-D ``x``) has no
``LayerNormalization`` form: ONNX's normalizes ``axis..rank-1``. It becomes ``Transpose(0, 2, 3, 1)`` →
``LayerNormalization(axis=-1)`` → ``Transpose(0, 3, 1, 2)``, gamma and beta of shape ``[C, 1, 1]`` read
as ``[C]``. A graph that gains a LayerNormalization is raised to opset 17, the first that defines it.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from edgeopt.ir import Graph, Node, TensorInfo
from edgeopt.pipeline.optimize import PASSES

LAYER_NORM_OPSET = 17


class _Chain:
    """Walks one candidate chain forward from its first ReduceMean, collecting the nodes it consumes."""

    def __init__(self, graph: Graph) -> None:
        self.graph = graph
        self.used: list[Node] = []

    def only_reader(self, tensor: str, op: str) -> Node | None:
        """The single reader of ``tensor`` if it is an ``op`` (and ``tensor`` is no graph output)."""
        readers = self.graph.consumers(tensor)
        if len(readers) != 1 or readers[0].op != op or self.graph.is_output(tensor):
            return None
        self.used.append(readers[0])
        return readers[0]

    def scalar(self, name: str) -> float | None:
        value = self.graph.initializers.get(name)
        return float(value.reshape(())) if value is not None and value.size == 1 else None

    def other(self, node: Node, tensor: str) -> str | None:
        """The operand of binary ``node`` that is not ``tensor``."""
        if len(node.inputs) != 2 or tensor not in node.inputs:
            return None
        return node.inputs[1] if node.inputs[0] == tensor else node.inputs[0]


def _axes(node: Node, graph: Graph) -> list[int] | None:
    """A ReduceMean's axes, normalized and sorted, when it keeps the reduced dimensions."""
    if node.op != "ReduceMean" or not node.attrs.get("keepdims", 1):
        return None
    axes = node.attrs.get("axes")
    if axes is None and len(node.inputs) > 1 and node.inputs[1]:
        if node.inputs[1] not in graph.initializers:
            return None
        axes = graph.initializers[node.inputs[1]].tolist()
    if not axes:
        return None
    rank = len(graph.shape(node.inputs[0]))
    return sorted(int(a) % rank for a in axes)


def _affine(value: np.ndarray, shape: tuple[int, ...]) -> np.ndarray | None:
    """``value`` as an array of ``shape`` when it broadcasts to it without growing (leading ones dropped)."""
    lead = value.ndim - len(shape)
    if lead > 0:
        if any(d != 1 for d in value.shape[:lead]):
            return None
        value = value.reshape(value.shape[lead:])
    try:
        if np.broadcast_shapes(value.shape, shape) != shape:
            return None
    except ValueError:
        return None
    return np.broadcast_to(value, shape).astype(np.float32)


def _match(graph: Graph, first: Node) -> dict[str, Any] | None:
    """The pieces of the LayerNorm chain starting at ReduceMean ``first``, or None."""
    axes = _axes(first, graph)
    if axes is None:
        return None
    x = first.inputs[0]
    shape = graph.shape(x)
    rank = len(shape)
    trailing = axes == list(range(axes[0], rank))
    channels = rank == 4 and axes == [1]
    if not (trailing or channels):
        return None
    c = _Chain(graph)
    mean = first.outputs[0]
    readers = graph.consumers(mean)
    if len(readers) != 1 or readers[0].op != "Sub" or readers[0].inputs != (x, mean) or graph.is_output(mean):
        return None
    sub = readers[0]
    d = sub.outputs[0]
    d_readers = graph.consumers(d)
    if len(d_readers) != 2 or graph.is_output(d):
        return None
    square = next((n for n in d_readers if n.op == "Pow" and n.inputs[0] == d and c.scalar(n.inputs[1]) == 2.0
                   or n.op == "Mul" and n.inputs == (d, d)), None)
    div = next((n for n in d_readers if n.op == "Div" and n.inputs[0] == d), None)
    if square is None or div is None:
        return None
    var_mean = c.only_reader(square.outputs[0], "ReduceMean")
    if var_mean is None or _axes(var_mean, graph) != axes:
        return None
    add_eps = c.only_reader(var_mean.outputs[0], "Add")
    eps = add_eps and c.scalar(c.other(add_eps, var_mean.outputs[0]) or "")
    if eps is None:
        return None
    sqrt = c.only_reader(add_eps.outputs[0], "Sqrt")
    if sqrt is None or div.inputs[1] != sqrt.outputs[0] or len(graph.consumers(sqrt.outputs[0])) != 1:
        return None
    normalized = tuple(shape[a] for a in axes)
    chain = [first, sub, square, var_mean, add_eps, sqrt, div]
    last, gamma, beta = div, np.ones(normalized, np.float32), None
    param_shape = normalized + (1, 1) if channels else normalized  # [C, 1, 1] broadcasts over NCHW's C
    mul = c.only_reader(div.outputs[0], "Mul")
    value = mul and graph.initializers.get(c.other(mul, div.outputs[0]) or "")
    if value is not None and _affine(value, param_shape) is not None:
        gamma, last = _affine(value, param_shape).reshape(normalized), mul
        chain.append(mul)
        add = c.only_reader(mul.outputs[0], "Add")
        value = add and graph.initializers.get(c.other(add, mul.outputs[0]) or "")
        if value is not None and _affine(value, param_shape) is not None:
            beta, last = _affine(value, param_shape).reshape(normalized), add
            chain.append(add)
    return {"x": x, "y": last.outputs[0], "axis": axes[0] - rank, "eps": eps, "gamma": gamma, "beta": beta,
            "chain": chain, "channels": channels, "name": sub.name.rsplit("/", 1)[0] or sub.name}


@PASSES.register("fuse_layer_norm")
def fuse_layer_norm(graph: Graph) -> Graph:
    """Replace each exported LayerNorm chain by one ``LayerNormalization`` node (see the module)."""
    nodes = list(graph.nodes)
    tensors = dict(graph.tensors)
    inits = dict(graph.initializers)
    fused = False
    for first in graph.nodes:
        if first.op != "ReduceMean" or first not in nodes:
            continue
        m = _match(graph, first)
        if m is None or any(n not in nodes for n in m["chain"]):
            continue
        stem = m["name"] + "/LayerNormalization"
        inits[stem + ".scale"] = m["gamma"]
        inputs = [m["x"], stem + ".scale"]
        if m["beta"] is not None:
            inits[stem + ".bias"] = m["beta"]
            inputs.append(stem + ".bias")
        attrs = {"axis": m["axis"], "epsilon": m["eps"]}
        if m["channels"]:
            n, c, h, w = graph.shape(m["x"])
            nhwc_in, nhwc_out = stem + ".nhwc_in", stem + ".nhwc_out"
            for t in (nhwc_in, nhwc_out):
                tensors[t] = TensorInfo(t, (n, h, w, c), graph.tensors[m["x"]].dtype)
            inputs[0] = nhwc_in
            new = [Node("Transpose", stem + ".to_nhwc", (m["x"],), (nhwc_in,), {"perm": [0, 2, 3, 1]}),
                   Node("LayerNormalization", stem, tuple(inputs), (nhwc_out,), {"axis": -1, "epsilon": m["eps"]}),
                   Node("Transpose", stem + ".to_nchw", (nhwc_out,), (m["y"],), {"perm": [0, 3, 1, 2]})]
        else:
            new = [Node("LayerNormalization", stem, tuple(inputs), (m["y"],), attrs)]
        index = nodes.index(m["chain"][0])
        for n in m["chain"]:
            nodes.remove(n)
            for t in n.outputs:
                if t != m["y"]:
                    tensors.pop(t, None)
        nodes[index:index] = new
        fused = True
    if not fused:
        return graph
    return graph.replace(nodes=tuple(nodes), tensors=tensors, initializers=inits,
                         opset=max(graph.opset, LAYER_NORM_OPSET)).without_unused_initializers()
