"""The float IR's ops as torch functions, for QuantSim's trainable module.

Each function takes the node, its inputs as tensors (activations and, for weighted ops, the
fake-quantized weight and bias; ``None`` for absent optional inputs) and the graph (for static
operands such as shapes and pads, read from its initializers), and returns the node's float output.
Shapes are taken from the graph's static shapes with the batch dimension left free, so the module
runs on any batch size. ``fused_activation`` is applied by the caller.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from edgeopt.errors import UnsupportedOpError
from edgeopt.ir import Graph, Node
from edgeopt.pipeline.lower.conv_transpose import begin_pads
from edgeopt.pipeline.lower.pooling import ceil_mode_pads
from edgeopt.pipeline.lower.resize import onnx_nearest_indices, onnx_source_coordinate

TorchOp = Callable[[Node, Sequence["torch.Tensor | None"], Graph], torch.Tensor]
TORCH_OPS: dict[str, TorchOp] = {}


def _op(*names: str) -> Callable[[TorchOp], TorchOp]:
    def register(fn: TorchOp) -> TorchOp:
        for name in names:
            TORCH_OPS[name] = fn
        return fn
    return register


def static_input(node: Node, graph: Graph, index: int) -> np.ndarray | None:
    """A constant input of ``node`` (shape, pads, axes …), or None when absent."""
    if len(node.inputs) <= index or not node.inputs[index]:
        return None
    name = node.inputs[index]
    if name not in graph.initializers:
        raise UnsupportedOpError(node.op, node.name, f"input '{name}' must be a constant for the QuantSim module")
    return graph.initializers[name]


def _free_batch(graph: Graph, tensor: str) -> tuple[int, ...]:
    return (-1,) + tuple(graph.shape(tensor)[1:])


def _torch_pad(pads: Sequence[int]) -> list[int]:
    """ONNX pads [b0, b1, …, e0, e1, …] → F.pad's (last axis first) [b_last, e_last, …]."""
    half = len(pads) // 2
    out: list[int] = []
    for axis in reversed(range(half)):
        out += [int(pads[axis]), int(pads[axis + half])]
    return out


@_op("Conv")
def conv(node: Node, x: Sequence[torch.Tensor | None], graph: Graph) -> torch.Tensor:
    data, w, b = x[0], x[1], x[2] if len(x) > 2 else None
    if w is None or w.ndim != 4:
        raise UnsupportedOpError("Conv", node.name, "QuantSim supports 2-D convolutions only")
    if node.attrs.get("auto_pad", "NOTSET") not in ("NOTSET", "VALID"):
        raise UnsupportedOpError("Conv", node.name, "QuantSim needs explicit pads (auto_pad SAME_* is not supported)")
    pads = node.attrs.get("pads", [0, 0, 0, 0]) if node.attrs.get("auto_pad", "NOTSET") == "NOTSET" else [0] * 4
    inner: tuple[int, int] = (0, 0)
    if tuple(pads[:2]) == tuple(pads[2:]):
        inner = (int(pads[0]), int(pads[1]))  # symmetric zero padding: conv2d's own, without a padded copy
    elif any(pads):
        data = F.pad(data, _torch_pad(pads))
    return F.conv2d(data, w, b, stride=tuple(node.attrs.get("strides", (1, 1))), padding=inner,
                    dilation=tuple(node.attrs.get("dilations", (1, 1))), groups=int(node.attrs.get("group", 1)))


@_op("Gemm")
def gemm(node: Node, x: Sequence[torch.Tensor | None], graph: Graph) -> torch.Tensor:
    a, b = x[0], x[1]
    c = x[2] if len(x) > 2 else None
    if node.attrs.get("transA", 0):
        a = a.transpose(-1, -2)
    if node.attrs.get("transB", 0):
        b = b.transpose(-1, -2)
    y = float(node.attrs.get("alpha", 1.0)) * (a @ b)
    return y if c is None else y + float(node.attrs.get("beta", 1.0)) * c


@_op("MatMul")
def matmul(node: Node, x: Sequence[torch.Tensor | None], graph: Graph) -> torch.Tensor:
    return x[0] @ x[1]


@_op("Add")
def add(node: Node, x: Sequence[torch.Tensor | None], graph: Graph) -> torch.Tensor:
    return x[0] + x[1]


@_op("Sub")
def sub(node: Node, x: Sequence[torch.Tensor | None], graph: Graph) -> torch.Tensor:
    return x[0] - x[1]


