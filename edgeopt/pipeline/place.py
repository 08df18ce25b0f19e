"""place: tag every op of the lowered program with the compute unit that runs it, and say why when it is
not the preferred one.

Placement reads the lowered ``QProgram`` rather than the float IR because the rules it applies are the
vendors' rules, and they are written for TFLite ops on NHWC tensors after conversion: Vela's
SUPPORTED_OPS.md and Coral's supported-operations table speak of DEPTHWISE_CONV_2D, fused activations,
FULLY_CONNECTED output rank, which exist only once Conv/Gemm/Relu are lowered. Each op keeps its IR node
in ``QOp.source``, so a tag maps back to the node for a lowering that honours it (float islands).

Each op goes to the first unit of the profile's ``placement.fallback_order`` whose op table lists it (or
``"*"``) and whose limits it meets (``device_profiles.compute_units.OpRule``). Placement only tags: the
program is not changed.

Float fallback: an integer op that no unit runs at its dtype, but some unit runs in float32, is tagged
``float_fallback`` on the first such unit, at fp32, with the rules that refused its integer form. The
program still holds it in int8; ``deploy`` then puts its source node in a float island
(``QuantizedGraph.float_nodes``), lowers again and places again, passing those reasons on
(``float_reasons``) so that the float op's row still says why it runs in float.
"""
from __future__ import annotations

import json
import math
from collections.abc import Callable, Collection, Iterator, Mapping
from typing import Any

import numpy as np

from edgeopt.device_profiles import DeviceProfile
from edgeopt.device_profiles.compute_units import ComputeUnit, OpRule
from edgeopt.errors import UnsupportedOpError
from edgeopt.qprogram import Dtype, OpPlacement, Placement, QOp, QProgram

_DTYPES: dict[str, Dtype] = {"int8": "int8", "uint8": "int8", "int16": "int16", "float16": "fp16",
                             "float32": "fp32"}
BINARY_KINDS = frozenset({"ADD", "SUB", "MUL", "SQUARED_DIFFERENCE", "MAXIMUM", "MINIMUM", "DIV"})
PAD_KINDS = frozenset({"PAD", "PADV2", "MIRROR_PAD"})


def place(program: QProgram, profile: DeviceProfile,
          float_reasons: Mapping[tuple[str, str], str] | None = None) -> Placement:
    """Assign each op of ``program`` to a compute unit of ``profile``.

    Args:
        program: the lowered program (not modified).
        profile: the device; its units are tried in ``placement.fallback_order``.
        float_reasons: ``Placement.float_fallbacks()`` of an earlier placement, whose ops the program now
            runs in float32: such an op keeps that reason (why it is not in int8) on its row.

    Returns:
        One :class:`OpPlacement` per op, in program order.

    Raises:
        UnsupportedOpError: no unit of the profile accepts an op, at its dtype or in float32; the
            message lists every unit's reason.
    """
    float_reasons = float_reasons or {}
    units = profile.units()
    rows = []
    cut: dict[str, str] = {}  # single-partition unit → the first op it rejected
    for op in program.ops:
        facts = _Facts(op, program)
        rejections = []
        for key, unit in units.items():
            why = _rejection(facts, key, unit)
            if why is None and key in cut:
                why = (f"{op.kind}: after {cut[key]}, the first op {unit.name} rejected, every op runs on "
                       f"the next unit (rule compute_units.{key}.single_partition = true)")
            elif why is not None and unit.single_partition:
                cut.setdefault(key, f"{op.kind} ('{op.source}')")
            if why is None:
                reason = "; ".join(rejections)
                if facts.dtype == "fp32" and (op.source, op.kind) in float_reasons:
                    reason = float_reasons[op.source, op.kind]
                rows.append(OpPlacement(op.kind, op.source, key, unit.kind, facts.dtype, reason))
                break
            rejections.append(why)
        else:
            rows.append(_float_fallback(_Facts(op, program, dtype="fp32"), units, cut, rejections, profile.name))
    return Placement(profile.name, tuple(rows))


