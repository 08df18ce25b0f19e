"""The rest of a device profile's quantization rules: weight symmetry and bit widths, symmetric activations,
model input/output quantizers and supergroups, checked against what a TFLite int8/16x8 program can carry.

* Weights (``params.is_symmetric``): TFLite's int8 and 16x8 kernels take symmetric weights (zero point 0)
  only, so a profile asking for asymmetric weights is refused with the key that asks for it.
* ``strict_symmetric``: ``true`` keeps weights in TFLite's ``[-127, 127]``; ``false`` (AIMET's HTP
  setting) lets the most negative weight use -128 (``encodings.weight_qparams``, ``strict=False``).
* Weight bit width: a request for W4 (``quantize_minmax(weight_bits=4)``) needs a ``supported_kernels``
  entry with ``param = 4`` for the node's op type at its activation width, else it is refused by node.
* Activations (``ops.is_symmetric``, ``op_type.<Op>.is_symmetric``): those outputs get a range symmetric
  about 0, so their int8 zero point is 0 (``symmetric_ranges``); outputs whose encoding TFLite fixes
  (SOFTMAX, LOGISTIC, TANH), that share their input's (pooling, data movement) or a concatenation's
  range cannot follow, and ``symmetric_exceptions`` names them for the report.
* ``model_input.is_input_quantized = false`` / ``model_output.is_output_quantized = false`` (float model
  inputs or outputs) are not lowered: the program takes int8 inputs and gives integer outputs. Refused.
* Supergroups (``[Conv, Relu]`` ...): ``fuse_activation`` folds activations into Conv/Gemm/Add, so no
  quantizer sits between them. A listed pair left unfused whose second op is an activation (say
  ConvTranspose → Relu) is honoured by giving the producer the activation's output encoding
  (``honour_supergroups``); any other unfused pair is reported.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from edgeopt.device_profiles.quantization import Quantization
from edgeopt.errors import ProfileError, UnsupportedOpError
from edgeopt.ir import Graph, QuantizedGraph
from edgeopt.pipeline.calibrate import TensorStats
from edgeopt.pipeline.optimize.fuse_activation import activation_kind
from edgeopt.pipeline.quantize.spec import FIXED_OUTPUT, SHARED_SCALE_OPS, WEIGHTED_OPS
from edgeopt.pipeline.quantize.precision import PrecisionPlan


@dataclass(frozen=True)
class RuleException:
    """A profile rule a node could not follow, and why (for the report)."""

    node: str
    op: str
    rule: str
    reason: str

    def to_json(self) -> dict[str, str]:
        return {"node": self.node, "op": self.op, "rule": self.rule, "reason": self.reason}


def check_tflite_rules(rules: Quantization, profile: str) -> None:
    """Refuse the rules a TFLite program cannot follow: asymmetric weights, float model inputs/outputs.

    Raises:
        ProfileError: naming the profile, the key and what to do.
    """
    keyed = [("quantization.defaults.params", rules.defaults.params)]
    keyed += [(f"quantization.params.{name}", q) for name, q in rules.params.items() if name != "bias"]
    keyed += [(f"quantization.op_type.{op}.params.{name}", q) for op, o in rules.op_type.items()
              for name, q in o.params.items() if name != "bias"]
    for key, q in keyed:
        if q.is_symmetric is False:
            raise ProfileError(f"{profile}: {key}.is_symmetric = false asks for asymmetric weights, which TFLite's "
                               "int8 and 16x8 kernels cannot take (weights have zero point 0); set it to true")
    if not rules.model_input.is_input_quantized:
        raise ProfileError(f"{profile}: quantization.model_input.is_input_quantized = false (a float model input) "
                           "is not supported: the program takes an int8 input; set it to true")
    if not rules.model_output.is_output_quantized:
        raise ProfileError(f"{profile}: quantization.model_output.is_output_quantized = false (a float model "
                           "output) is not supported: the program gives integer outputs; set it to true")


def _kernels_key(rules: Quantization, op: str) -> str:
    override = rules.op_type.get(op)
    where = f"op_type.{op}" if override is not None and override.supported_kernels is not None else "defaults"
    return f"quantization.{where}.supported_kernels"


def check_weight_bits(graph: Graph, rules: Quantization, profile: str, plan: PrecisionPlan,
                      weight_bits: int = 8) -> None:
    """Refuse ``weight_bits`` on a weighted node whose op type's ``supported_kernels`` have no kernel with
    that weight width at the node's activation width (8, or 16 where ``plan`` says int16).

    Raises:
        UnsupportedOpError: naming the node, the width and the profile key.
    """
    for node in graph.nodes:
        if node.op not in WEIGHTED_OPS or len(node.inputs) < 2 or node.inputs[1] not in graph.initializers:
            continue
        act = 16 if plan.get(node.name) == "int16" else 8
        allowed = sorted({k.param for k in rules.kernels(node.op) if k.activation == act})
        if weight_bits not in allowed:
            raise UnsupportedOpError(node.op, node.name, f"{weight_bits}-bit weights requested, but {profile}'s "
                                     f"{_kernels_key(rules, node.op)} allow {allowed or 'no'}-bit weights with "
                                     f"{act}-bit activations")


def _symmetric(rules: Quantization, op: str) -> bool:
    override = rules.op_type.get(op)
    if override is not None and override.is_symmetric is not None:
        return override.is_symmetric
    return bool(rules.defaults.ops.is_symmetric)


def symmetric_ranges(graph: Graph, stats: Mapping[str, TensorStats], rules: Quantization) -> dict[str, TensorStats]:
    """``stats`` with the range of every output (and graph input) the profile wants symmetric widened to
    ``[-a, a]``, ``a = max(|min|, |max|)``: the int8 encoding of such a range has zero point 0."""
    out = dict(stats)
    names = [t.name for t in graph.inputs] if rules.defaults.ops.is_symmetric else []
    names += [o for n in graph.nodes if _symmetric(rules, n.op) for o in n.outputs if o]
    for name in names:
        if name in out:
            a = max(abs(out[name].min), abs(out[name].max))
            out[name] = TensorStats(-a, a)
    return out


def symmetric_exceptions(qgraph: QuantizedGraph, rules: Quantization) -> list[RuleException]:
    """The outputs the profile wants symmetric whose final encoding still has a non-zero zero point."""
    found = []
    for node in qgraph.graph.nodes:
        if not _symmetric(rules, node.op):
            continue
        for out in node.outputs:
            q = qgraph.encodings.get(out)
            if q is None or int(np.asarray(q.zero_point).reshape(-1)[0]) == 0:
                continue
            if node.op in FIXED_OUTPUT:
                why = f"TFLite's {node.op} kernel fixes its output encoding (zero point {int(q.zero_point[0])})"
            elif node.op in SHARED_SCALE_OPS:
                why = "it shares its input's encoding, as TFLite's kernel requires"
            else:
                why = "it shares a concatenation's range with asymmetric tensors"
            rule = f"quantization.op_type.{node.op}.is_symmetric" if node.op in rules.op_type and \
                rules.op_type[node.op].is_symmetric is not None else "quantization.defaults.ops.is_symmetric"
            found.append(RuleException(node.name, node.op, rule, why))
    return found


def honour_supergroups(qgraph: QuantizedGraph, rules: Quantization) -> tuple[QuantizedGraph, list[RuleException]]:
    """``qgraph`` with no quantizer inside a profile supergroup ``[A, B]`` whose B is an activation
    (Relu, Clip to ReLU/ReLU6): A's output, read by that B alone and in the same dtype, takes B's output
    encoding, so A's requantization clamps as a fused activation would and B changes nothing.

    Returns:
        The graph (itself when nothing changed) and the listed pairs it could not honour.
    """
    graph, enc = qgraph.graph, dict(qgraph.encodings)
    readers: dict[str, list] = {}
    for node in graph.nodes:
        for t in node.inputs:
            readers.setdefault(t, []).append(node)
    pairs = {(g.op_list[i], g.op_list[i + 1]) for g in rules.supergroups for i in range(len(g.op_list) - 1)}
    skipped: list[RuleException] = []
    changed = False
    for node in graph.nodes:
        out = node.outputs[0] if node.outputs else ""
        after = readers.get(out, [])
        if len(after) != 1 or (node.op, after[0].op) not in pairs or out in {t.name for t in graph.outputs}:
            continue
        b = after[0]
        if activation_kind(b, graph) is None:
            skipped.append(RuleException(node.name, node.op, "quantization.supergroups",
                                         f"[{node.op}, {b.op}]: {b.op} is not an activation that can be fused"))
            continue
        a_q, b_q = enc.get(out), enc.get(b.outputs[0])
        if a_q is not None and b_q is not None and a_q.dtype == b_q.dtype:  # not across a float island
            enc[out] = b_q
            changed = True
    if not changed:
        return qgraph, skipped
    return QuantizedGraph(graph=graph, encodings=enc), skipped
