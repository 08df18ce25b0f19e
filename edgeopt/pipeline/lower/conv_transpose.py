"""ConvTranspose → TRANSPOSE_CONV (inputs: output_shape, weights OHWI, input, bias), NHWC.

ONNX places output ``oy = iy * stride + ky - pad_begin``; TFLite places it at ``iy * stride + ky -
pad``, where ``pad`` is what ``ComputePaddingHeightWidth`` gives for the *output* size, and LiteRT
checks that the output size maps back onto the input size (SAME: ``ceil(out / stride) == in``;
VALID: ``(out - kernel) // stride + 1 == in``). When ONNX's pads and output size are one of those
two forms, one op does it; otherwise the lowering computes the VALID output (pad 0) large enough to
hold ONNX's window and crops it with a STRIDED_SLICE.
"""
from __future__ import annotations

import numpy as np

from edgeopt.errors import UnsupportedOpError
from edgeopt.ir import Node, QParams
from edgeopt.pipeline.lower.context import LOWERINGS, LowerContext
from edgeopt.pipeline.lower.ops import ACTIVATIONS
from edgeopt.pipeline.quantize.encodings import bias_qparams
from edgeopt.runtimes.reference.arith.padding import compute_out_size, compute_padding


def begin_pads(node: Node, in_hw: tuple[int, int], out_hw: tuple[int, int], kernel: tuple[int, int],
                strides: tuple[int, int], output_padding: tuple[int, int]) -> tuple[int, int]:
    """ONNX's leading padding per spatial axis (explicit pads, or derived from auto_pad)."""
    auto_pad = node.attrs.get("auto_pad", "NOTSET")
    if auto_pad in ("NOTSET", "VALID"):
        pads = list(node.attrs.get("pads", [0, 0, 0, 0])) if auto_pad == "NOTSET" else [0, 0, 0, 0]
        return pads[0], pads[1]
    begins = []
    for i in range(2):
        total = strides[i] * (in_hw[i] - 1) + output_padding[i] + kernel[i] - out_hw[i]
        begins.append(total // 2 if auto_pad == "SAME_UPPER" else total - total // 2)
    return begins[0], begins[1]


def _tflite_form(size: int, out: int, kernel: int, stride: int, begin: int) -> str | None:
    """"SAME" or "VALID" when one TRANSPOSE_CONV with that padding places ONNX's output exactly."""
    for padding in ("SAME", "VALID"):
        if compute_out_size(padding, out, kernel, stride, 1) != size:
            continue
        pad = compute_padding(stride, 1, out, kernel, compute_out_size(padding, out, kernel, stride, 1))
        if pad == begin:
            return padding
    return None


@LOWERINGS.register("ConvTranspose")
def lower_conv_transpose(node: Node, ctx: LowerContext) -> None:
    """2-D ConvTranspose (group 1, dilation 1, constant weights) → TRANSPOSE_CONV [+ STRIDED_SLICE]."""
    if len(ctx.src_shape(node.inputs[0])) != 4:
        raise UnsupportedOpError("ConvTranspose", node.name, "only 2-D transposed convolutions are supported")
    if not ctx.is_const(node.inputs[1]):
        raise UnsupportedOpError("ConvTranspose", node.name, "weights computed at run time are not supported")
    if node.attrs.get("group", 1) != 1:
        raise UnsupportedOpError("ConvTranspose", node.name,
                                 f"group={node.attrs['group']}: TFLite's TRANSPOSE_CONV has no groups")
    if any(d != 1 for d in node.attrs.get("dilations", (1, 1))):
        raise UnsupportedOpError("ConvTranspose", node.name, "TFLite's TRANSPOSE_CONV has no dilation")
    x = ctx.activation(node.inputs[0], node)
    y = ctx.activation(node.outputs[0], node)
    n, h, w, _ = ctx.shape(x)
    _, oh, ow, c_out = ctx.shape(y)
    w_name = node.inputs[1]
    w_q = ctx.encoding(w_name, node)
    if w_q.axis != 1:
        raise UnsupportedOpError("ConvTranspose", node.name, "weights must be quantized per output channel (axis 1)")
    w_int = ctx.quantized(ctx.const(w_name), w_q)  # (Ci, Co, KH, KW)
    kh, kw = w_int.shape[2:]
    strides = tuple(node.attrs.get("strides", (1, 1)))
    output_padding = tuple(node.attrs.get("output_padding", (0, 0)))
    top, left = begin_pads(node, (h, w), (oh, ow), (kh, kw), strides, output_padding)
    x_q = ctx.tensors[x].qparams
    tw_q = QParams(w_q.scale, w_q.zero_point, "int8", axis=0)
    weights = ctx.constant(w_name, w_int.transpose(1, 2, 3, 0), "int8", tw_q)  # OHWI
    if len(node.inputs) > 2 and node.inputs[2]:
        b_q = ctx.encoding(node.inputs[2], node)
        bias = ctx.constant(node.inputs[2], ctx.quantized(ctx.const(node.inputs[2]), b_q), "int32", b_q)
    else:
        bias = ctx.constant(f"{node.name}/bias", np.zeros(c_out, np.int32), "int32", bias_qparams(x_q, tw_q))
    activation = ACTIVATIONS[node.attrs.get("fused_activation")]

    forms = {_tflite_form(h, oh, kh, strides[0], top), _tflite_form(w, ow, kw, strides[1], left)}
    if len(forms) == 1 and None not in forms:
        target, padding, full_hw = y, forms.pop(), (oh, ow)
    else:
        # VALID places output oy at iy * stride + ky: ONNX's window starts `top` rows in. The largest
        # VALID output is (in - 1) * stride + kernel + stride - 1; ONNX's top + out never exceeds it
        # since output_padding < stride.
        full_hw = (max((h - 1) * strides[0] + kh, top + oh), max((w - 1) * strides[1] + kw, left + ow))
        if any(compute_out_size("VALID", f, k, s, 1) != i
               for f, k, s, i in zip(full_hw, (kh, kw), strides, (h, w))):
            raise UnsupportedOpError("ConvTranspose", node.name,
                                     f"pads {top, left} and output {oh, ow} have no TFLite form")
        target, padding = ctx.temp(f"{node.name}/full", (n, *full_hw, c_out), ctx.tensors[y].qparams), "VALID"
    shape = ctx.constant(f"{node.name}/output_shape", np.array([n, *full_hw, c_out], np.int32), "int32")
    ctx.emit("TRANSPOSE_CONV", [shape, weights, x, bias], [target], node, padding=padding,
             stride_h=strides[0], stride_w=strides[1], fused_activation_function=activation)
    if target != y:
        consts = [ctx.constant(f"{node.name}/{k}", np.array(v, np.int32), "int32")
                  for k, v in (("begin", [0, top, left, 0]), ("end", [n, top + oh, left + ow, c_out]),
                               ("strides", [1, 1, 1, 1]))]
        ctx.emit("STRIDED_SLICE", [target, *consts], [y], node, begin_mask=0, end_mask=0)
