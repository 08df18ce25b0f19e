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
  lowering stores them (``QParams.quantize``), and the convolution/matmul of those integers in float32
  or float64, exact while every partial sum stays below 2^24 or 2^53 (``depth · max|w·x|``; asserted);
* the kernel's parameters come from the executor's own Prepare (``PREPARERS``/``prepare_int16``) run on
  a one-op program holding the current encodings, and its own requantization functions turn the
  accumulator (or, for ADD/SUB/MUL, the raw operands) into the output integers, clamped to the fused
  activation's range.

QuantSim returns ``(q - zp) · s_out`` forward and keeps the fake-quantized float path's gradient
(``exact + (soft - soft.detach())``), so QAT and learned ranges train as before.

A Conv's parameters are prepared as CONV_2D's even where it lowers to DEPTHWISE_CONV_2D: both
Prepares compute the same per-channel multipliers, offsets and activation range, and both kernels the
same accumulator and requantization (``conv.conv_per_channel``, ``depthwise_conv``).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from edgeopt.errors import InternalError
from edgeopt.ir import Graph, Node, QParams
from edgeopt.pipeline.lower.ops import ACTIVATIONS as FUSED_ACTIVATIONS
from edgeopt.pipeline.quantize.encodings import bias_qparams
from edgeopt.qprogram import FullyConnectedRequantization, QOp, QProgram, QTensor, Rounding
from edgeopt.quantsim_ops import TORCH_OPS
from edgeopt.runtimes.reference.add import add_func
from edgeopt.runtimes.reference.conv_16x8 import MAX_PRODUCT_16X8, _requantize_16, requantize_fully_connected_16x8
from edgeopt.runtimes.reference.elementwise import binary_lookup, mul_func
from edgeopt.runtimes.reference.elementwise_16x8 import add_16x8
from edgeopt.runtimes.reference.fixedpoint import MAX_PRODUCT, int32_accumulator, requantize
from edgeopt.runtimes.reference.fully_connected import requantize_fully_connected
from edgeopt.runtimes.reference.int16_registry import prepare_int16
from edgeopt.runtimes.reference.prepare import PREPARERS

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
    ("CONV_2D", True): lambda acc, p, r: _requantize_16(acc, p, p["output_multiplier"], p["output_shift"]),
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
    return prepare_int16(op, program) if int16 else PREPARERS.get(kind)(op, program)


def _runs_in_int16(*encodings: QParams) -> bool:
    """Whether an op with these activation encodings runs TFLite's 16x8 kernel (``runs_in_int16``)."""
    return any(q.dtype == "int16" for q in encodings)


def _centred(x: torch.Tensor, q: QParams) -> torch.Tensor:
    """``q - zp`` of a tensor on ``q``'s grid (float64 integers)."""
    return torch.round(x.detach().cpu().double() / float(q.scale[0]))


def _dequantized(q: np.ndarray, out_q: QParams, like: torch.Tensor) -> torch.Tensor:
    """``(q - zp) · s`` in float32, the product ``fake_quant`` forms (exact integer times the scale)."""
    centred = torch.from_numpy(q.astype(np.int64) - int(out_q.zero_point[0])).to(like.dtype)
    return (centred * torch.tensor(float(out_q.scale[0]), dtype=like.dtype)).to(like.device)


