"""Mixed precision from the per-layer sensitivity: a planted sensitive layer is promoted first (int16 where
the profile allows, float where it does not), the budget is met, and the report and printout list it."""
from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console
from typer.testing import CliRunner

from edgeopt.cli import app
from edgeopt.workflows import deploy as deploy_mod
from edgeopt.workflows.recipe import mixed as recipe_mixed
from edgeopt.pipeline.quantize.mixed_precision import Promotion, promotion_plan, rank_promotions
from edgeopt.pipeline.frontend.onnx import onnx_to_graph
from edgeopt.pipeline.optimize import optimize
from edgeopt.pipeline.target import Target
from edgeopt.workflows.recipe import RecipeResult, run_recipe
from edgeopt.pipeline.report.recipe import render_recipe
from edgeopt.pipeline.quantize.sensitivity import LayerSensitivity
from tests.builders.target import spec_target
from tests.builders.recipe import BUDGET, FAST_ADAROUND, planted_data, planted_model


def _recipe(target: Target) -> RecipeResult:
    graph = optimize(onnx_to_graph(planted_model(), "planted"))
    return run_recipe(graph, planted_data(), planted_data(), None, target=target, max_drop=BUDGET, adaround_config=FAST_ADAROUND)


@pytest.fixture(scope="module")
def int16_result() -> RecipeResult:
    return _recipe(spec_target())


@pytest.fixture(scope="module")
def float_result() -> RecipeResult:
    return _recipe(spec_target(int8_only=("Conv",)))


def test_planted_layer_is_promoted_first_to_int16_and_meets_the_budget(int16_result: RecipeResult) -> None:
    r = int16_result
    assert r.met
    mp_steps = [s for s in r.steps if s.step.startswith("mixed precision")]
    assert not any(s.int8 >= 100 - BUDGET for s in r.steps if not s.promoted)  # only mixed precision meets it
    first = mp_steps[0]
    assert first.step == "mixed precision: 1 layer" and r.chosen == first.step
    assert [(p.node, p.to, p.kind) for p in first.promoted] == [("conv1", "int16", "activation")]
    assert first.promoted[0].also == ("conv2",)  # conv2 must read conv1's output in int16 too
    assert r.mixed_precision is not None
    assert r.mixed_precision.candidates[0] == first.promoted[0]
    # The ranking uses the sensitivity analysis's own numbers.
    conv1 = next(s for s in r.mixed_precision.sensitivity if (s.node, s.kind) == ("conv1", "activation"))
    assert first.promoted[0].sqnr_db == conv1.sqnr_db == r.mixed_precision.sensitivity[0].sqnr_db
    # The chosen program runs conv1 and conv2 with int16 activations.
    int16_sources = {op.source for op in r.program.ops if r.program.tensor(op.outputs[0]).dtype == "int16"}
    assert {"conv1", "conv2"} <= int16_sources


def test_profile_without_int16_for_the_layer_keeps_it_in_float(float_result: RecipeResult) -> None:
    r = float_result
    assert r.met
    first = next(s for s in r.steps if s.step.startswith("mixed precision"))
    assert [(p.node, p.to) for p in first.promoted] == [("conv1", "float")] and r.chosen == first.step
    assert {"conv1", "conv2"} <= r.qgraph.float_nodes
    assert not any(r.program.tensor(op.outputs[0]).dtype == "int16" for op in r.program.ops)


def test_report_lists_the_promotion_and_the_printout_shows_it(int16_result: RecipeResult) -> None:
    report = int16_result.report()
    steps = {s["step"]: s for s in report["recipe"]}
    assert steps["mixed precision: 1 layer"]["promoted"][0] == {
        "node": "conv1", "to": "int16", "kind": "activation", "with": ["conv2"],
        "sqnr_db": round(int16_result.mixed_precision.candidates[0].sqnr_db, 3)}
    assert all(isinstance(s["adopted"], bool) for s in report["recipe"])
    mp = report["recipe_mixed_precision"]
    assert [p["node"] for p in mp["promoted"]] == ["conv1"]
    assert mp["base_step"] in steps and steps[mp["base_step"]]["adopted"]
    console = Console(width=100, record=True)
    render_recipe(report, console)
    text = console.export_text()
    assert "mixed precision: 1 layer *" in text and "conv1 (with conv2) -> int16" in text
    assert "dropped" in text or all(s["adopted"] for s in report["recipe"])


