"""Encodings per the TFLite 8-bit quantization spec.

Activations: int8 asymmetric per-tensor, range widened to include 0 (so zero padding is exact).
Weights: int8 symmetric per-channel along the output-channel axis, range [-127, 127] (or [-128, 127]
when a profile's ``strict_symmetric`` is false).
Biases: int32 symmetric, scale = input_scale * weight_scale, zero point 0.
"""
from __future__ import annotations

import numpy as np

from edgeopt.ir import QParams

# TFLite's converter (``ExpandVerySmallRange``, ``kNearZeroTolerance``) widens a calibrated range no
# wider than this to ``[-NEAR_ZERO_RANGE / 2, NEAR_ZERO_RANGE / 2]``. A dead ReLU6 (all zeros on the
# calibration data) then gets the int8 scale 1e-6 / 255, whose fused bound 6 / scale = 1.5e9 still fits
# the int32 that LiteRT's Prepare (``CalculateActivationRangeQuantized``) requires of it.
NEAR_ZERO_RANGE = 1e-6
# The int16 (symmetric, 32767 steps) floor, chosen here (the converter's 1e-6 would overflow): the fused
# RELU6 bound fits int32 when the half range is at least 6 * 32767 / 2**31 = 9.2e-5.
MIN_INT16_HALF_RANGE = 1e-4


def activation_qparams(lo: float, hi: float, dtype: str = "int8") -> QParams:
    """Asymmetric per-tensor parameters covering ``[min(lo, 0), max(hi, 0)]``; for int16 (TFLite's 16x8
    mode) symmetric instead: zero point 0, scale ``max(|lo|, |hi|) / 32767``.

    A degenerate range (a constant or dead tensor) is widened first (int8: as TFLite's converter does,
    ``NEAR_ZERO_RANGE``; int16: ``MIN_INT16_HALF_RANGE``), so that any fused activation bound of the op
    writing the tensor stays representable.
    """
    info = np.iinfo(dtype)
    if dtype == "int16":
        half_range = max(abs(float(lo)), abs(float(hi)), MIN_INT16_HALF_RANGE)
        return QParams(scale=np.float32(half_range / info.max), zero_point=0, dtype=dtype)
    lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
    if hi - lo <= NEAR_ZERO_RANGE:
        lo, hi = min(lo, -NEAR_ZERO_RANGE / 2), max(hi, NEAR_ZERO_RANGE / 2)
    scale = np.float32((hi - lo) / (info.max - info.min))
    zero_point = int(np.clip(np.round(info.min - lo / float(scale)), info.min, info.max))
    return QParams(scale=scale, zero_point=zero_point, dtype=dtype)


def weight_qparams(w: np.ndarray, axis: int, bits: int = 8, strict: bool = True) -> QParams:
    """Symmetric per-channel parameters along ``axis`` (zero point 0).

    ``strict`` (AIMET's ``strict_symmetric``, TFLite's spec): the narrow range ``[-(2^(b-1)-1), 2^(b-1)-1]``,
    scale ``max|w| / (2^(b-1)-1)``. Otherwise the full range: the most negative weight may use
    ``-2^(b-1)``, scale ``max(max(w) / (2^(b-1)-1), -min(w) / 2^(b-1))``, a finer grid when the negative
    side is the wider.
    """
    qmax = 2 ** (bits - 1) - 1
    reduce_axes = tuple(i for i in range(w.ndim) if i != axis)
    if strict:
        absmax = np.abs(w).max(axis=reduce_axes).astype(np.float64)
    else:
        positive, negative = np.maximum(w.max(axis=reduce_axes), 0.0), np.maximum(-w.min(axis=reduce_axes), 0.0)
        absmax = np.maximum(positive, negative * (qmax / (qmax + 1))).astype(np.float64)  # scale: negative / 2^(b-1)
    scale = np.where(absmax > 0, absmax / qmax, 1.0).astype(np.float32)
    return QParams(scale=scale, zero_point=np.zeros_like(scale, dtype=np.int64), dtype="int8", axis=axis)


def weight_qparams_for_bias(w_q: QParams, input_q: QParams, bias: np.ndarray, one_scale: bool = False) -> QParams:
    """``w_q`` with each channel's scale raised where its bias would use more than half of int32.

    The bias is stored as ``round(b / (input_scale * weight_scale))`` in int32. After a dead input (a
    scale of ``NEAR_ZERO_RANGE / 255``), or for a channel of near-zero weights, that overflows and
    saturates, and the layer's output is wrong by the lost bias. TFLite's converter
    (``AdjustWeightsForBiasScale``) widens the weight scale instead; where that applies, the products
    the coarser weights make are negligible beside the bias. Keeping ``|b| / bias_scale <= 2**30`` leaves
    the other half of int32 for the accumulated products. Behind an int16 input the bias is int64
    (``bias_qparams``), which cannot overflow so: ``w_q`` is returned as it is.

    Args:
        w_q: the weight's encoding, per-channel or per-tensor.
        input_q: the encoding of the layer's input.
        bias: the layer's float bias, one value per output channel.
        one_scale: keep the channels' scales equal (a per-tensor weight held per channel, as
            ConvTranspose's), all raised to what the most demanding channel needs.
    """
    if input_q.dtype == "int16":
        return w_q
    needed = np.abs(np.asarray(bias, np.float64)) / (np.float64(input_q.scale[0]) * 2.0**30)
    if one_scale or not w_q.per_channel:
        needed = needed.max(initial=0.0)
    if np.all(w_q.scale >= needed):
        return w_q
    scale = np.maximum(w_q.scale.astype(np.float64), needed).astype(np.float32)
    return QParams(scale=scale, zero_point=w_q.zero_point, dtype=w_q.dtype, axis=w_q.axis)


def bias_qparams(input_q: QParams, weight_q: QParams) -> QParams:
    """int32 parameters (int64 for an int16 input, as TFLite's 16x8 kernels take) with scale
    ``input_scale * weight_scale[c]`` (computed in double, stored float32)."""
    scale = (np.float64(input_q.scale[0]) * weight_q.scale.astype(np.float64)).astype(np.float32)
    dtype = "int64" if input_q.dtype == "int16" else "int32"
    return QParams(scale=scale, zero_point=np.zeros_like(scale, dtype=np.int64), dtype=dtype, axis=0)
