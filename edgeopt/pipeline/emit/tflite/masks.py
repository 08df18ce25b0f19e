"""TFLite writers for the attention-mask ops EQUAL, LOGICAL_AND, BROADCAST_TO and SELECT_V2 (``OP_WRITERS``).

BROADCAST_TO copies values, so an int8 one refuses an output encoding that differs from its input's
(``require_same_encoding``). Versions follow ``tensorflow/lite/tools/versioning/op_version.cc``:
EQUAL on int32 or bool tensors 1; LOGICAL_AND 1; BROADCAST_TO 2 (version 1 was a placeholder the runtime
never registered), 3 for int8 data; SELECT_V2 on float32 values 1.
"""
from __future__ import annotations

from ai_edge_litert import schema_py_generated as schema

from edgeopt.pipeline.emit.tflite.options import OP_WRITERS, OpEncoding, reads_int8, require_same_encoding
from edgeopt.qprogram import QOp, QProgram


@OP_WRITERS.register("EQUAL")
def _equal(op: QOp, program: QProgram) -> OpEncoding:
    return OpEncoding(schema.BuiltinOperator.EQUAL, 1, schema.BuiltinOptions.EqualOptions, schema.EqualOptionsT())


@OP_WRITERS.register("LOGICAL_AND")
def _logical_and(op: QOp, program: QProgram) -> OpEncoding:
    return OpEncoding(schema.BuiltinOperator.LOGICAL_AND, 1, schema.BuiltinOptions.LogicalAndOptions,
                      schema.LogicalAndOptionsT())


@OP_WRITERS.register("BROADCAST_TO")
def _broadcast_to(op: QOp, program: QProgram) -> OpEncoding:
    require_same_encoding(op, program)
    return OpEncoding(schema.BuiltinOperator.BROADCAST_TO, 3 if reads_int8(program, op) else 2,
                      schema.BuiltinOptions.BroadcastToOptions, schema.BroadcastToOptionsT())


@OP_WRITERS.register("SELECT_V2")
def _select_v2(op: QOp, program: QProgram) -> OpEncoding:
    return OpEncoding(schema.BuiltinOperator.SELECT_V2, 1, schema.BuiltinOptions.SelectV2Options,
                      schema.SelectV2OptionsT())
