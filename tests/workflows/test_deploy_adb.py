"""`deploy --target adb:HOST:PORT` end to end against the loopback test device (real ADB wire protocol)."""
from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgeopt.errors import DeviceError
from edgeopt.workflows.deploy import deploy
from edgeopt.workflows.measure import parse_target
from edgeopt.runtimes.android import ensure_adb_key
from tests.adb_device import Faults, TestDevice


@pytest.fixture
def user_key() -> Path:
    """The user's adb key, in the ANDROID_USER_HOME the conftest isolates."""
    return ensure_adb_key()


@pytest.fixture
def device(tmp_path: Path, user_key: Path) -> Iterator[TestDevice]:
    with TestDevice(tmp_path / "phone", authorized_keys=[Path(f"{user_key}.pub").read_text()]) as dev:
        yield dev


def test_parse_target():
    assert parse_target("emulate").kind == "emulate"
    assert parse_target("adb").serial is None
    assert parse_target("adb:127.0.0.1:5555").serial == "127.0.0.1:5555"
    with pytest.raises(DeviceError, match="unknown target"):
        parse_target("ssh:phone")


def test_cli_deploy_measures_on_the_device_beside_the_estimate(tmp_path: Path, device: TestDevice):
    from typer.testing import CliRunner

    from edgeopt.cli import app

    result = CliRunner().invoke(app, ["deploy", "--device", "arm-cortex-a78-xnnpack", "--target",
                                      f"adb:{device.serial}", "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert "latency ms (measured" in result.stdout and "fuel gauge" in result.stdout
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    measured = report["measured"]
    assert measured["source"] == "measured" and report["latency_ms"]["source"] == "estimate"
    assert measured["target"] == f"adb:{device.serial}" and measured["latency_ms"]["int8"] > 0
    assert "--num_threads=1" in measured["command"] and "--use_xnnpack=true" in measured["command"]
    assert measured["energy_mj"]["int8"] > 0 and "fuel" in measured["energy_mj"]["note"]
    leftovers = device.sandbox.host_path("/data/local/tmp/edgeopt")
    assert not leftovers.exists() or not any(leftovers.rglob("*.tflite")), "pushed files must be cleaned up"


def test_a_missing_benchmark_binary_is_one_device_error_and_keeps_the_estimate(tmp_path: Path, user_key: Path):
    faults = Faults(benchmark="missing")
    with TestDevice(tmp_path / "phone", authorized_keys=[Path(f"{user_key}.pub").read_text()], faults=faults) as dev:
        with pytest.raises(DeviceError, match="benchmark_model"):
            deploy(None, "arm-cortex-a78-xnnpack", out=tmp_path / "out", target=f"adb:{dev.serial}")
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert "measured" not in report and report["latency_ms"]["source"] == "estimate"



def test_cli_devices_and_compare_measure_both_models(tmp_path: Path, device: TestDevice):
    import numpy as np
    from typer.testing import CliRunner

    from edgeopt.cli import app
    from tests.builders.onnx_models import conv_bn_relu6

    rng = np.random.default_rng(0)
    for name, cout in (("wide.onnx", 16), ("narrow.onnx", 4)):
        (tmp_path / name).write_bytes(conv_bn_relu6(rng, cout=cout).SerializeToString())
    np.savez(tmp_path / "d.npz", x=rng.normal(size=(32, 3, 8, 8)).astype(np.float32), y=rng.integers(0, 10, 32))
    runner = CliRunner()
    listed = runner.invoke(app, ["devices", device.serial])
    assert listed.exit_code == 0 and device.serial in listed.stdout and " device " in listed.stdout
    result = runner.invoke(app, ["compare", str(tmp_path / "wide.onnx"), str(tmp_path / "narrow.onnx"),
                                 "--data", str(tmp_path / "d.npz"), "--target", f"adb:{device.serial}",
                                 "--out", str(tmp_path / "cmp")])
    assert result.exit_code == 0, result.output
    assert "fps int8 (measured)" in result.stdout and "(measured)" in result.stdout
    reports = [json.loads(p.read_text()) for p in sorted((tmp_path / "cmp").glob("*/report.json"))]
    assert [r["model"] for r in reports] == ["wide", "narrow"]
    assert all(r["measured"]["source"] == "measured" for r in reports)
    page = (tmp_path / "cmp" / "report.html").read_text()  # side by side, linking each model's own page
    assert 'href="0-wide/report.html"' in page and 'href="1-narrow/report.html"' in page
    assert all((tmp_path / "cmp" / d / "report.html").is_file() for d in ("0-wide", "1-narrow"))
    measured_fps = f"{reports[0]['measured']['fps']['int8']:.1f}"
    assert measured_fps in page
