"""The command line: the example end to end, and bad input ending in one clear line with no artifact."""
from __future__ import annotations

import json
import tomllib
from pathlib import Path

import numpy as np
import pytest
from onnx import helper
from typer.testing import CliRunner

from edgeopt.cli import app
from tests.builders.cli import assert_one_line_error
from tests.builders.onnx_models import conv_bn_relu6, model

runner = CliRunner()


def _invoke(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)



@pytest.fixture
def onnx_model(tmp_path: Path) -> Path:
    path = tmp_path / "small.onnx"
    path.write_bytes(conv_bn_relu6(np.random.default_rng(0)).SerializeToString())
    return path


@pytest.fixture
def data_npz(tmp_path: Path) -> Path:
    rng = np.random.default_rng(1)
    path = tmp_path / "data.npz"
    np.savez(path, x=rng.normal(size=(64, 3, 8, 8)).astype(np.float32), y=rng.integers(0, 5, 64))
    return path


def test_profiles_list_and_show():
    listed = _invoke("profiles", "list")
    assert listed.exit_code == 0 and "arm-cortex-a78-xnnpack" in listed.stdout
    shown = _invoke("profiles", "show", "arm-cortex-a78-xnnpack")
    assert shown.exit_code == 0 and shown.stdout.startswith("# profile file:")
    assert tomllib.loads(shown.stdout)["name"] == "arm-cortex-a78-xnnpack" and "\n# " in shown.stdout  # its comments
    as_json = _invoke("profiles", "show", "arm-cortex-a78-xnnpack", "--json")
    assert as_json.exit_code == 0 and json.loads(as_json.stdout)["name"] == "arm-cortex-a78-xnnpack"


def test_deploy_example_end_to_end(tmp_path: Path):
    out = tmp_path / "out"
    result = _invoke("deploy", "--device", "arm-cortex-a78-xnnpack", "--out", str(out))
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    acc = report["accuracy"]
    assert acc["metric"] == "top1" and acc["n"] == 540
    assert acc["fp32"] > 95 and abs(acc["int8"] - acc["fp32"]) <= 1.0
    assert report["latency_ms"]["source"] == "estimate" and report["fps"]["int8"] > 0
    assert report["device"] == "arm-cortex-a78-xnnpack" and report["macs"] > 0
    for key in ("tflite", "onnx", "fp32_onnx", "report"):
        assert Path(report["artifacts"][key]).is_file()
    assert "top-1" in result.stdout


def test_deploy_onnx_with_data_and_default_calibration(tmp_path: Path, onnx_model: Path, data_npz: Path):
    out = tmp_path / "out"
    result = _invoke("deploy", str(onnx_model), "--data", str(data_npz), "--out", str(out))
    assert result.exit_code == 0, result.output
    assert "calibrating on the first 64 samples of --data" in result.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["calibration"]["n"] == 64 and report["accuracy"]["n"] == 64


def test_missing_model(tmp_path: Path):
    result = _invoke("deploy", str(tmp_path / "nope.onnx"), "--out", str(tmp_path / "out"))
    assert_one_line_error(result, 3, "does not exist")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("content", [b"", b"\x08\x07garbage" * 10, None], ids=["empty", "garbage", "truncated"])
def test_corrupt_model(tmp_path: Path, onnx_model: Path, data_npz: Path, content: bytes | None):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(onnx_model.read_bytes()[:200] if content is None else content)
    result = _invoke("deploy", str(bad), "--data", str(data_npz), "--out", str(tmp_path / "out"))
    assert_one_line_error(result, 3, "bad.onnx")
    assert not (tmp_path / "out").exists()


def test_unknown_profile(tmp_path: Path):
    result = _invoke("deploy", "--device", "pixel-99", "--out", str(tmp_path / "out"))
    assert_one_line_error(result, 6, "pixel-99", "arm-cortex-a78-xnnpack")


