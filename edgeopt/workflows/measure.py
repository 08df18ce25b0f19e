"""measure: run the deployed model on a real target and report what it measured, int8 beside fp32.

``emulate`` (the default) measures nothing: the report's latency and energy are the cost model's
estimates. ``host`` times ``model.int8.tflite`` and ``model.fp32.tflite`` on this machine with LiteRT's
default kernels (XNNPACK applied), in alternating blocks so that a load change on a shared machine hits
both. ``compare`` times every model's files together this way (``measure_together_on_host``). ``adb[:SERIAL]`` pushes both files to an Android device, runs ``benchmark_model`` on each with the
same options (the device profile's threads and delegate), samples the fuel gauge, and returns measured
figures. ``preflight`` checks a target before the pipeline runs, so a missing phone costs nothing.

Both targets report ``latency_ms`` and ``fps`` at the median run (the mean where the tool printed no
median, as older ``benchmark_model`` builds do: ``statistic`` says which) and ``spread_ms``, the runs'
percentiles, so noise is visible.
"""
from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edgeopt.device_profiles import DeviceProfile
from edgeopt.errors import DeviceError

if TYPE_CHECKING:  # imported where used: adb-shell and LiteRT load only for the targets that need them
    from edgeopt.runtimes.android import BenchmarkResult, DelegateReport
    from edgeopt.runtimes.litert import LiteRT

log = logging.getLogger(__name__)

HOST_RUNS = 50  # benchmark_model's defaults: at least 50 timed runs and at least 1 s
HOST_MIN_SECONDS = 1.0
HOST_MAX_SECONDS = 150.0  # benchmark_model's --max_secs: stop timing one model past this
HOST_WARMUP = 5
HOST_BLOCKS = 5  # int8 and fp32 alternate in blocks of about runs / HOST_BLOCKS invocations


@dataclass(frozen=True)
class RunTarget:
    """Where the model runs: ``kind`` "emulate", "host" or "adb"; ``serial`` picks one adb device (None: the only one)."""

    kind: str
    serial: str | None = None

    def __str__(self) -> str:
        return self.kind if self.serial is None else f"{self.kind}:{self.serial}"


@dataclass(frozen=True)
class MeasureOptions:
    """How a measuring target times each model.

    Attributes:
        runs: Timed runs, at least (None: 50, ``benchmark_model``'s default).
        min_seconds: Time each model for at least this long (None: 1 s, ``benchmark_model``'s default).
        threads: CPU threads (None: 1 on the host, the profile's ``runtime.threads`` on adb).
    """

    runs: int | None = None
    min_seconds: float | None = None
    threads: int | None = None

    def __post_init__(self) -> None:
        if self.runs is not None and self.runs < 1:
            raise DeviceError(f"--runs must be at least 1, got {self.runs}")
        if self.min_seconds is not None and not (0 <= self.min_seconds < math.inf):
            raise DeviceError(f"--min-seconds must be a non-negative number, got {self.min_seconds}")
        if self.threads is not None and self.threads < 1:
            raise DeviceError(f"--threads must be at least 1, got {self.threads}")


def parse_target(text: str) -> RunTarget:
    """``emulate``, ``host``, ``adb`` or ``adb:SERIAL`` (SERIAL a USB serial or ``HOST:PORT``).

    Raises:
        DeviceError: anything else.
    """
    kind, _, serial = text.partition(":")
    if kind in ("emulate", "host") and not serial:
        return RunTarget(kind)
    if kind == "adb":
        return RunTarget("adb", serial or None)
    raise DeviceError(f"unknown target '{text}': use emulate, host, adb, or adb:SERIAL (e.g. adb:192.168.1.20:5555)")


def preflight(target: RunTarget, *, benchmark_binary: Path | None = None, key_path: Path | None = None) -> None:
    """Check that ``target`` can measure before anything is computed or written.

    For adb: the device answers the handshake and has a benchmark binary (or ``benchmark_binary`` exists
    here, to be pushed). Emulate and host need nothing.

    Raises:
        DeviceError: the device cannot be reached or used, or has no benchmark binary (one line).
    """
    if target.kind != "adb":
        return
    from edgeopt.runtimes.android import BENCHMARK_TOOLS, connect, run
    from edgeopt.runtimes.android.shell import quote

    if benchmark_binary is not None and not benchmark_binary.is_file():
        raise DeviceError(f"--benchmark-binary {benchmark_binary} is not a file here; give the path of TFLite's "
                          "android_aarch64 benchmark_model")
    with connect(target.serial, key_path=key_path) as conn:
        if benchmark_binary is None:
            default = BENCHMARK_TOOLS.get("benchmark_model").default_binary
            if not run(conn, f"[ -x {quote(default)} ]").ok:
                raise DeviceError(f"{default} not found (or not executable) on {conn.serial}: give one with "
                                  "--benchmark-binary PATH "
                                  "(e.g. TFLite's android_aarch64 benchmark_model) or install it there")


