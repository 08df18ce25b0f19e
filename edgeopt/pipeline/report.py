"""report: the deploy result as a JSON-ready dict, and its human rendering (a rich table)."""
from __future__ import annotations

import json
from typing import Any

from rich.console import Console
from rich.table import Table

from edgeopt.runtimes.cost import CostReport

SCHEMA_VERSION = 1


def build(*, model: str, profile: Any, accuracy: dict | None, calibration: dict, cost_int8: CostReport,
          cost_fp32: CostReport, sizes: dict[str, int], artifacts: dict[str, str]) -> dict:
    """The report dict written to report.json (see README "The report" for each key)."""
    def estimate(field: str) -> dict:
        return {"int8": round(getattr(cost_int8, field), 6), "fp32": round(getattr(cost_fp32, field), 6),
                "source": "estimate"}

    return {
        "schema_version": SCHEMA_VERSION,
        "model": model,
        "device": profile.name,
        "rounding": profile.runtime.requantization_rounding,
        "accuracy": accuracy,
        "calibration": calibration,
        "latency_ms": estimate("latency_ms"),
        "fps": estimate("fps"),
        "energy_mj": estimate("energy_mj"),
        "estimate_formula": cost_int8.formula,
        "macs": int(cost_int8.macs),
        "params": int(cost_int8.params),
        "size_bytes": {"fp32_onnx": sizes["fp32_onnx"], "int8_tflite": sizes["tflite"],
                       "int8_onnx": sizes["onnx"]},
        "artifacts": artifacts,
    }


def to_json(report: dict) -> str:
    return json.dumps(report, indent=2) + "\n"


def render(report: dict, console: Console) -> None:
    """Print the report as a table of float against int8."""
    table = Table(title=f"edgeopt deploy: {report['model']} on {report['device']}", show_lines=False)
    table.add_column("")
    table.add_column("fp32", justify="right")
    table.add_column("int8", justify="right")
    acc = report["accuracy"]
    if acc is not None:
        label = "top-1 %" if acc["metric"] == "top1" else "top-1 agreement %"
        table.add_row(f"{label} (n={acc['n']})", f"{acc['fp32']:.2f}", f"{acc['int8']:.2f}")
    for key, label, fmt in (("latency_ms", "latency ms (estimate)", "{:.3f}"), ("fps", "fps (estimate)", "{:.1f}"),
                            ("energy_mj", "energy mJ/inference (estimate)", "{:.4f}")):
        table.add_row(label, fmt.format(report[key]["fp32"]), fmt.format(report[key]["int8"]))
    sizes = report["size_bytes"]
    table.add_row("file size KiB", f"{sizes['fp32_onnx'] / 1024:.1f}", f"{sizes['int8_tflite'] / 1024:.1f}")
    console.print(table)
    console.print(f"MACs {report['macs']:,}  params {report['params']:,}  rounding {report['rounding']}  "
                  f"calibration: {report['calibration']['n']} samples from {report['calibration']['source']}")
    if acc is not None and acc["metric"] == "top1":
        console.print(f"int8 - fp32 top-1: {acc['int8'] - acc['fp32']:+.2f} points; "
                      f"int8 agrees with fp32 on {acc['agreement']:.2f} % of samples")
    for key, path in report["artifacts"].items():
        console.print(f"  {key:10s} {path}")