def test_unsupported_op_names_op_and_node(tmp_path: Path, data_npz: Path):
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv0", pads=[1, 1, 1, 1]),
             helper.make_node("Hardmax", ["c"], ["s"], name="gate"),
             helper.make_node("GlobalAveragePool", ["s"], ["y"], name="gap")]
    m = model(nodes, {"w": np.ones((4, 3, 3, 3), np.float32)}, [1, 3, 8, 8], [1, 4, 1, 1])
    path = tmp_path / "sig.onnx"
    path.write_bytes(m.SerializeToString())
    result = _invoke("deploy", str(path), "--data", str(data_npz), "--out", str(tmp_path / "out"))
    assert_one_line_error(result, 4, "Hardmax", "gate")
    assert not (tmp_path / "out").exists()


def test_data_without_x_or_with_wrong_shape(tmp_path: Path, onnx_model: Path):
    no_x = tmp_path / "no_x.npz"
    np.savez(no_x, images=np.zeros((2, 3, 8, 8), np.float32))
    assert_one_line_error(_invoke("deploy", str(onnx_model), "--data", str(no_x), "--out", str(tmp_path / "o")),
                           5, "no array 'x'")
    wrong = tmp_path / "wrong.npz"
    np.savez(wrong, x=np.zeros((2, 8, 8, 3), np.float32))
    assert_one_line_error(_invoke("deploy", str(onnx_model), "--data", str(wrong), "--out", str(tmp_path / "o")),
                           5, "(2, 8, 8, 3)", "[N, 3, 8, 8]")
    assert not (tmp_path / "o").exists()


def test_debug_shows_traceback(tmp_path: Path):
    with pytest.raises(Exception, match="does not exist"):
        runner.invoke(app, ["deploy", str(tmp_path / "nope.onnx"), "--debug"], catch_exceptions=False)


def test_bad_input_shape_is_a_usage_error():
    result = _invoke("deploy", "--input-shape", "1,x,3")
    assert result.exit_code == 2 and "1,3,32,32" in result.output


TORCH_MODULE = '''
import torch


class Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.bn = torch.nn.BatchNorm2d(4)
        self.fc = torch.nn.Linear(4, 5)

    def forward(self, x):
        x = torch.relu(self.bn(self.conv(x)))
        return self.fc(x.mean((2, 3)))


def build():
    torch.manual_seed(0)
    return Tiny().eval()


def build_with_example():
    return build(), torch.zeros(1, 3, 8, 8)
'''


@pytest.fixture
def torch_entry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "tinymodel.py").write_text(TORCH_MODULE)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def test_entry_point_with_input_shape_and_with_example(torch_entry: Path, data_npz: Path):
    result = _invoke("deploy", "tinymodel:build", "--input-shape", "1,3,8,8", "--data", str(data_npz))
    assert result.exit_code == 0, result.output
    report = json.loads((torch_entry / "edgeopt-out" / "build" / "report.json").read_text())
    assert report["model"] == "build" and report["accuracy"]["n"] == 64
    result = _invoke("deploy", "tinymodel:build_with_example", "--data", str(data_npz), "--out", "o2")
    assert result.exit_code == 0, result.output
    missing = _invoke("deploy", "tinymodel:build", "--data", str(data_npz))
    assert_one_line_error(missing, 3, "--input-shape")
    broken = _invoke("deploy", "tinymodel:nothing", "--input-shape", "1,3,8,8")
    assert_one_line_error(broken, 3, "tinymodel:nothing")


def test_exported_program_pt2(torch_entry: Path, data_npz: Path):
    import torch

    from tinymodel import build  # type: ignore[import-not-found]

    torch.export.save(torch.export.export(build(), (torch.zeros(1, 3, 8, 8),)), torch_entry / "tiny.pt2")
    result = _invoke("deploy", "tiny.pt2", "--data", str(data_npz))
    assert result.exit_code == 0, result.output
    assert (torch_entry / "edgeopt-out" / "tiny" / "model.int8.tflite").is_file()
