"""``edgeopt compress``: SVD and channel pruning to a MAC or latency target."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from edgeopt.cli.common import DATA_HELP, DebugOpt, InputShapeOpt, PreprocessOpt, console, err_console, guard, parse_input_shapes
from edgeopt.console_progress import ConsoleProgress

def compress(
    model: Annotated[str | None, typer.Argument(help="A float model as for deploy (omit for the built-in "
                                                     "example).")] = None,
    target_macs: Annotated[float | None, typer.Option(help="Fraction of the model's MACs to keep, e.g. 0.5.")]
    = None,
    target_latency: Annotated[float | None, typer.Option(help="Fraction of the model's int8 latency on --device to "
                                                              "keep, priced by the profile's cost model.")] = None,
    device: Annotated[str | None, typer.Option("--device", "-d", help="Device profile: prices --target-latency; sets the "
                                                                 "channel multiple.")]
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
    channel_multiple: Annotated[int | None, typer.Option(min=1, help="Kept channels and SVD ranks are multiples of "
                                                                     "this (default: with --device, its int8 "
                                                                     "channel blocks, else 1).")] = None,
    prune_groups: Annotated[bool, typer.Option(help="Also prune residual streams (channels tied across "
                                                    "layers) as one move.")] = False,
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
                                calib_size=calib_size, eval_size=eval_size, input_shape=parse_input_shapes(input_shape or []),
                                finetune_epochs=finetune_epochs, finetune_size=finetune_size,
                                channel_multiple=channel_multiple, prune_groups=prune_groups,
                                progress=progress, preprocess=preprocess)

    result = guard(debug, work)
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
