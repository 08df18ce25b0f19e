"""The integer program's requantized outputs, computed exactly, for QuantSim's forward pass.

A fake quantizer rounds the float output ``y / s_out`` once, in float. The kernels instead rescale an
integer accumulator with TFLite's fixed-point arithmetic: CONV_2D/DEPTHWISE_CONV_2D with a 31-bit
multiplier and, in LiteRT's BUILTIN_REF ("double" rounding), two roundings; FULLY_CONNECTED with a
double-precision scale (LiteRT 2.3); ADD/SUB through 20 bits of headroom and three rescalings; MUL with
one multiplier; the 16x8 kernels with 16-bit multipliers. Near a rounding boundary the two disagree by
a step, and the step travels down the network. This module gives the kernel's exact result instead:

* the accumulator is recovered exactly from QuantSim's tensors, which lie on their quantization grids:
  the input's centred integers ``x / s_in`` (``q - zp``; a float32 value on a grid of at most 2^16
  steps is within 2^-8 of its integer, so rounding recovers it), the weights and bias quantized as the
  lowering stores them (``QParams.quantize``), and the convolution/matmul of those integers, bias
  included, in float32 or float64, exact while every partial sum stays below 2^24 or 2^53 (bounded by
  ``Σ|w_c| · max|x - zp| + |b_c|`` for output channel c; asserted);
* the kernel's parameters come from the executor's own Prepare (``PREPARERS``) run on
  a one-op program holding the current encodings, and its own requantization functions turn the
  accumulator (or, for ADD/SUB/MUL, the raw operands) into the output integers, clamped to the fused
  activation's range.

QuantSim returns ``(q - zp) · s_out`` forward and keeps the fake-quantized float path's gradient
(``exact + (soft - soft.detach())``), so QAT and learned ranges train as before. A weighted node's
constants (integer weights, bias, Prepare) form a ``WeightedKernel``, which QuantSim keeps while the
encodings and weights it was built from stay the same. The accumulators are requantized block by block
(``BLOCK`` elements), so that the requantization's passes run in the CPU's cache, and each output comes
with its integers (``Exact.centred``), which the next kernel reads instead of recovering them.

A Conv's parameters are prepared as CONV_2D's even where it lowers to DEPTHWISE_CONV_2D: both
Prepares compute the same per-channel multipliers, offsets and activation range, and both kernels the
same accumulator and requantization (``conv.conv_per_channel``, ``depthwise_conv``).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from edgeopt.errors import InternalError
from edgeopt.ir import Graph, Node, QParams, weight_out_axis
from edgeopt.pipeline.lower.ops import ACTIVATIONS as FUSED_ACTIVATIONS
from edgeopt.pipeline.quantize.encodings import bias_qparams
from edgeopt.qprogram import FullyConnectedRequantization, QOp, QProgram, QTensor, Rounding
from edgeopt.torch.ops import TORCH_OPS
from edgeopt.runtimes.reference.add import add_16x8, add_func, binary_lookup
from edgeopt.runtimes.reference.arith.fixedpoint import int32_accumulator, requantize, requantize_16
from edgeopt.runtimes.reference.fully_connected import requantize_fully_connected, requantize_fully_connected_16x8
# Elements requantized at a time: the executor's block size, whose int64 passes stay in the CPU's cache.
from edgeopt.runtimes.reference.arith.im2col import BLOCK_ELEMENTS as BLOCK
from edgeopt.runtimes.reference.registry import PREPARERS
from edgeopt.runtimes.reference.sub_mul import mul_func

# How ``lower`` emits FULLY_CONNECTED: QProgram's default, LiteRT 2.3's double-precision scale.
FULLY_CONNECTED_REQUANTIZATION: FullyConnectedRequantization = "double_precision"
WEIGHTED_KINDS = {"Conv": "CONV_2D", "ConvTranspose": "TRANSPOSE_CONV", "Gemm": "FULLY_CONNECTED",
                  "MatMul": "FULLY_CONNECTED"}
BINARY_KINDS = {"Add": "ADD", "Sub": "SUB", "Mul": "MUL"}
REQUANTIZED_OPS = frozenset(WEIGHTED_KINDS) | frozenset(BINARY_KINDS)
EXACTNESS_LIMIT = 1 << 53  # integers below this are exact in float64, sums of them too

Params = Mapping[str, Any]


def _requantize_conv(acc: np.ndarray, p: Params, rounding: Rounding) -> np.ndarray:
    return requantize(acc, p["output_multiplier"], p["output_shift"], p["output_offset"], p["activation_min"],
                      p["activation_max"], rounding)


# Accumulators (int64, output channels last) → output integers, per (kind, 16x8 mode).
WEIGHTED_TAILS: dict[tuple[str, bool], Callable[[np.ndarray, Params, Rounding], np.ndarray]] = {
    ("CONV_2D", False): _requantize_conv,
    ("TRANSPOSE_CONV", False): _requantize_conv,
    ("FULLY_CONNECTED", False): requantize_fully_connected,
    ("CONV_2D", True): lambda acc, p, r: requantize_16(acc, p["output_multiplier"], p["output_shift"],
                                                       p["activation_min"], p["activation_max"]),
    ("FULLY_CONNECTED", True): lambda acc, p, r: requantize_fully_connected_16x8(acc, p),
}
# Raw operands (broadcast like numpy) → output integers, per (kind, 16x8 mode); SUB is ADD with the
# second input's multiplier negated by its Prepare.
BINARY_TAILS: dict[tuple[str, bool], Callable[[np.ndarray, np.ndarray, Params, Rounding], np.ndarray]] = {
    ("ADD", False): lambda a, b, p, r: binary_lookup(add_func, a, b, p, r),
    ("SUB", False): lambda a, b, p, r: binary_lookup(add_func, a, b, p, r),
    ("MUL", False): lambda a, b, p, r: binary_lookup(mul_func, a, b, p, r),
    ("ADD", True): add_16x8,
}


def _prepared(node: Node, kind: str, inputs: Sequence[tuple[tuple[int, ...], QParams | None]],
              output: tuple[tuple[int, ...], QParams], rounding: Rounding, int16: bool,
              options: Mapping[str, Any]) -> Params:
    """The executor's Prepare (``int16``: its 16x8 Prepare) of a one-op program of ``kind`` on tensors of
    these shapes and encodings (an input without encoding is an int32 shape operand)."""
    names = [f"t{i}" for i in range(len(inputs) + 1)]
    tensors = {n: QTensor(n, shape, "int32" if q is None else q.dtype, q)
               for n, (shape, q) in zip(names, (*inputs, output))}
    op = QOp(kind, tuple(names[:-1]), (names[-1],),
             {**options, "fused_activation_function": FUSED_ACTIVATIONS[node.attrs.get("fused_activation")]},
             source=node.name)
    program = QProgram(node.name, tensors, (op,), (), (), rounding=rounding,
                       fully_connected_requantization=FULLY_CONNECTED_REQUANTIZATION)
    return PREPARERS.get(kind, "16x8" if int16 else "int8")(op, program)


def _runs_in_int16(*encodings: QParams) -> bool:
    """Whether an op with these activation encodings runs TFLite's 16x8 kernel (``qprogram.op_mode``)."""
    return any(q.dtype == "int16" for q in encodings)


