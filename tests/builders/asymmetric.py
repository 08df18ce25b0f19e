"""Programs with per-tensor asymmetric int8 weights (a non-zero weight zero point, SNPE's scheme), their
legacy uint8 ``.tflite`` form, and an independent integer formula for the weighted ops.

``asymmetric_weights`` re-encodes the weights of every CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED of a
``tests.builders.programs`` program on one asymmetric grid per tensor over ``[min(w, 0), max(w, 0)]``
(``lopsided`` first shrinks each tensor's negative side by a random factor, as a layer of mostly positive
weights has, so the zero points reach far from 0), and their biases on ``input_scale * weight_scale``.

``legacy_tflite`` writes such a program in TFLite's legacy uint8 form (every int8 tensor as uint8 with data
and zero points shifted by 128), which LiteRT's reference kernels run with the filter offset of
``reference_ops::Conv``/``DepthwiseConv``/``FullyConnected``: the same accumulator, and outputs 128 above
the int8 program's; or as int8 with the weights' zero points, which LiteRT's int8 DEPTHWISE_CONV_2D and
FULLY_CONNECTED take (its CONV_2D refuses them).
"""
from __future__ import annotations

import flatbuffers
import numpy as np
from ai_edge_litert import schema_py_generated as schema

from edgeopt.ir import QParams
from edgeopt.pipeline.emit.tflite import program_to_tflite
from edgeopt.qprogram import QProgram, QTensor
from edgeopt.runtimes.reference.arith.fixedpoint import multiply_by_quantized_multiplier
from tests.builders.programs import dequantize64

WEIGHTED = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")


def asymmetric_qparams(w: np.ndarray) -> QParams:
    """One int8 grid over ``[min(w, 0), max(w, 0)]``: scale ``(hi - lo) / 255``, zero point
    ``round(-128 - lo / scale)``."""
    lo, hi = min(float(w.min()), 0.0), max(float(w.max()), 0.0)
    scale = np.float32((hi - lo) / 255.0 or 1.0)
    return QParams(scale, int(np.clip(np.round(-128 - lo / float(scale)), -128, 127)))


def asymmetric_weights(program: QProgram, rng: np.random.Generator, lopsided: bool = True) -> QProgram:
    """``program`` with each weighted op's weights on one asymmetric per-tensor grid (see the module)."""
    tensors = dict(program.tensors)
    for op in program.ops:
        if op.kind not in WEIGHTED:
            continue
        w_t, b_t = tensors[op.inputs[1]], tensors[op.inputs[2]]
        w = dequantize64(w_t.qparams, w_t.data)
        if lopsided:
            w = np.where(w < 0, w * rng.uniform(0.02, 1.0), w)
        w_q = asymmetric_qparams(w)
        bias = dequantize64(b_t.qparams, b_t.data)
        b_q = QParams(np.float32(np.float64(tensors[op.inputs[0]].qparams.scale[0]) * np.float64(w_q.scale[0])), 0,
                      "int32")
        tensors[w_t.name] = QTensor(w_t.name, w_t.shape, "int8", w_q, w_q.quantize(w))
        tensors[b_t.name] = QTensor(b_t.name, b_t.shape, "int32", b_q, b_q.quantize(bias))
    return program.replace(tensors=tensors)


def legacy_tflite(program: QProgram, uint8: bool = True) -> bytes:
    """``program`` (int8, asymmetric weights allowed) as a ``.tflite``: written by ``program_to_tflite`` with
    its weights' zero points at 0 (the writer refuses others), which are then set in the flatbuffer; with
    ``uint8``, in TFLite's legacy uint8 form (every int8 tensor uint8, values and zero points + 128)."""
    tensors = {name: t if t.qparams is None or t.dtype != "int8" else
               QTensor(name, t.shape, t.dtype, QParams(t.qparams.scale, 0, t.dtype, t.qparams.axis), t.data)
               for name, t in program.tensors.items()}
    blob = program_to_tflite(program.replace(tensors=tensors))
    model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(blob, 0))
    shift = 128 if uint8 else 0
    for tensor in model.subgraphs[0].tensors:
        if tensor.type != schema.TensorType.INT8:
            continue
        name = tensor.name.decode() if isinstance(tensor.name, bytes) else tensor.name
        tensor.quantization.zeroPoint = np.asarray(program.tensor(name).qparams.zero_point, np.int64) + shift
        buffer = model.buffers[tensor.buffer]
        if uint8:
            tensor.type = schema.TensorType.UINT8
            if buffer.data is not None and len(buffer.data):
                values = np.frombuffer(bytes(bytearray(buffer.data)), np.int8).astype(np.int16) + 128
                buffer.data = values.astype(np.uint8)
    builder = flatbuffers.Builder(0)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def integer_formula(x: np.ndarray, w: np.ndarray, bias: np.ndarray, zx: int, zw: int, zy: int,
                    multiplier: int, shift: int, stride: int = 1, pad: int = 0) -> np.ndarray:
    """A VALID/explicitly padded one-group convolution written out loop by loop in Python integers:
    ``acc = bias + sum over taps inside the image of (x - zx) * (w - zw)``, then
    ``clamp(MultiplyByQuantizedMultiplier(acc, m, s) + zy, -128, 127)`` (no fused activation).

    Args:
        x: int8 (H, W, Ci); w: int8 (Co, KH, KW, Ci); bias: int32 (Co,).
    """
    h, wd, ci = x.shape
    co, kh, kw, _ = w.shape
    oh, ow = (h + 2 * pad - kh) // stride + 1, (wd + 2 * pad - kw) // stride + 1
    acc = np.zeros((oh, ow, co), np.int64)
    for oy in range(oh):
        for ox in range(ow):
            for c in range(co):
                total = int(bias[c])
                for i in range(kh):
                    for j in range(kw):
                        y, xx = oy * stride - pad + i, ox * stride - pad + j
                        if 0 <= y < h and 0 <= xx < wd:
                            total += int(np.dot(x[y, xx].astype(np.int64) - zx, w[c, i, j].astype(np.int64) - zw))
                acc[oy, ox, c] = total
    y = multiply_by_quantized_multiplier(acc, multiplier, shift, "double") + zy
    return np.clip(y, -128, 127).astype(np.int8)
