"""`deploy --target adb:HOST:PORT` end to end against the loopback test device (real ADB wire protocol):
the int8 and fp32 .tflite timed alike, energy per model, the pre-flight check before anything is written."""
from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.adb_device import Faults, TestDevice
from tests.builders.cli import assert_one_line_error

from edgeopt.errors import DeviceError
from edgeopt.runtimes.android import ensure_adb_key
from edgeopt.workflows.deploy import deploy
from edgeopt.workflows.measure import MeasureOptions, parse_target

QUICK = ["--runs", "5", "--min-seconds", "0.2"]


@pytest.fixture
def user_key() -> Path:
    """The user's adb key, in the ANDROID_USER_HOME the conftest isolates."""
    return ensure_adb_key()


@pytest.fixture
def device(tmp_path: Path, user_key: Path) -> Iterator[TestDevice]:
    with TestDevice(tmp_path / "phone", authorized_keys=[Path(f"{user_key}.pub").read_text()]) as dev:
        yield dev


def test_parse_target():
    assert parse_target("emulate").kind == "emulate" and parse_target("host").kind == "host"
    assert parse_target("adb").serial is None
    assert parse_target("adb:127.0.0.1:5555").serial == "127.0.0.1:5555"
    with pytest.raises(DeviceError, match="unknown target"):
        parse_target("ssh:phone")
    with pytest.raises(DeviceError, match="unknown target"):
        parse_target("host:2")
    with pytest.raises(DeviceError, match="--runs must be at least 1"):
        MeasureOptions(runs=0)


def test_cli_deploy_measures_on_the_device_beside_the_estimate(tmp_path: Path, device: TestDevice):
    from typer.testing import CliRunner

    from edgeopt.cli import app

    result = CliRunner().invoke(app, ["deploy", "--device", "arm-cortex-a78-xnnpack", "--target",
                                      f"adb:{device.serial}", "--out", str(tmp_path / "out"), *QUICK])
    assert result.exit_code == 0, result.output
    assert "latency ms (measured)" in result.stdout and "fuel gauge" in result.stdout
    text = " ".join(result.stdout.split())  # the console wraps long lines at 80 columns
    assert f"measured on adb:{device.serial}" in text and "median of the timed runs" in text
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    measured = report["measured"]
    assert measured["source"] == "measured" and report["latency_ms"]["source"] == "estimate"
    assert measured["target"] == f"adb:{device.serial}" and measured["statistic"] == "median"
    # the fp32 twin is pushed and benchmarked beside the int8 file, with the same options
    pushed = sorted(Path(p).name.split(".tflite")[0] for p in device.record.pushed)  # .NAME.tflite.HEX.part
    assert pushed == [".model.fp32", ".model.int8"]
    int8, fp32 = measured["command"]["int8"], measured["command"]["fp32"]
    assert "model.int8.tflite" in int8 and "model.fp32.tflite" in fp32
    assert int8.replace("int8", "fp32") == fp32 and "--num_threads=1" in int8 and "--use_xnnpack=true" in int8
    assert "--num_runs=5" in int8 and "--min_secs=0.2" in int8 and measured["runs"]["fp32"] >= 5
    for precision in ("int8", "fp32"):
        assert measured["latency_ms"][precision] > 0 and measured["fps"][precision] > 0
        spread = measured["spread_ms"][precision]
        assert spread["p5"] <= spread["p50"] <= spread["p95"] and spread["p50"] == measured["latency_ms"][precision]
        assert measured["energy_mj"][precision] > 0 and measured["energy_mj"]["uncertainty"][precision] >= 0
        (xnnpack,) = measured["delegates"][precision]  # parsed from what the stand-in's LiteRT really did
        assert xnnpack["name"] == "TfLiteXNNPackDelegate" and xnnpack["total"] == 10
    assert measured["delegates"]["int8"][0]["replaced"] == 9 and measured["delegates"]["fp32"][0]["replaced"] == 10
    assert "fuel" in measured["energy_mj"]["note"] and "delegates_note" not in measured
    leftovers = device.sandbox.host_path("/data/local/tmp/edgeopt")
    assert not leftovers.exists() or not any(leftovers.rglob("*.tflite")), "pushed files must be cleaned up"


