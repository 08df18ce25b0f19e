"""One range for every tensor that a concatenation ties together, before encodings are chosen.

TFLite's int8 CONCATENATION copies raw values, so its inputs and output must share one encoding, and
ops that only move data (``SHARED_SCALE_OPS``) pass their input's encoding on unchanged. Tensors
linked by either rule form a group (union-find over the graph); every group that contains a Concat
gets the union of its members' calibration ranges, so ``quantize_minmax`` gives all of them the same
encoding and the concat's producers write it directly: no requantizing op is needed.

Choices:
    * A graph input in such a group takes the group's (wider) range: the program's input encoding is
      the one callers quantize with, so that is exact, at some resolution lost on the input.
    * A tensor feeding two concats (or a concat feeding a concat) merges their groups into one.
    * A tensor whose encoding is fixed by its producer (``FIXED_OUTPUT``, e.g. a Sigmoid, directly or
      through data movement) cannot widen: it stays out of the group, its range widens the group's, and
      the lowering requantizes it to the concat's encoding with an int8 QUANTIZE before the concat, as
      TensorFlow's converter does (YOLOv8's detection head concatenates box logits with class sigmoids).
"""
from __future__ import annotations

from collections.abc import Mapping, Set

from edgeopt.ir import Graph, QParams
from edgeopt.pipeline.calibrate import TensorStats


def unify_concat_ranges(graph: Graph, stats: Mapping[str, TensorStats], shared_ops: Set[str],
                        fixed: Mapping[str, QParams]) -> dict[str, TensorStats]:
    """``stats`` with every member of a concat's group set to the group's union range.

    Args:
        graph: the float graph.
        stats: calibration ranges of its activations.
        shared_ops: ONNX ops whose outputs take their first input's encoding.
        fixed: ONNX op -> the output encoding its int8 kernel requires.

    Returns:
        A new mapping; tensors outside concat groups keep their ranges.
    """
    parent: dict[str, str] = {}

    def find(t: str) -> str:
        parent.setdefault(t, t)
        while parent[t] != t:
            parent[t] = parent[parent[t]]
            t = parent[t]
        return t

    def union(a: str, b: str) -> None:
        parent[find(a)] = find(b)

    producers = {out: node for node in graph.nodes for out in node.outputs}

    def pinned(t: str) -> bool:
        """Whether ``t``'s encoding is fixed: made by a FIXED_OUTPUT op, directly or through data movement."""
        while t in producers and producers[t].op in shared_ops and producers[t].op != "Concat":
            t = producers[t].inputs[0]
        return t in producers and producers[t].op in fixed

    concats = []
    requantized: dict[str, list[str]] = {}  # concat output -> inputs it requantizes
    for node in graph.nodes:
        if node.op == "Concat":
            concats.append(node)
            for t in node.inputs:
                if t and t not in graph.initializers:
                    if pinned(t):
                        requantized.setdefault(node.outputs[0], []).append(t)
                    else:
                        union(t, node.outputs[0])
        elif node.op in shared_ops and node.inputs and node.inputs[0] not in graph.initializers:
            for out in node.outputs:
                union(node.inputs[0], out)
    if not concats:
        return dict(stats)
    roots = {find(n.outputs[0]): n for n in concats}
    members: dict[str, list[str]] = {}
    for t in parent:
        if find(t) in roots and t in stats:
            members.setdefault(find(t), []).append(t)
    out = dict(stats)
    for root, names in members.items():
        group = [n for n in concats if find(n.outputs[0]) == root]
        # Constant inputs are quantized with the group's encoding too: their values widen the range, and so
        # do the requantized inputs' values.
        consts = [graph.initializers[t] for n in group for t in n.inputs if t in graph.initializers]
        extra = [stats[t] for n in group for t in requantized.get(n.outputs[0], []) if t in stats]
        lo = min([stats[t].min for t in names] + [float(c.min()) for c in consts if c.size] + [e.min for e in extra])
        hi = max([stats[t].max for t in names] + [float(c.max()) for c in consts if c.size] + [e.max for e in extra])
        for t in names:
            out[t] = TensorStats(lo, hi)
    return out
