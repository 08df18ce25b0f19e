"""Rewrite divisions by constants and squares as multiplications, which lower to int8 MUL.

``Div(x, c)`` with a constant ``c`` becomes ``Mul(x, 1 / c)``, the reciprocal computed in float32, as
TensorFlow's converter rewrites a division by a constant (TFLite's DIV has no int8 kernel). Exporters
write it for attention's ``1 / sqrt(d)`` scale and GELU's ``x / sqrt(2)`` when no Gelu fusion applies.
``Pow(x, 2)`` becomes ``Mul(x, x)`` (MUL of one int8 activation by itself). Both keep the node's name
and output, so encodings and reports still name the source node. Run after ``fuse_layer_norm`` and
``fuse_gelu``, whose patterns read the Div and Pow forms.
"""
from __future__ import annotations

import numpy as np

from edgeopt.ir import Graph
from edgeopt.pipeline.optimize import PASSES


@PASSES.register("div_by_constant_as_mul")
def div_by_constant_as_mul(graph: Graph) -> Graph:
    """``graph`` with every ``Div(x, constant float)`` of an activation ``x`` as ``Mul(x, 1 / constant)``."""
    inits = dict(graph.initializers)
    nodes = list(graph.nodes)
    for i, node in enumerate(nodes):
        if node.op != "Div" or node.inputs[0] in graph.initializers:
            continue
        divisor = graph.initializers.get(node.inputs[1])
        if divisor is None or divisor.dtype != np.float32 or not np.all(divisor != 0):
            continue
        name = f"{node.name}.reciprocal"
        inits[name] = (np.float32(1.0) / divisor).astype(np.float32)
        nodes[i] = node.with_(op="Mul", inputs=(node.inputs[0], name))
    if len(inits) == len(graph.initializers):
        return graph
    return graph.replace(nodes=tuple(nodes), initializers=inits).without_unused_initializers()


@PASSES.register("square_as_mul")
def square_as_mul(graph: Graph) -> Graph:
    """``graph`` with every ``Pow(x, 2)`` of an activation ``x`` as ``Mul(x, x)``."""
    nodes = list(graph.nodes)
    changed = False
    for i, node in enumerate(nodes):
        exponent = graph.initializers.get(node.inputs[1]) if node.op == "Pow" else None
        if exponent is None or exponent.size != 1 or float(exponent.reshape(())) != 2.0:
            continue
        nodes[i] = node.with_(op="Mul", inputs=(node.inputs[0], node.inputs[0]))
        changed = True
    if not changed:
        return graph
    return graph.replace(nodes=tuple(nodes)).without_unused_initializers()
