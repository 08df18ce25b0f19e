"""Android devices over ADB (adb-shell): connect, push verified files, run benchmarks, measure energy.

The order a deployment uses: ``connect`` → ``WorkDir`` (push the model and, if given, the benchmark
binary) → ``run_benchmark`` (inside ``measure_energy`` for energy) → leave the ``WorkDir`` to clean up.
"""
from __future__ import annotations

from edgeopt.runtimes.android.benchmark import (
    BENCHMARK_TOOLS,
    DELEGATES,
    OUTPUT_PARSERS,
    BenchmarkOptions,
    BenchmarkResult,
    DelegateReport,
    LatencyStats,
    parse_output,
    run_benchmark,
    tool_for,
)
from edgeopt.runtimes.android.connection import (
    AdbConnection,
    DeviceInfo,
    DeviceUnavailableError,
    connect,
    ensure_adb_key,
    list_devices,
    usb_unavailable_reason,
)
from edgeopt.runtimes.android.power import EnergyEstimate, estimate_energy, measure_energy
from edgeopt.runtimes.android.push import PushedFile, WorkDir, push_verified
from edgeopt.runtimes.android.shell import ShellResult, run

__all__ = [
    "BENCHMARK_TOOLS",
    "DELEGATES",
    "OUTPUT_PARSERS",
    "AdbConnection",
    "BenchmarkOptions",
    "BenchmarkResult",
    "DelegateReport",
    "DeviceInfo",
    "DeviceUnavailableError",
    "EnergyEstimate",
    "LatencyStats",
    "PushedFile",
    "ShellResult",
    "WorkDir",
    "connect",
    "ensure_adb_key",
    "estimate_energy",
    "list_devices",
    "measure_energy",
    "parse_output",
    "push_verified",
    "run",
    "run_benchmark",
    "tool_for",
    "usb_unavailable_reason",
]
