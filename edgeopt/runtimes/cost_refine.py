"""Measured refinements of the roofline, used when a profile carries them (``profiles calibrate host``).

The plain roofline prices every MAC at the peak rate and every byte at the memory bandwidth. Measured
on a CPU with LiteRT + XNNPACK, three effects dominate the gap to real latency, each an optional key of
the profile's ``[performance]`` table (absent: the plain roofline):

- ``channel_granularity``: dense kernels (CONV_2D, FULLY_CONNECTED) work on channel blocks (a vector,
  or an AMX tile row of 64 int8 bytes), so a layer pays for its input and output channels rounded up
  to the block: a 16-channel int8 convolution costs as much as a 64-channel one on an AMX host.
- ``op_macs_per_s``: op kinds that reach a fixed fraction of the peak at best, such as
  DEPTHWISE_CONV_2D (9 MACs per output, no reduction over channels to vectorise), get their own rate.
- ``output_elements_per_s``: a third roof, the rate at which an op produces its outputs (requantize,
  clamp, store). On tensors that stay in cache this, not DRAM bandwidth, bounds int8 elementwise ops
  and the pointwise convolutions with few input channels.
"""
from __future__ import annotations

import math

from edgeopt.device_profiles.schema import Performance
from edgeopt.qprogram import QOp, QProgram

# Ops whose weights w[Co, ..., Ci] feed a dense matrix multiply: their MACs scale with Ci x Co.
DENSE_KINDS = frozenset({"CONV_2D", "FULLY_CONNECTED"})


def compute_time_s(op: QOp, program: QProgram, macs: int, peak: float, perf: Performance, dtype: str) -> float:
    """Seconds the op's MACs take: at its kind's measured rate if the profile has one, else at ``peak``,
    with a dense op's channels rounded up to the profile's granularity for ``dtype``."""
    rate = (perf.op_macs_per_s or {}).get(op.kind, {}).get(dtype, peak)
    granularity = (perf.channel_granularity or {}).get(dtype, 1)  # type: ignore[call-overload]
    if op.kind in DENSE_KINDS and granularity > 1 and macs:
        w = program.tensor(op.inputs[1]).shape
        for channels in (w[0], w[-1]):
            macs = macs * (math.ceil(channels / granularity) * granularity) // channels
    return macs / rate


def output_time_s(op: QOp, program: QProgram, perf: Performance, dtype: str) -> float:
    """Seconds to produce the op's output elements at the profile's rate for ``dtype`` (0 without one)."""
    rate = (perf.output_elements_per_s or {}).get(dtype)  # type: ignore[call-overload]
    if rate is None:
        return 0.0
    return sum(math.prod(program.tensor(t).shape) for t in op.outputs) / rate
