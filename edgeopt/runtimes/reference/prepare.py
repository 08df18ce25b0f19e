"""What TFLite's ``Prepare`` computes for each op, from the tensors' float32 scales and zero points.

``prepare_program`` fills every ``QOp.params`` with the integer parameters the reference kernels read,
through the Prepare registered for the op's kind and mode (``registry.PREPARERS``, filled by the op
family modules: ``conv.prepare_conv``, ``add.prepare_add``, ...). They compute in double precision
exactly as LiteRT does (``kernels/kernel_util.cc``, ``kernels/add.cc``, ``kernels/pooling.cc``,
``kernels/padding.h``); keys are TFLite's ``*Params`` field names, snake_case, and each Prepare's
docstring says what it computes. Ops that move bytes (RESHAPE, TRANSPOSE, STRIDED_SLICE, SPLIT,
SPLIT_V) and float32 ops take none (``OpKind.prepared``).

This module holds what the Prepare functions share: a tensor's quantization, effective scales,
multipliers, the int8 and int16 activation ranges, padding windows and the 16x8 contract.
"""
from __future__ import annotations

import numpy as np

from edgeopt.errors import UnsupportedOpError
from edgeopt.ir import QParams, frozen_array
from edgeopt.qprogram import QOp, QProgram, QTensor, Rounding, op_mode
from edgeopt.runtimes.reference.arith.fixedpoint import INT16_MAX, INT16_MIN, quantize_multiplier
from edgeopt.runtimes.reference.arith.padding import compute_padding_height_width
from edgeopt.runtimes.reference.registry import PREPARERS, Params, kernel_for, needs_params

# The real bounds of each fused activation, as CalculateActivationRangeQuantized reads them.
_ACTIVATION_REAL_BOUNDS = {"NONE": (None, None), "RELU": (0.0, None), "RELU6": (0.0, 6.0),
                           "RELU_N1_TO_1": (-1.0, 1.0)}


def prepare_program(program: QProgram) -> QProgram:
    """A copy of ``program`` whose every op carries the parameters TFLite's Prepare computes.

    Args:
        program: an int8 program; existing ``params`` are recomputed.

    Returns:
        The same program with each ``QOp.params`` filled (empty for ops that take none).

    Raises:
        UnsupportedOpError: an op kind without a kernel in its mode, or quantization TFLite rejects.
    """
    ops = []
    for op in program.ops:
        mode = op_mode(op, program)
        kernel_for(op, mode)  # an op nothing here runs is refused now, by name
        params = PREPARERS.get(op.kind, mode)(op, program) if needs_params(op, mode) else {}
        ops.append(op.with_params(params))
    return program.replace(ops=tuple(ops))


def needs_prepare(program: QProgram) -> bool:
    """True when some op that takes parameters has none yet."""
    return any(not op.params and needs_params(op, op_mode(op, program)) for op in program.ops)


def calculate_activation_range_quantized(
    activation: str, qparams: QParams, op: QOp
) -> tuple[int, int]:
    """TFLite ``CalculateActivationRangeQuantized`` for an int8 output.

    Each real bound ``f`` (0 for RELU; 0 and 6 for RELU6; -1 and 1 for RELU_N1_TO_1) becomes
    ``zp + round(float32(f) / float32(scale))`` (float32 division, half away from zero), clamped
    into ``[-128, 127]``; NONE gives the full int8 range.
    """
    if activation not in _ACTIVATION_REAL_BOUNDS:
        raise UnsupportedOpError(op.kind, op.source, f"fused activation {activation} has no int8 form")
    zp = int(qparams.zero_point[0])
    lo, hi = _ACTIVATION_REAL_BOUNDS[activation]
    act_min = -128 if lo is None else max(-128, zp + _quantized_bound(lo, qparams, op))
    act_max = 127 if hi is None else min(127, zp + _quantized_bound(hi, qparams, op))
    return act_min, act_max


