"""The command line: typer wiring only; every command parses options and calls the library."""
from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, TypeVar, get_args

import typer
from rich.console import Console

from edgeopt.console_progress import ConsoleProgress
from edgeopt.errors import EdgeoptError, InternalError, exit_code

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Optimize, quantize and deploy neural networks to edge devices, or emulate them.")
profiles_app = typer.Typer(no_args_is_help=True, help="List and show device profiles.")
app.add_typer(profiles_app, name="profiles")

console = Console()
err_console = Console(stderr=True)
T = TypeVar("T")

DebugOpt = Annotated[bool, typer.Option("--debug", help="Show tracebacks and debug logs.")]


def _checked_target(text: str) -> str:
    """``--target``: emulate, host, adb or adb:SERIAL, checked by typer before any work (exit 2)."""
    from edgeopt.workflows.measure import parse_target

    try:
        parse_target(text)
    except EdgeoptError as exc:
        raise typer.BadParameter(str(exc)) from None
    return text


class RangeMethod(str, Enum):
    minmax = "minmax"
    percentile = "percentile"
    mse = "mse"
    sqnr = "sqnr"


class WeightBits(str, Enum):
    four = "4"
    eight = "8"


class PrecisionChoice(str, Enum):
    w8a8 = "w8a8"
    w8a16 = "w8a16"


TargetOpt = Annotated[str, typer.Option(callback=_checked_target, help="emulate (estimates only), host (also time the int8 and fp32 .tflite "
                                             "on this machine: LiteRT with XNNPACK), or adb[:SERIAL] (also measure "
                                             "both on an Android device; SERIAL: USB serial or HOST:PORT).")]
RunsOpt = Annotated[int | None, typer.Option(min=1, help="Measured targets: timed runs per model, at least (default 50, "
                                                  "benchmark_model's --num_runs).")]
MinSecondsOpt = Annotated[float | None, typer.Option(min=0, help="Measured targets: time each model for at least this many "
                                                          "seconds (default 1, benchmark_model's --min_secs).")]
ThreadsOpt = Annotated[int | None, typer.Option(min=1, help="Measured targets: CPU threads (default: 1 on host, the "
                                                     "profile's runtime.threads on adb).")]
RangeMethodOpt = Annotated[RangeMethod, typer.Option(help="Activation ranges.")]
PrecisionOpt = Annotated[PrecisionChoice | None, typer.Option(help="w8a8 (int8 activations) or w8a16 (int16 activations where a "
                                                       "16x8 kernel exists and the profile allows, int8 elsewhere); "
                                                       "default: the profile's default kernel.")]
MaxDropOpt = Annotated[float | None, typer.Option(help="Automatic recipe: try min/max, CLE, bias correction, range "
                                                       "methods, AdaRound, mixed precision until int8 accuracy on "
                                                       "--data is within this many points of fp32; exit 10 (after "
                                                       "writing everything) when no step is.")]
OverrideOpt = Annotated[list[str] | None, typer.Option(
    "--override", metavar="NAME=DTYPE",
    help="Run a node (by name) or every node of an ONNX op type at int8, int16 or float (a float island), "
         "on top of --precision; repeatable, a name wins over an op type: --override Softmax=float "
         "--override conv1=int16.")]
KeepOpt = Annotated[bool, typer.Option(help="Leave the pushed files on the device.")]
DATA_HELP = (" An .npz (x: model-ready inputs, or one array per input name; y: labels), an .npy of inputs, an "
             "image folder (class-per-folder or flat) or .txt list of 'path label' lines (see --preprocess), or "
             "module:function / file.py:function returning batches x or (x, y).")
PreprocessOpt = Annotated[str | None, typer.Option(
    help="How images of an image-folder --data/--calib become samples: key=value,... (resize=256 shorter side, "
         "crop=224, scale=1/255, offset, mean=[..], std=[..], order=rgb|bgr|gray, layout=nchw|nhwc, "
         "dtype=float32|uint8|int8) or a .toml file with those keys.")]
InputShapeOpt = Annotated[list[str] | None, typer.Option(
    "--input-shape", metavar="[NAME=]SHAPE",
    help="Input shape, e.g. 1,3,32,32; for a model with several inputs one NAME=SHAPE per input, repeated or "
         "';'-separated: --input-shape input_ids=1,128 --input-shape attention_mask=1,128.")]
