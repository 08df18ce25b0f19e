"""The TFLite writer: a QProgram serialised into a LiteRT flatbuffer (``.tflite``, schema version 3).

It writes what TensorFlow's converter writes for a fully int8 model, so that LiteRT, XNNPACK, NPU
delegates and Netron treat the file like any converted one: buffer 0 is the empty sentinel, each
constant has its own 16-byte aligned buffer and each activation its own empty one, int8 tensors carry
their scales and zero points (per-channel along axis 0, or 3 for DEPTHWISE_CONV_2D), operator codes
carry the op version the converter assigns (``tensorflow/lite/tools/versioning/op_version.cc``), and a
``serving_default`` signature names the inputs and outputs.

One small writer per op kind, in ``options.OP_WRITERS``, maps ``QOp.options`` to the op's builtin options
and version; the family modules beside it hold the writers (compute, elementwise, movement, reduce_split,
float_island), ``int16`` raises the versions of 16x8 ops, and this module writes the rest of the file,
which is the same for every op.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import flatbuffers
import numpy as np
from ai_edge_litert import schema_py_generated as schema

from edgeopt.errors import InternalError, UnsupportedOpError
from edgeopt.fileio import atomic_write_bytes
# Imported for their side effect: each family module registers its writers in OP_WRITERS.
from edgeopt.pipeline.emit.tflite import compute, elementwise, float_island, movement, reduce_split  # noqa: F401
from edgeopt.pipeline.emit.tflite import gather_cast, masks  # noqa: F401
from edgeopt.pipeline.emit.tflite.int16 import int16_encoding
from edgeopt.pipeline.emit.tflite.options import OP_WRITERS, OpEncoding
from edgeopt.qprogram import QOp, QProgram, QTensor

SCHEMA_VERSION = 3
DESCRIPTION = "edgeopt"
SIGNATURE_KEY = "serving_default"
# The converter aligns constant buffers to 16 bytes so that kernels may read them in place with
# vector loads; a file mapped at a page boundary then keeps that alignment.
BUFFER_ALIGNMENT = 16
# Operator codes above 127 only fit the newer ``builtin_code`` field; the deprecated int8 field holds
# this placeholder for them, and readers take the larger of the two.
_PLACEHOLDER_FOR_GREATER_OP_CODES = schema.BuiltinOperator.PLACEHOLDER_FOR_GREATER_OP_CODES

# The op kinds whose second input is a weight tensor.
WEIGHTED_KINDS = frozenset({"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV"})
# The dtypes a QProgram holds: int8 activations and weights, int32 biases and shape operands, float32
# islands, and the int16 activations and int64 biases of 16x8 ops.
_TENSOR_TYPES: Mapping[str, int] = {
    "float32": schema.TensorType.FLOAT32,
    "int8": schema.TensorType.INT8,
    "int32": schema.TensorType.INT32,
    "int16": schema.TensorType.INT16,
    "int64": schema.TensorType.INT64,
    "bool": schema.TensorType.BOOL,  # attention masks
}


def program_to_tflite(program: QProgram) -> bytes:
    """Serialise ``program`` into the bytes of a ``.tflite`` file.

    Args:
        program: An int8 program whose ops are all in ``OP_WRITERS``.

    Returns:
        A finished flatbuffer with file identifier ``TFL3``.

    Raises:
        UnsupportedOpError: An op kind has no writer, an option value has no TFLite encoding, or weights
            have a non-zero zero point (``check_symmetric_weights``).
        InternalError: The program is malformed: a tensor an op uses is not in it, a required option is
            missing, or an op that TFLite runs on raw int8 values changes the encoding.
    """
    names = _used_tensor_names(program)
    encodings = [_encode_op(op, program) for op in program.ops]
    index = {name: i for i, name in enumerate(names)}
    buffers: list[schema.BufferT] = [schema.BufferT()]
    tensors = [_tensor(program.tensors[name], buffers) for name in names]

    op_codes: dict[tuple[int, int], int] = {}
    operators = [_operator(op, enc, index, op_codes) for op, enc in zip(program.ops, encodings)]

    subgraph = schema.SubGraphT()
    subgraph.name = "main"
    subgraph.tensors = tensors
    subgraph.inputs = [index[name] for name in program.inputs]
    subgraph.outputs = [index[name] for name in program.outputs]
    subgraph.operators = operators

    model = schema.ModelT()
    model.version = SCHEMA_VERSION
    model.description = DESCRIPTION
    model.operatorCodes = [_operator_code(code, version) for code, version in op_codes]
    model.subgraphs = [subgraph]
    model.buffers = buffers
    model.signatureDefs = [_signature(program, index)]

    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def write_tflite(program: QProgram, path: str | os.PathLike[str]) -> Path:
    """Serialise ``program`` and write it atomically to ``path``.

    Args:
        program: The program to write.
        path: Destination file; its parent directories are created.

    Returns:
        The path written. If serialisation fails, nothing is written and an older file stays as it was.
    """
    return atomic_write_bytes(path, program_to_tflite(program))


def check_symmetric_weights(op: QOp, program: QProgram) -> None:
    """Refuse int8 weights with a non-zero zero point (a device's per-tensor asymmetric scheme, which the
    executor runs): TFLite's int8 spec has weights symmetric, and LiteRT 2.3's int8 kernels refuse them
    (CONV_2D) or silently ignore the zero point (DEPTHWISE_CONV_2D), so no such file is written."""
    if op.kind not in WEIGHTED_KINDS:
        return
    w = program.tensors[op.inputs[1]]
    if w.dtype == "int8" and w.qparams is not None and np.any(w.qparams.zero_point):
        raise UnsupportedOpError(
            op.kind, op.source, f"weights '{w.name}' have zero point {int(w.qparams.zero_point[0])}; LiteRT's int8 "
            "kernels take symmetric weights (zero point 0): write the symmetric program (Target.ship) and run "
            "this one in the integer executor")


def _encode_op(op: QOp, program: QProgram) -> OpEncoding:
    if op.kind not in OP_WRITERS:
        raise UnsupportedOpError(op.kind, op.source, "no TFLite writer for it")
    check_symmetric_weights(op, program)
    for name in filter(None, (*op.inputs, *op.outputs)):
        dtype = program.tensors[name].dtype
        if dtype not in _TENSOR_TYPES:
            raise UnsupportedOpError(
                op.kind, op.source, f"tensor '{name}' is {dtype}; the TFLite writer takes {', '.join(_TENSOR_TYPES)}"
            )
    return int16_encoding(op, program, OP_WRITERS.get(op.kind)(op, program))


def _used_tensor_names(program: QProgram) -> list[str]:
    """Names of the tensors the graph touches, in the program's tensor order (unused ones are dropped)."""
    used = {*program.inputs, *program.outputs}
    for op in program.ops:
        used.update(name for name in (*op.inputs, *op.outputs) if name)
    missing = sorted(used - set(program.tensors))
    if missing:
        raise InternalError(f"program '{program.name}' uses undeclared tensor(s): {', '.join(missing)}")
    return [name for name in program.tensors if name in used]