def activation_range_int16(activation: str, qparams: QParams, op: QOp) -> tuple[int, int]:
    """TFLite ``CalculateActivationRangeQuantized`` for an int16 output (zero point 0): each real bound
    ``f`` becomes ``round(float32(f) / float32(scale))`` (half away from zero), clamped to int16."""
    if activation not in _ACTIVATION_REAL_BOUNDS:
        raise UnsupportedOpError(op.kind, op.source, f"fused activation {activation} has no int16 form")
    lo, hi = _ACTIVATION_REAL_BOUNDS[activation]
    return (INT16_MIN if lo is None else max(INT16_MIN, _quantized_bound(lo, qparams, op)),
            INT16_MAX if hi is None else min(INT16_MAX, _quantized_bound(hi, qparams, op)))


def _quantized_bound(f: float, qparams: QParams, op: QOp) -> int:
    """``round(float32(f) / float32(scale))``, half away from zero, as TFLite's ``Quantize`` in
    ``kernel_util.cc``, which fails Prepare (``no_integer_overflow_from_quantization``) when that
    does not fit int32: LiteRT refuses such a file, so the executor does too."""
    tmp = float(np.float32(f) / np.float32(qparams.scale[0]))
    rounded = np.copysign(np.floor(abs(tmp) + 0.5), tmp)  # float32 tmp: + 0.5 is exact here
    if not -(2.0**31) <= rounded <= 2.0**31 - 1:
        raise UnsupportedOpError(op.kind, op.source, f"activation bound {f} overflows int32")
    return int(rounded)


def qparams_of(program: QProgram, name: str, op: QOp) -> QParams:
    """The quantization of tensor ``name``.

    Raises:
        UnsupportedOpError: the tensor is not quantized.
    """
    tensor: QTensor = program.tensor(name)
    if tensor.qparams is None:
        raise UnsupportedOpError(op.kind, op.source, f"tensor '{name}' is not quantized")
    return tensor.qparams


def per_tensor(program: QProgram, name: str, op: QOp) -> tuple[np.float32, int]:
    """The float32 scale and the zero point of per-tensor quantized tensor ``name``."""
    q = qparams_of(program, name, op)
    return np.float32(q.scale[0]), int(q.zero_point[0])


def effective_scales(program: QProgram, op: QOp, channels: int) -> np.ndarray:
    """``double(s_in) * double(s_w[c]) / double(s_out)`` per channel, as
    ``PopulateConvolutionQuantizationParams`` (a per-tensor weight scale is broadcast). The weight's zero
    point is ``weights_offset``'s to check."""
    s_in, _ = per_tensor(program, op.inputs[0], op)
    s_out, _ = per_tensor(program, op.outputs[0], op)
    w = qparams_of(program, op.inputs[1], op)
    if w.scale.size not in (1, channels):
        raise UnsupportedOpError(
            op.kind, op.source, f"{w.scale.size} weight scales for {channels} output channels"
        )
    w_scale = np.broadcast_to(w.scale, (channels,)).astype(np.float64)
    return np.float64(s_in) * w_scale / np.float64(s_out)


def weights_offset(program: QProgram, op: QOp) -> Params:
    """``weights_offset`` (``-zp_w``, TFLite's ``ConvParams``/``DepthwiseParams``/``FullyConnectedParams``
    field) of an int8 op whose weights have one non-zero zero point, else nothing: the symmetric weights
    of TFLite's int8 spec take no offset, and their kernels run unchanged.

    A non-zero weight zero point is the per-tensor asymmetric scheme of TFLite's legacy uint8 kernels
    (``reference_ops::Conv``, ``DepthwiseConv``, ``FullyConnected``: ``acc += (filter_val +
    filter_offset) * (input_val + input_offset)``), which a device such as SNPE's DSP runs. LiteRT 2.3's
    int8 kernels (measured): FULLY_CONNECTED applies it, DEPTHWISE_CONV_2D ignores it, CONV_2D refuses it.

    Raises:
        UnsupportedOpError: weights whose channels have different non-zero zero points (no kernel has that).
    """
    zp = qparams_of(program, op.inputs[1], op).zero_point
    if not np.any(zp):
        return {}
    if np.any(zp != zp[0]):
        raise UnsupportedOpError(op.kind, op.source, "weights with a zero point per channel: give them one zero "
                                 "point (per tensor) or zero points 0")
    return {"weights_offset": -int(zp[0])}