def _float_fallback(facts: _Facts, units: Mapping[str, ComputeUnit], cut: Mapping[str, str],
                    rejections: list[str], profile: str) -> OpPlacement:
    """The first unit that runs the op in float32, tagged ``float_fallback`` with ``rejections`` (its
    integer form's) as the reason.

    Raises:
        UnsupportedOpError: the op is already float32, or no unit runs it in float32 either.
    """
    op = facts.op
    if dtype_of(op, facts.program) in ("int8", "int16") and (found := _first_unit(facts, units, cut)):
        key, unit = found
        reason = "; ".join(rejections) + f"; runs in float32 on {unit.name}"
        return OpPlacement(op.kind, op.source, key, unit.kind, "fp32", reason, float_fallback=True)
    raise UnsupportedOpError(op.kind, op.source, f"no compute unit of {profile} runs it: " + "; ".join(rejections))


def float_unit(op: QOp, program: QProgram, profile: DeviceProfile) -> str | None:
    """The first compute unit of ``profile`` (in fallback order) whose op rules and limits let it run ``op``
    in float32, whatever dtype ``op`` has in ``program``; None when no unit does."""
    found = _first_unit(_Facts(op, program, dtype="fp32"), profile.units())
    return found[0] if found else None


def _first_unit(facts: _Facts, units: Mapping[str, ComputeUnit],
                skip: Collection[str] = ()) -> tuple[str, ComputeUnit] | None:
    """The first unit (key, unit) not in ``skip`` that accepts the op as ``facts`` describe it."""
    return next(((key, unit) for key, unit in units.items() if key not in skip and _rejection(facts, key, unit) is None),
                None)


def dtype_of(op: QOp, program: QProgram) -> Dtype:
    """The precision ``op`` computes in: its (first) output's dtype (a QUANTIZE computes in int8, a
    DEQUANTIZE in fp32)."""
    return _DTYPES.get(program.tensor(op.outputs[0]).dtype, "fp32")


class _Facts:
    """What the rules look at in one op, computed from its tensors and options."""

    def __init__(self, op: QOp, program: QProgram, dtype: Dtype | None = None) -> None:
        self.op, self.program = op, program
        self.dtype = dtype or dtype_of(op, program)  # fp32: the op's float form (float fallback)
        self.activations = [program.tensor(t).shape for t in (*op.inputs, *op.outputs)
                            if t and not program.tensor(t).is_constant]
        inputs = [program.tensor(t) for t in op.inputs if t and not program.tensor(t).is_constant]
        self.input_shape = inputs[0].shape if inputs else None

    def kernel(self) -> tuple[int, int] | None:
        o = self.op.options
        if "filter_height" in o:
            return int(o["filter_height"]), int(o["filter_width"])
        if self.op.kind in ("CONV_2D", "DEPTHWISE_CONV_2D", "TRANSPOSE_CONV"):
            _, kh, kw, _ = self.program.tensor(self.op.inputs[1]).shape
            return kh, kw
        return None

    def stride(self) -> tuple[int, int] | None:
        """The stride that matters: along an axis with one output position (a global pool) any stride
        gives the same result, so it counts as 1 there (as Vela treats such pools)."""
        o = self.op.options
        if "stride_h" not in o:
            return None
        _, out_h, out_w, _ = self.program.tensor(self.op.outputs[0]).shape
        return (int(o["stride_h"]) if out_h > 1 else 1), (int(o["stride_w"]) if out_w > 1 else 1)

    def dilation(self) -> tuple[int, int]:
        o = self.op.options
        return int(o.get("dilation_h_factor", 1)), int(o.get("dilation_w_factor", 1))

    def axes(self) -> list[int] | None:
        if self.op.kind == "MEAN":
            data = self.program.tensor(self.op.inputs[1]).data
            rank = len(self.program.tensor(self.op.inputs[0]).shape)
            return sorted({int(a) % rank for a in np.ravel(data)}) if data is not None else None
        if self.op.kind in PAD_KINDS:
            data = self.program.tensor(self.op.inputs[1]).data
            return [i for i, row in enumerate(np.asarray(data)) if np.any(row != 0)] if data is not None else None
        return None

    def operand_shapes(self) -> list[tuple[int, ...]] | None:
        if self.op.kind not in BINARY_KINDS:
            return None
        return [self.program.tensor(t).shape for t in self.op.inputs[:2]]