def _tensor(tensor: QTensor, buffers: list[schema.BufferT]) -> schema.TensorT:
    """The flatbuffer tensor for ``tensor``; appends its buffer (data for constants, empty otherwise)."""
    if tensor.dtype not in _TENSOR_TYPES:
        raise InternalError(f"tensor '{tensor.name}' has dtype {tensor.dtype}, which no TFLite tensor type holds")
    out = schema.TensorT()
    out.name = tensor.name
    out.shape = np.asarray(tensor.shape, dtype=np.int32)
    out.type = _TENSOR_TYPES[tensor.dtype]
    out.buffer = len(buffers)
    buffers.append(_AlignedBufferT(_little_endian_bytes(tensor.data)) if tensor.is_constant else schema.BufferT())
    if tensor.qparams is not None:
        q = schema.QuantizationParametersT()
        q.scale = np.asarray(tensor.qparams.scale, dtype=np.float32)
        q.zeroPoint = np.asarray(tensor.qparams.zero_point, dtype=np.int64)
        q.quantizedDimension = tensor.qparams.axis or 0
        out.quantization = q
    return out


def _little_endian_bytes(data: np.ndarray) -> bytes:
    return np.ascontiguousarray(data, dtype=data.dtype.newbyteorder("<")).tobytes()


class _AlignedBufferT(schema.BufferT):
    """A constant buffer whose bytes start on a ``BUFFER_ALIGNMENT`` boundary, as the converter writes."""

    def __init__(self, payload: bytes) -> None:
        super().__init__()
        self.payload = payload

    def Pack(self, builder: flatbuffers.Builder) -> int:
        size = len(self.payload)
        builder.StartVector(1, size, BUFFER_ALIGNMENT)
        # The generated BufferT.Pack aligns data to its 1-byte elements only; this is CreateNumpyVector's
        # raw copy after a 16-byte alignment.
        builder.head -= size
        builder.Bytes[builder.head : builder.head + size] = self.payload
        data = builder.EndVector()
        schema.BufferStart(builder)
        schema.BufferAddData(builder, data)
        return schema.BufferEnd(builder)


def _operator(
    op: QOp, enc: OpEncoding, index: Mapping[str, int], op_codes: dict[tuple[int, int], int]
) -> schema.OperatorT:
    out = schema.OperatorT()
    out.opcodeIndex = op_codes.setdefault((enc.code, enc.version), len(op_codes))
    # An empty name is TFLite's "optional input left out" (-1).
    out.inputs = [index[name] if name else -1 for name in op.inputs]
    out.outputs = [index[name] for name in op.outputs]
    out.builtinOptionsType = enc.options_type
    out.builtinOptions = enc.options
    return out


def _operator_code(code: int, version: int) -> schema.OperatorCodeT:
    out = schema.OperatorCodeT()
    out.builtinCode = code
    out.deprecatedBuiltinCode = min(code, _PLACEHOLDER_FOR_GREATER_OP_CODES)
    out.version = version
    return out


def _signature(program: QProgram, index: Mapping[str, int]) -> schema.SignatureDefT:
    def tensor_map(name: str) -> schema.TensorMapT:
        out = schema.TensorMapT()
        out.name = name
        out.tensorIndex = index[name]
        return out

    sig = schema.SignatureDefT()
    sig.signatureKey = SIGNATURE_KEY
    sig.subgraphIndex = 0
    sig.inputs = [tensor_map(name) for name in program.inputs]
    sig.outputs = [tensor_map(name) for name in program.outputs]
    return sig
