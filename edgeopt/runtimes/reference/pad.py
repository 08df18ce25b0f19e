"""PAD, PADV2 and MIRROR_PAD: Prepare and the int8, 16x8 and float32 kernels, TFLite ``reference/pad.h``
(constant padding: PAD with the output zero point, PADV2 with a value from an input) and
``kernels/mirror_pad.cc`` (reflected or symmetric borders). None rescales: the output shares the
input's encoding. The kernels copy values of any dtype: one serves int8 and 16x8, and the float32 ones
are bit-exact.
"""
from __future__ import annotations

import numpy as np

from edgeopt.errors import UnsupportedOpError
from edgeopt.qprogram import QOp, QProgram
from edgeopt.runtimes.reference.prepare import per_tensor
from edgeopt.runtimes.reference.registry import F32, KERNELS, PREPARERS, Params, constant


@PREPARERS.register("PAD", mode=("int8", "16x8"))
def prepare_pad(op: QOp, program: QProgram) -> Params:
    """``pad.cc``: a quantized PAD without constant values pads with the output zero point (``pad_value``;
    0 in 16x8 mode)."""
    _, zp_out = per_tensor(program, op.outputs[0], op)
    return {"pad_value": zp_out}


def _paddings(args: list[np.ndarray]) -> list[tuple[int, int]]:
    """The paddings input (``(before, after)`` per program axis), with none for the run axis."""
    return [(0, 0)] + [(int(a), int(b)) for a, b in constant(args[1])]


def pad(x: np.ndarray, paddings: np.ndarray | list[tuple[int, int]], pad_value: int) -> np.ndarray:
    """``x`` with ``paddings[d] = (before, after)`` elements of ``pad_value`` added along each axis d.

    For a quantized PAD without a constant-values input, LiteRT pads with the output zero point (the
    real value 0), which ``prepare_pad`` stores as ``pad_value``.
    """
    return np.pad(x, [(int(a), int(b)) for a, b in paddings], constant_values=pad_value)


@KERNELS.register("PAD", mode=("int8", "16x8"))
def _run_pad(op: QOp, args: list[np.ndarray], program: QProgram) -> np.ndarray:
    return pad(args[0], _paddings(args), op.params["pad_value"])


def _same_encoding(op: QOp, program: QProgram, *names: str) -> None:
    y = program.tensor(op.outputs[0]).qparams
    for name in names:
        q = program.tensor(name).qparams
        if q is None or y is None or not q.same_as(y):
            raise UnsupportedOpError(op.kind, op.source, f"'{name}' is not quantized like the output")


@PREPARERS.register("PADV2", mode=("int8", "16x8"))
def prepare_pad_v2(op: QOp, program: QProgram) -> Params:
    """``pad.cc`` for int8 (and int16) PADV2: the pad value is the constant input, read as is, so it must
    share the output's encoding (as must the input). In 16x8 mode it pads in front of a MAX_POOL_2D whose
    ONNX padding is neither SAME nor VALID, with the int16 minimum."""
    value = program.tensor(op.inputs[2])
    if value.data is None or value.data.size != 1:
        raise UnsupportedOpError(op.kind, op.source, "the pad value must be a one-element constant")
    _same_encoding(op, program, op.inputs[0], op.inputs[2])
    return {"pad_value": int(value.data.reshape(()))}


@KERNELS.register("PADV2", mode=("int8", "16x8"))
def _run_pad_v2(op: QOp, args: list[np.ndarray], program: QProgram) -> np.ndarray:
    return pad(args[0], _paddings(args), op.params["pad_value"])


def mirror_pad(x: np.ndarray, paddings: np.ndarray | list[tuple[int, int]], mode: str) -> np.ndarray:
    """``x`` with borders mirrored: REFLECT leaves the edge out (numpy ``reflect``), SYMMETRIC repeats it
    (numpy ``symmetric``); TFLite requires each padding below the axis size (plus one for SYMMETRIC)."""
    return np.pad(x, [(int(a), int(b)) for a, b in paddings], mode="reflect" if mode == "REFLECT" else "symmetric")


@PREPARERS.register("MIRROR_PAD", mode="int8")
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


@KERNELS.register("MIRROR_PAD", mode="int8")
def _run_mirror_pad_int8(op: QOp, args: list[np.ndarray], program: QProgram) -> np.ndarray:
    return mirror_pad(args[0], _paddings(args), op.params["mode"])


@KERNELS.register("PAD", mode="float32")
def _run_pad_float32(op: QOp, args: list[np.ndarray], program: QProgram) -> np.ndarray:
    """Float PAD pads with 0."""
    return np.pad(args[0], _paddings(args), constant_values=F32(0.0))


@KERNELS.register("PADV2", mode="float32")
def _run_pad_v2_float32(op: QOp, args: list[np.ndarray], program: QProgram) -> np.ndarray:
    """PADV2 pads with its scalar third input."""
    return np.pad(args[0], _paddings(args), constant_values=F32(np.ravel(constant(args[2]))[0]))


@KERNELS.register("MIRROR_PAD", mode="float32")
def _run_mirror_pad_float32(op: QOp, args: list[np.ndarray], program: QProgram) -> np.ndarray:
    return mirror_pad(args[0], _paddings(args), op.options["mode"])