def _centred(x: torch.Tensor, q: QParams, memory_format: torch.memory_format = torch.preserve_format
             ) -> torch.Tensor:
    """``q - zp`` of a tensor on ``q``'s grid, as float32 integers (in ``memory_format``).

    ``x`` holds float32 products ``k · s`` (``fake_quant``, ``_dequantized``), each within a relative
    2^-24 of the real one, and ``x / s`` adds another such rounding: the quotient is within ``|k| · 2^-23
    <= 2^-7`` of ``k`` (``|k| < 2^16``, int16 included), so rounding it gives ``k`` exactly."""
    x = x.detach().cpu()
    out = torch.empty_like(x, memory_format=memory_format)
    return torch.div(x, float(q.scale[0]), out=out).round_()


@dataclass(frozen=True)
class Exact:
    """A kernel's exact output: ``value``, dequantized (as QuantSim's tensors hold it), and ``centred``,
    its integers ``q - zp`` as float32 (same shape and memory layout), which a next kernel may take
    instead of recovering them from ``value`` (``_centred``)."""

    value: torch.Tensor
    centred: torch.Tensor


def _dequantize_into(q: np.ndarray, out_q: QParams, centred: np.ndarray, value: np.ndarray) -> None:
    """``q - zp`` into ``centred`` (float32: exact, ``|q - zp| < 2^17``) and ``(q - zp) · s`` into
    ``value``: the exact integer times the scale, rounded once, the product ``fake_quant`` forms."""
    np.subtract(q, int(out_q.zero_point[0]), out=centred, dtype=centred.dtype)
    np.multiply(centred, value.dtype.type(out_q.scale[0]), out=value, dtype=value.dtype)


