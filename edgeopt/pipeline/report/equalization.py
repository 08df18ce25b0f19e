"""The report's ``equalization`` section: per-channel weight ranges of the layers cross-layer equalization
changed most, before and after (the plot AIMET's users know best: CLE narrows the spread of channel ranges
that per-tensor quantization has to cover)."""
from __future__ import annotations

import numpy as np

from edgeopt.ir import Graph, Node, weight_out_axis

SHOWN_LAYERS = 4
WEIGHTED = ("Conv", "Gemm", "MatMul", "ConvTranspose")


def equalization_section(before: Graph, after: Graph, adopted: bool, shown: int = SHOWN_LAYERS) -> dict:
    """Per output channel min and max of each weight ``after`` changed, for the ``shown`` layers whose
    channels it rescaled most (mean absolute log ratio of each channel's largest ``|w|``), in graph order;
    with each layer's ``spread`` before and after: largest channel ``|w|`` over the median one (robust to the
    dead channels a model may have, which would make a largest-over-smallest ratio meaningless).

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
        (b, b_abs), (a, a_abs) = _ranges(node, w0), _ranges(twin, w1)
        alive = (b_abs > 0) & (a_abs > 0)
        score = float(np.mean(np.abs(np.log(a_abs[alive] / b_abs[alive])))) if alive.any() else 0.0
        changed.append((score, node.name, b, a))
    order = {n.name: i for i, n in enumerate(before.nodes)}
    top = sorted(sorted(changed, key=lambda c: -c[0])[:shown], key=lambda c: order[c[1]])
    return {"adopted": adopted, "changed_layers": len(changed),
            "layers": [{"node": name, "before": b, "after": a} for _, name, b, a in top]}


def _ranges(node: Node, w: np.ndarray) -> tuple[dict, np.ndarray]:
    """The report entry of one weight (per-channel min, max, spread) and its per-channel largest ``|w|``."""
    axis = weight_out_axis(node)
    flat = np.moveaxis(np.asarray(w, np.float64), axis, 0).reshape(w.shape[axis], -1)
    lo, hi = flat.min(axis=1), flat.max(axis=1)
    absmax = np.maximum(-lo, hi)
    median = float(np.median(absmax))
    spread = float(absmax.max() / median) if median > 0 else 1.0
    return {"min": [_short(v) for v in lo], "max": [_short(v) for v in hi], "spread": round(spread, 4)}, absmax


def _short(v: float) -> float:
    return float(f"{v:.4g}")
