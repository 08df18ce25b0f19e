"""16x8 versions of the random one-op int8 programs: MAX_POOL_2D, CONCATENATION, RELU, RELU6, MEAN and ADD
with a constant operand.

``to_16x8`` turns an int8 program into its 16x8 form: every int8 activation gets the symmetric int16
encoding (zero point 0) of the real range its int8 encoding covers, constants are re-quantized to it,
and every graph input (kept int8, the executor's input type) is joined to its int16 copy by a QUANTIZE.
Tensors that shared one int8 encoding share one int16 encoding, so the ops' shared-scale rules hold.
"""
from __future__ import annotations

import numpy as np
from tests.builders.programs import binary_program
from tests.builders.movement import concat_program, max_pool_program, one_op_program
from tests.builders.split_mean import mean_program, random_qparams

from edgeopt.ir import QParams
from edgeopt.pipeline.quantize.encodings import activation_qparams
from edgeopt.qprogram import QOp, QProgram, QTensor


def int16_of(q: QParams) -> QParams:
    """The int16 symmetric encoding of the real range an int8 encoding covers."""
    lo, hi = (float(v) for v in q.dequantize(np.array([q.qmin, q.qmax])))
    return activation_qparams(lo, hi, "int16")


def to_16x8(program: QProgram) -> QProgram:
    """``program`` with int16 activations and constants, its int8 inputs QUANTIZEd to int16 first."""
    tensors: dict[str, QTensor] = {}
    for name, t in program.tensors.items():
        if t.dtype != "int8":
            tensors[name] = t
            continue
        q16 = int16_of(t.qparams)
        data = None if t.data is None else q16.quantize(t.qparams.dequantize(t.data))
        tensors[name] = QTensor(name, t.shape, "int16", q16, data)
    ops = []
    for name in program.inputs:
        original = program.tensors[name]
        tensors[f"{name}/int8"] = QTensor(f"{name}/int8", original.shape, "int8", original.qparams)
        ops.append(QOp("QUANTIZE", (f"{name}/int8",), (name,), source=f"{name}/requantize"))
    inputs = tuple(f"{n}/int8" for n in program.inputs)
    return QProgram(f"{program.name}_16x8", tensors, [*ops, *program.ops], inputs, program.outputs)


def max_pool_16x8_program(rng: np.random.Generator) -> QProgram:
    kernel = tuple(int(k) for k in rng.integers(1, 4, 2))
    stride = tuple(int(s) for s in rng.integers(1, 3, 2))
    activation = str(rng.choice(["NONE", "RELU", "RELU6"]))
    shape = (1, int(rng.integers(4, 9)), int(rng.integers(4, 9)), int(rng.integers(1, 5)))
    return to_16x8(max_pool_program(rng, shape, kernel, stride, str(rng.choice(["SAME", "VALID"])), activation))


def concat_16x8_program(rng: np.random.Generator) -> QProgram:
    """Two or three inputs along a random axis, one of them sometimes a constant."""
    axis, k = int(rng.integers(0, 4)), int(rng.integers(2, 4))
    base = [1, 3, 4, 2]
    shapes = []
    for _ in range(k):
        s = list(base)
        s[axis] = int(rng.integers(1, 4))
        shapes.append(tuple(s))
    constant = (int(rng.integers(1, k)),) if rng.random() < 0.5 else ()
    return to_16x8(concat_program(rng, shapes, axis, constant))


def relu_16x8_program(rng: np.random.Generator, kind: str) -> QProgram:
    """RELU or RELU6 with different input and output encodings (so the multiplier is not 1)."""
    shape = (1, 4, 5, 3)
    x_q = QParams(float(np.exp(rng.uniform(np.log(0.005), np.log(0.05)))), int(rng.integers(-128, 128)))
    hi = 6.0 if kind == "RELU6" else float(x_q.dequantize(np.array([127]))[0])
    y_q = activation_qparams(0.0, max(hi * rng.uniform(0.5, 1.2), 0.05))
    x = QTensor("x", shape, "int8", x_q)
    return to_16x8(one_op_program(kind, [x], [], shape, {}, y_q))


def mean_16x8_program(rng: np.random.Generator) -> QProgram:
    """MEAN over random non-spatial axes (channels, or W and C, ...), output encoding shared or not."""
    shape = (1, 3, 4, int(rng.integers(2, 9)))
    axes = [[3], [2, 3], [1], [-1], [1, 3]][int(rng.integers(5))]
    x_q = random_qparams(rng)
    y_q = x_q if rng.random() < 0.5 else random_qparams(rng)
    return to_16x8(mean_program(shape, axes, bool(rng.integers(2)), x_q, y_q))


def add_constant_16x8_program(rng: np.random.Generator) -> QProgram:
    """ADD of an activation and a constant broadcast along channels (a bias-like operand) or scalar."""
    b_shape = ((1, 1, 1, 3), (1,), (1, 4, 5, 3))[int(rng.integers(3))]
    activation = str(rng.choice(["NONE", "RELU", "RELU6"]))
    return to_16x8(binary_program(rng, "ADD", (1, 4, 5, 3), b_shape, constant=True, activation=activation,
                                  name="add_constant"))


CASES_16X8_OPS = {
    "max_pool": max_pool_16x8_program,
    "concatenation": concat_16x8_program,
    "relu": lambda rng: relu_16x8_program(rng, "RELU"),
    "relu6": lambda rng: relu_16x8_program(rng, "RELU6"),
    "mean": mean_16x8_program,
    "add_constant": add_constant_16x8_program,
}
