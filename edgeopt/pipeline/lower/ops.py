"""One lowering per ONNX op: source node (NCHW, float + encodings) → TFLite int8 op(s) (NHWC).

Each lowering may emit helper ops a converter would (an explicit PAD when ONNX padding is not
TFLite's SAME, a TRANSPOSE before a RESHAPE that depends on element order).
"""
from __future__ import annotations

import math

import numpy as np

from edgeopt.errors import UnsupportedOpError
from edgeopt.ir import Node, QParams
from edgeopt.pipeline.lower.context import LOWERINGS, NHWC, LowerContext, program_perm
from edgeopt.pipeline.lower.movement import lower_mirror_pad
from edgeopt.pipeline.lower.split_reduce import lower_mean
from edgeopt.pipeline.quantize.encodings import bias_qparams

ACTIVATIONS = {None: "NONE", "Relu": "RELU", "Relu6": "RELU6"}
NCHW_FROM_NHWC = (0, 3, 1, 2)


def fused_activation(node: Node) -> str:
    """The TFLite ``fused_activation_function`` of a node the optimizer fused an activation into."""
    return ACTIVATIONS[node.attrs.get("fused_activation")]


def same_padding(size: int, kernel: int, stride: int, dilation: int) -> tuple[int, int]:
    """TFLite's SAME padding (before, after) for one spatial dimension (ComputePaddingHeightWidth)."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


def _spatial_padding(node: Node, ctx: LowerContext, x: str, kernel: tuple[int, int],
                     strides: tuple[int, int], dilations: tuple[int, int]) -> tuple[str, str]:
    """Map ONNX pads to TFLite's SAME/VALID, inserting a PAD op when neither matches.

    Returns the (possibly padded) program input and the padding mode.
    """
    _, h, w, _ = ctx.shape(x)
    auto_pad = node.attrs.get("auto_pad", "NOTSET")
    if auto_pad == "VALID":
        return x, "VALID"
    same = [same_padding(s, k, st, d) for s, k, st, d in zip((h, w), kernel, strides, dilations)]
    if auto_pad == "SAME_UPPER":
        return x, "SAME"
    if auto_pad == "SAME_LOWER":
        pads = [same[0][1], same[1][1], same[0][0], same[1][0]]
    else:
        pads = list(node.attrs.get("pads", [0, 0, 0, 0]))
    (top, bottom), (left, right) = (pads[0], pads[2]), (pads[1], pads[3])
    if not any(pads):
        return x, "VALID"
    if [(top, bottom), (left, right)] == same:
        return x, "SAME"
    paddings = np.array([[0, 0], [top, bottom], [left, right], [0, 0]], dtype=np.int32)
    n, _, _, c = ctx.shape(x)
    padded = ctx.temp(f"{node.name}/pad", (n, h + top + bottom, w + left + right, c), ctx.tensors[x].qparams)
    ctx.emit("PAD", [x, ctx.constant(f"{node.name}/paddings", paddings, "int32")], [padded], node)
    return padded, "VALID"


def _bias(node: Node, ctx: LowerContext, x_q: QParams, w_q: QParams, channels: int) -> str:
    if len(node.inputs) > 2 and node.inputs[2]:
        b_name = node.inputs[2]
        b_q = ctx.encoding(b_name, node)
        return ctx.constant(b_name, ctx.quantized(ctx.const(b_name), b_q), b_q.dtype, b_q)
    b_q = bias_qparams(x_q, w_q)  # int64 for an int16 input
    return ctx.constant(f"{node.name}/bias", np.zeros(channels, b_q.dtype), b_q.dtype, b_q)


@LOWERINGS.register("Conv")
def lower_conv(node: Node, ctx: LowerContext) -> None:
    """Conv → DEPTHWISE_CONV_2D (groups = input channels) or CONV_2D (other groups: grouped, version 6)."""
    if len(ctx.src_shape(node.inputs[0])) != 4:
        raise UnsupportedOpError("Conv", node.name, "only 2-D convolutions are supported")
    if not ctx.is_const(node.inputs[1]):
        raise UnsupportedOpError("Conv", node.name, "weights computed at run time are not supported")
    x = ctx.activation(node.inputs[0], node)
    y = ctx.activation(node.outputs[0], node)
    w_name = node.inputs[1]
    w_q = ctx.encoding(w_name, node)
    w_int = ctx.quantized(ctx.const(w_name), w_q)  # (O, I/groups, KH, KW)
    c_out, _, kh, kw = w_int.shape
    c_in = ctx.src_shape(node.inputs[0])[1]
    groups = node.attrs.get("group", 1)
    strides = tuple(node.attrs.get("strides", (1, 1)))
    dilations = tuple(node.attrs.get("dilations", (1, 1)))
    x_q = ctx.tensors[x].qparams
    x, padding = _spatial_padding(node, ctx, x, (kh, kw), strides, dilations)
    options = dict(padding=padding, stride_h=strides[0], stride_w=strides[1], dilation_h_factor=dilations[0],
                   dilation_w_factor=dilations[1], fused_activation_function=fused_activation(node))
    bias = _bias(node, ctx, x_q, w_q, c_out)
    if groups == c_in and c_in > 1 and c_out % c_in == 0:
        dw_q = QParams(w_q.scale, w_q.zero_point, "int8", axis=3)
        w = ctx.constant(w_name, w_int.transpose(1, 2, 3, 0), "int8", dw_q)  # 1HWO, per-channel axis 3
        ctx.emit("DEPTHWISE_CONV_2D", [x, w, bias], [y], node, depth_multiplier=c_out // c_in, **options)
    else:
        w = ctx.constant(w_name, w_int.transpose(0, 2, 3, 1), "int8", w_q)  # OHW(I/groups), axis 0
        ctx.emit("CONV_2D", [x, w, bias], [y], node, **options)


@LOWERINGS.register("Gemm")
def lower_gemm(node: Node, ctx: LowerContext) -> None:
    """Gemm (A · Bᵀ + C, alpha = beta = 1) → FULLY_CONNECTED with per-channel weights."""
    if node.attrs.get("transA", 0) or node.attrs.get("alpha", 1.0) != 1.0 or node.attrs.get("beta", 1.0) != 1.0:
        raise UnsupportedOpError("Gemm", node.name, "only Gemm with transA=0, alpha=1, beta=1 is supported")
    if not ctx.is_const(node.inputs[1]):
        raise UnsupportedOpError("Gemm", node.name, "weights computed at run time are not supported")
    x = ctx.activation(node.inputs[0], node)
    y = ctx.activation(node.outputs[0], node)
    w_q = ctx.encoding(node.inputs[1], node)
    w_int = ctx.quantized(ctx.const(node.inputs[1]), w_q)
    if not node.attrs.get("transB", 0):
        w_int, w_q = w_int.T, QParams(w_q.scale, w_q.zero_point, "int8", axis=0)
    w = ctx.constant(node.inputs[1], w_int, "int8", w_q)
    bias = _bias(node, ctx, ctx.tensors[x].qparams, w_q, w_int.shape[0])
    ctx.emit("FULLY_CONNECTED", [x, w, bias], [y], node, fused_activation_function=fused_activation(node))


def _avg_pool(node: Node, ctx: LowerContext, x: str, y: str, kernel: tuple[int, int],
              strides: tuple[int, int], padding: str) -> None:
    ctx.emit("AVERAGE_POOL_2D", [x], [y], node, padding=padding, stride_h=strides[0], stride_w=strides[1],
             filter_height=kernel[0], filter_width=kernel[1], fused_activation_function="NONE")


@LOWERINGS.register("AveragePool")
def lower_average_pool(node: Node, ctx: LowerContext) -> None:
    """AveragePool → AVERAGE_POOL_2D (input and output share one encoding): unpadded (VALID), or padded as
    TFLite's SAME while averaging the real points only (``count_include_pad=0``), which is what TFLite's
    kernel computes (TensorFlow's ``avg_pool`` with SAME padding, Keras ``AveragePooling2D(padding="same")``)."""
    if node.attrs.get("ceil_mode", 0):
        raise UnsupportedOpError("AveragePool", node.name, "ceil-mode average pooling is not supported yet")
    x = ctx.activation(node.inputs[0], node)
    y = ctx.activation(node.outputs[0], node)
    kernel = tuple(node.attrs["kernel_shape"])
    strides = tuple(node.attrs.get("strides", (1, 1)))  # ONNX: 1 when absent
    _avg_pool(node, ctx, x, y, kernel, strides, _average_pool_padding(node, ctx.shape(x), kernel, strides))


def _average_pool_padding(node: Node, nhwc: tuple[int, ...], kernel: tuple[int, int],
                          strides: tuple[int, int]) -> str:
    auto_pad = node.attrs.get("auto_pad", "NOTSET")
    pads = list(node.attrs.get("pads", [0, 0, 0, 0]))
    if auto_pad == "VALID" or (auto_pad == "NOTSET" and not any(pads)):
        return "VALID"
    same = [same_padding(s, k, st, 1) for s, k, st in zip(nhwc[1:3], kernel, strides)]
    if not node.attrs.get("count_include_pad", 0) and (
            auto_pad == "SAME_UPPER" or (auto_pad == "NOTSET" and [(pads[0], pads[2]), (pads[1], pads[3])] == same)):
        return "SAME"
    raise UnsupportedOpError("AveragePool", node.name, "padded average pooling is supported as TFLite's SAME "
                             f"padding {same} averaging the real points only (count_include_pad=0); pad the input "
                             "explicitly instead")


def _spatial_mean(node: Node, ctx: LowerContext, x: str, y: str) -> None:
    """A mean over H and W with kept dims: AVERAGE_POOL_2D over the whole feature map when input and output
    share one encoding (what calibration gives), else MEAN, whose int8 kernel requantizes (a QDQ file's own
    output encoding, ``quantize.spec.REQUANTIZING_MEAN_OPS``)."""
    _, h, w, _ = ctx.shape(x)
    x_q, y_q = ctx.tensors[x].qparams, ctx.tensors[y].qparams
    if x_q is None or y_q is None or x_q.same_as(y_q):
        _avg_pool(node, ctx, x, y, (h, w), (h, w), "VALID")
        return
    axis = ctx.constant(f"{node.name}/axis", np.array([1, 2], np.int32), "int32")
    ctx.emit("MEAN", [x, axis], [y], node, keep_dims=True)


@LOWERINGS.register("GlobalAveragePool")
def lower_global_average_pool(node: Node, ctx: LowerContext) -> None:
    """GlobalAveragePool → AVERAGE_POOL_2D over the whole feature map (MEAN when it requantizes)."""
    _spatial_mean(node, ctx, ctx.activation(node.inputs[0], node), ctx.activation(node.outputs[0], node))


@LOWERINGS.register("ReduceMean")
def lower_reduce_mean(node: Node, ctx: LowerContext) -> None:
    """ReduceMean over H and W of a 4-D tensor → AVERAGE_POOL_2D (+ RESHAPE when keepdims=0); other axes → MEAN."""
    axes = node.attrs.get("axes")
    if axes is None and len(node.inputs) > 1 and node.inputs[1]:
        axes = ctx.const(node.inputs[1]).tolist()
    rank = len(ctx.src_shape(node.inputs[0]))
    if rank != 4 or sorted(a % 4 for a in (axes or [])) != [2, 3]:
        if not axes and node.attrs.get("noop_with_empty_axes", 0):
            raise UnsupportedOpError("ReduceMean", node.name, "noop_with_empty_axes is not supported")
        return lower_mean(node, ctx, list(range(rank)) if not axes else axes)  # other axes → MEAN
    x = ctx.activation(node.inputs[0], node)
    n, h, w, c = ctx.shape(x)
    y = ctx.activation(node.outputs[0], node)
    if node.attrs.get("keepdims", 1):
        _spatial_mean(node, ctx, x, y)
        return
    pooled = ctx.temp(f"{node.name}/pooled", (n, 1, 1, c), ctx.tensors[y].qparams)
    _spatial_mean(node, ctx, x, pooled)
    _reshape(node, ctx, pooled, y)


def _reshape(node: Node, ctx: LowerContext, x: str, y: str) -> None:
    shape = np.array(ctx.shape(y), dtype=np.int32)
    ctx.emit("RESHAPE", [x, ctx.constant(f"{node.name}/shape", shape, "int32")], [y], node,
             new_shape=shape.tolist())


@LOWERINGS.register("Reshape", "Flatten", "Squeeze", "Unsqueeze")
def lower_reshape(node: Node, ctx: LowerContext) -> None:
    """Reshape-like ops → RESHAPE, with TRANSPOSEs where NHWC and NCHW element orders differ."""
    x = ctx.activation(node.inputs[0], node)
    y_src = node.outputs[0]
    in_perm, out_perm = program_perm(len(ctx.src_shape(node.inputs[0]))), program_perm(len(ctx.src_shape(y_src)))
    if in_perm and not _same_order(ctx.shape(x)):
        nchw = ctx.temp_like(f"{node.name}/nchw", ctx.src_shape(node.inputs[0]), x)
        _transpose(node, ctx, x, nchw, NCHW_FROM_NHWC)
        x = nchw
    if out_perm and not _same_order(ctx.shape(ctx.activation(y_src, node))):
        flat = ctx.temp_like(f"{node.name}/reshaped", ctx.src_shape(y_src), x)
        _reshape(node, ctx, x, flat)
        _transpose(node, ctx, flat, ctx.activation(y_src, node), NHWC)
    else:
        _reshape(node, ctx, x, ctx.activation(y_src, node))


def _same_order(nhwc: tuple[int, ...]) -> bool:
    """Whether a 4-D tensor of program shape ``nhwc`` holds its elements in the same order as its NCHW
    source (a 1x1 map, or one channel): then a reshape of it needs no TRANSPOSE."""
    return nhwc[1] * nhwc[2] == 1 or nhwc[3] == 1


def _transpose(node: Node, ctx: LowerContext, x: str, y: str, perm: tuple[int, ...]) -> None:
    ctx.emit("TRANSPOSE", [x, ctx.constant(f"{node.name}/perm", np.array(perm, np.int32), "int32")], [y], node)


@LOWERINGS.register("Pad")
def lower_pad(node: Node, ctx: LowerContext) -> None:
    """Constant zero Pad → PAD (pads with the zero point, which is exactly real 0)."""
    pads = node.attrs.get("pads")
    if pads is None:
        pads = ctx.const(node.inputs[1]).tolist()
    if node.attrs.get("mode", "constant") != "constant":
        return lower_mirror_pad(node, ctx, list(pads))
    value = ctx.const(node.inputs[2]) if len(node.inputs) > 2 and node.inputs[2] else node.attrs.get("value", 0.0)
    if float(value) != 0.0 or min(pads) < 0:
        raise UnsupportedOpError("Pad", node.name, "only non-negative constant zero padding is supported yet")
    if len(node.inputs) > 3 and node.inputs[3]:
        raise UnsupportedOpError("Pad", node.name, "Pad with an axes input is not supported yet")
    rank = len(pads) // 2
    paddings = [(pads[i], pads[i + rank]) for i in range(rank)]
    perm = program_perm(rank)
    if perm:
        paddings = [paddings[p] for p in perm]
    x, y = ctx.activation(node.inputs[0], node), ctx.activation(node.outputs[0], node)
    ctx.emit("PAD", [x, ctx.constant(f"{node.name}/paddings", np.array(paddings, np.int32), "int32")], [y], node)


@LOWERINGS.register("Slice")
def lower_slice(node: Node, ctx: LowerContext) -> None:
    """Slice with constant starts/ends/axes/steps → STRIDED_SLICE.

    ONNX clamps a negative step's start into [0, dim-1] and its end into [-1, dim-1], -1 meaning
    "through index 0"; TFLite would read an end of -1 as dim-1, so that end is set by ``end_mask``.
    """
    shape = ctx.src_shape(node.inputs[0])
    rank = len(shape)
    args = [ctx.const(t).tolist() if t else None for t in list(node.inputs[1:]) + [""] * (5 - len(node.inputs))]
    starts, ends, axes, steps = args[0], args[1], args[2] or list(range(len(args[0]))), args[3] or [1] * len(args[0])
    begin, end, stride = [0] * rank, list(shape), [1] * rank
    for s, e, a, st in zip(starts, ends, axes, steps):
        if st == 0:
            raise UnsupportedOpError("Slice", node.name, "a slice step of 0")
        a %= rank
        begin[a] = int(np.clip(s + shape[a] if s < 0 else s, 0, shape[a] - (st < 0)))
        end[a] = int(np.clip(e + shape[a] if e < 0 else e, -(st < 0), shape[a] - (st < 0)))
        stride[a] = int(st)
    perm = program_perm(rank)
    if perm:
        begin, end, stride = ([v[p] for p in perm] for v in (begin, end, stride))
    end_mask = sum(1 << i for i in range(rank) if end[i] == -1)
    x, y = ctx.activation(node.inputs[0], node), ctx.activation(node.outputs[0], node)
    consts = [ctx.constant(f"{node.name}/{k}", np.array(v, np.int32), "int32")
              for k, v in (("begin", begin), ("end", end), ("strides", stride))]
    ctx.emit("STRIDED_SLICE", [x, *consts], [y], node, begin_mask=0, end_mask=end_mask)