@_op("Mul")
def mul(node: Node, x: Sequence[torch.Tensor | None], graph: Graph) -> torch.Tensor:
    return x[0] * x[1]


@_op("Min")
def minimum(node: Node, x: Sequence[torch.Tensor | None], graph: Graph) -> torch.Tensor:
    out = x[0]
    for other in x[1:]:
        out = torch.minimum(out, other)
    return out


@_op("Relu")
def relu(node: Node, x: Sequence[torch.Tensor | None], graph: Graph) -> torch.Tensor:
    return torch.relu(x[0])


@_op("Clip")
def clip(node: Node, x: Sequence[torch.Tensor | None], graph: Graph) -> torch.Tensor:
    lo, hi = static_input(node, graph, 1), static_input(node, graph, 2)
    # A bound may be stored as a 1-element array (shape (1,)), which numpy 2 no longer converts by float().
    return torch.clamp(x[0], None if lo is None else float(lo.reshape(())),
                       None if hi is None else float(hi.reshape(())))


@_op("Sigmoid")
def sigmoid(node: Node, x: Sequence[torch.Tensor | None], graph: Graph) -> torch.Tensor:
    return torch.sigmoid(x[0])


@_op("Tanh")
def tanh(node: Node, x: Sequence[torch.Tensor | None], graph: Graph) -> torch.Tensor:
    return torch.tanh(x[0])


@_op("HardSigmoid")
def hard_sigmoid(node: Node, x: Sequence[torch.Tensor | None], graph: Graph) -> torch.Tensor:
    alpha, beta = float(node.attrs.get("alpha", 0.2)), float(node.attrs.get("beta", 0.5))
    return torch.clamp(alpha * x[0] + beta, 0.0, 1.0)


@_op("HardSwish")
def hard_swish(node: Node, x: Sequence[torch.Tensor | None], graph: Graph) -> torch.Tensor:
    return F.hardswish(x[0])


@_op("Softmax")
def softmax(node: Node, x: Sequence[torch.Tensor | None], graph: Graph) -> torch.Tensor:
    return torch.softmax(x[0], dim=int(node.attrs.get("axis", -1)))


def _pool_args(node: Node, data: torch.Tensor) -> tuple[list[int], tuple[int, int], tuple[int, int]]:
    if data.ndim != 4 or any(d != 1 for d in node.attrs.get("dilations", (1, 1))):
        raise UnsupportedOpError(node.op, node.name, "QuantSim supports undilated 2-D pooling only")
    kernel = tuple(int(k) for k in node.attrs["kernel_shape"])
    strides = tuple(int(s) for s in node.attrs.get("strides", (1, 1)))
    # ceil_mode as the lowering runs it: more -inf padding on the bottom/right, then a floor-mode pool.
    return ceil_mode_pads(node, tuple(data.shape[2:]), kernel, strides), kernel, strides


@_op("MaxPool")
def max_pool(node: Node, x: Sequence[torch.Tensor | None], graph: Graph) -> torch.Tensor:
    pads, kernel, strides = _pool_args(node, x[0])
    top, left, bottom, right = pads
    data = F.pad(x[0], [left, right, top, bottom], value=-torch.inf) if any(pads) else x[0]
    return F.max_pool2d(data, kernel, strides)


@_op("AveragePool")
def average_pool(node: Node, x: Sequence[torch.Tensor | None], graph: Graph) -> torch.Tensor:
    if node.attrs.get("ceil_mode", 0):
        raise UnsupportedOpError(node.op, node.name, "ceil_mode average pooling has no TFLite int8 equivalent")
    pads, kernel, strides = _pool_args(node, x[0])
    top, left, bottom, right = pads
    if not any(pads):
        return F.avg_pool2d(x[0], kernel, strides)
    if node.attrs.get("count_include_pad", 0):
        return F.avg_pool2d(F.pad(x[0], [left, right, top, bottom]), kernel, strides)
    # Average over the real points only: sum over the zero-padded input divided by the count of real points.
    ones = torch.ones_like(x[0][:1, :1])
    total = F.avg_pool2d(F.pad(x[0], [left, right, top, bottom]), kernel, strides, divisor_override=1)
    count = F.avg_pool2d(F.pad(ones, [left, right, top, bottom]), kernel, strides, divisor_override=1)
    return total / count


@_op("GlobalAveragePool")
def global_average_pool(node: Node, x: Sequence[torch.Tensor | None], graph: Graph) -> torch.Tensor:
    return x[0].mean(dim=tuple(range(2, x[0].ndim)), keepdim=True)


