"""The TFLite reader: any int8 ``.tflite`` (ours or another converter's) → the QProgram our lowering makes.

The flatbuffer is parsed with LiteRT's own generated schema (``ai_edge_litert.schema_py_generated``),
then checked before anything trusts it: the Python flatbuffers library reads offsets without a
verifier, so a truncated or corrupt file surfaces as whatever ``struct``/``numpy`` raise, or as indices
and sizes that point nowhere; both become one ``ModelLoadError``. Tensors keep their names, shapes,
dtypes and quantization (per-tensor, or per-channel along ``quantizedDimension``); constants get their
buffer's bytes; each operator becomes a ``QOp`` of its builtin name with the options of the op table in
``edgeopt.qprogram`` (TFLite's option names in snake_case, enums as strings). Shape-computing ops
(SHAPE → STRIDED_SLICE → PACK chains of TensorFlow's converter) are evaluated into constants first
(``tflite_fold``); only what is left must have a kernel.

One small function per builtin options type, in ``OPTION_READERS``, maps the flatbuffer options to that
vocabulary; an options type nobody registered falls back to the same camelCase → snake_case mapping
(``strideH`` → ``stride_h``), which is the table's naming rule, so a new op needs a reader only where
its options need more than renaming.
"""
from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from ai_edge_litert import schema_py_generated as schema

from edgeopt.errors import EdgeoptError, ModelLoadError, UnsupportedOpError, first_line
from edgeopt.ir import QParams
from edgeopt.pipeline.frontend.tflite_fold import fold_constants
from edgeopt.pipeline.frontend.tflite_shapes import check_output_shapes
from edgeopt.qprogram import Mode, QOp, QProgram, QTensor, Rounding
from edgeopt.registry import Registry
from edgeopt.runtimes.reference.prepare import prepare_program
from edgeopt.runtimes.reference.registry import KERNELS

FILE_IDENTIFIER = b"TFL3"
# A tensor this large (elements) cannot come from a model the executor could run; a bigger product of
# dims is a corrupt shape, and refusing it here keeps later allocations bounded.
MAX_TENSOR_ELEMENTS = 1 << 31

_TENSOR_TYPES: Mapping[int, str] = {
    schema.TensorType.FLOAT32: "float32",
    schema.TensorType.FLOAT16: "float16",
    schema.TensorType.FLOAT64: "float64",
    schema.TensorType.INT8: "int8",
    schema.TensorType.UINT8: "uint8",
    schema.TensorType.INT16: "int16",
    schema.TensorType.UINT16: "uint16",
    schema.TensorType.INT32: "int32",
    schema.TensorType.UINT32: "uint32",
    schema.TensorType.INT64: "int64",
    schema.TensorType.UINT64: "uint64",
    schema.TensorType.BOOL: "bool",
}
_QUANTIZED_TYPES = frozenset({"int8", "uint8", "int16", "int32", "int64"})
_FLOAT_TYPES = frozenset({"float16", "float32", "float64"})


def _enum_names(enum: type) -> dict[int, str]:
    return {v: k for k, v in vars(enum).items() if not k.startswith("_") and isinstance(v, int)}


_BUILTIN_NAMES = _enum_names(schema.BuiltinOperator)
_TYPE_NAMES = _enum_names(schema.TensorType)
# Option fields whose integer value is an enum, and the enum that names it.
_ENUM_FIELDS: Mapping[str, dict[int, str]] = {
    "padding": _enum_names(schema.Padding),
    "fusedActivationFunction": _enum_names(schema.ActivationFunctionType),
    "weightsFormat": _enum_names(schema.FullyConnectedOptionsWeightsFormat),
    "mode": _enum_names(schema.MirrorPadMode),
    "outputType": _TYPE_NAMES,
    "inDataType": _TYPE_NAMES,
    "outDataType": _TYPE_NAMES,
}

Options = dict[str, Any]
OptionReader = Callable[[Any], Options]
OPTION_READERS: Registry[OptionReader] = Registry("TFLite builtin options reader")


