"""deploy: the whole pipeline, model spec → int8 artifacts + report.

load → fold batch norm, fuse activations → calibrate (min/max) → quantize → lower → emit .tflite and
QDQ .onnx → emulate in the integer reference executor → report. Nothing is written until every stage
has succeeded, and each artifact is written atomically, so a failed run leaves no partial file.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeopt.device_profiles import load_profile
from edgeopt.device_profiles.quantization import Quantization
from edgeopt.device_profiles.schema import DeviceProfile
from edgeopt.errors import DataError
from edgeopt.fileio import atomic_write_bytes, atomic_write_text
from edgeopt.ir import Graph, QParams, QuantizedGraph, TensorInfo
from edgeopt.pipeline import report as report_mod
from edgeopt.pipeline.calibrate import TensorStats, calibrate
from edgeopt.pipeline.frontend.data import load_npz
from edgeopt.pipeline.emit.onnx import graph_to_onnx, quantized_to_onnx
from edgeopt.pipeline.emit.tflite import program_to_tflite
from edgeopt.pipeline.evaluate import run_float, run_int8, top1
from edgeopt.pipeline.frontend.load import LoadedModel, load
from edgeopt.pipeline.target import lower_and_place
from edgeopt.pipeline.lower import check_lowerable
from edgeopt.workflows.measure import measure_on_android, parse_target
from edgeopt.pipeline.optimize import optimize
from edgeopt.qprogram import Placement
from edgeopt.pipeline.quantize.minmax import quantize_minmax
from edgeopt.pipeline.quantize.precision import ActivationDtype, Precision, apply_precision
from edgeopt.pipeline.quantize.profile_checks import (
    RuleException,
    check_tflite_rules,
    check_weight_bits,
    honour_supergroups,
    symmetric_exceptions,
    symmetric_ranges,
)
from edgeopt.pipeline.quantize.profile_rules import int16_allowed, profile_weights, resolve_plan
from edgeopt.pipeline.report.placement import placement_section
from edgeopt.pipeline.report.precision import precision_source, precision_summary
from edgeopt.pipeline.quantize.range_setting import set_ranges
from edgeopt.pipeline.quantize.mixed_precision import profile_runs_float
from edgeopt.workflows.recipe import RecipeResult, SCREEN_SAMPLES, run_recipe
from edgeopt.pipeline.quantize.sensitivity import sensitive_data, sensitivity_of
from edgeopt.pipeline.report.sensitivity import sensitivity_svg
from edgeopt.qprogram import QProgram
from edgeopt.runtimes.cost import estimate, estimate_float

log = logging.getLogger(__name__)

DEFAULT_CALIB_SIZE = 500
Progress = Callable[[str], None]


@dataclass(frozen=True)
class DeployResult:
    """The report (as written to report.json), where the artifacts are, and the int8 program they hold."""

    report: dict
    out_dir: Path
    program: QProgram


def deploy(
    model: str | QuantizedGraph | None,
    device: str,
    *,
    data: str | Path | None = None,
    calib: str | Path | None = None,
    out: str | Path | None = None,
    input_shape: tuple[int, ...] | None = None,
    calib_size: int = DEFAULT_CALIB_SIZE,
    range_method: str = "minmax",
    target: str = "emulate",
    keep: bool = False,
    benchmark_binary: str | Path | None = None,
    progress: Progress | None = None,
    precision: Precision | None = None,
    precision_overrides: Mapping[str, ActivationDtype] | None = None,
    weight_bits: int = 8,
    max_drop: float | None = None,
    recipe_samples: int = SCREEN_SAMPLES,
    sensitivity: bool = False,
) -> DeployResult:
    """Optimize, quantize, convert and emulate ``model`` for ``device``; write artifacts and report.

    Args:
        model: model spec for ``pipeline.frontend.load.load`` (None: the built-in example), or a QuantizedGraph
            already optimized and quantized (``QuantSim.export()``): used as is, without calibration;
            its float graph (with its trained weights) is the report's fp32 reference.
        device: a device profile name or the path of a profile .toml.
        data: .npz with ``x`` and optionally ``y`` to measure accuracy on.
        calib: .npz with ``x`` for calibration (default: the first ``calib_size`` samples of ``data``).
        out: output directory (default ``./edgeopt-out/<model name>``).
        input_shape: input shape for entry points / ONNX inputs with unknown dimensions.
        calib_size: at most this many calibration samples are used.
        range_method: activation range setting, one of ``quantize.range_setting.RANGE_METHODS``.
        target: "emulate" (estimates only), or "adb[:SERIAL]" to also measure on an Android device.
        keep: leave the pushed files on the device.
        benchmark_binary: a benchmark_model binary to push (default: the one in /data/local/tmp).
        progress: called with the name of each stage as it starts.
        precision: ``"w8a8"`` (int8 activations) or ``"w8a16"`` (int16 activations wherever a 16x8
            kernel exists and the profile allows; see ``quantize.precision``); None: the profile's default
            kernel per op type (the first ``supported_kernels`` entry; ``quantize.profile_rules``).
        weight_bits: Conv/Gemm/MatMul weight bit width (4 or 8, stored as int8); the profile's
            ``supported_kernels`` must allow it (``quantize.profile_checks``).
        precision_overrides: node name or ONNX op type → ``"int8"``/``"int16"``/``"float"`` (a float
            island), applied on top.
        max_drop: run the automatic recipe (``workflows.recipe``) until int8 accuracy on ``data`` is
            within this many points of fp32 (``range_method`` is then the recipe's choice).
        recipe_samples: the recipe scores each step on this many samples of ``data`` (0: all) and confirms
            a step within budget on all of them.
        sensitivity: also measure each layer's quantization alone (``pipeline.quantize.sensitivity``) on the first
            samples of ``data`` (or of the calibration set): report's ``sensitivity``, ``sensitivity.svg``;
            when the recipe reached mixed precision, its own measurement (of the step it built on) is reused.

    Raises:
        DeviceError: the device failed; the artifacts and the estimate-only report are written by then.
    """
    step = progress or (lambda _: None)
    profile = load_profile(device)
    where = parse_target(target)
    step("load")
    if isinstance(model, QuantizedGraph):  # in memory (edgeopt.deploy of a QuantSim): optimized and quantized
        loaded = LoadedModel(name=model.graph.name, graph=model.graph, onnx_model=graph_to_onnx(model.graph))
    else:
        loaded = load(model, input_shape)
    graph = optimize(loaded.graph)
    check_lowerable(graph)
    rules = profile.quantization
    check_tflite_rules(rules, profile.name)
    resolved = resolve_plan(graph, precision, rules, profile.name, precision_overrides)  # fails fast
    plan = resolved.plan
    check_weight_bits(graph, rules, profile.name, plan, weight_bits)
    model_input = loaded.graph.inputs[0]

    x, y = loaded.data if loaded.data is not None else (None, None)
    if data is not None:
        x, y = load_npz(data, model_input, labels=True)
    recipe: RecipeResult | None = None
    if isinstance(model, QuantizedGraph):
        calib_x, calib_source, qgraph = np.zeros((0,)), "encodings given in memory", model
    else:
        calib_x, calib_source = _calibration_set(loaded.calib, calib, x, model_input, calib_size)
    if max_drop is not None and not isinstance(model, QuantizedGraph):
        recipe = _automatic_recipe(graph, calib_x, x, y, max_drop, recipe_samples, profile, plan, weight_bits, step)
        qgraph = recipe.qgraph
    elif not isinstance(model, QuantizedGraph):
        step("calibrate")
        stats = symmetric_ranges(graph, set_ranges(calibrate(graph, calib_x, histograms=range_method != "minmax"),
                                                   range_method), rules)
        step("quantize")
        qgraph = apply_precision(_quantize(graph, stats, rules, weight_bits), stats, plan)
    planned_float = qgraph.float_nodes  # the overrides' and the recipe's; the rest are float-only ops
    step("lower")
    qgraph, unfused, program, placement = _ship(qgraph, profile)
    step("emit")
    files = {
        "fp32_onnx": graph_to_onnx(loaded.graph).SerializeToString(),
        "onnx": quantized_to_onnx(qgraph).SerializeToString(),
        "tflite": program_to_tflite(program),
    }
    layers = None
    if sensitivity:
        step("sensitivity")
        if recipe is not None and recipe.mixed_precision is not None:  # measured by the recipe: reuse
            layers = list(recipe.mixed_precision.sensitivity)
        else:
            layers = sensitivity_of(qgraph, sensitive_data(x, calib_x))
        files["sensitivity_svg"] = sensitivity_svg(layers).encode()
    step("emulate")
    int8_out = recipe.int8_out if recipe is not None else None  # the recipe ran this very program on x
    accuracy = _accuracy(loaded.graph, program, x, y, int8_out) if x is not None else None
    cost_int8, cost_fp32 = estimate(program, profile, placement), estimate_float(program, profile)

    out_dir = Path(out) if out is not None else Path("edgeopt-out") / loaded.name
    paths = {
        "fp32_onnx": out_dir / "model.fp32.onnx",
        "onnx": out_dir / "model.int8.onnx",
        "tflite": out_dir / "model.int8.tflite",
        "report": out_dir / "report.json",
    }
    if layers is not None:
        paths["sensitivity_svg"] = out_dir / "sensitivity.svg"
    report = report_mod.build(
        model=loaded.name,
        profile=profile,
        accuracy=accuracy,
        calibration={"source": calib_source, "n": int(len(calib_x))},
        cost_int8=cost_int8,
        cost_fp32=cost_fp32,
        sizes={k: len(v) for k, v in files.items()},
        artifacts={k: str(p) for k, p in paths.items()},
        program=program,
    )
    default = rules.defaults.supported_kernels[0]
    source = precision_source("encodings given in memory" if isinstance(model, QuantizedGraph) else resolved.source,
                              precision_overrides, recipe.config.promoted if recipe is not None else (),
                              set(report["float_nodes"]) - planned_float)
    report["precision"] = precision_summary(program, precision or f"w{default.param}a{default.activation}",
                                            resolved.fallbacks, source, [*symmetric_exceptions(qgraph, rules), *unfused])
    report["placement"] = placement_section(placement, cost_int8)
    if layers is not None:
        report["sensitivity"] = [r.to_json() for r in layers]
    if recipe is not None:
        report.update(recipe.report())
    step("write")
    for key, blob in files.items():
        atomic_write_bytes(paths[key], blob)
    atomic_write_text(paths["report"], report_mod.to_json(report))
    if where.kind == "adb":
        step(f"measure on {where}")
        report["measured"] = measure_on_android(where, paths["tflite"], profile, keep=keep,
                                                benchmark_binary=Path(benchmark_binary) if benchmark_binary else None)
        atomic_write_text(paths["report"], report_mod.to_json(report))
    return DeployResult(report=report, out_dir=out_dir, program=program)


def _automatic_recipe(graph: Graph, calib_x: np.ndarray, x: np.ndarray | None, y: np.ndarray | None,
                      max_drop: float, screen: int, profile: DeviceProfile, plan: Mapping[str, str], weight_bits: int,
                      step: Progress) -> RecipeResult:
    if x is None:
        raise DataError("--max-drop needs data to measure accuracy on: pass --data DATA.npz")
    rules = profile.quantization

    def finish(qgraph: QuantizedGraph) -> tuple[QProgram, float]:
        _, _, program, placement = _ship(qgraph, profile)
        return program, estimate(program, profile, placement).latency_ms

    return run_recipe(graph, calib_x, x, y, max_drop=max_drop, screen_samples=screen,
                      rounding=profile.runtime.requantization_rounding,
                      int16_allowed=lambda op: int16_allowed(rules, op),
                      float_allowed=lambda program: profile_runs_float(profile, program),
                      base_plan=plan, quantize=lambda g, stats, fixed: _quantize(g, stats, rules, weight_bits, fixed),
                      ranges=lambda g, stats: symmetric_ranges(g, stats, rules), finish=finish, progress=step)


def _quantize(graph: Graph, stats: Mapping[str, TensorStats], rules: Quantization, weight_bits: int,
              weight_encodings: Mapping[str, QParams] | None = None) -> QuantizedGraph:
    """The int8 quantized graph under the profile's rules: weight bits, weight range, per-tensor weights."""
    qgraph = quantize_minmax(graph, stats, weight_bits=weight_bits, weight_encodings=weight_encodings,
                             strict_symmetric=rules.defaults.strict_symmetric)
    return profile_weights(qgraph, rules)


def _ship(qgraph: QuantizedGraph,
          profile: DeviceProfile) -> tuple[QuantizedGraph, list[RuleException], QProgram, Placement]:
    """What ships from ``qgraph``: the graph with the profile's supergroups honoured and its float-only ops
    in float islands, the supergroups it could not honour, its program and the program's placement."""
    qgraph, unfused = honour_supergroups(qgraph, profile.quantization)
    qgraph, program, placement = lower_and_place(qgraph, profile)  # ops only a float unit runs: float islands
    return qgraph, unfused, program, placement


def _calibration_set(shipped: np.ndarray | None, calib: str | Path | None, x: np.ndarray | None,
                     model_input: TensorInfo, calib_size: int) -> tuple[np.ndarray, str]:
    if calib is not None:
        calib_x, _ = load_npz(calib, model_input, labels=False)
        return calib_x[:calib_size], str(calib)
    if shipped is not None:
        return shipped[:calib_size], "the example's training split"
    if x is None:
        raise DataError("no calibration data: pass --calib CALIB.npz (or --data DATA.npz to calibrate on a slice of it)")
    log.warning("no --calib given: calibrating on the first %d samples of --data", min(calib_size, len(x)))
    return x[:calib_size], f"first {min(calib_size, len(x))} samples of --data"


def _accuracy(graph: Graph, program: QProgram, x: np.ndarray, y: np.ndarray | None,
              int8: np.ndarray | None = None) -> dict:
    fp32 = run_float(graph, x)
    int8 = run_int8(program, x) if int8 is None else int8
    agree = float(np.mean(fp32.reshape(len(x), -1).argmax(1) == int8.reshape(len(x), -1).argmax(1)) * 100)
    if y is None:
        return {"metric": "top1_agreement", "fp32": 100.0, "int8": agree, "n": int(len(x))}
    return {"metric": "top1", "fp32": top1(fp32, y), "int8": top1(int8, y), "agreement": agree, "n": int(len(x))}
