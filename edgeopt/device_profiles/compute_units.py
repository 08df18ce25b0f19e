"""Compute units of a device (NPU, GPU, DSP, CPU): the ops each runs, at which dtypes, under which limits,
and the numbers its share of the cost model is priced with.

Op names are TFLite builtin operator names (``CONV_2D``, ``DEPTHWISE_CONV_2D``, ...), the names of the
lowered program's ops and of the vendors' documents (Vela's SUPPORTED_OPS.md, Coral's supported-operations
table, the QNN delegate's op list). The key ``"*"`` stands for every op the unit's runtime has a kernel
for (a CPU's TFLite builtin kernels). Constraints are data: each is a key of :class:`OpRule` checked by
``edgeopt.pipeline.place``; a unit's ``defaults`` apply to every op, an op's own rule overrides a key.
"""
from __future__ import annotations

from functools import cache
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, model_validator

from edgeopt.device_profiles.base import NonEmpty, NonNegative, Positive, PositiveInt, Section
from edgeopt.qprogram import Dtype

Pair = Annotated[list[PositiveInt], Field(min_length=2, max_length=2)]
"""``[height, width]``."""
FusedActivation = Literal["NONE", "RELU", "RELU6", "RELU_N1_TO_1", "TANH", "LOGISTIC"]
ANY_OP = "*"


@cache
def _builtin_ops() -> frozenset[str]:
    from ai_edge_litert import schema_py_generated as schema

    return frozenset(n for n in vars(schema.BuiltinOperator) if not n.startswith("_"))


def _tflite_op_name(name: str) -> str:
    if name != ANY_OP and name not in _builtin_ops():
        raise ValueError("not a TFLite builtin operator name (or '*' for any op)")
    return name


class OpRule(Section):
    """Limits under which a unit runs an op; an absent key means no limit. Spatial pairs are ``[h, w]``."""

    dtypes: list[Dtype] | None = None
    """Precisions the unit runs the op at (the op's output dtype: int8, int16, fp32)."""
    max_kernel: Pair | None = None
    """Largest filter (conv, depthwise, transpose conv, pooling), ``[KH, KW]``."""
    max_kernel_same: Pair | None = None
    """Largest filter when the padding is SAME (Vela's pooling limit)."""
    max_kernel_area: PositiveInt | None = None
    """Largest ``KH x KW``."""
    max_dilated_kernel: Pair | None = None
    """Largest dilated filter ``[(KH-1)*DH+1, (KW-1)*DW+1]``."""
    max_dilated_kernel_area: PositiveInt | None = None
    """Largest product of the dilated filter's height and width."""
    strides: list[Pair] | None = None
    """The ``[stride_h, stride_w]`` pairs allowed, each listed."""
    max_stride: Pair | None = None
    """Largest stride in each direction (every smaller one is allowed)."""
    dilation: list[PositiveInt] | None = None
    """Dilation factors allowed, in both directions."""
    depth_multiplier: list[PositiveInt] | None = None
    """Depth multipliers allowed (DEPTHWISE_CONV_2D)."""
    max_channels: PositiveInt | None = None
    """Largest channel count (last axis) of the op's activation input and output."""
    max_rank: PositiveInt | None = None
    """Largest rank of the op's activation tensors."""
    max_inner_dims: PositiveInt | None = None
    """Only this many innermost axes of an activation tensor may be larger than 1."""
    max_dim: PositiveInt | None = None
    """Largest size of any axis of an activation tensor."""
    max_batch: PositiveInt | None = None
    """Largest first axis (batch) of the activation input."""
    max_elements: PositiveInt | None = None
    """Largest element count of the activation input."""
    axes: list[Annotated[int, Field(ge=0)]] | None = None
    """Axes (of the NHWC program) the op may act on: MEAN's reduced axes, PAD's padded axes."""
    broadcast: Literal["any", "scalar", "none"] | None = None
    """Binary ops: any numpy broadcast, only a one-element operand, or equal shapes only."""
    fused_activations: list[FusedActivation] | None = None
    """Fused activation functions allowed (``NONE`` must be listed to allow none)."""
    slice_strides: list[int] | None = None
    """Strides allowed on every axis of a STRIDED_SLICE (Vela and the Edge TPU take only 1)."""
    resize_factors: list[PositiveInt] | None = None
    """Integer upscaling factors allowed for RESIZE_* (the same on H and W); a 1x1 input and an output
    the size of the input are always allowed (Vela's three accepted forms)."""


