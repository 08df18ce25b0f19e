"""SQUARED_DIFFERENCE int8: Prepare and kernel, TFLite ``kernels/squared_difference.cc`` (the float32 kernel
is in ``float_only``). TensorFlow's converter writes it in int8 for Keras ``LayerNormalization``
(``tf.nn.moments``: the variance is ``MEAN(SQUARED_DIFFERENCE(x, MEAN(x)))``).

Both inputs are brought to the common scale ``2 * max(s1, s2)`` with 7 bits of headroom (as ADD does with
20), their difference squared in int32, and the square requantized to the output.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from edgeopt.errors import UnsupportedOpError
from edgeopt.qprogram import QOp, QProgram, Rounding
from edgeopt.runtimes.reference.add import binary_lookup
from edgeopt.runtimes.reference.arith.fixedpoint import (
    multiply_by_quantized_multiplier_smaller_than_one_exp as rescale,
)
from edgeopt.runtimes.reference.arith.fixedpoint import quantize_multiplier
from edgeopt.runtimes.reference.prepare import per_tensor
from edgeopt.runtimes.reference.registry import KERNELS, PREPARERS, Params, right_aligned

LEFT_SHIFT = 7


@PREPARERS.register("SQUARED_DIFFERENCE", mode="int8")
def prepare_squared_difference(op: QOp, program: QProgram) -> Params:
    """``squared_difference.cc`` Prepare for int8: offsets ``-zp1``, ``-zp2``, ``zp_out``; ``twice_max = 2 *
    max(s1, s2)``; ``QuantizeMultiplierSmallerThanOneExp`` of ``s_i / twice_max`` and of ``twice_max**2 /
    (2**14 * s_out)`` (all in double from the float32 scales). A factor of 1 or more fails TFLite's check."""
    s1, zp1 = per_tensor(program, op.inputs[0], op)
    s2, zp2 = per_tensor(program, op.inputs[1], op)
    s_out, zp_out = per_tensor(program, op.outputs[0], op)
    twice_max = 2 * np.float64(max(s1, s2))
    reals = (np.float64(s1) / twice_max, np.float64(s2) / twice_max,
             twice_max * twice_max / (np.float64(1 << 2 * LEFT_SHIFT) * np.float64(s_out)))
    if not all(0.0 <= r < 1.0 for r in reals):
        raise UnsupportedOpError(op.kind, op.source, f"output scale {float(s_out):g} is too small for inputs of "
                                 f"scales {float(s1):g} and {float(s2):g} (TFLite's Prepare refuses a rescale "
                                 "factor of 1 or more)")
    (m1, sh1), (m2, sh2), (mo, sho) = (quantize_multiplier(float(r), program.rounding) for r in reals)
    return {"input1_offset": -zp1, "input2_offset": -zp2, "output_offset": zp_out,
            "input1_multiplier": m1, "input1_shift": sh1, "input2_multiplier": m2, "input2_shift": sh2,
            "output_multiplier": mo, "output_shift": sho}


def squared_difference_func(a: np.ndarray, b: np.ndarray, p: Mapping[str, Any], rounding: Rounding) -> np.ndarray:
    """``SquaredDifference(int8_t, int8_t, ArithmeticParams)``: ``r_i = MBQMSmallerThanOneExp((x_i +
    offset_i) * 2**7, m_i, s_i)``, ``d = r_1 - r_2`` (``|d| <= 255 * 2**7``, so ``d**2 < 2**31``), ``out =
    clamp(MBQMSmallerThanOneExp(d * d, m_o, s_o) + output_offset, -128, 127)``."""
    r1 = rescale((a.astype(np.int64) + p["input1_offset"]) << LEFT_SHIFT, p["input1_multiplier"], p["input1_shift"],
                 rounding)
    r2 = rescale((b.astype(np.int64) + p["input2_offset"]) << LEFT_SHIFT, p["input2_multiplier"], p["input2_shift"],
                 rounding)
    d = r1 - r2
    out = rescale(d * d, p["output_multiplier"], p["output_shift"], rounding) + p["output_offset"]
    return np.clip(out, -128, 127).astype(np.int8)


@KERNELS.register("SQUARED_DIFFERENCE", mode="int8")
def _run_squared_difference_int8(op: QOp, args: list[np.ndarray], program: QProgram) -> np.ndarray:
    """Broadcasting like numpy (``BroadcastBinaryFunction4DSlow`` applies the same function per element),
    through ``add.binary_lookup``'s table of all 256 x 256 int8 pairs."""
    return binary_lookup(squared_difference_func, *right_aligned(*args), op.params, program.rounding)
