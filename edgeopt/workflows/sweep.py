"""sweep: deploy one model for every combination of device profiles, precisions and recipes, and put the
results side by side (a table, ``OUT/sweep.json``, accuracy against latency in ``OUT/report.html``).

Each combination is one task, ``run_task``, a plain ``deploy`` into its own folder
``OUT/<device>-<precision>-<recipe>/``. With Ray installed (``pip install edgeopt[ray]``) the tasks run on
Ray: a local instance started here with ``workers`` CPUs, or the cluster at ``address``, or the instance
the caller already started. Without Ray (or with ``use_ray=False``) the same function runs the tasks one
by one in this process, with the same results. Tasks carry paths and names, never arrays: each worker
reads the model and the data itself, so on a cluster they must be at the same paths on every node (a
shared file system) and edgeopt installed there.

A combination that fails with a user error (a profile that refuses the model, data that does not fit) is
a failed row with that error's one line; the others go on. So is a bug (``internal error``) and a Ray
worker that died (killed for memory, say).
"""
from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from edgeopt.device_profiles import load_profile
from edgeopt.errors import (
    DataError,
    DeviceError,
    EdgeoptError,
    InternalError,
    OptionError,
    ProfileError,
    RegistryError,
    exit_code,
)
from edgeopt.fileio import atomic_write_text, check_output_dir
from edgeopt.pipeline.frontend.onnx import InputShape
from edgeopt.pipeline.report import dumps
from edgeopt.pipeline.report.html import sweep_html
from edgeopt.progress import counter, reporting
from edgeopt.workflows.deploy import DEFAULT_CALIB_SIZE, deploy
from edgeopt.workflows.recipe import SCREEN_SAMPLES

log = logging.getLogger(__name__)

PRECISIONS = ("w8a8", "w8a16")
RECIPES = ("minmax", "auto")
"""``minmax``: a plain deploy (global min/max ranges); ``auto``: the automatic recipe (``--max-drop``)."""
DEFAULT_MAX_DROP = 1.0
SCHEMA_VERSION = 1
Progress = Callable[[str], None]


@dataclass(frozen=True)
class SweepTask:
    """One combination, as shipped to a worker: names and absolute paths only.

    Attributes:
        model: the model spec as ``deploy`` takes it (a path made absolute, an entry point, or None for the
            built-in example).
        device: a profile name or the absolute path of a profile .toml.
        precision: ``w8a8`` or ``w8a16``.
        recipe: ``minmax`` or ``auto``.
        out: this combination's output folder.
        data, calib, input_shape, calib_size, max_drop, recipe_samples: as for ``deploy`` (``max_drop`` is
            used by the ``auto`` recipe only).
    """

    model: str | None
    device: str
    precision: str
    recipe: str
    out: str
    data: str | None = None
    calib: str | None = None
    input_shape: InputShape | None = None
    calib_size: int = DEFAULT_CALIB_SIZE
    max_drop: float = DEFAULT_MAX_DROP
    recipe_samples: int = SCREEN_SAMPLES

    @property
    def name(self) -> str:
        return Path(self.out).name


@dataclass(frozen=True)
class SweepResult:
    """``sweep.json``'s dict (``rows``: one per combination, in the order devices x precisions x recipes)
    and the output folder."""

    report: dict
    out_dir: Path

    @property
    def rows(self) -> list[dict]:
        return self.report["combinations"]


def run_task(task: SweepTask, progress: Progress | None = None) -> dict:
    """Deploy one combination into ``task.out``; its row of ``sweep.json``, ``status`` ``failed`` with the
    error's one line where the deploy raised. The one function every task runs, on Ray or in-process."""
    start = time.perf_counter()
    try:
        result = deploy(task.model, task.device, out=task.out, data=task.data, calib=task.calib,
                        input_shape=task.input_shape, calib_size=task.calib_size, precision=task.precision,
                        max_drop=task.max_drop if task.recipe == "auto" else None,
                        recipe_samples=task.recipe_samples, progress=progress)
    except EdgeoptError as exc:
        return _failed(task, exc, time.perf_counter() - start)
    except Exception as exc:  # noqa: BLE001 (a bug in one combination is its row, as the CLI shows it)
        bug = InternalError(f"{type(exc).__name__}: {exc} (a bug in edgeopt; rerun this combination with "
                            "edgeopt deploy --debug and report the traceback)")
        return _failed(task, bug, time.perf_counter() - start)
    return _row(task, time.perf_counter() - start, result.report)


