"""The commands around a deploy: ``emulate`` and ``convert`` of existing int8 files, ``devices``."""
from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from edgeopt.cli.common import DebugOpt, DeviceOpt, PreprocessOpt, console, err_console, guard

class RoundingChoice(str, Enum):
    single = "single"
    double = "double"


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

    result = guard(debug, lambda: run_emulate(model, data, device=device, save_outputs=save_outputs,
                                               rounding=rounding.value if rounding else None,
                                               preprocess=preprocess))
    for note in result.notes:
        err_console.print(f"note: {note}", highlight=False, soft_wrap=True)
    console.print(f"{result.program.name}: {result.n} samples, {len(result.program.ops)} ops, "
                  f"{result.program.rounding} rounding", highlight=False)
    if result.top1 is not None:
        console.print(f"top-1: {result.top1:.2f} % (n={result.n})", highlight=False)
    if result.device_top1 is not None:
        console.print(f"top-1, device scheme (emulated): {result.device_top1:.2f} % (n={result.n})", highlight=False)
    console.print(f"estimate on {result.profile}: {result.cost.latency_ms:.3f} ms, {result.cost.fps:.1f} fps, "
                  f"{result.cost.energy_mj:.4f} mJ/inference, {result.cost.macs} MACs", highlight=False)
    if save_outputs is not None:
        console.print(f"outputs written to {save_outputs}", highlight=False)


def convert(
    model: Annotated[Path, typer.Argument(help="A QDQ .onnx (e.g. from ONNX Runtime's quantize_static).")],
    out: Annotated[Path, typer.Option(help="The int8 .tflite to write.")],
    device: DeviceOpt = "arm-cortex-a78-xnnpack",
    debug: DebugOpt = False,
) -> None:
    """Convert a quantized (QDQ) .onnx to an int8 .tflite, taking the encodings from the file."""
    from edgeopt.workflows.convert import convert as run_convert

    program = guard(debug, lambda: run_convert(model, out, device=device))
    console.print(f"{out}: {len(program.ops)} int8 ops ({program.rounding} rounding)", highlight=False)


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

    found = guard(debug, probe)
    if not found:
        console.print("no devices found (pass HOST:PORT for devices in adb tcpip mode)")
    for d in found:
        console.print(f"{d.serial:24s} {d.transport:4s} {d.state:12s} {d.detail}", highlight=False)
