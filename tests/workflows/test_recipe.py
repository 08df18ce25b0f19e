"""The automatic recipe: stops at the first step within budget; an impossible budget tries every step."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from edgeopt.cli import app
from edgeopt.workflows.recipe import builder as recipe_builder
from edgeopt.pipeline.frontend.onnx import onnx_to_graph
from edgeopt.pipeline.optimize import optimize
from edgeopt.pipeline.quantize.adaround import AdaRoundConfig
from edgeopt.workflows.recipe import run_recipe
from tests.builders.onnx_models import conv_bn_relu6
from tests.builders.target import spec_target

ALL_STEPS = ["min/max", "+ CLE", "+ bias correction", "ranges: percentile", "ranges: mse", "ranges: sqnr",
             "+ AdaRound", "+ fine-tuning"]


def test_recipe_stops_at_min_max_when_it_meets_the_budget(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    model = tmp_path / "small.onnx"
    model.write_bytes(conv_bn_relu6(rng).SerializeToString())
    data = tmp_path / "data.npz"
    np.savez(data, x=rng.normal(size=(32, 3, 8, 8)).astype(np.float32), y=rng.integers(0, 10, 32))
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["deploy", str(model), "--data", str(data), "--out", str(out),
                                      "--max-drop", "100"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert [s["step"] for s in report["recipe"]] == ["min/max"]
    assert set(report["recipe"][0]) == {"step", "int8", "drop", "drop_se", "seconds", "latency_ms", "adopted"}
    assert report["recipe"][0]["adopted"] and report["recipe"][0]["latency_ms"] > 0
    assert report["recipe_budget"]["latency_ms"] == report["recipe"][0]["latency_ms"]
    assert "recipe_mixed_precision" not in report
    assert report["recipe_budget"]["met"] and report["recipe_budget"]["chosen"] == "min/max"
    # Selected on the first half of --data; the second half is held out; all of --data is both halves.
    budget = report["recipe_budget"]
    assert budget["tuned_on"] == "the first 16 of 32 --data samples"
    assert budget["held_out"]["source"] == "the last 16 --data samples" and budget["held_out"]["samples"] == 16
    both = (report["recipe"][0]["int8"] + budget["held_out"]["int8"]) / 2
    assert report["accuracy"]["int8"] == pytest.approx(both)  # the recipe's own runs
    # The budget is judged on the held-out half and on both halves too, each with its paired error.
    held, combined = budget["held_out"], budget["held_out"]["combined"]
    assert held["met"] == (held["drop"] <= 100) and held["drop_se"] >= 0
    assert combined["samples"] == 32 and combined["met"]
    assert combined["drop"] == pytest.approx(report["accuracy"]["fp32"] - report["accuracy"]["int8"])
    assert "automatic recipe" in result.output and "not selected on" in result.output
    assert "budget met on the tuning samples" in result.output
    assert "on the tuning and held-out samples together (32)" in result.output
    html = (out / "report.html").read_text()
    assert "Budget met on the tuning samples" in html and "on both together (32)" in html


def test_tune_data_holds_out_all_of_data(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    model = tmp_path / "small.onnx"
    model.write_bytes(conv_bn_relu6(rng).SerializeToString())
    np.savez(tmp_path / "data.npz", x=rng.normal(size=(24, 3, 8, 8)).astype(np.float32), y=rng.integers(0, 10, 24))
    np.savez(tmp_path / "tune.npz", x=rng.normal(size=(8, 3, 8, 8)).astype(np.float32), y=rng.integers(0, 10, 8))
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["deploy", str(model), "--data", str(tmp_path / "data.npz"), "--tune-data",
                                      str(tmp_path / "tune.npz"), "--out", str(out), "--max-drop", "100"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    budget = report["recipe_budget"]
    assert budget["tuned_on"] == "all 8 --tune-data samples" and budget["held_out"]["samples"] == 24
    assert report["accuracy"]["int8"] == pytest.approx(budget["held_out"]["int8"])


def test_impossible_budget_tries_every_step_and_warns_once(caplog: pytest.LogCaptureFixture) -> None:
    rng = np.random.default_rng(1)
    graph = optimize(onnx_to_graph(conv_bn_relu6(rng), "small"))
    calib = rng.normal(size=(32, 3, 8, 8)).astype(np.float32)
    x = rng.normal(size=(48, 3, 8, 8)).astype(np.float32)
    with caplog.at_level(logging.WARNING, logger="edgeopt"):
        # Without labels the metric is agreement with fp32 (100 %): a negative drop cannot be met.
        result = run_recipe(graph, calib, x, None, target=spec_target(), max_drop=-1.0,
                            adaround_config=AdaRoundConfig(iterations=40, samples=32))
    names = [s.step for s in result.steps]
    assert names[:len(ALL_STEPS)] == ALL_STEPS
    assert names[len(ALL_STEPS)] == "mixed precision: 1 layer" and names[-1].startswith("mixed precision: all ")
    assert result.mixed_precision is not None and len(result.steps[-1].promoted) == len(result.mixed_precision.candidates)
    assert not result.met and result.metric == "top1_agreement"
    assert result.chosen in names
    best = max(s.int8 for s in result.steps)
    assert next(s for s in result.steps if s.step == result.chosen).int8 == best
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "missed the budget" in warnings[0].getMessage()
    assert all(s.drop == pytest.approx(100.0 - s.int8) for s in result.steps)


def _small_recipe(x: np.ndarray, **kwargs):
    rng = np.random.default_rng(1)
    graph = optimize(onnx_to_graph(conv_bn_relu6(rng), "small"))
    return run_recipe(graph, x[:32], x, None, target=spec_target(),
                      adaround_config=AdaRoundConfig(iterations=40, samples=32), **kwargs)


def test_steps_are_screened_on_a_subset_and_the_chosen_one_scored_on_all() -> None:
    x = np.random.default_rng(2).normal(size=(48, 3, 8, 8)).astype(np.float32)
    result = _small_recipe(x, max_drop=-1.0, screen_samples=16)
    assert result.screening is not None
    assert (result.screening.samples, result.screening.total) == (16, 48)
    assert len(result.int8_out) == 48 and all(s.confirmed is None for s in result.steps)
    budget = result.report()["recipe_budget"]["screening"]
    assert budget["samples"] == 16 and budget["total"] == 48 and 0 <= budget["int8_all"] <= 100
    assert _small_recipe(x, max_drop=-1.0, screen_samples=0).screening is None  # 0: every sample


def test_a_step_within_budget_on_the_subset_must_also_be_within_budget_on_all_samples(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """min/max's outputs on the samples past the screening subset are made wrong: it passes the screen,
    fails the confirmation (which runs only the 32 samples past the screen). + CLE changes nothing in this
    one-conv net: its program is min/max's, byte for byte, so it is not run again and fails the same way;
    + bias correction passes both."""
    x = np.random.default_rng(2).normal(size=(48, 3, 8, 8)).astype(np.float32)
    real, runs = recipe_builder.run_int8, []

    def run_int8(program, data):
        out = real(program, data)
        runs.append(len(data))
        if len(data) == 32 and runs.count(32) == 1:  # min/max's confirmation run, past the screen
            out = -out  # argmax becomes the old argmin: disagrees with fp32
        return out

    monkeypatch.setattr(recipe_builder, "run_int8", run_int8)
    result = _small_recipe(x, max_drop=40.0, screen_samples=16)
    first, same, third = result.steps
    assert [s.step for s in result.steps] == ["min/max", "+ CLE", "+ bias correction"]
    assert first.drop <= 40.0 and first.confirmed is not None and 100 - first.confirmed > 40.0
    assert same.same_as == "min/max" and same.confirmed == first.confirmed
    assert third.same_as is None and third.confirmed is not None and 100 - third.confirmed <= 40.0
    assert runs == [16, 32, 16, 32]  # screen and rest for min/max and bias correction; nothing for + CLE
    assert result.met and result.chosen == "+ bias correction"
    assert result.screening is not None and result.screening.int8_all == third.confirmed
