"""Typed, frozen models of a device profile (one TOML file per device), validated by pydantic v2.

Every model forbids unknown keys, so a misspelt key is an error rather than a silently ignored line, and
is strict, so ``"2.4e9"`` (a string) is not taken for a number. Numbers must be positive and finite.
"""
from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from edgeopt.qprogram import Rounding

Positive = Annotated[float, Field(gt=0, allow_inf_nan=False)]
NonEmpty = Annotated[str, Field(min_length=1)]


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, use_attribute_docstrings=True)


class Hardware(_Section):
    """What the profile runs on."""

    vendor: NonEmpty
    """Designer of the compute unit, e.g. ``"Arm"``."""
    core: NonEmpty
    """Compute unit the model runs on, e.g. ``"Cortex-A78"``."""
    soc: NonEmpty
    """A system-on-chip whose numbers the profile uses, e.g. ``"Qualcomm Snapdragon 888"``."""


class Runtime(_Section):
    """The software stack that executes the int8 program."""

    name: Literal["litert"]
    """Inference runtime: ``"litert"`` (TensorFlow Lite's successor)."""
    delegate: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")]
    """Delegate or kernel library inside the runtime, e.g. ``"xnnpack"``."""
    threads: Annotated[int, Field(ge=1)]
    """CPU threads the runtime uses; the performance numbers are for this many."""
    requantization_rounding: Rounding
    """How the runtime's kernels round when requantizing: ``"single"`` or ``"double"`` (gemmlowp)."""


class Performance(_Section):
    """Roofline parameters of the cost model (``edgeopt.runtimes.cost``)."""

    peak_int8_macs_per_s: Positive
    """Int8 multiply-accumulates per second at full use of the compute unit."""
    peak_fp32_macs_per_s: Positive
    """Float32 multiply-accumulates (fused multiply-adds) per second at full use."""
    memory_bandwidth_bytes_per_s: Positive
    """DRAM bandwidth the runtime's threads can sustain (not the SoC's theoretical peak)."""
    per_op_overhead_s: Positive
    """Fixed cost of dispatching one op, paid on top of its roofline time."""


class Energy(_Section):
    """Energy parameters of the cost model."""

    int8_mac_j: Positive
    """Joules per int8 multiply-accumulate, everything the core spends on it included."""
    fp32_mac_j: Positive
    """Joules per float32 multiply-accumulate."""
    dram_byte_j: Positive
    """Joules per byte moved to or from DRAM."""
    static_power_w: Positive
    """Power drawn while the model runs regardless of the work done (leakage, uncore), in watts."""


class DeviceProfile(_Section):
    """One device: identity, runtime, and the numbers the cost model prices a program with."""

    name: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9.-]*$")]
    """Profile name as given to ``--device``; a built-in profile's file is ``<name>.toml``."""
    description: NonEmpty
    hardware: Hardware
    runtime: Runtime
    performance: Performance
    energy: Energy
