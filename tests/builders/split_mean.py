"""Random one-op int8 QPrograms for MEAN, SPLIT and SPLIT_V (the executor and LiteRT both run them)."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from edgeopt.ir import QParams
from edgeopt.qprogram import QOp, QProgram, QTensor


def random_qparams(rng: np.random.Generator) -> QParams:
    scale = float(np.exp(rng.uniform(np.log(0.005), np.log(0.2))))
    return QParams(scale=scale, zero_point=int(rng.integers(-128, 128)))


def _int32(name: str, values: Sequence[int] | int) -> QTensor:
    data = np.asarray(values, dtype=np.int32)
    return QTensor(name, data.shape, "int32", data=data)


def mean_program(shape: tuple[int, ...], axes: Sequence[int], keep_dims: bool, x_q: QParams,
                 y_q: QParams) -> QProgram:
    """MEAN of x over ``axes`` (written as given: TFLite's path depends on the raw values)."""
    rank = len(shape)
    resolved = {a % rank for a in axes}
    out = tuple(1 if i in resolved else d for i, d in enumerate(shape)) if keep_dims else \
        tuple(d for i, d in enumerate(shape) if i not in resolved)
    x = QTensor("x", shape, "int8", x_q)
    y = QTensor("y", out, "int8", y_q)
    axis = _int32("axis", list(axes))
    op = QOp("MEAN", ("x", "axis"), ("y",), {"keep_dims": keep_dims}, source="mean")
    return QProgram("mean", {t.name: t for t in (x, axis, y)}, [op], ("x",), ("y",))


def split_program(rng: np.random.Generator, shape: tuple[int, ...], axis: int, sizes: Sequence[int],
                  equal_as_split: bool = True) -> QProgram:
    """SPLIT (equal ``sizes`` and ``equal_as_split``) or SPLIT_V of x along ``axis`` (may be negative);
    every piece is a program output."""
    q = random_qparams(rng)
    x = QTensor("x", shape, "int8", q)
    outs = []
    for i, s in enumerate(sizes):
        out_shape = list(shape)
        out_shape[axis % len(shape)] = s
        outs.append(QTensor(f"y{i}", tuple(out_shape), "int8", q))
    axis_t = _int32("axis", axis)
    names = tuple(t.name for t in outs)
    if equal_as_split and len(set(sizes)) == 1:
        op = QOp("SPLIT", ("axis", "x"), names, {"num_splits": len(sizes)}, source="split")
        consts = [axis_t]
    else:
        written = list(sizes)
        if rng.integers(2):
            written[int(rng.integers(len(sizes)))] = -1  # TFLite infers one size marked -1
        size_splits = _int32("size_splits", written)
        op = QOp("SPLIT_V", ("x", "size_splits", "axis"), names, {"num_splits": len(sizes)}, source="split_v")
        consts = [size_splits, axis_t]
    tensors = {t.name: t for t in (x, *consts, *outs)}
    return QProgram(op.kind.lower(), tensors, [op], ("x",), names)
