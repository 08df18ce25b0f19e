"""The report's ``equalization`` section: per-channel weight ranges of the layers cross-layer equalization
changed most, before and after (the plot AIMET's users know best: CLE narrows the spread of channel ranges
that per-tensor quantization has to cover)."""
from __future__ import annotations

import math

import numpy as np

from edgeopt.ir import Graph, Node, weight_out_axis

SHOWN_LAYERS = 4
WEIGHTED = ("Conv", "Gemm", "MatMul", "ConvTranspose")


def equalization_section(before: Graph, after: Graph, adopted: bool, shown: int = SHOWN_LAYERS) -> dict:
    """Per output channel min and max of each weight ``after`` changed, for the ``shown`` layers whose range
    spread (largest channel range over smallest) changed most (in log ratio), in graph order.

    Args:
        before: the float graph equalization started from.
        after: the equalized graph (its nodes keep their names; weights are new initializers).
        adopted: whether the shipped program builds on the equalized graph.
        shown: at most this many layers.
    """
    after_nodes = {n.name: n for n in after.nodes}
    changed = []
    for node in before.nodes:
        twin = after_nodes.get(node.name)
        if node.op not in WEIGHTED or twin is None or len(node.inputs) < 2 or len(twin.inputs) < 2:
            continue
        w0, w1 = before.initializers.get(node.inputs[1]), after.initializers.get(twin.inputs[1])
        if w0 is None or w1 is None or w0.shape != w1.shape or np.array_equal(w0, w1):
            continue
        b, a = _ranges(node, w0), _ranges(twin, w1)
        changed.append((abs(math.log(b["spread"] / a["spread"])), node.name, b, a))
    order = {n.name: i for i, n in enumerate(before.nodes)}
    top = sorted(sorted(changed, key=lambda c: -c[0])[:shown], key=lambda c: order[c[1]])
    return {"adopted": adopted, "changed_layers": len(changed),
            "layers": [{"node": name, "before": b, "after": a} for _, name, b, a in top]}


def _ranges(node: Node, w: np.ndarray) -> dict:
    axis = weight_out_axis(node)
    flat = np.moveaxis(np.asarray(w, np.float64), axis, 0).reshape(w.shape[axis], -1)
    lo, hi = flat.min(axis=1), flat.max(axis=1)
    width = hi - lo
    positive = width[width > 0]
    spread = float(positive.max() / positive.min()) if len(positive) else 1.0
    return {"min": [_short(v) for v in lo], "max": [_short(v) for v in hi], "spread": round(spread, 4)}


def _short(v: float) -> float:
    return float(f"{v:.4g}")