def tflite_to_program(data: bytes, name: str, rounding: Rounding) -> QProgram:
    """Read a ``.tflite`` flatbuffer into a prepared int8 QProgram (a float32 input or output joined to
    the int8 ops by the file's own QUANTIZE or DEQUANTIZE stays float32).

    Args:
        data: the file's bytes.
        name: the program's name (for reports).
        rounding: the requantization rounding the program's parameters are prepared for.

    Returns:
        The program, with the model's own input and output layout (no layout permutations) and every
        op's parameters computed as TFLite's Prepare does.

    Raises:
        ModelLoadError: not a TFLite file, truncated or corrupt, or a float model.
        UnsupportedOpError: an op without an integer kernel (named by builtin name, operator index and
            output tensor), or an option or quantization the kernels cannot run.
    """
    parsed = read_tflite(data, name)
    if parsed.is_float:
        raise ModelLoadError(f"'{name}' is a float model (input dtype {parsed.tensors[parsed.inputs[0]].dtype}); "
                             "emulate runs int8 models")
    numbered, by_name, inputs, outputs = parsed.ops, parsed.tensors, parsed.inputs, parsed.outputs
    for i, op in numbered:
        _check_stateless(op, i, parsed.variables)
        _check_kernel(op, i, by_name)
        _check_weight_zero_point(op, i, by_name)
    _check_dataflow(name, numbered, inputs, outputs, by_name)
    ops = tuple(op for _, op in numbered)
    program = QProgram(
        name=name,
        tensors=by_name,
        ops=ops,
        inputs=inputs,
        outputs=outputs,
        rounding=rounding,
        input_layouts=(None,) * len(inputs),
        output_layouts=(None,) * len(outputs),
    )
    try:
        program = prepare_program(program)
    except EdgeoptError:
        raise
    except Exception as exc:  # Prepare trusts shapes and options that a corrupt file may break (stride 0);
        # TFLite's Prepare refuses such a file with an error status, so a crash here means a corrupt file
        raise ModelLoadError(f"'{name}': its ops cannot be prepared ({type(exc).__name__}: {first_line(exc)}); "
                             "corrupt file?") from exc
    check_output_shapes(program)
    return program


@dataclass(frozen=True)
class TFLiteFile:
    """A parsed ``.tflite``: every tensor by name (constants with their values), the ops left after
    folding shape-computing subgraphs (``(operator index, op)`` in execution order), graph inputs and
    outputs, and the variable tensors (state an op keeps between invocations)."""

    tensors: dict[str, QTensor]
    ops: list[tuple[int, QOp]]
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    variables: frozenset[str] = frozenset()

    @property
    def is_float(self) -> bool:
        """A float model has no quantized int8 tensor and a float input (an int8 file with a float
        input feeding QUANTIZE is not one)."""
        if any(t.qparams is not None and t.dtype == "int8" for t in self.tensors.values()):
            return False
        return any(self.tensors[t].dtype in _FLOAT_TYPES for t in self.inputs)


def read_tflite(data: bytes, name: str) -> TFLiteFile:
    """Parse and check a ``.tflite`` flatbuffer, and fold its shape-computing ops into constants.

    Args:
        data: the file's bytes.
        name: the file's name, for errors.

    Raises:
        ModelLoadError: not a TFLite file, truncated or corrupt.
        UnsupportedOpError: several subgraphs, or an option value outside the schema.
    """
    model = _parse(bytes(data), name)
    subgraph = model.subgraphs[0]
    tensors = _tensors(model, subgraph, data, name)
    dynamic = _dynamic(subgraph, tensors)
    variables = frozenset(q.name for t, q in zip(subgraph.tensors or [], tensors) if t.isVariable)
    names = [t.name for t in tensors]
    inputs = tuple(names[_index(i, len(names), name, "graph input")] for i in _ints(subgraph.inputs))
    outputs = tuple(names[_index(i, len(names), name, "graph output")] for i in _ints(subgraph.outputs))
    if not inputs or not outputs:
        raise ModelLoadError(f"'{name}' declares no graph inputs or outputs (corrupt file?)")
    numbered = [(i, _op(model, op, i, names, name)) for i, op in enumerate(subgraph.operators or [])]
    numbered, by_name = fold_constants(numbered, {t.name: t for t in tensors}, name, dynamic)
    return TFLiteFile(by_name, numbered, inputs, outputs, variables)


