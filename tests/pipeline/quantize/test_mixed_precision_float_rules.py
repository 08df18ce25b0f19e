"""Mixed precision offers float only where a compute unit runs the node in float32 under the op's own rule:
a unit whose defaults allow fp32 but whose CONV_2D rule does not keeps the convolutions out of float."""
from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest

from edgeopt.device_profiles import load_profile
from edgeopt.workflows import deploy as deploy_mod
from edgeopt.pipeline.calibrate import calibrate
from edgeopt.workflows.deploy import deploy
from edgeopt.pipeline.lower import lower
from edgeopt.pipeline.quantize.mixed_precision import profile_runs_float, rank_promotions
from edgeopt.pipeline.frontend.onnx import onnx_to_graph
from edgeopt.pipeline.optimize import optimize
from edgeopt.pipeline.quantize.minmax import quantize_minmax
from edgeopt.workflows.recipe import run_recipe
from edgeopt.pipeline.quantize.sensitivity import LayerSensitivity
from tests.builders.recipe import BUDGET, FAST_ADAROUND, planted_data, planted_model
from tests.builders.paths import PROFILES

HOST = PROFILES / "host.toml"


def _profile(tmp_path: Path, conv_rule: str) -> Path:
    """host.toml without int16 kernels, its one CPU unit's CONV_2D rule ``conv_rule`` (defaults: any dtype)."""
    text = HOST.read_text().replace('name = "host"', 'name = "conv-int8-only"')
    text = text.replace("supported_kernels = [{ activation = 8, param = 8 }, { activation = 16, param = 8 }]",
                        "supported_kernels = [{ activation = 8, param = 8 }]")
    assert 'ops = { "*" = {} }' in text
    text = text.replace('ops = { "*" = {} }', f'ops = {{ "*" = {{}}, CONV_2D = {conv_rule} }}')
    path = tmp_path / "conv-int8-only.toml"
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def program():
    graph = optimize(onnx_to_graph(planted_model(), "planted"))
    return graph, lower(quantize_minmax(graph, calibrate(graph, planted_data(16))))


def test_float_candidates_follow_the_op_rule(program, tmp_path: Path) -> None:
    graph, prog = program
    strict = load_profile(str(_profile(tmp_path, '{ dtypes = ["int8"] }')))
    assert strict.units()["cpu"].defaults.dtypes is None  # the unit's defaults alone would allow fp32
    assert profile_runs_float(strict, prog) == {"gap", "flatten", "fc"}
    # A limit that only the float form's facts meet or miss counts too: a 3x3 kernel over a 1x1 limit.
    small = load_profile(str(_profile(tmp_path, "{ max_kernel = [1, 1] }")))
    assert profile_runs_float(small, prog) == {"gap", "flatten", "fc"}
    assert profile_runs_float(load_profile("host"), prog) == {n.name for n in graph.nodes}

    layers = [LayerSensitivity("conv1", "activation", 1.0, 10.0), LayerSensitivity("conv2", "weights", 2.0, 20.0),
              LayerSensitivity("conv2", "activation", 5.0, 50.0), LayerSensitivity("fc", "weights", 3.0, 30.0)]
    everywhere = rank_promotions(graph, layers, int16_allowed=lambda op: False, float_allowed=True)
    assert [(p.node, p.to) for p in everywhere] == [("conv1", "float"), ("conv2", "float"), ("fc", "float")]
    ruled = rank_promotions(graph, layers, int16_allowed=lambda op: False,
                            float_allowed=profile_runs_float(strict, prog))
    assert [(p.node, p.to, p.kind) for p in ruled] == [("fc", "float", "weights")]
    # Where int16 is allowed, a weight-sensitive conv that cannot be float still gains int16 activations.
    int16 = rank_promotions(graph, layers, int16_allowed=lambda op: True,
                            float_allowed=profile_runs_float(strict, prog))
    assert [(p.node, p.to, p.sqnr_db) for p in int16] == [("conv1", "int16", 1.0), ("fc", "float", 3.0),
                                                         ("conv2", "int16", 5.0)]


def test_recipe_never_promotes_to_float_what_no_unit_runs_in_float(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Before the op rule was read, the recipe offered conv1 (and its reader conv2) in float and the
    placement of the float CONV_2D failed the whole deploy."""
    monkeypatch.setattr(deploy_mod, "run_recipe", functools.partial(run_recipe, adaround_config=FAST_ADAROUND))
    (tmp_path / "m.onnx").write_bytes(planted_model().SerializeToString())
    np.savez(tmp_path / "d.npz", x=planted_data())
    result = deploy(str(tmp_path / "m.onnx"), str(_profile(tmp_path, '{ dtypes = ["int8"] }')),
                    data=tmp_path / "d.npz", out=tmp_path / "out", max_drop=BUDGET)
    candidates = result.report["recipe_mixed_precision"]["candidates"]
    assert candidates and all(c["node"] not in ("conv1", "conv2") and c["to"] == "float" for c in candidates)
    assert not {"conv1", "conv2"} & set(result.report["float_nodes"])
    rows = [r for r in result.report["placement"]["ops"] if r["op"] == "CONV_2D"]
    assert [r["dtype"] for r in rows] == ["int8", "int8"]
