"""GELU int8: Prepare and kernel, TFLite ``kernels/activations.cc`` ``GeluPrepare`` (the float32 kernel is
in ``float_only``). TensorFlow's converter writes int8 GELU for Keras ``Dense(activation="gelu")``.

Prepare fills a 256-entry table with ``LUTPopulate<int8_t>`` of ``reference_ops::GeluTransform`` (``0.5f *
x * erfc(x * -sqrt(1/2))``) or, approximate, ``GeluTransformApproximate`` (``0.5f * x * (1 + tanh(sqrt(2 /
pi) * (x + 0.044715f * x**3)))``), every operation in float32; the kernel looks every element up.
``erfc`` and ``tanh`` are the correctly rounded float64 values narrowed to float32 (glibc's ``erfcf`` and
``tanhf`` are within an ulp of them), so an entry could differ only where a table value lies within an
ulp of a rounding boundary of the output scale.
"""
from __future__ import annotations

import math

import numpy as np

from edgeopt.qprogram import QOp, QProgram
from edgeopt.runtimes.reference.activations import lookup, lut_populate, tanh_f32
from edgeopt.runtimes.reference.registry import F32, KERNELS, PREPARERS, Params

SQRT_2_OVER_PI = F32(math.sqrt(2.0 / math.pi))
MINUS_SQRT_HALF = F32(-math.sqrt(0.5))


def _erfc_f32(v: np.ndarray) -> np.ndarray:
    return np.vectorize(math.erfc, otypes=[np.float64])(v.astype(np.float64)).astype(F32)


def gelu_transform(x: np.ndarray) -> np.ndarray:
    """``GeluTransform`` on float32 values: ``0.5f * x * erfc(x * float(-M_SQRT1_2))``."""
    return F32(0.5) * x * _erfc_f32(x * MINUS_SQRT_HALF)


def gelu_transform_approximate(x: np.ndarray) -> np.ndarray:
    """``GeluTransformApproximate`` on float32 values."""
    return F32(0.5) * x * (F32(1.0) + tanh_f32(SQRT_2_OVER_PI * (x + F32(0.044715) * x * x * x)))


@PREPARERS.register("GELU", mode="int8")
def prepare_gelu(op: QOp, program: QProgram) -> Params:
    """The table of ``GeluPrepare`` for int8 (``approximate`` picks the tanh form)."""
    transform = gelu_transform_approximate if op.options.get("approximate", False) else gelu_transform
    return {"table": lut_populate(op, program, transform)}


@KERNELS.register("GELU", mode="int8")
def _run_gelu_int8(op: QOp, args: list[np.ndarray], program: QProgram) -> np.ndarray:
    return lookup(op.params["table"], args[0])