def _parse(data: bytes, name: str) -> schema.ModelT:
    """The object-API model, with every structural fact later code relies on checked."""
    if len(data) < 8 or data[4:8] != FILE_IDENTIFIER:
        raise ModelLoadError(f"'{name}' is not a TFLite flatbuffer (no '{FILE_IDENTIFIER.decode()}' identifier)")
    try:
        model = schema.ModelT.InitFromPackedBuf(data, 0)
    except Exception as exc:  # flatbuffers has no verifier: bad offsets raise struct, numpy or index errors
        raise ModelLoadError(
            f"'{name}' is a truncated or corrupt TFLite file (parsing it failed: {type(exc).__module__}."
            f"{type(exc).__name__}: {first_line(exc, 80)})"
        ) from exc
    if not model.subgraphs:
        raise ModelLoadError(f"'{name}' holds no subgraph (truncated or corrupt file?)")
    if len(model.subgraphs) > 1:
        raise UnsupportedOpError("SUBGRAPH", f"{len(model.subgraphs)} subgraphs",
                                 "models with control flow (several subgraphs) cannot be emulated")
    return model


def _ints(values: Any) -> list[int]:
    return [] if values is None else [int(v) for v in np.asarray(values).reshape(-1)]


def _index(i: int, size: int, name: str, what: str) -> int:
    if not 0 <= i < size:
        raise ModelLoadError(f"'{name}': {what} index {i} is out of range 0..{size - 1} (corrupt file?)")
    return i


def _text(raw: Any, fallback: str) -> str:
    if raw is None or len(raw) == 0:
        return fallback
    try:
        return raw.decode("utf-8") if isinstance(raw, bytes) else str(raw)
    except UnicodeDecodeError as exc:
        raise ModelLoadError(f"tensor name {raw[:40]!r} is not UTF-8 (corrupt file?)") from exc


def _tensors(model: schema.ModelT, subgraph: schema.SubGraphT, data: bytes, name: str) -> list[QTensor]:
    """Every tensor of the subgraph; duplicate or empty names get a unique ``#index`` suffix."""
    out: list[QTensor] = []
    seen: set[str] = set()
    for i, t in enumerate(subgraph.tensors or []):
        label = _text(t.name, f"tensor_{i}")
        if label in seen:
            label = f"{label}#{i}"
        seen.add(label)
        if t.type not in _TENSOR_TYPES:
            raise ModelLoadError(f"'{name}': tensor '{label}' has tensor type {t.type} "
                                 f"({_TYPE_NAMES.get(t.type, 'unknown')}), which the emulator cannot hold")
        dtype = _TENSOR_TYPES[t.type]
        shape = tuple(_ints(t.shape))
        if any(d < 0 for d in shape) or math.prod(shape) > MAX_TENSOR_ELEMENTS:
            raise ModelLoadError(f"'{name}': tensor '{label}' has an invalid shape {shape} (corrupt file?)")
        if t.sparsity is not None:
            raise ModelLoadError(f"'{name}': tensor '{label}' is sparse; the emulator reads dense tensors only")
        out.append(QTensor(label, shape, dtype, _qparams(t.quantization, dtype, shape, label, name),
                           _constant(model, t.buffer, data, dtype, shape, label, name)))
    return out


def _dynamic(subgraph: schema.SubGraphT, tensors: list[QTensor]) -> frozenset[str]:
    """Tensors whose ``shape_signature`` has an unknown (-1) dimension: their stored shape is the
    converter's placeholder (a Keras batch of ``None`` stored as 1, a computed RESHAPE target stored as
    ``[1, 1]``), which TFLite's Prepare replaces by the shape its inputs give."""
    return frozenset(q.name for t, q in zip(subgraph.tensors or [], tensors)
                     if t.shapeSignature is not None and np.any(np.asarray(t.shapeSignature) < 0))


def _qparams(q: schema.QuantizationParametersT | None, dtype: str, shape: tuple[int, ...], label: str,
             name: str) -> QParams | None:
    if q is None or q.scale is None or len(q.scale) == 0 or dtype not in _QUANTIZED_TYPES:
        return None
    scale = np.asarray(q.scale, dtype=np.float32).reshape(-1)
    zero_point = np.zeros(scale.shape, np.int64) if q.zeroPoint is None else np.asarray(q.zeroPoint, np.int64)
    if zero_point.size == 1 and scale.size > 1:
        zero_point = np.broadcast_to(zero_point.reshape(-1), scale.shape)
    info = np.iinfo(dtype)
    if zero_point.shape != scale.shape or not np.all(np.isfinite(scale)) or np.any(scale <= 0) \
            or np.any(zero_point < info.min) or np.any(zero_point > info.max):
        raise ModelLoadError(f"'{name}': tensor '{label}' has invalid quantization "
                             f"({scale.size} scales, {zero_point.size} zero points; scales must be finite and > 0, "
                             f"zero points within {dtype})")
    axis = None
    if scale.size > 1:
        axis = int(q.quantizedDimension)
        if not 0 <= axis < len(shape) or shape[axis] != scale.size:
            raise ModelLoadError(f"'{name}': tensor '{label}' of shape {shape} has {scale.size} scales along "
                                 f"dimension {axis} (corrupt file?)")
    return QParams(scale, zero_point, dtype, axis)


