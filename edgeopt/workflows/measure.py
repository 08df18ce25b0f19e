"""measure: run the int8 model on a real target and report what it measured.

``emulate`` (the default) measures nothing: the report's latency and energy are the cost model's
estimates. ``adb[:SERIAL]`` pushes the .tflite to an Android device, runs ``benchmark_model`` with the
device profile's threads and delegate, samples the fuel gauge, and returns measured figures.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from edgeopt.device_profiles import DeviceProfile
from edgeopt.errors import DeviceError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunTarget:
    """Where the model runs: ``kind`` "emulate" or "adb"; ``serial`` picks one adb device (None: the only one)."""

    kind: str
    serial: str | None = None

    def __str__(self) -> str:
        return self.kind if self.serial is None else f"{self.kind}:{self.serial}"


def parse_target(text: str) -> RunTarget:
    """``emulate``, ``adb`` or ``adb:SERIAL`` (SERIAL a USB serial or ``HOST:PORT``).

    Raises:
        DeviceError: anything else.
    """
    kind, _, serial = text.partition(":")
    if kind == "emulate" and not serial:
        return RunTarget("emulate")
    if kind == "adb":
        return RunTarget("adb", serial or None)
    raise DeviceError(f"unknown target '{text}': use emulate, adb, or adb:SERIAL (e.g. adb:192.168.1.20:5555)")


def measure_on_android(target: RunTarget, model: Path, profile: DeviceProfile, *, keep: bool = False,
                       benchmark_binary: Path | None = None, key_path: Path | None = None,
                       timeout_s: float = 600.0) -> dict:
    """Push ``model`` to the adb device ``target``, benchmark it, sample energy; the report's "measured" part.

    Raises:
        DeviceError: the device cannot be reached or used, or the benchmark failed (one line each).
    """
    from edgeopt.runtimes.android import (BenchmarkOptions, BenchmarkResult, WorkDir, connect, measure_energy,
                                          run_benchmark)
    from edgeopt.runtimes.android.power import find_battery

    options = BenchmarkOptions(threads=profile.runtime.threads, delegate=profile.runtime.delegate)
    with connect(target.serial, key_path=key_path) as conn, WorkDir(conn, keep=keep) as work:
        remote = work.push(model).remote
        binary = work.push(benchmark_binary, mode=0o755).remote if benchmark_binary else None

        def bench() -> BenchmarkResult:
            return run_benchmark(conn, remote, options, binary=binary, timeout_s=timeout_s)

        try:
            find_battery(conn)
        except DeviceError as exc:
            log.warning("no energy measurement on %s: %s", conn.serial, exc)
            result, energy = bench(), None
        else:
            result, energy = measure_energy(conn, work.path, bench)
        serial = conn.serial
    measured = {
        "source": "measured",
        "target": f"adb:{serial}",
        "tool": result.tool,
        "command": result.command,
        "latency_ms": {"int8": round(result.inference_avg_us / 1e3, 6)},
        "fps": {"int8": round(result.fps, 3)},
        "delegates": [{"name": d.delegate, "replaced": d.replaced, "total": d.total} for d in result.delegates],
        "memory_peak_mb": result.memory_peak_mb,
    }
    if energy is not None:
        measured["energy_mj"] = {"int8": round(energy.mj_per_inference, 6), "uncertainty": round(energy.uncertainty_mj, 6),
                                 "note": energy.note, "warnings": list(energy.warnings)}
    return measured
