"""CONCATENATION, int8: TFLite ``reference/concatenation.h`` ``Concatenation`` (no rescaling).

LiteRT's int8 Prepare (``kernels/concatenation.cc``) requires every input to carry the output's scale
and zero point, so the kernel copies raw values; the quantizer gives a concat and its inputs one
encoding (``pipeline.quantize.shared_ranges``).
"""
from __future__ import annotations

import numpy as np

from edgeopt.errors import UnsupportedOpError
from edgeopt.qprogram import QOp, QProgram
from edgeopt.runtimes.reference.prepare import PREPARERS, Params
from edgeopt.runtimes.reference.registry import KERNELS


def concatenation(xs: list[np.ndarray], axis: int) -> np.ndarray:
    """The int8 inputs joined along ``axis`` (their values unchanged)."""
    return np.concatenate(xs, axis=axis)


@PREPARERS.register("CONCATENATION")
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


@KERNELS.register("CONCATENATION")
def _run_concatenation(op: QOp, args: list[np.ndarray], program: QProgram) -> np.ndarray:
    # Constant inputs carry a run axis of 1: broadcast them to the batch of runs.
    n = max(a.shape[0] for a in args)
    return concatenation([np.broadcast_to(a, (n,) + a.shape[1:]) for a in args], op.params["axis"] + 1)