def _constant(model: schema.ModelT, index: int, data: bytes, dtype: str, shape: tuple[int, ...], label: str,
              name: str) -> np.ndarray | None:
    """The tensor's constant value, or None for an activation (buffer 0 or an empty buffer)."""
    buffers = model.buffers or []
    if index == 0:
        return None
    buffer = buffers[_index(index, len(buffers), name, f"buffer of tensor '{label}'")]
    if buffer.offset > 1:  # models over 2 GB keep buffers after the flatbuffer, addressed by offset
        if buffer.offset + buffer.size > len(data):
            raise ModelLoadError(f"'{name}': the data of tensor '{label}' lies beyond the end of the file (truncated?)")
        raw = data[buffer.offset:buffer.offset + buffer.size]
    elif buffer.data is not None and len(buffer.data):
        raw = np.asarray(buffer.data, dtype=np.uint8).tobytes()
    else:
        return None
    itemsize = np.dtype(dtype).itemsize
    if len(raw) != math.prod(shape) * itemsize:
        raise ModelLoadError(f"'{name}': tensor '{label}' of shape {shape} and type {dtype} has {len(raw)} bytes"
                             f" of data, not {math.prod(shape) * itemsize} (corrupt file?)")
    return np.frombuffer(raw, dtype=np.dtype(dtype).newbyteorder("<")).astype(dtype).reshape(shape)


def _op(model: schema.ModelT, op: schema.OperatorT, index: int, names: list[str], name: str) -> QOp:
    codes = model.operatorCodes or []
    code = codes[_index(op.opcodeIndex, len(codes), name, f"operator {index}'s opcode")]
    builtin = max(int(code.builtinCode), int(code.deprecatedBuiltinCode))
    outputs = tuple(names[_index(i, len(names), name, f"operator {index}'s output")] for i in _ints(op.outputs))
    where = f"operator {index} → '{outputs[0]}'" if outputs else f"operator {index}"
    kind = _BUILTIN_NAMES.get(builtin, f"BUILTIN_{builtin}")
    if builtin == schema.BuiltinOperator.CUSTOM:
        kind = f"CUSTOM:{_text(code.customCode, '?')}"
    if not outputs:
        raise ModelLoadError(f"'{name}': {kind} {where} has no output (corrupt file?)")
    inputs = tuple("" if i == -1 else names[_index(i, len(names), name, f"operator {index}'s input")]
                   for i in _ints(op.inputs))
    return QOp(kind, inputs, outputs, _options(op, kind, where), source=outputs[0])


def _mode(op: QOp, tensors: Mapping[str, QTensor]) -> Mode:
    """float32 for an op writing float32 (DEQUANTIZE, a float island), else int8 (``qprogram.op_mode``
    before int16 activations, which the reader refuses)."""
    return "float32" if tensors[op.outputs[0]].dtype == "float32" else "int8"


def _check_stateless(op: QOp, index: int, variables: frozenset[str]) -> None:
    """An op reading a variable tensor keeps state between invocations (UNIDIRECTIONAL_SEQUENCE_LSTM's
    hidden and cell state, what TensorFlow's converter makes of a Keras LSTM or GRU kept as a loop)."""
    state = [t for t in op.inputs if t in variables]
    if state:
        raise UnsupportedOpError(op.kind, f"operator {index} → '{op.outputs[0]}'", f"reads the state variable "
                                 f"'{state[0]}'; the emulator runs stateless models only (convert a Keras "
                                 "LSTM/GRU with unroll=True)")


