"""deploy: the whole pipeline, model spec → int8 artifacts + report.

load → optimize (fold batch norms, fuse activations) → the target's checks → ranges (calibration) →
quantize → ship (lower, place) → emit .tflite and QDQ .onnx → evaluate in the integer reference executor
→ report → write. Every profile rule goes through one ``Target`` (``pipeline.target``), as in the recipe
and QuantSim. Nothing is written until every stage has succeeded, and each artifact is written
atomically, so a failed run leaves no partial file.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from edgeopt.device_profiles import load_profile
from edgeopt.errors import DataError
from edgeopt.fileio import atomic_write_bytes, atomic_write_text
from edgeopt.ir import Graph, QuantizedGraph
from edgeopt.pipeline.emit.float_program import dequantize_program
from edgeopt.pipeline.emit.onnx import graph_to_onnx, quantized_to_onnx
from edgeopt.pipeline.emit.tflite import program_to_tflite
from edgeopt.pipeline.evaluate import run_float, run_int8, top1
from edgeopt.pipeline.frontend.load import LoadedModel, load
from edgeopt.pipeline.frontend.onnx import InputShape
from edgeopt.pipeline.lower import check_lowerable
from edgeopt.pipeline.optimize import optimize
from edgeopt.pipeline.quantize.float_plan import mask_float_nodes
from edgeopt.pipeline.quantize.precision import ActivationDtype, Precision
from edgeopt.pipeline.quantize.profile_checks import symmetric_exceptions
from edgeopt.pipeline.quantize.profile_rules import ResolvedPlan
from edgeopt.pipeline.quantize.sensitivity import LayerSensitivity, sensitive_data, sensitivity_of
from edgeopt.pipeline.quantize.weight_scheme import weight_scheme
from edgeopt.pipeline.report import Calibration, Report, dumps, float_nodes
from edgeopt.pipeline.report.precision import precision_source, precision_summary
from edgeopt.pipeline.report.sensitivity import sensitivity_svg
from edgeopt.pipeline.target import Shipped, Target
from edgeopt.qprogram import QProgram
from edgeopt.runtimes.cost import estimate, estimate_float
from edgeopt.workflows.measure import measure_on_android, parse_target
from edgeopt.workflows.recipe import SCREEN_SAMPLES, RecipeResult, run_recipe

log = logging.getLogger(__name__)

DEFAULT_CALIB_SIZE = 500
GIVEN_IN_MEMORY = "encodings given in memory"
# Artifact key → file name in the output folder, in the report's order.
ARTIFACTS = {"fp32_onnx": "model.fp32.onnx", "onnx": "model.int8.onnx", "tflite": "model.int8.tflite",
             "fp32_tflite": "model.fp32.tflite", "report": "report.json", "sensitivity_svg": "sensitivity.svg"}
Progress = Callable[[str], None]
ModelSpec = str | QuantizedGraph | None
"""A model spec for ``pipeline.frontend.load.load`` (None: the built-in example), or a QuantizedGraph
already optimized and quantized (``QuantSim.export()``): used as is, without calibration; its float graph
(with its trained weights) is the report's fp32 reference."""


