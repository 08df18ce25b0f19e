"""Torch models as users' ONNX files: exported by the TorchScript or the dynamo exporter, their data, and
the deploy-then-compare-with-BUILTIN_REF step the tests of those files share."""
from __future__ import annotations

import contextlib
import io
import warnings
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

from edgeopt.pipeline.frontend.load import export_torch
from edgeopt.qprogram import QProgram
from edgeopt.runtimes.litert import LiteRT
from edgeopt.runtimes.reference.executor import run_program
from edgeopt.workflows.deploy import DeployResult, deploy


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


def deployed(model: onnx.ModelProto, data: np.ndarray, tmp_path: Path, device: str = "arm-cortex-a78-xnnpack"
             ) -> tuple[DeployResult, QProgram]:
    """``model`` saved and deployed to ``device`` with ``data`` as ``--data`` (and calibration); the result
    and its program in double rounding (LiteRT BUILTIN_REF's)."""
    onnx.save(model, tmp_path / "model.onnx")
    np.savez(tmp_path / "data.npz", x=data)
    result = deploy(str(tmp_path / "model.onnx"), device, data=tmp_path / "data.npz", out=tmp_path / "out")
    return result, result.program.replace(rounding="double")


def run_bitexact(result: DeployResult, program: QProgram, q: np.ndarray) -> np.ndarray:
    """The executor's first output on the quantized input ``q``, asserted equal element for element to LiteRT
    BUILTIN_REF's on the shipped ``model.int8.tflite``."""
    got = run_program(program, [q])[0]
    np.testing.assert_array_equal(got, LiteRT(result.out_dir / "model.int8.tflite", kernels="reference").run([q])[0])
    return got