def _check_kernel(op: QOp, index: int, tensors: Mapping[str, QTensor]) -> None:
    """An op left after folding must run: it needs a kernel in its mode."""
    mode = _mode(op, tensors)
    if (op.kind, mode) not in KERNELS:
        what = "integer kernel" if mode == "int8" else "float32 kernel"
        raise UnsupportedOpError(op.kind, f"operator {index} → '{op.outputs[0]}'", f"no {what} in the "
                                 f"emulator yet (it runs: {', '.join(KERNELS.kinds(mode))})")


# int8 kernels of LiteRT 2.3 that do not apply a weight zero point: CONV_2D's Prepare refuses it,
# DEPTHWISE_CONV_2D's kernel ignores it (measured: tests/runtimes/reference/test_weights_offset.py).
_NO_WEIGHT_OFFSET = {"CONV_2D": "refuses it", "DEPTHWISE_CONV_2D": "silently ignores it"}


def _check_weight_zero_point(op: QOp, index: int, tensors: Mapping[str, QTensor]) -> None:
    """A file whose int8 CONV_2D or DEPTHWISE_CONV_2D weights have a zero point is refused: LiteRT does not
    compute what it says, so no run of it here could be both right and LiteRT's (the executor applies a
    weight offset only to programs made here for a device's own scheme, and to FULLY_CONNECTED, as LiteRT)."""
    if op.kind not in _NO_WEIGHT_OFFSET or len(op.inputs) < 2 or _mode(op, tensors) != "int8":
        return
    w = tensors[op.inputs[1]]
    if w.dtype == "int8" and w.qparams is not None and np.any(w.qparams.zero_point):
        raise UnsupportedOpError(op.kind, f"operator {index} → '{op.outputs[0]}'",
                                 f"its int8 weights have zero point {int(w.qparams.zero_point[0])}, which LiteRT's "
                                 f"int8 {op.kind} {_NO_WEIGHT_OFFSET[op.kind]}; convert with symmetric weights")


INDEX_DTYPES = frozenset({"int32", "bool"})


def _check_activation(op: QOp, where: str, t: str, tensors: Mapping[str, QTensor]) -> None:
    """int8 ops read and write quantized int8 activations, float32 ops float32 ones; QUANTIZE (float32 →
    int8) and DEQUANTIZE (int8 → float32) join the two, as at the edges of a float-input file. Unquantized
    int32 and bool tensors (token ids, attention masks: GATHER positions, CAST) go with either."""
    tensor = tensors[t]
    if tensor.dtype in INDEX_DTYPES and tensor.qparams is None:
        return
    quantized = tensor.dtype == "int8" and tensor.qparams is not None
    mode = _mode(op, tensors)
    crossing = t in op.inputs and op.kind == ("QUANTIZE" if mode == "int8" else "DEQUANTIZE")
    if (mode == "int8") != crossing:
        ok, want = quantized, "int8 activations with quantization"
    else:
        ok, want = tensor.dtype == "float32", "float32 activations"
    if not ok:
        raise UnsupportedOpError(op.kind, where, f"tensor '{t}' is {tensor.dtype}"
                                 f"{' without quantization' if tensor.dtype == 'int8' else ''}; "
                                 f"the emulator runs this op on {want} only")


def _check_dataflow(name: str, ops: list[tuple[int, QOp]], inputs: tuple[str, ...], outputs: tuple[str, ...],
                    tensors: Mapping[str, QTensor]) -> None:
    """Ops in execution order, each activation written once before it is read, int8 or float32 as its
    ops' modes want (``_check_activation``)."""
    written = set(inputs)
    for t in inputs:
        if tensors[t].is_constant:
            raise ModelLoadError(f"'{name}': graph input '{t}' is a constant (corrupt file?)")
    for i, op in ops:
        where = f"operator {i} → '{op.outputs[0]}'"
        for t in op.inputs:
            if t and not tensors[t].is_constant and t not in written:
                raise ModelLoadError(f"'{name}': {op.kind} {where} reads '{t}' before any op writes it (corrupt file?)")
        for t in op.outputs:
            if t in written or tensors[t].is_constant:
                raise ModelLoadError(f"'{name}': {op.kind} {where} writes '{t}', which already has a value "
                                     "(corrupt file?)")
            written.add(t)
        for t in (*op.inputs, *op.outputs):
            if t and not tensors[t].is_constant:
                _check_activation(op, where, t, tensors)
    for t in outputs:
        if t not in written:
            raise ModelLoadError(f"'{name}': graph output '{t}' is never written (corrupt file?)")


