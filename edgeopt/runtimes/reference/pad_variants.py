"""PADV2 and MIRROR_PAD, int8: TFLite ``reference/pad.h`` (constant value from an input) and
``kernels/mirror_pad.cc`` (reflected or symmetric borders). Neither rescales: the output shares the
input's encoding.
"""
from __future__ import annotations

import numpy as np

from edgeopt.errors import UnsupportedOpError
from edgeopt.qprogram import QOp, QProgram
from edgeopt.runtimes.reference.pad import pad
from edgeopt.runtimes.reference.prepare import PREPARERS, Params
from edgeopt.runtimes.reference.registry import KERNELS, constant


def _same_encoding(op: QOp, program: QProgram, *names: str) -> None:
    y = program.tensor(op.outputs[0]).qparams
    for name in names:
        q = program.tensor(name).qparams
        if q is None or y is None or not q.same_as(y):
            raise UnsupportedOpError(op.kind, op.source, f"'{name}' is not quantized like the output")


@PREPARERS.register("PADV2")
def prepare_pad_v2(op: QOp, program: QProgram) -> Params:
    """``pad.cc`` for int8 PADV2: the pad value is the int8 constant input, read as is, so it must share
    the output's encoding (as must the input)."""
    value = program.tensor(op.inputs[2])
    if value.data is None or value.data.size != 1:
        raise UnsupportedOpError(op.kind, op.source, "the pad value must be a one-element constant")
    _same_encoding(op, program, op.inputs[0], op.inputs[2])
    return {"pad_value": int(value.data.reshape(()))}


@KERNELS.register("PADV2")
def _run_pad_v2(op: QOp, args: list[np.ndarray], program: QProgram) -> np.ndarray:
    return pad(args[0], np.concatenate([[[0, 0]], constant(args[1])]), op.params["pad_value"])


def mirror_pad(x: np.ndarray, paddings: np.ndarray, mode: str) -> np.ndarray:
    """``x`` with borders mirrored: REFLECT leaves the edge out (numpy ``reflect``), SYMMETRIC repeats it
    (numpy ``symmetric``); TFLite requires each padding below the axis size (plus one for SYMMETRIC)."""
    return np.pad(x, [(int(a), int(b)) for a, b in paddings], mode="reflect" if mode == "REFLECT" else "symmetric")


@PREPARERS.register("MIRROR_PAD")
def prepare_mirror_pad(op: QOp, program: QProgram) -> Params:
    """``mirror_pad.cc``: paddings at most the axis size (minus one for REFLECT); no rescaling."""
    _same_encoding(op, program, op.inputs[0])
    mode = op.options["mode"]
    shape = program.tensor(op.inputs[0]).shape
    paddings = program.tensor(op.inputs[1]).data
    limit = 1 if mode == "REFLECT" else 0
    if paddings is None or np.any(paddings < 0) or np.any(paddings.max(axis=1) > np.array(shape) - limit):
        raise UnsupportedOpError(op.kind, op.source, f"{mode} paddings must be constants within the axis sizes")
    return {"mode": mode}


@KERNELS.register("MIRROR_PAD")
def _run_mirror_pad(op: QOp, args: list[np.ndarray], program: QProgram) -> np.ndarray:
    return mirror_pad(args[0], np.concatenate([[[0, 0]], constant(args[1])]), op.params["mode"])
