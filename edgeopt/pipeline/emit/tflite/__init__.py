"""The TFLite writer: a QProgram serialised into a LiteRT flatbuffer (``.tflite``, schema version 3).

It writes what TensorFlow's converter writes for a fully int8 model, so that LiteRT, XNNPACK, NPU
delegates and Netron treat the file like any converted one: buffer 0 is the empty sentinel, each
constant has its own 16-byte aligned buffer and each activation its own empty one, int8 tensors carry
their scales and zero points (per-channel along axis 0, or 3 for DEPTHWISE_CONV_2D), operator codes
carry the op version the converter assigns (``tensorflow/lite/tools/versioning/op_version.cc``), and a
``serving_default`` signature names the inputs and outputs.

One small writer per op kind, in ``OP_WRITERS``, maps ``QOp.options`` to the op's builtin options and
version; the rest of the file is the same for every op.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import flatbuffers
import numpy as np
from ai_edge_litert import schema_py_generated as schema

from edgeopt.errors import InternalError, UnsupportedOpError
from edgeopt.fileio import atomic_write_bytes
from edgeopt.qprogram import FUSED_ACTIVATIONS, QOp, QProgram, QTensor
from edgeopt.registry import OpRegistry, Registry

SCHEMA_VERSION = 3
DESCRIPTION = "edgeopt"
SIGNATURE_KEY = "serving_default"
# The converter aligns constant buffers to 16 bytes so that kernels may read them in place with
# vector loads; a file mapped at a page boundary then keeps that alignment.
BUFFER_ALIGNMENT = 16
# Operator codes above 127 only fit the newer ``builtin_code`` field; the deprecated int8 field holds
# this placeholder for them, and readers take the larger of the two.
_PLACEHOLDER_FOR_GREATER_OP_CODES = schema.BuiltinOperator.PLACEHOLDER_FOR_GREATER_OP_CODES

# The dtypes a QProgram holds: int8 activations and weights, int32 biases and shape operands, float32
# islands. Others (int16 activations) would need their own op versions below.
_TENSOR_TYPES: Mapping[str, int] = {
    "float32": schema.TensorType.FLOAT32,
    "int8": schema.TensorType.INT8,
    "int32": schema.TensorType.INT32,
    "int16": schema.TensorType.INT16,  # 16x8 activations (tflite_int16)
    "int64": schema.TensorType.INT64,  # 16x8 biases
}


@dataclass(frozen=True)
class OpEncoding:
    """How one QOp appears in the flatbuffer: builtin code, op version and builtin options."""

    code: int
    version: int
    options_type: int
    options: Any


OpWriter = Callable[[QOp, QProgram], OpEncoding]
OP_WRITERS: Registry[OpWriter] = OpRegistry("TFLite op writer")


def program_to_tflite(program: QProgram) -> bytes:
    """Serialise ``program`` into the bytes of a ``.tflite`` file.

    Args:
        program: An int8 program whose ops are all in ``OP_WRITERS``.

    Returns:
        A finished flatbuffer with file identifier ``TFL3``.

    Raises:
        UnsupportedOpError: An op kind has no writer, or an option value has no TFLite encoding.
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


def _encode_op(op: QOp, program: QProgram) -> OpEncoding:
    if op.kind not in OP_WRITERS:
        raise UnsupportedOpError(op.kind, op.source, "no TFLite writer for it")
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


# Option helpers. A missing option with no TFLite default is a lowering bug, hence InternalError.

_REQUIRED = object()


def _option(op: QOp, key: str, default: Any = _REQUIRED) -> Any:
    if key in op.options:
        return op.options[key]
    if default is _REQUIRED:
        raise InternalError(f"{op.kind} op '{op.source}' lacks option '{key}'")
    return default


def _enum(op: QOp, key: str, enum: type, allowed: tuple[str, ...], default: Any = _REQUIRED) -> int:
    value = _option(op, key, default)
    if value not in allowed:
        raise UnsupportedOpError(op.kind, op.source, f"{key} {value!r} is not one of {', '.join(allowed)}")
    return int(getattr(enum, value))


def _padding(op: QOp) -> int:
    return _enum(op, "padding", schema.Padding, ("SAME", "VALID"))


def _activation(op: QOp) -> int:
    return _enum(op, "fused_activation_function", schema.ActivationFunctionType, FUSED_ACTIVATIONS, "NONE")


