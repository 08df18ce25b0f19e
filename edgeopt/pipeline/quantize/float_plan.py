"""Mixed precision in float: the nodes a precision plan keeps in float32 (``"float"`` entries).

A plan (``quantize.precision``) maps node names to ``"int8"``, ``"int16"`` or ``"float"``. The integer
entries are realised by ``apply_precision``; a ``"float"`` node keeps int8 encodings on its inputs and
outputs (where it meets integer ops, at the island's QUANTIZE/DEQUANTIZE) and is named in
``QuantizedGraph.float_nodes``, which the lowering turns into a float island (``lower.float_island``)
and the QDQ writer leaves unquantized. Use it on ``apply_precision``'s result:
``keep_in_float(apply_precision(qgraph, stats, plan), plan)``. ``float_node_names`` says which nodes of a
quantized graph run in float32 islands (read by the lowering and the QDQ writer).

Refinements of the int8 graph change its float weights for int8's sake: bias correction subtracts the
mean error of the int8 weights from each bias, AdaRound replaces each weight by its chosen grid values.
A node sent to float after them must not keep that state (a float layer with a bias corrected for
int8 weights it no longer has is off by that correction): ``with_float_weights`` gives the float nodes
back the constant operands of the float graph the refinements started from.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

from edgeopt.ir import Graph, QuantizedGraph
from edgeopt.pipeline.quantize.spec import TABLE_OPS


def float_plan_nodes(plan: Mapping[str, str]) -> frozenset[str]:
    """The node names ``plan`` keeps in float32."""
    return frozenset(name for name, dtype in plan.items() if dtype == "float")


def keep_in_float(qgraph: QuantizedGraph, plan: Mapping[str, str] | Iterable[str]) -> QuantizedGraph:
    """``qgraph`` with the ``"float"`` nodes of ``plan`` (or the node names given) added to its float nodes.

    Args:
        qgraph: a quantized graph (after ``apply_precision``, which keeps node names).
        plan: a precision plan, or node names to keep in float.

    Returns:
        ``qgraph`` itself when nothing is added; else a copy with the larger ``float_nodes``.
    """
    names = float_plan_nodes(plan) if isinstance(plan, Mapping) else frozenset(plan)
    if names <= qgraph.float_nodes:
        return qgraph
    return QuantizedGraph(qgraph.graph, qgraph.encodings, qgraph.float_nodes | names)


def with_float_weights(qgraph: QuantizedGraph, graph: Graph) -> QuantizedGraph:
    """``qgraph`` with each of its float nodes reading the constant operands (weights, biases) that the
    node of the same name has in ``graph``, the float graph before any int8-only refinement.

    Args:
        qgraph: a quantized graph whose ``float_nodes`` are set (``keep_in_float``), possibly bias-corrected
            or AdaRounded.
        graph: the float graph ``qgraph`` was quantized from (after the float passes such as equalization,
            which keep the float function).

    Returns:
        ``qgraph`` itself when no float node's constants differ; else a copy whose float nodes read the
        float graph's constants (added to its initializers; the int8-refined ones they replace are dropped
        where nothing else reads them).
    """
    originals = {n.name: n for n in graph.nodes}
    g = qgraph.graph
    inits, enc, nodes, changed = dict(g.initializers), dict(qgraph.encodings), [], False
    for node in g.nodes:
        original = originals.get(node.name)
        if node.name not in qgraph.float_nodes or original is None or original.op != node.op \
                or len(original.inputs) != len(node.inputs):
            nodes.append(node)
            continue
        inputs = list(node.inputs)
        for i, (mine, theirs) in enumerate(zip(node.inputs, original.inputs)):
            if mine not in g.initializers or theirs not in graph.initializers:
                continue
            value = graph.initializers[theirs]
            if mine == theirs and np.array_equal(g.initializers[mine], value):
                continue
            # AdaRound keeps a weight's name and changes its values: the float value needs a name of its own.
            name = theirs if theirs not in g.initializers or np.array_equal(g.initializers[theirs], value) \
                else f"{theirs}/float"
            inputs[i], inits[name] = name, value
            if mine in qgraph.encodings:  # unused in float, but the lowering's int8 half may read them
                enc[name] = qgraph.encodings[mine]
        changed |= tuple(inputs) != node.inputs
        nodes.append(node.with_(inputs=tuple(inputs)))
    if not changed:
        return qgraph
    new_graph = g.replace(nodes=tuple(nodes), initializers=inits).without_unused_initializers()
    return QuantizedGraph(new_graph, enc, qgraph.float_nodes)


# Ops TFLite has no int8 kernel for: always a float island (``lower.float_island``). A Div left after
# ``div_by_constant_as_mul`` divides by a computed tensor (TFLite's DIV runs float32, int32 and uint8 only).
# Where too: it selects between a mask's 0 and finfo.min, which no int8 encoding holds (``mask_float_nodes``).
FLOAT_ISLAND_OPS = frozenset({"LayerNormalization", "Gelu", "Div", "Sqrt", "Where"})


def float_node_names(qgraph: QuantizedGraph) -> frozenset[str]:
    """The nodes of ``qgraph`` that run in float islands: its ``float_nodes`` and every node of ``FLOAT_ISLAND_OPS``."""
    return qgraph.float_nodes | {n.name for n in qgraph.graph.nodes if n.op in FLOAT_ISLAND_OPS}


# What reads an additive attention mask: the scores it is added to are normalised by a softmax.
MASK_READERS = frozenset({"Softmax"})


def mask_float_nodes(graph: Graph) -> frozenset[str]:
    """The nodes that compute real values from the model's integer inputs alone (an attention mask turned
    into floats: Cast, ``(1 - m) * finfo.min``, ``Where(m, 0, finfo.min)``), the nodes that combine such a
    value with an activation (the scores' Add, an embedding's Mul), and a Softmax reading such a sum.

    They run in a float island. An additive mask holds ``finfo(float32).min`` (-3.4e38) where a token is
    masked: an int8 encoding spanning that range has a scale near 1.3e36, so every real score in the sum
    would round to the zero point and the softmax would see nothing but the mask. In float32 the masked
    scores stay -3.4e38 and the SOFTMAX gives them exact zeros; its output returns to int8 at TFLite's
    fixed 1/256 encoding. Integer and boolean nodes before the first float value stay integer ops, and
    an embedding lookup (a Gather of a constant float table) makes activations, not a mask.
    """
    derived = {t.name for t in graph.inputs if not t.is_float} | set(graph.initializers)
    is_float = {name: info.is_float for name, info in graph.tensors.items()}
    mask: set[str] = set()
    for node in graph.nodes:
        if node.op in TABLE_OPS and node.inputs[0] in graph.initializers:
            continue  # an embedding lookup: its rows are the model's activations, not a mask
        if all(t in derived for t in node.inputs if t):
            derived.update(node.outputs)
            if any(is_float.get(out, True) for out in node.outputs if out):
                mask.add(node.name)
    mask_values = {out for node in graph.nodes if node.name in mask for out in node.outputs}
    mixing = {node.name: node for node in graph.nodes
              if node.name not in mask and any(t in mask_values for t in node.inputs)}
    readers = {reader.name for node in mixing.values() for out in node.outputs
               for reader in graph.consumers(out) if reader.op in MASK_READERS}
    return frozenset(mask | set(mixing) | readers)