BinaryOpt = Annotated[Path | None, typer.Option(help="A benchmark_model binary to push (default: "
                                                     "/data/local/tmp/benchmark_model on the device).")]


def _guard(debug: bool, fn: Callable[[], T]) -> T:
    """Run ``fn``; a user error becomes one line on stderr and its exit code, a bug an internal error."""
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING, format="%(levelname)s: %(message)s",
                        stream=sys.stderr, force=True)
    from edgeopt.fileio import committed

    before = len(committed())
    try:
        return fn()
    except EdgeoptError as exc:
        if debug:
            raise
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(exit_code(exc)) from None
    except KeyboardInterrupt:
        written = committed()[before:]
        err_console.print(f"interrupted; {', '.join(map(str, written))} holds this run's complete set of files"
                          if written else "interrupted; no output folder was changed", highlight=False)
        raise typer.Exit(130) from None
    except Exception as exc:
        if debug:
            raise
        err = InternalError(f"{type(exc).__name__}: {exc}")
        err_console.print(f"[bold red]internal error:[/] {err} (a bug in edgeopt; rerun with --debug and "
                          "report the traceback)", highlight=False, soft_wrap=True)
        raise typer.Exit(exit_code(err)) from None


def _parse_shape(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(d) for d in text.split(","))
    except ValueError:
        shape = ()
    if not shape or any(d <= 0 for d in shape):
        raise typer.BadParameter(f"'{text}' is not a shape; write positive integers like 1,3,32,32",
                                 param_hint="--input-shape")
    return shape


def _parse_input_shapes(texts: list[str]) -> tuple[int, ...] | dict[str, tuple[int, ...]] | None:
    """``--input-shape`` options: one bare shape (``1,3,32,32``, a single-input model), or ``NAME=SHAPE`` per
    input, repeated or ``;``-separated (whether each name is an input is the frontend's check)."""
    items = [part.strip() for text in texts for part in text.split(";") if part.strip()]
    if not items:
        return None
    if len(items) == 1 and "=" not in items[0]:
        return _parse_shape(items[0])
    shapes: dict[str, tuple[int, ...]] = {}
    for item in items:
        name, sep, shape = (part.strip() for part in item.rpartition("="))
        if not sep or not name:
            raise typer.BadParameter(f"'{item}' is not NAME=SHAPE; with several shapes name each input, e.g. "
                                     "input_ids=1,128", param_hint="--input-shape")
        if name in shapes:
            raise typer.BadParameter(f"input '{name}' is given twice", param_hint="--input-shape")
        shapes[name] = _parse_shape(shape)
    return shapes


def _parse_overrides(texts: list[str]) -> dict[str, str]:
    """``--override NAME=DTYPE`` options as ``{name: dtype}`` (whether a name exists is the pipeline's check)."""
    from edgeopt.pipeline.quantize.precision import ActivationDtype

    dtypes = get_args(ActivationDtype)
    overrides: dict[str, str] = {}
    for text in texts:
        name, _, dtype = (part.strip() for part in text.rpartition("="))  # a dtype has no '=', a node name might
        if not name or dtype not in dtypes:
            raise typer.BadParameter(f"'{text}' is not NAME=DTYPE with DTYPE one of {', '.join(dtypes)} "
                                     "(e.g. Softmax=float, conv1=int16)", param_hint="--override")
        if overrides.get(name, dtype) != dtype:
            raise typer.BadParameter(f"'{name}' is overridden twice ({overrides[name]} and {dtype}); give one",
                                     param_hint="--override")
        overrides[name] = dtype
    return overrides


