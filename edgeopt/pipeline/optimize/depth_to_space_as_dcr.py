"""Turn a DepthToSpace of mode CRD fed by a Conv into mode DCR, by permuting the Conv's output channels.

``nn.PixelShuffle`` comes out of ``torch.onnx.export`` as DepthToSpace mode CRD, which reads channel
``c * b * b + i * b + j`` into pixel offset ``(i, j)`` of output channel ``c``; TFLite's DEPTH_TO_SPACE is
mode DCR, which reads channel ``(i * b + j) * C_out + c``. A sub-pixel convolution (ESPCN, super-resolution
and segmentation heads) computes those channels with a Conv: when that Conv has constant weights, one
group, and no reader but the DepthToSpace, giving its output channel ``(i * b + j) * C_out + c`` the
filter (and bias) of its channel ``c * b * b + i * b + j`` makes the DCR op give the same tensor, and the
lowering needs no channel permutation (``lower.depth_space``). A fused Relu/Relu6 acts per element, so it
permutes along.
"""
from __future__ import annotations

import numpy as np

from edgeopt.ir import Graph, Node
from edgeopt.pipeline.optimize import PASSES


def crd_channels(channels: int, block: int) -> np.ndarray:
    """For each DCR channel ``(i * b + j) * C_out + c``, the CRD channel ``c * b * b + i * b + j`` with its values."""
    c_out = channels // (block * block)
    return np.arange(channels).reshape(c_out, block * block).T.reshape(-1)


def _permutable_conv(node: Node, graph: Graph) -> Node | None:
    """The Conv whose output channels can be reordered for CRD DepthToSpace ``node``, else None."""
    if node.op != "DepthToSpace" or node.attrs.get("mode", "DCR") != "CRD":
        return None
    conv = graph.producer(node.inputs[0])
    if (conv is None or conv.op != "Conv" or int(conv.attrs.get("group", 1)) != 1
            or len(graph.consumers(node.inputs[0])) != 1 or graph.is_output(node.inputs[0])):
        return None
    params = [t for t in conv.inputs[1:] if t]
    shared = any(t in n.inputs for t in params for n in graph.nodes if n is not conv)
    if shared or not all(t in graph.initializers for t in params):
        return None
    return conv


@PASSES.register("depth_to_space_as_dcr")
def depth_to_space_as_dcr(graph: Graph) -> Graph:
    """``graph`` with each CRD DepthToSpace fed by a permutable Conv (see the module) as DCR."""
    renamed: dict[str, Node] = {}
    inits = dict(graph.initializers)
    for node in graph.nodes:
        conv = _permutable_conv(node, graph)
        if conv is None:
            continue
        order = crd_channels(graph.shape(node.inputs[0])[1], int(node.attrs["blocksize"]))
        for t in conv.inputs[1:3]:
            if t:
                inits[t] = np.ascontiguousarray(inits[t][order])
        renamed[node.name] = node.with_(attrs={"mode": "DCR"})
    if not renamed:
        return graph
    return graph.replace(nodes=tuple(renamed.get(n.name, n) for n in graph.nodes), initializers=inits)
