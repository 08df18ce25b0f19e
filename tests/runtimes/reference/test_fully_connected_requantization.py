"""FULLY_CONNECTED's two requantizations: LiteRT 2.3's double-precision scale (the default) and the
fixed-point multiplier of tflite-runtime 2.14 (``fully_connected_requantization="fixed_point"``).

tflite-runtime itself needs numpy < 2, so its bit-exactness is checked by the separate job
``.ci/tflite_runtime_2_14`` (``tests/compat``); here the fixed-point FULLY_CONNECTED is checked against
the executor's CONV_2D, which TFLite requantizes with the same ``MultiplyByQuantizedMultiplier``.
"""
from __future__ import annotations

import numpy as np
import pytest
from tests.builders.programs import fully_connected_program, random_inputs

from edgeopt.ir import QParams
from edgeopt.qprogram import QOp, QProgram, QTensor
from edgeopt.runtimes.reference.executor import run_program
from edgeopt.runtimes.reference.prepare import prepare_program


def _as_1x1_conv(program: QProgram) -> QProgram:
    """The FULLY_CONNECTED x[N, Ci] @ w[Co, Ci] of ``program`` as a 1x1 CONV_2D on x[N, 1, 1, Ci]."""
    (op,) = program.ops
    x, w, y = (program.tensor(name) for name in (op.inputs[0], op.inputs[1], op.outputs[0]))
    tensors = dict(program.tensors) | {
        x.name: QTensor(x.name, (x.shape[0], 1, 1, x.shape[1]), "int8", x.qparams),
        w.name: QTensor(w.name, (w.shape[0], 1, 1, w.shape[1]), "int8", w.qparams, w.data.reshape(w.shape[0], 1, 1, -1)),
        y.name: QTensor(y.name, (y.shape[0], 1, 1, y.shape[1]), "int8", y.qparams),
    }
    options = {"padding": "VALID", "stride_h": 1, "stride_w": 1, **op.options}
    return program.replace(tensors=tensors, ops=(QOp("CONV_2D", op.inputs, op.outputs, options),))


@pytest.mark.parametrize("rounding", ["single", "double"])
def test_fixed_point_fully_connected_requantizes_like_conv(rounding: str) -> None:
    rng = np.random.default_rng(40)
    for activation in ("NONE", "RELU", "RELU6", "RELU_N1_TO_1"):
        program = fully_connected_program(rng, cin=int(rng.integers(1, 200)), cout=int(rng.integers(1, 30)),
                                          activation=activation)
        program = program.replace(rounding=rounding, fully_connected_requantization="fixed_point")
        (x,) = random_inputs(rng, program, 200)
        (fc,) = run_program(program, [x])
        (conv,) = run_program(_as_1x1_conv(program), [x.reshape(-1, 1, 1, x.shape[1])])
        np.testing.assert_array_equal(fc, conv.reshape(fc.shape))


def test_prepare_stores_the_parameters_of_the_chosen_requantization() -> None:
    program = fully_connected_program(np.random.default_rng(41))
    assert set(prepare_program(program).ops[0].params) >= {"effective_scale"}
    fixed = prepare_program(program.replace(fully_connected_requantization="fixed_point")).ops[0].params
    assert "effective_scale" not in fixed and {"output_multiplier", "output_shift"} <= set(fixed)


def test_the_two_requantizations_differ_near_halves() -> None:
    """Scale 2**-5 (multiplier 2**30, shift -4). The double-precision scale rounds ``acc / 32`` once;
    gemmlowp first rounds ``acc / 2`` half up, which carries 15/32 to 16/32 (then 1, away from zero)
    and 47/32 to 48/32 (then 2), where one rounding gives 0 and 1."""
    tensors = {
        "x": QTensor("x", (1, 1), "int8", QParams(2.0**-4, 0)),
        "w": QTensor("w", (1, 1), "int8", QParams(np.full(1, 2.0**-6), np.zeros(1), axis=0), np.ones((1, 1))),
        "y": QTensor("y", (1, 1), "int8", QParams(2.0**-5, 0)),
    }
    op = QOp("FULLY_CONNECTED", ("x", "w"), ("y",), {"fused_activation_function": "NONE"})
    program = QProgram("fc_ties", tensors, [op], ("x",), ("y",), rounding="double")
    x = np.array([[15], [47], [-15], [-17]], dtype=np.int8)
    assert run_program(program, [x])[0].ravel().tolist() == [0, 1, 0, -1]
    fixed = program.replace(fully_connected_requantization="fixed_point")
    assert run_program(fixed, [x])[0].ravel().tolist() == [1, 2, 0, -1]
