"""Mixed precision from the per-layer sensitivity: which layers to keep at higher precision, in which order.

The automatic recipe's last step (``workflows.recipe``) promotes the layers whose quantization alone
costs most (``pipeline.quantize.sensitivity``: the same numbers ``deploy --sensitivity`` reports), ``k`` = 1, 2,
4, ... at a time, until the accuracy budget is met. A layer is promoted to:

- ``"int16"`` activations (TFLite's 16x8 mode) when the profile allows 16-bit activations for its op type
  (``profile_rules.int16_allowed``), a 16x8 kernel exists here (``precision.int16_support``), and its
  activation is what hurts most, or float is not available (int16 activations leave its int8 weights as
  they are);
- else ``"float"``: a float island (``QuantizedGraph.float_nodes``), when some compute unit of the device
  runs every op the layer lowers to in float32 (``profile_runs_float``), and so every node promoted with it;
- else it is not a candidate.

A promotion unit is what keeping one tensor precise takes. For an activation, that is the layer, the
shared-scale ops right after it (pools, reshapes: their output keeps the layer's scale) and the readers of
that chain's output: a reader left int8 would read the value requantized to int8, and the precision would
be lost again (a 16x8 kernel reads int16 and writes int16; a float island's edge to an int8 op is int8).
For weights (kept in float), the layer alone. A unit's score is the lowest SQNR among the entries it fixes.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence, Set
from dataclasses import dataclass
from typing import Literal

from edgeopt.device_profiles.schema import DeviceProfile
from edgeopt.ir import Graph, Node
from edgeopt.pipeline.place import float_unit
from edgeopt.pipeline.quantize.spec import SHARED_SCALE_OPS
from edgeopt.pipeline.quantize.precision import int16_support
from edgeopt.pipeline.quantize.sensitivity import Kind, LayerSensitivity
from edgeopt.qprogram import CONVERSION_KINDS, QProgram

Target = Literal["int16", "float"]


@dataclass(frozen=True)
class Promotion:
    """One layer kept at higher precision: its node, the nodes promoted with it (``also``: the shared-scale
    chain after it and that chain's readers), the precision they get, and the sensitivity entry that ranks
    it (the lowest SQNR it fixes)."""

    node: str
    to: Target
    kind: Kind
    sqnr_db: float
    also: tuple[str, ...] = ()

    @property
    def nodes(self) -> tuple[str, ...]:
        return (self.node, *self.also)

    def to_json(self) -> dict:
        """The report.json entry (an infinite SQNR is written as null)."""
        return {"node": self.node, "to": self.to, "kind": self.kind,
                "sqnr_db": round(self.sqnr_db, 3) if math.isfinite(self.sqnr_db) else None,
                "with": list(self.also)}


def profile_runs_float(profile: DeviceProfile, program: QProgram) -> frozenset[str]:
    """The nodes of ``program`` that can be kept in float32 on ``profile``: some compute unit runs each op
    the node lowers to in float32 under that op's own rule (its dtypes and limits, as placement reads them:
    ``place.float_unit``), not only under the unit's defaults.

    Args:
        profile: the device.
        program: a lowered program of the graph (its ops name their node in ``QOp.source``; an int8 op is
            judged as its float32 form, which has the same kind, shapes and options).
    """
    layers = [op for op in program.ops if op.kind not in CONVERSION_KINDS]
    refused = {op.source for op in layers if float_unit(op, program, profile) is None}
    return frozenset(op.source for op in layers) - refused


def rank_promotions(graph: Graph, layers: Sequence[LayerSensitivity], *, int16_allowed: Callable[[str], bool],
                    float_allowed: bool | Set[str], base_plan: Mapping[str, str] | None = None) -> list[Promotion]:
    """The promotion candidates of ``graph``, most sensitive first.

    Args:
        graph: the float graph the sensitivity was measured on.
        layers: ``sensitivity.sensitivity_of``'s entries.
        int16_allowed: whether the device profile allows int16 activations for an ONNX op type.
        float_allowed: which nodes may be kept in float (``profile_runs_float``), or True / False for all.
        base_plan: the precision plan promotions start from: only its int8 nodes are promoted.

    Returns:
        One promotion per candidate layer, sorted by the SQNR it fixes (lowest first).
    """
    plan = base_plan or {}
    entries: dict[tuple[str, Kind], LayerSensitivity] = {(r.node, r.kind): r for r in layers}

    def in_float(*nodes: Node) -> bool:
        return all(n.name in float_allowed for n in nodes) if isinstance(float_allowed, Set) else float_allowed

    candidates = []
    for node in graph.nodes:
        if node.op in SHARED_SCALE_OPS or plan.get(node.name, "int8") != "int8":
            continue
        int16_ok = _int16_ok(node, graph, int16_allowed)
        chain = _followers(graph, node, plan, int16_allowed if int16_ok else None)
        activation = [entries[n.name, "activation"] for n in (node, *chain) if (n.name, "activation") in entries]
        weights = entries.get((node.name, "weights"))
        worst = min([*activation, *([weights] if weights else [])], key=lambda r: r.sqnr_db, default=None)
        if worst is None:
            continue
        # Kept in float, an activation takes its shared-scale chain and that chain's readers along.
        float_chain = _followers(graph, node, plan, None)
        float_group = (node, *float_chain, *_readers(graph, (node, *float_chain)[-1], plan))
        if int16_ok and activation and (worst.kind == "activation" or not in_float(node)):
            worst = min(activation, key=lambda r: r.sqnr_db)
            readers = [r for r in _readers(graph, (node, *chain)[-1], plan) if _int16_ok(r, graph, int16_allowed)]
            candidates.append(Promotion(node.name, "int16", "activation", worst.sqnr_db, _names(*chain, *readers)))
        elif worst.kind == "weights" and in_float(node):
            candidates.append(Promotion(node.name, "float", "weights", worst.sqnr_db))
        elif worst.kind == "activation" and in_float(*float_group):
            candidates.append(Promotion(node.name, "float", "activation", worst.sqnr_db, _names(*float_group[1:])))
    return sorted(candidates, key=lambda p: p.sqnr_db)


def promotion_plan(promotions: Sequence[Promotion]) -> dict[str, Target]:
    """``{node: precision}`` of ``promotions``, their other nodes included (a precision plan's entries); a
    node in two promotions gets the higher precision (float)."""
    plan: dict[str, Target] = {}
    for p in promotions:
        for name in p.nodes:
            plan[name] = "float" if "float" in (p.to, plan.get(name)) else p.to
    return plan


def _int16_ok(node: Node, graph: Graph, int16_allowed: Callable[[str], bool]) -> bool:
    return int16_allowed(node.op) and int16_support(node, graph) is None


def _readers(graph: Graph, node: Node, plan: Mapping[str, str]) -> list[Node]:
    """The int8 nodes (in ``plan``) reading the outputs of ``node``."""
    return [r for t in node.outputs for r in graph.consumers(t) if plan.get(r.name, "int8") == "int8"]


def _names(*nodes: Node) -> tuple[str, ...]:
    return tuple(dict.fromkeys(n.name for n in nodes))


def _followers(graph: Graph, node: Node, plan: Mapping[str, str],
               int16_allowed: Callable[[str], bool] | None) -> tuple[Node, ...]:
    """The chain of shared-scale nodes reading only ``node``'s output (then each other's), while int8 in
    ``plan`` and, when ``int16_allowed`` is given, able to run with int16 activations."""
    chain: list[Node] = []
    current = node
    while len(current.outputs) == 1:
        readers = graph.consumers(current.outputs[0])
        if len(readers) != 1 or graph.is_output(current.outputs[0]):
            break
        nxt = readers[0]
        dynamic = [t for t in nxt.inputs if t and t not in graph.initializers]
        if (nxt.op not in SHARED_SCALE_OPS or dynamic != [current.outputs[0]]
                or plan.get(nxt.name, "int8") != "int8"
                or (int16_allowed is not None and not _int16_ok(nxt, graph, int16_allowed))):
            break
        chain.append(nxt)
        current = nxt
    return tuple(chain)
