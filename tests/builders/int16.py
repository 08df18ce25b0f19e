"""Random 16x8 QPrograms (int16 activations, int8 weights, int64 biases) for the bit-exactness tests.

``Int16ProgramBuilder`` is ``builders.programs.ProgramBuilder`` whose new activations are int16 symmetric (zero
point 0, scale from the float range on the calibration samples) while ``dtype`` is ``"int16"``, with
int64 biases, and ``requantize`` inserts the QUANTIZE (int8 <-> int16) that joins the two precisions.
Program inputs stay int8 (the executor's and the pipeline's input type), so every program starts with a
requantization to int16.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from ai_edge_litert import schema_py_generated as schema
from tests.builders.programs import CALIBRATION_SAMPLES, FLOAT_OPS, ProgramBuilder, random_inputs, range_qparams

from edgeopt.pipeline.emit.tflite import program_to_tflite
from edgeopt.pipeline.quantize.encodings import activation_qparams
from edgeopt.qprogram import QOp, QProgram, QTensor
from edgeopt.runtimes.litert import LiteRT
from edgeopt.runtimes.reference.executor import run_program

FLOAT_OPS.setdefault("QUANTIZE", lambda op, xs: xs[0])  # a requantization keeps the real value


class Int16ProgramBuilder(ProgramBuilder):
    """Grows a 16x8 program; set ``dtype`` to ``"int8"`` to grow int8 ops in the same program."""

    def __init__(self, rng: np.random.Generator, name: str) -> None:
        super().__init__(rng, name)
        self.dtype = "int16"

    def requantize(self, x: str, dtype: str) -> str:
        """QUANTIZE ``x`` to a new ``dtype`` tensor encoded from its range."""
        saved, self.dtype = self.dtype, dtype
        try:
            return self._op(self._next_name("QUANTIZE"), "QUANTIZE", [x], {})
        finally:
            self.dtype = saved

    def _weighted(self, kind: str, x: str, w_shape: tuple[int, ...], axis: int, options: dict[str, object]) -> str:
        name = super()._weighted(kind, x, w_shape, axis, options)
        bias = self.tensors[f"{name}/bias"]
        if self.tensors[x].dtype == "int16":
            q = bias.qparams
            b_q = type(q)(q.scale, q.zero_point, "int64", q.axis)
            self.tensors[bias.name] = QTensor(bias.name, bias.shape, "int64", b_q, bias.data.astype(np.int64))
        return name

    def _op(self, name: str, kind: str, inputs: list[str], options: dict[str, object],
            keep_encoding: bool = False) -> str:
        op = QOp(kind, tuple(inputs), (name,), options, source=name)
        floats = [FLOAT_OPS[kind](op, [self._value(n, i) for n in inputs]) for i in range(CALIBRATION_SAMPLES)]
        if keep_encoding:
            qparams = self.tensors[inputs[0]].qparams
        elif self.dtype == "int16":
            values = np.stack(floats)
            qparams = activation_qparams(float(values.min()), float(values.max()), "int16")
        else:
            qparams = range_qparams(np.stack(floats))
        self.tensors[name] = QTensor(name, floats[0].shape, qparams.dtype, qparams)
        self._samples[name] = [qparams.quantize(f) for f in floats]
        self.ops.append(op)
        return name


def _start(rng: np.random.Generator, name: str, shape: Sequence[int]) -> tuple[Int16ProgramBuilder, str]:
    b = Int16ProgramBuilder(rng, name)
    return b, b.requantize(b.input(shape), "int16")


def conv_16x8_program(rng: np.random.Generator, depthwise: bool = False) -> QProgram:
    """int8 → QUANTIZE → one random CONV_2D or DEPTHWISE_CONV_2D in 16x8 mode."""
    h, w = (int(v) for v in rng.integers(4, 10, 2))
    cin = int(rng.integers(1, 6))
    b, x = _start(rng, "depthwise_conv_16x8" if depthwise else "conv_16x8", (1, h, w, cin))
    kernel = tuple(int(k) for k in rng.integers(1, 4, 2))
    stride = tuple(int(s) for s in rng.integers(1, 3, 2))
    dilation = tuple(int(d) for d in rng.integers(1, 3, 2)) if rng.random() < 0.3 else (1, 1)
    activation = str(rng.choice(["NONE", "RELU", "RELU6", "RELU_N1_TO_1"]))
    padding = str(rng.choice(["SAME", "VALID"]))
    multiplier = int(rng.integers(1, 3))
    y = b.conv(x, int(rng.integers(1, 7)), kernel, stride, dilation, padding, activation, depthwise, multiplier)
    return b.build([y])


def fully_connected_16x8_program(rng: np.random.Generator) -> QProgram:
    b, x = _start(rng, "fully_connected_16x8", (int(rng.integers(1, 3)), int(rng.integers(2, 40))))
    activation = str(rng.choice(["NONE", "RELU", "RELU6"]))
    return b.build([b.fully_connected(x, int(rng.integers(1, 12)), activation)])


def add_16x8_program(rng: np.random.Generator) -> QProgram:
    """ADD of two int16 tensors with different scales (each requantized from its own int8 input)."""
    shape = (1, 4, 5, 3)
    b = Int16ProgramBuilder(rng, "add_16x8")
    x1, x2 = (b.requantize(b.input(shape), "int16") for _ in range(2))
    return b.build([b.add(x1, x2, str(rng.choice(["NONE", "RELU", "RELU6"])))])


def average_pool_16x8_program(rng: np.random.Generator) -> QProgram:
    b, x = _start(rng, "average_pool_16x8", (1, 7, 6, 3))
    kernel = tuple(int(k) for k in rng.integers(1, 4, 2))
    stride = tuple(int(s) for s in rng.integers(1, 3, 2))
    return b.build([b.average_pool(x, kernel, stride, str(rng.choice(["SAME", "VALID"])))])


def movement_16x8_program(rng: np.random.Generator) -> QProgram:
    """PAD, TRANSPOSE, STRIDED_SLICE and RESHAPE of an int16 tensor."""
    b, x = _start(rng, "movement_16x8", (1, 4, 5, 3))
    x = b.pad(x, [[0, 0], [1, 2], [0, 1], [0, 0]])
    x = b.transpose(x, [0, 2, 1, 3])
    x = b.strided_slice(x, [0, 1, 0, 0], [1, 6, 7, 3], [1, 2, 1, 1])
    return b.build([b.reshape(x, (1, int(np.prod(b.shape(x)))))])


def mixed_program(rng: np.random.Generator) -> QProgram:
    """int8 CONV_2D → QUANTIZE → int16 DEPTHWISE_CONV_2D and ADD → QUANTIZE → int8 CONV_2D → int8 output."""
    b = Int16ProgramBuilder(rng, "mixed_int8_int16")
    b.dtype = "int8"
    x = b.conv(b.input((1, 6, 6, 3)), 4, activation="RELU")
    b.dtype = "int16"
    h = b.requantize(x, "int16")
    d = b.conv(h, 4, depthwise=True)
    s = b.add(d, b.conv(h, 4, (1, 1)))
    b.dtype = "int8"
    return b.build([b.conv(b.requantize(s, "int8"), 5, (1, 1))])


CASES_16X8 = {
    "conv": conv_16x8_program,
    "depthwise_conv": lambda rng: conv_16x8_program(rng, depthwise=True),
    "fully_connected": fully_connected_16x8_program,
    "add": add_16x8_program,
    "average_pool": average_pool_16x8_program,
    "movement": movement_16x8_program,
    "mixed": mixed_program,
}


INPUTS_PER_PROGRAM = 100


def assert_bitexact_16x8(program: QProgram, rng: np.random.Generator) -> None:
    """``program`` in double rounding gives LiteRT BUILTIN_REF's outputs bit for bit on random inputs."""
    program = program.replace(rounding="double")
    inputs = random_inputs(rng, program, INPUTS_PER_PROGRAM)
    expected = LiteRT(program_to_tflite(program), kernels="reference").run(inputs)
    got = run_program(program, inputs)
    for g, e in zip(got, expected, strict=True):
        assert g.dtype == e.dtype and g.shape == e.shape
        mismatches = int((g != e).sum())
        assert mismatches == 0, f"{program.name}: {mismatches} of {e.size} elements differ from LiteRT"


def opcode_versions(tflite: bytes) -> dict[str, int]:
    """Op kind → the op version a .tflite file declares for it."""
    model = schema.ModelT.InitFromObj(schema.Model.GetRootAs(tflite, 0))
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    return {names[c.builtinCode]: c.version for c in model.operatorCodes}
