"""report: the deploy result as one typed object (``Report``, written as report.json), and its human
rendering (a rich table) of report.json's dict."""
from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from edgeopt.device_profiles import DeviceProfile
from edgeopt.pipeline.quantize.sensitivity import LayerSensitivity
from edgeopt.pipeline.report.measured import measured_rows, render_measured
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
        accuracy: fp32 against int8 on the evaluation data (``metric`` top1 or top1_agreement), if any; on a
            profile whose device scheme no file carries, ``device_scheme``: that scheme's int8, emulated.
        calibration: the calibration set.
        sizes: artifact key → bytes (``fp32_onnx``, ``onnx``, ``tflite``, ``fp32_tflite``).
        artifacts: artifact key → path.
        precision: the program's precisions (``report.precision.precision_summary``).
        sensitivity: each layer quantized alone, when measured.
        recipe: the automatic recipe's sections (``RecipeResult.report``), when it ran.
        measured: what a measuring target (host, adb) measured, when one did.
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
        if "device_scheme" in acc:  # the device's own weights, which no shipped file carries
            table.add_row(f"{label}, device scheme (emulated)", "", f"{acc['device_scheme']['int8']:.2f}")
    for key, label, fmt in (("latency_ms", "latency ms (estimate)", "{:.3f}"), ("fps", "fps (estimate)", "{:.1f}"),
                            ("energy_mj", "energy mJ/inference (estimate)", "{:.4f}")):
        table.add_row(label, fmt.format(report[key]["fp32"]), fmt.format(report[key]["int8"]))
    measured = report.get("measured")
    for row in measured_rows(measured) if measured else ():
        table.add_row(*row)
    sizes = report["size_bytes"]
    table.add_row(".tflite size KiB", f"{sizes['fp32_tflite'] / 1024:.1f}", f"{sizes['int8_tflite'] / 1024:.1f}")
    console.print(table)
    console.print(f"MACs {report['macs']:,}  params {report['params']:,}  rounding {report['rounding']}  "
                  f"calibration: {report['calibration']['n']} samples from {report['calibration']['source']}")
    if acc is not None and acc["metric"] == "top1":
        console.print(f"int8 - fp32 top-1: {acc['int8'] - acc['fp32']:+.2f} points; "
                      f"int8 agrees with fp32 on {acc['agreement']:.2f} % of samples")
        if "device_scheme" in acc:
            console.print(f"device scheme - fp32 top-1: {acc['device_scheme']['int8'] - acc['fp32']:+.2f} points (the "
                          f"device's asymmetric weights, emulated; no file carries them); int8 is the shipped "
                          f".tflite's (symmetric weights)", highlight=False)
    if measured:
        render_measured(measured, console)
    if "placement" in report:
        render_placement(report["placement"], console)
    pad = max(map(len, report["artifacts"]), default=0)
    for key, path in report["artifacts"].items():
        console.print(f"  {key:{pad}s} {path}", highlight=False)
