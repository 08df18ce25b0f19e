"""ADD, AVERAGE_POOL_2D, QUANTIZE (int8 <-> int16 requantization) and the data-movement ops in TFLite's
16x8 mode (int16 activations, zero point 0).

* ADD (``kernels/add.cc`` with ``pot_scale_int16 = false``, the general int16 path, then
  ``reference/integer_ops/add.h`` ``AddFunc<int16_t>``): the int8 formula with ``left_shift = 15``
  (``65535 * 2**15 < 2**31``, so every intermediate fits int32).
* AVERAGE_POOL_2D (``reference/integer_ops/pooling.h``, int16 overload): the int8 average, rounded
  half away from zero, clamped to the int16 activation range.
* QUANTIZE from int8 to int16 or back (``kernels/quantize.cc`` → ``reference_ops::Requantize``):
  ``clamp(MultiplyByQuantizedMultiplier(x - zp_in, m, s) + zp_out)`` with ``m, s`` from
  ``QuantizeMultiplier(double(s_in) / double(s_out))`` and the build's rounding.
* PAD, RESHAPE, TRANSPOSE, STRIDED_SLICE: the int8 kernels, which move values of any dtype.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from edgeopt.errors import UnsupportedOpError
from edgeopt.qprogram import QOp, QProgram, Rounding
from edgeopt.runtimes.reference.conv_16x8 import activation_range_int16, symmetric_16x8
from edgeopt.runtimes.reference.arith.fixedpoint import (
    multiply_by_quantized_multiplier,
    quantize_multiplier,
)
from edgeopt.runtimes.reference.arith.fixedpoint import (
    multiply_by_quantized_multiplier_smaller_than_one_exp as rescale,
)
from edgeopt.runtimes.reference.arith.im2col import pad_for_windows, samples_per_chunk, window_tap
from edgeopt.runtimes.reference.int16_registry import INT16_KERNELS, INT16_PREPARERS
from edgeopt.runtimes.reference import pad, reshape, strided_slice, transpose
from edgeopt.runtimes.reference.prepare import (
    Params,
    _per_tensor,
    _smaller_than_one,
    prepare_average_pool,
    prepare_pad,
)
from edgeopt.runtimes.reference.registry import fold_run_axis, output_shape

ADD_LEFT_SHIFT_16 = 15


@INT16_PREPARERS.register("ADD")
def prepare_add_16x8(op: QOp, program: QProgram) -> Params:
    """``add.cc`` Prepare, general int16 scales: both inputs rescaled to ``2 * max(s1, s2)`` with 15 bits
    of headroom; all zero points must be 0."""
    s1, zp1 = _per_tensor(program, op.inputs[0], op)
    s2, zp2 = _per_tensor(program, op.inputs[1], op)
    s_out, zp_out = _per_tensor(program, op.outputs[0], op)
    if (zp1, zp2, zp_out) != (0, 0, 0) or any(program.tensor(t).dtype != "int16" for t in (*op.inputs, *op.outputs)):
        raise UnsupportedOpError(op.kind, op.source, "int16 ADD needs int16 inputs and output with zero point 0")
    twice_max = 2 * np.float64(max(s1, s2))
    m1, sh1 = _smaller_than_one(float(np.float64(s1) / twice_max), program.rounding, op)
    m2, sh2 = _smaller_than_one(float(np.float64(s2) / twice_max), program.rounding, op)
    real_out = twice_max / (np.float64(1 << ADD_LEFT_SHIFT_16) * np.float64(s_out))
    mo, sho = _smaller_than_one(float(real_out), program.rounding, op)
    lo, hi = activation_range_int16(op, program.tensor(op.outputs[0]).qparams)
    return {"left_shift": ADD_LEFT_SHIFT_16, "input1_multiplier": m1, "input1_shift": sh1,
            "input2_multiplier": m2, "input2_shift": sh2, "output_multiplier": mo, "output_shift": sho,
            "activation_min": lo, "activation_max": hi}


def add_16x8(a: np.ndarray, b: np.ndarray, p: Mapping[str, Any], rounding: Rounding) -> np.ndarray:
    """``AddFunc<int16_t>``: ``r_i = MBQMSmallerThanOneExp(x_i * 2**15, m_i, s_i)``, ``out =
    clamp(MBQMSmallerThanOneExp(r_1 + r_2, m_o, s_o), act_min, act_max)``, broadcasting like numpy."""
    r1 = rescale(a.astype(np.int64) << p["left_shift"], p["input1_multiplier"], p["input1_shift"], rounding)
    r2 = rescale(b.astype(np.int64) << p["left_shift"], p["input2_multiplier"], p["input2_shift"], rounding)
    out = rescale(r1 + r2, p["output_multiplier"], p["output_shift"], rounding)
    return np.clip(out, p["activation_min"], p["activation_max"]).astype(np.int16)


@INT16_KERNELS.register("ADD")
def _run_add_16x8(op: QOp, args: list[np.ndarray], program: QProgram) -> np.ndarray:
    a, b = args
    rank = max(a.ndim, b.ndim)
    a = a.reshape(a.shape[:1] + (1,) * (rank - a.ndim) + a.shape[1:])
    b = b.reshape(b.shape[:1] + (1,) * (rank - b.ndim) + b.shape[1:])
    return add_16x8(a, b, op.params, program.rounding)


@INT16_PREPARERS.register("AVERAGE_POOL_2D")
def prepare_average_pool_16x8(op: QOp, program: QProgram) -> Params:
    """``pooling.cc`` Prepare for int16: padding as for int8, the int16 activation range."""
    return {**prepare_average_pool(op, program), **symmetric_16x8(op, program)}


def average_pool_16x8(x: np.ndarray, p: Mapping[str, Any]) -> np.ndarray:
    """Int16 ``AveragePool``: ``(acc + n/2) / n`` if ``acc > 0`` else ``(acc - n/2) / n`` (C division),
    ``acc`` the sum of the window's valid part (int64 here, int32 in the C++: ``32768 * window`` fits
    either for windows below 65536 elements), clamped."""
    n, h, w, c = x.shape
    fh, fw = p["filter_height"], p["filter_width"]
    oh, ow = p["output_height"], p["output_width"]
    ones = pad_for_windows(np.ones((1, h, w, 1), dtype=np.int64), p, fh, fw, 1, 1)
    count = sum(window_tap(ones, p, i, j, 1, 1) for i in range(fh) for j in range(fw))
    half = count // 2
    out = np.empty((n, oh, ow, c), dtype=np.int16)
    chunk = samples_per_chunk(oh * ow * c * 4)
    for start in range(0, n, chunk):
        xp = pad_for_windows(x[start : start + chunk].astype(np.int64), p, fh, fw, 1, 1)
        acc = sum(window_tap(xp, p, i, j, 1, 1) for i in range(fh) for j in range(fw))
        avg = np.where(acc > 0, (acc + half) // count, -((half - acc) // count))
        out[start : start + xp.shape[0]] = np.clip(avg, p["activation_min"], p["activation_max"])
    return out


@INT16_KERNELS.register("AVERAGE_POOL_2D")
def _run_average_pool_16x8(op: QOp, args: list[np.ndarray], program: QProgram) -> np.ndarray:
    x = args[0]
    return average_pool_16x8(fold_run_axis(x), op.params).reshape((x.shape[0],) + output_shape(op, program))


@INT16_PREPARERS.register("QUANTIZE")
def prepare_requantize(op: QOp, program: QProgram) -> Params:
    """``quantize.cc`` Prepare for an int8 <-> int16 requantization: ``QuantizeMultiplier(double(s_in) /
    double(s_out))`` and both zero points."""
    dtypes = (program.tensor(op.inputs[0]).dtype, program.tensor(op.outputs[0]).dtype)
    if dtypes not in (("int8", "int16"), ("int16", "int8"), ("int16", "int16")):
        raise UnsupportedOpError(op.kind, op.source, f"no {dtypes[0]} → {dtypes[1]} QUANTIZE kernel")
    s_in, zp_in = _per_tensor(program, op.inputs[0], op)
    s_out, zp_out = _per_tensor(program, op.outputs[0], op)
    multiplier, shift = quantize_multiplier(float(np.float64(s_in) / np.float64(s_out)), program.rounding)
    return {"input_zero_point": zp_in, "output_zero_point": zp_out, "output_multiplier": multiplier,
            "output_shift": shift}


@INT16_KERNELS.register("QUANTIZE")
def _run_requantize(op: QOp, args: list[np.ndarray], program: QProgram) -> np.ndarray:
    """``reference_ops::Requantize``: ``clamp(MBQM(x - zp_in, m, s) + zp_out)`` to the output dtype."""
    p = op.params
    out_dtype = np.dtype(program.tensor(op.outputs[0]).dtype)
    info = np.iinfo(out_dtype)
    x = args[0].astype(np.int64) - p["input_zero_point"]
    y = multiply_by_quantized_multiplier(x, p["output_multiplier"], p["output_shift"], program.rounding)
    return np.clip(y + p["output_zero_point"], info.min, info.max).astype(out_dtype)


# Data movement: the int8 kernels copy values of any dtype; PAD pads with the output zero point (0).
INT16_PREPARERS.register("PAD")(prepare_pad)
INT16_KERNELS.register("PAD")(pad._run_pad)
INT16_KERNELS.register("RESHAPE")(reshape._run_reshape)
INT16_KERNELS.register("TRANSPOSE")(transpose._run_transpose)
INT16_KERNELS.register("STRIDED_SLICE")(strided_slice._run_strided_slice)
