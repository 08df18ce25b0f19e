"""`--target host`: the int8 and fp32 .tflite timed on this machine with LiteRT + XNNPACK, in deploy and compare."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgeopt.errors import DataError
from edgeopt.workflows.compare import compare
from edgeopt.workflows.deploy import deploy
from edgeopt.workflows.measure import MeasureOptions, measure_on_host
from tests.builders.cli import assert_one_line_error
from tests.builders.onnx_models import conv_bn_relu6

QUICK = MeasureOptions(runs=7, min_seconds=0.0)


def test_deploy_on_host_times_both_files_of_the_example(tmp_path: Path) -> None:
    result = deploy(None, "arm-cortex-a78-xnnpack", out=tmp_path, target="host", measure=QUICK)
    measured = result.report["measured"]
    assert (measured["source"], measured["target"], measured["threads"], measured["statistic"]) == (
        "measured", "host", 1, "median")
    assert "LiteRT" in measured["tool"] and "XNNPACK" in measured["tool"]
    for precision in ("int8", "fp32"):
        assert measured["runs"][precision] >= 7
        spread = measured["spread_ms"][precision]
        assert spread["min"] <= spread["p10"] <= spread["p50"] <= spread["p90"] <= spread["max"]
        assert measured["latency_ms"][precision] == spread["p50"] > 0
        assert measured["fps"][precision] == pytest.approx(1e3 / measured["latency_ms"][precision], rel=1e-3)
    # XNNPACK takes the whole float program, but leaves the int8 AVERAGE_POOL_2D to LiteRT's own kernels
    (int8,), (fp32,) = measured["delegates"]["int8"], measured["delegates"]["fp32"]
    assert (int8["replaced"], int8["total"], int8["partitions"], int8["kept"]) == (9, 10, 2, ["AVERAGE_POOL_2D"])
    assert (fp32["replaced"], fp32["total"], fp32["executes"]) == (10, 10, "all")
    assert json.loads((tmp_path / "report.json").read_text())["measured"] == measured


def test_host_timing_honours_threads_and_min_seconds(tmp_path: Path) -> None:
    deploy(None, "arm-cortex-a78-xnnpack", out=tmp_path)
    models = {"int8": tmp_path / "model.int8.tflite", "fp32": tmp_path / "model.fp32.tflite"}
    measured = measure_on_host(models, MeasureOptions(runs=3, min_seconds=0.05, threads=2))
    assert measured["threads"] == 2
    for precision in ("int8", "fp32"):  # a tiny model: 0.05 s takes far more than 3 runs
        assert measured["runs"][precision] > 3
        # The timed runs add up to 50 ms or more; the reported mean is rounded to 1e-6 ms, so their sum
        # rebuilt from it may be short by up to runs * 5e-7 ms (11671 runs of 0.004284 ms: 49.998).
        runs, mean = measured["runs"][precision], measured["spread_ms"][precision]["mean"]
        assert runs * (mean + 5e-7) >= 50


def _two_models(tmp_path: Path) -> tuple[Path, Path, Path]:
    rng = np.random.default_rng(0)
    paths = []
    for name, cout in (("wide.onnx", 16), ("narrow.onnx", 4)):
        paths.append(tmp_path / name)
        paths[-1].write_bytes(conv_bn_relu6(rng, cout=cout).SerializeToString())
    np.savez(tmp_path / "d.npz", x=rng.normal(size=(32, 3, 8, 8)).astype(np.float32), y=rng.integers(0, 10, 32))
    return paths[0], paths[1], tmp_path / "d.npz"


def test_cli_compare_on_host_prints_ratios_and_writes_compare_json(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from edgeopt.cli import app

    wide, narrow, data = _two_models(tmp_path)
    result = CliRunner().invoke(app, ["compare", str(wide), str(narrow), "--data", str(data), "--target", "host",
                                      "--runs", "5", "--min-seconds", "0", "--range-method", "percentile",
                                      "--out", str(tmp_path / "cmp")])
    assert result.exit_code == 0, result.output
    assert all(len(line) <= 80 for line in result.stdout.splitlines()), result.stdout
    assert "fps fp32 (measured)" in result.stdout and "ratio" in result.stdout
    summary = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    reports = [json.loads((Path(m["out_dir"]) / "report.json").read_text()) for m in summary["models"]]
    assert [m["name"] for m in summary["models"]] == ["wide", "narrow"] and summary["target"] == "host"
    rows = {row["key"]: row for row in summary["rows"]}
    assert rows["macs"]["values"] == [reports[0]["macs"], reports[1]["macs"]]
    assert rows["macs"]["ratios"] == [round(reports[1]["macs"] / reports[0]["macs"], 4)]
    for key in ("fps_int8_measured", "fps_fp32_measured", "params", "int8_tflite_kib", "top1_int8",
                "fps_int8_estimate", "energy_mj_int8_estimate"):
        base, other = rows[key]["values"]
        assert rows[key]["ratios"] == [round(other / base, 4)], key
    assert rows["fps_fp32_measured"]["values"][1] == reports[1]["measured"]["fps"]["fp32"]
    assert f"{rows['macs']['ratios'][0]:.3f}" in result.stdout
    assert all(r["calibration"]["n"] == 32 and r["measured"]["runs"]["fp32"] >= 5 for r in reports)


def test_compare_checks_every_models_data_before_deploying_the_first(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from edgeopt.cli import app

    wide, _narrow, data = _two_models(tmp_path)
    four = tmp_path / "four_channels.onnx"
    four.write_bytes(conv_bn_relu6(np.random.default_rng(1), cin=4).SerializeToString())
    with pytest.raises(DataError, match=r"^model '.*four_channels.onnx': .*d.npz"):
        compare([str(wide), str(four)], "arm-cortex-a78-xnnpack", out=tmp_path / "cmp", data=data)
    assert not (tmp_path / "cmp").exists()
    result = CliRunner().invoke(app, ["compare", str(wide), str(four), "--data", str(data), "--out",
                                      str(tmp_path / "cmp")])
    assert_one_line_error(result, 5, "four_channels.onnx", "needs [N, 4,")
    assert not (tmp_path / "cmp").exists()


def test_compare_replaces_an_earlier_compare_and_refuses_other_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                                     ) -> None:
    import edgeopt.workflows.compare as compare_module
    from edgeopt.errors import OutputError

    wide, narrow, data = _two_models(tmp_path)
    out = tmp_path / "cmp"
    compare([str(wide), str(narrow), str(wide)], "arm-cortex-a78-xnnpack", out=out, data=data)
    assert (out / "2-wide" / "report.json").is_file()
    compare([str(narrow), str(wide)], "arm-cortex-a78-xnnpack", out=out, data=data)
    assert sorted(p.name for p in out.iterdir()) == ["0-narrow", "1-wide", "compare.json", "report.html"]
    before = {p.name: p.stat().st_mtime_ns for p in out.rglob("*")}
    real = compare_module.deploy_with

    def interrupted_at_the_second(spec, options, step=None):  # Ctrl-C while the second model deploys
        if options.out.name.startswith("1-"):
            raise KeyboardInterrupt
        return real(spec, options, step)

    monkeypatch.setattr(compare_module, "deploy_with", interrupted_at_the_second)
    with pytest.raises(KeyboardInterrupt):
        compare([str(wide), str(narrow), str(narrow)], "arm-cortex-a78-xnnpack", out=out, data=data)
    assert {p.name: p.stat().st_mtime_ns for p in out.rglob("*")} == before  # the earlier set, untouched
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".cmp.")]
    monkeypatch.undo()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(OutputError, match="notes.txt"):
        compare([str(wide), str(narrow)], "arm-cortex-a78-xnnpack", out=out, data=data)
    assert (out / "notes.txt").read_text() == "mine" and (out / "0-narrow").is_dir()
