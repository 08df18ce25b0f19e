"""TFLite writers for the ops that multiply by weights or by each other: CONV_2D, DEPTHWISE_CONV_2D,
FULLY_CONNECTED, TRANSPOSE_CONV, BATCH_MATMUL, and SOFTMAX.

Versions follow ``tensorflow/lite/tools/versioning/op_version.cc`` for the types a QProgram holds.
"""
from __future__ import annotations

from ai_edge_litert import schema_py_generated as schema

from edgeopt.pipeline.emit.tflite.options import (
    OP_WRITERS,
    OpEncoding,
    activation,
    input_dtype,
    int8_version,
    option,
    padding,
    reads_int8,
)
from edgeopt.qprogram import QOp, QProgram


@OP_WRITERS.register("CONV_2D")
def _conv_2d(op: QOp, program: QProgram) -> OpEncoding:
    opts = schema.Conv2DOptionsT()
    opts.padding = padding(op)
    opts.strideH = int(option(op, "stride_h"))
    opts.strideW = int(option(op, "stride_w"))
    opts.dilationHFactor = int(option(op, "dilation_h_factor", 1))
    opts.dilationWFactor = int(option(op, "dilation_w_factor", 1))
    opts.fusedActivationFunction = activation(op)
    # Version 3 is the int8 kernel (per-channel weights included); float with dilation stays 1;
    # filters with fewer input channels than the input (a grouped convolution) need version 6.
    version = 3 if reads_int8(program, op) and input_dtype(program, op, 1) == "int8" else 1
    if program.tensors[op.inputs[1]].shape[3] != program.tensors[op.inputs[0]].shape[3]:
        version = 6
    return OpEncoding(schema.BuiltinOperator.CONV_2D, version, schema.BuiltinOptions.Conv2DOptions, opts)


@OP_WRITERS.register("DEPTHWISE_CONV_2D")
def _depthwise_conv_2d(op: QOp, program: QProgram) -> OpEncoding:
    in_channels = program.tensors[op.inputs[0]].shape[3]
    out_channels = program.tensors[op.inputs[1]].shape[3]
    opts = schema.DepthwiseConv2DOptionsT()
    opts.padding = padding(op)
    opts.strideH = int(option(op, "stride_h"))
    opts.strideW = int(option(op, "stride_w"))
    opts.dilationHFactor = int(option(op, "dilation_h_factor", 1))
    opts.dilationWFactor = int(option(op, "dilation_w_factor", 1))
    opts.depthMultiplier = int(option(op, "depth_multiplier", out_channels // in_channels))
    opts.fusedActivationFunction = activation(op)
    if reads_int8(program, op) and input_dtype(program, op, 1) == "int8":
        version = 3
    else:
        version = 2 if (opts.dilationHFactor, opts.dilationWFactor) != (1, 1) else 1
    return OpEncoding(
        schema.BuiltinOperator.DEPTHWISE_CONV_2D, version, schema.BuiltinOptions.DepthwiseConv2DOptions, opts
    )


@OP_WRITERS.register("FULLY_CONNECTED")
def _fully_connected(op: QOp, program: QProgram) -> OpEncoding:
    opts = schema.FullyConnectedOptionsT()
    opts.fusedActivationFunction = activation(op)
    opts.keepNumDims = bool(option(op, "keep_num_dims", False))
    has_bias = len(op.inputs) > 2 and op.inputs[2] != ""
    if not has_bias:
        version = 6
    elif opts.keepNumDims:
        version = 5
    else:
        version = 4 if reads_int8(program, op) and input_dtype(program, op, 1) == "int8" else 1
    return OpEncoding(
        schema.BuiltinOperator.FULLY_CONNECTED, version, schema.BuiltinOptions.FullyConnectedOptions, opts
    )


@OP_WRITERS.register("TRANSPOSE_CONV")
def _transpose_conv(op: QOp, program: QProgram) -> OpEncoding:
    """Inputs are (output_shape, weights, input, bias): version 3 with a bias, 2 for int8 weights."""
    opts = schema.TransposeConvOptionsT()
    opts.padding = padding(op)
    opts.strideH = int(option(op, "stride_h"))
    opts.strideW = int(option(op, "stride_w"))
    opts.fusedActivationFunction = activation(op)
    if opts.fusedActivationFunction != schema.ActivationFunctionType.NONE:
        version = 4
    elif len(op.inputs) > 3 and op.inputs[3]:
        version = 3
    else:
        version = 2 if input_dtype(program, op, 1) == "int8" else 1
    return OpEncoding(
        schema.BuiltinOperator.TRANSPOSE_CONV, version, schema.BuiltinOptions.TransposeConvOptions, opts
    )


@OP_WRITERS.register("BATCH_MATMUL")
def _batch_matmul(op: QOp, program: QProgram) -> OpEncoding:
    opts = schema.BatchMatMulOptionsT()
    opts.adjX = bool(option(op, "adj_x", False))
    opts.adjY = bool(option(op, "adj_y", False))
    return OpEncoding(schema.BuiltinOperator.BATCH_MATMUL, int8_version(program, op),
                      schema.BuiltinOptions.BatchMatMulOptions, opts)


@OP_WRITERS.register("SOFTMAX")
def _softmax(op: QOp, program: QProgram) -> OpEncoding:
    opts = schema.SoftmaxOptionsT()
    opts.beta = float(option(op, "beta", 1.0))
    return OpEncoding(schema.BuiltinOperator.SOFTMAX, int8_version(program, op), schema.BuiltinOptions.SoftmaxOptions,
                      opts)
