"""MUL's Prepare computes ``s1 * s2 / s_out`` in float32, as LiteRT's ``mul.cc`` does with the tensors' float
scales. A squeeze-excite MUL of a TensorFlow-made EfficientNetV2-B0 (its encodings below, bit for bit) is
where the double-precision quotient gave another multiplier and differed from BUILTIN_REF by one step."""
from __future__ import annotations

import numpy as np

from edgeopt.ir import QParams
from edgeopt.pipeline.emit.tflite import program_to_tflite
from edgeopt.qprogram import QOp, QProgram, QTensor
from edgeopt.runtimes.litert import LiteRT
from edgeopt.runtimes.reference.executor import run_program
from edgeopt.runtimes.reference.prepare import prepare_program

# (float32 bits of the scale, zero point) of the activation, the sigmoid gate and the output
EFFICIENTNET_V2_SE_MUL = ((1021495033, -118), (998244352, -128), (1013839681, -114))


def _qparams(bits: int, zero_point: int) -> QParams:
    return QParams(float(np.array(bits, np.uint32).view(np.float32)), zero_point)


def test_mul_multiplier_from_float32_scales_matches_builtin_ref_on_every_pair() -> None:
    a_q, b_q, y_q = (_qparams(*e) for e in EFFICIENTNET_V2_SE_MUL)
    tensors = {"a": QTensor("a", (1, 256, 256), "int8", a_q), "b": QTensor("b", (1, 256, 256), "int8", b_q),
               "y": QTensor("y", (1, 256, 256), "int8", y_q)}
    program = prepare_program(QProgram("mul", tensors, [QOp("MUL", ("a", "b"), ("y",),
                                                            {"fused_activation_function": "NONE"})],
                                       ("a", "b"), ("y",), rounding="double"))
    assert program.ops[0].params["output_multiplier"] == 2046513920  # the double quotient gives 2046513975
    a = np.repeat(np.arange(-128, 128, dtype=np.int8), 256).reshape(1, 256, 256)
    b = np.tile(np.arange(-128, 128, dtype=np.int8), 256).reshape(1, 256, 256)
    want = LiteRT(program_to_tflite(program), kernels="reference").run([a, b])[0]
    np.testing.assert_array_equal(run_program(program, [a, b])[0], want)
