"""deploy: the whole pipeline, model spec → int8 artifacts + report.

load → optimize (fold batch norms, fuse activations) → the target's checks → ranges (calibration) →
quantize → ship (lower, place) → emit .tflite and QDQ .onnx → evaluate in the integer reference executor
→ report → write. Every profile rule goes through one ``Target`` (``pipeline.target``), as in the recipe
and QuantSim. Every option and the output folder are checked before the model is loaded; nothing is
written until every stage has succeeded, and the output folder is then written as a set
(``fileio.write_set``), so a failed or interrupted run leaves the earlier set, never a mix.
"""
from __future__ import annotations

import itertools
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any, get_args

import numpy as np

from edgeopt.device_profiles import load_profile
from edgeopt.errors import DataError, OptionError
from edgeopt.fileio import check_output_dir, write_set
from edgeopt.ir import Graph, QuantizedGraph
from edgeopt.pipeline.emit.float_program import dequantize_program
from edgeopt.pipeline.emit.onnx import graph_to_onnx, quantized_to_onnx
from edgeopt.pipeline.emit.tflite import program_to_tflite
from edgeopt.pipeline.evaluate import agreement, run_both, run_int8, score, top1
from edgeopt.pipeline.frontend.data import check_labels
from edgeopt.pipeline.frontend.load import LoadedModel, load
from edgeopt.pipeline.frontend.onnx import InputShape
from edgeopt.pipeline.frontend.samples import Samples, in_memory
from edgeopt.pipeline.frontend.sources import DataSource, open_sources
from edgeopt.pipeline.lower import check_lowerable
from edgeopt.pipeline.optimize import optimize
from edgeopt.pipeline.optimize.cross_layer_equalization import cross_layer_equalization
from edgeopt.pipeline.quantize.float_plan import mask_float_nodes
from edgeopt.pipeline.quantize.precision import ActivationDtype, Precision
from edgeopt.pipeline.quantize.profile_checks import symmetric_exceptions
from edgeopt.pipeline.quantize.profile_rules import ResolvedPlan
from edgeopt.pipeline.quantize.range_setting import RANGE_METHODS
from edgeopt.pipeline.quantize.sensitivity import DEFAULT_SAMPLES, LayerSensitivity, sensitive_data, sensitivity_of
from edgeopt.pipeline.quantize.weight_scheme import weight_scheme
from edgeopt.pipeline.report import Calibration, Report, dumps, float_nodes
from edgeopt.pipeline.report.collapse import collapse_warning
from edgeopt.pipeline.report.equalization import equalization_section
from edgeopt.pipeline.report.html import deploy_html, deploy_plots
from edgeopt.pipeline.report.model_explorer import FILES as MODEL_EXPLORER_FILES
from edgeopt.pipeline.report.model_explorer import node_data
from edgeopt.pipeline.report.precision import precision_source, precision_summary
from edgeopt.pipeline.target import Shipped, Target
from edgeopt.progress import reporting
from edgeopt.qprogram import QProgram
from edgeopt.runtimes.cost import estimate, estimate_float
from edgeopt.workflows.measure import MeasureOptions, measure, parse_target, preflight
from edgeopt.workflows.recipe import SCREEN_SAMPLES, RecipeResult, run_recipe

log = logging.getLogger(__name__)

DEFAULT_CALIB_SIZE = 500
GIVEN_IN_MEMORY = "encodings given in memory"
# Artifact key → file name in the output folder, in the report's order.
ARTIFACTS = {"fp32_onnx": "model.fp32.onnx", "onnx": "model.int8.onnx", "tflite": "model.int8.tflite",
             "fp32_tflite": "model.fp32.tflite", "report": "report.json", "sensitivity_svg": "sensitivity.svg",
             "html": "report.html", **{f"model_explorer_{k}": name for k, name in MODEL_EXPLORER_FILES.items()}}
