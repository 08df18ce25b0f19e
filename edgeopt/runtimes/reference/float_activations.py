"""Float32 kernels of the activations a float island may hold: RELU, RELU6, RELU_N1_TO_1, HARD_SWISH,
LOGISTIC, TANH and SOFTMAX, as LiteRT 2.3's float reference kernels compute them.

* RELU, RELU6, RELU_N1_TO_1: a clamp: bit-exact.
* HARD_SWISH (``reference/hard_swish.h``): ``x * min(6, max(0, x + 3)) / 6``, each step one float32
  operation: bit-exact.
* LOGISTIC (``reference/logistic.h``): 1 above 16.619047164916992188, ``exp(x)`` below -9, else
  ``1 / (1 + exp(-x))`` in float32, with ``expf`` taken as the correctly rounded float64 ``exp``.
* TANH: ``std::tanh`` taken as the correctly rounded float64 ``tanh``.
* SOFTMAX (``reference/softmax.h``): ``exp((x - max) * beta) / sum`` over the last axis; the sum is in
  float64 here (the reference sums in float32), so values may differ by an ulp or so.
"""
from __future__ import annotations

import numpy as np

from edgeopt.qprogram import QOp, QProgram
from edgeopt.runtimes.reference.activations import _tanh_f32
from edgeopt.runtimes.reference.float_ops import _ACTIVATION_BOUNDS, F32, FLOAT_KERNELS

# The float reference's LOGISTIC cut-offs (reference/logistic.h).
_LOGISTIC_UPPER = F32(16.619047164916992188)
_LOGISTIC_LOWER = F32(-9.0)


@FLOAT_KERNELS.register("RELU", "RELU6", "RELU_N1_TO_1")
def _run_relu(op: QOp, args: list[np.ndarray], program: QProgram) -> np.ndarray:
    lo, hi = _ACTIVATION_BOUNDS[op.kind]
    return np.clip(np.asarray(args[0], F32), F32(lo), F32(hi)).astype(F32)


@FLOAT_KERNELS.register("HARD_SWISH")
def _run_hard_swish(op: QOp, args: list[np.ndarray], program: QProgram) -> np.ndarray:
    x = np.asarray(args[0], F32)
    return x * np.minimum(F32(6.0), np.maximum(F32(0.0), x + F32(3.0))) / F32(6.0)


def _exp_f32(v: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        return np.exp(v.astype(np.float64)).astype(F32)


@FLOAT_KERNELS.register("LOGISTIC")
def _run_logistic(op: QOp, args: list[np.ndarray], program: QProgram) -> np.ndarray:
    x = np.asarray(args[0], F32)
    middle = F32(1.0) / (F32(1.0) + _exp_f32(-x))
    return np.where(x > _LOGISTIC_UPPER, F32(1.0), np.where(x < _LOGISTIC_LOWER, _exp_f32(x), middle)).astype(F32)


@FLOAT_KERNELS.register("TANH")
def _run_tanh(op: QOp, args: list[np.ndarray], program: QProgram) -> np.ndarray:
    return _tanh_f32(np.asarray(args[0], F32))


@FLOAT_KERNELS.register("SOFTMAX")
def _run_softmax(op: QOp, args: list[np.ndarray], program: QProgram) -> np.ndarray:
    x = np.asarray(args[0], F32)
    beta = F32(op.options.get("beta", 1.0))
    e = _exp_f32((x - x.max(axis=-1, keepdims=True)) * beta)
    total = e.astype(np.float64).sum(axis=-1, keepdims=True).astype(F32)
    return (e / total).astype(F32)