def _empty(shape: tuple[int, ...], dtype: torch.dtype) -> np.ndarray:
    """A new array allocated by torch, whose memory regular pages back: numpy asks large arrays for
    transparent huge pages, whose first touch may stall on memory compaction for milliseconds."""
    return torch.empty(shape, dtype=dtype).numpy()


def _dequantized(q: np.ndarray, out_q: QParams, like: torch.Tensor) -> Exact:
    """The output integers ``q`` as an ``Exact`` in ``like``'s dtype and device."""
    centred, value = _empty(q.shape, torch.float32), _empty(q.shape, like.dtype)
    _dequantize_into(q, out_q, centred, value)
    return Exact(torch.from_numpy(value).to(like.device), torch.from_numpy(centred))


@dataclass(eq=False)
class WeightedKernel:
    """What a weighted node's integer kernel derives from its encodings and float weights: the integer
    weights and bias, the bound on its accumulators and the executor's Prepare. Built by
    ``weighted_kernel``; ``holds`` tells whether it still stands for the given encodings and weights
    (QAT changes both), so a caller may keep it from one batch to the next."""

    kind: str
    int16: bool
    rounding: Rounding
    encodings: tuple[QParams, QParams, QParams]  # input, weight, output
    w: np.ndarray  # copies of the float weight and bias it was derived from
    b: np.ndarray | None
    weight: torch.Tensor  # integer weights as exact floats, (Co, K) for FULLY_CONNECTED
    float_bias: torch.Tensor | None  # the integer bias, where the float sums hold it exactly
    int_bias: np.ndarray | None  # else the integer bias (accumulator dtype), added to the integer sums
    bound: int  # >= |every accumulator|, bias included
    accumulator: type  # np.int32 (int8 kernels: C++'s int32 accumulator) or np.int64
    params: Params

    def holds(self, x_q: QParams, w: np.ndarray, w_q: QParams, b: np.ndarray | None, out_q: QParams,
              rounding: Rounding) -> bool:
        """Whether this kernel is the one ``weighted_kernel`` would build from these arguments."""
        same_b = b is None if self.b is None else b is not None and np.array_equal(self.b, b)
        return (rounding == self.rounding and same_b and np.array_equal(self.w, w)
                and all(a.same_as(e) for a, e in zip((x_q, w_q, out_q), self.encodings)))


def _weight_layout(node: Node, kind: str) -> tuple[int, ...]:
    """TFLite's weight layout as a permutation of the ONNX weight's axes: OHWI from ONNX's (Co, Ci/groups,
    KH, KW) or ConvTranspose's (Ci, Co, KH, KW); (Co, K) from Gemm's (Co, K) with transB, else (K, Co)
    as MatMul's."""
    fully_connected = (1, 0) if weight_out_axis(node) else (0, 1)
    return {"CONV_2D": (0, 2, 3, 1), "TRANSPOSE_CONV": (1, 2, 3, 0)}.get(kind, fully_connected)


def _channels_last(ndim: int) -> tuple[int, ...]:
    return (0, 2, 3, 1) if ndim == 4 else tuple(range(ndim))


def _layout_shape(graph: Graph, tensor: str) -> tuple[int, ...]:
    """The program's shape (NHWC for 4-D) of an activation, batch 1 (Prepare reads only its channels)."""
    shape = (1,) + tuple(graph.shape(tensor)[1:])
    return tuple(shape[i] for i in _channels_last(len(shape)))


