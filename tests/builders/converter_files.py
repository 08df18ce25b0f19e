"""``.tflite`` files shaped like TensorFlow's converter writes them, built without TensorFlow.

A small int8 program (CONV_2D → RESHAPE → FULLY_CONNECTED → SOFTMAX) is written with our own writer,
then its flatbuffer is edited with LiteRT's object API into what the converter emits for a Keras model:

* ``with_shape_chain``: RESHAPE's new shape computed as SHAPE → STRIDED_SLICE → PACK (Keras ``Flatten``
  with a batch of ``None``: ``reshape(x, [shape(x)[0], -1])``);
* ``with_float_io``: a float32 input quantized by a QUANTIZE and a float32 output made by a DEQUANTIZE
  (the converter's default for full-integer models).
"""
from __future__ import annotations

from collections.abc import Callable

import flatbuffers
import numpy as np
from ai_edge_litert import schema_py_generated as schema

from edgeopt.ir import QParams
from edgeopt.pipeline.emit.tflite import program_to_tflite
from edgeopt.qprogram import QOp, QProgram, QTensor
from edgeopt.runtimes.reference.prepare import prepare_program
from tests.builders.programs import ProgramBuilder

Op = schema.BuiltinOperator


def conv_flatten_softmax_program(rng: np.random.Generator, hw: tuple[int, int] = (6, 5), classes: int = 10,
                                 rounding: str = "double") -> QProgram:
    """CONV_2D (RELU) → RESHAPE to ``[1, -1]`` → FULLY_CONNECTED → SOFTMAX, prepared for ``rounding``."""
    b = ProgramBuilder(rng, "conv_flatten_softmax")
    conv = b.conv(b.input((1, *hw, 3)), 4, activation="RELU")
    flat = b.reshape(conv, (1, hw[0] * hw[1] * 4))
    logits = b.fully_connected(flat, classes)
    program = b.build([logits])
    probs = QTensor("probs", (1, classes), "int8", QParams(1.0 / 256, -128))
    softmax = QOp("SOFTMAX", (logits,), ("probs",), {"beta": 1.0}, source="softmax")
    return prepare_program(program.replace(tensors={**program.tensors, "probs": probs},
                                           ops=(*program.ops, softmax), outputs=("probs",), rounding=rounding))


def edit_model(data: bytes, edit: Callable[[schema.ModelT], None]) -> bytes:
    """``data`` parsed with the object API, changed by ``edit``, and packed again."""
    model = schema.ModelT.InitFromPackedBuf(data, 0)
    edit(model)
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _opcode(model: schema.ModelT, builtin: int) -> int:
    for i, code in enumerate(model.operatorCodes):
        if max(code.builtinCode, code.deprecatedBuiltinCode) == builtin:
            return i
    code = schema.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = builtin
    code.version = 1
    model.operatorCodes.append(code)
    return len(model.operatorCodes) - 1


def add_tensor(model: schema.ModelT, name: str, shape: tuple[int, ...], tensor_type: int,
               data: np.ndarray | None = None) -> int:
    """Append an unquantized tensor (and its buffer: ``data``'s bytes, or empty for an activation); return
    its index."""
    subgraph = model.subgraphs[0]
    tensor = schema.TensorT()
    tensor.name, tensor.shape, tensor.type = name, np.asarray(shape, np.int32), tensor_type
    buffer = schema.BufferT()
    if data is not None:
        buffer.data = np.frombuffer(np.ascontiguousarray(data).tobytes(), np.uint8)
    model.buffers.append(buffer)
    tensor.buffer = len(model.buffers) - 1
    subgraph.tensors.append(tensor)
    return len(subgraph.tensors) - 1


def add_operator(model: schema.ModelT, builtin: int, inputs: list[int], outputs: list[int],
                 options_type: int = 0, options: object = None) -> schema.OperatorT:
    """An operator of ``builtin`` (its operator code added if new), for the caller to place in the subgraph."""
    op = schema.OperatorT()
    op.opcodeIndex = _opcode(model, builtin)
    op.inputs, op.outputs = inputs, outputs
    op.builtinOptionsType, op.builtinOptions = options_type, options
    return op


def _int32(model: schema.ModelT, name: str, values: list[int]) -> int:
    return add_tensor(model, name, (len(values),), schema.TensorType.INT32, np.array(values, np.int32))


