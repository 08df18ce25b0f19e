"""What the commands share: the consoles, the error guard, option types and their parsers."""
from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, TypeVar, get_args

import typer
from rich.console import Console

from edgeopt.errors import EdgeoptError, InternalError, exit_code

console = Console()
err_console = Console(stderr=True)
T = TypeVar("T")

DebugOpt = Annotated[bool, typer.Option("--debug", help="Show tracebacks and debug logs.")]


def checked_target(text: str) -> str:
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


TargetOpt = Annotated[str, typer.Option(callback=checked_target, help="emulate (estimates only), host (also time the int8 and fp32 .tflite "
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
DeviceOpt = Annotated[str, typer.Option("--device", "-d", help="Device profile name or path to a .toml.")]
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


def guard(debug: bool, fn: Callable[[], T]) -> T:
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


def parse_shape(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(d) for d in text.split(","))
    except ValueError:
        shape = ()
    if not shape or any(d <= 0 for d in shape):
        raise typer.BadParameter(f"'{text}' is not a shape; write positive integers like 1,3,32,32",
                                 param_hint="--input-shape")
    return shape


def parse_input_shapes(texts: list[str]) -> tuple[int, ...] | dict[str, tuple[int, ...]] | None:
    """``--input-shape`` options: one bare shape (``1,3,32,32``, a single-input model), or ``NAME=SHAPE`` per
    input, repeated or ``;``-separated (whether each name is an input is the frontend's check)."""
    items = [part.strip() for text in texts for part in text.split(";") if part.strip()]
    if not items:
        return None
    if len(items) == 1 and "=" not in items[0]:
        return parse_shape(items[0])
    shapes: dict[str, tuple[int, ...]] = {}
    for item in items:
        name, sep, shape = (part.strip() for part in item.rpartition("="))
        if not sep or not name:
            raise typer.BadParameter(f"'{item}' is not NAME=SHAPE; with several shapes name each input, e.g. "
                                     "input_ids=1,128", param_hint="--input-shape")
        if name in shapes:
            raise typer.BadParameter(f"input '{name}' is given twice", param_hint="--input-shape")
        shapes[name] = parse_shape(shape)
    return shapes


def parse_overrides(texts: list[str]) -> dict[str, str]:
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


def measure_options(runs: int | None, min_seconds: float | None, threads: int | None) -> Any:
    """``--runs``, ``--min-seconds`` and ``--threads`` as ``MeasureOptions`` (typer checked their ranges)."""
    from edgeopt.workflows.measure import MeasureOptions

    return MeasureOptions(runs=runs, min_seconds=min_seconds, threads=threads)