def test_weight_sensitive_layer_goes_to_float_alone_and_float_wins_a_tie() -> None:
    graph = optimize(onnx_to_graph(planted_model(), "planted"))
    layers = [LayerSensitivity("conv2", "weights", 5.0, 50.0), LayerSensitivity("conv1", "activation", 9.0, 80.0),
              LayerSensitivity("conv2", "activation", 30.0, 99.0)]
    ranked = rank_promotions(graph, layers, int16_allowed=lambda op: True, float_allowed=True)
    assert [(p.node, p.to, p.kind, p.also) for p in ranked[:2]] == [
        ("conv2", "float", "weights", ()), ("conv1", "int16", "activation", ("conv2",))]
    assert promotion_plan(ranked[:2]) == {"conv2": "float", "conv1": "int16"}
    # Without float, a weight-sensitive layer can only gain int16 activations: ranked by its activation.
    no_float = rank_promotions(graph, layers, int16_allowed=lambda op: True, float_allowed=False)
    assert [(p.node, p.sqnr_db) for p in no_float] == [("conv1", 9.0), ("conv2", 30.0)]
    assert rank_promotions(graph, layers, int16_allowed=lambda op: False, float_allowed=False) == []
    # Nodes the base plan already keeps at higher precision are not candidates.
    assert "conv1" not in [p.node for p in rank_promotions(graph, layers, int16_allowed=lambda op: True,
                                                           float_allowed=True, base_plan={"conv1": "int16"})]
    assert Promotion("a", "int16", "activation", 1.0, ("b",)).nodes == ("a", "b")


def test_cli_reuses_the_recipe_sensitivity_and_reports_the_promotion(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def counted(original):
        @functools.wraps(original)
        def wrapper(*args, **kwargs):
            calls.append(original.__name__)
            return original(*args, **kwargs)
        return wrapper

    monkeypatch.setattr(deploy_mod, "run_recipe", functools.partial(run_recipe, adaround_config=FAST_ADAROUND))
    monkeypatch.setattr(recipe_mixed, "sensitivity_of", counted(recipe_mixed.sensitivity_of))
    monkeypatch.setattr(deploy_mod, "sensitivity_of", counted(deploy_mod.sensitivity_of))
    (tmp_path / "m.onnx").write_bytes(planted_model().SerializeToString())
    np.savez(tmp_path / "d.npz", x=planted_data())
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["deploy", str(tmp_path / "m.onnx"), "--data", str(tmp_path / "d.npz"),
                                      "--out", str(out), "--max-drop", str(BUDGET), "--sensitivity"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert calls == ["sensitivity_of"]  # measured once, by the recipe; the report reuses it
    report = json.loads((out / "report.json").read_text())
    assert report["recipe_budget"]["met"] and report["recipe_budget"]["chosen"] == "mixed precision: 1 layer"
    mp = report["recipe_mixed_precision"]
    assert [(p["node"], p["to"]) for p in mp["promoted"]] == [("conv1", "int16")]
    assert report["sensitivity"][0] == {**report["sensitivity"][0], "node": "conv1", "kind": "activation"}
    assert mp["promoted"][0]["sqnr_db"] == report["sensitivity"][0]["sqnr_db"]
    # The latency price is the cost model's: the chosen step's estimate minus its base's, as deployed.
    assert mp["latency_ms"] == pytest.approx(report["latency_ms"]["int8"], rel=1e-3)
    assert mp["latency_price_ms"] == pytest.approx(mp["latency_ms"] - mp["base_latency_ms"], abs=1e-3)
    assert "conv1 (with conv2) -> int16" in result.output and "for mixed precision" in result.output
    # The precision line says what the program holds (int16 conv1 and conv2 beside int8 ops) and why.
    precision = report["precision"]
    assert (precision["mode"], precision["source"]) == ("mixed", "profile default + recipe: 1 layer to int16")
    assert "precision mixed (profile default + recipe: 1 layer to int16): int16:" in result.output
