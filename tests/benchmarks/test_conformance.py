"""The conformance harness's per-file check on a tiny TorchScript export (no torchvision/timm/transformers)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from benchmarks.conformance import Row, check_file, export_onnx, markdown_table, random_data, summary


class TinyNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.fc = nn.Linear(8, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.conv(x)).mean(dim=(2, 3))
        return self.fc(y)


def test_check_file_fills_every_field_of_a_deployed_row(tmp_path: Path) -> None:
    torch.manual_seed(0)
    path = tmp_path / "tiny.onnx"
    export_onnx(TinyNet().eval(), (torch.randn(1, 3, 8, 8),), "ts17", path)
    stages: list[Row] = []
    row = check_file(path, Row("tiny", "ts17"), tmp_path, progress=lambda r: stages.append(Row(**vars(r))))
    assert row.error is None, row.error
    assert (row.loads, row.deploys, row.litert_loads, row.bitexact) == (True, True, True, True)
    assert row.sqnr_db is not None and row.sqnr_db > 15
    assert row.seconds is not None and row.peak_rss_mb is not None and row.peak_rss_mb > 0
    # reported stage by stage, each marked False while it runs (what a parent sees if the child dies)
    assert [(s.loads, s.deploys, s.litert_loads) for s in stages[:4]] == [
        (False, None, None), (True, None, None), (True, False, None), (True, True, None)]
    assert "1 of 1 ONNX files deploy; 1 of 1 bit-exact" in summary([row])
    assert "| tiny | ts17 | yes | yes | yes | yes |" in markdown_table([row])


def test_a_failure_is_one_line_in_the_row(tmp_path: Path) -> None:
    path = tmp_path / "broken.onnx"
    path.write_bytes(b"not an onnx file")
    row = check_file(path, Row("broken", "ts17"), tmp_path)
    assert row.loads is False and row.deploys is None
    assert row.error is not None and "\n" not in row.error and row.error.split(":")[0].isidentifier()


def test_random_data_makes_token_ids_and_masks_for_integer_inputs(tmp_path: Path) -> None:
    class TwoInputs(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Embedding(100, 4)

        def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            return self.embed(ids) * mask.unsqueeze(-1)

    path = tmp_path / "two.onnx"
    export_onnx(TwoInputs().eval(), (torch.zeros(1, 8, dtype=torch.int64), torch.ones(1, 8, dtype=torch.int64)),
                "ts17", path)
    data = random_data(path, 3, np.random.default_rng(0))
    assert list(data) == ["input_ids", "attention_mask"]
    assert data["input_ids"].shape == (3, 8) and data["input_ids"].dtype == np.int64
    assert data["attention_mask"][:, :6].all() and not data["attention_mask"][:, 6:].any()
