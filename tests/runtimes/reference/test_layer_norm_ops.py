"""What TensorFlow's converter writes for Keras ``LayerNormalization`` in a full-integer model: int8
SQUARED_DIFFERENCE (with the row mean broadcast), int8 RSQRT, and a float32 NEG between a DEQUANTIZE and a
QUANTIZE. Each read from a ``.tflite`` file as ``emulate`` reads it and run bit-exact with LiteRT's
reference kernels (``BUILTIN_REF``)."""
from __future__ import annotations

import numpy as np
import pytest

from edgeopt.errors import UnsupportedOpError
from edgeopt.ir import QParams
from edgeopt.pipeline.emit.tflite import program_to_tflite
from edgeopt.pipeline.frontend.tflite import tflite_to_program
from edgeopt.qprogram import QOp, QProgram, QTensor
from edgeopt.runtimes.litert import LiteRT
from edgeopt.runtimes.reference.executor import run_program


def _qparams(rng: np.random.Generator, lo: float, hi: float) -> QParams:
    return QParams(float(np.exp(rng.uniform(np.log(lo), np.log(hi)))), int(rng.integers(-128, 128)))


def _assert_file_bitexact(program: QProgram, inputs: list[np.ndarray]) -> None:
    data = program_to_tflite(program.replace(rounding="double"))
    read = tflite_to_program(data, program.name, "double")
    want = LiteRT(data, kernels="reference").run(inputs)
    got = run_program(read, inputs)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_array_equal(g, w)


@pytest.mark.parametrize("a_shape, b_shape", [((1, 16, 32), (1, 16, 1)), ((1, 4, 8), (1, 4, 8)), ((1, 6), (6,))])
def test_squared_difference_int8_matches_builtin_ref(a_shape: tuple[int, ...], b_shape: tuple[int, ...]) -> None:
    """30 random encodings per shape pair, every int8 value of ``a`` against random ``b``."""
    rng = np.random.default_rng(len(a_shape) * 10 + len(b_shape))
    for _ in range(30):
        tensors = {"a": QTensor("a", a_shape, "int8", _qparams(rng, 0.002, 0.2)),
                   "b": QTensor("b", b_shape, "int8", _qparams(rng, 0.002, 0.2)),
                   "y": QTensor("y", np.broadcast_shapes(a_shape, b_shape), "int8", _qparams(rng, 0.001, 0.5))}
        program = QProgram("sqd", tensors, [QOp("SQUARED_DIFFERENCE", ("a", "b"), ("y",))], ("a", "b"), ("y",))
        a = rng.integers(-128, 128, (8, *a_shape[1:])).astype(np.int8)
        b = rng.integers(-128, 128, (8, *b_shape[1:]) if len(b_shape) == len(a_shape) else (8 * b_shape[0],))
        if len(b_shape) != len(a_shape):  # a rank-1 input has no batch axis: one value set for all samples
            b = b[:b_shape[0]].reshape(b_shape)
            a = a[:1]
        _assert_file_bitexact(program, [a, b.astype(np.int8)])


def test_squared_difference_refuses_an_output_scale_tflite_refuses() -> None:
    """``twice_max**2 / (2**14 * s_out) >= 1``: TFLite's Prepare check fails; here one line names op and node."""
    tensors = {"a": QTensor("a", (1, 4), "int8", QParams(1.0, 0)),
               "b": QTensor("b", (1, 4), "int8", QParams(1.0, 0)),
               "y": QTensor("y", (1, 4), "int8", QParams(1e-4, 0))}
    ops = [QOp("SQUARED_DIFFERENCE", ("a", "b"), ("y",), source="sqd")]
    program = QProgram("sqd", tensors, ops, ("a", "b"), ("y",))
    with pytest.raises(UnsupportedOpError, match="SQUARED_DIFFERENCE.*output scale .* too small"):
        tflite_to_program(program_to_tflite(program), "sqd", "double")


def test_rsqrt_int8_matches_builtin_ref_on_every_valid_input() -> None:
    """Every int8 value at or above the input zero point (below it TFLite refuses the input), 60 random
    encodings, including zero point -128 (a variance plus epsilon) and tiny values (``v = 0, 1``)."""
    rng = np.random.default_rng(7)
    for i in range(60):
        zero_point = -128 if i % 2 else int(rng.integers(-128, 100))
        x_q = QParams(float(np.exp(rng.uniform(np.log(1e-4), np.log(1.0)))), zero_point)
        y_q = _qparams(rng, 0.002, 0.5)
        tensors = {"x": QTensor("x", (1, 256), "int8", x_q), "y": QTensor("y", (1, 256), "int8", y_q)}
        program = QProgram("rsqrt", tensors, [QOp("RSQRT", ("x",), ("y",))], ("x",), ("y",))
        zp = int(x_q.zero_point[0])
        x = np.resize(np.arange(zp, 128), 256).astype(np.int8).reshape(1, 256)
        _assert_file_bitexact(program, [x])


def test_float_neg_between_dequantize_and_quantize_matches_builtin_ref() -> None:
    """LayerNormalization's ``-mean``: DEQUANTIZE → NEG (float32) → QUANTIZE, read and run as a float island."""
    q_in, q_out = QParams(0.0026, 7), QParams(0.0026, -8)
    tensors = {"x": QTensor("x", (1, 16, 1), "int8", q_in), "f": QTensor("f", (1, 16, 1), "float32"),
               "n": QTensor("n", (1, 16, 1), "float32"), "y": QTensor("y", (1, 16, 1), "int8", q_out)}
    ops = [QOp("DEQUANTIZE", ("x",), ("f",)), QOp("NEG", ("f",), ("n",)), QOp("QUANTIZE", ("n",), ("y",))]
    program = QProgram("neg", tensors, ops, ("x",), ("y",))
    x = np.arange(-128, 128, dtype=np.int8).reshape(16, 16, 1)
    _assert_file_bitexact(program, [x])


@pytest.mark.parametrize("approximate", [False, True])
def test_gelu_int8_matches_builtin_ref_on_every_input(approximate: bool) -> None:
    """Keras ``Dense(activation="gelu")`` in a full-integer file: every int8 value, 100 random encodings."""
    rng = np.random.default_rng(int(approximate))
    x = np.arange(-128, 128, dtype=np.int8).reshape(1, 256)
    for _ in range(100):
        tensors = {"x": QTensor("x", (1, 256), "int8", _qparams(rng, 0.002, 0.2)),
                   "y": QTensor("y", (1, 256), "int8", _qparams(rng, 0.002, 0.2))}
        program = QProgram("gelu", tensors, [QOp("GELU", ("x",), ("y",), {"approximate": approximate})], ("x",),
                           ("y",))
        _assert_file_bitexact(program, [x])