def read_options(options: Any) -> Options:
    """The op-table options for an object-API builtin options table (e.g. ``schema.Conv2DOptionsT``):
    its type's entry in ``OPTION_READERS``, else every field renamed (``renamed_options``)."""
    type_name = type(options).__name__.removesuffix("T")
    return (OPTION_READERS.get(type_name) if type_name in OPTION_READERS else renamed_options)(options)


def _options(op: schema.OperatorT, kind: str, where: str) -> Options:
    if op.builtinOptions is None:
        return {}
    options = read_options(op.builtinOptions)
    for key, value in options.items():
        if isinstance(value, UnknownEnum):
            raise UnsupportedOpError(kind, where, f"option {key} has the unknown value {value.value}")
    return options


class UnknownEnum:
    """An enum option value outside the schema's names (a corrupt or newer file)."""

    def __init__(self, value: int) -> None:
        self.value = value


def snake_case(field: str) -> str:
    """``strideH`` → ``stride_h``, ``dilationHFactor`` → ``dilation_h_factor``: the op table's naming rule."""
    return re.sub(r"(?<!^)([A-Z])", r"_\1", field).lower()


def renamed_options(options: Any, skip: frozenset[str] = frozenset()) -> Options:
    """Every scalar or list field of an object-API options table under its snake_case name, enums as
    their names; absent fields (None) and nested tables are left out."""
    out: Options = {}
    for field, value in vars(options).items():
        if field in skip or value is None:
            continue
        if field in _ENUM_FIELDS:
            value = _ENUM_FIELDS[field].get(int(value), UnknownEnum(int(value)))
        elif isinstance(value, np.ndarray):
            value = tuple(int(v) for v in value.reshape(-1))
        elif isinstance(value, list):
            value = tuple(value)
        elif isinstance(value, (np.integer, np.floating, np.bool_)):
            value = value.item()
        elif not isinstance(value, (bool, int, float, str)):
            continue
        out[snake_case(field)] = value
    return out


# One reader per builtin options type whose mapping is more than renaming (or worth pinning down).


@OPTION_READERS.register("Conv2DOptions", "DepthwiseConv2DOptions", "Pool2DOptions", "TransposeConvOptions")
def _window_options(options: Any) -> Options:
    """padding, stride_h, stride_w (+ dilation factors, depth_multiplier, filter size), fused activation.

    ``quantizedBiasType`` (a newer field for int16 models) is not an option of the op table.
    """
    return renamed_options(options, skip=frozenset({"quantizedBiasType"}))


@OPTION_READERS.register("FullyConnectedOptions")
def _fully_connected_options(options: Any) -> Options:
    """fused_activation_function, keep_num_dims; other weight formats have no kernel here."""
    out = renamed_options(options, skip=frozenset({"asymmetricQuantizeInputs", "quantizedBiasType", "quantSpec"}))
    if out.get("weights_format", "DEFAULT") != "DEFAULT":
        out["weights_format"] = UnknownEnum(int(options.weightsFormat))
    else:
        out.pop("weights_format", None)
    return out


@OPTION_READERS.register("AddOptions", "SubOptions", "MulOptions")
def _elementwise_options(options: Any) -> Options:
    """fused_activation_function (``potScaleInt16`` only concerns int16 kernels)."""
    return renamed_options(options, skip=frozenset({"potScaleInt16"}))


@OPTION_READERS.register("ReshapeOptions")
def _reshape_options(options: Any) -> Options:
    """new_shape, when the file states it (the converter also passes the shape as an input)."""
    return {} if options.newShape is None else {"new_shape": tuple(int(d) for d in options.newShape)}


@OPTION_READERS.register("ReducerOptions")
def _reducer_options(options: Any) -> Options:
    """keep_dims (MEAN and the other reductions)."""
    return {"keep_dims": bool(options.keepDims)}


@OPTION_READERS.register("SoftmaxOptions")
def _softmax_options(options: Any) -> Options:
    """beta, as the float32 the file stores."""
    return {"beta": float(np.float32(options.beta))}


@OPTION_READERS.register("BatchMatMulOptions")
def _batch_matmul_options(options: Any) -> Options:
    """adj_x, adj_y (``asymmetricQuantizeInputs`` only concerns hybrid float kernels)."""
    return renamed_options(options, skip=frozenset({"asymmetricQuantizeInputs"}))
