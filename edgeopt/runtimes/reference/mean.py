"""MEAN: Prepare and the int8, 16x8 and float32 kernels (LiteRT ``kernels/reduce.cc`` ``EvalMean``).

* int8: ``EvalQuantizedMean`` → ``reference_ops::QuantizedMeanOrSum`` (``reference/reduce.h``, integer
  form, ``compute_sum = false``). LiteRT 2.3 runs every int8 MEAN under the reference kernels through
  this one integer path, whatever the axes, ``keep_dims`` or encodings (older TensorFlow Lite releases
  had a 4-D H,W special case, a truncating division for equal encodings and a float path; LiteRT 2.3
  matches none of them, measured).
* 16x8: ``QuantizedMeanOrSum<int16_t>``, the same integer mean (int32 sum, ``1 / n`` folded into the
  multiplier), clamped to int16; zero points 0.
* float32: the float reference path (``_run_mean_float32``).
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from edgeopt.errors import UnsupportedOpError
from edgeopt.qprogram import QOp, QProgram, Rounding
from edgeopt.runtimes.reference.arith.fixedpoint import multiply_by_quantized_multiplier, quantize_multiplier, wrap_int32
from edgeopt.runtimes.reference.prepare import zero_points_zero
from edgeopt.runtimes.reference.registry import F32, KERNELS, PREPARERS, Params, constant, output_shape


def resolve_axes(axes: list[int], rank: int) -> tuple[int, ...]:
    """TFLite ``ResolveAxis``: negative axes count from the end; duplicates dropped, order kept."""
    resolved: list[int] = []
    for a in axes:
        a = a + rank if a < 0 else a
        if a not in resolved:
            resolved.append(a)
    return tuple(resolved)


def mean_multiplier(multiplier: int, shift: int, n: int) -> tuple[int, int]:
    """``QuantizedMeanOrSum``'s folding of ``1 / n`` into the output multiplier.

    ``k = min(floor(log2 n), 32, 31 + shift)``; ``multiplier' = (multiplier << k) / n`` (int64,
    truncating; below ``2**31`` because ``2**k <= n``), ``shift' = shift - k`` (so ``>= -31``).
    """
    k = min(n.bit_length() - 1, 32, 31 + shift)
    return (multiplier << k) // n, shift - k


@PREPARERS.register("MEAN", mode="int8")
def prepare_mean(op: QOp, program: QProgram) -> Params:
    """``reduce.cc`` ``PrepareMeanOrSum`` for int8 (``QuantizeMultiplier(double(s_in) /
    double(s_out))``), with ``1 / n`` folded in as the kernel does, and the resolved axes."""
    x, y = program.tensor(op.inputs[0]), program.tensor(op.outputs[0])
    axis = program.tensor(op.inputs[1])
    if axis.data is None:
        raise UnsupportedOpError(op.kind, op.source, "axes computed at run time are not supported")
    if x.qparams is None or y.qparams is None:
        raise UnsupportedOpError(op.kind, op.source, "input and output must be quantized")
    raw = [int(a) for a in axis.data.reshape(-1)]
    rank = len(x.shape)
    if any(not -rank <= a < rank for a in raw):
        raise UnsupportedOpError(op.kind, op.source, f"axes {raw} out of range for a rank-{rank} input")
    axes = resolve_axes(raw, rank)
    n = int(np.prod([x.shape[a] for a in axes]))
    if n < 1:
        raise UnsupportedOpError(op.kind, op.source, "a mean over an empty axis")
    real = np.float64(np.float32(x.qparams.scale[0])) / np.float64(np.float32(y.qparams.scale[0]))
    multiplier, shift = mean_multiplier(*quantize_multiplier(float(real), program.rounding), n)
    return {
        "axes": axes,
        "num_elements": n,
        "output_multiplier": multiplier,
        "output_shift": shift,
        "input_zero_point": int(x.qparams.zero_point[0]),
        "output_zero_point": int(y.qparams.zero_point[0]),
    }


@PREPARERS.register("MEAN", mode="16x8")
def prepare_mean_16x8(op: QOp, program: QProgram) -> Params:
    """``reduce.cc`` Prepare for int16: the int8 multiplier with ``1 / n`` folded in; zero points 0."""
    zero_points_zero(op, program)
    return prepare_mean(op, program)


def mean(x: np.ndarray, p: Mapping[str, Any], rounding: Rounding) -> np.ndarray:
    """Int8 (or int16, the same ``QuantizedMeanOrSum`` arithmetic) mean of ``x`` over ``p["axes"]`` (kept as length-1 axes).

    ``acc = sum(x) - zp_in * n`` (int32), ``y = clamp(MultiplyByQuantizedMultiplier(acc,
    output_multiplier, output_shift) + zp_out)`` clamped to ``x``'s dtype, with the ``1 / n``-folded multiplier of
    ``prepare_mean``.

    Args:
        x: int8 or int16 input.
        p: the op's params from ``prepare_mean``.
        rounding: the rounding of ``MultiplyByQuantizedMultiplier``.

    Returns:
        array of ``x``'s dtype and rank, the reduced axes of length 1.
    """
    n = p["num_elements"]
    # The C++ sums into int32 and subtracts zp * n (an int64 product narrowed to int32): wrap as it does.
    acc = wrap_int32(x.astype(np.int64).sum(axis=p["axes"], keepdims=True) - p["input_zero_point"] * n)
    y = multiply_by_quantized_multiplier(acc, p["output_multiplier"], p["output_shift"], rounding)
    info = np.iinfo(x.dtype)
    return np.clip(y + p["output_zero_point"], info.min, info.max).astype(x.dtype)


@KERNELS.register("MEAN", mode=("int8", "16x8"))  # clamps to the input's dtype
def _run_mean(op: QOp, args: list[np.ndarray], program: QProgram) -> np.ndarray:
    x = args[0]
    p = dict(op.params)
    p["axes"] = tuple(a + 1 for a in p["axes"])  # past the run axis
    return mean(x, p, program.rounding).reshape((x.shape[0],) + output_shape(op, program))


@KERNELS.register("MEAN", mode="float32")
def _run_mean_float32(op: QOp, args: list[np.ndarray], program: QProgram) -> np.ndarray:
    """``reduce.cc``'s float reference path: a float32 running sum over the reduced elements in row-major
    order, divided once by their count: bit-exact (numpy's own ``mean`` sums pairwise and would differ)."""
    x = np.asarray(args[0], dtype=F32)
    rank = x.ndim - 1
    axes = sorted({int(a) % rank for a in np.ravel(constant(args[1]))})
    kept = [i for i in range(rank) if i not in axes]
    # Program axes (run axis first) with the reduced ones last, flattened: their row-major order is
    # the order in which the reference kernel visits them for each output element.
    moved = x.transpose([0] + [i + 1 for i in kept] + [i + 1 for i in axes])
    flat = moved.reshape(moved.shape[: 1 + len(kept)] + (-1,))
    total = np.zeros(flat.shape[:-1], dtype=F32)
    for i in range(flat.shape[-1]):
        total = total + flat[..., i]
    count = F32(flat.shape[-1])
    out = total / count
    return out.reshape((x.shape[0],) + output_shape(op, program))
