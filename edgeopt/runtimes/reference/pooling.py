"""AVERAGE_POOL_2D, int8: TFLite ``reference/integer_ops/pooling.h`` ``AveragePool``."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from edgeopt.errors import InternalError
from edgeopt.qprogram import QOp, QProgram
from edgeopt.runtimes.reference.arith.im2col import pad_for_windows, samples_per_chunk, window_tap
from edgeopt.runtimes.reference.registry import KERNELS, fold_run_axis, output_shape


def average_pool(x: np.ndarray, p: Mapping[str, Any]) -> np.ndarray:
    """Int8 average over the part of each window inside the image, without rescaling.

    ``acc`` = sum of the raw int8 values in the window's valid part, ``n`` = their count;
    ``avg = (acc + n/2) / n`` if ``acc > 0`` else ``(acc - n/2) / n`` (C integer division, truncating
    towards zero: a rounding half away from zero), then ``clamp(avg, act_min, act_max)``. LiteRT
    expects the input and output quantization to be equal and does not rescale.

    Args:
        x: int8 input (N, H, W, C).
        p: the op's params from ``prepare_average_pool``.

    Returns:
        int8 output (N, OH, OW, C).
    """
    n, h, w, c = x.shape
    fh, fw = p["filter_height"], p["filter_width"]
    oh, ow = p["output_height"], p["output_width"]
    ones = pad_for_windows(np.ones((1, h, w, 1), dtype=np.int32), p, fh, fw, 1, 1)
    count = sum(window_tap(ones, p, i, j, 1, 1) for i in range(fh) for j in range(fw))
    if np.any(count == 0):
        raise InternalError("AVERAGE_POOL_2D has a window entirely outside its input")
    half = count // 2
    out = np.empty((n, oh, ow, c), dtype=np.int8)
    chunk = samples_per_chunk(oh * ow * c * 2)
    for start in range(0, n, chunk):
        xp = pad_for_windows(x[start : start + chunk].astype(np.int32), p, fh, fw, 1, 1)
        # |acc| <= 128 * fh * fw: int32 is ample (the C++ uses int64).
        acc = sum(window_tap(xp, p, i, j, 1, 1) for i in range(fh) for j in range(fw))
        avg = np.where(acc > 0, (acc + half) // count, -((half - acc) // count))
        out[start : start + xp.shape[0]] = np.clip(avg, p["activation_min"], p["activation_max"])
    return out


@KERNELS.register("AVERAGE_POOL_2D")
def _run_average_pool(op: QOp, args: list[np.ndarray], program: QProgram) -> np.ndarray:
    x = args[0]
    return average_pool(fold_run_axis(x), op.params).reshape((x.shape[0],) + output_shape(op, program))
