"""Random int8 QPrograms for SOFTMAX and TRANSPOSE_CONV (and their float meaning, to choose encodings).

Encodings are drawn as in ``builders``: activation scales log-uniform, zero points anywhere, int8
per-channel weights, int32 biases at ``input_scale * weight_scale[c]``, and an output encoding set from
the float range of the op on random inputs.
"""
from __future__ import annotations

import numpy as np
from tests.builders.programs import FLOAT_OPS, dequantize64, random_activation_qparams, random_int8, range_qparams

from edgeopt.ir import QParams
from edgeopt.qprogram import QOp, QProgram, QTensor
from edgeopt.runtimes.reference.arith.padding import compute_padding_height_width


def transpose_conv_float(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, out_hw: tuple[int, int],
                         stride: tuple[int, int], padding: str) -> np.ndarray:
    """Float64 TRANSPOSE_CONV: x [N,H,W,Ci], w [Co,KH,KW,Ci], TFLite's padding of the output size."""
    n, h, wd, _ = x.shape
    co, kh, kw, _ = w.shape
    win = compute_padding_height_width(padding, out_hw[0], out_hw[1], kh, kw, stride[0], stride[1])
    out = np.zeros((n, *out_hw, co))
    for iy in range(h):
        for ix in range(wd):
            for i in range(kh):
                for j in range(kw):
                    oy, ox = iy * stride[0] - win.pad_height + i, ix * stride[1] - win.pad_width + j
                    if 0 <= oy < out_hw[0] and 0 <= ox < out_hw[1]:
                        out[:, oy, ox] += x[:, iy, ix] @ w[:, i, j].T
    return out if b is None else out + b


def transpose_conv_program(rng: np.random.Generator, n: int = 1, h: int = 4, w: int = 5, cin: int = 3,
                           cout: int = 4, kernel: tuple[int, int] = (3, 3), stride: tuple[int, int] = (2, 2),
                           padding: str = "SAME", out_hw: tuple[int, int] | None = None,
                           bias: bool = True) -> QProgram:
    """One TRANSPOSE_CONV (inputs output_shape, weights, input, bias). ``out_hw`` defaults to what a
    converter writes for SAME (``in * stride``) or VALID (``(in - 1) * stride + kernel``)."""
    kh, kw = kernel
    if out_hw is None:
        out_hw = ((h * stride[0], w * stride[1]) if padding == "SAME"
                  else ((h - 1) * stride[0] + kh, (w - 1) * stride[1] + kw))
    x_q = random_activation_qparams(rng)
    w_float = rng.normal(0.0, 1.0, (cout, kh, kw, cin)) * rng.uniform(0.5, 2.0, (cout, 1, 1, 1))
    w_unit = np.abs(w_float).max(axis=(1, 2, 3)) / 127.0
    w_int = QParams(w_unit, np.zeros(cout), axis=0).quantize(w_float)
    # Any common factor of the weight scales keeps the int8 weights; 0.05 keeps outputs of order 1.
    w_q = QParams(w_unit * 0.05, np.zeros(cout), axis=0)
    b_q = QParams((np.float32(x_q.scale[0]) * w_q.scale).astype(np.float32), np.zeros(cout), "int32", axis=0)
    b_int = b_q.quantize(rng.normal(0.0, 0.5, cout)) if bias else None
    samples = [dequantize64(x_q, random_int8(rng, (n, h, w, cin))) for _ in range(4)]
    w_real = dequantize64(w_q, w_int)
    b_real = dequantize64(b_q, b_int) if bias else None
    floats = np.stack([transpose_conv_float(s, w_real, b_real, out_hw, stride, padding) for s in samples])
    y_q = range_qparams(floats)
    tensors = {
        "output_shape": QTensor("output_shape", (4,), "int32", data=np.array([n, *out_hw, cout], np.int32)),
        "w": QTensor("w", w_int.shape, "int8", w_q, w_int),
        "x": QTensor("x", (n, h, w, cin), "int8", x_q),
        "y": QTensor("y", (n, *out_hw, cout), "int8", y_q),
    }
    inputs = ["output_shape", "w", "x"]
    if bias:
        tensors["b"] = QTensor("b", (cout,), "int32", b_q, b_int)
        inputs.append("b")
    op = QOp("TRANSPOSE_CONV", tuple(inputs), ("y",),
             {"padding": padding, "stride_h": stride[0], "stride_w": stride[1], "fused_activation_function": "NONE"},
             source="transpose_conv")
    return QProgram("transpose_conv", tensors, [op], ("x",), ("y",))