def with_shape_chain(data: bytes) -> bytes:
    """Every RESHAPE of ``data`` reads its new shape from SHAPE → STRIDED_SLICE → PACK, as the converter
    writes ``reshape(x, [shape(x)[0], -1])``; the constant shape input and ``new_shape`` are gone."""

    def edit(model: schema.ModelT) -> None:
        subgraph = model.subgraphs[0]
        operators: list[schema.OperatorT] = []
        for op in subgraph.operators:
            code = model.operatorCodes[op.opcodeIndex]
            if max(code.builtinCode, code.deprecatedBuiltinCode) == Op.RESHAPE:
                x = int(op.inputs[0])
                prefix = tensor_name(subgraph.tensors[x])
                rank = len(subgraph.tensors[x].shape)
                shape = add_tensor(model, f"{prefix}/Shape", (rank,), schema.TensorType.INT32)
                batch = add_tensor(model, f"{prefix}/strided_slice", (), schema.TensorType.INT32)
                packed = add_tensor(model, f"{prefix}/Reshape/shape", (2,), schema.TensorType.INT32)
                rest = add_tensor(model, f"{prefix}/Reshape/shape/1", (), schema.TensorType.INT32,
                                  np.array(-1, np.int32))
                shape_options = schema.ShapeOptionsT()
                shape_options.outType = schema.TensorType.INT32
                slice_options = schema.StridedSliceOptionsT()
                slice_options.shrinkAxisMask = 1
                pack_options = schema.PackOptionsT()
                pack_options.valuesCount, pack_options.axis = 2, 0
                operators += [
                    add_operator(model, Op.SHAPE, [x], [shape], schema.BuiltinOptions.ShapeOptions, shape_options),
                    add_operator(model, Op.STRIDED_SLICE, [shape, _int32(model, f"{prefix}/begin", [0]),
                                                        _int32(model, f"{prefix}/end", [1]),
                                                        _int32(model, f"{prefix}/strides", [1])], [batch],
                              schema.BuiltinOptions.StridedSliceOptions, slice_options),
                    add_operator(model, Op.PACK, [batch, rest], [packed], schema.BuiltinOptions.PackOptions,
                              pack_options),
                ]
                op.inputs = [x, packed]
                op.builtinOptionsType, op.builtinOptions = 0, None
            operators.append(op)
        subgraph.operators = operators

    return edit_model(data, edit)


def with_float_io(data: bytes) -> bytes:
    """``data`` with a float32 input → QUANTIZE and DEQUANTIZE → float32 output, per graph input and
    output, as the converter writes a full-integer model with float input and output types."""

    def edit(model: schema.ModelT) -> None:
        subgraph = model.subgraphs[0]
        quantizes, dequantizes = [], []
        renamed: dict[int, int] = {}
        for i in [int(i) for i in subgraph.inputs]:
            t = subgraph.tensors[i]
            f = add_tensor(model, f"{tensor_name(t)}_float", tuple(int(d) for d in t.shape), schema.TensorType.FLOAT32)
            quantizes.append(add_operator(model, Op.QUANTIZE, [f], [i]))
            renamed[i] = f
        for i in [int(i) for i in subgraph.outputs]:
            t = subgraph.tensors[i]
            f = add_tensor(model, f"{tensor_name(t)}_float", tuple(int(d) for d in t.shape), schema.TensorType.FLOAT32)
            dequantizes.append(add_operator(model, Op.DEQUANTIZE, [i], [f]))
            renamed[i] = f
        subgraph.operators = [*quantizes, *subgraph.operators, *dequantizes]
        subgraph.inputs = [renamed[int(i)] for i in subgraph.inputs]
        subgraph.outputs = [renamed[int(i)] for i in subgraph.outputs]
        for signature in model.signatureDefs or []:
            for tensor_map in (*signature.inputs, *signature.outputs):
                tensor_map.tensorIndex = renamed[tensor_map.tensorIndex]

    return edit_model(data, edit)


def tensor_name(tensor: schema.TensorT) -> str:
    """A tensor's name as text (the object API gives bytes)."""
    return tensor.name.decode() if isinstance(tensor.name, bytes) else str(tensor.name)


def converter_style_bytes(program: QProgram, shape_chain: bool = True, float_io: bool = False) -> bytes:
    """``program`` written as TensorFlow's converter would: shape chains and/or float input and output."""
    data = program_to_tflite(program)
    if shape_chain:
        data = with_shape_chain(data)
    return with_float_io(data) if float_io else data