def test_a_missing_benchmark_binary_fails_before_anything_is_written(tmp_path: Path, user_key: Path):
    from typer.testing import CliRunner

    from edgeopt.cli import app

    faults = Faults(benchmark="missing")
    with TestDevice(tmp_path / "phone", authorized_keys=[Path(f"{user_key}.pub").read_text()], faults=faults) as dev:
        with pytest.raises(DeviceError, match="benchmark_model not found"):
            deploy(None, "arm-cortex-a78-xnnpack", out=tmp_path / "out", target=f"adb:{dev.serial}")
        result = CliRunner().invoke(app, ["deploy", "--target", f"adb:{dev.serial}", "--out", str(tmp_path / "out")])
        assert_one_line_error(result, 7, "benchmark_model not found", "--benchmark-binary")
        assert not [s for s in dev.record.services if "--graph=" in s]  # checked, never run
    assert not (tmp_path / "out").exists()


def test_an_unreachable_device_fails_in_one_line_before_the_pipeline(tmp_path: Path):
    from typer.testing import CliRunner

    from edgeopt.cli import app

    with socket.create_server(("127.0.0.1", 0)) as sock:
        port = sock.getsockname()[1]  # closed when the block ends: nothing listens there
    result = CliRunner().invoke(app, ["deploy", "--target", f"adb:127.0.0.1:{port}", "--out", str(tmp_path / "out")])
    assert_one_line_error(result, 7, f"cannot reach 127.0.0.1:{port}")
    assert "deploy:" not in result.stderr and not (tmp_path / "out").exists()
    result = CliRunner().invoke(app, ["compare", "a.onnx", "b.onnx", "--target", f"adb:127.0.0.1:{port}",
                                      "--out", str(tmp_path / "cmp")])
    assert_one_line_error(result, 7, f"cannot reach 127.0.0.1:{port}")  # before the models are even read
    assert not (tmp_path / "cmp").exists()


def test_a_build_that_names_no_delegate_says_so(tmp_path: Path, user_key: Path):
    faults = Faults(benchmark="quiet")
    with TestDevice(tmp_path / "phone", authorized_keys=[Path(f"{user_key}.pub").read_text()], faults=faults) as dev:
        result = deploy(None, "arm-cortex-a78-xnnpack", out=tmp_path / "out", target=f"adb:{dev.serial}",
                        measure=MeasureOptions(runs=3, min_seconds=0.1))
    measured = result.report["measured"]
    assert measured["delegates"] == {"int8": [], "fp32": []}
    assert "no delegate line for int8, fp32" in measured["delegates_note"] and "xnnpack" in measured["delegates_note"]



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
                                 "--out", str(tmp_path / "cmp"), *QUICK])
    assert result.exit_code == 0, result.output
    assert "fps int8 (measured)" in result.stdout and "fps fp32 (measured)" in result.stdout
    reports = [json.loads(p.read_text()) for p in sorted((tmp_path / "cmp").glob("*/report.json"))]
    assert [r["model"] for r in reports] == ["wide", "narrow"]
    assert all(r["measured"]["source"] == "measured" for r in reports)
    page = (tmp_path / "cmp" / "report.html").read_text()  # side by side, linking each model's own page
    assert 'href="0-wide/report.html"' in page and 'href="1-narrow/report.html"' in page
    assert all((tmp_path / "cmp" / d / "report.html").is_file() for d in ("0-wide", "1-narrow"))
    measured_fps = f"{reports[0]['measured']['fps']['int8']:.1f}"
    assert measured_fps in page
    summary = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    rows = {row["key"]: row for row in summary["rows"]}
    assert summary["target"] == f"adb:{device.serial}"
    assert rows["energy_mj_fp32_measured"]["values"][1] == reports[1]["measured"]["energy_mj"]["fp32"]
