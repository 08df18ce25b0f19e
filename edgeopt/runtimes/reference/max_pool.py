"""MAX_POOL_2D, int8: TFLite ``reference/integer_ops/pooling.h`` ``MaxPool``."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from edgeopt.errors import UnsupportedOpError
from edgeopt.qprogram import QOp, QProgram
from edgeopt.runtimes.reference.prepare import PREPARERS, Params, _activation, _window
from edgeopt.runtimes.reference.registry import KERNELS, fold_run_axis, output_shape

def max_pool(x: np.ndarray, p: Mapping[str, Any]) -> np.ndarray:
    """Int8 maximum over the part of each window inside the image, then ``clamp(max, act_min, act_max)``.

    The reference kernel starts each window at ``numeric_limits<int8_t>::lowest()`` and skips points
    outside the image; padding with -128 gives the same maximum, as every window holds at least one
    point of the image (TFLite's SAME and VALID padding never make an empty window).

    Args:
        x: int8 (or int16) input (N, H, W, C).
        p: the op's params from ``prepare_max_pool``.

    Returns:
        output (N, OH, OW, C) of ``x``'s dtype.
    """
    n, h, w, c = x.shape
    lowest = np.iinfo(x.dtype).min  # int8, or int16 in the 16x8 kernel (``max_pool_16x8``)
    fh, fw = p["filter_height"], p["filter_width"]
    oh, ow, sh, sw = p["output_height"], p["output_width"], p["stride_height"], p["stride_width"]
    top, left = p["pad_height"], p["pad_width"]
    rows, cols = max((oh - 1) * sh + fh, top + h), max((ow - 1) * sw + fw, left + w)
    xp = np.full((n, rows, cols, c), lowest, dtype=x.dtype)
    xp[:, top : top + h, left : left + w] = x
    out = np.full((n, oh, ow, c), lowest, dtype=x.dtype)
    for i in range(fh):
        for j in range(fw):
            np.maximum(out, xp[:, i : i + (oh - 1) * sh + 1 : sh, j : j + (ow - 1) * sw + 1 : sw], out=out)
    return np.clip(out, p["activation_min"], p["activation_max"]).astype(x.dtype)


@PREPARERS.register("MAX_POOL_2D")
def prepare_max_pool(op: QOp, program: QProgram) -> Params:
    """``pooling.cc`` Prepare: padding, activation range; int8 input and output share one encoding."""
    x, y = program.tensor(op.inputs[0]), program.tensor(op.outputs[0])
    if x.qparams is None or y.qparams is None or not x.qparams.same_as(y.qparams):
        raise UnsupportedOpError(op.kind, op.source, "int8 max pooling needs the input's encoding on its output")
    fh, fw = int(op.options["filter_height"]), int(op.options["filter_width"])
    return {
        **_window(op, x.shape, fh, fw, dilated=False),
        "filter_height": fh,
        "filter_width": fw,
        **_activation(program, op),
    }


@KERNELS.register("MAX_POOL_2D")
def _run_max_pool(op: QOp, args: list[np.ndarray], program: QProgram) -> np.ndarray:
    x = args[0]
    return max_pool(fold_run_axis(x), op.params).reshape((x.shape[0],) + output_shape(op, program))
