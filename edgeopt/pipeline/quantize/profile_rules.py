"""A device profile's quantization rules applied to the quantized graph: the precisions its kernels allow
per op type (``supported_kernels``) and per-channel or per-tensor weights (``per_channel_quantization``).

``restrict_plan`` sits between ``precision.precision_plan`` and ``precision.apply_precision``: a node
keeps int16 activations only when the profile lists a kernel with 16-bit activations for its ONNX op
type. ``profile_weights`` runs after ``quantize_minmax``: the weights of every op type whose rule says
``per_channel_quantization = false`` get one scale for the whole tensor, written to the .tflite as one scale.
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from edgeopt.device_profiles.quantization import Quantization
from edgeopt.errors import UnsupportedOpError
from edgeopt.ir import Graph, QParams, QuantizedGraph
from edgeopt.pipeline.quantize.encodings import bias_qparams
from edgeopt.pipeline.quantize.precision import ActivationDtype, PrecisionPlan


def int16_allowed(rules: Quantization, op_type: str) -> bool:
    """Whether the profile has a kernel with 16-bit activations for ONNX op type ``op_type``."""
    return any(k.activation == 16 for k in rules.kernels(op_type))


def restrict_plan(graph: Graph, plan: PrecisionPlan, rules: Quantization, profile: str,
                  overrides: Mapping[str, ActivationDtype] | None = None) -> PrecisionPlan:
    """``plan`` with int16 kept only on nodes whose op type the profile allows int16 activations for.

    Args:
        graph: the float graph the plan is for.
        plan: ``{node name: "int8" | "int16"}`` from ``precision_plan``.
        rules: the profile's quantization rules.
        profile: the profile's name, for the error message.
        overrides: the user's per-node / per-op-type overrides: an explicit int16 request the profile
            forbids is an error rather than silently dropped.

    Raises:
        UnsupportedOpError: an override asks for int16 where the profile's ``supported_kernels`` have no
            16-bit activation kernel.
    """
    overrides = overrides or {}
    restricted = dict(plan)
    for node in graph.nodes:
        if plan.get(node.name) != "int16" or int16_allowed(rules, node.op):
            continue
        if overrides.get(node.name, overrides.get(node.op)) == "int16":
            where = f"op_type.{node.op}" if node.op in rules.op_type else "defaults"
            raise UnsupportedOpError(node.op, node.name, f"int16 activations requested, but {profile}'s "
                                     f"quantization.{where}.supported_kernels have no 16-bit activation kernel")
        restricted[node.name] = "int8"
    return restricted


def profile_weights(qgraph: QuantizedGraph, rules: Quantization) -> QuantizedGraph:
    """``qgraph`` with per-tensor weights (one scale, ``axis`` None) on the ops whose rule is
    ``per_channel_quantization = false``, their biases re-encoded to match.

    The tensor's scale is the largest of its channels' scales, so the weight range and bit width
    ``quantize_minmax`` chose for the widest channel are kept (a channel of zeros, whose scale is a
    placeholder, does not count). Returns ``qgraph`` itself when every op keeps per-channel weights.
    """
    g, enc = qgraph.graph, dict(qgraph.encodings)
    changed = False
    for node in g.nodes:
        if rules.per_channel(node.op) or len(node.inputs) < 2 or node.inputs[1] not in g.initializers:
            continue
        w_name = node.inputs[1]
        w_q = enc.get(w_name)
        if w_q is None or not w_q.per_channel:
            continue
        w = g.initializers[w_name]
        nonzero = np.abs(w).max(axis=tuple(i for i in range(w.ndim) if i != w_q.axis)) > 0
        scale = float(w_q.scale[nonzero].max()) if nonzero.any() else 1.0
        enc[w_name] = QParams(np.float32(scale), 0, w_q.dtype)
        changed = True
        if len(node.inputs) > 2 and node.inputs[2] in enc and node.inputs[0] in enc:
            enc[node.inputs[2]] = bias_qparams(enc[node.inputs[0]], enc[w_name])
    return QuantizedGraph(graph=g, encodings=enc) if changed else qgraph
