"""Encodings per the TFLite 8-bit quantization spec.

Activations: int8 asymmetric per-tensor, range widened to include 0 (so zero padding is exact).
Weights: int8 symmetric per-channel along the output-channel axis, range [-127, 127] (or [-128, 127]
when a profile's ``strict_symmetric`` is false).
Biases: int32 symmetric, scale = input_scale * weight_scale, zero point 0.
"""
from __future__ import annotations

import numpy as np

from edgeopt.ir import QParams

# A range narrower than this (a constant tensor) still gets a usable, non-zero scale.
MIN_RANGE = 1e-8


def activation_qparams(lo: float, hi: float, dtype: str = "int8") -> QParams:
    """Asymmetric per-tensor parameters covering ``[min(lo, 0), max(hi, 0)]``; for int16 (TFLite's 16x8
    mode) symmetric instead: zero point 0, scale ``max(|lo|, |hi|) / 32767``."""
    info = np.iinfo(dtype)
    if dtype == "int16":
        return QParams(scale=np.float32(max(abs(float(lo)), abs(float(hi)), MIN_RANGE) / info.max), zero_point=0,
                       dtype=dtype)
    lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
    scale = np.float32(max(hi - lo, MIN_RANGE) / (info.max - info.min))
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


def bias_qparams(input_q: QParams, weight_q: QParams) -> QParams:
    """int32 parameters (int64 for an int16 input, as TFLite's 16x8 kernels take) with scale
    ``input_scale * weight_scale[c]`` (computed in double, stored float32)."""
    scale = (np.float64(input_q.scale[0]) * weight_q.scale.astype(np.float64)).astype(np.float32)
    dtype = "int64" if input_q.dtype == "int16" else "int32"
    return QParams(scale=scale, zero_point=np.zeros_like(scale, dtype=np.int64), dtype=dtype, axis=0)