def softmax_program(rng: np.random.Generator, shape: tuple[int, ...] = (1, 10), beta: float = 1.0,
                    scale_range: tuple[float, float] = (0.01, 0.5)) -> QProgram:
    """One SOFTMAX over the last axis; output encoding fixed at 1/256, -128."""
    tensors = {
        "x": QTensor("x", shape, "int8", random_activation_qparams(rng, scale_range)),
        "y": QTensor("y", shape, "int8", QParams(1.0 / 256, -128)),
    }
    op = QOp("SOFTMAX", ("x",), ("y",), {"beta": beta}, source="softmax")
    return QProgram("softmax", tensors, [op], ("x",), ("y",))


def grouped_conv_program(rng: np.random.Generator, h: int = 7, w: int = 6, cin: int = 6, cout: int = 4,
                         groups: int = 2, kernel: tuple[int, int] = (3, 3), stride: tuple[int, int] = (1, 1),
                         dilation: tuple[int, int] = (1, 1), padding: str = "SAME",
                         activation: str = "NONE") -> QProgram:
    """One grouped CONV_2D: filters [Co, KH, KW, Ci / groups], output channel group g reads input group g."""
    kh, kw = kernel
    ci_g, co_g = cin // groups, cout // groups
    x_q = random_activation_qparams(rng)
    w_float = rng.normal(0.0, 1.0, (cout, kh, kw, ci_g)) * rng.uniform(0.5, 2.0, (cout, 1, 1, 1))
    w_unit = np.abs(w_float).max(axis=(1, 2, 3)) / 127.0
    w_int = QParams(w_unit, np.zeros(cout), axis=0).quantize(w_float)
    w_q = QParams(w_unit * 0.05, np.zeros(cout), axis=0)
    b_q = QParams((np.float32(x_q.scale[0]) * w_q.scale).astype(np.float32), np.zeros(cout), "int32", axis=0)
    b_int = b_q.quantize(rng.normal(0.0, 0.5, cout))
    options = {"padding": padding, "stride_h": stride[0], "stride_w": stride[1], "dilation_h_factor": dilation[0],
               "dilation_w_factor": dilation[1], "fused_activation_function": activation}
    # The float range of the grouped conv: each group is an ordinary conv of its input slice.
    w_real, b_real = dequantize64(w_q, w_int), dequantize64(b_q, b_int)
    probe = QOp("CONV_2D", (), (), options)
    floats = []
    for _ in range(4):
        x = dequantize64(x_q, random_int8(rng, (1, h, w, cin)))
        floats.append(np.concatenate([
            FLOAT_OPS["CONV_2D"](probe, [x[..., g * ci_g:(g + 1) * ci_g], w_real[g * co_g:(g + 1) * co_g],
                                         b_real[g * co_g:(g + 1) * co_g]]) for g in range(groups)], axis=3))
    y = np.stack(floats)
    tensors = {
        "x": QTensor("x", (1, h, w, cin), "int8", x_q),
        "w": QTensor("w", w_int.shape, "int8", w_q, w_int),
        "b": QTensor("b", (cout,), "int32", b_q, b_int),
        "y": QTensor("y", y.shape[1:], "int8", range_qparams(y)),
    }
    op = QOp("CONV_2D", ("x", "w", "b"), ("y",), options, source="grouped_conv")
    return QProgram("grouped_conv", tensors, [op], ("x",), ("y",))


def batch_matmul_program(rng: np.random.Generator, lhs_shape: tuple[int, ...],
                         rhs_shape: tuple[int, ...]) -> QProgram:
    """One BATCH_MATMUL of two graph inputs; the output encoding covers the float products."""
    a_q, b_q = random_activation_qparams(rng), random_activation_qparams(rng)
    floats = np.stack([dequantize64(a_q, random_int8(rng, lhs_shape)) @ dequantize64(b_q, random_int8(rng, rhs_shape))
                       for _ in range(4)])
    tensors = {
        "a": QTensor("a", lhs_shape, "int8", a_q),
        "b": QTensor("b", rhs_shape, "int8", b_q),
        "y": QTensor("y", floats.shape[1:], "int8", range_qparams(floats)),
    }
    op = QOp("BATCH_MATMUL", ("a", "b"), ("y",), {"adj_x": False, "adj_y": False}, source="batch_matmul")
    return QProgram("batch_matmul", tensors, [op], ("a", "b"), ("y",))