def sweep(model: str | None, devices: Sequence[str], precisions: Sequence[str] = PRECISIONS,
          recipes: Sequence[str] = ("minmax",), *, out: str | Path | None = None, data: str | Path | None = None,
          calib: str | Path | None = None, input_shape: InputShape | None = None,
          calib_size: int = DEFAULT_CALIB_SIZE, max_drop: float = DEFAULT_MAX_DROP,
          recipe_samples: int = SCREEN_SAMPLES, use_ray: bool | None = None, address: str | None = None,
          workers: int | None = None, progress: Progress | None = None) -> SweepResult:
    """Deploy ``model`` for every combination of ``devices`` x ``precisions`` x ``recipes``; write each into
    ``OUT/<device>-<precision>-<recipe>/``, then ``OUT/sweep.json`` and ``OUT/report.html``.

    Args:
        model: a model spec as for ``deploy`` (None: the built-in example).
        devices: profile names or paths of profile .toml files.
        precisions: ``w8a8`` and/or ``w8a16``.
        recipes: ``minmax`` (a plain deploy) and/or ``auto`` (the automatic recipe with ``max_drop``).
        out: the sweep's folder (default ``./edgeopt-out/sweep``).
        data, calib, input_shape, calib_size, recipe_samples: as for ``deploy``, the same for every task.
        max_drop: the ``auto`` recipe's budget, in points of accuracy below fp32.
        use_ray: True: on Ray (an error if it is not installed); False: one by one in this process; None:
            on Ray when it is installed.
        address: a Ray cluster to run on (``ray.init(address=...)``); default: a Ray instance already
            started in this process, else a local one started (and stopped) here.
        workers: CPUs of the local Ray instance, one task each (default: this machine's CPUs).
        progress: called with each stage's name; a ``count`` method gets the counts (``edgeopt.progress``).

    Raises:
        ProfileError: a device that names no profile (before any task runs).
        RegistryError: an unknown precision or recipe, none given, or no device.
        DataError: a data file that does not exist.
        OptionError: ``address`` with ``use_ray=False``.
        OutputError: ``out`` holds other files, or cannot be written (checked before any task runs).
        DeviceError: Ray asked for (``use_ray``, ``address``) but not installed, or its cluster unreachable.
    """
    root = (Path(out) if out is not None else Path("edgeopt-out") / "sweep").absolute()
    tasks = _tasks(model, devices, precisions, recipes, root, data=_absolute(data), calib=_absolute(calib),
                   input_shape=input_shape, calib_size=calib_size, max_drop=max_drop, recipe_samples=recipe_samples)
    if use_ray is False and address is not None:
        raise OptionError(f"--address {address} names a Ray cluster: drop --no-ray to run there")
    # an earlier sweep's files are replaced; anything else in OUT is refused before any work
    check_output_dir(root, {"sweep.json", "report.html", *(task.name for task in tasks)})
    ray = None if use_ray is False else _ray_module(required=bool(use_ray) or address is not None)
    step = progress or (lambda _: None)
    start = time.perf_counter()
    with reporting(progress):
        if ray is None:
            rows, engine = _in_process(tasks, step), {"name": "in-process, one task at a time"}
        else:
            rows, engine = _on_ray(ray, tasks, address, workers, step)
    wall = time.perf_counter() - start
    report = {"schema_version": SCHEMA_VERSION, "model": _model_name(model, rows), "engine": engine,
              "wall_s": round(wall, 3), "max_drop": max_drop if "auto" in recipes else None,
              "data": tasks[0].data, "calib": tasks[0].calib, "out": str(root), "combinations": rows}
    step("write")
    atomic_write_text(root / "sweep.json", dumps(report))
    atomic_write_text(root / "report.html", sweep_html(report, root))
    return SweepResult(report=report, out_dir=root)


def _tasks(model: str | None, devices: Sequence[str], precisions: Sequence[str], recipes: Sequence[str],
           root: Path, **shared: Any) -> list[SweepTask]:
    """Every combination, devices outermost; each device checked to load (a typo fails here, not N times)."""
    for value, allowed, what in ((precisions, PRECISIONS, "precision"), (recipes, RECIPES, "recipe")):
        unknown = [v for v in value if v not in allowed]
        if unknown or not value:
            raise RegistryError(f"{what} {', '.join(unknown) or '(none)'} unknown: sweep takes {', '.join(allowed)}")
    if not devices:
        raise RegistryError("no device to sweep: give --devices A,B,... (edgeopt profiles list)")
    folders: dict[str, str] = {}
    for device in dict.fromkeys(devices):
        load_profile(device)
        folder = Path(device).stem if device.endswith(".toml") else device
        if folder in folders:
            raise ProfileError(f"devices '{folders[folder]}' and '{device}' would share the folder {folder}; "
                               "rename one profile file")
        folders[folder] = _absolute(device) if device.endswith(".toml") else device
    spec = _absolute(model) if model is not None and Path(model).exists() else model
    return [SweepTask(spec, device, precision, recipe, str(root / f"{folder}-{precision}-{recipe}"), **shared)
            for folder, device in folders.items() for precision in dict.fromkeys(precisions)
            for recipe in dict.fromkeys(recipes)]


