"""Mixed precision in float: the nodes a precision plan keeps in float32 (``"float"`` entries).

A plan (``quantize.precision``) maps node names to ``"int8"``, ``"int16"`` or ``"float"``. The integer
entries are realised by ``apply_precision``; a ``"float"`` node keeps int8 encodings on its inputs and
outputs (where it meets integer ops, at the island's QUANTIZE/DEQUANTIZE) and is named in
``QuantizedGraph.float_nodes``, which the lowering turns into a float island (``lower.float_island``)
and the QDQ writer leaves unquantized. Use it on ``apply_precision``'s result:
``keep_in_float(apply_precision(qgraph, stats, plan), plan)``. ``float_node_names`` says which nodes of a
quantized graph run in float32 islands (read by the lowering and the QDQ writer).
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping

from edgeopt.ir import QuantizedGraph


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


# Ops TFLite has no int8 kernel for: always a float island (``lower.float_island``). A Div left after
# ``div_by_constant_as_mul`` divides by a computed tensor (TFLite's DIV runs float32, int32 and uint8 only).
FLOAT_ISLAND_OPS = frozenset({"LayerNormalization", "Gelu", "Div", "Sqrt"})


def float_node_names(qgraph: QuantizedGraph) -> frozenset[str]:
    """The nodes of ``qgraph`` that run in float islands: its ``float_nodes`` and every node of ``FLOAT_ISLAND_OPS``."""
    return qgraph.float_nodes | {n.name for n in qgraph.graph.nodes if n.op in FLOAT_ISLAND_OPS}
