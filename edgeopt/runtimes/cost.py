"""Latency and energy model: a per-op roofline priced with the device profile's numbers.

For each op of a lowered program (NHWC tensors, see ``edgeopt.qprogram``):

    time   = max(MACs / peak_MAC_rate, bytes / memory_bandwidth) + per_op_overhead
    energy = MACs * energy_per_MAC + bytes * energy_per_DRAM_byte + static_power * time

``bytes`` is every input (activations and constants: weights, biases, shape tensors) plus every output,
in their stored dtypes for the int8 program, or at 4 bytes per element when the same program is priced
as float32. The model assumes every tensor travels to and from DRAM (no cache reuse) and every op runs
at its roofline: it is an idealised estimate to compare int8 with float and one model with another,
not a prediction of a measured latency; the ``android`` runtime measures that.

A profile measured by ``edgeopt profiles calibrate host`` also carries refinements that make it predict
measured latency (``edgeopt.runtimes.cost_refine``): dense channels rounded up to the kernels' block,
per-kind MAC rates (DEPTHWISE_CONV_2D), and a roof on output elements per second.

Priced with a placement (``estimate(..., placement)``), each op uses the roofline of the compute unit it
was placed on (``compute_units.<unit>.performance`` and ``.energy``, per dtype; a unit without its own
numbers uses the top-level ones and their measured refinements):

    time   = max(MACs / peak[unit, dtype], bytes / bandwidth[unit]) + overhead[unit] + crossing
    energy = MACs * mac_j[unit, dtype] + bytes * dram_byte_j[unit] + static_power[unit] * time
             + crossing_bytes * crossing.byte_j

``crossing`` is paid by an op for each activation input produced on another unit (and for a graph
input read by a unit other than the first in the fallback order): ``crossing.overhead_s +
bytes / crossing.bandwidth_bytes_per_s``, once per tensor and destination unit.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np

from edgeopt.device_profiles import DeviceProfile
from edgeopt.errors import InternalError, ProfileError, RegistryError, UnsupportedOpError
from edgeopt.qprogram import Placement, QOp, QProgram, op_mode
from edgeopt.registry import OpRegistry, Registry
from edgeopt.runtimes.cost_refine import compute_time_s, output_time_s

Precision = Literal["int8", "fp32"]
MacCounter = Callable[[QOp, QProgram], int]

FLOAT_BYTES = 4

# Multiply-accumulates of one op, by op kind. An op kind missing here cannot be priced, so a new compute
# op cannot slip through at zero MACs.
MAC_COUNTERS: Registry[MacCounter] = OpRegistry("cost-model op")


def _elements(shape: tuple[int, ...]) -> int:
    return math.prod(shape)


@MAC_COUNTERS.register("CONV_2D")
def conv_2d_macs(op: QOp, program: QProgram) -> int:
    """Output elements x KH x KW x Ci, with ``w[Co, KH, KW, Ci]``."""
    _, kh, kw, ci = program.tensor(op.inputs[1]).shape
    return _elements(program.tensor(op.outputs[0]).shape) * kh * kw * ci


@MAC_COUNTERS.register("DEPTHWISE_CONV_2D")
def depthwise_conv_2d_macs(op: QOp, program: QProgram) -> int:
    """Output elements x KH x KW, with ``w[1, KH, KW, Co]``: each output reads one input channel."""
    _, kh, kw, _ = program.tensor(op.inputs[1]).shape
    return _elements(program.tensor(op.outputs[0]).shape) * kh * kw


@MAC_COUNTERS.register("FULLY_CONNECTED")
def fully_connected_macs(op: QOp, program: QProgram) -> int:
    """N x Co x Ci, with ``w[Co, Ci]`` and N the output elements over Co."""
    co, ci = program.tensor(op.inputs[1]).shape
    return _elements(program.tensor(op.outputs[0]).shape) // co * co * ci


@MAC_COUNTERS.register("TRANSPOSE_CONV")
def transpose_conv_macs(op: QOp, program: QProgram) -> int:
    """Input elements x KH x KW x Co, with ``w[Co, KH, KW, Ci]``: each input scatters a KHxKWxCo patch."""
    co, kh, kw, _ = program.tensor(op.inputs[1]).shape
    return _elements(program.tensor(op.inputs[2]).shape) * kh * kw * co


@MAC_COUNTERS.register("BATCH_MATMUL")
def batch_matmul_macs(op: QOp, program: QProgram) -> int:
    """Output elements x K, with ``lhs[..., M, K]``."""
    return _elements(program.tensor(op.outputs[0]).shape) * program.tensor(op.inputs[0]).shape[-1]


@MAC_COUNTERS.register("SOFTMAX", "GELU", "SQUARED_DIFFERENCE")
def elementwise_multiply_macs(op: QOp, program: QProgram) -> int:
    """One multiply per output element: SOFTMAX's normalisation, GELU's product with its erfc or tanh
    polynomial, SQUARED_DIFFERENCE's square (exponentials and polynomials are table or vector work,
    counted as memory traffic)."""
    return _elements(program.tensor(op.outputs[0]).shape)


@MAC_COUNTERS.register(
    "ADD",
    "SUB",
    "MUL",
    "RELU",
    "RELU6",
    "RELU_N1_TO_1",
    "HARD_SWISH",
    "LOGISTIC",
    "TANH",
    "AVERAGE_POOL_2D",
    "MEAN",
    "RESHAPE",
    "PAD",
    "STRIDED_SLICE",
    "SPLIT",
    "SPLIT_V",
    "TRANSPOSE",
    "CONCATENATION",
    "MAX_POOL_2D",
    "RESIZE_NEAREST_NEIGHBOR",
    "RESIZE_BILINEAR",
    "MIRROR_PAD",
    "PADV2",
    "QUANTIZE",
    "DEQUANTIZE",
    "RSQRT",
    "DIV",
    "SQRT",
    "NEG",
    "TILE",
    "UNPACK",
    "LEAKY_RELU",
    "PRELU",
    "DEPTH_TO_SPACE",
    "REDUCE_MAX",
    "GATHER",
    "CAST",
    "LOGICAL_AND",
    "BROADCAST_TO",
    "SELECT_V2",
    "SPACE_TO_DEPTH",
    "EQUAL",
    "MINIMUM",
)
def no_macs(op: QOp, program: QProgram) -> int:
    """Elementwise, pooling and data-movement ops (GATHER's table lookups, CAST's conversions too): no MACs;
    their cost is the bytes they move. (RSQRT's, SQRT's and DIV's square roots and divisions per element
    are priced the same way.)"""
    return 0


# Ops whose constant inputs (weights, biases) are the model's parameters.
WEIGHTED_KINDS = frozenset({"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"})


@dataclass(frozen=True)
class OpCost:
    """The price of one op. ``bound`` says which roofline term set its time."""

    kind: str
    source: str
    macs: int
    bytes: int
    time_s: float
    energy_j: float
    bound: Literal["compute", "memory"]
    unit: str = ""
    """Compute unit that runs the op, when priced with a placement."""
    dtype: str = ""
    crossing_s: float = 0.0
    """Part of ``time_s`` spent moving inputs from other units."""


@dataclass(frozen=True)
class CostReport:
    """Estimated cost of one run of a program on one device profile.

    ``ops`` are in execution order; ``latency_ms`` and ``energy_mj`` are the sums of their ``time_s`` and
    ``energy_j`` (static power included per op); ``fps`` is runs per second at that latency.
    """

    precision: Precision
    profile: str
    ops: tuple[OpCost, ...]
    macs: int
    params: int
    bytes: int
    latency_ms: float
    fps: float
    energy_mj: float
    formula: str

    @classmethod
    def from_rows(cls, precision: Precision, profile: str, rows: list[OpCost], program: QProgram,
                  formula: str) -> CostReport:
        """Totals over per-op ``rows``; ``params`` counts each weight or bias tensor of ``program`` once."""
        latency_s = sum(r.time_s for r in rows)
        return cls(
            precision=precision,
            profile=profile,
            ops=tuple(rows),
            macs=sum(r.macs for r in rows),
            params=weight_elements(program),
            bytes=sum(r.bytes for r in rows),
            latency_ms=latency_s * 1e3,
            fps=1.0 / latency_s if latency_s > 0 else math.inf,
            energy_mj=sum(r.energy_j for r in rows) * 1e3,
            formula=formula,
        )


def weight_elements(program: QProgram) -> int:
    """Elements of the constant inputs (weights, biases) of the weighted ops, each tensor counted once."""
    weights = {name: _elements(program.tensor(name).shape)
               for op in program.ops if op.kind in WEIGHTED_KINDS
               for name in op.inputs[1:] if name and program.tensor(name).is_constant}
    return sum(weights.values())


def estimate(program: QProgram, profile: DeviceProfile, placement: Placement | None = None) -> CostReport:
    """Price the int8 program: tensors at their stored dtypes, int8 peak rate and energy per MAC.

    Args:
        program: the lowered program.
        profile: the device whose roofline and energy numbers to use.
        placement: the unit of each op (``pipeline.place``): each op is then priced on its unit, and
            tensors crossing units add the profile's crossing cost (see the module docstring).

    Returns:
        Per-op costs and totals.

    Raises:
        UnsupportedOpError: an op kind the model has no MAC count for.
        InternalError: ``placement`` is not one of ``program``.
        ProfileError: a unit has no MAC rate or energy for a dtype an op placed on it computes in.
    """
    if placement is not None:
        return _estimate_placed(program, profile, placement)
    return _estimate(program, profile, "int8")


def estimate_float(program: QProgram, profile: DeviceProfile) -> CostReport:
    """Price the same program as the float32 model it came from: 4-byte tensors, fp32 rate and energy.

    Args:
        program: the lowered program (its op list and shapes stand for the float model's).
        profile: the device whose roofline and energy numbers to use.

    Returns:
        Per-op costs and totals, comparable with :func:`estimate`'s.

    Raises:
        UnsupportedOpError: an op kind the model has no MAC count for.
    """
    return _estimate(program, profile, "fp32")


def _traffic(op: QOp) -> tuple[str, ...]:
    """The tensors whose bytes ``op`` moves: every input and output, except that GATHER reads only the rows
    it copies from its table (as many bytes as its output), not the whole table."""
    if op.kind == "GATHER":
        return (op.inputs[1], op.outputs[0], op.outputs[0])
    return (*op.inputs, *op.outputs)


def _estimate(program: QProgram, profile: DeviceProfile, precision: Precision) -> CostReport:
    perf, energy = profile.performance, profile.energy
    if precision == "int8":
        peak, mac_j = perf.peak_int8_macs_per_s, energy.int8_mac_j
    else:
        peak, mac_j = perf.peak_fp32_macs_per_s, energy.fp32_mac_j

    def tensor_bytes(name: str) -> int:
        tensor = program.tensor(name)
        itemsize = FLOAT_BYTES if precision == "fp32" else np.dtype(tensor.dtype).itemsize
        return _elements(tensor.shape) * itemsize

    rows: list[OpCost] = []
    for op in program.ops:
        macs = _macs(op, program)
        in_float = op_mode(op, program) == "float32"
        # A float island's ops run at the fp32 rate inside the int8 program too.
        op_peak, op_mac_j = (perf.peak_fp32_macs_per_s, energy.fp32_mac_j) if in_float else (peak, mac_j)
        # TFLite marks an absent optional input (e.g. no bias) with an empty name.
        moved = sum(tensor_bytes(t) for t in _traffic(op) if t)
        # Measured refinements (channel blocks, per-kind rates, an output roof) when the profile has them.
        op_dtype = "fp32" if precision == "fp32" or in_float else "int8"
        compute_s = compute_time_s(op, program, macs, op_peak, perf, op_dtype)
        memory_s = max(moved / perf.memory_bandwidth_bytes_per_s, output_time_s(op, program, perf, op_dtype))
        time_s = max(compute_s, memory_s) + perf.per_op_overhead_s
        energy_j = macs * op_mac_j + moved * energy.dram_byte_j + energy.static_power_w * time_s
        bound: Literal["compute", "memory"] = "compute" if compute_s >= memory_s else "memory"
        rows.append(OpCost(op.kind, op.source, macs, moved, time_s, energy_j, bound))
    return CostReport.from_rows(precision, profile.name, rows, program, _formula(profile, precision, peak, mac_j))


def _estimate_placed(program: QProgram, profile: DeviceProfile, placement: Placement) -> CostReport:
    """``estimate`` with each op on its placed unit and dtype, crossings between units included."""
    if len(placement.ops) != len(program.ops):
        raise InternalError(f"placement of {len(placement.ops)} ops given for a program of {len(program.ops)}")
    units = profile.units()
    inherits = {key: key not in profile.compute_units or profile.compute_units[key].performance is None
                for key in units}
    home = next(iter(units))
    producer_unit = {name: home for name in program.inputs}
    crossed: set[tuple[str, str]] = set()
    rows: list[OpCost] = []

    def nbytes(name: str) -> int:
        tensor = program.tensor(name)
        return math.prod(tensor.shape) * np.dtype(tensor.dtype).itemsize

    for op, where in zip(program.ops, placement.ops):
        unit = units[where.unit]
        perf, energy = unit.performance, unit.energy
        assert perf is not None and energy is not None  # profile.units() fills them
        if where.dtype not in perf.peak_macs_per_s or where.dtype not in energy.mac_j:
            raise ProfileError(f"{profile.name}: compute_units.{where.unit} has no peak_macs_per_s or mac_j for "
                               f"{where.dtype}, which {op.kind} ('{op.source}') is placed there at")
        macs = _macs(op, program)
        moved = sum(nbytes(t) for t in _traffic(op) if t)
        crossing_bytes = 0
        crossings = 0
        for t in op.inputs:
            src = producer_unit.get(t)
            if t and src is not None and src != where.unit and (t, where.unit) not in crossed:
                crossed.add((t, where.unit))
                crossing_bytes += nbytes(t)
                crossings += 1
        crossing_s = 0.0
        crossing_j = 0.0
        if crossings:
            assert profile.crossing is not None  # required by the schema with two or more units
            crossing_s = crossings * profile.crossing.overhead_s + crossing_bytes / profile.crossing.bandwidth_bytes_per_s
            crossing_j = crossing_bytes * profile.crossing.byte_j
        peak = perf.peak_macs_per_s[where.dtype]
        if inherits[where.unit]:
            # A unit priced with the top-level numbers also gets their measured refinements (cost_refine).
            compute_s = compute_time_s(op, program, macs, peak, profile.performance, where.dtype)
            memory_s = max(moved / perf.memory_bandwidth_bytes_per_s,
                           output_time_s(op, program, profile.performance, where.dtype))
        else:
            compute_s = macs / peak
            memory_s = moved / perf.memory_bandwidth_bytes_per_s
        time_s = max(compute_s, memory_s) + perf.per_op_overhead_s + crossing_s
        energy_j = (macs * energy.mac_j[where.dtype] + moved * energy.dram_byte_j
                    + energy.static_power_w * time_s + crossing_j)
        bound: Literal["compute", "memory"] = "compute" if compute_s >= memory_s else "memory"
        rows.append(OpCost(op.kind, op.source, macs, moved, time_s, energy_j, bound,
                           unit=where.unit, dtype=where.dtype, crossing_s=crossing_s))
        for t in op.outputs:
            producer_unit[t] = where.unit
    return CostReport.from_rows(
        "int8", profile.name, rows, program,
        (f"placed roofline on {profile.name}: each op on its unit ({placement.summary()}): "
         "time = max(MACs / peak[unit, dtype], bytes / bandwidth[unit]) + overhead[unit] + crossings; "
         "energy = MACs x mac_j[unit, dtype] + bytes x dram_byte_j[unit] + static_power[unit] x time "
         "+ crossing bytes x crossing.byte_j; a crossing costs crossing.overhead_s + bytes / "
         "crossing.bandwidth_bytes_per_s; latency and energy are sums over ops."))


def _macs(op: QOp, program: QProgram) -> int:
    try:
        counter = MAC_COUNTERS.get(op.kind)
    except RegistryError:
        known = ", ".join(MAC_COUNTERS)
        raise UnsupportedOpError(
            op.kind, op.source or op.outputs[0], f"the cost model cannot price it (it prices: {known})"
        ) from None
    return counter(op, program)


def _formula(profile: DeviceProfile, precision: Precision, peak: float, mac_j: float) -> str:
    perf, energy = profile.performance, profile.energy
    sizes = "stored dtypes (int8 activations and weights, int32 biases)" if precision == "int8" else "4 bytes"
    return (
        f"{precision} roofline per op on {profile.name}: "
        f"time = max(MACs / {peak:.4g} MAC/s, bytes / {perf.memory_bandwidth_bytes_per_s:.4g} B/s)"
        f" + {perf.per_op_overhead_s:.3g} s; "
        f"energy = MACs x {mac_j:.3g} J + bytes x {energy.dram_byte_j:.3g} J"
        f" + {energy.static_power_w:.3g} W x time; "
        f"bytes = inputs + weights + outputs at {sizes}, all assumed to travel to DRAM; "
        f"latency and energy are sums over ops."
    )