def weighted_kernel(node: Node, graph: Graph, x_q: QParams, w: np.ndarray, w_q: QParams, b: np.ndarray | None,
                    out_q: QParams, rounding: Rounding) -> WeightedKernel | None:
    """The CONV_2D/DEPTHWISE_CONV_2D/TRANSPOSE_CONV/FULLY_CONNECTED kernel of a Conv, ConvTranspose, Gemm
    or MatMul with constant weights, for ``weighted_output``.

    Args:
        node: the node (its attributes: padding, strides, groups, fused activation).
        graph: the graph (static shapes).
        x_q, w_q, out_q: the input, weight and output encodings; the bias takes ``bias_qparams(x_q, w_q)``.
        w, b: the float weight and bias (None: none), quantized here as the lowering quantizes them.
        rounding: the program's requantization rounding.

    Returns:
        The kernel; None where the executor has no such 16x8 kernel (TRANSPOSE_CONV).

    Raises:
        InternalError: an accumulator could exceed float64's exact integers.
    """
    kind = WEIGHTED_KINDS[node.op]
    int16 = _runs_in_int16(x_q, out_q)
    if (kind, int16) not in WEIGHTED_TAILS:
        return None
    w_int = w_q.quantize(w)
    b_q = bias_qparams(x_q, w_q)
    layout = _weight_layout(node, kind)
    w_shape = tuple(w_int.shape[i] for i in layout)
    co = w_shape[0]
    b_int = np.zeros(co, np.int64) if b is None else np.broadcast_to(b_q.quantize(b).astype(np.int64), (co,))
    # An output of channel c sums at most one product w · (x - zp) per weight of c, each at most
    # |w| · x_range: every partial sum of the products is an integer of magnitude at most products[c],
    # in whatever order the conv or matmul adds (FMA included), hence exact in float32 below 2^24 and
    # in float64 below 2^53 (the computation runs on the CPU, never in TF32 or Winograd); the bias too
    # where products + |bias| stays below that (else it is added to the integers).
    x_range = max(abs(x_q.qmin - int(x_q.zero_point[0])), abs(x_q.qmax - int(x_q.zero_point[0])))
    products = np.abs(w_int.astype(np.int64)).transpose(layout).reshape(co, -1).sum(axis=1) * x_range
    largest = int(products.max(initial=0))
    if largest >= EXACTNESS_LIMIT:
        raise InternalError(f"QuantSim: accumulators of '{node.name}' may reach {largest}, "
                            "beyond float64's exact integers")
    dtype, limit = (torch.float32, 1 << 24) if largest < 1 << 24 else (torch.float64, EXACTNESS_LIMIT)
    bound = int((products + np.abs(b_int)).max(initial=0))
    folds = bound < limit and (int16 or bound < 1 << 31)  # int8: the sums must convert to int32 (below)
    float_bias = torch.from_numpy(b_int.astype(np.float64)).to(dtype) if folds else None
    weight = torch.from_numpy(w_int).to(dtype)
    if kind == "FULLY_CONNECTED":
        weight = weight.permute(*layout).contiguous()
        options: dict[str, Any] = {}
    else:
        options = {"padding": "SAME", "stride_h": 1, "stride_w": 1}  # window params are not used here
    inputs = [(_layout_shape(graph, node.inputs[0]), x_q), (w_shape, w_q), ((co,), b_q)]
    if kind == "TRANSPOSE_CONV":
        inputs = [((4,), None), inputs[1], inputs[0], inputs[2]]
    params = _prepared(node, kind, inputs, (_layout_shape(graph, node.outputs[0]), out_q), rounding, int16, options)
    # The float sums convert exactly to int32 where they fit: then the int8 kernel's int32 accumulator
    # is numpy's int32 (whose additions wrap as the C++ ones do); int64 otherwise (and for 16x8).
    accumulator = np.int32 if not int16 and largest < 1 << 31 else np.int64
    int_bias = None if float_bias is not None else b_int.astype(accumulator)
    return WeightedKernel(kind, int16, rounding, (x_q, w_q, out_q), np.array(w, copy=True),
                          None if b is None else np.array(b, copy=True), weight, float_bias, int_bias, bound,
                          accumulator, params)


