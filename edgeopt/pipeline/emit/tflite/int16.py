"""Op versions of TFLite's 16x8 ops (int16 activations, int8 weights, int64 biases).

The per-kind writers in ``options.OP_WRITERS`` choose versions for int8 and float32 programs;
``int16_encoding`` raises them for an op in 16x8 mode (``qprogram.op_mode``: it reads or writes int16
activations), following
``tensorflow/lite/tools/versioning/op_version.cc``: CONV_2D 4, DEPTHWISE_CONV_2D 5, FULLY_CONNECTED 7,
AVERAGE_POOL_2D 3, MAX_POOL_2D 3, CONCATENATION 3, RELU 3, RELU6 3, MEAN 3, ADD 3 (with ``pot_scale_int16 = false``: the general-scale kernel; the schema's
default ``true`` would select the power-of-two-scale one), PAD 3, TRANSPOSE 5 (rank <= 5); QUANTIZE's
own writer gives 2 for an int16 output; RESHAPE and STRIDED_SLICE have no int16 version of their own.
"""
from __future__ import annotations

from dataclasses import replace

from edgeopt.pipeline.emit.tflite.options import OpEncoding
from edgeopt.qprogram import QOp, QProgram, op_mode

INT16_VERSIONS = {"CONV_2D": 4, "DEPTHWISE_CONV_2D": 5, "FULLY_CONNECTED": 7, "AVERAGE_POOL_2D": 3, "ADD": 3,
                  "PAD": 3, "MAX_POOL_2D": 3, "CONCATENATION": 3, "RELU": 3, "RELU6": 3, "MEAN": 3}


def int16_encoding(op: QOp, program: QProgram, enc: OpEncoding) -> OpEncoding:
    """``enc`` with the op version (and ADD's ``pot_scale_int16``) of a 16x8 op; others unchanged."""
    if op_mode(op, program) != "16x8":
        return enc
    if op.kind == "ADD":
        enc.options.potScaleInt16 = False
    if op.kind in INT16_VERSIONS:
        return replace(enc, version=INT16_VERSIONS[op.kind])
    if op.kind == "TRANSPOSE" and len(program.tensor(op.inputs[0]).shape) <= 5:
        return replace(enc, version=5)
    return enc
