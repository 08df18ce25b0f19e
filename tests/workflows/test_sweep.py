"""``edgeopt sweep``: every device x precision x recipe deployed into its own folder, in-process without Ray and
on a local Ray with two workers with the same results; a combination that fails is its row, not the end."""
from __future__ import annotations

import json
import re
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgeopt.cli import app
from edgeopt.errors import (
    DeviceError,
    OptionError,
    OutputError,
    ProfileError,
    RegistryError,
)
from edgeopt.workflows.sweep import sweep
from tests.builders.paths import PROFILES

DEVICES = ["host", "arm-ethos-u55-vela"]
SAME = ("name", "device", "precision", "recipe", "status", "error", "error_kind", "precision_mode", "accuracy",
        "latency_ms", "fps", "energy_mj", "macs", "int8_tflite_bytes")
runner = CliRunner()


def _asymmetric_weights_profile(folder: Path) -> Path:
    """The host profile asking for asymmetric weights, a rule no TFLite int8 kernel can follow: deploy refuses it."""
    text = (PROFILES / "host.toml").read_text()
    params = "[quantization.defaults.params]\nis_quantized = true\nis_symmetric = true"
    assert params in text
    path = folder / "asymmetric-weights.toml"
    path.write_text(text.replace(params, params.removesuffix("true") + "false"))
    return path


@pytest.fixture(scope="module")
def bad_profile(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _asymmetric_weights_profile(tmp_path_factory.mktemp("profiles"))


@pytest.fixture(scope="module")
def in_process(tmp_path_factory: pytest.TempPathFactory, bad_profile: Path) -> tuple[Path, object]:
    """``edgeopt sweep`` on the built-in example with Ray's import made to fail: 3 profiles (one refused) x 2
    precisions, one by one in this process."""
    out = tmp_path_factory.mktemp("sweep") / "out"
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError, as where it is not installed
        result = runner.invoke(app, ["sweep", "--devices", ",".join([DEVICES[0], str(bad_profile), DEVICES[1]]),
                                     "--precisions", "w8a8,w8a16", "--out", str(out)])
    return out, result


def test_without_ray_every_combination_runs_in_process_and_a_refused_one_is_its_row(in_process) -> None:
    out, result = in_process
    assert result.exit_code == 0, result.output
    report = json.loads((out / "sweep.json").read_text())
    assert report["engine"]["name"].startswith("in-process")
    rows = report["combinations"]
    assert [r["name"] for r in rows] == [f"{d}-{p}-minmax" for d in (DEVICES[0], "asymmetric-weights", DEVICES[1])
                                         for p in ("w8a8", "w8a16")]
    failed = [r for r in rows if r["status"] == "failed"]
    assert [r["name"] for r in failed] == ["asymmetric-weights-w8a8-minmax", "asymmetric-weights-w8a16-minmax"]
    assert all(r["error_kind"] == "ProfileError" and "is_symmetric = false" in r["error"] and r["exit_code"] == 6
               for r in failed)
    ok = [r for r in rows if r["status"] == "ok"]
    for r in ok:  # each combination deployed into its own folder, as deploy writes it
        folder = out / r["name"]
        deployed = json.loads((folder / "report.json").read_text())
        assert r["out"] == str(folder) and (folder / "model.int8.tflite").is_file()
        assert deployed["device"] == r["device"] and deployed["accuracy"] == r["accuracy"]
        assert r["latency_ms"] == deployed["latency_ms"]["int8"] and r["accuracy"]["int8"] > 90
    assert {r["precision_mode"] for r in ok} == {"w8a8", "w8a16"}
    assert not list(out.glob("asymmetric-weights-*/*"))  # a refused deploy writes nothing
    # the table fits 80 columns; each failure is one line below it
    lines = result.stdout.splitlines()
    table = [line for line in lines if line[:1] in "┏┃┡│└"]
    assert len(table) >= 3 + len(rows) and max(map(len, table)) <= 80
    assert sum(line.startswith("failed asymmetric-weights-w8a") for line in lines) == 2
    assert "4 of 6 combinations deployed" in result.stdout


def test_the_page_plots_accuracy_against_latency_and_links_every_deployed_combination(in_process) -> None:
    out, _ = in_process
    html = (out / "report.html").read_text()
    rows = json.loads((out / "sweep.json").read_text())["combinations"]
    svg = ET.fromstring(re.search(r"<svg.*?</svg>", html, flags=re.DOTALL).group(0))
    points = [g for g in svg.iter("{http://www.w3.org/2000/svg}g") if g.get("id", "").startswith("point-")]
    assert len(points) == 4  # the deployed ones; the failed ones are listed, not drawn
    for r in rows:
        if r["status"] == "ok":
            assert f'href="{r["name"]}/report.html"' in html
            assert f"{r['latency_ms']:.3f}" in html
    failed = re.search(r'<ul id="failed">(.*?)</ul>', html, flags=re.DOTALL).group(1)
    assert failed.count("<li>") == 2 and failed.count("is_symmetric = false") == 2
    assert not re.search(r'<(script|link|img|iframe)[^>]*(src|href)=', html)


def test_a_sweep_whose_every_combination_fails_exits_with_their_error(tmp_path: Path, bad_profile: Path) -> None:
    result = runner.invoke(app, ["sweep", "--devices", str(bad_profile), "--precisions", "w8a8", "--no-ray",
                                 "--out", str(tmp_path / "out")])
    assert result.exit_code == 6, result.output
    assert json.loads((tmp_path / "out" / "sweep.json").read_text())["combinations"][0]["status"] == "failed"


def test_names_are_checked_before_anything_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ProfileError, match="no-such-phone"):
        sweep(None, ["host", "no-such-phone"], out=tmp_path)
    with pytest.raises(RegistryError, match="precision w4a4 unknown"):
        sweep(None, ["host"], ["w4a4"], out=tmp_path)
    with pytest.raises(RegistryError, match="recipe qat unknown"):
        sweep(None, ["host"], ["w8a8"], ["qat"], out=tmp_path)
    with pytest.raises(OptionError, match="drop --no-ray"):
        sweep(None, ["host"], out=tmp_path, use_ray=False, address="auto")
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(OutputError, match="notes.txt"):
        sweep(None, ["host"], out=tmp_path, use_ray=False)
    (tmp_path / "notes.txt").unlink()
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(DeviceError, match=r"pip install 'edgeopt\[ray\]'"):
        sweep(None, ["host"], out=tmp_path, use_ray=True)
    assert not list(tmp_path.iterdir())


