"""Typed, frozen models of a device profile (one TOML file per device), validated by pydantic v2.

Every model forbids unknown keys, so a misspelt key is an error rather than a silently ignored line, and
is strict, so ``"2.4e9"`` (a string) is not taken for a number. Numbers must be positive and finite.
"""
from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from edgeopt.device_profiles.base import NonEmpty, Positive, PositiveInt, Section
from edgeopt.device_profiles.compute_units import (ComputeUnit, Crossing, FallbackOrder, OpRule, UnitEnergy,
                                                   UnitPerformance)
from edgeopt.device_profiles.quantization import Quantization, tflite_int8_spec
from edgeopt.qprogram import Dtype, Rounding


class Hardware(Section):
    """What the profile runs on."""

    vendor: NonEmpty
    """Designer of the compute unit, e.g. ``"Arm"``."""
    core: NonEmpty
    """Compute unit the model runs on, e.g. ``"Cortex-A78"``."""
    soc: NonEmpty
    """A system-on-chip whose numbers the profile uses, e.g. ``"Qualcomm Snapdragon 888"``."""


class Runtime(Section):
    """The software stack that executes the int8 program."""

    name: Literal["litert", "tflite-micro", "onnxruntime"]
    """Inference runtime: ``"litert"`` (TensorFlow Lite's successor), ``"tflite-micro"`` (microcontrollers),
    ``"onnxruntime"``."""
    delegate: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")]
    """Delegate, execution provider or kernel library inside the runtime: ``"xnnpack"``, ``"qnn"``
    (Qualcomm AI Engine Direct, Hexagon HTP), ``"edgetpu"`` (libedgetpu), ``"ethos-u"``, ..."""
    compiler: NonEmpty | None = None
    """Ahead-of-time compiler the .tflite goes through first, with its version: ``"edgetpu_compiler 16"``,
    ``"vela 3.x"``; None when the runtime takes the .tflite as it is."""
    threads: Annotated[int, Field(ge=1)]
    """CPU threads the runtime uses; the performance numbers are for this many."""
    requantization_rounding: Rounding
    """How the runtime's kernels round when requantizing: ``"single"`` or ``"double"`` (gemmlowp)."""


class ChannelBlock(Section):
    """The channel blocks a dense kernel (CONV_2D, FULLY_CONNECTED) works in: it runs a layer's output and
    input channels rounded up to a multiple of these (XNNPACK's int8 GEMM here: 16 outputs by 8 inputs)."""

    output: PositiveInt
    """Output channels are padded up to a multiple of this (the kernel's tile of outputs)."""
    input: PositiveInt
    """Input channels are padded up to a multiple of this (the kernel's reduction step)."""


class Performance(Section):
    """Roofline parameters of the cost model (``edgeopt.runtimes.cost``)."""

    peak_int8_macs_per_s: Positive
    """Int8 multiply-accumulates per second at full use of the compute unit."""
    peak_fp32_macs_per_s: Positive
    """Float32 multiply-accumulates (fused multiply-adds) per second at full use."""
    peak_int16_macs_per_s: Positive | None = None
    """Multiply-accumulates per second of ops with int16 activations and int8 weights (w8a16); None:
    the profile does not price int16 ops on this unit."""
    memory_bandwidth_bytes_per_s: Positive
    """DRAM bandwidth the runtime's threads can sustain (not the SoC's theoretical peak)."""
    per_op_overhead_s: Positive
    """Fixed cost of dispatching one op, paid on top of its roofline time."""
    channel_granularity: dict[Dtype, ChannelBlock] | None = None
    """Optional refinement measured by ``profiles calibrate host``: the output and input channel blocks of
    the dense kernels per dtype, ``{ int8 = { output = 16, input = 8 } }``; a single number (the form
    before December 2026) is one block for both axes."""
    op_macs_per_s: dict[str, dict[str, Positive]] | None = None
    """Optional refinement measured by ``profiles calibrate host``: MAC rates of particular op kinds
    (e.g. DEPTHWISE_CONV_2D), which reach less of the peak than a dense convolution."""
    output_elements_per_s: dict[Dtype, Positive] | None = None
    """Optional refinement measured by ``profiles calibrate host``: output elements written per second."""

    @field_validator("channel_granularity", mode="before")
    @classmethod
    def _one_block_for_both_axes(cls, value: object) -> object:
        if isinstance(value, dict):
            return {k: {"output": v, "input": v} if isinstance(v, int) and not isinstance(v, bool) else v
                    for k, v in value.items()}
        return value

    def channel_block(self, dtype: str) -> tuple[int, int]:
        """``(output, input)`` channel blocks of the dense kernels for ``dtype``; (1, 1) when not measured."""
        block = (self.channel_granularity or {}).get(dtype)  # type: ignore[call-overload]
        return (block.output, block.input) if block is not None else (1, 1)


