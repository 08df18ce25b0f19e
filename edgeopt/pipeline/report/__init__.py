"""report: the deploy result as one typed object (``Report``, written as report.json), and its human
rendering (a rich table) of report.json's dict."""
from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from edgeopt.device_profiles import DeviceProfile
from edgeopt.pipeline.quantize.sensitivity import LayerSensitivity
from edgeopt.pipeline.report.placement import placement_section, render_placement
from edgeopt.qprogram import Placement, QProgram, op_mode
from edgeopt.runtimes.cost import CostReport

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class Calibration:
    """Where the calibration samples came from, and how many were used."""

    source: str
    n: int


@dataclass(frozen=True)
class Report:
    """The deploy result, assembled once: ``to_json`` gives report.json (see README "The report").

    Attributes:
        model: the model's name.
        profile: the device profile it was deployed for.
        program: the int8 program that ships.
        placement: the program's placement on the profile's compute units.
        cost_int8: the cost model's estimate of ``program``; ``cost_fp32``: of its float32 form.
        accuracy: fp32 against int8 on the evaluation data (``metric`` top1 or top1_agreement), if any.
        calibration: the calibration set.
        sizes: artifact key → bytes (``fp32_onnx``, ``onnx``, ``tflite``, ``fp32_tflite``).
        artifacts: artifact key → path.
        precision: the program's precisions (``report.precision.precision_summary``).
        sensitivity: each layer quantized alone, when measured.
        recipe: the automatic recipe's sections (``RecipeResult.report``), when it ran.
        measured: what the Android device measured, when one did.
        equalization: per-channel weight ranges before and after cross-layer equalization
            (``report.equalization.equalization_section``), when the recipe tried it.
    """

    model: str
    profile: DeviceProfile
    program: QProgram
    placement: Placement
    cost_int8: CostReport
    cost_fp32: CostReport
    accuracy: Mapping[str, Any] | None
    calibration: Calibration
    sizes: Mapping[str, int]
    artifacts: Mapping[str, Path]
    precision: Mapping[str, Any]
    sensitivity: tuple[LayerSensitivity, ...] | None = None
    recipe: Mapping[str, Any] | None = None
    measured: Mapping[str, Any] | None = None
    equalization: Mapping[str, Any] | None = None

    def to_json(self) -> dict:
        """The JSON-ready dict written to report.json, its keys in report.json's order."""
        def estimate(field: str) -> dict:
            return {"int8": round(getattr(self.cost_int8, field), 6), "fp32": round(getattr(self.cost_fp32, field), 6),
                    "source": "estimate"}

        out = {
            "schema_version": SCHEMA_VERSION,
            "model": self.model,
            "device": self.profile.name,
            "rounding": self.profile.runtime.requantization_rounding,
            "accuracy": None if self.accuracy is None else dict(self.accuracy),
            "calibration": {"source": self.calibration.source, "n": self.calibration.n},
            "latency_ms": estimate("latency_ms"),
            "fps": estimate("fps"),
            "energy_mj": estimate("energy_mj"),
            "estimate_formula": self.cost_int8.formula,
            "macs": int(self.cost_int8.macs),
            "params": int(self.cost_int8.params),
            "size_bytes": {"fp32_onnx": self.sizes["fp32_onnx"], "fp32_tflite": self.sizes["fp32_tflite"],
                           "int8_tflite": self.sizes["tflite"], "int8_onnx": self.sizes["onnx"]},
            "artifacts": {key: str(path) for key, path in self.artifacts.items()},
            "float_nodes": float_nodes(self.program),
            "precision": dict(self.precision),
            "placement": placement_section(self.placement, self.cost_int8),
        }
        if self.sensitivity is not None:
            out["sensitivity"] = [r.to_json() for r in self.sensitivity]
        out.update(self.recipe or {})
        if self.equalization is not None:
            out["equalization"] = dict(self.equalization)
        if self.measured is not None:
            out["measured"] = dict(self.measured)
        return out


def float_nodes(program: QProgram) -> list[str]:
    """Source nodes of the ops with float32 outputs (float islands), each once, in program order."""
    return list(dict.fromkeys(op.source for op in program.ops if op_mode(op, program) == "float32"))


