"""Sliding windows over NHWC tensors for the convolution and pooling kernels (no copies but one pad)."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import as_strided


def pad_for_windows(x: np.ndarray, p: Mapping[str, Any], kh: int, kw: int, dh: int, dw: int) -> np.ndarray:
    """``x`` (N, H, W, C) placed at ``(pad_height, pad_width)`` in zeros just large enough for every
    window of the op (rows/columns no window reaches are dropped).

    The zeros stand for the points TFLite's reference kernels skip ("points outside the image"): a
    skipped point adds nothing to the sum, and neither does a zero of the offset-adjusted input.
    """
    n, h, w, c = x.shape
    need_h = (p["output_height"] - 1) * p["stride_height"] + (kh - 1) * dh + 1
    need_w = (p["output_width"] - 1) * p["stride_width"] + (kw - 1) * dw + 1
    top, left = p["pad_height"], p["pad_width"]
    out = np.zeros((n, max(need_h, top), max(need_w, left), c), dtype=x.dtype)
    rows, cols = max(0, min(h, need_h - top)), max(0, min(w, need_w - left))
    out[:, top : top + rows, left : left + cols] = x[:, :rows, :cols]
    return out


def windows(xp: np.ndarray, p: Mapping[str, Any], kh: int, kw: int, dh: int, dw: int) -> np.ndarray:
    """Read-only view (N, OH, OW, KH, KW, C) of the windows of a ``pad_for_windows`` result."""
    n, _, _, c = xp.shape
    s_n, s_h, s_w, s_c = xp.strides
    shape = (n, p["output_height"], p["output_width"], kh, kw, c)
    strides = (s_n, s_h * p["stride_height"], s_w * p["stride_width"], s_h * dh, s_w * dw, s_c)
    return as_strided(xp, shape, strides, writeable=False)


def window_tap(xp: np.ndarray, p: Mapping[str, Any], i: int, j: int, dh: int, dw: int) -> np.ndarray:
    """View (N, OH, OW, C) of filter tap ``(i, j)`` of every window of a ``pad_for_windows`` result."""
    sh, sw = p["stride_height"], p["stride_width"]
    y0, x0 = i * dh, j * dw
    y1, x1 = y0 + (p["output_height"] - 1) * sh + 1, x0 + (p["output_width"] - 1) * sw + 1
    return xp[:, y0:y1:sh, x0:x1:sw]


def samples_per_chunk(per_sample: int, budget: int = 1 << 20) -> int:
    """How many samples to process at once so that the working set stays near ``budget`` elements."""
    return max(1, budget // max(per_sample, 1))