@dataclass(frozen=True)
class DeployOptions:
    """What ``deploy`` does with a model: for which device, on which data, with which choices.

    Attributes:
        device: a device profile name or the path of a profile .toml.
        data: .npz with ``x`` and optionally ``y`` to measure accuracy on.
        calib: .npz with ``x`` for calibration (default: the first ``calib_size`` samples of ``data``).
        out: output directory (default ``./edgeopt-out/<model name>``).
        input_shape: input shape for entry points / ONNX inputs with unknown dimensions; for a model with
            several inputs, shapes by input name (``{"input_ids": (1, 128), ...}``).
        calib_size: at most this many calibration samples are used.
        range_method: activation range setting, one of ``quantize.range_setting.RANGE_METHODS``.
        target: "emulate" (estimates only), or "adb[:SERIAL]" to also measure on an Android device.
        keep: leave the pushed files on the device.
        benchmark_binary: a benchmark_model binary to push (default: the one in /data/local/tmp).
        precision: ``"w8a8"`` (int8 activations) or ``"w8a16"`` (int16 activations wherever a 16x8
            kernel exists and the profile allows; see ``quantize.precision``); None: the profile's default
            kernel per op type (the first ``supported_kernels`` entry; ``quantize.profile_rules``).
        precision_overrides: node name or ONNX op type → ``"int8"``/``"int16"``/``"float"`` (a float
            island), applied on top.
        weight_bits: Conv/Gemm/MatMul weight bit width (4 or 8, stored as int8); the profile's
            ``supported_kernels`` must allow it (``quantize.profile_checks``).
        max_drop: run the automatic recipe (``workflows.recipe``) until int8 accuracy on ``data`` is
            within this many points of fp32 (``range_method`` is then the recipe's choice).
        recipe_samples: the recipe scores each step on this many samples of its tuning split (0: all) and
            confirms a step within budget (or within the screen's sampling error of it) on all of them.
        tune_data: .npz (``x``, optionally ``y``) the recipe selects its steps on; all of ``data`` is then
            held out. Without it the recipe selects on the first half of ``data`` (``TUNE_FRACTION``) and
            the report gives the chosen program's accuracy on the second half (``recipe_budget.held_out``)
            beside the accuracy on all of ``data``.
        sensitivity: also measure each layer's quantization alone (``pipeline.quantize.sensitivity``) on the
            first samples of ``data`` (or of the calibration set): report's ``sensitivity``,
            ``sensitivity.svg``; when the recipe reached mixed precision, its own measurement (of the step
            it built on) is reused.
    """

    device: str
    data: str | Path | None = None
    calib: str | Path | None = None
    out: str | Path | None = None
    input_shape: InputShape | None = None
    calib_size: int = DEFAULT_CALIB_SIZE
    range_method: str = "minmax"
    target: str = "emulate"
    keep: bool = False
    benchmark_binary: str | Path | None = None
    precision: Precision | None = None
    precision_overrides: Mapping[str, ActivationDtype] = field(default_factory=dict)
    weight_bits: int = 8
    max_drop: float | None = None
    recipe_samples: int = SCREEN_SAMPLES
    tune_data: str | Path | None = None
    sensitivity: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "precision_overrides", MappingProxyType(dict(self.precision_overrides or {})))


@dataclass(frozen=True)
class DeployResult:
    """The report (``Report.to_json``: as written to report.json), where the artifacts are, and the int8
    program they hold."""

    report: dict
    out_dir: Path
    program: QProgram


def deploy(model: ModelSpec, device: str, *, progress: Progress | None = None, **options: Any) -> DeployResult:
    """Optimize, quantize, convert and emulate ``model`` for ``device``; write artifacts and report.

    The keyword form of ``deploy_with``: ``options`` are the fields of ``DeployOptions`` (``data``,
    ``calib``, ``out``, ``max_drop`` …).

    Raises:
        TypeError: an option ``DeployOptions`` does not have.
        DeviceError: the device failed; the artifacts and the estimate-only report are written by then.
    """
    return deploy_with(model, DeployOptions(device, **options), progress)


