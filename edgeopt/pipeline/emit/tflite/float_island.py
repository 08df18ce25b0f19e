"""TFLite writers for float islands: QUANTIZE, DEQUANTIZE and the float32 ops GELU, SQUARED_DIFFERENCE,
RSQRT, DIV and SQRT (float ADD, SUB, MUL and MEAN use the int8 ops' writers, which write version 1 for float32).

(Not named ``float.py``: a package's submodule becomes an attribute of the package, and one named
``float`` would shadow the builtin inside ``__init__``.)

Versions follow ``tensorflow/lite/tools/versioning/op_version.cc``: QUANTIZE to int8 is version 1
(int16 output raises it), DEQUANTIZE from per-tensor int8 is version 2, and every float32 op is
version 1 (GELU, SQUARED_DIFFERENCE and RSQRT are version 2 with int8 inputs).
"""
from __future__ import annotations

from ai_edge_litert import schema_py_generated as schema

from edgeopt.pipeline.emit.tflite.options import OP_WRITERS, OpEncoding, int8_version, option
from edgeopt.qprogram import QOp, QProgram


@OP_WRITERS.register("QUANTIZE")
def _quantize(op: QOp, program: QProgram) -> OpEncoding:
    version = 2 if program.tensors[op.outputs[0]].dtype == "int16" else 1
    return OpEncoding(schema.BuiltinOperator.QUANTIZE, version, schema.BuiltinOptions.QuantizeOptions,
                      schema.QuantizeOptionsT())


@OP_WRITERS.register("DEQUANTIZE")
def _dequantize(op: QOp, program: QProgram) -> OpEncoding:
    return OpEncoding(schema.BuiltinOperator.DEQUANTIZE, int8_version(program, op),
                      schema.BuiltinOptions.DequantizeOptions, schema.DequantizeOptionsT())


@OP_WRITERS.register("GELU")
def _gelu(op: QOp, program: QProgram) -> OpEncoding:
    opts = schema.GeluOptionsT()
    opts.approximate = bool(option(op, "approximate", False))
    return OpEncoding(schema.BuiltinOperator.GELU, int8_version(program, op), schema.BuiltinOptions.GeluOptions, opts)


@OP_WRITERS.register("SQUARED_DIFFERENCE")
def _squared_difference(op: QOp, program: QProgram) -> OpEncoding:
    return OpEncoding(schema.BuiltinOperator.SQUARED_DIFFERENCE, int8_version(program, op),
                      schema.BuiltinOptions.SquaredDifferenceOptions, schema.SquaredDifferenceOptionsT())


@OP_WRITERS.register("DIV")
def _div(op: QOp, program: QProgram) -> OpEncoding:
    opts = schema.DivOptionsT()
    opts.fusedActivationFunction = schema.ActivationFunctionType.NONE
    return OpEncoding(schema.BuiltinOperator.DIV, 1, schema.BuiltinOptions.DivOptions, opts)


@OP_WRITERS.register("SQRT")
def _sqrt(op: QOp, program: QProgram) -> OpEncoding:
    return OpEncoding(schema.BuiltinOperator.SQRT, 1, schema.BuiltinOptions.NONE, None)


@OP_WRITERS.register("RSQRT")
def _rsqrt(op: QOp, program: QProgram) -> OpEncoding:
    return OpEncoding(schema.BuiltinOperator.RSQRT, int8_version(program, op), schema.BuiltinOptions.NONE, None)
