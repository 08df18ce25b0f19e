"""TFLite writers for the elementwise and activation ops: ADD, SUB, MUL, RELU, RELU6, RELU_N1_TO_1,
HARD_SWISH, LOGISTIC, TANH, MINIMUM (int8, or float32 in a float island).

Versions follow ``tensorflow/lite/tools/versioning/op_version.cc``: int8 raises ADD, SUB, MUL, RELU,
RELU6, LOGISTIC and TANH to version 2; SUB with a broadcast beyond 4-D is version 3; MUL whose rescale
``s1 * s2 / s_out`` is at least 1 is version 3; RELU_N1_TO_1 and HARD_SWISH have one version.
"""
from __future__ import annotations

import numpy as np
from ai_edge_litert import schema_py_generated as schema

from edgeopt.pipeline.emit.tflite.options import (
    OP_WRITERS,
    OpEncoding,
    activation,
    int8_version,
    option,
    reads_int8,
    require_same_encoding,
)
from edgeopt.qprogram import QOp, QProgram

_UNARY = {
    "RELU": schema.BuiltinOperator.RELU,
    "RELU6": schema.BuiltinOperator.RELU6,
    "RELU_N1_TO_1": schema.BuiltinOperator.RELU_N1_TO_1,
    "HARD_SWISH": schema.BuiltinOperator.HARD_SWISH,
    "LOGISTIC": schema.BuiltinOperator.LOGISTIC,
    "TANH": schema.BuiltinOperator.TANH,
}
_SINGLE_VERSION = frozenset({"RELU_N1_TO_1", "HARD_SWISH"})


@OP_WRITERS.register("ADD")
def _add(op: QOp, program: QProgram) -> OpEncoding:
    opts = schema.AddOptionsT()
    opts.fusedActivationFunction = activation(op)
    return OpEncoding(schema.BuiltinOperator.ADD, int8_version(program, op), schema.BuiltinOptions.AddOptions, opts)


def _broadcast_beyond_4d(op: QOp, program: QProgram) -> bool:
    a, b = (program.tensors[name].shape for name in op.inputs[:2])
    return a != b and max(len(a), len(b)) > 4


@OP_WRITERS.register("SUB")
def _sub(op: QOp, program: QProgram) -> OpEncoding:
    opts = schema.SubOptionsT()
    opts.fusedActivationFunction = activation(op)
    version = 3 if _broadcast_beyond_4d(op, program) else int8_version(program, op)
    return OpEncoding(schema.BuiltinOperator.SUB, version, schema.BuiltinOptions.SubOptions, opts)


@OP_WRITERS.register("MUL")
def _mul(op: QOp, program: QProgram) -> OpEncoding:
    opts = schema.MulOptionsT()
    opts.fusedActivationFunction = activation(op)
    version = 1
    if reads_int8(program, op):
        s1, s2, s_out = (np.float32(program.tensors[n].qparams.scale[0]) for n in (*op.inputs[:2], op.outputs[0]))
        # op_version.cc compares the float product of the scales with 1.
        version = 3 if s1 * s2 / s_out >= 1.0 else 2
    return OpEncoding(schema.BuiltinOperator.MUL, version, schema.BuiltinOptions.MulOptions, opts)


@OP_WRITERS.register("LEAKY_RELU")
def _leaky_relu(op: QOp, program: QProgram) -> OpEncoding:
    """Version 1 for int8 and float32 (2 is int16), as TensorFlow's converter writes it."""
    opts = schema.LeakyReluOptionsT()
    opts.alpha = float(option(op, "alpha"))
    return OpEncoding(schema.BuiltinOperator.LEAKY_RELU, 1, schema.BuiltinOptions.LeakyReluOptions, opts)


@OP_WRITERS.register("PRELU")
def _prelu(op: QOp, program: QProgram) -> OpEncoding:
    """Version 1 for int8 and float32, as TensorFlow's converter writes it."""
    return OpEncoding(schema.BuiltinOperator.PRELU, 1, schema.BuiltinOptions.NONE, None)


@OP_WRITERS.register(*_UNARY)
def _unary(op: QOp, program: QProgram) -> OpEncoding:
    version = 2 if reads_int8(program, op) and op.kind not in _SINGLE_VERSION else 1
    return OpEncoding(_UNARY[op.kind], version, schema.BuiltinOptions.NONE, None)


@OP_WRITERS.register("MINIMUM")
def _minimum(op: QOp, program: QProgram) -> OpEncoding:
    """MaximumMinimumOptions (no fields); version 2 on int8 data, 1 on float32 (op_version.cc; 3 and 4 are
    broadcasts beyond 4-D and int16, which the programs here do not write)."""
    require_same_encoding(op, program)
    return OpEncoding(schema.BuiltinOperator.MINIMUM, int8_version(program, op),
                      schema.BuiltinOptions.MaximumMinimumOptions, schema.MaximumMinimumOptionsT())
