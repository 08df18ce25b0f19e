"""Torch models as users' ONNX files: exported by the TorchScript or the dynamo exporter, and their data."""
from __future__ import annotations

import contextlib
import io
import warnings

import numpy as np
import onnx
import torch
from torch import nn

from edgeopt.pipeline.frontend.load import export_torch


def export(module: nn.Module, shape: tuple[int, ...], exporter: str) -> onnx.ModelProto:
    """``module`` on a zero input of ``shape`` through ``exporter``: ``"dynamo"`` (edgeopt's own
    ``export_torch``), or ``"torchscript"`` / ``"torchscriptNN"`` (``torch.onnx.export(dynamo=False)`` at
    opset NN, default 17, its warnings silenced), with input ``x`` and output ``y``."""
    example = torch.zeros(shape)
    if exporter == "dynamo":
        return export_torch(module, example)
    opset = int(exporter.removeprefix("torchscript") or 17)
    buffer = io.BytesIO()
    with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (example,), buffer, dynamo=False, opset_version=opset,
                          input_names=["x"], output_names=["y"])
    return onnx.load_from_string(buffer.getvalue())


def normal_data(seed: int, n: int, shape: tuple[int, ...]) -> np.ndarray:
    """``n`` standard-normal float32 inputs for a model of input ``shape`` (batch 1)."""
    return np.random.default_rng(seed).normal(size=(n, *shape[1:])).astype(np.float32)
