"""The target: a device profile's quantization rules, with the user's precision, weight bits and range
method, as one frozen object.

``deploy``, the automatic recipe and QuantSim all quantize through it, so what QAT trains on, what the
recipe scores and what ships carry the same encodings. In the order the pipeline calls them::

    resolved = target.check(graph)                    # fail fast; the precision plan
    stats = target.ranges(graph, calib_x)             # calibrate, range method, symmetric where asked
    qgraph = target.quantize(graph, stats, resolved.plan)
    shipped = target.ship(qgraph)                     # supergroups, lowering, placement, float islands
    device = target.device_program(shipped)           # the device's own weight scheme, where it differs

``lower_and_place`` (the last part of ``ship``): ``place`` tags an integer op that no compute unit runs at
its dtype, but one runs in float32, as a float fallback. Its source node then joins
``QuantizedGraph.float_nodes``, the graph is lowered once more (the node's ops now float32 between
DEQUANTIZE and QUANTIZE) and placed once more, with the first placement's reasons kept on those ops' rows.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np

from edgeopt.device_profiles import DeviceProfile
from edgeopt.device_profiles.quantization import Quantization
from edgeopt.errors import InternalError
from edgeopt.ir import Graph, Node, QParams, QuantizedGraph, weight_out_axis
from edgeopt.pipeline.calibrate import TensorStats, calibrate
from edgeopt.pipeline.lower import lower
from edgeopt.pipeline.place import place
from edgeopt.pipeline.quantize.encodings import bias_qparams, weight_qparams, weight_qparams_for_bias
from edgeopt.pipeline.quantize.float_plan import keep_in_float, mask_float_nodes
from edgeopt.pipeline.quantize.minmax import quantize_minmax
from edgeopt.pipeline.quantize.mixed_precision import profile_runs_float
from edgeopt.pipeline.quantize.precision import ActivationDtype, Precision, PrecisionPlan, apply_precision
from edgeopt.pipeline.quantize.profile_checks import (
    RuleException,
    check_tflite_rules,
    check_weight_bits,
    honour_supergroups,
    symmetric_ranges,
)
from edgeopt.pipeline.quantize.profile_rules import (
    ResolvedPlan,
    int16_allowed,
    per_tensor_weight,
    resolve_plan,
)
from edgeopt.pipeline.quantize.range_setting import set_ranges
from edgeopt.pipeline.quantize.spec import WEIGHTED_OPS
from edgeopt.pipeline.quantize.weight_range import mse_weight_scale
from edgeopt.pipeline.quantize.weight_scheme import device_weights
from edgeopt.qprogram import Placement, QProgram


@dataclass(frozen=True)
class Shipped:
    """What ships from a quantized graph: the graph with the profile's supergroups honoured and its
    float-only ops in float islands, the supergroups it could not honour, its program and placement."""

    qgraph: QuantizedGraph
    unfused: tuple[RuleException, ...]
    program: QProgram
    placement: Placement


@dataclass(frozen=True)
class Target:
    """A device profile's quantization rules and the user's choices on top of them.

    Attributes:
        profile: the device; its ``quantization`` rules, requantization rounding and compute units apply.
        weight_bits: Conv/Gemm/MatMul/ConvTranspose weight bit width (4 or 8, stored as int8); the
            profile's ``supported_kernels`` must allow it.
        precision: ``"w8a8"`` or ``"w8a16"``; None: each op type's default kernel (the first
            ``supported_kernels`` entry).
        precision_overrides: node name or ONNX op type → ``"int8"``/``"int16"``/``"float"``, on top.
        range_method: activation range setting, one of ``quantize.range_setting.RANGE_METHODS``.
        weight_range_method: ``"minmax"`` or ``"mse"`` (``quantize.weight_range``: the per-tensor weight
            scale of least squared error; per-channel weights keep min/max).
    """

    profile: DeviceProfile
    weight_bits: int = 8
    precision: Precision | None = None
    precision_overrides: Mapping[str, ActivationDtype] = field(default_factory=dict)
    range_method: str = "minmax"
    weight_range_method: str = "minmax"

    def __post_init__(self) -> None:
        object.__setattr__(self, "precision_overrides", MappingProxyType(dict(self.precision_overrides)))

    @property
    def rules(self) -> Quantization:
        """The profile's quantization rules."""
        return self.profile.quantization

    @property
    def rounding(self) -> str:
        """The profile's requantization rounding ("single" or "double")."""
        return self.profile.runtime.requantization_rounding

    @property
    def weight_range(self) -> tuple[int, int]:
        """The integer range of the weights: ``[-(2^(b-1)-1), 2^(b-1)-1]``, or down to ``-2^(b-1)`` where the
        profile's ``strict_symmetric`` is false."""
        qmax = 2 ** (self.weight_bits - 1) - 1
        return (-qmax if self.rules.defaults.strict_symmetric else -qmax - 1), qmax

    def check(self, graph: Graph) -> ResolvedPlan:
        """Refuse what the profile's rules and a TFLite program cannot do with ``graph``, before any work.

        Returns:
            The precision plan (every node's activation dtype), where it came from, and the int16
            requests it kept at int8 with why.

        Raises:
            ProfileError: rules a TFLite program cannot follow (asymmetric weights, float model inputs
                or outputs).
            UnsupportedOpError: an override or ``weight_bits`` the profile or the kernels here refuse.
            OptionError: an override names no node or op type of ``graph``.
        """
        check_tflite_rules(self.rules, self.profile.name)
        resolved = resolve_plan(graph, self.precision, self.rules, self.profile.name, self.precision_overrides)
        check_weight_bits(graph, self.rules, self.profile.name, resolved.plan, self.weight_bits)
        return resolved

    def ranges(self, graph: Graph, x: np.ndarray) -> dict[str, TensorStats]:
        """The activation ranges of ``graph`` on the calibration inputs ``x`` (``set_ranges``)."""
        return self.set_ranges(graph, calibrate(graph, x, histograms=self.range_method != "minmax"))

    def set_ranges(self, graph: Graph, stats: Mapping[str, TensorStats],
                   method: str | None = None) -> dict[str, TensorStats]:
        """The ranges ``method`` (default: ``range_method``) sets from calibration ``stats`` (with histograms
        unless it is "minmax"), widened to ``[-a, a]`` on the outputs the profile wants symmetric."""
        return symmetric_ranges(graph, set_ranges(stats, method or self.range_method), self.rules)

    def quantize(self, graph: Graph, stats: Mapping[str, TensorStats], plan: PrecisionPlan | None = None, *,
                 weight_encodings: Mapping[str, QParams] | None = None) -> QuantizedGraph:
        """The quantized graph: min/max encodings from ``stats`` with the profile's weight range and
        ``weight_bits``, the activation dtypes of ``plan``, then every weight's ``weight_encoding`` (per-tensor
        where the profile says so, widened where an int32 bias would overflow).

        Args:
            graph: the float graph.
            stats: its ranges (``ranges``).
            plan: node name → ``"int8"``/``"int16"``/``"float"`` (``check``'s); None: int8 everywhere, for a
                caller that refines the int8 graph (AdaRound, bias correction) before its plan applies.
            weight_encodings: fixed encodings for some weights (AdaRound's, whose weights are on them).
        """
        qgraph = quantize_minmax(graph, stats, weight_bits=self.weight_bits, weight_encodings=weight_encodings,
                                 strict_symmetric=self.rules.defaults.strict_symmetric)
        masks = mask_float_nodes(graph)  # attention masks run in float (float_plan.mask_float_nodes)
        if plan is not None:
            qgraph = apply_precision(qgraph, stats, {**plan, **dict.fromkeys(masks, "float")})
        qgraph = keep_in_float(qgraph, masks)
        # After the plan: a weight's encoding depends on its input's (int8: the bias must fit int32).
        return self._encode_weights(qgraph, weight_encodings or {})

    def weight_encoding(self, node: Node, weight: np.ndarray, input_q: QParams | None = None,
                        bias: np.ndarray | None = None) -> QParams:
        """The encoding ``quantize`` gives ``node``'s weight when its value is ``weight`` (QuantSim recomputes
        it as training changes the weight).

        Args:
            node: the Conv/Gemm/MatMul/ConvTranspose node.
            weight: its weight's current value.
            input_q: the encoding of its input; with ``bias``, the scale is widened where the int32 bias
                would overflow (``encodings.weight_qparams_for_bias``), after the per-tensor reduction so
                that no reduction can undo it.
            bias: its bias's current value, if it has one.
        """
        w_q = weight_qparams(weight, weight_out_axis(node), self.weight_bits, self.rules.defaults.strict_symmetric)
        per_channel = self.rules.per_channel(node.op)
        if not per_channel:
            w_q = per_tensor_weight(node.op, weight, w_q)
            if self.weight_range_method == "mse":
                w_q = mse_weight_scale(weight, w_q, *self.weight_range)
        if input_q is None or bias is None:
            return w_q
        return weight_qparams_for_bias(w_q, input_q, bias, one_scale=not per_channel)

    def _encode_weights(self, qgraph: QuantizedGraph, fixed: Mapping[str, QParams]) -> QuantizedGraph:
        """``qgraph`` with every weight encoded by ``weight_encoding`` (from its input's encoding and its bias)
        and the biases re-encoded to match.

        A ``fixed`` weight keeps its encoding, made per-tensor where the profile says so, and is not widened
        for its bias: AdaRound chose its integers on that grid, and the grid the recipe gave it (this method's,
        through ``quantize``) already had its bias fitted.
        """
        g, enc = qgraph.graph, dict(qgraph.encodings)
        for node in g.nodes:
            if node.op not in WEIGHTED_OPS or node.inputs[1] not in g.initializers:
                continue
            w_name, weight = node.inputs[1], g.initializers[node.inputs[1]]
            b_name = node.inputs[2] if len(node.inputs) > 2 else ""
            if w_name in fixed:  # AdaRound's: widening would move its chosen integers
                w_q = fixed[w_name]
                if w_q.per_channel and not self.rules.per_channel(node.op):
                    w_q = per_tensor_weight(node.op, weight, w_q)
            else:
                w_q = self.weight_encoding(node, weight, enc[node.inputs[0]], g.initializers.get(b_name))
            enc[w_name] = w_q
            if b_name:
                enc[b_name] = bias_qparams(enc[node.inputs[0]], w_q)
        return QuantizedGraph(graph=g, encodings=enc, float_nodes=qgraph.float_nodes)

    def int16_allowed(self, op_type: str) -> bool:
        """Whether the profile has a kernel with 16-bit activations for ONNX op type ``op_type``."""
        return int16_allowed(self.rules, op_type)

    def float_allowed(self, program: QProgram) -> frozenset[str]:
        """The nodes of ``program`` the profile can keep in float32 (``mixed_precision.profile_runs_float``)."""
        return profile_runs_float(self.profile, program)

    def ship(self, qgraph: QuantizedGraph) -> Shipped:
        """What ships from ``qgraph``: supergroups honoured, then lowered and placed (``lower_and_place``).

        Raises:
            UnsupportedOpError: an op no unit of the profile runs, in its dtype or in float32.
        """
        qgraph, unfused = honour_supergroups(qgraph, self.rules)
        qgraph, program, placement = lower_and_place(qgraph, self.profile)
        return Shipped(qgraph, tuple(unfused), program, placement)

    def device_program(self, shipped: Shipped) -> QProgram | None:
        """The program of the device's own weight scheme where the profile records one a ``.tflite`` cannot
        carry (``params.device_is_symmetric`` unlike ``is_symmetric``: SNPE's asymmetric per-tensor
        weights), else None: ``shipped``'s graph with ``weight_scheme.device_weights``' encodings, lowered
        as ``shipped.program`` was (same ops and placement; weights with zero points, which the executor
        runs and the TFLite writer refuses)."""
        qgraph = device_weights(shipped.qgraph, self.rules)
        if qgraph is None:
            return None
        return lower(qgraph, rounding=self.rounding).replace(
            fully_connected_requantization=shipped.program.fully_connected_requantization)


def lower_and_place(qgraph: QuantizedGraph, profile: DeviceProfile) -> tuple[QuantizedGraph, QProgram, Placement]:
    """Lower ``qgraph`` for ``profile`` and place it, moving float-only ops into float islands.

    Args:
        qgraph: the quantized graph.
        profile: the device; its requantization rounding and compute units apply.

    Returns:
        The quantized graph with the fallback nodes added to ``float_nodes`` (``qgraph`` itself if none),
        its program and the program's placement.

    Raises:
        UnsupportedOpError: an op no unit of the profile runs, in its dtype or in float32.
    """
    rounding = profile.runtime.requantization_rounding
    program = lower(qgraph, rounding=rounding)
    placement = place(program, profile)
    fallbacks = placement.float_fallbacks()
    if not fallbacks:
        return qgraph, program, placement
    qgraph = keep_in_float(qgraph, {source for source, _ in fallbacks})
    program = lower(qgraph, rounding=rounding)
    placement = place(program, profile, fallbacks)
    if still := placement.float_fallbacks():
        raise InternalError(f"ops {sorted(still)} still need float after their nodes became float islands")
    return qgraph, program, placement