def _dtype(program: QProgram, op: QOp, i: int) -> str:
    return program.tensors[op.inputs[i]].dtype


def _rank(program: QProgram, op: QOp) -> int:
    return len(program.tensors[op.inputs[0]].shape)


def _require_same_encoding(op: QOp, program: QProgram) -> None:
    """TFLite's int8 AVERAGE_POOL_2D and data-movement kernels work on the raw values and never requantize.

    The reference kernels then silently ignore a different output encoding and XNNPACK refuses the op
    (PAD, TRANSPOSE), so such a program must not be written.
    """
    x, y = program.tensors[op.inputs[0]].qparams, program.tensors[op.outputs[0]].qparams
    if x is not None and y is not None and not x.same_as(y):
        raise InternalError(f"{op.kind} op '{op.source}' has an output encoding different from its input's")


def _int8(program: QProgram, op: QOp) -> bool:
    """Whether the op runs on int8 data (its first input), the case that raises most op versions."""
    return _dtype(program, op, 0) == "int8"


# One writer per op kind. Versions follow op_version.cc for the types a QProgram holds (int8
# activations and weights, or float32 for a float island); ops and ranks the table below does not
# list stay at version 1, as the converter leaves them.


@OP_WRITERS.register("CONV_2D")
def _conv_2d(op: QOp, program: QProgram) -> OpEncoding:
    opts = schema.Conv2DOptionsT()
    opts.padding = _padding(op)
    opts.strideH = int(_option(op, "stride_h"))
    opts.strideW = int(_option(op, "stride_w"))
    opts.dilationHFactor = int(_option(op, "dilation_h_factor", 1))
    opts.dilationWFactor = int(_option(op, "dilation_w_factor", 1))
    opts.fusedActivationFunction = _activation(op)
    # Version 3 is the int8 kernel (per-channel weights included); float with dilation stays 1;
    # filters with fewer input channels than the input (a grouped convolution) need version 6.
    version = 3 if _int8(program, op) and _dtype(program, op, 1) == "int8" else 1
    if program.tensors[op.inputs[1]].shape[3] != program.tensors[op.inputs[0]].shape[3]:
        version = 6
    return OpEncoding(schema.BuiltinOperator.CONV_2D, version, schema.BuiltinOptions.Conv2DOptions, opts)


