"""Float islands: QUANTIZE, DEQUANTIZE and the float32 kernels an int8 program keeps in float.

An op whose output tensor is float32 runs a kernel of ``FLOAT_KERNELS`` (the executor and
``prepare_program`` dispatch on that dtype) and takes no integer parameters. QUANTIZE (float32 → int8)
is an integer-output op: its kernel is in ``registry.KERNELS`` and its Prepare records the output's
scale and zero point. The float32 forms of the other op families (a node of ``QuantizedGraph.float_nodes``)
are in ``float_compute``, ``float_movement`` and ``float_activations``.

Every kernel computes in numpy float32 in the order LiteRT 2.3's reference kernels (``BUILTIN_REF``)
compute in C++ float, so the results are the same bits where each step is one IEEE operation:

* DEQUANTIZE (``reference/dequantize.h``): ``float(double(scale) * (q - zero_point))``: bit-exact.
* QUANTIZE (``reference/quantize.h`` ``AffineQuantize``): ``round(x / float(scale))`` with a float32
  division and rounding half away from zero, plus the zero point, saturated: bit-exact.
* ADD, SUB, MUL (``reference/add.h``, ``sub.h``, ``mul.h``, float): one float32 operation per element,
  numpy broadcasting, then the fused activation's clamp: bit-exact.
* SQUARED_DIFFERENCE (``squared_difference.cc``): ``(a - b) * (a - b)`` in float32: bit-exact.
* RSQRT (``elementwise.cc``): ``1.f / std::sqrt(x)``, two correctly rounded float32 operations: bit-exact.
* MEAN (``reduce.cc``, reference path): a float32 running sum over the reduced elements in row-major
  order, divided once by their count: bit-exact (numpy's own ``mean`` sums pairwise and would differ).
* GELU (``reference/gelu.h``): ``0.5 * x * erfc(-x / sqrt(2))`` or, approximate,
  ``0.5 * x * (1 + tanh(sqrt(2 / pi) * (x + 0.044715 * x**3)))``. LiteRT evaluates ``erfc`` and
  ``tanh`` with Eigen's vectorised float32 approximations, which numpy does not have; here they are
  computed in float64 and rounded to float32 (the correctly rounded value). Measured on 1,024,000
  random elements per form: about a quarter of the float32 values differ from LiteRT's, by at most 3 ulp
  (erf form) or 5.8e-7 absolute (tanh form, where ``1 + tanh`` cancels); after the island's QUANTIZE
  none of the int8 values differed (an element differs only when its float value lies within those
  ulps of a rounding boundary; ``tests/test_float_islands.py`` allows 0.1 %).
"""
from __future__ import annotations

import math

import numpy as np

from edgeopt.errors import UnsupportedOpError
from edgeopt.qprogram import QOp, QProgram
from edgeopt.registry import OpRegistry, Registry
from edgeopt.runtimes.reference.prepare import PREPARERS, Params, _per_tensor
from edgeopt.runtimes.reference.registry import KERNELS, Kernel, constant

FLOAT_KERNELS: Registry[Kernel] = OpRegistry("float kernel")

F32 = np.float32
# TFLite's float activation bounds (CalculateActivationRange<float>).
_ACTIVATION_BOUNDS = {"NONE": (-np.inf, np.inf), "RELU": (0.0, np.inf), "RELU6": (0.0, 6.0),
                      "RELU_N1_TO_1": (-1.0, 1.0)}


def runs_in_float(op: QOp, program: QProgram) -> bool:
    """Whether ``op`` is part of a float island: its (first) output tensor is float32."""
    return program.tensor(op.outputs[0]).dtype == "float32"


@PREPARERS.register("QUANTIZE")
def prepare_quantize(op: QOp, program: QProgram) -> Params:
    """``quantize.cc`` Prepare for float32 → int8: the output's float32 scale and its zero point."""
    if program.tensor(op.inputs[0]).dtype != "float32":
        raise UnsupportedOpError(op.kind, op.source, "only float32 → int8 QUANTIZE is supported (no requantize)")
    scale, zero_point = _per_tensor(program, op.outputs[0], op)
    return {"scale": scale, "zero_point": zero_point}


