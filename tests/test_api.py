"""The Python API: ``edgeopt.deploy`` of an nn.Module with an example input, and its one-line errors."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import edgeopt
from edgeopt.errors import ModelLoadError


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.head = nn.Linear(8, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.conv(x)).mean((2, 3)))


def test_deploy_an_nn_module_with_an_example_input(tmp_path: Path) -> None:
    torch.manual_seed(0)
    x = np.random.default_rng(0).normal(size=(16, 3, 8, 8)).astype(np.float32)
    np.savez(tmp_path / "d.npz", x=x)
    result = edgeopt.deploy(Tiny(), "arm-cortex-a78-xnnpack", example_input=torch.zeros(1, 3, 8, 8),
                            data=tmp_path / "d.npz", out=tmp_path / "out")
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["model"] == "Tiny" and result.report["accuracy"]["n"] == 16
    assert (tmp_path / "out" / "model.int8.tflite").is_file()
    by_shape = edgeopt.deploy(Tiny(), "arm-cortex-a78-xnnpack", input_shape=(1, 3, 8, 8), data=tmp_path / "d.npz",
                              out=tmp_path / "out2")
    assert by_shape.program.ops


def test_deploy_errors_are_one_line() -> None:
    with pytest.raises(ModelLoadError, match="needs example_input"):
        edgeopt.deploy(Tiny(), "arm-cortex-a78-xnnpack")
    with pytest.raises(ModelLoadError, match="not int"):
        edgeopt.deploy(42, "arm-cortex-a78-xnnpack")  # type: ignore[arg-type]