def measure(target: RunTarget, models: Mapping[str, Path], profile: DeviceProfile,
            options: MeasureOptions = MeasureOptions(), *, keep: bool = False,
            benchmark_binary: Path | None = None) -> dict:
    """Measure ``models`` (precision → .tflite, e.g. ``{"int8": ..., "fp32": ...}``) on ``target``.

    Raises:
        DeviceError: the target cannot measure (one line); ``emulate`` measures nothing.
    """
    if target.kind == "host":
        return measure_on_host(models, options)
    if target.kind == "adb":
        return measure_on_android(target, models, profile, options, keep=keep, benchmark_binary=benchmark_binary)
    raise DeviceError(f"target '{target}' measures nothing; use host or adb[:SERIAL]")


def measure_on_host(models: Mapping[str, Path], options: MeasureOptions = MeasureOptions()) -> dict:
    """Time each of ``models`` on this machine with LiteRT's default kernels (XNNPACK); the report's "measured".

    Each model gets the same random inputs ``benchmark_model`` would give it (int8 and float inputs
    random, other integer inputs zero, so that token ids stay in range) and ``HOST_WARMUP`` untimed runs.
    Then the models take turns in blocks of invocations until each has ``options.runs`` timed runs and
    ``options.min_seconds`` of timed work, or ``HOST_MAX_SECONDS`` of it, whichever comes first.
    """
    from ai_edge_litert import __version__ as litert_version

    from edgeopt.runtimes.litert import LiteRT
    from edgeopt.workflows.calibrate_host import cpu_model

    runs = options.runs or HOST_RUNS
    min_seconds = HOST_MIN_SECONDS if options.min_seconds is None else options.min_seconds
    threads = options.threads or 1
    runtimes = {key: LiteRT(path, kernels="default", num_threads=threads) for key, path in models.items()}
    rng = np.random.default_rng(0)
    inputs = {key: [_random_input(rng, spec.shape, spec.dtype) for spec in rt.input_details]
              for key, rt in runtimes.items()}
    times: dict[str, list[float]] = {key: [] for key in runtimes}
    timed = dict.fromkeys(runtimes, 0.0)
    for key, rt in runtimes.items():
        rt.time_inference(inputs[key], runs=0, warmup=HOST_WARMUP)

    def more(key: str) -> bool:
        return timed[key] < HOST_MAX_SECONDS and (len(times[key]) < runs or timed[key] < min_seconds)

    block = max(1, math.ceil(runs / HOST_BLOCKS))
    while any(more(key) for key in runtimes):
        for key in filter(more, runtimes):
            block_times = runtimes[key].time_inference(inputs[key], runs=block, warmup=0)
            times[key] += block_times
            timed[key] += sum(block_times)
    medians = {key: float(np.median(t)) * 1e3 for key, t in times.items()}
    return {
        "source": "measured",
        "target": "host",
        "tool": f"LiteRT {litert_version} (ai_edge_litert), default kernels with XNNPACK",
        "machine": cpu_model(),
        "threads": threads,
        "statistic": "median",
        "runs": {key: len(t) for key, t in times.items()},
        "latency_ms": {key: round(m, 6) for key, m in medians.items()},
        "fps": {key: round(1e3 / m, 3) for key, m in medians.items()},
        "spread_ms": {key: _spread_ms(t) for key, t in times.items()},
        "delegates": {key: _delegates_on_host(rt) for key, rt in runtimes.items()},
    }


def measure_together_on_host(groups: Sequence[Mapping[str, Path]],
                             options: MeasureOptions = MeasureOptions()) -> list[dict]:
    """``measure_on_host`` for several models' files at once (``compare``), all taking turns, so that a load
    change on a shared machine hits every model alike; one "measured" dict per group.
    """
    flat = {f"{i}/{key}": path for i, group in enumerate(groups) for key, path in group.items()}
    together = measure_on_host(flat, options)
    per_file = ("runs", "latency_ms", "fps", "spread_ms", "delegates")
    return [{**{k: v for k, v in together.items() if k not in per_file},
             **{k: {key: together[k][f"{i}/{key}"] for key in group} for k in per_file}}
            for i, group in enumerate(groups)]


