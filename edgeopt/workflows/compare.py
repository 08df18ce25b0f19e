"""compare: deploy several models to one device profile and put their reports side by side.

The usual question is compressed against uncompressed: the same task, the same data, two models. Before
the first deploy, the target is checked (``measure.preflight``) and every model is loaded and its data
read, so that a model whose data does not fit stops the run at once, named in one line. Each model then
deploys to ``OUT/<index>-<name>`` as ``deploy`` would (on the host target, every model's files are then
timed together, taking turns, so that the ratios between models do not hang on when each was timed),
and the side-by-side summary, every row with its ratio to the first model, is written to
``OUT/compare.json``. ``OUT`` is checked first (it may hold only an earlier compare's files) and is
replaced as a set (``fileio.replaced_as_a_set``): an error or Ctrl-C at any moment leaves the earlier
compare's folder or this one's, never a mix.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from edgeopt.errors import DataError, ModelLoadError
from edgeopt.fileio import atomic_write_text, check_output_dir, replaced_as_a_set
from edgeopt.pipeline.frontend.load import load
from edgeopt.pipeline.frontend.sources import BATCH, open_sources
from edgeopt.pipeline.report import dumps
from edgeopt.pipeline.report.comparison import comparison
from edgeopt.pipeline.report.html import compare_html
from edgeopt.progress import reporting
from edgeopt.workflows.deploy import (
    ARTIFACTS,
    DeployOptions,
    DeployResult,
    Progress,
    deploy_with,
)
from edgeopt.workflows.measure import measure_together_on_host, parse_target, preflight

SUMMARY_FILES = ("compare.json", "report.html")
MODEL_FOLDER = re.compile(r"\d+-.+")


@dataclass(frozen=True)
class Comparison:
    """The deployed models (the base first), the summary written to ``path`` (``report.comparison.comparison``)."""

    results: list[DeployResult]
    summary: dict
    path: Path


def compare(models: list[str], device: str, *, out: str | Path | None = None, progress: Progress | None = None,
            **options: Any) -> Comparison:
    """Deploy each model in ``models`` with the same options; each writes to ``OUT/<index>-<name>``;
    ``OUT/compare.json`` holds the summary and ``OUT/report.html`` puts them side by side (accuracy against
    fps and energy, linking each model's page).

    Args:
        models: model specs, as for ``deploy`` (at least two), the base (uncompressed) model first.
        device: the device profile every model is deployed to.
        out: parent folder of the per-model outputs and ``compare.json`` (default ``./edgeopt-out/compare``).
        progress: called with ``"<model>: <stage>"`` as each stage starts; given counts too if it has
            ``count`` (``edgeopt.progress.Counter``).
        options: the fields of ``DeployOptions`` (data, calib, target, precision, measure, ...), shared.

    Raises:
        DataError: a model's data or calibration file does not fit it (one line naming the model).
        ModelLoadError: a model cannot be loaded (one line naming it).
        DeviceError: the target cannot be reached (before anything is deployed) or failed while measuring.
    """
    if len(models) < 2:
        raise DataError("compare needs at least two models, the base (uncompressed) one first")
    shared = DeployOptions(device, **options)
    root = Path(out) if out is not None else Path("edgeopt-out") / "compare"
    folders = [f"{i}-{Path(spec).stem.replace(':', '-')}" for i, spec in enumerate(models)]
    check_output_dir(root, {*SUMMARY_FILES, *folders, *_earlier_model_folders(root)})
    where = parse_target(shared.target)
    preflight(where, benchmark_binary=Path(shared.benchmark_binary) if shared.benchmark_binary else None)
    for spec in models:
        check_data_fits(spec, shared)
    results = []
    # on the host, every model's files are timed together below rather than model after model
    each = replace(shared, target="emulate") if where.kind == "host" else shared
    with replaced_as_a_set(root), reporting(progress):  # the counts reach ``progress``; the lambdas, stage names
        for spec, name in zip(models, folders):
            step = (lambda s, name=Path(spec).stem: progress(f"{name}: {s}")) if progress else None
            results.append(deploy_with(spec, replace(each, out=root / name), step))
        if where.kind == "host":
            if progress:
                progress("timing every model on the host")
            results = _measured_together(results, shared)
        summary = comparison([r.report for r in results], [str(r.out_dir) for r in results])
        path = root / "compare.json"
        atomic_write_text(path, json.dumps(summary, indent=2) + "\n")
        atomic_write_text(root / "report.html", compare_html([r.report for r in results],
                                                             [r.out_dir / "report.html" for r in results], root))
    return Comparison(results, summary, path)


def _earlier_model_folders(root: Path) -> list[str]:
    """The per-model folders (``<index>-<name>`` holding a report.json) an earlier compare left in ``root``."""
    if not root.is_dir():
        return []
    return [p.name for p in root.iterdir() if MODEL_FOLDER.match(p.name) and (p / ARTIFACTS["report"]).is_file()]


def _measured_together(results: list[DeployResult], options: DeployOptions) -> list[DeployResult]:
    """Time every model's int8 and fp32 .tflite together on the host; add each one's "measured" to its report."""
    groups = [{"int8": r.out_dir / ARTIFACTS["tflite"], "fp32": r.out_dir / ARTIFACTS["fp32_tflite"]}
              for r in results]
    timed = []
    for result, measured in zip(results, measure_together_on_host(groups, options.measure)):
        report = {**result.report, "measured": measured}
        atomic_write_text(result.out_dir / ARTIFACTS["report"], dumps(report))
        timed.append(replace(result, report=report))
    return timed


def check_data_fits(spec: str, options: DeployOptions) -> None:
    """Load ``spec`` and read ``options.data`` and ``options.calib`` for it, as ``deploy`` will.

    Raises:
        DataError: a file does not fit the model; ModelLoadError: the model cannot be loaded. Both name the
            model first.
    """
    try:
        loaded = load(spec, options.input_shape)
        given = open_sources([options.data, options.calib], options.preprocess)
        # The first batch of each is checked here; deploy checks every batch as it reads it.
        if options.data is not None:
            loaded.read_data(given[str(options.data)], limit=BATCH)
        if options.calib is not None:
            loaded.read_data(given[str(options.calib)], labels=False, limit=BATCH)
    except (DataError, ModelLoadError) as err:
        raise type(err)(f"model '{spec}': {err}") from err
