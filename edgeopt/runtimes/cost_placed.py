"""The int8 program priced op by op on the compute unit its placement chose, plus the cost of crossing
units.

Each op uses its unit's roofline (``compute_units.<unit>.performance`` and ``.energy``, per dtype; a unit
without its own numbers uses the top-level ones and their measured refinements, as ``cost.estimate``):

    time   = max(MACs / peak[unit, dtype], bytes / bandwidth[unit]) + overhead[unit] + crossing
    energy = MACs * mac_j[unit, dtype] + bytes * dram_byte_j[unit] + static_power[unit] * time
             + crossing_bytes * crossing.byte_j

``crossing`` is paid by an op for each activation input produced on another unit (and for a graph
input read by a unit other than the first in the fallback order): ``crossing.overhead_s +
bytes / crossing.bandwidth_bytes_per_s``, once per tensor and destination unit.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Literal

import numpy as np

from edgeopt.device_profiles import DeviceProfile
from edgeopt.errors import InternalError, ProfileError
from edgeopt.qprogram import QProgram
from edgeopt.runtimes.cost import CostReport, OpCost, _macs
from edgeopt.runtimes.cost_refine import compute_time_s, output_time_s

if TYPE_CHECKING:
    from edgeopt.qprogram import Placement


def estimate_placed(program: QProgram, profile: DeviceProfile, placement: Placement) -> CostReport:
    """Price ``program`` with each op on its placed unit and dtype, crossings between units included.

    Raises:
        InternalError: ``placement`` is not one of ``program``.
        ProfileError: a unit has no MAC rate or energy for a dtype an op placed on it computes in.
        UnsupportedOpError: an op kind the model has no MAC count for.
    """
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
        moved = sum(nbytes(t) for t in (*op.inputs, *op.outputs) if t)
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