class UnitPerformance(Section):
    """Roofline numbers of one unit."""

    peak_macs_per_s: dict[Dtype, Positive]
    """Multiply-accumulates per second at full use, per dtype the unit computes in."""
    memory_bandwidth_bytes_per_s: Positive
    """Bandwidth the unit sustains to the memory its tensors live in."""
    per_op_overhead_s: NonNegative
    """Fixed cost of launching one op on the unit."""


class UnitEnergy(Section):
    """Energy numbers of one unit."""

    mac_j: dict[Dtype, Positive]
    """Joules per multiply-accumulate, per dtype."""
    dram_byte_j: Positive
    """Joules per byte the unit moves to or from memory."""
    static_power_w: NonNegative
    """Power drawn while the unit is busy regardless of the work (leakage, clocks), in watts."""


class ComputeUnit(Section):
    """One unit and its op table. ``performance``/``energy`` default to the profile's top-level ones."""

    kind: Literal["npu", "gpu", "dsp", "cpu"]
    name: NonEmpty
    """Human name used in placement reasons, e.g. ``"Edge TPU"``."""
    defaults: OpRule = OpRule()
    """Limits every op on this unit must meet (e.g. tensor rank), unless the op's rule overrides the key."""
    ops: dict[Annotated[str, AfterValidator(_tflite_op_name)], OpRule]
    """TFLite op name → its rule; ``"*"``: any op not listed."""
    single_partition: bool = False
    """The unit's compiler cuts the graph once: from the first op it rejects on, every later op runs on
    the next unit too (the Edge TPU compiler)."""
    performance: UnitPerformance | None = None
    energy: UnitEnergy | None = None

    @model_validator(mode="after")
    def _priced_dtypes(self) -> ComputeUnit:
        # Every dtype the unit may run must have a MAC rate and an energy, or the cost model could not
        # price an op placed here.
        dtypes = set(self.defaults.dtypes or ())
        for rule in self.ops.values():
            dtypes |= set(rule.dtypes or ())
        for section, table in (("performance.peak_macs_per_s", self.performance and self.performance.peak_macs_per_s),
                               ("energy.mac_j", self.energy and self.energy.mac_j)):
            if table is not None and (missing := sorted(dtypes - set(table))):
                raise ValueError(f"{section} has no entry for {', '.join(missing)}, which the ops run at")
        return self

    def rule(self, kind: str) -> tuple[str, OpRule] | None:
        """The key (``kind`` or ``"*"``) and rule under which this unit runs ``kind``; None if it does not."""
        if kind in self.ops:
            return kind, self.ops[kind]
        if ANY_OP in self.ops:
            return ANY_OP, self.ops[ANY_OP]
        return None


class Crossing(Section):
    """Cost of a tensor crossing from one unit to another (a delegate partition boundary)."""

    overhead_s: NonNegative
    """Fixed cost per crossing (synchronisation, cache maintenance, delegate invocation)."""
    bandwidth_bytes_per_s: Positive
    """Rate at which the crossing tensor is copied (or made coherent) between the units."""
    byte_j: NonNegative
    """Energy per byte copied across."""


class FallbackOrder(Section):
    """How ops are assigned: each goes to the first unit in ``fallback_order`` that accepts it."""

    fallback_order: Annotated[list[NonEmpty], Field(min_length=1)]
    """Unit names (keys of ``compute_units``), preferred first."""