@app.command()
def deploy(
    model: Annotated[str | None, typer.Argument(
        help="An .onnx file, a .pt2 ExportedProgram, a float32 .tflite (its data NHWC, as the file takes it), "
             "or package.module:function returning an nn.Module. Omit it to run the built-in example.")] = None,
    device: Annotated[str, typer.Option("--device", "-d", help="Device profile name or path to a .toml.")]
    = "arm-cortex-a78-xnnpack",
    data: Annotated[Path | None, typer.Option(help="Data to measure accuracy on." + DATA_HELP)] = None,
    calib: Annotated[Path | None, typer.Option(help="Calibration data, as --data (default: a slice of --data).")]
    = None,
    preprocess: PreprocessOpt = None,
    out: Annotated[Path | None, typer.Option(help="Output folder (default ./edgeopt-out/<model name>).")] = None,
    input_shape: InputShapeOpt = None,
    calib_size: Annotated[int, typer.Option(min=1, help="Use at most this many calibration samples.")] = 500,
    range_method: RangeMethodOpt = RangeMethod.minmax,
    target: TargetOpt = "emulate",
    runs: RunsOpt = None,
    min_seconds: MinSecondsOpt = None,
    threads: ThreadsOpt = None,
    keep: KeepOpt = False,
    benchmark_binary: BinaryOpt = None,
    precision: PrecisionOpt = None,
    weight_bits: Annotated[WeightBits, typer.Option(help="Weight bit width (4 if the profile's supported_kernels "
                                                         "allow it).")] = WeightBits.eight,
    max_drop: MaxDropOpt = None,
    recipe_samples: Annotated[int, typer.Option(min=0, help="The automatic recipe scores each step on this many samples "
                                                     "of --data (0: all) and confirms a step within budget on all "
                                                     "of them.")] = 500,
    tune_data: Annotated[Path | None, typer.Option(help="Automatic recipe: select its steps on this .npz (x, "
                                                       "optionally y) and report accuracy on all of --data, held "
                                                       "out; default: select on the first half of --data, hold out "
                                                       "the second.")] = None,
    sensitivity: Annotated[bool, typer.Option("--sensitivity", help="Also measure each layer's weights and output "
                                                                    "activation quantized alone (output SQNR, "
                                                                    "top-1 agreement); writes sensitivity.svg.")]
    = False,
    override: OverrideOpt = None,
    debug: DebugOpt = False,
) -> None:
    """Optimize and quantize MODEL, write int8 .tflite and QDQ .onnx, emulate or measure it, and report."""
    from edgeopt.pipeline import report
    from edgeopt.workflows.deploy import DeployOptions, deploy_with
    from edgeopt.pipeline.report.precision import render_precision
    from edgeopt.pipeline.report.recipe import render_recipe
    from edgeopt.pipeline.report.sensitivity import render_sensitivity

    shape = _parse_input_shapes(input_shape or [])
    options = DeployOptions(device, data=data, calib=calib, preprocess=preprocess, out=out, input_shape=shape,
                            calib_size=calib_size,
                            range_method=range_method.value, target=target, keep=keep,
                            benchmark_binary=benchmark_binary, precision=precision.value if precision else None,
                            precision_overrides=_parse_overrides(override or []),
                            weight_bits=int(weight_bits.value), max_drop=max_drop, recipe_samples=recipe_samples,
                            tune_data=tune_data, sensitivity=sensitivity,
                            measure=_measure_options(runs, min_seconds, threads))

    def work() -> Any:
        with ConsoleProgress(err_console, "deploy") as progress:
            return deploy_with(model, options, progress=progress)

    result = _guard(debug, work)
    report.render(result.report, console)
    render_recipe(result.report, console)
    render_sensitivity(result.report, console)
    render_precision(result.report, console)
    _warn_collapse_and_budget(result.report)


def _warn_collapse_and_budget(report: dict) -> None:
    """Print a collapse loudly; exit with AccuracyError's code when the --max-drop budget was missed."""
    from edgeopt.errors import AccuracyError

    collapse = (report.get("accuracy") or {}).get("collapse")
    if collapse:
        err_console.print(f"[bold red]warning:[/] {collapse}", highlight=False, soft_wrap=True)
    budget = report.get("recipe_budget")
    if budget is not None and not budget["met"]:
        err = AccuracyError(f"no recipe step met --max-drop {budget['max_drop']} (kept '{budget['chosen']}'); the "
                            "artifacts and report.json are written: raise --max-drop or see the recipe table")
        err_console.print(f"[bold red]error:[/] {err}", highlight=False, soft_wrap=True)
        raise typer.Exit(exit_code(err))


DeviceOpt = Annotated[str, typer.Option("--device", "-d", help="Device profile name or path to a .toml.")]


def _measure_options(runs: int | None, min_seconds: float | None, threads: int | None) -> Any:
    """``--runs``, ``--min-seconds`` and ``--threads`` as ``MeasureOptions`` (typer checked their ranges)."""
    from edgeopt.workflows.measure import MeasureOptions

    return MeasureOptions(runs=runs, min_seconds=min_seconds, threads=threads)


