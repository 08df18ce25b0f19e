"""RESHAPE: TFLite ``kernels/reshape.cc`` (a copy of the bytes under the output's static shape)."""
from __future__ import annotations

import numpy as np

from edgeopt.qprogram import QOp, QProgram
from edgeopt.runtimes.reference.registry import KERNELS, output_shape


def reshape(x: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """``x`` in row-major order under ``shape`` (same element count)."""
    return x.reshape(shape)


@KERNELS.register("RESHAPE")
def _run_reshape(op: QOp, args: list[np.ndarray], program: QProgram) -> np.ndarray:
    x = args[0]
    return reshape(x, (x.shape[0],) + output_shape(op, program))
