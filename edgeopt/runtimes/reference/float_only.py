"""The ops a program only ever runs in float32 (inside a float island): GELU, SQUARED_DIFFERENCE,
RSQRT, DIV and SQRT, as LiteRT 2.3's float reference kernels (``BUILTIN_REF``) compute them.

SQUARED_DIFFERENCE, RSQRT, DIV and SQRT are bit-exact. GELU: LiteRT evaluates ``erfc`` and ``tanh`` with Eigen's
vectorised float32 approximations, which numpy does not have; here they are computed in float64 and
rounded to float32 (the correctly rounded value). Measured on 1,024,000 random elements per form: about
a quarter of the float32 values differ from LiteRT's, by at most 3 ulp (erf form) or 5.8e-7 absolute
(tanh form, where ``1 + tanh`` cancels); after the island's QUANTIZE none of the int8 values differed
(an element differs only when its float value lies within those ulps of a rounding boundary;
``tests/pipeline/lower/test_float_islands.py`` allows 0.1 %).
"""
from __future__ import annotations

import math

import numpy as np

from edgeopt.qprogram import QOp, QProgram
from edgeopt.runtimes.reference.registry import F32, KERNELS, right_aligned


@KERNELS.register("SQUARED_DIFFERENCE", mode="float32")
def _run_squared_difference(op: QOp, args: list[np.ndarray], program: QProgram) -> np.ndarray:
    """``squared_difference.cc``: ``(a - b) * (a - b)`` in float32: bit-exact."""
    a, b = right_aligned(*(np.asarray(x, dtype=F32) for x in args))
    d = a - b
    return d * d


@KERNELS.register("RSQRT", mode="float32")
def _run_rsqrt(op: QOp, args: list[np.ndarray], program: QProgram) -> np.ndarray:
    """``elementwise.cc``: ``1.f / std::sqrt(x)``, two correctly rounded float32 operations: bit-exact."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return F32(1.0) / np.sqrt(np.asarray(args[0], dtype=F32))


@KERNELS.register("DIV", mode="float32")
def _run_div(op: QOp, args: list[np.ndarray], program: QProgram) -> np.ndarray:
    """``reference_ops::Div`` (``BroadcastDivSlow``) for float32: ``a / b``, one correctly rounded float32
    division per element, no fused activation: bit-exact."""
    a, b = right_aligned(*(np.asarray(x, dtype=F32) for x in args))
    with np.errstate(divide="ignore", invalid="ignore"):
        return a / b


@KERNELS.register("SQRT", mode="float32")
def _run_sqrt(op: QOp, args: list[np.ndarray], program: QProgram) -> np.ndarray:
    """``elementwise.cc``: ``std::sqrt(x)`` in float32, correctly rounded: bit-exact."""
    with np.errstate(invalid="ignore"):
        return np.sqrt(np.asarray(args[0], dtype=F32))


def _erfc(x: np.ndarray) -> np.ndarray:
    """``erfc`` of float32 values, computed in float64 and rounded once to float32."""
    return np.vectorize(math.erfc, otypes=[np.float64])(x.astype(np.float64)).astype(F32)


@KERNELS.register("GELU", mode="float32")
def _run_gelu(op: QOp, args: list[np.ndarray], program: QProgram) -> np.ndarray:
    """``reference/gelu.h``: ``0.5 * x * erfc(-x / sqrt(2))`` or, approximate, ``0.5 * x * (1 + tanh(
    sqrt(2 / pi) * (x + 0.044715 * x**3)))`` (see the module docstring for how close it comes)."""
    x = np.asarray(args[0], dtype=F32)
    half_x = F32(0.5) * x
    if op.options.get("approximate", False):
        k = F32(math.sqrt(2.0 / math.pi))
        inner = k * (x + F32(0.044715) * x * x * x)
        t = np.tanh(inner.astype(np.float64)).astype(F32)
        return half_x * (F32(1.0) + t)
    return half_x * _erfc(x * F32(-math.sqrt(0.5)))
