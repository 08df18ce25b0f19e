"""A float32 ``.tflite`` (TensorFlow's converter, a Keras model) → the float IR ``Graph`` the ONNX frontend makes.

The file is parsed by the int8 reader's ``read_tflite`` (checks, names, shape-computing chains folded)
and each op becomes ONNX nodes through one converter per builtin in ``CONVERTERS``.

Layout: TFLite activations of rank 4 are NHWC; the IR's are NCHW, as the ONNX frontend gives them and
the lowering expects (``lower.context``: every 4-D IR tensor is NHWC in the program). So every 4-D tensor
of the file becomes the IR tensor of the same name with shape ``(N, C, H, W)``; other ranks keep their
order. Weights are permuted (CONV_2D's OHWI → OIHW, DEPTHWISE_CONV_2D's 1HW(C·M) → (C·M)1HW with
``group = C``), axes remapped (MEAN, CONCATENATION, SOFTMAX, PAD, STRIDED_SLICE), 4-D constants of
binary ops permuted (lower-rank ones first aligned to the right, as TFLite broadcasts). A Transpose is
inserted only where element order matters and no remap exists: a RESHAPE (or a FULLY_CONNECTED that
flattens) of NHWC data whose H·W and C are both above 1 reads it in NHWC order (Transpose to NHWC, then
Reshape), and a 4-D RESHAPE result of that kind is transposed back to NCHW. The lowering then writes
such a Transpose next to the TRANSPOSE its own Reshape lowering needs, and the two cancel
(``lower.movement_pairs``), so the int8 file has the float file's NHWC input and no layout shuffles.

Fused activations become their own node after the op (Relu, Clip, Tanh), which ``fuse_activation``
fuses back. DIV by a constant becomes Mul by its float32 reciprocal (one rounding away from TFLite's
float DIV); DEQUANTIZE of a float16 constant (the converter's float16 weights) becomes a float32
constant.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from edgeopt.errors import InternalError, ModelLoadError, UnsupportedOpError
from edgeopt.ir import Graph, Node, TensorInfo, topological_order
from edgeopt.pipeline.frontend.tflite import TFLiteFile, read_tflite
from edgeopt.qprogram import QOp
from edgeopt.registry import Registry

NHWC_FROM_NCHW = (0, 2, 3, 1)  # IR (NCHW) tensor → file (NHWC) element order
NCHW_FROM_NHWC = (0, 3, 1, 2)  # file (NHWC) tensor → IR (NCHW)
OPSET = 18

Converter = Callable[[QOp, "GraphBuilder"], None]
CONVERTERS: Registry[Converter] = Registry("float TFLite op converter")


def ir_axis(axis: int, rank: int) -> int:
    """The IR axis holding file axis ``axis`` (negative axes count from the end)."""
    axis %= rank
    return NHWC_FROM_NCHW[axis] if rank == 4 else axis


def ir_shape(shape: Sequence[int]) -> tuple[int, ...]:
    """The IR shape of a file tensor of ``shape`` (NHWC → NCHW for rank 4)."""
    shape = tuple(int(d) for d in shape)
    return tuple(shape[p] for p in NCHW_FROM_NHWC) if len(shape) == 4 else shape


def layout_free(shape: Sequence[int]) -> bool:
    """Whether NHWC and NCHW hold the elements of a file tensor of ``shape`` in the same order (not 4-D,
    one channel, or a 1x1 map), so that a reshape of it needs no transpose."""
    return len(shape) != 4 or shape[3] == 1 or shape[1] * shape[2] == 1


def tflite_to_graph(data: bytes, name: str) -> Graph:
    """Read a float32 ``.tflite`` into a float Graph in NCHW layout (see the module docstring).

    Args:
        data: the file's bytes.
        name: the graph's name.

    Returns:
        The Graph; its 4-D input is NCHW (``(N, C, H, W)`` of the file's ``(N, H, W, C)``), and lowering it
        gives a program whose input is the file's NHWC tensor.

    Raises:
        ModelLoadError: not a TFLite file, corrupt, a quantized model (``edgeopt emulate`` runs those), or
            an input that is not float32.
        UnsupportedOpError: an op or an option without a conversion, naming the op, the node (its output
            tensor) and what to do.
    """
    parsed = read_tflite(data, name)
    if any(t.qparams is not None for t in parsed.tensors.values()):
        raise ModelLoadError(f"'{name}' is an int8 model, already quantized: run it with `edgeopt emulate`; "
                             "deploy takes float models (.onnx, .pt2, float .tflite)")
    builder = GraphBuilder(parsed)
    for _, op in parsed.ops:
        if op.kind not in CONVERTERS:
            raise UnsupportedOpError(op.kind, op.outputs[0], "no conversion from float TFLite yet (converts: "
                                     f"{', '.join(CONVERTERS)}); convert the model to ONNX (tf2onnx) or replace "
                                     "the layer")
        CONVERTERS.get(op.kind)(op, builder)
    return builder.graph(name)


class GraphBuilder:
    """Collects the IR nodes, initializers and tensor infos while the converters walk the file's ops."""

    def __init__(self, parsed: TFLiteFile) -> None:
        self.file = parsed
        self.nodes: list[Node] = []
        self.node_names: set[str] = set()
        self.initializers: dict[str, np.ndarray] = {}
        self.tensors: dict[str, TensorInfo] = {}
        # Constants the conversion computes (DEQUANTIZE of float16, DIV's reciprocal), in file layout.
        self.folded: dict[str, np.ndarray] = {}
        self._fresh = 0
        for t in parsed.inputs:
            if parsed.tensors[t].dtype != "float32":
                raise ModelLoadError(f"input '{t}' is {parsed.tensors[t].dtype}; deploy reads float32 inputs")
            self.info(t)

    # -- the file's side ---------------------------------------------------------------------------
    def file_shape(self, name: str) -> tuple[int, ...]:
        return tuple(int(d) for d in self.file.tensors[name].shape)

    def is_const(self, name: str) -> bool:
        return name in self.folded or self.file.tensors[name].is_constant

    def value(self, name: str) -> np.ndarray:
        """A constant of the file (or one the conversion folded), in file layout."""
        if name in self.folded:
            return self.folded[name]
        t = self.file.tensors[name]
        if not t.is_constant:
            raise InternalError(f"'{name}' is computed at run time, where a constant is expected")
        return np.asarray(t.data).reshape(t.shape)

    # -- the IR's side ------------------------------------------------------------------------------
    def info(self, name: str) -> str:
        """The IR activation for file tensor ``name`` (its shape in IR layout), registered on first use."""
        if name not in self.tensors:
            dtype = self.file.tensors[name].dtype
            self.tensors[name] = TensorInfo(name, ir_shape(self.file_shape(name)), dtype)
        return name

    def operand(self, name: str, out_rank: int | None = None) -> str:
        """An input of a node: an activation, or a file constant as an initializer (aligned to ``out_rank``
        on the right and permuted to NCHW when that rank is 4)."""
        if not self.is_const(name):
            return self.info(name)
        key = name if out_rank is None else f"{name}/rank{out_rank}"
        if key not in self.initializers:
            value = self.value(name)
            if value.dtype == np.float16:
                value = value.astype(np.float32)
            if out_rank is not None and value.ndim < out_rank:
                value = value.reshape((1,) * (out_rank - value.ndim) + value.shape)
            if value.ndim == 4:
                value = value.transpose(NCHW_FROM_NHWC)
            self.initializers[key] = value
        return key

    def const(self, base: str, value: np.ndarray) -> str:
        """A new initializer (attributes-as-inputs: shapes, pads, axes, weights in IR layout)."""
        name = self._unique(base)
        self.initializers[name] = np.asarray(value)
        return name

    def temp(self, base: str, shape: Sequence[int], dtype: str = "float32") -> str:
        """A new intermediate IR tensor of IR ``shape``."""
        name = self._unique(base)
        self.tensors[name] = TensorInfo(name, tuple(int(d) for d in shape), dtype)
        return name

    def node(self, op: str, inputs: Sequence[str], outputs: Sequence[str], name: str, **attrs: Any) -> None:
        """Append a node named ``name`` (made unique) of ONNX ``op``."""
        unique = name
        while unique in self.node_names:
            self._fresh += 1
            unique = f"{name}__{self._fresh}"
        self.node_names.add(unique)
        self.nodes.append(Node(op, unique, tuple(inputs), tuple(outputs), attrs))

    def with_activation(self, op: QOp) -> str:
        """The tensor the op's main node should write: its output, or a temp that its fused activation
        (a node added by ``finish_activation``) reads."""
        act = op.options.get("fused_activation_function", "NONE")
        y = self.info(op.outputs[0])
        if act == "NONE":
            return y
        if act not in FUSED:
            raise UnsupportedOpError(op.kind, op.outputs[0], f"fused activation {act} has no conversion "
                                     f"(converts: {', '.join(FUSED)})")
        return self.temp(f"{y}/pre_activation", self.tensors[y].shape)

    def finish_activation(self, op: QOp, pre: str) -> None:
        """Add the fused activation's node ``pre`` → the op's output (nothing when there is none)."""
        y = op.outputs[0]
        if pre == y:
            return
        kind, bounds = FUSED[op.options["fused_activation_function"]]
        inputs = [pre] + [self.const(f"{y}/{k}", np.array(v, np.float32)) for k, v in zip(("min", "max"), bounds)]
        self.node(kind, inputs, [y], f"{y}/{kind}")

    def reshape(self, x: str, file_in: Sequence[int], file_out: Sequence[int], y: str, name: str) -> None:
        """IR nodes computing the file's ``reshape(x, file_out)`` of a file tensor ``x`` of shape ``file_in``:
        a Transpose to NHWC first when the element order differs (``layout_free``), and back to NCHW after
        when the result is 4-D and its order differs."""
        src = x
        if not layout_free(file_in):
            src = self.temp(f"{name}/nhwc", file_in)
            self.node("Transpose", [x], [src], f"{name}/to_nhwc", perm=list(NHWC_FROM_NCHW))
        if layout_free(file_out):
            self.node("Reshape", [src, self.const(f"{name}/shape", np.array(ir_shape(file_out), np.int64))], [y],
                      name)
            return
        flat = self.temp(f"{name}/nhwc_out", file_out)
        self.node("Reshape", [src, self.const(f"{name}/shape", np.array(file_out, np.int64))], [flat], name)
        self.node("Transpose", [flat], [y], f"{name}/to_nchw", perm=list(NCHW_FROM_NHWC))

    def graph(self, name: str) -> Graph:
        inputs = tuple(self.tensors[t] for t in self.file.inputs)
        for t in self.file.outputs:
            if t not in self.tensors:
                raise ModelLoadError(f"graph output '{t}' is never written (corrupt file?)")
        outputs = tuple(self.tensors[t] for t in self.file.outputs)
        nodes = topological_order(self.nodes, [*self.file.inputs, *self.initializers])
        return Graph(name, nodes, inputs, outputs, self.initializers, self.tensors,
                     opset=OPSET).without_unused_initializers()

    def _unique(self, base: str) -> str:
        name = base
        while name in self.tensors or name in self.initializers or name in self.folded or name in self.file.tensors:
            self._fresh += 1
            name = f"{base}__{self._fresh}"
        return name



# Fused activation → (ONNX op, Clip bounds as inputs).
FUSED: dict[str, tuple[str, tuple[float, ...]]] = {
    "RELU": ("Relu", ()), "RELU6": ("Clip", (0.0, 6.0)), "RELU_N1_TO_1": ("Clip", (-1.0, 1.0)), "TANH": ("Tanh", ()),
}


def _refuse(op: QOp, why: str) -> UnsupportedOpError:
    return UnsupportedOpError(op.kind, op.outputs[0], why)


def _const_input(op: QOp, b: GraphBuilder, i: int, what: str) -> np.ndarray:
    if len(op.inputs) <= i or not op.inputs[i] or not b.is_const(op.inputs[i]):
        raise _refuse(op, f"its {what} must be a constant; re-export the model with a static {what}")
    return b.value(op.inputs[i])


def _same_pads(size: tuple[int, int], kernel: tuple[int, int], stride: tuple[int, int],
               dilation: tuple[int, int]) -> list[int]:
    """TFLite's SAME padding as ONNX pads ``[top, left, bottom, right]`` (``ComputePaddingHeightWidth``:
    the odd pixel goes to the bottom/right)."""
    before, after = [], []
    for s, k, st, d in zip(size, kernel, stride, dilation):
        total = max((math.ceil(s / st) - 1) * st + (k - 1) * d + 1 - s, 0)
        before.append(total // 2)
        after.append(total - total // 2)
    return before + after


def _window(op: QOp, b: GraphBuilder, kernel: tuple[int, int], dilation: tuple[int, int]) -> dict[str, Any]:
    """strides, dilations and pads of a CONV_2D/DEPTHWISE_CONV_2D/pool ``op`` over NHWC input 0."""
    stride = (int(op.options.get("stride_h", 1)), int(op.options.get("stride_w", 1)))
    _, h, w, _ = b.file_shape(op.inputs[0])
    padding = op.options.get("padding", "VALID")
    if padding not in ("SAME", "VALID"):
        raise _refuse(op, f"padding {padding} has no conversion (SAME and VALID do)")
    pads = _same_pads((h, w), kernel, stride, dilation) if padding == "SAME" else [0, 0, 0, 0]
    return {"strides": list(stride), "pads": pads}


def _bias(op: QOp, b: GraphBuilder) -> list[str]:
    return [b.operand(op.inputs[2])] if len(op.inputs) > 2 and op.inputs[2] else []


@CONVERTERS.register("CONV_2D")
def _conv_2d(op: QOp, b: GraphBuilder) -> None:
    """CONV_2D (weights OHWI) → Conv (OIHW) + the fused activation."""
    w = _const_input(op, b, 1, "filter")
    dilation = (int(op.options.get("dilation_h_factor", 1)), int(op.options.get("dilation_w_factor", 1)))
    attrs = _window(op, b, (w.shape[1], w.shape[2]), dilation)
    groups = b.file_shape(op.inputs[0])[3] // w.shape[3]
    weight = b.const(op.inputs[1], w.astype(np.float32).transpose(0, 3, 1, 2))
    pre = b.with_activation(op)
    b.node("Conv", [b.info(op.inputs[0]), weight, *_bias(op, b)], [pre], op.outputs[0],
           kernel_shape=[int(w.shape[1]), int(w.shape[2])], dilations=list(dilation), group=groups, **attrs)
    b.finish_activation(op, pre)


@CONVERTERS.register("DEPTHWISE_CONV_2D")
def _depthwise_conv_2d(op: QOp, b: GraphBuilder) -> None:
    """DEPTHWISE_CONV_2D (weights 1HW(C·M)) → Conv with ``group = C`` and weights (C·M)1HW: output channel
    ``c·M + m`` reads input channel ``c`` in both."""
    w = _const_input(op, b, 1, "filter")
    c_in = b.file_shape(op.inputs[0])[3]
    dilation = (int(op.options.get("dilation_h_factor", 1)), int(op.options.get("dilation_w_factor", 1)))
    attrs = _window(op, b, (w.shape[1], w.shape[2]), dilation)
    weight = b.const(op.inputs[1], w.astype(np.float32).transpose(3, 0, 1, 2))
    pre = b.with_activation(op)
    b.node("Conv", [b.info(op.inputs[0]), weight, *_bias(op, b)], [pre], op.outputs[0],
           kernel_shape=[int(w.shape[1]), int(w.shape[2])], dilations=list(dilation), group=c_in, **attrs)
    b.finish_activation(op, pre)


@CONVERTERS.register("FULLY_CONNECTED")
def _fully_connected(op: QOp, b: GraphBuilder) -> None:
    """FULLY_CONNECTED (weights [N, K]) → Gemm with ``transB=1``; an input of another rank is first
    flattened to ``[-1, K]`` as TFLite does (in NHWC order)."""
    w = _const_input(op, b, 1, "weights")
    k = w.shape[1]
    x = b.info(op.inputs[0])
    shape = b.file_shape(op.inputs[0])
    out_shape = b.file_shape(op.outputs[0])
    if len(out_shape) != 2:
        raise _refuse(op, f"keep_num_dims with a rank-{len(shape)} input has no conversion yet; flatten the input "
                      "to 2-D before the Dense layer")
    if len(shape) != 2:
        flat_shape = (math.prod(shape) // k, k)
        flat = b.temp(f"{op.outputs[0]}/flat", flat_shape)
        b.reshape(x, shape, flat_shape, flat, f"{op.outputs[0]}/flatten")
        x = flat
    weight = b.const(op.inputs[1], w.astype(np.float32))
    pre = b.with_activation(op)
    b.node("Gemm", [x, weight, *_bias(op, b)], [pre], op.outputs[0], transB=1)
    b.finish_activation(op, pre)


def _binary(onnx_op: str) -> Converter:
    def convert(op: QOp, b: GraphBuilder) -> None:
        out_rank = len(b.file_shape(op.outputs[0]))
        inputs = []
        for t in op.inputs:
            if not b.is_const(t) and len(b.file_shape(t)) != out_rank:
                file_shape = b.file_shape(t)
                aligned = (1,) * (out_rank - len(file_shape)) + file_shape
                reshaped = b.temp(f"{t}/rank{out_rank}", ir_shape(aligned))
                b.reshape(b.info(t), file_shape, aligned, reshaped, f"{op.outputs[0]}/{t}/align")
                inputs.append(reshaped)
            else:
                inputs.append(b.operand(t, out_rank))
        pre = b.with_activation(op)
        b.node(onnx_op, inputs, [pre], op.outputs[0])
        b.finish_activation(op, pre)

    convert.__doc__ = f"{onnx_op} with TFLite's right-aligned broadcasting (constants aligned and permuted)."
    return convert


CONVERTERS.register("ADD")(_binary("Add"))
CONVERTERS.register("SUB")(_binary("Sub"))
CONVERTERS.register("MUL")(_binary("Mul"))


@CONVERTERS.register("DIV")
def _div(op: QOp, b: GraphBuilder) -> None:
    """DIV by a constant → Mul by its float32 reciprocal (the int8 lowering has MUL, not DIV)."""
    if not b.is_const(op.inputs[1]) or b.is_const(op.inputs[0]):
        raise _refuse(op, "only division of an activation by a constant has a conversion")
    divisor = b.value(op.inputs[1]).astype(np.float32)
    reciprocal = f"{op.inputs[1]}/reciprocal"
    b.folded[reciprocal] = (np.float32(1.0) / divisor).astype(np.float32)
    _binary("Mul")(QOp("MUL", (op.inputs[0], reciprocal), op.outputs, op.options, source=op.source), b)


@CONVERTERS.register("MEAN")
def _mean(op: QOp, b: GraphBuilder) -> None:
    """MEAN → ReduceMean over the remapped axes; a rank-reduced result whose remaining axes the IR holds in
    another order than the file is transposed to the file's."""
    rank = len(b.file_shape(op.inputs[0]))
    axes = sorted({int(a) % rank for a in _const_input(op, b, 1, "axes").reshape(-1)})
    keep = bool(op.options.get("keep_dims", False))
    ir_axes = sorted(ir_axis(a, rank) for a in axes)
    kept = [a for a in range(rank) if a not in axes]  # file axes left, in file order
    inverse = [NCHW_FROM_NHWC[j] if rank == 4 else j for j in range(rank)]  # IR axis j holds file axis
    ir_kept = [inverse[j] for j in range(rank) if j not in ir_axes]  # file axes left, in IR order
    y = b.info(op.outputs[0])
    target = y
    if not keep and ir_kept != kept:
        target = b.temp(f"{y}/ir_order", [b.file_shape(op.inputs[0])[a] for a in ir_kept])
    b.node("ReduceMean", [b.info(op.inputs[0]), b.const(f"{y}/axes", np.array(ir_axes, np.int64))], [target],
           op.outputs[0], keepdims=int(keep))
    if target != y:
        b.node("Transpose", [target], [y], f"{y}/to_file_order", perm=[ir_kept.index(a) for a in kept])


def _pool(onnx_op: str) -> Converter:
    def convert(op: QOp, b: GraphBuilder) -> None:
        kernel = (int(op.options["filter_height"]), int(op.options["filter_width"]))
        attrs = _window(op, b, kernel, (1, 1))
        if onnx_op == "AveragePool" and any(attrs["pads"]):
            attrs["count_include_pad"] = 0  # TFLite averages the valid pixels only
        if not any(attrs["pads"]):
            del attrs["pads"]
        pre = b.with_activation(op)
        b.node(onnx_op, [b.info(op.inputs[0])], [pre], op.outputs[0], kernel_shape=list(kernel), **attrs)
        b.finish_activation(op, pre)

    convert.__doc__ = f"{onnx_op} with TFLite's SAME padding made explicit."
    return convert


CONVERTERS.register("AVERAGE_POOL_2D")(_pool("AveragePool"))
CONVERTERS.register("MAX_POOL_2D")(_pool("MaxPool"))


@CONVERTERS.register("RESHAPE", "SQUEEZE", "EXPAND_DIMS")
def _reshape(op: QOp, b: GraphBuilder) -> None:
    """RESHAPE (and SQUEEZE, EXPAND_DIMS) to the output's static shape, in NHWC element order."""
    b.reshape(b.info(op.inputs[0]), b.file_shape(op.inputs[0]), b.file_shape(op.outputs[0]), b.info(op.outputs[0]),
              op.outputs[0])


@CONVERTERS.register("SOFTMAX")
def _softmax(op: QOp, b: GraphBuilder) -> None:
    """SOFTMAX over the last file axis (C of NHWC: IR axis 1) with beta 1."""
    if float(op.options.get("beta", 1.0)) != 1.0:
        raise _refuse(op, f"beta {op.options['beta']} has no conversion (beta 1 does)")
    rank = len(b.file_shape(op.inputs[0]))
    b.node("Softmax", [b.info(op.inputs[0])], [b.info(op.outputs[0])], op.outputs[0], axis=ir_axis(-1, rank))


@CONVERTERS.register("PAD", "PADV2", "MIRROR_PAD")
def _pad(op: QOp, b: GraphBuilder) -> None:
    """PAD/PADV2 (paddings ``[rank, 2]``, PADV2's value) → Pad with pads in IR axis order; MIRROR_PAD
    REFLECT → Pad ``reflect``."""
    paddings = _const_input(op, b, 1, "paddings").reshape(-1, 2)
    rank = len(paddings)
    order = NCHW_FROM_NHWC if rank == 4 else tuple(range(rank))
    pads = [int(paddings[a][0]) for a in order] + [int(paddings[a][1]) for a in order]
    inputs = [b.info(op.inputs[0]), b.const(f"{op.outputs[0]}/pads", np.array(pads, np.int64))]
    attrs: dict[str, Any] = {}
    if op.kind == "MIRROR_PAD":
        if op.options.get("mode") != "REFLECT":
            raise _refuse(op, f"mode {op.options.get('mode')} has no conversion (REFLECT does)")
        attrs["mode"] = "reflect"
    elif op.kind == "PADV2":
        value = _const_input(op, b, 2, "constant value").astype(np.float32).reshape(())
        inputs.append(b.const(f"{op.outputs[0]}/value", value))
    b.node("Pad", inputs, [b.info(op.outputs[0])], op.outputs[0], **attrs)


@CONVERTERS.register("CONCATENATION")
def _concatenation(op: QOp, b: GraphBuilder) -> None:
    """CONCATENATION → Concat on the remapped axis (+ the fused activation)."""
    rank = len(b.file_shape(op.outputs[0]))
    pre = b.with_activation(op)
    b.node("Concat", [b.operand(t, rank) for t in op.inputs], [pre], op.outputs[0],
           axis=ir_axis(int(op.options.get("axis", 0)), rank))
    b.finish_activation(op, pre)


@CONVERTERS.register("STRIDED_SLICE")
def _strided_slice(op: QOp, b: GraphBuilder) -> None:
    """STRIDED_SLICE with positive strides → Slice on the remapped axes; shrunk axes are reshaped away."""
    for mask in ("ellipsis_mask", "new_axis_mask"):
        if op.options.get(mask, 0):
            raise _refuse(op, f"{mask} has no conversion; slice with plain begin/end/strides")
    if op.options.get("offset", False):
        raise _refuse(op, "offset=True has no conversion")
    shape = b.file_shape(op.inputs[0])
    rank = len(shape)
    begin, end, strides = (_const_input(op, b, i, what).reshape(-1).tolist()
                           for i, what in ((1, "begin"), (2, "end"), (3, "strides")))
    if any(s <= 0 for s in strides):
        raise _refuse(op, "negative or zero strides have no conversion yet")
    shrink = int(op.options.get("shrink_axis_mask", 0))
    starts, ends, sliced = [], [], []
    for a in range(rank):
        lo = 0 if op.options.get("begin_mask", 0) >> a & 1 else int(begin[a])
        lo = min(max(lo + shape[a] if lo < 0 else lo, 0), shape[a])
        if shrink >> a & 1:
            hi = lo + 1
        elif op.options.get("end_mask", 0) >> a & 1:
            hi = shape[a]
        else:
            hi = min(max(int(end[a]) + shape[a] if end[a] < 0 else int(end[a]), 0), shape[a])
        starts.append(lo)
        ends.append(hi)
        sliced.append(max(0, math.ceil((hi - lo) / strides[a])))
    order = NCHW_FROM_NHWC if rank == 4 else tuple(range(rank))
    y = b.info(op.outputs[0])
    target = y if not shrink else b.temp(f"{y}/unshrunk", ir_shape(sliced))
    args = [np.array([v[a] for a in order], np.int64) for v in (starts, ends, strides)]
    b.node("Slice", [b.info(op.inputs[0]), *(b.const(f"{y}/{k}", v) for k, v in zip(("starts", "ends"), args[:2])),
                     b.const(f"{y}/axes", np.arange(rank, dtype=np.int64)), b.const(f"{y}/steps", args[2])],
           [target], op.outputs[0])
    if shrink:
        b.reshape(target, sliced, b.file_shape(op.outputs[0]), y, f"{y}/shrink")


def _unary(onnx_op: str, **attrs: Any) -> Converter:
    def convert(op: QOp, b: GraphBuilder) -> None:
        b.node(onnx_op, [b.info(op.inputs[0])], [b.info(op.outputs[0])], op.outputs[0], **attrs)

    convert.__doc__ = f"→ {onnx_op} (elementwise: layout-free)."
    return convert


CONVERTERS.register("RELU")(_unary("Relu"))
CONVERTERS.register("LOGISTIC")(_unary("Sigmoid"))
CONVERTERS.register("TANH")(_unary("Tanh"))
CONVERTERS.register("HARD_SWISH")(_unary("HardSwish"))


def _clip(lo: float, hi: float) -> Converter:
    def convert(op: QOp, b: GraphBuilder) -> None:
        y = op.outputs[0]
        bounds = [b.const(f"{y}/{k}", np.array(v, np.float32)) for k, v in (("min", lo), ("max", hi))]
        b.node("Clip", [b.info(op.inputs[0]), *bounds], [b.info(y)], y)

    convert.__doc__ = f"→ Clip({lo}, {hi})."
    return convert


CONVERTERS.register("RELU6")(_clip(0.0, 6.0))
CONVERTERS.register("RELU_N1_TO_1")(_clip(-1.0, 1.0))


@CONVERTERS.register("DEQUANTIZE")
def _dequantize(op: QOp, b: GraphBuilder) -> None:
    """DEQUANTIZE of a float16 constant (the converter's float16 weights) → a float32 constant."""
    x = b.file.tensors[op.inputs[0]]
    if not x.is_constant or x.dtype != "float16":
        raise _refuse(op, "only float16 constants can be dequantized in a float model (this is a quantized model;"
                      " run it with `edgeopt emulate`)")
    b.folded[op.outputs[0]] = np.asarray(x.data, np.float16).reshape(x.shape).astype(np.float32)
