"""Measured refinements of the roofline, used when a profile carries them (``profiles calibrate host``).

The plain roofline prices every MAC at the peak rate and every byte at the memory bandwidth. Measured
on a CPU with LiteRT + XNNPACK, three effects dominate the gap to real latency, each an optional key of
the profile's ``[performance]`` table (absent: the plain roofline):

- ``channel_granularity``: dense kernels (CONV_2D, FULLY_CONNECTED) work on channel blocks, one per
  axis (XNNPACK's int8 GEMM on this host: a tile of 16 output channels, a reduction step of 8 input
  channels), so a layer pays for its output channels rounded up to the output block and its input
  channels rounded up to the input block: 11 output channels cost what 16 cost, 11 inputs what 16 cost.
- ``op_macs_per_s``: op kinds that reach a fixed fraction of the peak at best, such as
  DEPTHWISE_CONV_2D (9 MACs per output, no reduction over channels to vectorise), get their own rate.
- ``output_elements_per_s``: a third roof, the rate at which an op produces its outputs (requantize,
  clamp, store). On tensors that stay in cache this, not DRAM bandwidth, bounds int8 elementwise ops.
  A dense kernel pays it *on top of* its MACs: XNNPACK's GEMM requantizes and stores each output tile
  after accumulating it, so the two do not overlap. Measured on this host (a 3x3 int8 CONV_2D at 32x32,
  64 outputs, inputs swept): 20.7 us per block of 8 inputs plus 9.3 us at any width, the 65536 outputs
  at the element rate the ADDs reach (7e9/s). This is why a spatial SVD pair, which writes its
  intermediate tensor and its output, saves far less time than MACs on narrow layers.
"""
from __future__ import annotations

import math

from edgeopt.device_profiles.schema import Performance
from edgeopt.qprogram import QOp, QProgram

# Ops whose weights w[Co, ..., Ci] feed a dense matrix multiply: their MACs scale with Ci x Co.
DENSE_KINDS = frozenset({"CONV_2D", "FULLY_CONNECTED"})


def compute_time_s(op: QOp, program: QProgram, macs: int, peak: float, perf: Performance, dtype: str) -> float:
    """Seconds the op's MACs take: at its kind's measured rate if the profile has one, else at ``peak``.

    A dense op's weight ``w[Co, ..., Ci]`` is priced as ``MACs * ceil(Co / bo) * bo / Co * ceil(Ci / bi) * bi / Ci``
    with ``(bo, bi)`` the profile's output and input channel blocks for ``dtype``: flat inside a block, one
    step at each block edge; plus the time to produce its outputs (``output_time_s``, 0 without a rate),
    which a dense kernel does after its MACs, not in their shadow.
    """
    rate = (perf.op_macs_per_s or {}).get(op.kind, {}).get(dtype, peak)
    if op.kind not in DENSE_KINDS or not macs:
        return macs / rate
    w = program.tensor(op.inputs[1]).shape
    for channels, block in zip((w[0], w[-1]), perf.channel_block(dtype)):
        macs = macs * (math.ceil(channels / block) * block) // channels
    return macs / rate + output_time_s(op, program, perf, dtype)


def output_time_s(op: QOp, program: QProgram, perf: Performance, dtype: str) -> float:
    """Seconds to produce the op's output elements at the profile's rate for ``dtype`` (0 without one)."""
    rate = (perf.output_elements_per_s or {}).get(dtype)  # type: ignore[call-overload]
    if rate is None:
        return 0.0
    return sum(math.prod(program.tensor(t).shape) for t in op.outputs) / rate