def affine_quantize(x: np.ndarray, scale: np.float32, zero_point: int) -> np.ndarray:
    """TFLite ``AffineQuantize`` to int8: ``clamp(round_half_away(float32(x / scale)) + zp, -128, 127)``."""
    q = np.asarray(x, dtype=F32) / F32(scale)
    whole = np.trunc(q)
    # std::round: away from zero from a fraction of exactly one half on (the fraction is exact in float32).
    rounded = np.where(np.abs(q - whole) >= F32(0.5), whole + np.sign(q), whole)
    clamped = np.clip(rounded.astype(np.float64) + zero_point, -128, 127)
    return clamped.astype(np.int8)


@KERNELS.register("QUANTIZE")
def _run_quantize(op: QOp, args: list[np.ndarray], program: QProgram) -> np.ndarray:
    return affine_quantize(args[0], op.params["scale"], op.params["zero_point"])


@FLOAT_KERNELS.register("DEQUANTIZE")
def _run_dequantize(op: QOp, args: list[np.ndarray], program: QProgram) -> np.ndarray:
    """``static_cast<float>(double(scale) * (q - zero_point))``: exact in double, rounded once."""
    q = program.tensor(op.inputs[0]).qparams
    if q is None or q.per_channel:
        raise UnsupportedOpError(op.kind, op.source, "only per-tensor int8 → float32 DEQUANTIZE is supported")
    centred = args[0].astype(np.int64) - int(q.zero_point[0])
    return (np.float64(q.scale[0]) * centred).astype(F32)


def _fused(op: QOp, y: np.ndarray) -> np.ndarray:
    act = op.options.get("fused_activation_function", "NONE")
    if act not in _ACTIVATION_BOUNDS:
        raise UnsupportedOpError(op.kind, op.source, f"fused activation {act} is not supported")
    lo, hi = _ACTIVATION_BOUNDS[act]
    return y if act == "NONE" else np.clip(y, F32(lo), F32(hi)).astype(F32)


def _aligned(args: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Two run-axis float32 values, the lower-rank one's program axes aligned to the right."""
    a, b = (np.asarray(x, dtype=F32) for x in args[:2])
    rank = max(a.ndim, b.ndim)
    a = a.reshape(a.shape[:1] + (1,) * (rank - a.ndim) + a.shape[1:])
    b = b.reshape(b.shape[:1] + (1,) * (rank - b.ndim) + b.shape[1:])
    return a, b


@FLOAT_KERNELS.register("ADD")
def _run_add(op: QOp, args: list[np.ndarray], program: QProgram) -> np.ndarray:
    a, b = _aligned(args)
    return _fused(op, a + b)


@FLOAT_KERNELS.register("SUB")
def _run_sub(op: QOp, args: list[np.ndarray], program: QProgram) -> np.ndarray:
    a, b = _aligned(args)
    return _fused(op, a - b)


@FLOAT_KERNELS.register("MUL")
def _run_mul(op: QOp, args: list[np.ndarray], program: QProgram) -> np.ndarray:
    a, b = _aligned(args)
    return _fused(op, a * b)


@FLOAT_KERNELS.register("SQUARED_DIFFERENCE")
def _run_squared_difference(op: QOp, args: list[np.ndarray], program: QProgram) -> np.ndarray:
    a, b = _aligned(args)
    d = a - b
    return d * d


@FLOAT_KERNELS.register("RSQRT")
def _run_rsqrt(op: QOp, args: list[np.ndarray], program: QProgram) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return F32(1.0) / np.sqrt(np.asarray(args[0], dtype=F32))


@FLOAT_KERNELS.register("MEAN")
def _run_mean(op: QOp, args: list[np.ndarray], program: QProgram) -> np.ndarray:
    """Sum in float32, element after element in row-major order, then one division by the count."""
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
    return out.reshape((x.shape[0],) + program.tensor(op.outputs[0]).shape)


def _erfc(x: np.ndarray) -> np.ndarray:
    """``erfc`` of float32 values, computed in float64 and rounded once to float32."""
    return np.vectorize(math.erfc, otypes=[np.float64])(x.astype(np.float64)).astype(F32)


@FLOAT_KERNELS.register("GELU")
def _run_gelu(op: QOp, args: list[np.ndarray], program: QProgram) -> np.ndarray:
    x = np.asarray(args[0], dtype=F32)
    half_x = F32(0.5) * x
    if op.options.get("approximate", False):
        k = F32(math.sqrt(2.0 / math.pi))
        inner = k * (x + F32(0.044715) * x * x * x)
        t = np.tanh(inner.astype(np.float64)).astype(F32)
        return half_x * (F32(1.0) + t)
    return half_x * _erfc(x * F32(-math.sqrt(0.5)))
