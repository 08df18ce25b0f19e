"""``edgeopt deploy``: optimize, quantize, write, emulate or measure, report."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from edgeopt.cli.common import (DATA_HELP, BinaryOpt, DebugOpt, DeviceOpt, InputShapeOpt, KeepOpt, MaxDropOpt,
                                MinSecondsOpt, OverrideOpt, PrecisionOpt, PreprocessOpt, RangeMethod, RangeMethodOpt,
                                RunsOpt, TargetOpt, ThreadsOpt, WeightBits, console, err_console, guard,
                                measure_options, parse_input_shapes, parse_overrides)
from edgeopt.console_progress import ConsoleProgress
from edgeopt.errors import exit_code

def deploy(
    model: Annotated[str | None, typer.Argument(
        help="An .onnx file, a .pt2 ExportedProgram, a float32 .tflite (its data NHWC, as the file takes it), "
             "or package.module:function returning an nn.Module. Omit it to run the built-in example.")] = None,
    device: DeviceOpt = "arm-cortex-a78-xnnpack",
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

    shape = parse_input_shapes(input_shape or [])
    options = DeployOptions(device, data=data, calib=calib, preprocess=preprocess, out=out, input_shape=shape,
                            calib_size=calib_size,
                            range_method=range_method.value, target=target, keep=keep,
                            benchmark_binary=benchmark_binary, precision=precision.value if precision else None,
                            precision_overrides=parse_overrides(override or []),
                            weight_bits=int(weight_bits.value), max_drop=max_drop, recipe_samples=recipe_samples,
                            tune_data=tune_data, sensitivity=sensitivity,
                            measure=measure_options(runs, min_seconds, threads))

    def work() -> Any:
        with ConsoleProgress(err_console, "deploy") as progress:
            return deploy_with(model, options, progress=progress)

    result = guard(debug, work)
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
