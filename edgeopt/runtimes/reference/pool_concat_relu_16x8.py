"""MAX_POOL_2D (and its PADV2), CONCATENATION, RELU, RELU6 and MEAN in TFLite's 16x8 mode (int16
activations, zero point 0).

Each is the int8 kernel's arithmetic on int16 values, as LiteRT 2.3's int16 paths are:

* MAX_POOL_2D (``kernels/pooling.cc`` → ``reference/integer_ops/pooling.h`` ``MaxPool``, int16 overload):
  the window maximum from ``numeric_limits<int16_t>::lowest()``, clamped to the int16 activation range;
  input and output share one encoding.
* CONCATENATION (``kernels/concatenation.cc``, int16: every zero point must be 0): the values copied;
  the quantizer gives the inputs and the output one encoding, so no rescaling is lost.
* RELU, RELU6 (``kernels/activations.cc`` ``QuantizedReluX<int16_t>``): ``clamp(zp_out +
  MultiplyByQuantizedMultiplier(x - zp_in, m, s), act_min, act_max)`` with the int32 multiply of the
  build's rounding and the int16 bounds ``round(f / s_out)``. RELU_N1_TO_1 has no int16 case in LiteRT.
* MEAN (``kernels/reduce.cc`` ``EvalMean`` → ``QuantizedMeanOrSum<int16_t>``): the int8 integer mean
  (int32 sum, ``1 / n`` folded into the multiplier), clamped to int16.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from edgeopt.errors import UnsupportedOpError
from edgeopt.qprogram import QOp, QProgram
from edgeopt.runtimes.reference import concat, max_pool, mean, pad_variants
from edgeopt.runtimes.reference.activations import prepare_relu, relu_x
from edgeopt.runtimes.reference.conv_16x8 import activation_range_int16, symmetric_16x8
from edgeopt.runtimes.reference.int16_registry import INT16_KERNELS, INT16_PREPARERS
from edgeopt.runtimes.reference.prepare import Params

INT16_RELU_KINDS = ("RELU", "RELU6")


def _zero_points_zero(op: QOp, program: QProgram) -> None:
    """The 16x8 contract LiteRT's int16 kernels check: int16 activations with zero point 0."""
    for name in (*op.inputs, *op.outputs):
        t = program.tensor(name)
        if t.is_constant and t.dtype != "int16":
            continue
        if t.dtype != "int16" or t.qparams is None or int(t.qparams.zero_point[0]) != 0:
            raise UnsupportedOpError(op.kind, op.source, f"16x8 mode needs int16 tensor '{name}' with zero point 0")


@INT16_PREPARERS.register("MAX_POOL_2D")
def prepare_max_pool_16x8(op: QOp, program: QProgram) -> Params:
    """``pooling.cc`` Prepare for int16: the int8 window and shared encoding, the int16 activation range."""
    return {**max_pool.prepare_max_pool(op, program), **symmetric_16x8(op, program)}


INT16_KERNELS.register("MAX_POOL_2D")(max_pool._run_max_pool)  # dtype-generic: starts from int16's lowest


@INT16_PREPARERS.register("CONCATENATION")
def prepare_concatenation_16x8(op: QOp, program: QProgram) -> Params:
    """``concatenation.cc`` Prepare for int16: zero points 0, one shared encoding (as for int8)."""
    _zero_points_zero(op, program)
    return concat.prepare_concatenation(op, program)


INT16_KERNELS.register("CONCATENATION")(concat._run_concatenation)


@INT16_PREPARERS.register(*INT16_RELU_KINDS)
def prepare_relu_16x8(op: QOp, program: QProgram) -> Params:
    """``ReluPrepare`` (the int8 multiplier ``QuantizeMultiplier(s_in / s_out)``) with
    ``QuantizedReluX<int16_t>``'s bounds: the op's real range on the int16 output grid."""
    _zero_points_zero(op, program)
    as_fused = dataclasses.replace(op, options={**op.options, "fused_activation_function": op.kind})
    lo, hi = activation_range_int16(as_fused, program.tensor(op.outputs[0]).qparams)
    return {**prepare_relu(op, program), "activation_min": lo, "activation_max": hi}


@INT16_KERNELS.register(*INT16_RELU_KINDS)
def _run_relu_16x8(op: QOp, args: list[np.ndarray], program: QProgram) -> np.ndarray:
    return relu_x(args[0], op.params, program.rounding, np.int16)


@INT16_PREPARERS.register("MEAN")
def prepare_mean_16x8(op: QOp, program: QProgram) -> Params:
    """``reduce.cc`` Prepare for int16: the int8 multiplier with ``1 / n`` folded in; zero points 0."""
    _zero_points_zero(op, program)
    return mean.prepare_mean(op, program)


INT16_KERNELS.register("MEAN")(mean._run_mean)  # clamps to the input's dtype


# PADV2 (``pad.cc``, any dtype): the explicit padding in front of a MAX_POOL_2D whose ONNX padding is
# neither SAME nor VALID, padding with the int16 minimum.
INT16_PREPARERS.register("PADV2")(pad_variants.prepare_pad_v2)
INT16_KERNELS.register("PADV2")(pad_variants._run_pad_v2)
