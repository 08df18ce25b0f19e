"""Which nodes of a quantized graph run in float32 islands (read by the lowering and the QDQ writer)."""
from __future__ import annotations

from edgeopt.ir import QuantizedGraph

# Ops TFLite has no int8 kernel for: always a float island (``lower.float_island``).
FLOAT_ISLAND_OPS = frozenset({"LayerNormalization", "Gelu"})


def float_node_names(qgraph: QuantizedGraph) -> frozenset[str]:
    """The nodes of ``qgraph`` that run in float islands: its ``float_nodes`` and every LayerNorm and Gelu."""
    return qgraph.float_nodes | {n.name for n in qgraph.graph.nodes if n.op in FLOAT_ISLAND_OPS}
