"""A device profile's quantization rules applied to the quantized graph: the precisions its kernels allow
per op type (``supported_kernels``) and per-channel or per-tensor weights (``per_channel_quantization``).

``resolve_plan`` makes the plan ``precision.apply_precision`` realises: ``--precision`` (or, left unset,
each op type's default kernel: the first ``supported_kernels`` entry), overrides, the 16x8 kernels here,
and the profile's kernels; a node keeps int16 activations only when the profile lists a kernel with
16-bit activations for its ONNX op type, and every int16 request kept int8 is listed with its reason.
The weights of every op type whose rule says ``per_channel_quantization = false`` get one scale for the
whole tensor (``per_tensor_weight``), written to the .tflite as one scale. ``pipeline.target.Target``
applies these with the other rules (``Target.weight_encoding``).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from edgeopt.device_profiles.quantization import Quantization
from edgeopt.errors import UnsupportedOpError
from edgeopt.ir import Graph, QParams
from edgeopt.pipeline.quantize.precision import (
    PRECISIONS,
    ActivationDtype,
    Precision,
    PrecisionPlan,
    int16_support,
    precision_plan,
)


def int16_allowed(rules: Quantization, op_type: str) -> bool:
    """Whether the profile has a kernel with 16-bit activations for ONNX op type ``op_type``."""
    return any(k.activation == 16 for k in rules.kernels(op_type))


def default_dtype(rules: Quantization, op_type: str) -> ActivationDtype:
    """The activation dtype of ``op_type``'s default kernel: the first ``supported_kernels`` entry."""
    return "int16" if rules.kernels(op_type)[0].activation == 16 else "int8"


def _profile_refusal(rules: Quantization, profile: str, op_type: str) -> str | None:
    """Why the profile forbids int16 activations on ``op_type`` (naming the rule's key), or None."""
    if int16_allowed(rules, op_type):
        return None
    where = f"op_type.{op_type}" if op_type in rules.op_type and rules.op_type[op_type].supported_kernels else \
        "defaults"
    return f"{profile}'s quantization.{where}.supported_kernels have no 16-bit activation kernel"


@dataclass(frozen=True)
class Int8Fallback:
    """A node that was to run with int16 activations and stays int8, and why."""

    node: str
    op: str
    reason: str
    by_profile: bool
    """True: a profile rule forbids it; False: there is no 16x8 kernel here."""

    def to_json(self) -> dict[str, str | bool]:
        return {"node": self.node, "op": self.op, "reason": self.reason, "by_profile": self.by_profile}


@dataclass(frozen=True)
class ResolvedPlan:
    """The precision plan a deploy uses, where it came from, and the int16 requests it could not keep."""

    plan: PrecisionPlan
    source: str
    """``"--precision w8a16"`` (the user's), or ``"profile default"`` (each op type's first kernel)."""
    fallbacks: tuple[Int8Fallback, ...]


def resolve_plan(graph: Graph, precision: Precision | None, rules: Quantization, profile: str,
                 overrides: Mapping[str, ActivationDtype] | None = None) -> ResolvedPlan:
    """The activation dtype of every node from ``--precision`` (or, when None, the profile's default
    kernel per op type), the user's overrides, the 16x8 kernels here and the profile's ``supported_kernels``.

    A node wanted int16 (by ``w8a16``, its op type's default kernel, or an override) that has no 16x8
    kernel, or whose op type the profile allows no 16-bit activations, stays int8 and is listed in
    ``fallbacks`` with the reason; an explicit int16 override that cannot be honoured is an error.

    Raises:
        UnsupportedOpError: an override asks for int16 where there is no 16x8 kernel or the profile
            forbids it; an unknown precision or dtype.
    """
    overrides = dict(overrides or {})
    plan = precision_plan(graph, precision or "w8a8", overrides)  # validates precision and overrides
    fallbacks = []
    for node in graph.nodes:
        if all(out in graph.tensors and not graph.tensors[out].is_float for out in node.outputs if out):
            plan[node.name] = "int8"  # integers and booleans (a mask's arithmetic): no activation precision
            continue
        explicit = overrides.get(node.name, overrides.get(node.op))
        wanted = explicit or (PRECISIONS[precision] if precision else default_dtype(rules, node.op))
        if wanted != "int16":
            plan[node.name] = explicit or "int8"  # an explicit "float" (a float island) is kept
            continue
        why, by_profile = int16_support(node, graph), False
        if why is None:
            why, by_profile = _profile_refusal(rules, profile, node.op), True
            if why is not None and explicit == "int16":
                raise UnsupportedOpError(node.op, node.name, f"int16 activations requested, but {why}")
        plan[node.name] = "int8" if why else "int16"
        if why:
            fallbacks.append(Int8Fallback(node.name, node.op, why, by_profile))
    return ResolvedPlan(plan, f"--precision {precision}" if precision else "profile default", tuple(fallbacks))


def per_tensor_weight(op: str, weight: np.ndarray, w_q: QParams) -> QParams:
    """The per-tensor form of the per-channel weight encoding ``w_q`` of ``weight`` (an ``op`` node's).

    The tensor's scale is the largest of its channels' scales (a channel of zeros, whose scale is a
    placeholder, does not count). A ConvTranspose keeps the per-channel form with every channel on that
    scale: its lowering reads axis-1 scales, and equal ones are per-tensor in value.
    """
    nonzero = np.abs(weight).max(axis=tuple(i for i in range(weight.ndim) if i != w_q.axis)) > 0
    scale = float(w_q.scale[nonzero].max()) if nonzero.any() else 1.0
    if op == "ConvTranspose":
        return QParams(np.full_like(w_q.scale, scale), w_q.zero_point, w_q.dtype, axis=w_q.axis)
    return QParams(np.float32(scale), 0, w_q.dtype)
