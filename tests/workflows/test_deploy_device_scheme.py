"""deploy and emulate on a profile whose device quantizes weights asymmetrically (SNPE's DSP): the .tflite
ships symmetric weights, and both give two accuracies, the shipped program's and the device scheme's
(emulated), saying which is which."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import onnx
from rich.console import Console
from typer.testing import CliRunner

from edgeopt.cli import app

from edgeopt.pipeline.frontend.tflite import tflite_to_program
from edgeopt.pipeline.report import render
from edgeopt.pipeline.report.precision import render_precision
from edgeopt.workflows.deploy import deploy
from edgeopt.workflows.emulate import emulate
from tests.builders import one_sided


def _data(tmp_path: Path) -> Path:
    x = one_sided.images(3, 48)
    path = tmp_path / "data.npz"
    np.savez(path, x=x, y=np.random.default_rng(0).integers(0, 512, len(x)))
    return path


def test_both_accuracies_are_reported_and_the_tflite_stays_symmetric(tmp_path: Path) -> None:
    model = tmp_path / "one_sided.onnx"
    onnx.save(one_sided.one_sided_model(), model)
    data = _data(tmp_path)
    report = deploy(str(model), "snapdragon-845-hexagon-dsp", data=str(data), out=tmp_path / "dsp").report
    acc = report["accuracy"]
    assert set(acc["device_scheme"]) == {"int8", "agreement"} and acc["n"] == 48
    assert 0 <= acc["device_scheme"]["agreement"] <= 100
    weights = report["precision"]["weights"]
    assert weights["accuracy_of"] == "shipped" and "emulated" in weights["device_accuracy"]
    program = tflite_to_program(Path(report["artifacts"]["tflite"]).read_bytes(), "model.int8.tflite", "double")
    assert all(not np.any(program.tensor(op.inputs[1]).qparams.zero_point)
               for op in program.ops if op.kind == "CONV_2D")
    console = Console(file=io.StringIO(), width=400)
    render(report, console)
    render_precision(report, console)
    text = console.file.getvalue()
    assert "device scheme (emulated)" in text and "int8 is the shipped .tflite's (symmetric weights)" in text
    assert "'device scheme' the device's weights emulated" in text
    assert "device scheme (asymmetric weights, emulated" in Path(report["artifacts"]["html"]).read_text()

    other = deploy(str(model), "arm-cortex-a78-xnnpack", data=str(data), out=tmp_path / "a78").report
    assert "device_scheme" not in other["accuracy"] and "weights" not in other["precision"]

    # emulate on the written file: the file's own top-1, and its weights on the device's grid
    tflite = report["artifacts"]["tflite"]
    result = emulate(tflite, data, device="snapdragon-845-hexagon-dsp")
    assert result.top1 is not None and result.device_top1 is not None
    assert any("device scheme" in note for note in result.notes)
    assert emulate(tflite, data, device="arm-cortex-a78-xnnpack").device_top1 is None
    out = CliRunner().invoke(app, ["emulate", tflite, "--data", str(data), "--device", "snapdragon-845-hexagon-dsp"],
                             catch_exceptions=False)
    assert out.exit_code == 0 and f"top-1, device scheme (emulated): {result.device_top1:.2f} %" in out.output
