"""A model with one planted sensitive layer, its data, and the recipe settings the mixed-precision tests share."""
from __future__ import annotations

import numpy as np
import onnx

from edgeopt.pipeline.quantize.adaround import AdaRoundConfig
from tests.builders.onnx_models import two_conv_model

FAST_ADAROUND = AdaRoundConfig(iterations=40, samples=32)
BUDGET = 10.0  # points of top-1 agreement: min/max .. AdaRound stay below 75 % on this model, conv1 at int16 ~ 92 %


def planted_model() -> onnx.ModelProto:
    """conv1 → conv2 → Relu → pool → fc, where conv1's output has a huge range (a channel biased to 1000
    that conv2 ignores): quantizing that activation alone ruins the output."""
    return two_conv_model(np.random.default_rng(0), huge_bias=1000.0)


def planted_data(n: int = 48) -> np.ndarray:
    """``n`` random inputs of the planted model."""
    return np.random.default_rng(1).normal(size=(n, 3, 8, 8)).astype(np.float32)