@_op("ReduceMean")
def reduce_mean(node: Node, x: Sequence[torch.Tensor | None], graph: Graph) -> torch.Tensor:
    axes = static_input(node, graph, 1)
    axes = node.attrs.get("axes") if axes is None else axes.tolist()
    dims = tuple(range(x[0].ndim)) if axes is None else tuple(int(a) for a in axes)
    return x[0].mean(dim=dims, keepdim=bool(node.attrs.get("keepdims", 1)))


@_op("ReduceMax")
def reduce_max(node: Node, x: Sequence[torch.Tensor | None], graph: Graph) -> torch.Tensor:
    axes = static_input(node, graph, 1)
    axes = node.attrs.get("axes") if axes is None else axes.tolist()
    dims = tuple(range(x[0].ndim)) if not axes else tuple(int(a) for a in axes)
    return x[0].amax(dim=dims, keepdim=bool(node.attrs.get("keepdims", 1)))


@_op("DepthToSpace")
def depth_to_space(node: Node, x: Sequence[torch.Tensor | None], graph: Graph) -> torch.Tensor:
    """ONNX's DCR order (channel ``(i * b + j) * C_out + c``) or CRD (``c * b * b + i * b + j``: pixel_shuffle)."""
    b = int(node.attrs["blocksize"])
    if node.attrs.get("mode", "DCR") == "CRD":
        return F.pixel_shuffle(x[0], b)
    n, c, h, w = x[0].shape
    y = x[0].reshape(n, b, b, c // (b * b), h, w).permute(0, 3, 4, 1, 5, 2)
    return y.reshape(n, c // (b * b), h * b, w * b)


@_op("SpaceToDepth")
def space_to_depth(node: Node, x: Sequence[torch.Tensor | None], graph: Graph) -> torch.Tensor:
    """Pixel ``(i, j)`` of each block to channel ``(i * b + j) * C + c`` (not pixel_unshuffle's order)."""
    b = int(node.attrs["blocksize"])
    n, c, h, w = x[0].shape
    y = x[0].reshape(n, c, h // b, b, w // b, b).permute(0, 3, 5, 1, 2, 4)
    return y.reshape(n, c * b * b, h // b, w // b)


@_op("Reshape", "Flatten", "Squeeze", "Unsqueeze")
def reshape(node: Node, x: Sequence[torch.Tensor | None], graph: Graph) -> torch.Tensor:
    # The batch dimension is the only one allowed to differ from the exported shapes.
    return x[0].reshape(_free_batch(graph, node.outputs[0]))


@_op("Transpose")
def transpose(node: Node, x: Sequence[torch.Tensor | None], graph: Graph) -> torch.Tensor:
    perm = node.attrs.get("perm", list(reversed(range(x[0].ndim))))
    return x[0].permute(*[int(p) for p in perm])


@_op("Pad")
def pad(node: Node, x: Sequence[torch.Tensor | None], graph: Graph) -> torch.Tensor:
    if node.attrs.get("mode", "constant") != "constant" or static_input(node, graph, 3) is not None:
        raise UnsupportedOpError("Pad", node.name, "QuantSim supports constant padding over all axes only")
    value = static_input(node, graph, 2)
    return F.pad(x[0], _torch_pad(static_input(node, graph, 1).tolist()),
                 value=0.0 if value is None else float(value.reshape(())))


@_op("Concat")
def concat(node: Node, x: Sequence[torch.Tensor | None], graph: Graph) -> torch.Tensor:
    return torch.cat(list(x), dim=int(node.attrs["axis"]))


@_op("Slice")
def slice_(node: Node, x: Sequence[torch.Tensor | None], graph: Graph) -> torch.Tensor:
    starts, ends = static_input(node, graph, 1), static_input(node, graph, 2)
    axes = static_input(node, graph, 3)
    steps = static_input(node, graph, 4)
    axes = range(len(starts)) if axes is None else axes
    steps = [1] * len(starts) if steps is None else steps
    index: list[slice] = [slice(None)] * x[0].ndim
    for start, end, axis, step in zip(starts, ends, axes, steps):
        if int(step) <= 0:
            raise UnsupportedOpError("Slice", node.name, "QuantSim supports positive steps only")
        size = x[0].shape[int(axis)]
        index[int(axis)] = slice(int(np.clip(start, -size, size)), int(np.clip(end, -size - 1, size)), int(step))
    return x[0][tuple(index)]


ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "Relu": torch.relu,
    "Relu6": lambda t: torch.clamp(t, 0.0, 6.0),
}


@_op("Identity")
def identity(node: Node, x: Sequence[torch.Tensor | None], graph: Graph) -> torch.Tensor:
    # apply_precision's requantizing node (int8 <-> int16): the caller quantizes to its encoding.
    return x[0]


@_op("ConvTranspose")
def conv_transpose(node: Node, x: Sequence[torch.Tensor | None], graph: Graph) -> torch.Tensor:
    """The full transposed convolution (no padding), cropped at ONNX's leading pads to the graph's output
    size (zero-extended where ``output_padding`` reaches past it), then the bias."""
    data, w, b = x[0], x[1], x[2] if len(x) > 2 else None
    if w is None or w.ndim != 4:
        raise UnsupportedOpError("ConvTranspose", node.name, "QuantSim supports 2-D transposed convolutions only")
    strides = tuple(int(s) for s in node.attrs.get("strides", (1, 1)))
    kernel = tuple(int(k) for k in w.shape[2:])
    out_hw = graph.shape(node.outputs[0])[2:]
    begins = begin_pads(node, tuple(data.shape[2:]), out_hw, kernel, strides,
                         tuple(node.attrs.get("output_padding", (0, 0))))
    full = F.conv_transpose2d(data, w, None, stride=strides, groups=int(node.attrs.get("group", 1)),
                              dilation=tuple(node.attrs.get("dilations", (1, 1))))
    extra = [max(0, begins[i] + out_hw[i] - full.shape[2 + i]) for i in range(2)]
    if any(extra):
        full = F.pad(full, [0, extra[1], 0, extra[0]])
    y = full[:, :, begins[0]:begins[0] + out_hw[0], begins[1]:begins[1] + out_hw[1]]
    return y if b is None else y + b.reshape(1, -1, 1, 1)


@_op("Split")
def split(node: Node, x: Sequence[torch.Tensor | None], graph: Graph) -> tuple[torch.Tensor, ...]:
    axis = int(node.attrs.get("axis", 0)) % x[0].ndim
    return tuple(torch.split(x[0], [graph.shape(o)[axis] for o in node.outputs], dim=axis))


@_op("Resize")
def resize(node: Node, x: Sequence[torch.Tensor | None], graph: Graph) -> torch.Tensor:
    """ONNX Resize of H and W (nearest or linear), by gathering the source rows and columns ONNX's
    coordinate transformation picks (the lowering checks TFLite picks the same ones)."""
    data = x[0]
    out_hw = graph.shape(node.outputs[0])[2:]
    scales = static_input(node, graph, 2)
    mode, coord = node.attrs.get("mode", "nearest"), node.attrs.get("coordinate_transformation_mode", "half_pixel")
    for axis, out in zip((2, 3), out_hw):
        size = data.shape[axis]
        scale = float(scales[axis]) if scales is not None and scales.size == data.ndim else out / size
        if mode == "nearest":
            index = onnx_nearest_indices(coord, node.attrs.get("nearest_mode", "round_prefer_floor"), out, size, scale)
            data = data.index_select(axis, torch.from_numpy(index).to(data.device))
            continue
        pos = np.clip(onnx_source_coordinate(coord, out, size, scale), 0, size - 1)
        lo = np.floor(pos).astype(np.int64)
        hi = np.minimum(lo + 1, size - 1)
        shape = [1] * data.ndim
        shape[axis] = -1
        frac = torch.from_numpy((pos - lo).astype(np.float32)).to(data.device).reshape(shape)
        a = data.index_select(axis, torch.from_numpy(lo).to(data.device))
        b = data.index_select(axis, torch.from_numpy(hi).to(data.device))
        data = a + (b - a) * frac
    return data


@_op("Gelu")
def gelu(node: Node, x: Sequence[torch.Tensor | None], graph: Graph) -> torch.Tensor:
    return F.gelu(x[0], approximate=node.attrs.get("approximate", "none"))


@_op("LayerNormalization")
def layer_normalization(node: Node, x: Sequence[torch.Tensor | None], graph: Graph) -> torch.Tensor:
    axis = int(node.attrs.get("axis", -1)) % x[0].ndim
    return F.layer_norm(x[0], tuple(x[0].shape[axis:]), x[1], x[2] if len(x) > 2 else None,
                        eps=float(node.attrs.get("epsilon", 1e-5)))