@OP_WRITERS.register("DEPTHWISE_CONV_2D")
def _depthwise_conv_2d(op: QOp, program: QProgram) -> OpEncoding:
    in_channels = program.tensors[op.inputs[0]].shape[3]
    out_channels = program.tensors[op.inputs[1]].shape[3]
    opts = schema.DepthwiseConv2DOptionsT()
    opts.padding = _padding(op)
    opts.strideH = int(_option(op, "stride_h"))
    opts.strideW = int(_option(op, "stride_w"))
    opts.dilationHFactor = int(_option(op, "dilation_h_factor", 1))
    opts.dilationWFactor = int(_option(op, "dilation_w_factor", 1))
    opts.depthMultiplier = int(_option(op, "depth_multiplier", out_channels // in_channels))
    opts.fusedActivationFunction = _activation(op)
    if _int8(program, op) and _dtype(program, op, 1) == "int8":
        version = 3
    else:
        version = 2 if (opts.dilationHFactor, opts.dilationWFactor) != (1, 1) else 1
    return OpEncoding(
        schema.BuiltinOperator.DEPTHWISE_CONV_2D, version, schema.BuiltinOptions.DepthwiseConv2DOptions, opts
    )


@OP_WRITERS.register("FULLY_CONNECTED")
def _fully_connected(op: QOp, program: QProgram) -> OpEncoding:
    opts = schema.FullyConnectedOptionsT()
    opts.fusedActivationFunction = _activation(op)
    opts.keepNumDims = bool(_option(op, "keep_num_dims", False))
    has_bias = len(op.inputs) > 2 and op.inputs[2] != ""
    if not has_bias:
        version = 6
    elif opts.keepNumDims:
        version = 5
    else:
        version = 4 if _int8(program, op) and _dtype(program, op, 1) == "int8" else 1
    return OpEncoding(
        schema.BuiltinOperator.FULLY_CONNECTED, version, schema.BuiltinOptions.FullyConnectedOptions, opts
    )


@OP_WRITERS.register("ADD")
def _add(op: QOp, program: QProgram) -> OpEncoding:
    opts = schema.AddOptionsT()
    opts.fusedActivationFunction = _activation(op)
    version = 2 if _int8(program, op) else 1
    return OpEncoding(schema.BuiltinOperator.ADD, version, schema.BuiltinOptions.AddOptions, opts)


def pool_options(op: QOp) -> schema.Pool2DOptionsT:
    """The Pool2DOptions of AVERAGE_POOL_2D and MAX_POOL_2D."""
    opts = schema.Pool2DOptionsT()
    opts.padding = _padding(op)
    opts.strideH = int(_option(op, "stride_h"))
    opts.strideW = int(_option(op, "stride_w"))
    opts.filterHeight = int(_option(op, "filter_height"))
    opts.filterWidth = int(_option(op, "filter_width"))
    opts.fusedActivationFunction = _activation(op)
    return opts


@OP_WRITERS.register("AVERAGE_POOL_2D")
def _average_pool_2d(op: QOp, program: QProgram) -> OpEncoding:
    _require_same_encoding(op, program)
    version = 2 if _int8(program, op) else 1
    return OpEncoding(schema.BuiltinOperator.AVERAGE_POOL_2D, version, schema.BuiltinOptions.Pool2DOptions,
                      pool_options(op))


@OP_WRITERS.register("RESHAPE")
def _reshape(op: QOp, program: QProgram) -> OpEncoding:
    _require_same_encoding(op, program)
    # A program read from another converter's file may carry the shape only as the constant input.
    shape = program.tensors[op.inputs[1]].data if len(op.inputs) > 1 else None
    opts = schema.ReshapeOptionsT()
    opts.newShape = [int(d) for d in _option(op, "new_shape", _REQUIRED if shape is None else shape)]
    # RESHAPE has a single version for every type.
    return OpEncoding(schema.BuiltinOperator.RESHAPE, 1, schema.BuiltinOptions.ReshapeOptions, opts)


@OP_WRITERS.register("PAD")
def _pad(op: QOp, program: QProgram) -> OpEncoding:
    _require_same_encoding(op, program)
    if _rank(program, op) > 4:
        version = 4
    else:
        version = 2 if _int8(program, op) else 1
    return OpEncoding(schema.BuiltinOperator.PAD, version, schema.BuiltinOptions.PadOptions, schema.PadOptionsT())


@OP_WRITERS.register("STRIDED_SLICE")
def _strided_slice(op: QOp, program: QProgram) -> OpEncoding:
    _require_same_encoding(op, program)
    opts = schema.StridedSliceOptionsT()
    opts.beginMask = int(_option(op, "begin_mask", 0))
    opts.endMask = int(_option(op, "end_mask", 0))
    opts.ellipsisMask = int(_option(op, "ellipsis_mask", 0))
    opts.newAxisMask = int(_option(op, "new_axis_mask", 0))
    opts.shrinkAxisMask = int(_option(op, "shrink_axis_mask", 0))
    opts.offset = bool(_option(op, "offset", False))
    if opts.offset:
        version = 8
    elif opts.ellipsisMask or opts.newAxisMask:
        version = 6
    elif _rank(program, op) > 4:
        version = 4
    else:
        version = 2 if _int8(program, op) else 1
    return OpEncoding(
        schema.BuiltinOperator.STRIDED_SLICE, version, schema.BuiltinOptions.StridedSliceOptions, opts
    )


@OP_WRITERS.register("TRANSPOSE")
def _transpose(op: QOp, program: QProgram) -> OpEncoding:
    _require_same_encoding(op, program)
    rank = _rank(program, op)
    if rank > 5:
        version = 6
    elif rank > 4:
        version = 4
    else:
        version = 2 if _int8(program, op) else 1
    return OpEncoding(
        schema.BuiltinOperator.TRANSPOSE, version, schema.BuiltinOptions.TransposeOptions, schema.TransposeOptionsT()
    )


# Writers of other op families register themselves in OP_WRITERS when imported.
from edgeopt.pipeline.emit.tflite import movement  # noqa: E402,F401
from edgeopt.pipeline.emit.tflite import compute  # noqa: E402,F401
from edgeopt.pipeline.emit.tflite import elementwise  # noqa: E402,F401
from edgeopt.pipeline.emit.tflite import reduce_split  # noqa: E402,F401
from edgeopt.pipeline.emit.tflite import float  # noqa: E402,F401
from edgeopt.pipeline.emit.tflite.int16 import int16_encoding  # noqa: E402