def weighted_output(node: Node, graph: Graph, x: torch.Tensor, x_q: QParams, w: np.ndarray, w_q: QParams,
                    b: np.ndarray | None, out_q: QParams, rounding: Rounding) -> torch.Tensor | None:
    """The CONV_2D/DEPTHWISE_CONV_2D/TRANSPOSE_CONV/FULLY_CONNECTED output of a Conv, ConvTranspose,
    Gemm or MatMul with constant weights, dequantized.

    Args:
        node: the node (its attributes: padding, strides, groups, fused activation).
        graph: the graph (static shapes).
        x: the input, on ``x_q``'s grid.
        x_q, w_q, out_q: the input, weight and output encodings; the bias takes ``bias_qparams(x_q, w_q)``.
        w, b: the float weight and bias (None: none), quantized here as the lowering quantizes them.
        rounding: the program's requantization rounding.

    Returns:
        The exact output; None where the executor has no such 16x8 kernel (TRANSPOSE_CONV).

    Raises:
        InternalError: an accumulator could exceed float64's exact integers.
    """
    kind = WEIGHTED_KINDS[node.op]
    int16 = _runs_in_int16(x_q, out_q)
    if (kind, int16) not in WEIGHTED_TAILS:
        return None
    w_int = w_q.quantize(w)
    b_q = bias_qparams(x_q, w_q)
    # TFLite's weight layout: OHWI from ONNX's (Co, Ci/groups, KH, KW) or ConvTranspose's (Ci, Co, KH, KW);
    # (Co, K) from Gemm's (Co, K) with transB, else (K, Co) as MatMul's.
    transposed = node.op == "MatMul" or (node.op == "Gemm" and not node.attrs.get("transB", 0))
    w_shape = {"CONV_2D": (0, 2, 3, 1), "TRANSPOSE_CONV": (1, 2, 3, 0)}.get(kind, (1, 0) if transposed else (0, 1))
    w_shape = tuple(w_int.shape[i] for i in w_shape)
    co = w_shape[0]
    b_int = np.zeros(co, np.int64) if b is None else np.broadcast_to(b_q.quantize(b).astype(np.int64), (co,))
    # Every product |w · (x - zp)| is at most MAX_PRODUCT (16x8: MAX_PRODUCT_16X8) and an output sums at
    # most depth of them: every partial sum is an integer below this bound, in whatever order the conv
    # or matmul adds (FMA included), hence exact in float32 below 2^24 and in float64 below 2^53 (the
    # argument of conv.conv_per_channel; the computation runs on the CPU, never in TF32 or Winograd).
    products = int(np.prod(w_shape[1:])) * (MAX_PRODUCT_16X8 if int16 else MAX_PRODUCT)
    bound = products + int(np.abs(b_int).max(initial=0))
    if bound >= EXACTNESS_LIMIT:
        raise InternalError(f"QuantSim: accumulators of '{node.name}' may reach {bound}, beyond float64's exact integers")
    dtype = torch.float32 if products < 1 << 24 else torch.float64
    xc, weight = _centred(x, x_q).to(dtype), torch.from_numpy(w_int).to(dtype)
    options: dict[str, Any] = {}
    if kind == "FULLY_CONNECTED":
        acc = xc @ (weight if transposed else weight.T)
    else:
        acc = TORCH_OPS[node.op](node, [xc, weight], graph)
        options = {"padding": "SAME", "stride_h": 1, "stride_w": 1}  # window params are not used here
    channels_last = (0, 2, 3, 1) if acc.ndim == 4 else tuple(range(acc.ndim))
    acc_int = acc.permute(*channels_last).numpy().astype(np.int64)
    acc_int += b_int
    if not int16:
        acc_int = int32_accumulator(acc_int, bound)  # the C++ int32 accumulator (wraps modulo 2^32)
    inputs = [(tuple(xc.shape[i] for i in channels_last), x_q), (w_shape, w_q), ((co,), b_q)]
    if kind == "TRANSPOSE_CONV":
        inputs = [((4,), None), inputs[1], inputs[0], inputs[2]]
    params = _prepared(node, kind, inputs, (acc_int.shape, out_q), rounding, int16, options)
    q = WEIGHTED_TAILS[kind, int16](acc_int, params, rounding)
    return _dequantized(q.transpose(np.argsort(channels_last)), out_q, x)


def binary_output(node: Node, operands: Sequence[tuple[torch.Tensor, QParams]], out_q: QParams,
                  rounding: Rounding) -> torch.Tensor | None:
    """The ADD/SUB/MUL output of an Add, Sub or Mul on operands lying on their grids, dequantized;
    None where the executor has no such kernel (SUB/MUL in 16x8 mode: the program cannot hold them)."""
    kind = BINARY_KINDS[node.op]
    int16 = _runs_in_int16(*(q for _, q in operands), out_q)
    if (kind, int16) not in BINARY_TAILS:
        return None
    raws = [(_centred(v, q) + int(q.zero_point[0])).numpy().astype(q.dtype) for v, q in operands]
    params = _prepared(node, kind, [(r.shape, q) for r, (_, q) in zip(raws, operands)],
                       (np.broadcast_shapes(*(r.shape for r in raws)), out_q), rounding, int16, {})
    return _dequantized(BINARY_TAILS[kind, int16](raws[0], raws[1], params, rounding), out_q, operands[0][0])