def _show(value: Any) -> str:
    return json.dumps(value)


def _pair(values: tuple[int, int]) -> str:
    return f"{values[0]}x{values[1]}"


# Each check takes the rule's value and the op's facts and returns what the op has that the rule forbids,
# as the start of the reason ("dilation 2"), or None when the op meets it.
Check = Callable[[Any, _Facts], str | None]


def _dtypes(allowed: list[str], f: _Facts) -> str | None:
    return None if f.dtype in allowed else f"dtype {f.dtype}"


def _max_kernel(limit: list[int], f: _Facts) -> str | None:
    k = f.kernel()
    return f"kernel {_pair(k)}" if k and (k[0] > limit[0] or k[1] > limit[1]) else None


def _max_kernel_same(limit: list[int], f: _Facts) -> str | None:
    return _max_kernel(limit, f) if f.op.options.get("padding") == "SAME" else None


def _max_kernel_area(limit: int, f: _Facts) -> str | None:
    k = f.kernel()
    return f"kernel {_pair(k)} (area {k[0] * k[1]})" if k and k[0] * k[1] > limit else None


def _dilated(f: _Facts) -> tuple[int, int] | None:
    k = f.kernel()
    if k is None:
        return None
    d = f.dilation()
    return (k[0] - 1) * d[0] + 1, (k[1] - 1) * d[1] + 1


def _max_dilated_kernel(limit: list[int], f: _Facts) -> str | None:
    k = _dilated(f)
    return f"dilated kernel {_pair(k)}" if k and (k[0] > limit[0] or k[1] > limit[1]) else None


def _max_dilated_kernel_area(limit: int, f: _Facts) -> str | None:
    k = _dilated(f)
    return f"dilated kernel {_pair(k)} (area {k[0] * k[1]})" if k and k[0] * k[1] > limit else None


def _strides(allowed: list[list[int]], f: _Facts) -> str | None:
    s = f.stride()
    return f"stride {_pair(s)}" if s and list(s) not in allowed else None


def _max_stride(limit: list[int], f: _Facts) -> str | None:
    s = f.stride()
    return f"stride {_pair(s)}" if s and (s[0] > limit[0] or s[1] > limit[1]) else None


def _dilation(allowed: list[int], f: _Facts) -> str | None:
    d = f.dilation()
    bad = [x for x in d if x not in allowed]
    return (f"dilation {bad[0]}" if d[0] == d[1] else f"dilation {_pair(d)}") if bad else None


def _depth_multiplier(allowed: list[int], f: _Facts) -> str | None:
    m = f.op.options.get("depth_multiplier")
    return f"depth multiplier {m}" if m is not None and int(m) not in allowed else None


def _max_channels(limit: int, f: _Facts) -> str | None:
    channels = max((s[-1] for s in f.activations if s), default=0)
    return f"{channels} channels" if channels > limit else None


def _max_rank(limit: int, f: _Facts) -> str | None:
    rank = max((len(s) for s in f.activations), default=0)
    return f"a {rank}-D tensor" if rank > limit else None


def _max_inner_dims(limit: int, f: _Facts) -> str | None:
    for s in f.activations:
        if any(d > 1 for d in s[:-limit]):
            return f"tensor shape {list(s)} (an axis before the {limit} innermost is larger than 1)"
    return None


def _max_dim(limit: int, f: _Facts) -> str | None:
    big = max((d for s in f.activations for d in s), default=0)
    return f"axis size {big}" if big > limit else None


def _max_batch(limit: int, f: _Facts) -> str | None:
    s = f.input_shape
    return f"batch {s[0]}" if s and len(s) > 1 and s[0] > limit else None


def _max_elements(limit: int, f: _Facts) -> str | None:
    n = math.prod(f.input_shape) if f.input_shape is not None else 0
    return f"{n} input elements" if n > limit else None


def _axes(allowed: list[int], f: _Facts) -> str | None:
    axes = f.axes()
    bad = [a for a in axes or () if a not in allowed]
    return f"axis {bad[0]}" if bad else None