def _requantize_rows(kernel: WeightedKernel, rows: np.ndarray, centred: np.ndarray, value: np.ndarray) -> None:
    """The kernel's output integers for the accumulator sums ``rows`` (floats, output channels last),
    written to ``centred`` and ``value`` as ``_dequantize_into`` writes them.

    Block by block (``BLOCK`` elements), so that the tail's dozen passes run in the CPU's cache, in as
    many parts as torch has threads, of 4 blocks or more each (numpy releases the GIL in its loops, so
    the parts run side by side). ``value`` may be ``rows`` itself: each block is read, then written.
    """
    tail = WEIGHTED_TAILS[kernel.kind, kernel.int16]
    out_q = kernel.encodings[2]
    step = max(1, BLOCK // rows.shape[1])

    def run(first: int, stop: int) -> None:
        for start in range(first, stop, step):
            block = slice(start, min(start + step, stop))
            acc = rows[block].astype(kernel.accumulator)  # exact: the floats hold integers
            if kernel.int_bias is not None:
                acc += kernel.int_bias  # in int32, wrapping modulo 2^32 as the C++ int32 accumulator
            if kernel.accumulator == np.int64 and not kernel.int16:
                acc = int32_accumulator(acc, kernel.bound)  # sums beyond int32: wrapped as in C++
            _dequantize_into(tail(acc, kernel.params, kernel.rounding), out_q, centred[block], value[block])

    parts = min(torch.get_num_threads(), len(rows) // (4 * step))
    if parts <= 1:
        run(0, len(rows))
        return
    bounds = [len(rows) * i // parts for i in range(parts + 1)]
    with ThreadPoolExecutor(parts) as pool:
        list(pool.map(run, bounds[:-1], bounds[1:]))


def weighted_output(node: Node, graph: Graph, x: torch.Tensor, kernel: WeightedKernel,
                    centred: torch.Tensor | None = None) -> Exact:
    """The output of ``kernel`` (``weighted_kernel``: the node's kernel) on ``x``, which lies on its
    input encoding's grid (``centred``: its integers ``q - zp``, when the caller has them), in NHWC
    memory (``torch.channels_last``) for a 4-D output."""
    x_q = kernel.encodings[0]
    # NHWC memory: the convolutions run fastest on it, and it puts the output channels last, where the
    # executor's requantization takes them, without a copy (there or on the way back).
    layout = torch.channels_last if x.ndim == 4 else torch.contiguous_format
    xc = _centred(x, x_q, layout) if centred is None else centred.contiguous(memory_format=layout)
    xc = xc.to(kernel.weight.dtype)
    if kernel.kind == "FULLY_CONNECTED":
        acc = xc @ kernel.weight.T
        if kernel.float_bias is not None:
            acc += kernel.float_bias
    else:
        acc = TORCH_OPS[node.op](node, [xc, kernel.weight, kernel.float_bias], graph)
    acc_nhwc = acc.permute(*_channels_last(acc.ndim)).numpy()
    shape, channels = acc_nhwc.shape, acc_nhwc.shape[-1]
    rows = acc_nhwc.reshape(-1, channels)
    centred_out = _empty(shape, torch.float32)
    centred_rows = centred_out.reshape(-1, channels)
    value_rows = rows if acc.dtype == x.dtype else _empty(rows.shape, x.dtype)  # in the sums' memory
    _requantize_rows(kernel, rows, centred_rows, value_rows)
    to_nchw = tuple(int(i) for i in np.argsort(_channels_last(len(shape))))
    value = torch.from_numpy(value_rows.reshape(shape)).permute(*to_nchw)
    return Exact(value.to(x.device), torch.from_numpy(centred_out).permute(*to_nchw))


def binary_output(node: Node, operands: Sequence[tuple[torch.Tensor, QParams, torch.Tensor | None]],
                  out_q: QParams, rounding: Rounding) -> Exact | None:
    """The ADD/SUB/MUL output of an Add, Sub or Mul on operands lying on their grids (each with its
    encoding and, when the caller has them, its integers ``q - zp``); None where the executor has no
    such kernel (SUB/MUL in 16x8 mode: the program cannot hold them)."""
    kind = BINARY_KINDS[node.op]
    int16 = _runs_in_int16(*(q for _, q, _ in operands), out_q)
    if (kind, int16) not in BINARY_TAILS:
        return None
    raws = [((_centred(v, q) if c is None else c) + int(q.zero_point[0])).numpy().astype(q.dtype)
            for v, q, c in operands]
    params = _prepared(node, kind, [(r.shape, q) for r, (_, q, _) in zip(raws, operands)],
                       (np.broadcast_shapes(*(r.shape for r in raws)), out_q), rounding, int16, {})
    return _dequantized(BINARY_TAILS[kind, int16](raws[0], raws[1], params, rounding), out_q, operands[0][0])