def _absolute(path: str | Path | None) -> str | None:
    if path is None:
        return None
    if not Path(path).exists():
        raise DataError(f"{path} does not exist: give the path of an existing file")
    return str(Path(path).absolute())


def _ray_module(required: bool) -> ModuleType | None:
    try:
        import ray
    except ImportError:
        if required:
            raise DeviceError("Ray is not installed: pip install 'edgeopt[ray]' (or run without --ray and "
                              "--address: the tasks then run one by one here)") from None
        return None
    return ray


def _in_process(tasks: list[SweepTask], step: Progress) -> list[dict]:
    rows = []
    for i, task in enumerate(tasks):
        name = f"{task.name} ({i + 1}/{len(tasks)})"
        step(name)
        rows.append(run_task(task, lambda stage, name=name: step(f"{name}: {stage}")))
    return rows


def _on_ray(ray: ModuleType, tasks: list[SweepTask], address: str | None, workers: int | None,
            step: Progress) -> tuple[list[dict], dict]:
    """Run every task on Ray, one CPU each; rows in the tasks' order. Starts (and stops) a local instance
    unless one is running or ``address`` names a cluster."""
    started = not ray.is_initialized()
    if started:
        try:
            ray.init(address=address, num_cpus=None if address else workers or os.cpu_count(),
                     include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise DeviceError(f"cannot start or reach Ray{f' at {address}' if address else ''}: {exc}; check "
                              "--address (ray status on the cluster)") from None
    try:
        cpus = int(ray.cluster_resources().get("CPU", 0))
        engine = {"name": "ray", "ray_version": ray.__version__, "address": address, "cpus": cpus}
        step(f"on Ray ({cpus} CPUs): {len(tasks)} combinations")
        remote = ray.remote(num_cpus=1)(run_task)
        pending = {remote.remote(task): i for i, task in enumerate(tasks)}
        rows: list[dict | None] = [None] * len(tasks)
        tick = counter("combinations", len(tasks))
        while pending:
            (ref,), _ = ray.wait(list(pending), num_returns=1)
            i = pending.pop(ref)
            try:
                rows[i] = ray.get(ref)
            except ray.exceptions.RayError as exc:  # its worker died (killed for memory, say): this row fails
                rows[i] = _failed(tasks[i], DeviceError(f"the Ray worker running it failed: "
                                                        f"{str(exc).strip().splitlines()[0]}"), None)
            tick(len(tasks) - len(pending))
        return [r for r in rows if r is not None], engine
    finally:
        if started:
            ray.shutdown()


def _row(task: SweepTask, seconds: float, report: dict) -> dict:
    acc = report.get("accuracy")
    budget = report.get("recipe_budget")
    return {**_identity(task), "status": "ok", "error": None, "error_kind": None, "exit_code": None,
            "seconds": round(seconds, 3), "model": report["model"], "precision_mode": report["precision"]["mode"],
            "accuracy": acc, "latency_ms": report["latency_ms"]["int8"], "fps": report["fps"]["int8"],
            "energy_mj": report["energy_mj"]["int8"], "macs": report["macs"],
            "int8_tflite_bytes": report["size_bytes"]["int8_tflite"],
            "recipe_chosen": budget["chosen"] if budget else None, "recipe_met": budget["met"] if budget else None,
            "report": report["artifacts"]["report"], "html": report["artifacts"]["html"]}


def _failed(task: SweepTask, exc: EdgeoptError, seconds: float | None) -> dict:
    return {**_identity(task), "status": "failed", "error": str(exc), "error_kind": type(exc).__name__,
            "exit_code": exit_code(exc), "seconds": None if seconds is None else round(seconds, 3)}


def _identity(task: SweepTask) -> dict:
    return {"name": task.name, "device": task.device, "precision": task.precision, "recipe": task.recipe,
            "out": task.out}


def _model_name(model: str | None, rows: list[dict]) -> str:
    done = next((r["model"] for r in rows if r["status"] == "ok"), None)
    return done or ("built-in example" if model is None else Path(model).stem)