def _broadcast(form: str, f: _Facts) -> str | None:
    shapes = f.operand_shapes()
    if shapes is None or form == "any" or shapes[0] == shapes[1]:
        return None
    if form == "scalar" and min(math.prod(s) for s in shapes) == 1:
        return None
    return f"broadcasting {list(shapes[0])} with {list(shapes[1])}"


def _fused_activations(allowed: list[str], f: _Facts) -> str | None:
    act = f.op.options.get("fused_activation_function", "NONE")
    return f"fused activation {act}" if act not in allowed else None


def _slice_strides(allowed: list[int], f: _Facts) -> str | None:
    if f.op.kind != "STRIDED_SLICE":
        return None
    strides = f.program.tensor(f.op.inputs[3]).data
    bad = [int(s) for s in np.ravel(strides) if int(s) not in allowed] if strides is not None else []
    return f"slice stride {bad[0]}" if bad else None


def _resize_factors(allowed: list[int], f: _Facts) -> str | None:
    """Vela's forms: input 1x1, output the input's size, or both axes scaled by one allowed factor
    (``(in - 1) * factor + 1`` with align_corners, whose corners map onto each other)."""
    if not f.op.kind.startswith("RESIZE_"):
        return None
    _, in_h, in_w, _ = f.program.tensor(f.op.inputs[0]).shape
    _, out_h, out_w, _ = f.program.tensor(f.op.outputs[0]).shape
    if (in_h, in_w) == (1, 1) or (in_h, in_w) == (out_h, out_w):
        return None
    corners = bool(f.op.options.get("align_corners"))
    for k in allowed:
        if all((out == (n - 1) * k + 1) if corners else (out == n * k) for n, out in ((in_h, out_h), (in_w, out_w))):
            return None
    return f"resize {in_h}x{in_w} to {out_h}x{out_w}"


CHECKS: dict[str, Check] = {
    "dtypes": _dtypes,
    "max_kernel": _max_kernel,
    "max_kernel_same": _max_kernel_same,
    "max_kernel_area": _max_kernel_area,
    "max_dilated_kernel": _max_dilated_kernel,
    "max_dilated_kernel_area": _max_dilated_kernel_area,
    "strides": _strides,
    "max_stride": _max_stride,
    "dilation": _dilation,
    "depth_multiplier": _depth_multiplier,
    "max_channels": _max_channels,
    "max_rank": _max_rank,
    "max_inner_dims": _max_inner_dims,
    "max_dim": _max_dim,
    "max_batch": _max_batch,
    "max_elements": _max_elements,
    "axes": _axes,
    "broadcast": _broadcast,
    "fused_activations": _fused_activations,
    "slice_strides": _slice_strides,
    "resize_factors": _resize_factors,
}
assert set(CHECKS) == set(OpRule.model_fields), "every OpRule key needs a check"


def _rejection(f: _Facts, key: str, unit: ComputeUnit) -> str | None:
    """Why ``unit`` (named ``key`` in the profile) cannot run the op, or None if it can."""
    kind = f.op.kind
    found = unit.rule(kind)
    if found is None:
        return f"{kind}: not supported on {unit.name} (rule compute_units.{key}.ops has no {kind})"
    op_key, rule = found
    op_path = f"compute_units.{key}.ops." + ('"*"' if op_key == "*" else op_key)
    for name, value, path in _effective(rule, unit.defaults, op_path,
                                        f"compute_units.{key}.defaults"):
        what = CHECKS[name](value, f)
        if what is not None:
            return f"{kind}: {what} not supported on {unit.name} (rule {path}.{name} = {_show(value)})"
    return None


def _effective(rule: OpRule, defaults: OpRule, rule_path: str, defaults_path: str) -> Iterator[tuple[str, Any, str]]:
    """The limits in force: the op's own value of each key, else the unit's default."""
    for name in CHECKS:
        value = getattr(rule, name)
        if value is not None:
            yield name, value, rule_path
        elif (default := getattr(defaults, name)) is not None:
            yield name, default, defaults_path
