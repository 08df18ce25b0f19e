"""The integer results of ops whose int8 kernels round unlike one float rounding, for QuantSim.

QuantSim's fake quantizer rounds ``x / scale`` half away from zero and adds the zero point. Two kernel
families round the *raw* int8 values instead (zero point included), so at ties (frequent: an average
of 64 values is a tie once in 64) they disagree by a step, and the step then travels down the network:

* AVERAGE_POOL_2D (AveragePool, GlobalAveragePool, ReduceMean over H and W): ``(acc ± n/2) / n`` on the
  raw sum ``acc``, C division (TFLite ``reference_ops::AveragePool``, runtimes/reference/pooling.py,
  whose one kernel rounds int16 sums the same way);
* int8 RESIZE_BILINEAR: Q10 source positions and weights, ``(acc + 2^19) >> 20`` (single rounding) or
  half away from zero (double), on raw values (runtimes/reference/resize.py).

Each function here takes the op's float input (on its quantization grid, as the fake quantizer left
it) and returns the kernel's exact output, dequantized. QuantSim uses it as the forward value and
keeps the float op's gradient (``exact + (y - y.detach())``: a straight-through estimator).
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from edgeopt.errors import UnsupportedOpError
from edgeopt.ir import Graph, Node, QParams
from edgeopt.runtimes.reference.resize import bilinear_interpolation_values

IntegerOp = Callable[[Node, torch.Tensor, QParams, Graph, str], "torch.Tensor | None"]
INTEGER_OPS: dict[str, IntegerOp] = {}


def _op(*names: str) -> Callable[[IntegerOp], IntegerOp]:
    def register(fn: IntegerOp) -> IntegerOp:
        for name in names:
            INTEGER_OPS[name] = fn
        return fn
    return register


def _raw(x: torch.Tensor, q: QParams) -> torch.Tensor:
    """The int8 values (zero point included) of ``x``, which lies on ``q``'s grid, as float64."""
    return torch.round(x.detach().double() / float(q.scale[0])) + float(q.zero_point[0])


def _dequantize(raw: torch.Tensor, q: QParams, like: torch.Tensor) -> torch.Tensor:
    raw = raw.clamp(q.qmin, q.qmax)
    return ((raw - float(q.zero_point[0])) * float(q.scale[0])).to(like.dtype)


def _div_half_away(acc: torch.Tensor, n: torch.Tensor | int) -> torch.Tensor:
    """``(acc ± n/2) / n`` with C division: integer ``acc / n`` rounded half away from zero."""
    half = torch.div(torch.as_tensor(n, dtype=acc.dtype), 2, rounding_mode="floor")
    return torch.sign(acc) * torch.div(acc.abs() + half, n, rounding_mode="floor")


@_op("AveragePool", "GlobalAveragePool", "ReduceMean")
def average_pool(node: Node, x: torch.Tensor, q: QParams, graph: Graph, rounding: str) -> torch.Tensor | None:
    """AVERAGE_POOL_2D on raw int8 values (over the real points of each window: TFLite's SAME padding,
    which the lowering emits for ``count_include_pad=0``); None where the op lowers otherwise (a ReduceMean over other axes is a MEAN, which rescales like the float op)."""
    if node.op == "ReduceMean":
        axes = node.attrs.get("axes")
        if axes is None and len(node.inputs) > 1 and node.inputs[1]:
            axes = graph.initializers[node.inputs[1]].tolist()
        if x.ndim != 4 or sorted(int(a) % 4 for a in (axes or [])) != [2, 3]:
            return None
    raw, count = _raw(x, q), None
    if node.op == "AveragePool":
        kernel = tuple(int(k) for k in node.attrs["kernel_shape"])
        strides = tuple(int(s) for s in node.attrs.get("strides", (1, 1)))  # ONNX: 1 when absent
        top, left, bottom, right = (int(p) for p in node.attrs.get("pads", [0, 0, 0, 0]))
        if node.attrs.get("auto_pad", "NOTSET") == "SAME_UPPER":
            raise UnsupportedOpError(node.op, node.name, "QuantSim supports explicit pads only (not auto_pad)")
        if top or left or bottom or right:  # TFLite's SAME: the real points of each window only
            ones = F.pad(torch.ones_like(raw[:1, :1]), [left, right, top, bottom])
            count = F.avg_pool2d(ones, kernel, strides, divisor_override=1)
            raw = F.pad(raw, [left, right, top, bottom])
    else:
        kernel = strides = tuple(x.shape[2:])
    acc = F.avg_pool2d(raw, kernel, strides, divisor_override=1)
    y = _dequantize(_div_half_away(acc, kernel[0] * kernel[1] if count is None else count), q, x)
    return y.reshape((-1,) + tuple(graph.shape(node.outputs[0])[1:]))


@_op("Resize")
def resize_bilinear(node: Node, x: torch.Tensor, q: QParams, graph: Graph, rounding: str) -> torch.Tensor | None:
    """int8 RESIZE_BILINEAR with Q10 weights; None for nearest resizing (it only copies values)."""
    if node.attrs.get("mode", "nearest") != "linear":
        return None
    coord = node.attrs.get("coordinate_transformation_mode", "half_pixel")
    align, half = coord == "align_corners", coord in ("half_pixel", "pytorch_half_pixel")
    raw = _raw(x, q)
    weights = []
    for axis, out in zip((2, 3), graph.shape(node.outputs[0])[2:]):
        pos, lo, hi = bilinear_interpolation_values(out, x.shape[axis], align, half)
        shape = [1, 1, 1, 1]
        shape[axis] = -1
        d = torch.from_numpy((pos - (lo << 10)).astype(np.float64)).reshape(shape)
        weights.append((torch.from_numpy(lo), torch.from_numpy(hi), d))
    (y0, y1, dy), (x0, x1, dx) = weights
    one = 1024.0
    top, bottom = raw.index_select(2, y0), raw.index_select(2, y1)
    acc = (top.index_select(3, x0) * (one - dy) * (one - dx) + bottom.index_select(3, x0) * dy * (one - dx)
           + top.index_select(3, x1) * (one - dy) * dx + bottom.index_select(3, x1) * dy * dx)
    if rounding == "single":
        out = torch.floor((acc + 2.0 ** 19) / 2.0 ** 20)
    else:
        out = _div_half_away(acc, 2 ** 20)
    return _dequantize(out, q, x)