def measure_on_android(target: RunTarget, models: Mapping[str, Path], profile: DeviceProfile,
                       options: MeasureOptions = MeasureOptions(), *, keep: bool = False,
                       benchmark_binary: Path | None = None, key_path: Path | None = None,
                       timeout_s: float = 600.0) -> dict:
    """Push ``models`` (precision → .tflite) to the adb device ``target``, benchmark each the same way, and
    sample energy per model; the report's "measured" part.

    Raises:
        DeviceError: the device cannot be reached or used, or the benchmark failed (one line each).
    """
    from edgeopt.runtimes.android import (
        BenchmarkOptions,
        WorkDir,
        connect,
        measure_energy,
        run_benchmark,
    )
    from edgeopt.runtimes.android.power import find_battery

    bench_options = BenchmarkOptions(threads=options.threads or profile.runtime.threads,
                                     delegate=profile.runtime.delegate, runs=options.runs or BenchmarkOptions.runs,
                                     min_secs=options.min_seconds)
    results: dict[str, BenchmarkResult] = {}
    energies = {}
    with connect(target.serial, key_path=key_path) as conn, WorkDir(conn, keep=keep) as work:
        remotes = {key: work.push(path).remote for key, path in models.items()}
        binary = work.push(benchmark_binary, mode=0o755).remote if benchmark_binary else None
        try:
            find_battery(conn)
            gauge = True
        except DeviceError as exc:
            log.warning("no energy measurement on %s: %s", conn.serial, exc)
            gauge = False
        for key, remote in remotes.items():
            def bench(remote: str = remote) -> BenchmarkResult:
                return run_benchmark(conn, remote, bench_options, binary=binary, timeout_s=timeout_s)

            if gauge:
                results[key], energies[key] = measure_energy(conn, work.path, bench)
            else:
                results[key] = bench()
        serial = conn.serial
    medians = {key: r.inference.percentile("median") if r.inference else None for key, r in results.items()}
    by_median = all(m is not None for m in medians.values())
    latency_us = {key: (medians[key] if by_median else r.inference_avg_us) for key, r in results.items()}
    measured = {
        "source": "measured",
        "target": f"adb:{serial}",
        "tool": next(iter(results.values())).tool,
        "threads": bench_options.threads,
        "delegate": bench_options.delegate,
        "statistic": "median" if by_median else "mean",
        "runs": {key: r.inference.count if r.inference else None for key, r in results.items()},
        "command": {key: r.command for key, r in results.items()},
        "latency_ms": {key: round(us / 1e3, 6) for key, us in latency_us.items()},
        "fps": {key: round(1e6 / us, 3) for key, us in latency_us.items()},
        "spread_ms": {key: _benchmark_spread_ms(r) for key, r in results.items()},
        "delegates": {key: [_delegate_json(d) for d in r.delegates] for key, r in results.items()},
        "memory_peak_mb": {key: r.memory_peak_mb for key, r in results.items()},
    }
    unknown = [key for key, r in results.items() if not r.delegates]
    if unknown and bench_options.delegate != "cpu":
        measured["delegates_note"] = (f"benchmark_model printed no delegate line for {', '.join(unknown)}: which "
                                      f"ops {bench_options.delegate} took is unknown (older builds print none)")
    if energies:
        first = next(iter(energies.values()))
        measured["energy_mj"] = {
            **{key: round(e.mj_per_inference, 6) for key, e in energies.items()},
            "uncertainty": {key: round(e.uncertainty_mj, 6) for key, e in energies.items()},
            "note": first.note,
            "warnings": [f"{key}: {w}" for key, e in energies.items() for w in e.warnings],
        }
    return measured


def _random_input(rng: np.random.Generator, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    if dtype in (np.int8, np.uint8, np.int16):
        info = np.iinfo(dtype)
        return rng.integers(info.min, info.max, size=shape, endpoint=True).astype(dtype)
    if np.issubdtype(dtype, np.integer) or dtype == np.bool_:
        return np.zeros(shape, dtype)
    return rng.standard_normal(shape).astype(dtype)


def _spread_ms(seconds: list[float]) -> dict[str, float]:
    ms = np.asarray(seconds) * 1e3
    values = {"p10": np.percentile(ms, 10), "p50": np.median(ms), "p90": np.percentile(ms, 90),
              "mean": ms.mean(), "min": ms.min(), "max": ms.max()}
    return {k: round(float(v), 6) for k, v in values.items()}


def _benchmark_spread_ms(result: BenchmarkResult) -> dict[str, float]:
    stats = result.inference
    if stats is None:
        return {"mean": round(result.inference_avg_us / 1e3, 6)}
    values = {"mean": stats.avg_us, "std": stats.std_us, "min": stats.min_us, "max": stats.max_us,
              **dict(stats.percentiles_us)}
    return {k: round(v / 1e3, 6) for k, v in values.items() if v is not None}


def _delegate_json(d: DelegateReport) -> dict:
    return {"name": d.delegate, "replaced": d.replaced, "total": d.total, "partitions": d.partitions,
            "executes": d.executes}


def _delegates_on_host(runtime: LiteRT) -> list[dict]:
    d = runtime.delegation()
    if d.delegate is None:
        return []
    return [{"name": d.delegate, "replaced": d.replaced, "total": d.total, "partitions": d.partitions,
             "executes": "all" if d.replaced == d.total else "part", "kept": list(d.kept)}]
