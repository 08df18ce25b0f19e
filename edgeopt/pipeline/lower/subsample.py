"""A STRIDED_SLICE that only subsamples an NHWC tensor's height and width, lowered as a 1x1
DEPTHWISE_CONV_2D of the same strides with unit weights.

ResNet's option-A shortcut (``x[:, :, ::2, ::2]`` before a zero channel pad) is the common case. XNNPACK
takes a STRIDED_SLICE only with stride 1 and leaves a strided one to LiteRT's own kernel, which splits the
graph into several delegate partitions: on ResNet-32 int8 that cost 90 us of 480 us per inference on this
machine (one thread, ai-edge-litert 2.3), and Vela and the Edge TPU (``slice_strides = [1]``) run the
slice on the CPU. A 1x1 depthwise convolution with VALID padding reads exactly the same elements (rows and
columns ``0, s, 2s, ...``: ``ceil(H / s)`` of them) and every runtime delegates it.

It computes the same values: with weights 1 (scale 1.0 per channel, zero point 0) and a zero bias, the
accumulator is ``x - zp_in`` and the requantization multiplier is ``scale_in / scale_out``, which is 1.0
because a slice's input and output share one encoding (TFLite moves raw int8 values; ``emit.tflite.options``
refuses a slice whose encodings differ), so the output is ``x`` exactly, in int8 and int16 alike; in float
it is ``x * 1 + 0``. Back-to-back subsampling slices (ONNX exporters slice one axis at a time) become one
convolution with the strides multiplied: ``x[::a][::b] == x[::a*b]``.
"""
from __future__ import annotations

from collections.abc import Collection

import numpy as np

from edgeopt.ir import QParams
from edgeopt.pipeline.quantize.encodings import bias_qparams
from edgeopt.qprogram import QOp, QTensor


def subsample_as_depthwise(ops: list[QOp], tensors: dict[str, QTensor], outputs: Collection[str]) -> list[QOp]:
    """``ops`` with each subsampling STRIDED_SLICE (``_strides``) replaced by a 1x1 DEPTHWISE_CONV_2D; a
    chain of them whose middle tensor has no other reader and is no graph output becomes one convolution.
    ``tensors`` gains the weights and biases.

    Args:
        ops: the program's ops in execution order.
        tensors: the program's tensors.
        outputs: the program's graph outputs.
    """
    strides = {id(op): s for op in ops if (s := _strides(op, tensors)) is not None}
    merged: dict[int, tuple[str, tuple[int, int]]] = {}  # second op -> (input of the first, composed strides)
    dropped: set[int] = set()
    for op in ops:
        if id(op) not in strides:
            continue
        x = op.inputs[0]
        first = next((p for p in ops if x in p.outputs), None)
        readers = [p for p in ops if x in p.inputs]
        if first is not None and id(first) in strides and readers == [op] and x not in outputs:
            source, (h1, w1) = merged.pop(id(first), (first.inputs[0], strides[id(first)]))
            dropped.add(id(first))
            merged[id(op)] = (source, (h1 * strides[id(op)][0], w1 * strides[id(op)][1]))
        else:
            merged[id(op)] = (x, strides[id(op)])
    result = []
    for op in ops:
        if id(op) in dropped:
            continue
        if id(op) in merged:
            source, (sh, sw) = merged[id(op)]
            op = _depthwise(op, source, sh, sw, tensors)
        result.append(op)
    return result


def _strides(op: QOp, tensors: dict[str, QTensor]) -> tuple[int, int] | None:
    """(stride H, stride W) of a STRIDED_SLICE that keeps every sample and channel and takes rows and columns
    ``0, s, 2s, ...`` to the end of a 4-D quantized or float32 tensor (a stride of 1 on one of them), else None."""
    if op.kind != "STRIDED_SLICE" or any(op.options.get(m, 0) for m in ("begin_mask", "ellipsis_mask",
                                                                        "new_axis_mask", "shrink_axis_mask")):
        return None
    x, y = tensors[op.inputs[0]], tensors[op.outputs[0]]
    if len(x.shape) != 4 or (x.qparams is None and x.dtype != "float32"):
        return None
    args = [tensors[t].data for t in op.inputs[1:4]]
    if any(a is None for a in args):
        return None
    begin, stride = (np.ravel(a).astype(int).tolist() for a in (args[0], args[2]))
    if any(begin) or stride[0] != 1 or stride[3] != 1 or min(stride) < 1 or stride[1:3] == [1, 1]:
        return None
    n, h, w, c = x.shape
    if tuple(y.shape) != (n, -(-h // stride[1]), -(-w // stride[2]), c):
        return None
    return stride[1], stride[2]


def _depthwise(op: QOp, x: str, stride_h: int, stride_w: int, tensors: dict[str, QTensor]) -> QOp:
    """The 1x1 DEPTHWISE_CONV_2D reading ``x`` that writes ``op``'s output: unit weights, zero bias."""
    channels = tensors[x].shape[3]
    x_q = tensors[x].qparams
    y = op.outputs[0]
    weight, bias = f"{y}/subsample_weights", f"{y}/subsample_bias"
    if x_q is None:
        tensors[weight] = QTensor(weight, (1, 1, 1, channels), "float32", None, np.ones((1, 1, 1, channels), np.float32))
        tensors[bias] = QTensor(bias, (channels,), "float32", None, np.zeros(channels, np.float32))
    else:
        w_q = QParams(np.ones(channels, np.float32), np.zeros(channels, np.int64), "int8", axis=3)
        b_q = bias_qparams(x_q, w_q)
        tensors[weight] = QTensor(weight, (1, 1, 1, channels), "int8", w_q, np.ones((1, 1, 1, channels), np.int8))
        tensors[bias] = QTensor(bias, (channels,), b_q.dtype, b_q, np.zeros(channels, b_q.dtype))
    return QOp("DEPTHWISE_CONV_2D", (x, weight, bias), op.outputs,
               dict(padding="VALID", stride_h=stride_h, stride_w=stride_w, dilation_h_factor=1, dilation_w_factor=1,
                    fused_activation_function="NONE", depth_multiplier=1), source=op.source)