def symmetric_weights(op: QOp, program: QProgram) -> None:
    """The 16x8 kernels' contract on weights: zero point 0 (they take no ``weights_offset``)."""
    if np.any(qparams_of(program, op.inputs[1], op).zero_point):
        raise UnsupportedOpError(op.kind, op.source, "16x8 mode needs weights with zero point 0")


def multipliers(scales: np.ndarray, rounding: Rounding) -> tuple[np.ndarray, np.ndarray]:
    """``QuantizeMultiplier`` of each scale: frozen int32 arrays of multipliers and shifts."""
    pairs = [quantize_multiplier(float(s), rounding) for s in scales]
    multiplier = np.array([m for m, _ in pairs], dtype=np.int32)
    shift = np.array([s for _, s in pairs], dtype=np.int32)
    return frozen_array(multiplier), frozen_array(shift)


def io_offsets(program: QProgram, op: QOp) -> Params:
    """``input_offset`` (``-zp_in``) and ``output_offset`` (``zp_out``)."""
    _, in_zp = per_tensor(program, op.inputs[0], op)
    _, out_zp = per_tensor(program, op.outputs[0], op)
    return {"input_offset": -in_zp, "output_offset": out_zp}


def activation_params(program: QProgram, op: QOp) -> Params:
    """``activation_min``/``activation_max``: the op's fused activation on its int8 output grid."""
    act = op.options.get("fused_activation_function", "NONE")
    lo, hi = calculate_activation_range_quantized(act, qparams_of(program, op.outputs[0], op), op)
    return {"activation_min": lo, "activation_max": hi}


def window(op: QOp, in_shape: tuple[int, ...], kh: int, kw: int, dilated: bool) -> Params:
    """Strides, ``ComputePaddingHeightWidth``'s padding and output size (and the dilations when
    ``dilated``) of a ``kh`` x ``kw`` window sliding over an NHWC input of ``in_shape``."""
    o = op.options
    sh, sw = int(o["stride_h"]), int(o["stride_w"])
    dh = int(o.get("dilation_h_factor", 1)) if dilated else 1
    dw = int(o.get("dilation_w_factor", 1)) if dilated else 1
    win = compute_padding_height_width(o["padding"], in_shape[1], in_shape[2], kh, kw, sh, sw, dh, dw)
    params: Params = {
        "stride_height": sh,
        "stride_width": sw,
        "pad_height": win.pad_height,
        "pad_width": win.pad_width,
        "output_height": win.output_height,
        "output_width": win.output_width,
    }
    if dilated:
        params |= {"dilation_height_factor": dh, "dilation_width_factor": dw}
    return params


def symmetric_16x8(op: QOp, program: QProgram) -> Params:
    """Checks the 16x8 contract of a one-input op (int16 input and output with zero point 0, as
    ``conv.cc`` and friends ensure) and returns the int16 range of its fused activation."""
    for name in (op.inputs[0], op.outputs[0]):
        t = program.tensor(name)
        if t.dtype != "int16" or t.qparams is None or int(t.qparams.zero_point[0]) != 0:
            raise UnsupportedOpError(op.kind, op.source, f"16x8 mode needs int16 tensor '{name}' with zero point 0")
    act = op.options.get("fused_activation_function", "NONE")
    lo, hi = activation_range_int16(act, program.tensor(op.outputs[0]).qparams, op)
    return {"activation_min": lo, "activation_max": hi}


def zero_points_zero(op: QOp, program: QProgram) -> None:
    """The 16x8 contract LiteRT's int16 kernels check on every operand: int16 activations with zero
    point 0 (constants of another dtype, such as MEAN's axes, aside)."""
    for name in (*op.inputs, *op.outputs):
        t = program.tensor(name)
        if t.is_constant and t.dtype != "int16":
            continue
        if t.dtype != "int16" or t.qparams is None or int(t.qparams.zero_point[0]) != 0:
            raise UnsupportedOpError(op.kind, op.source, f"16x8 mode needs int16 tensor '{name}' with zero point 0")


def check_bias_int64(op: QOp, program: QProgram) -> None:
    """The 16x8 weighted ops' bias (their third input, when present) must be int64."""
    if len(op.inputs) > 2 and op.inputs[2] and program.tensor(op.inputs[2]).dtype != "int64":
        raise UnsupportedOpError(op.kind, op.source, "16x8 mode needs an int64 bias")
