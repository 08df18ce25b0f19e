"""A spatial subsample (``x[:, :, ::2, ::2]``, ResNet's option-A shortcut) lowers as a 1x1 depthwise conv
that XNNPACK delegates, with exactly the values the STRIDED_SLICE it replaces gives."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import edgeopt.pipeline.lower as lower_module
from edgeopt.pipeline.evaluate import quantize_input
from edgeopt.runtimes.litert import LiteRT
from edgeopt.runtimes.reference.executor import run_program
from tests.builders.torch_export import deployed, export, normal_data, run_bitexact


class OptionA(nn.Module):
    """A residual block whose shortcut subsamples and zero-pads channels (He et al. 2016, option A)."""

    def __init__(self, start: int = 0) -> None:
        super().__init__()
        self.start = start
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.down = nn.Conv2d(4, 8, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.stem(x))
        shortcut = nn.functional.pad(x[:, :, self.start::2, self.start::2], (0, 0, 0, 0, 2, 2))
        return torch.relu(self.down(x) + shortcut)


def _kinds(program) -> list[str]:
    return [op.kind for op in program.ops]


@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
@pytest.mark.parametrize("size", [8, 7])
def test_subsample_lowers_as_depthwise_conv_with_the_slices_values(exporter: str, size: int, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    shape = (1, 3, size, size)
    model, data = export(OptionA().eval(), shape, exporter), normal_data(0, 16, shape)
    (tmp_path / "dw").mkdir()
    (tmp_path / "slice").mkdir()
    result, program = deployed(model, data, tmp_path / "dw")
    kinds = _kinds(program)
    assert "STRIDED_SLICE" not in kinds and kinds.count("DEPTHWISE_CONV_2D") == 1  # both axes' slices in one
    q = quantize_input(program, data)
    got = run_bitexact(result, program, q)

    monkeypatch.setattr(lower_module, "subsample_as_depthwise", lambda ops, tensors, outputs: ops)
    _, sliced = deployed(model, data, tmp_path / "slice")
    assert "STRIDED_SLICE" in _kinds(sliced)
    np.testing.assert_array_equal(got, run_program(sliced, [q])[0])

    delegation = LiteRT(result.out_dir / "model.int8.tflite", kernels="default").delegation()
    assert "STRIDED_SLICE" not in delegation.kept and "DEPTHWISE_CONV_2D" not in delegation.kept
    fp32 = LiteRT(result.out_dir / "model.fp32.tflite", kernels="default")
    assert fp32.delegation().kept == ()


def test_subsample_from_an_offset_stays_a_strided_slice(tmp_path: Path) -> None:
    shape = (1, 3, 8, 8)
    _, program = deployed(export(OptionA(start=1).eval(), shape, "torchscript"), normal_data(0, 16, shape), tmp_path)
    assert "STRIDED_SLICE" in _kinds(program) and "DEPTHWISE_CONV_2D" not in _kinds(program)