class RoundingChoice(str, Enum):
    single = "single"
    double = "double"


@app.command()
def emulate(
    model: Annotated[Path, typer.Argument(help="An int8 .tflite file, made by edgeopt or any converter "
                                                  "(float32 input and output around int8 ops too).")],
    data: Annotated[Path, typer.Option(help=".npz with x (model dtype, or real values to quantize; several "
                                            "inputs: one array per input name) and optional labels y; or another "
                                            "source, as deploy's --data.")],
    preprocess: PreprocessOpt = None,
    save_outputs: Annotated[Path | None, typer.Option(help="Write the raw outputs to this .npz.")] = None,
    rounding: Annotated[RoundingChoice | None, typer.Option(help="Requantization rounding (default: the "
                                                                 "profile's).")] = None,
    device: DeviceOpt = "arm-cortex-a78-xnnpack",
    debug: DebugOpt = False,
) -> None:
    """Run an int8 .tflite in the integer reference executor on DATA; print top-1 and the cost estimate."""
    from edgeopt.workflows.emulate import emulate as run_emulate

    result = _guard(debug, lambda: run_emulate(model, data, device=device, save_outputs=save_outputs,
                                               rounding=rounding.value if rounding else None,
                                               preprocess=preprocess))
    for note in result.notes:
        err_console.print(f"note: {note}", highlight=False, soft_wrap=True)
    console.print(f"{result.program.name}: {result.n} samples, {len(result.program.ops)} ops, "
                  f"{result.program.rounding} rounding", highlight=False)
    if result.top1 is not None:
        console.print(f"top-1: {result.top1:.2f} % (n={result.n})", highlight=False)
    console.print(f"estimate on {result.profile}: {result.cost.latency_ms:.3f} ms, {result.cost.fps:.1f} fps, "
                  f"{result.cost.energy_mj:.4f} mJ/inference, {result.cost.macs} MACs", highlight=False)
    if save_outputs is not None:
        console.print(f"outputs written to {save_outputs}", highlight=False)


@app.command()
def convert(
    model: Annotated[Path, typer.Argument(help="A QDQ .onnx (e.g. from ONNX Runtime's quantize_static).")],
    out: Annotated[Path, typer.Option(help="The int8 .tflite to write.")],
    device: DeviceOpt = "arm-cortex-a78-xnnpack",
    debug: DebugOpt = False,
) -> None:
    """Convert a quantized (QDQ) .onnx to an int8 .tflite, taking the encodings from the file."""
    from edgeopt.workflows.convert import convert as run_convert

    program = _guard(debug, lambda: run_convert(model, out, device=device))
    console.print(f"{out}: {len(program.ops)} int8 ops ({program.rounding} rounding)", highlight=False)


@profiles_app.command("list")
def profiles_list() -> None:
    """List the device profiles: the built-in ones and the user's (which shadow a built-in one of their name)."""
    from edgeopt.device_profiles import list_profiles, load_profile, profile_file

    for name in list_profiles():
        profile = _guard(False, lambda n=name: load_profile(n))
        path, user = profile_file(name)
        console.print(f"{name:32s} {profile.description}", highlight=False)
        if user:
            shadows = (Path(__file__).parent / "device_profiles" / f"{name}.toml").is_file()
            console.print(f"{'':32s} (user profile {path}{', shadows the built-in one of this name' if shadows else ''})",
                          highlight=False, soft_wrap=True)


@profiles_app.command("show")
def profiles_show(name: Annotated[str, typer.Argument(help="Profile name or path to a .toml.")],
                  as_json: Annotated[bool, typer.Option("--json", help="Every value, defaults included, as "
                                                                       "JSON (no comments).")] = False,
                  debug: DebugOpt = False) -> None:
    """Show one device profile: its TOML file with the comments that give each number's source."""
    from edgeopt.device_profiles import load_profile, profile_file

    profile = _guard(debug, lambda: load_profile(name))
    if as_json:
        console.print_json(profile.model_dump_json())
        return
    path, user = (Path(name), False) if name.endswith(".toml") or "/" in name else profile_file(name)
    console.print(f"# {'user profile' if user else 'profile'} file: {path}", highlight=False, soft_wrap=True)
    console.print(path.read_text(encoding="utf-8"), highlight=False, markup=False, soft_wrap=True, end="")


