"""The command line: typer wiring only; every command parses options and calls the library."""
from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console

from edgeopt.errors import EdgeoptError, InternalError, exit_code

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Optimize, quantize and deploy neural networks to edge devices, or emulate them.")
profiles_app = typer.Typer(no_args_is_help=True, help="List and show device profiles.")
app.add_typer(profiles_app, name="profiles")

console = Console()
err_console = Console(stderr=True)
T = TypeVar("T")

DebugOpt = Annotated[bool, typer.Option("--debug", help="Show tracebacks and debug logs.")]


def _guard(debug: bool, fn: Callable[[], T]) -> T:
    """Run ``fn``; a user error becomes one line on stderr and its exit code, a bug an internal error."""
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING, format="%(levelname)s: %(message)s",
                        stream=sys.stderr, force=True)
    try:
        return fn()
    except EdgeoptError as exc:
        if debug:
            raise
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(exit_code(exc)) from None
    except KeyboardInterrupt:
        err_console.print("interrupted; nothing was written")
        raise typer.Exit(130) from None
    except Exception as exc:
        if debug:
            raise
        err = InternalError(f"{type(exc).__name__}: {exc}")
        err_console.print(f"[bold red]internal error:[/] {err} (a bug in edgeopt; rerun with --debug and "
                          "report the traceback)", highlight=False, soft_wrap=True)
        raise typer.Exit(exit_code(err)) from None


def _parse_shape(text: str | None) -> tuple[int, ...] | None:
    if text is None:
        return None
    try:
        shape = tuple(int(d) for d in text.split(","))
    except ValueError:
        shape = ()
    if not shape or any(d <= 0 for d in shape):
        raise typer.BadParameter(f"'{text}' is not a shape; write positive integers like 1,3,32,32")
    return shape


@app.command()
def deploy(
    model: Annotated[str | None, typer.Argument(
        help="An .onnx file, a .pt2 ExportedProgram, or package.module:function returning an nn.Module. "
             "Omit it to run the built-in example.")] = None,
    device: Annotated[str, typer.Option("--device", "-d", help="Device profile name or path to a .toml.")]
    = "arm-cortex-a78-xnnpack",
    data: Annotated[Path | None, typer.Option(help=".npz with x (model-ready inputs) and y (labels).")] = None,
    calib: Annotated[Path | None, typer.Option(help=".npz with x for calibration (default: a slice of --data).")]
    = None,
    out: Annotated[Path | None, typer.Option(help="Output folder (default ./edgeopt-out/<model name>).")] = None,
    input_shape: Annotated[str | None, typer.Option(help="Input shape, e.g. 1,3,32,32.")] = None,
    calib_size: Annotated[int, typer.Option(help="Use at most this many calibration samples.")] = 500,
    debug: DebugOpt = False,
) -> None:
    """Optimize and quantize MODEL, write int8 .tflite and QDQ .onnx, emulate it, and report."""
    from edgeopt.pipeline import report
    from edgeopt.pipeline.deploy import deploy as run_deploy

    shape = _parse_shape(input_shape)

    def work() -> Any:
        with err_console.status("deploying") as status:
            return run_deploy(model, device, data=data, calib=calib, out=out, input_shape=shape,
                              calib_size=calib_size, progress=lambda s: status.update(f"deploy: {s}"))

    result = _guard(debug, work)
    report.render(result.report, console)


@profiles_app.command("list")
def profiles_list() -> None:
    """List the built-in device profiles."""
    from edgeopt.device_profiles import list_profiles, load_profile

    for name in list_profiles():
        profile = _guard(False, lambda n=name: load_profile(n))
        console.print(f"{name:32s} {profile.description}", highlight=False)


@profiles_app.command("show")
def profiles_show(name: Annotated[str, typer.Argument(help="Profile name or path to a .toml.")],
                  debug: DebugOpt = False) -> None:
    """Show one device profile with every value."""
    from edgeopt.device_profiles import load_profile

    profile = _guard(debug, lambda: load_profile(name))
    console.print_json(profile.model_dump_json())