@pytest.fixture
def local_ray() -> Iterator[object]:
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield ray
    finally:
        ray.shutdown()


def test_on_a_local_ray_with_two_workers_the_rows_and_files_are_the_in_process_ones(
        in_process, local_ray, bad_profile: Path, tmp_path: Path) -> None:
    result = sweep(None, [DEVICES[0], str(bad_profile), DEVICES[1]], ["w8a8", "w8a16"], out=tmp_path / "out")
    assert result.report["engine"]["name"] == "ray" and result.report["engine"]["cpus"] == 2
    assert local_ray.is_initialized()  # the caller's Ray: used, not stopped
    reference = json.loads((in_process[0] / "sweep.json").read_text())["combinations"]
    assert [{k: r.get(k) for k in SAME} for r in result.rows] == [{k: r.get(k) for k in SAME} for r in reference]
    for r in result.rows:
        if r["status"] == "ok":
            assert (Path(r["out"]) / "model.int8.tflite").read_bytes() == \
                (in_process[0] / r["name"] / "model.int8.tflite").read_bytes()


def test_the_auto_recipe_is_the_deploy_with_max_drop(tmp_path: Path) -> None:
    result = sweep(None, ["host"], ["w8a8"], ["auto"], out=tmp_path, max_drop=5.0, recipe_samples=100,
                   use_ray=False)
    (row,) = result.rows
    deployed = json.loads((tmp_path / "host-w8a8-auto" / "report.json").read_text())
    assert row["status"] == "ok" and row["recipe_met"] is True
    assert row["recipe_chosen"] == deployed["recipe_budget"]["chosen"] == deployed["recipe"][0]["step"]
    assert deployed["recipe_budget"]["max_drop"] == 5.0 and result.report["max_drop"] == 5.0
