"""Per-layer sensitivity: a deliberately fragile layer ranks first, the plot is one bar per entry, the CLI
flag writes both artifacts."""
from __future__ import annotations

import json
import math
import weakref
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from edgeopt.cli import app
from edgeopt.device_profiles import load_profile
from edgeopt.ir import Graph
from edgeopt.pipeline.calibrate import calibrate
from edgeopt.pipeline.frontend.load import load
from edgeopt.pipeline.optimize import optimize
from edgeopt.pipeline.quantize import sensitivity
from edgeopt.pipeline.quantize.sensitivity import LayerSensitivity, sensitivity_of, sqnr_db
from edgeopt.pipeline.report.plots import sensitivity_svg
from edgeopt.pipeline.target import Target
from tests.builders.onnx_models import two_conv_model

SVG = "{http://www.w3.org/2000/svg}"


def _graph(tmp_path: Path, onnx_model) -> Graph:
    path = tmp_path / "m.onnx"
    path.write_bytes(onnx_model.SerializeToString())
    return optimize(load(str(path)).graph)


def _x(n: int = 64) -> np.ndarray:
    return np.random.default_rng(1).normal(size=(n, 3, 8, 8)).astype(np.float32)


def test_huge_activation_range_ranks_most_sensitive(tmp_path: Path):
    graph = _graph(tmp_path, two_conv_model(np.random.default_rng(0), huge_bias=1000.0))
    x = _x()
    layers = sensitivity_of(Target(load_profile("arm-cortex-a78-xnnpack")).quantize(graph, calibrate(graph, x)), x)
    assert (layers[0].node, layers[0].kind) == ("conv1", "activation")
    assert layers[0].sqnr_db < layers[1].sqnr_db - 10
    assert [r.sqnr_db for r in layers] == sorted(r.sqnr_db for r in layers)
    kinds = {(r.node, r.kind) for r in layers}
    assert {("conv1", "weights"), ("conv2", "weights"), ("fc", "weights"), ("fc", "activation")} <= kinds
    assert all(0 <= r.agreement <= 100 for r in layers)


def test_probe_groups_and_chunks_bound_sessions_not_results(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """One probe session at a time, and the samples in several chunks, give the very numbers of one pass."""
    graph = _graph(tmp_path, two_conv_model(np.random.default_rng(0), huge_bias=1000.0))
    x = _x()
    qgraph = Target(load_profile("arm-cortex-a78-xnnpack")).quantize(graph, calibrate(graph, x))
    reference = sensitivity_of(qgraph, x)
    live, most = set(), [0]
    made = sensitivity._Probe.__init__

    def counted(self, *args, **kwargs):
        made(self, *args, **kwargs)
        live.add(id(self))
        most[0] = max(most[0], len(live))
        weakref.finalize(self, live.discard, id(self))

    monkeypatch.setattr(sensitivity._Probe, "__init__", counted)
    monkeypatch.setattr(sensitivity, "PROBE_SESSIONS", 1)
    monkeypatch.setattr(sensitivity, "CHUNK_BYTES", 1)  # one sample per chunk
    assert sensitivity_of(qgraph, x) == reference
    assert most[0] == 1 < len(reference)


def test_weights_alone_follow_the_profile_per_tensor_rule(tmp_path: Path):
    """An outlier output channel costs little per channel, much with one scale for the tensor."""
    graph = _graph(tmp_path, two_conv_model(np.random.default_rng(0), outlier=50.0))
    x = _x()
    stats = calibrate(graph, x)

    def conv2_weights(profile: str) -> float:
        layers = sensitivity_of(Target(load_profile(profile)).quantize(graph, stats), x)
        return next(r.sqnr_db for r in layers if (r.node, r.kind) == ("conv2", "weights"))

    per_channel, per_tensor = conv2_weights("arm-cortex-a78-xnnpack"), conv2_weights("google-coral-edgetpu")
    assert per_tensor < per_channel - 10, (per_tensor, per_channel)


def test_sqnr_db():
    ref = np.array([3.0, 4.0])
    assert sqnr_db(ref, ref) == math.inf
    assert sqnr_db(ref, ref + np.array([0.3, 0.4])) == pytest.approx(20.0)


def test_svg_is_xml_with_one_bar_per_entry():
    layers = [LayerSensitivity(f"n<{i}>&", "weights" if i % 2 else "activation", float(i * 7 - 5), 90.0)
              for i in range(25)] + [LayerSensitivity("exact", "weights", math.inf, 100.0)]
    root = ET.fromstring(sensitivity_svg([r.to_json() for r in layers[:3] + [layers[-1]]]))
    assert root.tag == f"{SVG}svg"
    assert len(_bars(root)) == 4
    many = ET.fromstring(sensitivity_svg([r.to_json() for r in layers]))
    assert len(_bars(many)) == 20  # the 20 lowest SQNR only
    assert "n<0>& (activation)" in [t.text for t in many.iter(f"{SVG}text")]
    assert "n<24>& (weights)" not in [t.text for t in many.iter(f"{SVG}text")]


def _bars(root: ET.Element) -> list[ET.Element]:
    """The bars of a sensitivity plot: matplotlib writes each as a group with the id the plot gave it."""
    return [g for g in root.iter(f"{SVG}g") if (g.get("id") or "").startswith("bar-") and g.find(f"{SVG}path") is not None]


def test_cli_sensitivity_flag_writes_report_entries_and_plot(tmp_path: Path):
    path = tmp_path / "m.onnx"
    path.write_bytes(two_conv_model(np.random.default_rng(0), huge_bias=1000.0).SerializeToString())
    np.savez(tmp_path / "d.npz", x=_x(), y=np.random.default_rng(2).integers(0, 10, 64))
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["deploy", str(path), "--data", str(tmp_path / "d.npz"), "--out", str(out),
                                      "--sensitivity"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    entries = report["sensitivity"]
    assert entries[0] == {**entries[0], "node": "conv1", "kind": "activation"}
    assert set(entries[0]) == {"node", "kind", "sqnr_db", "agreement"}
    assert report["artifacts"]["sensitivity_svg"] == str(out / "sensitivity.svg")
    assert len(_bars(ET.parse(out / "sensitivity.svg").getroot())) == min(20, len(entries))
    assert "most sensitive layers" in result.output and "conv1" in result.output