@profiles_app.command("validate")
def profiles_validate(file: Annotated[str, typer.Argument(help="Path to a profile .toml (or a built-in name).")],
                      debug: DebugOpt = False) -> None:
    """Check a device profile; print its units, or the one-line ProfileError (file, key, bad value)."""
    from edgeopt.device_profiles import load_profile

    profile = _guard(debug, lambda: load_profile(file))
    units = ", ".join(f"{key} ({unit.name})" for key, unit in profile.units().items())
    console.print(f"{file}: valid profile '{profile.name}'; compute units in fallback order: {units}",
                  highlight=False)


class CalibrateTarget(str, Enum):
    host = "host"


@profiles_app.command("calibrate")
def profiles_calibrate(
    target: Annotated[CalibrateTarget, typer.Argument(help="What to measure: host (this machine, LiteRT + "
                                                           "XNNPACK, 1 thread).")],
    out: Annotated[Path | None, typer.Option(help="Profile file to write (default: host.toml in your config "
                                                  "folder, which shadows the built-in host profile); a new file "
                                                  "starts from --template.")] = None,
    template: Annotated[Path | None, typer.Option(help="Profile a new --out file copies its other keys from "
                                                       "(default: the built-in host profile).")] = None,
    debug: DebugOpt = False,
) -> None:
    """Measure this machine's int8/fp32 MAC rates, bandwidth and per-op overhead; write them into a profile."""
    from edgeopt.workflows.calibrate_host import calibrate

    with err_console.status("calibrating host (LiteRT micro-benchmarks)"):
        result = _guard(debug, lambda: calibrate(out=out, template=template))
    for key, value in result.numbers.performance().items():
        console.print(f"{key:30s} {value}", highlight=False)
    console.print(f"measured on {result.cpu}; written to {result.path}", highlight=False)


@app.command()
def compare(
    models: Annotated[list[str], typer.Argument(help="Two or more models (as for deploy), e.g. the "
                                                     "uncompressed one first.")],
    device: Annotated[str, typer.Option("--device", "-d", help="Device profile name or path to a .toml.")]
    = "arm-cortex-a78-xnnpack",
    data: Annotated[Path | None, typer.Option(help="Data shared by all models." + DATA_HELP)] = None,
    calib: Annotated[Path | None, typer.Option(help="Calibration data, as --data.")] = None,
    preprocess: PreprocessOpt = None,
    out: Annotated[Path | None, typer.Option(help="Parent output folder: one folder per model and compare.json "
                                                  "(default ./edgeopt-out/compare).")] = None,
    input_shape: InputShapeOpt = None,
    precision: PrecisionOpt = None,
    range_method: RangeMethodOpt = RangeMethod.minmax,
    override: OverrideOpt = None,
    max_drop: MaxDropOpt = None,
    target: TargetOpt = "emulate",
    runs: RunsOpt = None,
    min_seconds: MinSecondsOpt = None,
    threads: ThreadsOpt = None,
    keep: KeepOpt = False,
    benchmark_binary: BinaryOpt = None,
    debug: DebugOpt = False,
) -> None:
    """Deploy several models to one device and compare them side by side, each row with its ratio to the first."""
    from edgeopt.pipeline.report.comparison import render_comparison
    from edgeopt.workflows.compare import compare as run_compare

    if len(models) < 2:
        raise typer.BadParameter("give at least two models to compare")
    options = {"data": data, "calib": calib, "preprocess": preprocess,
               "input_shape": _parse_input_shapes(input_shape or []),
               "precision": precision.value if precision else None, "range_method": range_method.value,
               "precision_overrides": _parse_overrides(override or []), "max_drop": max_drop, "target": target,
               "keep": keep, "benchmark_binary": benchmark_binary,
               "measure": _measure_options(runs, min_seconds, threads)}

    def work() -> Any:
        with ConsoleProgress(err_console, "compare") as progress:
            return run_compare(models, device, out=out, progress=progress, **options)

    result = _guard(debug, work)
    render_comparison(result.summary, console)
    console.print(f"summary written to {result.path}", highlight=False)


