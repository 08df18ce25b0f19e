"""Activations and reductions TensorFlow's converter writes for Keras models that ONNX exports here do not
produce: LEAKY_RELU (YOLO-style detectors), PRELU, REDUCE_MAX (``GlobalMaxPooling2D``), DEPTH_TO_SPACE
(ESPCN super-resolution) and SPACE_TO_DEPTH. Each written to a ``.tflite`` file, read as ``emulate`` reads it,
and compared with LiteRT's reference kernels (``BUILTIN_REF``); DEPTH_TO_SPACE and SPACE_TO_DEPTH, which copy
int8 values, with the default kernels (ai-edge-litert 2.3's reference resolver registers only their version 1,
float32)."""
from __future__ import annotations

import numpy as np
import pytest
from tests.builders.movement import one_op_program

from edgeopt.errors import UnsupportedOpError
from edgeopt.ir import QParams
from edgeopt.pipeline.emit.tflite import program_to_tflite
from edgeopt.pipeline.frontend.tflite import tflite_to_program
from edgeopt.qprogram import QTensor
from edgeopt.runtimes.litert import LiteRT
from edgeopt.runtimes.reference.executor import run_program


def _qparams(rng: np.random.Generator, lo: float = 0.002, hi: float = 0.3) -> QParams:
    return QParams(float(np.exp(rng.uniform(np.log(lo), np.log(hi)))), int(rng.integers(-128, 128)))


def _assert_file_matches(data: bytes, inputs: list[np.ndarray], kernels: str = "reference") -> None:
    program = tflite_to_program(data, "m", "double")
    want = LiteRT(data, kernels=kernels).run(inputs)  # type: ignore[arg-type]
    np.testing.assert_array_equal(run_program(program, inputs)[0], want[0])


def test_leaky_relu_int8_matches_builtin_ref_on_every_input() -> None:
    rng = np.random.default_rng(0)
    x = np.arange(-128, 128, dtype=np.int8).reshape(1, 256)
    for _ in range(100):
        alpha = float(rng.choice([0.1, 0.2, 0.3, rng.uniform(0.01, 2.0)]))
        program = one_op_program("LEAKY_RELU", [QTensor("x", (1, 256), "int8", _qparams(rng))], [], (1, 256),
                                 {"alpha": alpha}, out_q=_qparams(rng))
        _assert_file_matches(program_to_tflite(program), [x])


@pytest.mark.parametrize("alpha_shape", [(1, 1, 8), (4, 4, 8), (1,)])
def test_prelu_int8_matches_builtin_ref(alpha_shape: tuple[int, ...]) -> None:
    rng = np.random.default_rng(len(alpha_shape))
    for _ in range(20):
        alpha = QTensor("alpha", alpha_shape, "int8", _qparams(rng, 0.001, 0.05),
                        rng.integers(-128, 128, alpha_shape).astype(np.int8))
        program = one_op_program("PRELU", [QTensor("x", (1, 4, 4, 8), "int8", _qparams(rng))], [alpha],
                                 (1, 4, 4, 8), {}, out_q=_qparams(rng))
        x = rng.integers(-128, 128, (6, 4, 4, 8)).astype(np.int8)
        _assert_file_matches(program_to_tflite(program), [x])


@pytest.mark.parametrize("axes, keep_dims, out", [((1, 2), False, (1, 6)), ((1, 2), True, (1, 1, 1, 6)),
                                                  ((-1,), False, (1, 5, 4))])
def test_reduce_max_int8_matches_builtin_ref(axes: tuple[int, ...], keep_dims: bool, out: tuple[int, ...]) -> None:
    q = QParams(0.05, -7)
    axis = QTensor("axis", (len(axes),), "int32", data=np.array(axes, np.int32))
    program = one_op_program("REDUCE_MAX", [QTensor("x", (1, 5, 4, 6), "int8", q)], [axis], out,
                             {"keep_dims": keep_dims})
    x = np.random.default_rng(0).integers(-128, 128, (5, 5, 4, 6)).astype(np.int8)
    _assert_file_matches(program_to_tflite(program), [x])


def test_reduce_max_with_its_own_output_encoding_is_refused_by_name() -> None:
    axis = QTensor("axis", (2,), "int32", data=np.array([1, 2], np.int32))
    program = one_op_program("REDUCE_MAX", [QTensor("x", (1, 5, 4, 6), "int8", QParams(0.05, 0))], [axis], (1, 6),
                             {"keep_dims": False}, out_q=QParams(0.1, 0))
    x = np.zeros((1, 5, 4, 6), np.int8)
    with pytest.raises(UnsupportedOpError, match="REDUCE_MAX .*output encoding differs"):
        run_program(program, [x])


@pytest.mark.parametrize("block, shape", [(2, (1, 3, 4, 8)), (3, (1, 5, 2, 9))])
def test_depth_to_space_matches_litert(block: int, shape: tuple[int, ...]) -> None:
    n, h, w, c = shape
    program = one_op_program("DEPTH_TO_SPACE", [QTensor("x", shape, "int8", QParams(0.05, 3))], [],
                             (n, h * block, w * block, c // block // block), {"block_size": block})
    x = np.random.default_rng(0).integers(-128, 128, (4, *shape[1:])).astype(np.int8)
    _assert_file_matches(program_to_tflite(program), [x], "default_no_delegates")


@pytest.mark.parametrize("block, shape", [(2, (1, 4, 6, 3)), (3, (1, 6, 3, 2))])
def test_space_to_depth_matches_litert(block: int, shape: tuple[int, ...]) -> None:
    """SPACE_TO_DEPTH (tf2onnx's and TensorFlow's space-to-depth) read back from its file, with the default
    kernels: the reference resolver registers only version 1 (float32) too."""
    n, h, w, c = shape
    program = one_op_program("SPACE_TO_DEPTH", [QTensor("x", shape, "int8", QParams(0.05, 3))], [],
                             (n, h // block, w // block, c * block * block), {"block_size": block})
    x = np.random.default_rng(0).integers(-128, 128, (4, *shape[1:])).astype(np.int8)
    _assert_file_matches(program_to_tflite(program), [x], "default_no_delegates")
