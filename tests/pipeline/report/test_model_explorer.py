"""The Model Explorer files of a real deploy, checked against the node data format Model Explorer documents
(``NodeDataProviderGraphData`` in its UI's ``common/types.ts``, ``GraphNodeData`` in its Python package's
``node_data_builder.py``), and keyed by the output tensors of the emitted .tflite's ops."""
from __future__ import annotations

import json
import re
from numbers import Real
from typing import Any

from ai_edge_litert.interpreter import Interpreter

from edgeopt.pipeline.report.model_explorer import FILES
from edgeopt.workflows.deploy import DeployResult

GRAPH_KEYS = {"name", "results", "thresholds", "gradient", "hideInAggregatedStatsTable", "hideInChildrenStatsTable",
              "hideAggregatedStats", "showExpandedSummaryOnGroupNode", "showLabelCountColumnsInChildrenStatsTable"}
COLOR = re.compile(r"^(#[0-9a-fA-F]{6}|[a-z]+)$")  # the gradient takes hex colours or colour names only


def check_graph_node_data(data: Any) -> None:
    """Fail unless ``data`` is one graph's node data as Model Explorer loads it from a file: an object whose
    ``results`` map keys to ``{"value", "bgColor"?, "textColor"?}`` (so that the loader's test
    ``results != null && results.results == null`` picks the single-graph form), a ``gradient`` with stops
    in [0, 1] including 0 and 1, optional ``thresholds``."""
    assert isinstance(data, dict) and set(data) <= GRAPH_KEYS, set(data) - GRAPH_KEYS
    assert isinstance(data.get("name", ""), str)
    results = data["results"]
    assert isinstance(results, dict) and results and "results" not in results
    for key, result in results.items():
        assert isinstance(key, str) and key
        assert isinstance(result, dict) and set(result) <= {"value", "bgColor", "textColor"} and "value" in result
        assert isinstance(result["value"], (Real, str)) and not isinstance(result["value"], bool)
        for color in ("bgColor", "textColor"):
            assert color not in result or COLOR.match(result[color])
    if "gradient" in data:
        stops = [g["stop"] for g in data["gradient"]]
        assert all(0 <= s <= 1 for s in stops) and {0, 1} <= set(stops) and stops == sorted(stops)
        assert all(set(g) <= {"stop", "bgColor", "textColor"} and COLOR.match(g["bgColor"]) for g in data["gradient"])
        assert all(isinstance(r["value"], Real) for r in results.values())  # a gradient needs numbers
    for item in data.get("thresholds", []):
        assert isinstance(item["value"], Real) and COLOR.match(item["bgColor"])


def test_model_explorer_files_follow_the_format_and_key_the_tflite_ops(example_deploy: DeployResult) -> None:
    out = example_deploy.out_dir
    interpreter = Interpreter(model_path=str(out / "model.int8.tflite"))
    names = {t["index"]: t["name"] for t in interpreter.get_tensor_details()}
    op_outputs = [names[op["outputs"][0]] for op in interpreter._get_ops_details()]
    rows = example_deploy.report["placement"]["ops"]
    files = {key: json.loads((out / name).read_text()) for key, name in FILES.items()}
    for data in files.values():
        check_graph_node_data(data)
    time, unit, dtype, sqnr = files["time"], files["unit"], files["dtype"], files["sqnr"]
    assert list(time["results"]) == op_outputs  # one per op of the shipped file, in its order
    assert [r["value"] for r in time["results"].values()] == [r["time_us"] for r in rows]
    assert [r["value"] for r in unit["results"].values()] == [r["unit"] for r in rows]
    assert [r["value"] for r in dtype["results"].values()] == [r["dtype"] for r in rows]
    measured = {e["node"]: e["sqnr_db"] for e in example_deploy.report["sensitivity"]
                if e["kind"] == "activation" and e["sqnr_db"] is not None}
    assert set(sqnr["results"]) <= set(op_outputs) and len(sqnr["results"]) == len(measured)
    assert sorted(r["value"] for r in sqnr["results"].values()) == sorted(measured.values())
    assert example_deploy.report["artifacts"]["model_explorer_time"] == str(out / "model_explorer.json")


def test_checker_rejects_what_model_explorer_would_not_read() -> None:
    good = {"results": {"t": {"value": 1.0}}, "gradient": [{"stop": 0, "bgColor": "#ffffff"},
                                                           {"stop": 1, "bgColor": "red"}]}
    check_graph_node_data(good)
    for bad in ({"results": {}}, {"results": {"t": 1.0}}, {**good, "gradient": [{"stop": 0.5, "bgColor": "red"}]},
                {"results": {"t": {"value": "cpu"}}, "gradient": good["gradient"]}, {**good, "extra": 1},
                {"results": {"t": {"value": 1.0, "bgColor": "rgb(1,2,3)"}}}):
        try:
            check_graph_node_data(bad)
        except (AssertionError, KeyError, TypeError):
            continue
        raise AssertionError(f"accepted {bad}")