@app.command()
def devices(
    serials: Annotated[list[str] | None, typer.Argument(help="TCP devices to probe (HOST:PORT), besides USB.")]
    = None,
    debug: DebugOpt = False,
) -> None:
    """List the Android devices edgeopt can reach over adb, with their state; exit 7 (one line) when none of
    the SERIALS given is usable."""
    from edgeopt.errors import DeviceError
    from edgeopt.runtimes.android import list_devices

    def probe() -> list[Any]:
        found = list_devices(serials or ())
        unusable = [d for d in found if d.serial in (serials or ()) and d.state != "device"]
        if serials and len(unusable) == len(found):
            more = f" (and {len(unusable) - 1} more device(s) not usable)" if len(unusable) > 1 else ""
            raise DeviceError(f"{unusable[0].detail}{more}")
        return found

    found = _guard(debug, probe)
    if not found:
        console.print("no devices found (pass HOST:PORT for devices in adb tcpip mode)")
    for d in found:
        console.print(f"{d.serial:24s} {d.transport:4s} {d.state:12s} {d.detail}", highlight=False)


@app.command()
def compress(
    model: Annotated[str | None, typer.Argument(help="A float model as for deploy (omit for the built-in "
                                                     "example).")] = None,
    target_macs: Annotated[float | None, typer.Option(help="Fraction of the model's MACs to keep, e.g. 0.5.")]
    = None,
    target_latency: Annotated[float | None, typer.Option(help="Fraction of the model's int8 latency on --device to "
                                                              "keep, priced by the profile's cost model.")] = None,
    device: Annotated[str | None, typer.Option("--device", "-d", help="Device profile for --target-latency.")]
    = None,
    method: Annotated[str, typer.Option(help="Compression methods, comma-separated: svd (spatial and weight SVD), "
                                             "prune (channel pruning with reconstruction).")] = "svd,prune",
    data: Annotated[Path | None, typer.Option(help="Data layers are scored on (top-1 with labels, else "
                                                   "agreement/SQNR)." + DATA_HELP)] = None,
    calib: Annotated[Path | None, typer.Option(help="Data for pruning's re-fit, as --data (default: a slice of "
                                                    "--data).")] = None,
    preprocess: PreprocessOpt = None,
    calib_size: Annotated[int, typer.Option(help="Use at most this many calibration samples.")] = 128,
    eval_size: Annotated[int, typer.Option(help="Score layers on at most this many samples of --data.")] = 256,
    finetune_epochs: Annotated[int, typer.Option(help="Epochs of label-free distillation from the uncompressed "
                                                      "model on the calibration data (0: none).")] = 0,
    finetune_size: Annotated[int, typer.Option(help="Distil on at most this many calibration samples.")] = 2048,
    out: Annotated[Path, typer.Option(help="Output folder: model.compressed.onnx, compress.json and the cached "
                                           "score table.")] = Path("edgeopt-out/compress"),
    input_shape: InputShapeOpt = None,
    debug: DebugOpt = False,
) -> None:
    """Compress MODEL (SVD, channel pruning) to a MAC target with per-layer ratios; write an fp32 .onnx."""
    from edgeopt.workflows.compress import compress as run_compress

    methods = tuple(m.strip() for m in method.split(",") if m.strip())

    def work() -> Any:
        with ConsoleProgress(err_console, "compress") as progress:
            return run_compress(model, target_macs, target_latency=target_latency, device=device, out=out,
                                methods=methods, data=data, calib=calib,
                                calib_size=calib_size, eval_size=eval_size, input_shape=_parse_input_shapes(input_shape or []),
                                finetune_epochs=finetune_epochs, finetune_size=finetune_size,
                                progress=progress, preprocess=preprocess)

    result = _guard(debug, work)
    _render_compress(result.report, result.table_cached)


