"""The float32 twin of a lowered int8 program: same ops and shapes, dequantized constants, float32 tensors.

It stands for the float model the int8 one came from (BatchNorm already folded, activations fused), so
that the TFLite writer, which writes float32 versions of every op, gives a float ``.tflite`` to time
against the int8 one. Its weights are the int8 weights dequantized, not the original float weights:
the same arithmetic cost, within quantization error of the same outputs.
"""
from __future__ import annotations

from edgeopt.qprogram import CONVERSION_KINDS, QOp, QProgram, QTensor


def dequantize_program(program: QProgram) -> QProgram:
    """Turn ``program`` into float32: int8/int32 quantized tensors become float32 without encodings.

    Constants with an encoding (weights, biases, PADV2's pad value) are dequantized; int32 tensors
    without one (shapes, paddings, axes) are kept. QUANTIZE and DEQUANTIZE ops are dropped, their
    output renamed to their input.

    Args:
        program: a lowered program.

    Returns:
        A program of the same name and ops (less the conversions), every activation float32.
    """
    alias: dict[str, str] = {}
    for op in program.ops:
        if op.kind in CONVERSION_KINDS:  # identities in float
            alias[op.outputs[0]] = alias.get(op.inputs[0], op.inputs[0])

    def name(tensor: str) -> str:
        return alias.get(tensor, tensor)

    tensors: dict[str, QTensor] = {}
    for tensor in program.tensors.values():
        if tensor.name in alias:
            continue
        if tensor.qparams is None and tensor.dtype != "int8":
            tensors[tensor.name] = tensor
        elif tensor.is_constant:
            assert tensor.qparams is not None, f"int8 constant '{tensor.name}' without an encoding"
            tensors[tensor.name] = QTensor(tensor.name, tensor.shape, "float32", None,
                                           tensor.qparams.dequantize(tensor.data))
        else:
            tensors[tensor.name] = QTensor(tensor.name, tensor.shape, "float32")
    ops = [QOp(op.kind, tuple(name(t) if t else t for t in op.inputs), tuple(name(t) for t in op.outputs),
               op.options, source=op.source)
           for op in program.ops if op.kind not in CONVERSION_KINDS]
    outputs = tuple(name(t) for t in program.outputs)
    return program.replace(tensors=tensors, ops=tuple(ops), outputs=outputs)
