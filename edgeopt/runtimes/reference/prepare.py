"""What TFLite's ``Prepare`` computes for each op, from the tensors' float32 scales and zero points.

``prepare_program`` fills every ``QOp.params`` with the integer parameters the reference kernels read,
computed in double precision exactly as LiteRT does (``kernels/kernel_util.cc``, ``kernels/add.cc``,
``kernels/pooling.cc``, ``kernels/padding.h``). Keys (TFLite's ``*Params`` field names, snake_case):

* CONV_2D, DEPTHWISE_CONV_2D: ``stride_height``, ``stride_width``, ``dilation_height_factor``,
  ``dilation_width_factor``, ``pad_height``, ``pad_width``, ``output_height``, ``output_width``,
  ``input_offset`` (``-input_zp``), ``output_offset`` (``output_zp``), ``output_multiplier`` and
  ``output_shift`` (int32 per output channel, from ``QuantizeMultiplier(double(s_in) *
  double(s_w[c]) / double(s_out))``), ``activation_min``, ``activation_max``; depthwise adds
  ``depth_multiplier``.
* FULLY_CONNECTED: ``input_offset``, ``output_offset``, ``effective_scale`` (float64 per output
  channel, ``double(s_in) * double(s_w[c]) / double(s_out)``: LiteRT 2.3's reference kernel requantizes
  with it in double precision), ``activation_min``, ``activation_max``; with the program's
  ``fully_connected_requantization == "fixed_point"`` (tflite-runtime 2.14), ``output_multiplier`` and
  ``output_shift`` from those scales instead, as for CONV_2D.
* ADD: ``input1_offset``, ``input2_offset``, ``output_offset``, ``left_shift`` (20),
  ``input1_multiplier``/``input1_shift``, ``input2_multiplier``/``input2_shift`` (from
  ``s_i / (2 * max(s_1, s_2))``), ``output_multiplier``/``output_shift`` (from ``2 * max(s_1, s_2) /
  (2**20 * s_out)``), ``activation_min``, ``activation_max``.
* AVERAGE_POOL_2D: ``stride_height``, ``stride_width``, ``filter_height``, ``filter_width``,
  ``pad_height``, ``pad_width``, ``output_height``, ``output_width``, ``activation_min``,
  ``activation_max``.
* PAD: ``pad_value`` (the output zero point).
* MEAN: ``axes``, ``num_elements``, ``output_multiplier``/``output_shift`` (``1 / n`` folded in),
  zero points; registered by ``mean.prepare_mean``.
* RESHAPE, STRIDED_SLICE, TRANSPOSE, SPLIT, SPLIT_V: nothing (they move bytes).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from edgeopt.errors import UnsupportedOpError
from edgeopt.ir import QParams, frozen_array
from edgeopt.qprogram import QOp, QProgram, QTensor, Rounding
from edgeopt.registry import OpRegistry, Registry
from edgeopt.runtimes.reference.arith.fixedpoint import quantize_multiplier
from edgeopt.runtimes.reference.int16_registry import prepare_int16, runs_in_int16
from edgeopt.runtimes.reference.arith.padding import compute_padding_height_width

Params = dict[str, Any]
Preparer = Callable[[QOp, QProgram], Params]

PREPARERS: Registry[Preparer] = OpRegistry("integer prepare")
PARAMETERLESS = frozenset({"RESHAPE", "STRIDED_SLICE", "TRANSPOSE", "SPLIT", "SPLIT_V"})


def prepare_program(program: QProgram) -> QProgram:
    """A copy of ``program`` whose every op carries the parameters TFLite's Prepare computes.

    Args:
        program: an int8 program; existing ``params`` are recomputed.

    Returns:
        The same program with each ``QOp.params`` filled (see the module docstring for the keys).

    Raises:
        UnsupportedOpError: an op kind without an integer kernel, or quantization TFLite rejects.
    """
    ops = []
    for op in program.ops:
        if op.kind in PARAMETERLESS or _in_float_island(op, program):
            ops.append(op.with_params({}))
        elif runs_in_int16(op, program):  # TFLite's 16x8 kernels (int16_registry)
            ops.append(op.with_params(prepare_int16(op, program)))
        elif op.kind in PREPARERS:
            ops.append(op.with_params(PREPARERS.get(op.kind)(op, program)))
        else:
            raise UnsupportedOpError(op.kind, op.source, "no integer kernel")
    return program.replace(ops=tuple(ops))


def needs_prepare(program: QProgram) -> bool:
    """True when some op that takes parameters has none yet."""
    return any(op.kind not in PARAMETERLESS and not _in_float_island(op, program) and not op.params
               for op in program.ops)


def _in_float_island(op: QOp, program: QProgram) -> bool:
    """A float32-output op (a float island's kernel, ``float_ops``) takes no integer parameters."""
    return program.tensor(op.outputs[0]).dtype == "float32"


def calculate_activation_range_quantized(
    activation: str, qparams: QParams, op: QOp
) -> tuple[int, int]:
    """TFLite ``CalculateActivationRangeQuantized`` for an int8 output.

    Each real bound ``f`` (0 for RELU; 0 and 6 for RELU6; -1 and 1 for RELU_N1_TO_1) becomes
    ``zp + round(float32(f) / float32(scale))`` (float32 division, half away from zero), clamped
    into ``[-128, 127]``; NONE gives the full int8 range.
    """
    bounds = {"NONE": (None, None), "RELU": (0.0, None), "RELU6": (0.0, 6.0), "RELU_N1_TO_1": (-1.0, 1.0)}
    if activation not in bounds:
        raise UnsupportedOpError(op.kind, op.source, f"fused activation {activation} has no int8 form")
    scale = np.float32(qparams.scale[0])
    zp = int(qparams.zero_point[0])
    lo, hi = bounds[activation]

    def quantize(f: float) -> int:
        tmp = float(np.float32(f) / scale)
        rounded = np.copysign(np.floor(abs(tmp) + 0.5), tmp)  # float32 tmp: + 0.5 is exact here
        if not -(2.0**31) <= rounded <= 2.0**31 - 1:
            raise UnsupportedOpError(op.kind, op.source, f"activation bound {f} overflows int32")
        return zp + int(rounded)

    act_min = -128 if lo is None else max(-128, quantize(lo))
    act_max = 127 if hi is None else min(127, quantize(hi))
    return act_min, act_max


def _qparams(program: QProgram, name: str, op: QOp) -> QParams:
    tensor: QTensor = program.tensor(name)
    if tensor.qparams is None:
        raise UnsupportedOpError(op.kind, op.source, f"tensor '{name}' is not quantized")
    return tensor.qparams


def _per_tensor(program: QProgram, name: str, op: QOp) -> tuple[np.float32, int]:
    q = _qparams(program, name, op)
    return np.float32(q.scale[0]), int(q.zero_point[0])


def _effective_scales(program: QProgram, op: QOp, channels: int) -> np.ndarray:
    """``double(s_in) * double(s_w[c]) / double(s_out)`` per channel, as
    ``PopulateConvolutionQuantizationParams`` (a per-tensor weight scale is broadcast)."""
    s_in, _ = _per_tensor(program, op.inputs[0], op)
    s_out, _ = _per_tensor(program, op.outputs[0], op)
    w = _qparams(program, op.inputs[1], op)
    if np.any(w.zero_point != 0):
        raise UnsupportedOpError(op.kind, op.source, "int8 weights must have zero point 0")
    if w.scale.size not in (1, channels):
        raise UnsupportedOpError(
            op.kind, op.source, f"{w.scale.size} weight scales for {channels} output channels"
        )
    w_scale = np.broadcast_to(w.scale, (channels,)).astype(np.float64)
    return np.float64(s_in) * w_scale / np.float64(s_out)


def _multipliers(scales: np.ndarray, rounding: Rounding) -> tuple[np.ndarray, np.ndarray]:
    pairs = [quantize_multiplier(float(s), rounding) for s in scales]
    multiplier = np.array([m for m, _ in pairs], dtype=np.int32)
    shift = np.array([s for _, s in pairs], dtype=np.int32)
    return frozen_array(multiplier), frozen_array(shift)


def _io_offsets(program: QProgram, op: QOp) -> Params:
    _, in_zp = _per_tensor(program, op.inputs[0], op)
    _, out_zp = _per_tensor(program, op.outputs[0], op)
    return {"input_offset": -in_zp, "output_offset": out_zp}


def _activation(program: QProgram, op: QOp) -> Params:
    act = op.options.get("fused_activation_function", "NONE")
    lo, hi = calculate_activation_range_quantized(act, _qparams(program, op.outputs[0], op), op)
    return {"activation_min": lo, "activation_max": hi}


def _window(op: QOp, in_shape: tuple[int, ...], kh: int, kw: int, dilated: bool) -> Params:
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


@PREPARERS.register("CONV_2D")
def prepare_conv(op: QOp, program: QProgram) -> Params:
    """``conv.cc`` Prepare: padding, per-channel multipliers, offsets, activation range."""
    in_shape = program.tensor(op.inputs[0]).shape
    co, kh, kw, ci = program.tensor(op.inputs[1]).shape
    if in_shape[3] % ci or co % (in_shape[3] // ci):
        raise UnsupportedOpError(op.kind, op.source, f"{ci}-channel filters do not group {in_shape[3]} inputs")
    multiplier, shift = _multipliers(_effective_scales(program, op, co), program.rounding)
    return {
        **_window(op, in_shape, kh, kw, dilated=True),
        **_io_offsets(program, op),
        "output_multiplier": multiplier,
        "output_shift": shift,
        **_activation(program, op),
    }


@PREPARERS.register("DEPTHWISE_CONV_2D")
def prepare_depthwise_conv(op: QOp, program: QProgram) -> Params:
    """``depthwise_conv.cc`` Prepare; the depth multiplier is ``out_channels // in_channels``."""
    in_shape = program.tensor(op.inputs[0]).shape
    _, kh, kw, co = program.tensor(op.inputs[1]).shape
    if co % in_shape[3]:
        raise UnsupportedOpError(op.kind, op.source, f"{co} output channels for {in_shape[3]} inputs")
    multiplier, shift = _multipliers(_effective_scales(program, op, co), program.rounding)
    return {
        **_window(op, in_shape, kh, kw, dilated=True),
        "depth_multiplier": co // in_shape[3],
        **_io_offsets(program, op),
        "output_multiplier": multiplier,
        "output_shift": shift,
        **_activation(program, op),
    }


@PREPARERS.register("FULLY_CONNECTED")
def prepare_fully_connected(op: QOp, program: QProgram) -> Params:
    """``fully_connected.cc`` Prepare: the double effective scales, or their fixed-point multipliers
    when the program's ``fully_connected_requantization`` is ``"fixed_point"``."""
    co = program.tensor(op.inputs[1]).shape[0]
    scales = _effective_scales(program, op, co)
    if program.fully_connected_requantization == "fixed_point":
        multiplier, shift = _multipliers(scales, program.rounding)
        requantization: Params = {"output_multiplier": multiplier, "output_shift": shift}
    else:
        requantization = {"effective_scale": frozen_array(scales)}
    return {**_io_offsets(program, op), **requantization, **_activation(program, op)}


def _smaller_than_one(real: float, rounding: Rounding, op: QOp) -> tuple[int, int]:
    """TFLite ``QuantizeMultiplierSmallerThanOneExp``: checks ``0 <= real < 1``."""
    if not 0.0 <= real < 1.0:
        raise UnsupportedOpError(op.kind, op.source, f"rescale factor {real} is not below 1")
    return quantize_multiplier(real, rounding)


@PREPARERS.register("ADD")
def prepare_add(op: QOp, program: QProgram) -> Params:
    """``add.cc`` Prepare for int8: both inputs rescaled to ``2 * max(s1, s2)`` with 20 bits of headroom."""
    s1, zp1 = _per_tensor(program, op.inputs[0], op)
    s2, zp2 = _per_tensor(program, op.inputs[1], op)
    s_out, zp_out = _per_tensor(program, op.outputs[0], op)
    left_shift = 20
    twice_max = 2 * np.float64(max(s1, s2))
    m1, sh1 = _smaller_than_one(float(np.float64(s1) / twice_max), program.rounding, op)
    m2, sh2 = _smaller_than_one(float(np.float64(s2) / twice_max), program.rounding, op)
    real_out = twice_max / (np.float64(1 << left_shift) * np.float64(s_out))
    mo, sho = _smaller_than_one(float(real_out), program.rounding, op)
    return {
        "input1_offset": -zp1,
        "input2_offset": -zp2,
        "output_offset": zp_out,
        "left_shift": left_shift,
        "input1_multiplier": m1,
        "input1_shift": sh1,
        "input2_multiplier": m2,
        "input2_shift": sh2,
        "output_multiplier": mo,
        "output_shift": sho,
        **_activation(program, op),
    }


@PREPARERS.register("AVERAGE_POOL_2D")
def prepare_average_pool(op: QOp, program: QProgram) -> Params:
    """``pooling.cc`` Prepare: padding and activation range; the kernel never rescales, so LiteRT
    expects (and only DCHECKs) equal input and output quantization."""
    in_shape = program.tensor(op.inputs[0]).shape
    fh, fw = int(op.options["filter_height"]), int(op.options["filter_width"])
    return {
        **_window(op, in_shape, fh, fw, dilated=False),
        "filter_height": fh,
        "filter_width": fw,
        **_activation(program, op),
    }


@PREPARERS.register("PAD")
def prepare_pad(op: QOp, program: QProgram) -> Params:
    """``pad.cc``: a quantized PAD without constant values pads with the output zero point."""
    _, zp_out = _per_tensor(program, op.outputs[0], op)
    return {"pad_value": zp_out}

