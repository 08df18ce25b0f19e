"""Run 1-D convolutions and poolings as 2-D ones of height 1, as TensorFlow's converter does.

TFLite has no CONV_1D: its converter writes a 1-D convolution as EXPAND_DIMS → CONV_2D (kernel height
1) → SQUEEZE. Here each Conv, MaxPool, AveragePool, GlobalAveragePool or GlobalMaxPool over a 3-D
``[N, C, L]`` tensor becomes Unsqueeze (axis 2) → the same op on ``[N, C, 1, L]`` → Squeeze (axis 2).
Where one such op feeds another, the Squeeze and the Unsqueeze between them are left out, so a chain of
1-D layers (an audio model's front end) runs on 4-D tensors throughout, and the int8 program reshapes
and transposes only where the chain begins and ends, not around every layer.
"""
from __future__ import annotations

import numpy as np

from edgeopt.ir import Graph, Node, TensorInfo
from edgeopt.pipeline.optimize import PASSES

ONE_D_OPS = frozenset({"Conv", "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool"})
AXES = "conv1d_as_conv2d/axes"  # the inserted height axis, 2, as Unsqueeze/Squeeze take it (opset 13+)


@PASSES.register("conv1d_as_conv2d")
def conv1d_as_conv2d(graph: Graph) -> Graph:
    """``graph`` with every 1-D Conv and pooling running on a height-1 4-D tensor (see the module)."""
    candidates = [n for n in graph.nodes if _is_one_d(n, graph)]
    if not candidates:
        return graph
    rewritten = {n.name for n in candidates}
    nodes: list[Node] = []
    tensors = dict(graph.tensors)
    inits = dict(graph.initializers)
    inits[AXES] = np.array([2], np.int64)
    as_4d: dict[str, str] = {}  # 3-D tensor → the 4-D tensor holding the same values
    squeezes: dict[str, Node] = {}  # the Squeeze that writes each rewritten op's 3-D output
    for node in graph.nodes:
        if node.name not in rewritten:
            nodes.append(node)
            continue
        x = node.inputs[0]
        if x not in as_4d:
            as_4d[x] = _height_one(x, tensors)
            nodes.append(Node("Unsqueeze", f"{node.name}/unsqueeze", (x, AXES), (as_4d[x],)))
        inputs = [as_4d[x], *node.inputs[1:]]
        if node.op == "Conv":
            inputs[1] = _weight_2d(node.inputs[1], graph, rewritten, inits)
        y = node.outputs[0]
        as_4d[y] = _height_one(y, tensors)
        nodes.append(node.with_(inputs=tuple(inputs), outputs=(as_4d[y],), attrs=_attrs_2d(node.attrs)))
        squeezes[y] = Node("Squeeze", f"{node.name}/squeeze", (as_4d[y], AXES), (y,))
        nodes.append(squeezes[y])
    # A Squeeze whose 3-D output nothing else reads (a rewritten op took the 4-D tensor instead) goes.
    read = {t for n in nodes for t in n.inputs} | {t.name for t in graph.outputs}
    for y, squeeze in squeezes.items():
        if y not in read:
            nodes.remove(squeeze)
            del tensors[y]
    return graph.replace(nodes=tuple(nodes), tensors=tensors, initializers=inits).without_unused_initializers()


def _is_one_d(node: Node, graph: Graph) -> bool:
    return (node.op in ONE_D_OPS and len(graph.shape(node.inputs[0])) == 3 and len(node.outputs) == 1
            and (node.op != "Conv" or node.inputs[1] in graph.initializers))


def _height_one(name: str, tensors: dict[str, TensorInfo]) -> str:
    """A new tensor ``name/2d`` of shape ``[N, C, 1, L]`` for the 3-D ``name`` (recorded in ``tensors``)."""
    info = tensors[name]
    n, c, length = info.shape
    tensors[f"{name}/2d"] = TensorInfo(f"{name}/2d", (n, c, 1, length), info.dtype)
    return f"{name}/2d"


def _weight_2d(name: str, graph: Graph, rewritten: set[str], inits: dict[str, np.ndarray]) -> str:
    """The ``(O, I/groups, 1, K)`` form of the ``(O, I/groups, K)`` weight ``name``, keeping its name unless
    a node left as it is reads it too."""
    weight = graph.initializers[name]
    shared = any(c.name not in rewritten for c in graph.consumers(name))
    new_name = f"{name}/2d" if shared else name
    inits[new_name] = weight.reshape(weight.shape[0], weight.shape[1], 1, weight.shape[2])
    return new_name


def _attrs_2d(attrs: dict) -> dict:
    """1-D spatial attributes with a height axis of kernel 1, stride 1, dilation 1 and no padding."""
    changed = {}
    for key in ("kernel_shape", "strides", "dilations"):
        if key in attrs:
            changed[key] = [1, *attrs[key]]
    if "pads" in attrs:
        begin, end = attrs["pads"]
        changed["pads"] = [0, begin, 0, end]
    return changed
