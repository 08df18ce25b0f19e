"""Random one-op int8 QPrograms for the data-movement, max-pooling and resizing kernels.

Every op here copies, selects or interpolates raw int8 values, so its output shares its input's
encoding (CONCATENATION: all inputs share it too), as TFLite's int8 kernels require.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from edgeopt.ir import QParams
from edgeopt.qprogram import QOp, QProgram, QTensor
from edgeopt.runtimes.reference.arith.padding import compute_out_size


def _qparams(rng: np.random.Generator) -> QParams:
    return QParams(scale=float(np.exp(rng.uniform(np.log(0.01), np.log(0.1)))), zero_point=int(rng.integers(-128, 128)))


def _int32(name: str, values: Sequence[int]) -> QTensor:
    data = np.asarray(values, dtype=np.int32)
    return QTensor(name, data.shape, "int32", data=data)


def one_op_program(kind: str, inputs: list[QTensor], consts: list[QTensor], out_shape: tuple[int, ...],
                   options: dict[str, object], out_q: QParams | None = None) -> QProgram:
    """A program of one op reading ``inputs`` (graph inputs) then ``consts``; its output takes ``out_q``
    (default: the first input's encoding)."""
    y = QTensor("y", out_shape, "int8", out_q or inputs[0].qparams)
    tensors = {t.name: t for t in [*inputs, *consts, y]}
    op = QOp(kind, tuple(t.name for t in [*inputs, *consts]), ("y",), options, source=kind.lower())
    return QProgram(kind.lower(), tensors, [op], tuple(t.name for t in inputs), ("y",))


def max_pool_program(rng: np.random.Generator, shape: tuple[int, ...], kernel: tuple[int, int],
                     stride: tuple[int, int], padding: str, activation: str = "NONE") -> QProgram:
    n, h, w, c = shape
    oh = compute_out_size(padding, h, kernel[0], stride[0], 1)
    ow = compute_out_size(padding, w, kernel[1], stride[1], 1)
    x = QTensor("x", shape, "int8", _qparams(rng))
    options = {"padding": padding, "stride_h": stride[0], "stride_w": stride[1], "filter_height": kernel[0],
               "filter_width": kernel[1], "fused_activation_function": activation}
    return one_op_program("MAX_POOL_2D", [x], [], (n, oh, ow, c), options)


def concat_program(rng: np.random.Generator, shapes: list[tuple[int, ...]], axis: int,
                   constant_inputs: Sequence[int] = ()) -> QProgram:
    """CONCATENATION of graph inputs (and random int8 constants at ``constant_inputs``) along ``axis``."""
    q = _qparams(rng)
    tensors = []
    for i, s in enumerate(shapes):
        data = rng.integers(-128, 128, s) if i in constant_inputs else None
        tensors.append(QTensor(f"x{i}", s, "int8", q, data))
    out_shape = list(shapes[0])
    out_shape[axis] = sum(s[axis] for s in shapes)
    inputs = [t for t in tensors if not t.is_constant]
    y = QTensor("y", tuple(out_shape), "int8", q)
    op = QOp("CONCATENATION", tuple(t.name for t in tensors), ("y",),
             {"axis": axis - len(shapes[0]) if rng.integers(2) else axis, "fused_activation_function": "NONE"},
             source="concat")
    return QProgram("concatenation", {t.name: t for t in [*tensors, y]}, [op], tuple(t.name for t in inputs), ("y",))


def resize_program(rng: np.random.Generator, kind: str, shape: tuple[int, ...], out_hw: tuple[int, int],
                   align_corners: bool, half_pixel_centers: bool) -> QProgram:
    n, _, _, c = shape
    x = QTensor("x", shape, "int8", _qparams(rng))
    options = {"align_corners": align_corners, "half_pixel_centers": half_pixel_centers}
    return one_op_program(kind, [x], [_int32("size", out_hw)], (n, *out_hw, c), options)


def mirror_pad_program(rng: np.random.Generator, shape: tuple[int, ...], paddings: Sequence[tuple[int, int]],
                       mode: str) -> QProgram:
    x = QTensor("x", shape, "int8", _qparams(rng))
    out = tuple(d + a + b for d, (a, b) in zip(shape, paddings))
    return one_op_program("MIRROR_PAD", [x], [_int32("paddings", paddings)], out, {"mode": mode})
