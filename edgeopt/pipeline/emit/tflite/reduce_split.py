"""TFLite writers for MEAN, REDUCE_MAX, SPLIT and SPLIT_V (``OP_WRITERS`` entries).

Versions follow ``tensorflow/lite/tools/versioning/op_version.cc``: MEAN, REDUCE_MAX, SPLIT and SPLIT_V are 2 for
int8 data, 1 for float32. SPLIT's data is its second input (the first is the axis).
"""
from __future__ import annotations

from ai_edge_litert import schema_py_generated as schema

from edgeopt.pipeline.emit.tflite.options import OP_WRITERS, OpEncoding, input_dtype, option, require_same_encoding
from edgeopt.qprogram import QOp, QProgram


def _version(program: QProgram, op: QOp, data_input: int) -> int:
    return 2 if input_dtype(program, op, data_input) == "int8" else 1


@OP_WRITERS.register("MEAN")
def _mean(op: QOp, program: QProgram) -> OpEncoding:
    opts = schema.ReducerOptionsT()
    opts.keepDims = bool(option(op, "keep_dims"))
    return OpEncoding(schema.BuiltinOperator.MEAN, _version(program, op, 0), schema.BuiltinOptions.ReducerOptions, opts)


@OP_WRITERS.register("REDUCE_MAX")
def _reduce_max(op: QOp, program: QProgram) -> OpEncoding:
    require_same_encoding(op, program)
    opts = schema.ReducerOptionsT()
    opts.keepDims = bool(option(op, "keep_dims", False))
    return OpEncoding(schema.BuiltinOperator.REDUCE_MAX, _version(program, op, 0), schema.BuiltinOptions.ReducerOptions,
                      opts)


def _split_outputs_share_encoding(op: QOp, program: QProgram, data_input: int) -> None:
    for out in op.outputs:
        require_same_encoding(QOp(op.kind, (op.inputs[data_input],), (out,), source=op.source), program)


@OP_WRITERS.register("SPLIT")
def _split(op: QOp, program: QProgram) -> OpEncoding:
    _split_outputs_share_encoding(op, program, 1)
    opts = schema.SplitOptionsT()
    opts.numSplits = len(op.outputs)
    return OpEncoding(schema.BuiltinOperator.SPLIT, _version(program, op, 1), schema.BuiltinOptions.SplitOptions, opts)


@OP_WRITERS.register("SPLIT_V")
def _split_v(op: QOp, program: QProgram) -> OpEncoding:
    _split_outputs_share_encoding(op, program, 0)
    opts = schema.SplitVOptionsT()
    opts.numSplits = len(op.outputs)
    return OpEncoding(schema.BuiltinOperator.SPLIT_V, _version(program, op, 0),
                      schema.BuiltinOptions.SplitVOptions, opts)
