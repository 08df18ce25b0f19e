"""TFLite writers for the compute ops beyond the first set: SOFTMAX, TRANSPOSE_CONV, BATCH_MATMUL, and the
float ops of float islands (QUANTIZE, DEQUANTIZE, GELU, MEAN, SUB, MUL, SQUARED_DIFFERENCE, RSQRT).

Versions follow ``tensorflow/lite/tools/versioning/op_version.cc`` for the types a QProgram holds.
"""
from __future__ import annotations

from ai_edge_litert import schema_py_generated as schema

from edgeopt.pipeline.emit.tflite import OP_WRITERS, OpEncoding, _activation, _int8, _option, _padding
from edgeopt.qprogram import QOp, QProgram


@OP_WRITERS.register("SOFTMAX")
def _softmax(op: QOp, program: QProgram) -> OpEncoding:
    opts = schema.SoftmaxOptionsT()
    opts.beta = float(_option(op, "beta", 1.0))
    version = 2 if _int8(program, op) else 1
    return OpEncoding(schema.BuiltinOperator.SOFTMAX, version, schema.BuiltinOptions.SoftmaxOptions, opts)


@OP_WRITERS.register("TRANSPOSE_CONV")
def _transpose_conv(op: QOp, program: QProgram) -> OpEncoding:
    """Inputs are (output_shape, weights, input, bias): version 3 with a bias, 2 for int8 weights."""
    opts = schema.TransposeConvOptionsT()
    opts.padding = _padding(op)
    opts.strideH = int(_option(op, "stride_h"))
    opts.strideW = int(_option(op, "stride_w"))
    opts.fusedActivationFunction = _activation(op)
    if opts.fusedActivationFunction != schema.ActivationFunctionType.NONE:
        version = 4
    elif len(op.inputs) > 3 and op.inputs[3]:
        version = 3
    else:
        version = 2 if program.tensors[op.inputs[1]].dtype == "int8" else 1
    return OpEncoding(
        schema.BuiltinOperator.TRANSPOSE_CONV, version, schema.BuiltinOptions.TransposeConvOptions, opts
    )


@OP_WRITERS.register("BATCH_MATMUL")
def _batch_matmul(op: QOp, program: QProgram) -> OpEncoding:
    opts = schema.BatchMatMulOptionsT()
    opts.adjX = bool(_option(op, "adj_x", False))
    opts.adjY = bool(_option(op, "adj_y", False))
    version = 2 if _int8(program, op) else 1
    return OpEncoding(schema.BuiltinOperator.BATCH_MATMUL, version, schema.BuiltinOptions.BatchMatMulOptions, opts)
