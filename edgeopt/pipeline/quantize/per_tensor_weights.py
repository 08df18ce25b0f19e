"""Per-tensor weight quantization: one scale for all of a layer's weights (the setting CLE was made for).

TFLite's int8 spec asks for per-channel weights in CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED;
per-tensor weights are still what many accelerators (and older toolchains) use, and where cross-layer
equalization shows its effect. The encoding keeps its per-channel form with every channel's scale set
to ``max|W| / 127`` of the whole tensor: numerically per-tensor, so lowering, both writers and the
executor run it unchanged.
"""
from __future__ import annotations

import numpy as np

from edgeopt.ir import QParams, QuantizedGraph
from edgeopt.pipeline.quantize.encodings import bias_qparams


def per_tensor_weights(qgraph: QuantizedGraph) -> QuantizedGraph:
    """``qgraph`` with each per-channel int8 weight encoding replaced by a single scale, biases re-encoded."""
    g, enc = qgraph.graph, dict(qgraph.encodings)
    for node in g.nodes:
        if len(node.inputs) < 2 or node.inputs[1] not in g.initializers:
            continue
        w_q = enc.get(node.inputs[1])
        if w_q is None or not w_q.per_channel or w_q.dtype != "int8":
            continue
        qmax = w_q.qmax
        absmax = float(np.abs(g.initializers[node.inputs[1]]).max())
        scale = np.full_like(w_q.scale, absmax / qmax if absmax > 0 else 1.0)
        enc[node.inputs[1]] = QParams(scale, w_q.zero_point, "int8", axis=w_q.axis)
        if len(node.inputs) > 2 and node.inputs[2] in enc and node.inputs[0] in enc:
            enc[node.inputs[2]] = bias_qparams(enc[node.inputs[0]], enc[node.inputs[1]])
    return QuantizedGraph(graph=g, encodings=enc)
