"""BATCH_MATMUL: Prepare and the int8 and float32 kernels, TFLite ``reference/batch_matmul.h``
(``BatchMatMul``; int8 with ``FullyConnectedParams``). float32: a float64 matmul rounded once to float32
(see ``conv``).

Both operands are activations (per-tensor int8, any zero points); batch dimensions broadcast like numpy.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from edgeopt.errors import UnsupportedOpError
from edgeopt.qprogram import QOp, QProgram, Rounding
from edgeopt.runtimes.reference.arith.fixedpoint import int32_accumulator, quantize_multiplier, requantize
from edgeopt.runtimes.reference.prepare import per_tensor
from edgeopt.runtimes.reference.registry import F32, KERNELS, PREPARERS, Params, output_shape, right_aligned

# Largest |(a - zp_a) * (b - zp_b)| of two int8 activations.
MAX_ACTIVATION_PRODUCT = 255 * 255


@PREPARERS.register("BATCH_MATMUL", mode="int8")
def prepare_batch_matmul(op: QOp, program: QProgram) -> Params:
    """``batch_matmul.cc`` Prepare for int8: ``QuantizeMultiplier(double(s_lhs) * double(s_rhs) /
    double(s_out))``, offsets ``-zp_lhs``, ``-zp_rhs``, ``zp_out``, the full int8 range (no fused
    activation)."""
    if op.options.get("adj_x") or op.options.get("adj_y"):
        raise UnsupportedOpError(op.kind, op.source, "adj_x/adj_y are not supported by this kernel")
    s_lhs, zp_lhs = per_tensor(program, op.inputs[0], op)
    s_rhs, zp_rhs = per_tensor(program, op.inputs[1], op)
    s_out, zp_out = per_tensor(program, op.outputs[0], op)
    multiplier, shift = quantize_multiplier(float(np.float64(s_lhs) * np.float64(s_rhs) / np.float64(s_out)),
                                            program.rounding)
    return {"lhs_offset": -zp_lhs, "rhs_offset": -zp_rhs, "output_offset": zp_out,
            "output_multiplier": multiplier, "output_shift": shift, "activation_min": -128, "activation_max": 127}


def batch_matmul(lhs: np.ndarray, rhs: np.ndarray, p: Mapping[str, Any], rounding: Rounding) -> np.ndarray:
    """Int8 batched matrix product ``lhs[..., M, K] @ rhs[..., K, N]``.

    ``acc = Σ_k (lhs[.., m, k] + lhs_offset) * (rhs[.., k, n] + rhs_offset)`` in int32, then
    ``clamp(MultiplyByQuantizedMultiplier(acc, m, s) + output_offset, -128, 127)``. The sum is a float64
    matmul of integers below ``K * 255**2 < 2**53``: exact, then wrapped as the int32 accumulator would.
    """
    a = lhs.astype(np.float64) + p["lhs_offset"]
    b = rhs.astype(np.float64) + p["rhs_offset"]
    acc = np.matmul(a, b).astype(np.int64)
    acc = int32_accumulator(acc, lhs.shape[-1] * MAX_ACTIVATION_PRODUCT)
    return requantize(acc, p["output_multiplier"], p["output_shift"], p["output_offset"],
                      p["activation_min"], p["activation_max"], rounding)


@KERNELS.register("BATCH_MATMUL", mode="int8")
def _run_batch_matmul_int8(op: QOp, args: list[np.ndarray], program: QProgram) -> np.ndarray:
    return batch_matmul(*right_aligned(*args), op.params, program.rounding)


@KERNELS.register("BATCH_MATMUL", mode="float32")
def _run_batch_matmul_float32(op: QOp, args: list[np.ndarray], program: QProgram) -> np.ndarray:
    """``out[..., m, n] = sum_k a[..., m, k] * b[..., k, n]`` (``adj_x``/``adj_y`` transpose an operand)."""
    a, b = (np.asarray(v, np.float64) for v in args[:2])
    if op.options.get("adj_x", False):
        a = np.swapaxes(a, -1, -2)
    if op.options.get("adj_y", False):
        b = np.swapaxes(b, -1, -2)
    y = (a @ b).astype(F32)
    return y.reshape((args[0].shape[0],) + output_shape(op, program))
