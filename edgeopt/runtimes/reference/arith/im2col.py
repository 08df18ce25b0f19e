"""Sliding windows over NHWC tensors for the convolution and pooling kernels (no copies but one pad,
and for strided taps one split into phase planes), and the blocks the int8 kernels work in."""
from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import numpy.typing as npt
from numpy.lib.stride_tricks import as_strided


def pad_for_windows(
    x: np.ndarray, p: Mapping[str, Any], kh: int, kw: int, dh: int, dw: int,
    offset: int = 0, dtype: npt.DTypeLike = None,
) -> np.ndarray:
    """``x + offset`` (computed in ``dtype``, default ``x``'s) placed at ``(pad_height, pad_width)`` in
    zeros just large enough for every window of the op (rows/columns no window reaches are dropped).

    The zeros stand for the points TFLite's reference kernels skip ("points outside the image"): a
    skipped point adds nothing to the sum, and neither does a zero of the offset-adjusted input.
    """
    n, h, w, c = x.shape
    need_h = (p["output_height"] - 1) * p["stride_height"] + (kh - 1) * dh + 1
    need_w = (p["output_width"] - 1) * p["stride_width"] + (kw - 1) * dw + 1
    top, left = p["pad_height"], p["pad_width"]
    dtype = x.dtype if dtype is None else np.dtype(dtype)
    out = np.empty((n, max(need_h, top), max(need_w, left), c), dtype=dtype)
    rows, cols = max(0, min(h, need_h - top)), max(0, min(w, need_w - left))
    # Zeros around the image only, then one pass for the cast, the offset and the copy into place.
    out[:, :top] = 0
    out[:, top + rows :] = 0
    out[:, top : top + rows, :left] = 0
    out[:, top : top + rows, left + cols :] = 0
    np.add(x[:, :rows, :cols], offset, out=out[:, top : top + rows, left : left + cols], dtype=dtype)
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


def unit_stride_taps(xp: np.ndarray, p: Mapping[str, Any], kh: int, kw: int, dh: int, dw: int) -> list[np.ndarray]:
    """The ``window_tap`` views of every filter tap, in row-major tap order, made unit-stride along
    the output width: with a width stride ``s > 1``, ``xp``'s columns are first split into ``s``
    contiguous phase planes (the columns of each residue modulo ``s``; one copy), and tap column
    ``j * dw = q * s + b`` reads plane ``b`` from column ``q`` on. Numpy then runs each row of a tap
    as one contiguous loop rather than one loop per pixel."""
    sh, sw = p["stride_height"], p["stride_width"]
    oh, ow = p["output_height"], p["output_width"]
    planes = [np.ascontiguousarray(xp[:, :, b::sw]) for b in range(sw)] if sw > 1 else [xp]
    views = []
    for i in range(kh):
        rows = slice(i * dh, i * dh + (oh - 1) * sh + 1, sh)
        for j in range(kw):
            q, b = divmod(j * dw, sw)
            views.append(planes[b][:, rows, q : q + ow])
    return views


def samples_per_chunk(per_sample: int, budget: int = 1 << 20) -> int:
    """How many samples to process at once so that the working set stays near ``budget`` elements."""
    return max(1, budget // max(per_sample, 1))


def tile_channels(values: np.ndarray, width: int) -> np.ndarray:
    """Per-channel ``values`` (C,) repeated for ``width`` pixels: (width, C). Broadcast against a
    channels-last block (..., width, C), they let numpy run each row of pixels as one contiguous loop
    rather than one loop of C elements per pixel (measured 1.3-2x faster per pass for C ~ 100)."""
    return np.tile(np.asarray(values), (width, 1))


# Output elements per block of the block-by-block kernels: small enough that a block's int32/int64
# temporaries stay in a core's L2 cache, large enough to amortize numpy's per-call overhead (of 32K,
# 64K and 128K, 64K measured fastest on EfficientNet-Lite0).
BLOCK_ELEMENTS = 1 << 16


def output_blocks(n: int, height: int, per_row: int, budget: int | None = None) -> Iterator[tuple[slice, slice]]:
    """Split an (n, height, ...) output of ``per_row`` elements per row into blocks of about ``budget``
    elements (default ``BLOCK_ELEMENTS``): whole samples when a sample is smaller than that, else row
    ranges of one sample. Each block, ``y[samples, rows]``, is contiguous in a C-ordered ``y``.

    Yields:
        ``(samples, rows)`` slices.
    """
    budget = BLOCK_ELEMENTS if budget is None else budget
    per_sample = height * per_row
    if per_sample <= budget:
        step = budget // max(per_sample, 1)
        for s in range(0, n, step):
            yield slice(s, min(s + step, n)), slice(0, height)
        return
    step = max(1, budget // max(per_row, 1))
    for s in range(n):
        for y in range(0, height, step):
            yield slice(s, s + 1), slice(y, min(y + step, height))