class Energy(Section):
    """Energy parameters of the cost model."""

    int8_mac_j: Positive
    """Joules per int8 multiply-accumulate, everything the core spends on it included."""
    fp32_mac_j: Positive
    """Joules per float32 multiply-accumulate."""
    int16_mac_j: Positive | None = None
    """Joules per multiply-accumulate with int16 activations (w8a16), when priced."""
    dram_byte_j: Positive
    """Joules per byte moved to or from DRAM."""
    static_power_w: Positive
    """Power drawn while the model runs regardless of the work done (leakage, uncore), in watts."""


class DeviceProfile(Section):
    """One device: identity, runtime, and the numbers the cost model prices a program with."""

    name: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9.-]*$")]
    """Profile name as given to ``--device``; a built-in profile's file is ``<name>.toml``."""
    description: NonEmpty
    hardware: Hardware
    runtime: Runtime
    performance: Performance
    """Numbers of the preferred compute unit: the whole program is priced with them when not placed."""
    energy: Energy
    quantization: Quantization = Field(default_factory=tflite_int8_spec)
    """Quantization rules (AIMET vocabulary); TFLite's int8 spec when absent."""
    compute_units: dict[Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$")], ComputeUnit] = {}
    """Units by name (``npu``, ``cpu``, ...); none: one CPU running every op with the top-level numbers."""
    placement: FallbackOrder | None = None
    """Fallback order of the units; required when there are compute units."""
    crossing: Crossing | None = None
    """Cost of moving a tensor between units; required when there are two or more."""

    @model_validator(mode="after")
    def _units_are_ordered(self) -> DeviceProfile:
        if (self.performance.peak_int16_macs_per_s is None) != (self.energy.int16_mac_j is None):
            raise ValueError("performance.peak_int16_macs_per_s and energy.int16_mac_j go together")
        if not self.compute_units:
            if self.placement is not None:
                raise ValueError("placement given without compute_units")
            return self
        if self.placement is None:
            raise ValueError("compute_units need a [placement] fallback_order")
        order = self.placement.fallback_order
        if sorted(order) != sorted(self.compute_units) or len(set(order)) != len(order):
            raise ValueError(f"placement.fallback_order {order} must name each of the compute_units "
                             f"{sorted(self.compute_units)} once")
        if len(order) > 1 and self.crossing is None:
            raise ValueError("two or more compute_units need a [crossing] section")
        return self

    def units(self) -> dict[str, ComputeUnit]:
        """The compute units in fallback order, each with its own or the top-level numbers."""
        if not self.compute_units:
            cpu = ComputeUnit(kind="cpu", name=self.hardware.core, ops={"*": OpRule()})
            return {"cpu": self._priced(cpu)}
        assert self.placement is not None  # checked by _units_are_ordered
        return {name: self._priced(self.compute_units[name]) for name in self.placement.fallback_order}

    def _priced(self, unit: ComputeUnit) -> ComputeUnit:
        perf, energy = self.performance, self.energy
        return unit.model_copy(update={
            "performance": unit.performance or UnitPerformance(
                peak_macs_per_s={"int8": perf.peak_int8_macs_per_s, "fp32": perf.peak_fp32_macs_per_s,
                                 **({"int16": perf.peak_int16_macs_per_s} if perf.peak_int16_macs_per_s else {})},
                memory_bandwidth_bytes_per_s=perf.memory_bandwidth_bytes_per_s,
                per_op_overhead_s=perf.per_op_overhead_s),
            "energy": unit.energy or UnitEnergy(
                mac_j={"int8": energy.int8_mac_j, "fp32": energy.fp32_mac_j,
                       **({"int16": energy.int16_mac_j} if energy.int16_mac_j else {})},
                dram_byte_j=energy.dram_byte_j, static_power_w=energy.static_power_w),
        })
