"""Batch-norm folding: Conv/Gemm followed by BatchNormalization becomes one Conv/Gemm.

With ``s = gamma / sqrt(var + eps)``: ``W' = W * s`` (per output channel) and
``b' = (b - mean) * s + beta``. Exact in real arithmetic; float rounding changes outputs by ~1e-6.
"""
from __future__ import annotations

import numpy as np

from edgeopt.ir import Graph, weight_out_axis
from edgeopt.pipeline.optimize import PASSES

FOLDABLE = {"Conv", "ConvTranspose", "Gemm"}


@PASSES.register("fold_batch_norm")
def fold_batch_norm(graph: Graph) -> Graph:
    """Fold every BatchNormalization that is the only consumer of a Conv/Gemm output with constant weights."""
    inits = dict(graph.initializers)
    tensors = dict(graph.tensors)
    nodes = list(graph.nodes)
    for bn in [n for n in graph.nodes if n.op == "BatchNormalization"]:
        producer = graph.producer(bn.inputs[0])
        if (
            producer is None
            or producer.op not in FOLDABLE
            or len(graph.consumers(bn.inputs[0])) != 1
            or graph.is_output(bn.inputs[0])
            or not all(t in inits for t in producer.inputs[1:] + bn.inputs[1:])
            or (producer.op == "Gemm" and producer.attrs.get("transB", 0) != 1)
            or (producer.op == "ConvTranspose" and producer.attrs.get("group", 1) != 1)
        ):
            continue
        gamma, beta, mean, var = (inits[t].astype(np.float64) for t in bn.inputs[1:5])
        scale = gamma / np.sqrt(var + bn.attrs.get("epsilon", 1e-5))
        weight = inits[producer.inputs[1]].astype(np.float64)
        shape = [1] * weight.ndim
        shape[weight_out_axis(producer)] = -1
        bias = inits[producer.inputs[2]].astype(np.float64) if len(producer.inputs) > 2 else 0.0
        w_name, b_name = f"{producer.name}.weight_folded", f"{producer.name}.bias_folded"
        inits[w_name] = (weight * scale.reshape(shape)).astype(np.float32)
        inits[b_name] = ((bias - mean) * scale + beta).astype(np.float32)
        # The statistics of the folded output (beta, |gamma|) feed high-bias absorption and analytical bias correction.
        stats = {"bn_beta": tuple(map(float, beta)), "bn_gamma": tuple(map(float, np.abs(gamma)))}
        fused = producer.with_(inputs=(producer.inputs[0], w_name, b_name), outputs=bn.outputs, attrs=stats)
        nodes[nodes.index(producer)] = fused
        nodes.remove(bn)
        del tensors[bn.inputs[0]]
    return graph.replace(nodes=tuple(nodes), initializers=inits, tensors=tensors).without_unused_initializers()