def deploy_with(model: ModelSpec, options: DeployOptions, progress: Progress | None = None) -> DeployResult:
    """Optimize, quantize, convert and emulate ``model`` as ``options`` say; write artifacts and report.

    Args:
        model: a model spec, or a QuantizedGraph to ship as it is (``ModelSpec``).
        options: the device and the choices (``DeployOptions``).
        progress: called with the name of each stage as it starts.

    Raises:
        DeviceError: the device failed; the artifacts and the estimate-only report are written by then.
    """
    step = progress or (lambda _: None)
    target = Target(load_profile(options.device), options.weight_bits, options.precision,
                    options.precision_overrides, options.range_method)
    where = parse_target(options.target)
    step("load")
    loaded = _load(model, options.input_shape)
    graph = optimize(loaded.graph)
    check_lowerable(graph)
    resolved = target.check(graph)  # fails fast, before calibration
    x, y = loaded.read_data(options.data) if options.data is not None else loaded.data or (None, None)
    recipe: RecipeResult | None = None
    if isinstance(model, QuantizedGraph):
        calib_x, calib_source, qgraph = np.zeros((0,)), GIVEN_IN_MEMORY, model
    else:
        calib_x, calib_source = _calibration_set(loaded, options.calib, x, options.calib_size)
        if options.max_drop is not None:
            tune = loaded.read_data(options.tune_data) if options.tune_data is not None else None
            recipe = _automatic_recipe(graph, calib_x, x, y, tune, target, resolved, options.max_drop,
                                       options.recipe_samples, step)
            qgraph = recipe.qgraph
        else:
            step("calibrate")
            stats = target.ranges(graph, calib_x)
            step("quantize")
            qgraph = target.quantize(graph, stats, resolved.plan)
    step("lower")
    shipped = target.ship(qgraph)
    step("emit")
    files = {
        "fp32_onnx": graph_to_onnx(loaded.graph).SerializeToString(),
        "onnx": quantized_to_onnx(shipped.qgraph).SerializeToString(),
        "tflite": program_to_tflite(shipped.program),
        # the float32 twin of the shipped program (same ops, dequantized weights), to time against the int8 file
        "fp32_tflite": program_to_tflite(dequantize_program(shipped.program)),
    }
    layers = None
    if options.sensitivity:
        step("sensitivity")
        layers = _sensitivity(shipped.qgraph, recipe, x, calib_x)
        files["sensitivity_svg"] = sensitivity_svg(layers).encode()
    step("emulate")
    int8_out = _recipe_outputs(recipe, options.tune_data is not None)  # the recipe ran this very program on x
    accuracy = _accuracy(loaded.graph, shipped.program, x, y, int8_out) if x is not None else None
    cost_int8 = estimate(shipped.program, target.profile, shipped.placement)
    cost_fp32 = estimate_float(shipped.program, target.profile)
    out_dir = Path(options.out) if options.out is not None else Path("edgeopt-out") / loaded.name
    paths = {key: out_dir / name for key, name in ARTIFACTS.items() if key in files or key == "report"}
    report = Report(
        model=loaded.name, profile=target.profile, program=shipped.program, placement=shipped.placement,
        cost_int8=cost_int8, cost_fp32=cost_fp32, accuracy=accuracy,
        calibration=Calibration(calib_source, len(calib_x)), sizes={k: len(v) for k, v in files.items()},
        artifacts=paths,
        precision=_precision(target, resolved, qgraph.float_nodes - mask_float_nodes(graph), shipped, recipe,
                             isinstance(model, QuantizedGraph)),
        sensitivity=None if layers is None else tuple(layers), recipe=None if recipe is None else recipe.report())
    step("write")
    for key, blob in files.items():
        atomic_write_bytes(paths[key], blob)
    atomic_write_text(paths["report"], dumps(report.to_json()))
    if where.kind == "adb":
        step(f"measure on {where}")
        measured = measure_on_android(where, paths["tflite"], target.profile, keep=options.keep,
                                      benchmark_binary=Path(options.benchmark_binary) if options.benchmark_binary
                                      else None)
        report = replace(report, measured=measured)
        atomic_write_text(paths["report"], dumps(report.to_json()))
    return DeployResult(report=report.to_json(), out_dir=out_dir, program=shipped.program)


def _load(model: ModelSpec, input_shape: InputShape | None) -> LoadedModel:
    if isinstance(model, QuantizedGraph):  # in memory (edgeopt.deploy of a QuantSim): optimized and quantized
        return LoadedModel(name=model.graph.name, graph=model.graph, onnx_model=graph_to_onnx(model.graph))
    return load(model, input_shape)


TUNE_FRACTION = 0.5
"""Without ``--tune-data``, the recipe selects on this leading fraction of ``--data`` and the rest is held out."""


def _automatic_recipe(graph: Graph, calib_x: np.ndarray, x: np.ndarray | None, y: np.ndarray | None,
                      tune: tuple[np.ndarray, np.ndarray | None] | None, target: Target, resolved: ResolvedPlan,
                      max_drop: float, screen: int, step: Progress) -> RecipeResult:
    """The recipe, selecting on ``tune`` (``--tune-data``) with all of ``x`` held out, or on the first
    ``TUNE_FRACTION`` of ``x`` with the rest held out (all of it when ``x`` has a single sample)."""
    if x is None:
        raise DataError("--max-drop needs data to measure accuracy on: pass --data DATA.npz")
    if tune is not None:
        tune_x, tune_y = tune
        holdout, tuned_on, held = (x, y), f"all {len(tune_x)} --tune-data samples", f"all {len(x)} --data samples"
    elif len(x) > 1:
        n = max(1, int(len(x) * TUNE_FRACTION))
        tune_x, tune_y = x[:n], None if y is None else y[:n]
        holdout = (x[n:], None if y is None else y[n:])
        tuned_on, held = f"the first {n} of {len(x)} --data samples", f"the last {len(x) - n} --data samples"
    else:
        tune_x, tune_y, holdout = x, y, None
        tuned_on, held = f"all {len(x)} --data samples (too few to hold any out)", ""
    return run_recipe(graph, calib_x, tune_x, tune_y, target=target, max_drop=max_drop, base_plan=resolved.plan,
                      screen_samples=screen, holdout=holdout, tuned_on=tuned_on, holdout_source=held, progress=step)


