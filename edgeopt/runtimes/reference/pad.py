"""PAD, int8: TFLite ``reference/pad.h`` (constant padding)."""
from __future__ import annotations

import numpy as np

from edgeopt.qprogram import QOp, QProgram
from edgeopt.runtimes.reference.registry import KERNELS, constant


def pad(x: np.ndarray, paddings: np.ndarray, pad_value: int) -> np.ndarray:
    """``x`` with ``paddings[d] = (before, after)`` elements of ``pad_value`` added along each axis d.

    For a quantized PAD without a constant-values input, LiteRT pads with the output zero point (the
    real value 0), which ``prepare_pad`` stores as ``pad_value``.
    """
    return np.pad(x, [(int(a), int(b)) for a, b in paddings], constant_values=pad_value)


@KERNELS.register("PAD")
def _run_pad(op: QOp, args: list[np.ndarray], program: QProgram) -> np.ndarray:
    x, paddings = args[0], constant(args[1])
    return pad(x, np.concatenate([[[0, 0]], paddings]), op.params["pad_value"])
