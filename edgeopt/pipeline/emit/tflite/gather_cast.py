"""TFLite writers for GATHER and CAST (``OP_WRITERS`` entries).

GATHER copies values, so an int8 GATHER refuses an output encoding that differs from its input's
(``require_same_encoding``). Versions follow ``tensorflow/lite/tools/versioning/op_version.cc``: GATHER
is 2 for int8 data, 3 for bool, 1 for float32 and int32 (with ``batch_dims`` 0 and int32 positions);
CAST between int32, bool and float32 is 1. CAST's options name the input and output types.
"""
from __future__ import annotations

from ai_edge_litert import schema_py_generated as schema

from edgeopt.pipeline.emit.tflite.options import OP_WRITERS, OpEncoding, input_dtype, option, require_same_encoding
from edgeopt.qprogram import QOp, QProgram

_GATHER_VERSIONS = {"int8": 2, "bool": 3}
_TYPES = {"float32": schema.TensorType.FLOAT32, "int32": schema.TensorType.INT32, "bool": schema.TensorType.BOOL}


@OP_WRITERS.register("GATHER")
def _gather(op: QOp, program: QProgram) -> OpEncoding:
    require_same_encoding(op, program)
    opts = schema.GatherOptionsT()
    opts.axis = int(option(op, "axis"))
    opts.batchDims = int(option(op, "batch_dims", 0))
    version = _GATHER_VERSIONS.get(input_dtype(program, op, 0), 1)
    return OpEncoding(schema.BuiltinOperator.GATHER, version, schema.BuiltinOptions.GatherOptions, opts)


@OP_WRITERS.register("CAST")
def _cast(op: QOp, program: QProgram) -> OpEncoding:
    opts = schema.CastOptionsT()
    opts.inDataType = _TYPES[input_dtype(program, op, 0)]
    opts.outDataType = _TYPES[program.tensors[op.outputs[0]].dtype]
    return OpEncoding(schema.BuiltinOperator.CAST, 1, schema.BuiltinOptions.CastOptions, opts)
