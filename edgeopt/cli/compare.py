"""Deploying several models or configurations side by side: ``edgeopt compare`` and ``edgeopt sweep``."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from edgeopt.cli.common import (DATA_HELP, BinaryOpt, DebugOpt, DeviceOpt, InputShapeOpt, KeepOpt, MaxDropOpt,
                                MinSecondsOpt, OverrideOpt, PrecisionOpt, PreprocessOpt, RangeMethod, RangeMethodOpt,
                                RunsOpt, TargetOpt, ThreadsOpt, console, err_console, guard, measure_options,
                                parse_input_shapes, parse_overrides)
from edgeopt.console_progress import ConsoleProgress

def compare(
    models: Annotated[list[str], typer.Argument(help="Two or more models (as for deploy), e.g. the "
                                                     "uncompressed one first.")],
    device: DeviceOpt = "arm-cortex-a78-xnnpack",
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
               "input_shape": parse_input_shapes(input_shape or []),
               "precision": precision.value if precision else None, "range_method": range_method.value,
               "precision_overrides": parse_overrides(override or []), "max_drop": max_drop, "target": target,
               "keep": keep, "benchmark_binary": benchmark_binary,
               "measure": measure_options(runs, min_seconds, threads)}

    def work() -> Any:
        with ConsoleProgress(err_console, "compare") as progress:
            return run_compare(models, device, out=out, progress=progress, **options)

    result = guard(debug, work)
    render_comparison(result.summary, console)
    console.print(f"summary written to {result.path}", highlight=False)


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
                             input_shape=parse_input_shapes(input_shape or []), calib_size=calib_size,
                             max_drop=max_drop, recipe_samples=recipe_samples, use_ray=ray, address=address,
                             workers=workers, progress=progress)

    result = guard(debug, work)
    render_sweep(result.report, console)
    failures = [r for r in result.rows if r["status"] != "ok"]
    if len(failures) == len(result.rows):
        raise typer.Exit(failures[0]["exit_code"])
