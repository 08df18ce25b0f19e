"""Per-node data for Google's Model Explorer: colour the graph of the emitted ``model.int8.tflite`` by a metric.

The format is Model Explorer's node data for one graph (``NodeDataProviderGraphData`` in its UI's
``common/types.ts``; ``GraphNodeData`` in its Python package's ``node_data_builder.py``)::

    {"name": "...", "results": {KEY: {"value": NUMBER | STRING, "bgColor"?: CSS, "textColor"?: CSS}},
     "gradient"?: [{"stop": 0..1, "bgColor"?: CSS}, ...], "thresholds"?: [{"value": N, "bgColor": CSS}]}

A KEY is a node id of the graph or "any of the output tensor names of a node": the keys here are the output
tensor names of the .tflite's ops (the TFLite writer names each tensor as the program does), so the file
colours the very file that ships. A file holds one metric; Model Explorer loads several files at once
(its "upload node data" button), one run each. ``model_explorer.json`` holds the estimated time, which
colours the graph by where time goes; the unit, dtype and (when measured) activation SQNR files sit beside it.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from edgeopt.qprogram import QProgram

# Cheap (green) to costly (red) for time; for SQNR, low (red, sensitive) to high (green).
GRADIENT_COST = [{"stop": 0, "bgColor": "#d9f0d3"}, {"stop": 0.5, "bgColor": "#fee08b"},
                 {"stop": 1, "bgColor": "#d73027"}]
GRADIENT_SQNR = [{"stop": 0, "bgColor": "#d73027"}, {"stop": 0.5, "bgColor": "#fee08b"},
                 {"stop": 1, "bgColor": "#d9f0d3"}]
LABEL_COLORS = ("#a6cee3", "#fdbf6f", "#b2df8a", "#fb9a99", "#cab2d6", "#ffff99", "#1f78b4")
DTYPE_COLORS = {"int8": "#a6cee3", "int16": "#b2df8a", "float32": "#fb9a99", "int32": "#ffff99"}
FILES = {"time": "model_explorer.json", "unit": "model_explorer.unit.json", "dtype": "model_explorer.dtype.json",
         "sqnr": "model_explorer.sqnr.json"}


def node_data(program: QProgram, report: Mapping[str, Any]) -> dict[str, dict]:
    """Model Explorer node data files for ``program`` (the shipped program) from its report.json dict:
    ``FILES`` key → the file's JSON object. ``sqnr`` is there only when the report has ``sensitivity``.

    The placement rows of ``report["placement"]["ops"]`` are in program order, one per op.
    """
    rows = report["placement"]["ops"]
    keys = [op.outputs[0] for op in program.ops]
    device = report["device"]
    out = {
        "time": {"name": f"estimated µs on {device}", "results": {k: {"value": r["time_us"]} for k, r in zip(keys, rows)},
                 "gradient": GRADIENT_COST},
        "unit": _labels(f"compute unit on {device}", keys, [r["unit"] for r in rows], {}),
        "dtype": _labels("dtype", keys, [r["dtype"] for r in rows], DTYPE_COLORS),
    }
    sqnr = _activation_sqnr(program, report.get("sensitivity"))
    if sqnr:
        out["sqnr"] = {"name": "activation SQNR dB (quantized alone)",
                       "results": {k: {"value": v} for k, v in sqnr.items()}, "gradient": GRADIENT_SQNR}
    return out


def _labels(name: str, keys: Sequence[str], values: Sequence[str], colors: Mapping[str, str]) -> dict:
    """A string-valued metric: each distinct value gets a colour (Model Explorer has no gradient for strings)."""
    palette = dict(colors)
    for value in dict.fromkeys(values):
        palette.setdefault(value, LABEL_COLORS[len(palette) % len(LABEL_COLORS)])
    return {"name": name, "results": {k: {"value": v, "bgColor": palette[v]} for k, v in zip(keys, values)},
            "showExpandedSummaryOnGroupNode": True, "showLabelCountColumnsInChildrenStatsTable": True}


def _activation_sqnr(program: QProgram, sensitivity: Sequence[Mapping[str, Any]] | None) -> dict[str, float]:
    """The output tensor of the last op lowered from each node whose activation was probed → its SQNR (dB);
    an exact probe (SQNR null: no error at all) has no number to colour by and is left out."""
    if not sensitivity:
        return {}
    last = {op.source: op.outputs[0] for op in program.ops}
    return {last[e["node"]]: e["sqnr_db"] for e in sensitivity
            if e["kind"] == "activation" and e["sqnr_db"] is not None and e["node"] in last}