def dumps(report: Mapping[str, Any]) -> str:
    """report.json's text of ``Report.to_json``'s dict."""
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
    measured = report.get("measured")
    if measured:
        where = measured["target"]
        table.add_row(f"latency ms (measured, {where})", "-", f"{measured['latency_ms']['int8']:.3f}")
        table.add_row(f"fps (measured, {where})", "-", f"{measured['fps']['int8']:.1f}")
        if "energy_mj" in measured:
            energy = measured["energy_mj"]
            table.add_row("energy mJ/inference (fuel gauge)", "-", f"{energy['int8']:.4f} ± {energy['uncertainty']:.4f}")
    sizes = report["size_bytes"]
    table.add_row(".tflite size KiB", f"{sizes['fp32_tflite'] / 1024:.1f}", f"{sizes['int8_tflite'] / 1024:.1f}")
    console.print(table)
    console.print(f"MACs {report['macs']:,}  params {report['params']:,}  rounding {report['rounding']}  "
                  f"calibration: {report['calibration']['n']} samples from {report['calibration']['source']}")
    if acc is not None and acc["metric"] == "top1":
        console.print(f"int8 - fp32 top-1: {acc['int8'] - acc['fp32']:+.2f} points; "
                      f"int8 agrees with fp32 on {acc['agreement']:.2f} % of samples")
    if measured:
        for d in measured["delegates"]:
            console.print(f"delegate {d['name']}: {d['replaced']} of {d['total'] or '?'} nodes on the accelerator")
        for warning in measured.get("energy_mj", {}).get("warnings", []):
            console.print(f"[yellow]energy warning:[/] {warning}")
    if "placement" in report:
        render_placement(report["placement"], console)
    pad = max(map(len, report["artifacts"]), default=0)
    for key, path in report["artifacts"].items():
        console.print(f"  {key:{pad}s} {path}", highlight=False)


def render_comparison(reports: list[dict], console: Console) -> None:
    """Print deployed models side by side (int8 figures; measured ones where a target measured them)."""
    table = Table(title=f"edgeopt compare on {reports[0]['device']}")
    table.add_column("")
    for r in reports:
        table.add_column(r["model"], justify="right")

    def row(label: str, get: Callable[[dict], float | None], fmt: str) -> None:
        values = [get(r) for r in reports]
        if any(v is not None for v in values):
            table.add_row(label, *("-" if v is None else fmt.format(v) for v in values))

    row("top-1 % fp32", lambda r: (r["accuracy"] or {}).get("fp32"), "{:.2f}")
    row("top-1 % int8", lambda r: (r["accuracy"] or {}).get("int8"), "{:.2f}")
    row("latency ms int8 (estimate)", lambda r: r["latency_ms"]["int8"], "{:.3f}")
    row("fps int8 (estimate)", lambda r: r["fps"]["int8"], "{:.1f}")
    row("energy mJ int8 (estimate)", lambda r: r["energy_mj"]["int8"], "{:.4f}")
    row("latency ms int8 (measured)", lambda r: r.get("measured", {}).get("latency_ms", {}).get("int8"), "{:.3f}")
    row("fps int8 (measured)", lambda r: r.get("measured", {}).get("fps", {}).get("int8"), "{:.1f}")
    row("energy mJ int8 (measured)", lambda r: r.get("measured", {}).get("energy_mj", {}).get("int8"), "{:.4f}")
    row("MACs", lambda r: r["macs"], "{:,}")
    row("params", lambda r: r["params"], "{:,}")
    row(".tflite KiB", lambda r: r["size_bytes"]["int8_tflite"] / 1024, "{:.1f}")
    console.print(table)
    base = reports[0]
    for other in reports[1:]:
        key = "measured" if "measured" in base and "measured" in other else None
        fps = (base[key] if key else base)["fps"]["int8"], (other[key] if key else other)["fps"]["int8"]
        console.print(f"{other['model']} runs {fps[1] / fps[0]:.2f}x the fps of {base['model']} "
                      f"({'measured' if key else 'estimated'})")