Progress = Callable[[str], None]
ModelSpec = str | QuantizedGraph | LoadedModel | None
"""A model spec for ``pipeline.frontend.load.load`` (None: the built-in example), a model already loaded
(``load_module`` of an ``nn.Module``: ``edgeopt.deploy``), or a QuantizedGraph already optimized and
quantized (``QuantSim.export()``): used as is, without calibration; its float graph (with its trained
weights) is the report's fp32 reference."""


@dataclass(frozen=True)
class DeployOptions:
    """What ``deploy`` does with a model: for which device, on which data, with which choices.

    Attributes:
        device: a device profile name or the path of a profile .toml.
        data: the data to measure accuracy on (``frontend.sources``: an .npz with ``x`` and optionally ``y``,
            an .npy, an image folder or list, a ``module:function`` entry point); it is read in batches,
            never held whole (the recipe holds its first ``recipe_samples``, the screening subset).
        calib: the calibration data, as ``data`` (default: the first ``calib_size`` samples of ``data``).
        preprocess: how the images of an image-folder source become samples
            (``frontend.preprocess.parse_preprocess``: ``resize=256,crop=224,...`` or a .toml file).
        out: output directory (default ``./edgeopt-out/<model name>``).
        input_shape: input shape for entry points / ONNX inputs with unknown dimensions; for a model with
            several inputs, shapes by input name (``{"input_ids": (1, 128), ...}``).
        calib_size: at most this many calibration samples are used.
        range_method: activation range setting, one of ``quantize.range_setting.RANGE_METHODS``.
        target: "emulate" (estimates only), "host" to also time the int8 and fp32 .tflite on this machine
            (LiteRT, XNNPACK), or "adb[:SERIAL]" to also measure them on an Android device.
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
        measure: runs, minimum seconds and threads of a measuring target (``workflows.measure``).
    """

    device: str
    data: str | Path | None = None
    calib: str | Path | None = None
    preprocess: str | Path | Mapping[str, Any] | None = None
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
    measure: MeasureOptions = field(default_factory=MeasureOptions)

    def __post_init__(self) -> None:
        """Check every value that needs no model, so that a bad one fails before any work.

        Raises:
            OptionError: one line naming the option and its allowed values.
        """
        object.__setattr__(self, "precision_overrides", MappingProxyType(dict(self.precision_overrides or {})))
        choices = {"range_method": RANGE_METHODS, "weight_bits": (4, 8), "precision": (None, *get_args(Precision))}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                shown = ", ".join(str(a) for a in allowed if a is not None)
                raise OptionError(f"{name} {getattr(self, name)!r} is not one of {shown}")
        for name, dtype in self.precision_overrides.items():
            if dtype not in get_args(ActivationDtype):
                raise OptionError(f"precision override {name}={dtype!r}: use one of "
                                  f"{', '.join(get_args(ActivationDtype))}")
        if self.calib_size <= 0 or self.recipe_samples < 0:
            raise OptionError(f"calib_size must be positive and recipe_samples not negative (got {self.calib_size}, "
                              f"{self.recipe_samples})")


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
        DeviceError: the target cannot be reached or has no benchmark binary (checked first: nothing is
            written), or it failed while measuring (the artifacts and the estimate-only report are written
            by then).
    """
    return deploy_with(model, DeployOptions(device, **options), progress)


def deploy_with(model: ModelSpec, options: DeployOptions, progress: Progress | None = None) -> DeployResult:
    """Optimize, quantize, convert and emulate ``model`` as ``options`` say; write artifacts and report.

    Args:
        model: a model spec, or a QuantizedGraph to ship as it is (``ModelSpec``).
        options: the device and the choices (``DeployOptions``).
        progress: called with the name of each stage as it starts; if it also has ``count(task, done,
            total)`` (``edgeopt.progress.Counter``), that gets the counts of the long stages (samples
            calibrated and evaluated, AdaRound's layers, sensitivity probes).

    Raises:
        DeviceError: the target cannot be reached or has no benchmark binary (checked first: nothing is
            written), or it failed while measuring (the artifacts and the estimate-only report are written
            by then).
    """
    with reporting(progress):
        return _deploy_with(model, options, progress or (lambda _: None))


def _deploy_with(model: ModelSpec, options: DeployOptions, step: Progress) -> DeployResult:
    where = parse_target(options.target)
    target = Target(load_profile(options.device), options.weight_bits, options.precision,
                    options.precision_overrides, options.range_method)
    if options.out is not None:
        check_output_dir(options.out, ARTIFACTS.values())
    # The data sources' format (and an .npz's values) are checked before the model is loaded (shapes need it).
    given = open_sources([options.data, options.calib, options.tune_data], options.preprocess)
    preflight(where, benchmark_binary=Path(options.benchmark_binary) if options.benchmark_binary else None)
    step("load")
    loaded = _load(model, options.input_shape)
    out_dir = Path(options.out) if options.out is not None else Path("edgeopt-out") / loaded.name
    check_output_dir(out_dir, ARTIFACTS.values())
    graph = optimize(loaded.graph)
    check_lowerable(graph)
    resolved = target.check(graph)  # fails fast, before calibration
    classes = int(np.prod(loaded.graph.outputs[0].shape[1:]))
    data = given.get(str(options.data))
    # Only a head of the data is held (sensitivity's samples, calibration's when no --calib is given); the
    # accuracy streams over all of it (evaluate.score), and so does the recipe (Samples, read in chunks).
    head = DEFAULT_SAMPLES if options.calib is not None else max(options.calib_size, DEFAULT_SAMPLES)
    x, y = (loaded.read_data(data, limit=head) if data is not None else loaded.data or (None, None))
    if data is not None:
        check_labels(options.data, y, classes)
    samples = None
    if options.max_drop is not None and x is not None:
        samples = loaded.samples(data) if data is not None else in_memory(x, y)
        check_labels(options.data, samples.labels, classes)
    recipe: RecipeResult | None = None
    if isinstance(model, QuantizedGraph):
        calib_x, calib_source, qgraph = np.zeros((0,)), GIVEN_IN_MEMORY, model
    else:
        calib_x, calib_source = _calibration_set(loaded, given.get(str(options.calib)), x, options.calib_size)
        if options.max_drop is not None:
            tune = None
            if options.tune_data is not None:
                tune = loaded.samples(given[str(options.tune_data)])
                check_labels(options.tune_data, tune.labels, classes)
            recipe = _automatic_recipe(graph, calib_x, samples, tune, target, resolved, options.max_drop,
                                       options.recipe_samples, step)
            qgraph = recipe.qgraph
        else:
            step("calibrate")
            stats = target.ranges(graph, calib_x)
            step("quantize")
            qgraph = target.quantize(graph, stats, resolved.plan)
    step("lower")
    shipped = target.ship(qgraph)
    device = target.device_program(shipped)  # the device's own weights where no .tflite can carry them
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
    step("emulate")
    known = _recipe_outputs(recipe, options.tune_data is not None)  # the recipe ran this very program on x
    if data is not None and recipe is None:
        accuracy = score(loaded.graph, shipped.program, loaded.data_batches(data),
                         check=lambda labels: check_labels(options.data, labels, classes), device=device)
    else:
        evaluated = samples if samples is not None else in_memory(x, y) if x is not None else None
        accuracy = (_accuracy(loaded.graph, shipped.program, evaluated, known, device) if evaluated is not None
                    else None)
    if accuracy is not None:
        accuracy["collapse"] = _collapse(accuracy, shipped.program, target, recipe is not None)
    cost_int8 = estimate(shipped.program, target.profile, shipped.placement)
    cost_fp32 = estimate_float(shipped.program, target.profile)
    pages = {"report", "html", *(f"model_explorer_{k}" for k in MODEL_EXPLORER_FILES if k != "sqnr" or layers)}
    if layers is not None:
        pages.add("sensitivity_svg")
    paths = {key: out_dir / name for key, name in ARTIFACTS.items() if key in files or key in pages}
    report = Report(
        model=loaded.name, profile=target.profile, program=shipped.program, placement=shipped.placement,
        cost_int8=cost_int8, cost_fp32=cost_fp32, accuracy=accuracy,
        calibration=Calibration(calib_source, len(calib_x)), sizes={k: len(v) for k, v in files.items()},
        artifacts=paths,
        precision=_precision(target, resolved, qgraph.float_nodes - mask_float_nodes(graph), shipped, recipe,
                             isinstance(model, QuantizedGraph)),
        sensitivity=None if layers is None else tuple(layers), recipe=None if recipe is None else recipe.report(),
        equalization=_equalization(graph, recipe))
    step("write")
    for key, data in node_data(shipped.program, report.to_json()).items():
        files[f"model_explorer_{key}"] = (json.dumps(data, indent=1, ensure_ascii=False) + "\n").encode()
    write_set(out_dir, {ARTIFACTS[key]: blob for key, blob in {**files, **_report_files(report)}.items()},
              ARTIFACTS.values())
    if where.kind != "emulate":
        step(f"measure on {where}")
        measured = measure(where, {"int8": paths["tflite"], "fp32": paths["fp32_tflite"]}, target.profile,
                           options.measure, keep=options.keep,
                           benchmark_binary=Path(options.benchmark_binary) if options.benchmark_binary else None)
        report = replace(report, measured=measured)
        write_set(out_dir, {ARTIFACTS[key]: blob for key, blob in {**files, **_report_files(report)}.items()},
                  ARTIFACTS.values())
    return DeployResult(report=report.to_json(), out_dir=out_dir, program=shipped.program)


def _report_files(report: Report) -> dict[str, bytes]:
    """report.json, report.html and, with sensitivity, sensitivity.svg (the page's plot), by artifact key."""
    data = report.to_json()
    svgs = deploy_plots(data)
    out = {"report": dumps(data).encode(), "html": deploy_html(data, svgs).encode()}
    if report.sensitivity is not None:
        out["sensitivity_svg"] = svgs["sensitivity"].encode()
    return out


def _equalization(graph: Graph, recipe: RecipeResult | None) -> dict | None:
    """The weight ranges before and after cross-layer equalization when the recipe tried it (recomputed here:
    the pass is deterministic and cheap, and the recipe keeps only the graph it chose, whose weights AdaRound
    may have rounded since)."""
    if recipe is None or not (recipe.config.cle or any("CLE" in s.step for s in recipe.steps)):
        return None
    return equalization_section(graph, cross_layer_equalization(graph), adopted=recipe.config.cle)


def _load(model: ModelSpec, input_shape: InputShape | None) -> LoadedModel:
    if isinstance(model, LoadedModel):
        return model
    if isinstance(model, QuantizedGraph):  # in memory (edgeopt.deploy of a QuantSim): optimized and quantized
        return LoadedModel(name=model.graph.name, graph=model.graph, onnx_model=graph_to_onnx(model.graph))
    return load(model, input_shape)


TUNE_FRACTION = 0.5
"""Without ``--tune-data``, the recipe selects on this leading fraction of ``--data`` and the rest is held out."""


def _automatic_recipe(graph: Graph, calib_x: np.ndarray, x: Samples | None, tune: Samples | None, target: Target,
                      resolved: ResolvedPlan, max_drop: float, screen: int, step: Progress) -> RecipeResult:
    """The recipe, selecting on ``tune`` (``--tune-data``) with all of ``x`` held out, or on the first
    ``TUNE_FRACTION`` of ``x`` with the rest held out (all of it when ``x`` has a single sample). The
    parts are ranges of the sources, read in chunks (``Samples.split``), never copied."""
    if x is None:
        raise DataError("--max-drop needs data to measure accuracy on: pass --data DATA.npz")
    tried = itertools.count(1)  # the recipe stops at the first step within budget: no total to show

    def numbered(stage: str) -> None:
        step(f"recipe step {next(tried)}: {stage.removeprefix('recipe: ')}")

    holdout: Samples | None
    if tune is not None:
        holdout, tuned_on, held = x, f"all {len(tune)} --tune-data samples", f"all {len(x)} --data samples"
    elif len(x) > 1:
        n = max(1, int(len(x) * TUNE_FRACTION))
        tune, holdout = x.split(n)
        tuned_on, held = f"the first {n} of {len(x)} --data samples", f"the last {len(x) - n} --data samples"
    else:
        tune, holdout = x, None
        tuned_on, held = f"all {len(x)} --data samples (too few to hold any out)", ""
    return run_recipe(graph, calib_x, tune, None, target=target, max_drop=max_drop, base_plan=resolved.plan,
                      screen_samples=screen, holdout=holdout, tuned_on=tuned_on, holdout_source=held,
                      progress=numbered)


def _recipe_outputs(recipe: RecipeResult | None, tuned_elsewhere: bool) -> tuple[np.ndarray, np.ndarray] | None:
    """The float graph's and the chosen program's outputs on all of ``--data`` as the recipe computed them:
    the held-out part (everything, with ``--tune-data``), after the tuning part (without)."""
    if recipe is None or recipe.fp32_out is None or recipe.int8_out is None:
        return None
    held = recipe.held_out
    if held is None:
        return recipe.fp32_out, recipe.int8_out
    if held.fp32_out is None:
        return None
    if tuned_elsewhere:
        return held.fp32_out, held.int8_out
    return np.concatenate([recipe.fp32_out, held.fp32_out]), np.concatenate([recipe.int8_out, held.int8_out])


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


def _calibration_set(loaded: LoadedModel, calib: DataSource | None, x: np.ndarray | None,
                     calib_size: int) -> tuple[np.ndarray, str]:
    if calib is not None:
        calib_x, _ = loaded.read_data(calib, labels=False, limit=calib_size)
        return calib_x, calib.name
    if loaded.calib is not None:
        return loaded.calib[:calib_size], "the example's training split"
    if x is None:
        raise DataError("no calibration data: pass --calib CALIB.npz (or --data DATA.npz to calibrate on a slice of it)")
    log.warning("no --calib given: calibrating on the first %d samples of --data", min(calib_size, len(x)))
    return x[:calib_size], f"first {min(calib_size, len(x))} samples of --data"


def _collapse(accuracy: dict, program: QProgram, target: Target, recipe: bool) -> str | None:
    """The report's one-line collapse warning (``report.collapse``), None when int8 holds up."""
    activation = (16 if target.precision == "w8a16"
                  else target.rules.defaults.supported_kernels[0].activation if target.precision is None else 8)
    return collapse_warning(accuracy, depthwise=any(op.kind == "DEPTHWISE_CONV_2D" for op in program.ops),
                            per_channel=target.rules.per_channel("Conv"), weight_bits=target.weight_bits,
                            activation_bits=activation, recipe=recipe)


def _accuracy(graph: Graph, program: QProgram, x: Samples, known: tuple[np.ndarray, np.ndarray] | None = None,
              device: QProgram | None = None) -> dict:
    """Top-1 (with ``x``'s labels) or top-1 agreement of int8 with fp32, on the model's first output (the
    inputs read in chunks; ``known``: the fp32 and int8 outputs when already computed, as the recipe did);
    with ``device`` (the device's own weight scheme), its figures too, under ``device_scheme``."""
    y = x.labels
    fp32, int8 = run_both(graph, program, x) if known is None else known
    emulated = None if device is None else run_int8(device, x)
    if y is None:
        acc = {"metric": "top1_agreement", "fp32": 100.0, "int8": agreement(int8, fp32), "n": len(x)}
        device_scheme = None if emulated is None else {"int8": agreement(emulated, fp32)}
    else:
        acc = {"metric": "top1", "fp32": top1(fp32, y), "int8": top1(int8, y), "agreement": agreement(int8, fp32),
               "n": len(x)}
        device_scheme = None if emulated is None else {"int8": top1(emulated, y),
                                                       "agreement": agreement(emulated, fp32)}
    return acc if device_scheme is None else {**acc, "device_scheme": device_scheme}