def _recipe_outputs(recipe: RecipeResult | None, tuned_elsewhere: bool) -> np.ndarray | None:
    """The chosen program's outputs on all of ``--data`` as the recipe computed them: the held-out part
    (everything, with ``--tune-data``), after the tuning part (without)."""
    if recipe is None:
        return None
    if recipe.held_out is None:
        return recipe.int8_out
    if tuned_elsewhere:
        return recipe.held_out.int8_out
    return np.concatenate([recipe.int8_out, recipe.held_out.int8_out])


def _sensitivity(qgraph: QuantizedGraph, recipe: RecipeResult | None, x: np.ndarray | None,
                 calib_x: np.ndarray) -> list[LayerSensitivity]:
    if recipe is not None and recipe.mixed_precision is not None:  # measured by the recipe: reuse
        return list(recipe.mixed_precision.sensitivity)
    return sensitivity_of(qgraph, sensitive_data(x, calib_x))


def _precision(target: Target, resolved: ResolvedPlan, planned_float: frozenset[str], shipped: Shipped,
               recipe: RecipeResult | None, given: bool) -> dict:
    """The report's ``precision`` section. ``planned_float``: the float nodes the overrides and the recipe
    asked for (the program's others are float-only ops, attention masks among them); ``given``: the model
    came quantized."""
    default = target.rules.defaults.supported_kernels[0]
    source = precision_source(GIVEN_IN_MEMORY if given else resolved.source, target.precision_overrides,
                              recipe.config.promoted if recipe is not None else (),
                              set(float_nodes(shipped.program)) - planned_float)
    summary = precision_summary(shipped.program, target.precision or f"w{default.param}a{default.activation}",
                                resolved.fallbacks, source,
                                [*symmetric_exceptions(shipped.qgraph, target.rules), *shipped.unfused])
    weights = weight_scheme(shipped.qgraph, target.rules)  # the device's weight grid is not the shipped one
    return summary if weights is None else {**summary, "weights": weights}


def _calibration_set(loaded: LoadedModel, calib: str | Path | None, x: np.ndarray | None,
                     calib_size: int) -> tuple[np.ndarray, str]:
    if calib is not None:
        calib_x, _ = loaded.read_data(calib, labels=False)
        return calib_x[:calib_size], str(calib)
    if loaded.calib is not None:
        return loaded.calib[:calib_size], "the example's training split"
    if x is None:
        raise DataError("no calibration data: pass --calib CALIB.npz (or --data DATA.npz to calibrate on a slice of it)")
    log.warning("no --calib given: calibrating on the first %d samples of --data", min(calib_size, len(x)))
    return x[:calib_size], f"first {min(calib_size, len(x))} samples of --data"


def _accuracy(graph: Graph, program: QProgram, x: np.ndarray, y: np.ndarray | None,
              int8: np.ndarray | None = None) -> dict:
    """Top-1 (with labels ``y``) or top-1 agreement of int8 with fp32, on the model's first output."""
    fp32 = run_float(graph, x)
    int8 = run_int8(program, x) if int8 is None else int8
    agree = float(np.mean(fp32.reshape(len(x), -1).argmax(1) == int8.reshape(len(x), -1).argmax(1)) * 100)
    if y is None:
        return {"metric": "top1_agreement", "fp32": 100.0, "int8": agree, "n": int(len(x))}
    return {"metric": "top1", "fp32": top1(fp32, y), "int8": top1(int8, y), "agreement": agree, "n": int(len(x))}
