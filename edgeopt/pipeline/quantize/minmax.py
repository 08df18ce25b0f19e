"""Min/max post-training quantization: one encoding per tensor from the calibration range.

Ops that only move data (and average pooling, whose TFLite kernel requires it) share their input's
encoding, so the int8 program runs them without requantizing, as the TFLite spec demands. Ops whose
TFLite kernels fix the output encoding (softmax, logistic, tanh) take it from ``spec.FIXED_OUTPUT``.
"""
from __future__ import annotations

from collections.abc import Mapping

from edgeopt.errors import InternalError
from edgeopt.ir import Graph, QParams, QuantizedGraph, weight_out_axis
from edgeopt.pipeline.calibrate import TensorStats
from edgeopt.pipeline.quantize.encodings import activation_qparams, bias_qparams, weight_qparams
from edgeopt.pipeline.quantize.shared_ranges import unify_concat_ranges
from edgeopt.pipeline.quantize.spec import (
    CONSTANT_OPERAND_OPS,
    FIXED_OUTPUT,
    SHARED_OPERAND_OPS,
    SHARED_SCALE_OPS,
    TABLE_OPS,
    WEIGHTED_OPS,
)


def quantize_minmax(graph: Graph, stats: Mapping[str, TensorStats], *, weight_bits: int = 8,
                    weight_encodings: Mapping[str, QParams] | None = None,
                    strict_symmetric: bool = True) -> QuantizedGraph:
    """Encodings for every activation, weight and bias of ``graph`` from min/max ``stats``.

    ``weight_bits``: bit width of the Conv/Gemm/MatMul weights (stored as int8 either way).
    ``strict_symmetric``: weights in ``[-127, 127]`` (TFLite's spec), else ``[-128, 127]`` (a profile's
    ``strict_symmetric = false``, ``encodings.weight_qparams``).
    ``weight_encodings``: fixed encodings for some weights (AdaRound's, whose weights are already on them).
    Weight scales are the weights' own: ``pipeline.target.Target.quantize`` widens them where a bias would
    not fit int32, as TFLite's converter does, after the profile's per-tensor rule and the precision plan.

    Raises:
        InternalError: a tensor has no statistics (calibration and graph disagree).
    """
    stats = unify_concat_ranges(graph, stats, SHARED_SCALE_OPS, FIXED_OUTPUT)
    enc: dict[str, QParams] = {}
    for t in graph.inputs:
        if t.is_float:  # token ids and masks stay integers
            enc[t.name] = _from_stats(stats, t.name)
    for node in graph.nodes:
        if all(out in graph.tensors and not graph.tensors[out].is_float for out in node.outputs if out):
            continue  # integer and boolean results (mask arithmetic, indices) carry no encoding
        if node.op in TABLE_OPS and node.inputs[0] in graph.initializers:
            table = graph.initializers[node.inputs[0]]
            enc[node.inputs[0]] = activation_qparams(table.min(), table.max())
        if node.op in SHARED_SCALE_OPS and node.inputs[0] in enc:
            for out in node.outputs:
                enc[out] = enc[node.inputs[0]]
        elif node.op in FIXED_OUTPUT:
            for out in node.outputs:
                enc[out] = FIXED_OUTPUT[node.op]
        else:
            for out in node.outputs:
                enc[out] = _from_stats(stats, out)
        if node.op in SHARED_OPERAND_OPS and node.inputs[0] in enc:
            for name in filter(graph.initializers.__contains__, node.inputs[1:]):
                enc[name] = enc[node.inputs[0]]
        if node.op in CONSTANT_OPERAND_OPS:
            for name in filter(graph.initializers.__contains__, node.inputs):
                enc[name] = activation_qparams(graph.initializers[name].min(), graph.initializers[name].max())
        if node.op in WEIGHTED_OPS and node.inputs[1] in graph.initializers:
            w_name = node.inputs[1]
            fixed_w = (weight_encodings or {}).get(w_name)
            enc[w_name] = fixed_w or weight_qparams(graph.initializers[w_name], weight_out_axis(node), weight_bits,
                                                    strict_symmetric)
            if len(node.inputs) > 2 and node.inputs[2]:
                enc[node.inputs[2]] = bias_qparams(enc[node.inputs[0]], enc[w_name])
    return QuantizedGraph(graph=graph, encodings=enc)


def _from_stats(stats: Mapping[str, TensorStats], name: str) -> QParams:
    if name not in stats:
        raise InternalError(f"no calibration statistics for tensor '{name}'")
    s = stats[name]
    return activation_qparams(s.min, s.max)
