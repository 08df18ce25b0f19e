"""MINIMUM: the int8 and float32 kernels, TFLite ``kernels/maximum_minimum.cc`` (``TFLiteOperation`` with
``MinimumOp``: ``reference_ops::MaximumMinimumBroadcastSlow`` on the raw values, numpy broadcasting).

The int8 kernel compares raw int8 values and requantizes nothing, so it is exact only when both operands
and the output share one encoding (what TensorFlow's converter writes, and what the lowering here makes:
``quantize.spec.SHARED_OPERAND_OPS``); other encodings are refused rather than read at the wrong scale.
Cross-layer equalization writes it as the per-channel ceiling of a ReLU6 it scaled across
(``optimize.cross_layer_equalization``).
"""
from __future__ import annotations

import numpy as np

from edgeopt.errors import UnsupportedOpError
from edgeopt.qprogram import QOp, QProgram
from edgeopt.runtimes.reference.registry import KERNELS, right_aligned


@KERNELS.register("MINIMUM", mode=("int8", "float32"))
def _run_minimum(op: QOp, args: list[np.ndarray], program: QProgram) -> np.ndarray:
    """``out = min(a, b)`` elementwise on the stored values (int8 codes or float32)."""
    encodings = [program.tensor(name).qparams for name in (*op.inputs[:2], op.outputs[0])]
    if encodings[0] is not None and not all(q is not None and q.same_as(encodings[0]) for q in encodings):
        raise UnsupportedOpError(op.kind, op.source, "an int8 MINIMUM whose operands and output do not share one "
                                 "encoding has no kernel here (TFLite compares raw values)")
    a, b = right_aligned(args[0], args[1])
    return np.minimum(a, b)
