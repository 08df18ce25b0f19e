"""CONCATENATION: Prepare and the int8, 16x8 and float32 kernels, TFLite ``reference/concatenation.h``
``Concatenation`` (no rescaling).

LiteRT's int8 and int16 Prepare (``kernels/concatenation.cc``; int16: every zero point 0) requires every
input to carry the output's scale and zero point, so the kernel copies raw values of either dtype; the
quantizer gives a concat and its inputs one encoding (``pipeline.quantize.shared_ranges``). The float32
kernel copies too, then applies the fused activation: bit-exact.
"""
from __future__ import annotations

import numpy as np

from edgeopt.errors import UnsupportedOpError
from edgeopt.qprogram import QOp, QProgram
from edgeopt.runtimes.reference.prepare import zero_points_zero
from edgeopt.runtimes.reference.registry import (
    F32,
    KERNELS,
    PREPARERS,
    Params,
    fused_activation_float,
    output_shape,
)


def concatenation(xs: list[np.ndarray], axis: int) -> np.ndarray:
    """The inputs joined along ``axis`` (their values unchanged)."""
    return np.concatenate(xs, axis=axis)


@PREPARERS.register("CONCATENATION", mode="int8")
def prepare_concatenation(op: QOp, program: QProgram) -> Params:
    """``concatenation.cc`` Prepare for int8: all inputs and the output share one encoding."""
    out = program.tensor(op.outputs[0])
    rank = len(out.shape)
    axis = int(op.options["axis"])
    if not -rank <= axis < rank:
        raise UnsupportedOpError(op.kind, op.source, f"axis {axis} is out of range for rank {rank}")
    for name in op.inputs:
        q = program.tensor(name).qparams
        if q is None or out.qparams is None or not q.same_as(out.qparams):
            raise UnsupportedOpError(op.kind, op.source, f"input '{name}' is not quantized like the output")
    if op.options.get("fused_activation_function", "NONE") != "NONE":
        raise UnsupportedOpError(op.kind, op.source, "a fused activation has no int8 CONCATENATION kernel")
    return {"axis": axis % rank}


@PREPARERS.register("CONCATENATION", mode="16x8")
def prepare_concatenation_16x8(op: QOp, program: QProgram) -> Params:
    """``concatenation.cc`` Prepare for int16: zero points 0, one shared encoding (as for int8)."""
    zero_points_zero(op, program)
    return prepare_concatenation(op, program)


@KERNELS.register("CONCATENATION", mode=("int8", "16x8"))
def _run_concatenation(op: QOp, args: list[np.ndarray], program: QProgram) -> np.ndarray:
    # Constant inputs carry a run axis of 1: broadcast them to the batch of runs.
    n = max(a.shape[0] for a in args)
    return concatenation([np.broadcast_to(a, (n,) + a.shape[1:]) for a in args], op.params["axis"] + 1)


@KERNELS.register("CONCATENATION", mode="float32")
def _run_concatenation_float32(op: QOp, args: list[np.ndarray], program: QProgram) -> np.ndarray:
    rank = len(output_shape(op, program))
    axis = int(op.options["axis"]) % rank
    n = max(a.shape[0] for a in args)  # constant inputs carry a run axis of 1
    y = np.concatenate([np.broadcast_to(a, (n,) + a.shape[1:]) for a in args], axis=axis + 1)
    return fused_activation_float(op, y.astype(F32))
