"""Rewrite a Gather of an activation at constant, evenly spaced indices as Slice (+ Reshape).

Exporters write ``x[:, 0]`` (a ViT's class token), ``q, k, v = qkv[0], qkv[1], qkv[2]`` (a fused QKV
projection) and ``unbind`` as ``Gather(x, i)`` with a constant scalar (or one-element) index, and the
dynamo exporter writes some ``as_strided`` views as ``Gather(x, arange(n).reshape(...))``. When the
flattened indices form an arithmetic progression ``s, s + t, ..., s + (k - 1) t`` (``t != 0``) the
Gather is ``Slice(x, s, s + k t, step t)`` along its axis, followed by a ``Reshape`` to the Gather's
output shape when the index's shape is not ``[k]`` (a scalar index drops the axis). Both lower to
TFLite STRIDED_SLICE and RESHAPE, data movement that keeps the int8 encoding. A Gather whose indices
are computed or irregular, or whose data are integers (token ids, masks), is left alone (an embedding
lookup is a GATHER of a constant table).
"""
from __future__ import annotations

import numpy as np

from edgeopt.ir import Graph, Node, TensorInfo
from edgeopt.pipeline.optimize import PASSES


def _progression(indices: np.ndarray, size: int) -> tuple[int, int] | None:
    """(start, step) when ``indices`` (negative ones counted from ``size``) are evenly spaced, else None."""
    flat = np.where(indices < 0, indices + size, indices).astype(np.int64).ravel()
    if flat.size == 0 or flat.min() < 0 or flat.max() >= size:
        return None
    step = int(flat[1] - flat[0]) if flat.size > 1 else 1
    if step == 0 or not np.array_equal(flat, flat[0] + step * np.arange(flat.size)):
        return None
    return int(flat[0]), step


@PASSES.register("gather_as_slice")
def gather_as_slice(graph: Graph) -> Graph:
    """``graph`` with each Gather of an activation at constant evenly spaced indices as Slice [→ Reshape]."""
    nodes: list[Node] = []
    inits = dict(graph.initializers)
    tensors = dict(graph.tensors)
    for node in graph.nodes:
        indices = graph.initializers.get(node.inputs[1]) if node.op == "Gather" else None
        x = node.inputs[0]
        if (indices is None or x in graph.initializers or not np.issubdtype(indices.dtype, np.integer)
                or graph.tensors[x].dtype != "float32"):
            nodes.append(node)
            continue
        shape = graph.shape(x)
        axis = int(node.attrs.get("axis", 0)) % len(shape)
        progression = _progression(indices, shape[axis])
        if progression is None:
            nodes.append(node)
            continue
        start, step = progression
        end = start + step * indices.size
        stem = node.name
        args = {".starts": start, ".ends": end if end >= 0 else -shape[axis] - 1, ".axes": axis, ".steps": step}
        for suffix, value in args.items():
            inits[stem + suffix] = np.array([value], np.int64)
        y = node.outputs[0]
        sliced_shape = shape[:axis] + (indices.size,) + shape[axis + 1:]
        sliced = y if sliced_shape == graph.shape(y) else f"{stem}.sliced"
        nodes.append(Node("Slice", stem, (x, *(stem + s for s in args)), (sliced,)))
        if sliced != y:
            tensors[sliced] = TensorInfo(sliced, sliced_shape, graph.tensors[x].dtype)
            inits[stem + ".shape"] = np.array(graph.shape(y), np.int64)
            nodes.append(Node("Reshape", stem + ".reshape", (sliced, stem + ".shape"), (y,)))
    if len(nodes) == len(graph.nodes) and len(inits) == len(graph.initializers):
        return graph
    return graph.replace(nodes=tuple(nodes), initializers=inits, tensors=tensors).without_unused_initializers()