def _render_compress(report: dict, cached: bool) -> None:
    from edgeopt.pipeline.report.tables import fitted_table

    rows = [[r["layer"], r["method"], f"{r['ratio']:.3f}", f"{r['macs_before']:,}", f"{r['macs_after']:,}",
             f"{r['table_sqnr_db']:.1f} @ {r['table_ratio']:.3f}"] for r in report["layers"]]
    console.print(fitted_table(f"{report['model']}: per-layer compression",
                               ["layer", "method", "ratio", "MACs before", "MACs after", "SQNR alone (dB)"], rows,
                               console.width, left=(0, 1)))
    ev = report["eval"]
    final = ev["finetuned"] or ev["compressed"]
    metric = (f"top-1 {ev['base']['top1']:.2f} % -> {final['top1']:.2f} %" if ev["labels"] else
              f"top-1 agreement {final['agreement']:.2f} %")
    if ev["finetuned"]:
        metric += f" after {report['finetune']['epochs']} epochs of distillation"
    target = (f"target {report['target_macs']}" if report["target_latency"] is None else
              f"latency {report['latency_ms_before']:.3f} -> {report['latency_ms_after']:.3f} ms on "
              f"{report['device']} ({report['latency_ms_after'] / report['latency_ms_before']:.3f}, target "
              f"{report['target_latency']})")
    console.print(f"MACs {report['macs_before']:,} -> {report['macs_after']:,} "
                  f"({report['macs_after'] / report['macs_before']:.3f}), {target}, "
                  f"params {report['params_before']:,} -> {report['params_after']:,}; fp32 {metric}, output SQNR "
                  f"{final['sqnr_db']:.1f} dB on {ev['n']} samples; "
                  f"score table {'reused from cache' if cached else 'computed'}", highlight=False)


@app.command()
def sweep(
    model: Annotated[str | None, typer.Argument(help="A model as for deploy (omit it for the built-in example).")]
    = None,
    devices: Annotated[str | None, typer.Option(help="Device profiles, comma-separated names or .toml paths "
                                                     "(default: every built-in profile).")] = None,
    precisions: Annotated[str, typer.Option(help="Comma-separated: w8a8, w8a16.")] = "w8a8,w8a16",
    recipes: Annotated[str, typer.Option(help="Comma-separated: minmax (a plain deploy), auto (the automatic "
                                              "recipe with --max-drop).")] = "minmax",
    max_drop: Annotated[float, typer.Option(help="The auto recipe's budget: points of accuracy below fp32.")] = 1.0,
    data: Annotated[Path | None, typer.Option(help=".npz with x and y, shared by every combination.")] = None,
    calib: Annotated[Path | None, typer.Option(help=".npz with x for calibration.")] = None,
    calib_size: Annotated[int, typer.Option(help="Use at most this many calibration samples.")] = 500,
    recipe_samples: Annotated[int, typer.Option(help="The auto recipe scores each step on this many samples of "
                                                     "--data (0: all).")] = 500,
    input_shape: InputShapeOpt = None,
    ray: Annotated[bool | None, typer.Option("--ray/--no-ray", help="Run the combinations on Ray (default: when it "
                                                                    "is installed) or one by one here.")] = None,
    address: Annotated[str | None, typer.Option(help="A Ray cluster to run on (ray.init's address, e.g. HEAD:6379 "
                                                     "or auto); default: a local Ray started here.")] = None,
    workers: Annotated[int | None, typer.Option(help="CPUs of the local Ray, one combination each (default: "
                                                     "this machine's).")] = None,
    out: Annotated[Path, typer.Option(help="Output folder: one subfolder per combination, sweep.json, "
                                           "report.html.")] = Path("edgeopt-out/sweep"),
    debug: DebugOpt = False,
) -> None:
    """Deploy MODEL for every device x precision x recipe (on Ray when installed) and compare the results."""
    from edgeopt.device_profiles import list_profiles
    from edgeopt.pipeline.report.sweep import render_sweep
    from edgeopt.workflows.sweep import sweep as run_sweep

    def names(text: str) -> list[str]:
        return [part.strip() for part in text.split(",") if part.strip()]

    def work() -> Any:
        with ConsoleProgress(err_console, "sweep") as progress:
            return run_sweep(model, names(devices) if devices is not None else list_profiles(), names(precisions),
                             names(recipes), out=out, data=data, calib=calib,
                             input_shape=_parse_input_shapes(input_shape or []), calib_size=calib_size,
                             max_drop=max_drop, recipe_samples=recipe_samples, use_ray=ray, address=address,
                             workers=workers, progress=progress)

    result = _guard(debug, work)
    render_sweep(result.report, console)
    failures = [r for r in result.rows if r["status"] != "ok"]
    if len(failures) == len(result.rows):
        raise typer.Exit(failures[0]["exit_code"])
