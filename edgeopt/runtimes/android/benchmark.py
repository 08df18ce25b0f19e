"""Benchmark binaries on the device: their command lines, a bounded run, and parsers for what they print.

Two tools are known (``BENCHMARK_TOOLS``): TFLite's ``benchmark_model`` for ``.tflite`` files and ONNX
Runtime's ``onnxruntime_perf_test`` for ``.onnx`` files. Their output formats, each parsed by one entry
of ``OUTPUT_PARSERS`` (every parser reads the whole output and returns the fields it recognises):

- ``tflite-timings``: ``Inference timings in us: Init: 17187, First inference: 3512391, Warmup (avg):
  3.51239e+06, Inference (avg): 2.95034e+06`` (C++ stream formatting, hence the ``e+06``), and the
  older ``Average inference timings in us: Warmup: 83235, Init: 38467, Inference: 79760.9``.
- ``tflite-stats``: ``count=50 first=79449 curr=81350 min=77385 max=88213 avg=79732 std=1929
  [p5=… median=… p95=…]`` (``Stat::OutputToStream``), once for warm-up and once for the timed runs;
  ``count=N curr=X(all same)`` when every run took the same time.
- ``tflite-memory``: ``Memory footprint delta from the start of the tool (MB): init=… overall=…`` (since
  TF 2.10), the older ``Peak memory footprint (MB): init=… overall=…``, and ``Overall peak memory
  footprint (MB) via periodic monitoring: …``.
- ``delegate``: ``Replacing 59 out of 62 node(s) with delegate (TfLiteXNNPackDelegate) node, yielding 5
  partitions…`` and the older ``Replacing 12 node(s) with delegate (…) node, yielding 1 partitions.``:
  what really ran on the accelerator.
- ``onnxruntime-summary``: ``onnxruntime_perf_test``'s summary (session creation, first inference,
  ``Average inference time cost[ total]: … ms``, CPU usage, peak working set, ``Min/Max/P50…P999 Latency``).
"""
from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from edgeopt.errors import DeviceError
from edgeopt.registry import Registry
from edgeopt.runtimes.android.connection import AdbConnection
from edgeopt.runtimes.android.shell import quote, run

DELEGATES = ("cpu", "xnnpack", "gpu", "nnapi", "hexagon", "qnn")
DEFAULT_TIMEOUT_S = 600.0


@dataclass(frozen=True)
class BenchmarkOptions:
    """How to run a benchmark.

    Attributes:
        threads: CPU threads.
        delegate: ``cpu`` (plain CPU kernels), ``xnnpack``, ``gpu``, ``nnapi``, ``hexagon`` or ``qnn``.
        runs: Timed runs (at least; ``benchmark_model`` also runs for at least ``min_secs``).
        warmup: Untimed warm-up runs (``benchmark_model`` only; ``onnxruntime_perf_test`` warms up once).
        min_secs: ``benchmark_model``'s minimum timed duration (its default is 1 s).
        warmup_min_secs: ``benchmark_model``'s minimum warm-up duration (its default is 0.5 s).
        qnn_library: The QNN library: the TFLite delegate for ``benchmark_model`` (default
            ``libQnnTFLiteDelegate.so``), the HTP backend for ``onnxruntime_perf_test`` (default
            ``libQnnHtp.so``); found through ``LD_LIBRARY_PATH``, the run's folder first, so a pushed one wins.
        extra_args: Appended to the command line as given.
    """

    threads: int = 4
    delegate: str = "xnnpack"
    runs: int = 50
    warmup: int = 1
    min_secs: float | None = None
    warmup_min_secs: float | None = None
    qnn_library: str | None = None
    extra_args: tuple[str, ...] = ()


ArgumentBuilder = Callable[[str, BenchmarkOptions], list[str]]


@dataclass(frozen=True)
class BenchmarkTool:
    """A benchmark binary: its default location on the device and how to build its arguments."""

    name: str
    default_binary: str
    model_suffix: str
    arguments: ArgumentBuilder

    def command(self, binary: str, model: str, options: BenchmarkOptions) -> list[str]:
        """The argv that benchmarks ``model`` (a device path) with ``options``."""
        if options.delegate not in DELEGATES:
            raise DeviceError(f"unknown delegate '{options.delegate}' (known: {', '.join(DELEGATES)})")
        return [binary, *self.arguments(model, options), *options.extra_args]


BENCHMARK_TOOLS: Registry[BenchmarkTool] = Registry("benchmark tool")


def _tool(name: str, default_binary: str, model_suffix: str) -> Callable[[ArgumentBuilder], BenchmarkTool]:
    """Register the decorated argument builder as the tool ``name``."""

    def add(arguments: ArgumentBuilder) -> BenchmarkTool:
        return BENCHMARK_TOOLS.register(name)(BenchmarkTool(name, default_binary, model_suffix, arguments))

    return add


_TFLITE_DELEGATE_FLAGS = {
    "cpu": ["--use_xnnpack=false"],
    "xnnpack": ["--use_xnnpack=true"],
    "gpu": ["--use_gpu=true"],
    "nnapi": ["--use_nnapi=true"],
    "hexagon": ["--use_hexagon=true"],
}


@_tool("benchmark_model", "/data/local/tmp/benchmark_model", ".tflite")
def _benchmark_model(model: str, o: BenchmarkOptions) -> list[str]:
    """TFLite's flags (``tensorflow/lite/tools/benchmark``); QNN is Qualcomm's external delegate."""
    args = [f"--graph={model}", f"--num_threads={o.threads}", f"--num_runs={o.runs}", f"--warmup_runs={o.warmup}"]
    if o.min_secs is not None:
        args.append(f"--min_secs={o.min_secs:g}")
    if o.warmup_min_secs is not None:
        args.append(f"--warmup_min_secs={o.warmup_min_secs:g}")
    if o.delegate == "qnn":
        library = o.qnn_library or "libQnnTFLiteDelegate.so"
        return [*args, f"--external_delegate_path={library}", "--external_delegate_options=backend_type:htp"]
    return [*args, *_TFLITE_DELEGATE_FLAGS[o.delegate]]


_ORT_PROVIDERS = {"cpu": "cpu", "xnnpack": "xnnpack", "nnapi": "nnapi", "qnn": "qnn"}


@_tool("onnxruntime_perf_test", "/data/local/tmp/onnxruntime_perf_test", ".onnx")
def _onnxruntime_perf_test(model: str, o: BenchmarkOptions) -> list[str]:
    """ONNX Runtime's flags: ``-m times -r RUNS`` for a fixed count, ``-I`` for generated inputs, ``-s`` for stats."""
    if o.delegate not in _ORT_PROVIDERS:
        raise DeviceError(f"onnxruntime_perf_test has no '{o.delegate}' execution provider on Android "
                          f"(it has {', '.join(_ORT_PROVIDERS)}); for Hexagon use qnn")
    args = ["-e", _ORT_PROVIDERS[o.delegate], "-m", "times", "-r", str(o.runs), "-x", str(o.threads), "-I", "-s"]
    if o.delegate == "qnn":
        args += ["-i", f"backend_path|{o.qnn_library or 'libQnnHtp.so'}"]
    return [*args, model]


def tool_for(model: str) -> BenchmarkTool:
    """The benchmark tool for a model file, by its suffix."""
    for name in BENCHMARK_TOOLS:
        tool = BENCHMARK_TOOLS.get(name)
        if model.endswith(tool.model_suffix):
            return tool
    suffixes = ", ".join(BENCHMARK_TOOLS.get(n).model_suffix for n in BENCHMARK_TOOLS)
    raise DeviceError(f"no benchmark tool for '{model}': the model must end in one of {suffixes}")


# Results ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LatencyStats:
    """Statistics of a series of runs, in microseconds. ``percentiles_us`` pairs a name (``p50``) with a value."""

    count: int
    avg_us: float
    min_us: float | None = None
    max_us: float | None = None
    std_us: float | None = None
    first_us: float | None = None
    last_us: float | None = None
    percentiles_us: tuple[tuple[str, float], ...] = ()

    def percentile(self, name: str) -> float | None:
        """The named percentile (``"p50"``; ``"median"`` is ``p50``), or None if the tool did not print it."""
        return dict(self.percentiles_us).get("p50" if name == "median" else name)


@dataclass(frozen=True)
class DelegateReport:
    """What a delegate really took, from one "Replacing N out of M node(s) with delegate (NAME)" line
    (``replaced``/``total`` known) or, where the tool printed none (recent ``benchmark_model`` logs it only
    at VERBOSE), from its "Explicitly applied NAME delegate, and the model graph will be completely /
    partially executed …" or "Though NAME delegate is explicitly applied, … will not be executed" line
    (``executes`` ``"all"``, ``"part"`` or ``"none"``; ``partitions``: its delegate kernels).
    """

    delegate: str
    replaced: int | None
    total: int | None
    partitions: int | None
    executes: str | None = None

    @property
    def complete(self) -> bool | None:
        """Whether every node went to the delegate (None when the tool did not say)."""
        if self.executes is not None:
            return self.executes == "all"
        return None if self.total is None or self.replaced is None else self.replaced == self.total


@dataclass(frozen=True)
class BenchmarkResult:
    """What a benchmark run measured. Times are microseconds, memory MiB."""

    tool: str
    inference_avg_us: float
    init_us: float | None = None
    first_inference_us: float | None = None
    warmup_avg_us: float | None = None
    warmup: LatencyStats | None = None
    inference: LatencyStats | None = None
    memory_init_mb: float | None = None
    memory_overall_mb: float | None = None
    memory_peak_mb: float | None = None
    cpu_usage_pct: float | None = None
    timed_seconds: float | None = None
    delegates: tuple[DelegateReport, ...] = ()
    command: str = ""
    output: str = field(default="", repr=False)

    @property
    def fps(self) -> float:
        """Inferences per second at the average latency."""
        return 1e6 / self.inference_avg_us if self.inference_avg_us > 0 else float("inf")


OutputParser = Callable[[str], dict[str, Any]]
OUTPUT_PARSERS: Registry[OutputParser] = Registry("benchmark output format")

_NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"


def _search(pattern: str, text: str) -> re.Match[str] | None:
    matches = list(re.finditer(pattern, text, re.MULTILINE))
    return matches[-1] if matches else None


@OUTPUT_PARSERS.register("tflite-timings")
def _tflite_timings(text: str) -> dict[str, Any]:
    m = _search(rf"Inference timings in us: Init: ({_NUM}), First inference: ({_NUM}), "
                rf"Warmup \(avg\): ({_NUM}), Inference \(avg\): ({_NUM})", text)
    if m:
        init, first, warmup, avg = map(float, m.groups())
        return {"init_us": init, "first_inference_us": first, "warmup_avg_us": warmup, "inference_avg_us": avg}
    m = _search(rf"Average inference timings in us: Warmup: ({_NUM}), Init: ({_NUM}), "
                rf"(?:Inference|no stats): ({_NUM})", text)
    if m:
        warmup, init, avg = map(float, m.groups())
        return {"init_us": init, "warmup_avg_us": warmup, "inference_avg_us": avg}
    return {}


def _stat(line: str) -> LatencyStats:
    values = {k: float(v) for k, v in re.findall(rf"(\w+)=({_NUM})", line)}
    count = int(values["count"])
    if "avg" not in values:  # "count=N curr=X(all same)": every run took X
        curr = values.get("curr", 0.0)
        return LatencyStats(count, curr, curr, curr, 0.0, curr, curr)
    percentiles = tuple((("p50" if k == "median" else k), values[k]) for k in ("p5", "median", "p95") if k in values)
    return LatencyStats(count, values["avg"], values.get("min"), values.get("max"), values.get("std"),
                        values.get("first"), values.get("curr"), percentiles)


@OUTPUT_PARSERS.register("tflite-stats")
def _tflite_stats(text: str) -> dict[str, Any]:
    # Lines that start with count= (after a log prefix such as "INFO: "), not the profiler's
    # "Timings (microseconds): count=…" summaries. The first is the warm-up, the second the timed runs.
    # "count=0" (a dry run) carries no timings.
    stats = [_stat(line) for line in re.findall(r"^(?:[A-Z]+: )?(count=[1-9]\d*.*)$", text, re.MULTILINE)]
    found: dict[str, Any] = {}
    if stats:
        found["warmup"] = stats[0]
    if len(stats) > 1:
        found["inference"] = stats[1]
        found["timed_seconds"] = stats[1].count * stats[1].avg_us / 1e6
    return found


@OUTPUT_PARSERS.register("tflite-memory")
def _tflite_memory(text: str) -> dict[str, Any]:
    found: dict[str, Any] = {}
    m = _search(rf"(?:Memory footprint delta from the start of the tool|Peak memory footprint) \(MB\): "
                rf"init=({_NUM}) overall=({_NUM})", text)
    if m:
        found["memory_init_mb"], found["memory_overall_mb"] = map(float, m.groups())
    m = _search(rf"Overall peak memory footprint \(MB\) via periodic monitoring: ({_NUM})", text)
    if m:
        found["memory_peak_mb"] = float(m.group(1))
    return found


_DELEGATE_LINE = (r"Replacing (\d+)(?: out of (\d+))? node\(s\) with delegate \(([^)]*)\) node"
                  r"(?:, yielding (\d+) partitions)?")


_APPLIED_LINE = (r"Explicitly applied (\S+) delegate, and the model graph will be (completely|partially) executed by "
                 r"the delegate(?: w/ (\d+) delegate kernels)?|Though (\S+) delegate is explicitly applied, the "
                 r"model graph will not be executed by the delegate")


@OUTPUT_PARSERS.register("delegate")
def _delegate(text: str) -> dict[str, Any]:
    reports = tuple(
        DelegateReport(name, int(replaced), int(total) if total else None, int(parts) if parts else None,
                       None if not total else "all" if replaced == total else "part")
        for replaced, total, name, parts in re.findall(_DELEGATE_LINE, text)
    )
    if not reports:  # benchmark_tflite_model.cc's summary of each delegate it applied
        reports = tuple(
            DelegateReport(unused, None, None, 0, "none") if unused else
            DelegateReport(name, None, None, int(kernels) if kernels else 1 if how == "completely" else None,
                           "all" if how == "completely" else "part")
            for name, how, kernels, unused in re.findall(_APPLIED_LINE, text)
        )
    return {"delegates": reports} if reports else {}


@OUTPUT_PARSERS.register("onnxruntime-summary")
def _onnxruntime_summary(text: str) -> dict[str, Any]:
    avg = _search(rf"Average inference time cost(?: total)?: ({_NUM}) ms", text)
    if not avg:
        return {}

    def value(label: str, unit: str) -> float | None:
        m = _search(rf"^{label}: ?({_NUM}) ?{unit}", text)
        return float(m.group(1)) if m else None

    scale = {"Min": None, "Max": None, "P50": "p50", "P90": "p90", "P95": "p95", "P99": "p99", "P999": "p999"}
    latency = {k: value(rf"{k} Latency", "s") for k in scale}
    requests = value("Total inference requests", "")
    avg_us = float(avg.group(1)) * 1e3
    stats = LatencyStats(
        count=int(requests) if requests is not None else 0,
        avg_us=avg_us,
        min_us=latency["Min"] * 1e6 if latency["Min"] is not None else None,
        max_us=latency["Max"] * 1e6 if latency["Max"] is not None else None,
        percentiles_us=tuple((name, latency[k] * 1e6) for k, name in scale.items() if name and latency[k] is not None),
    )
    session = value("Session creation time cost", "s")
    first = value("First inference time cost", "ms")
    peak = value("Peak working set size", "bytes")
    return {
        "inference_avg_us": avg_us,
        "inference": stats,
        "init_us": session * 1e6 if session is not None else None,
        "first_inference_us": first * 1e3 if first is not None else None,
        "memory_peak_mb": peak / 2**20 if peak is not None else None,
        "cpu_usage_pct": value("(?:Avg|Total) CPU usage", "%"),
        "timed_seconds": value("Total inference run time", "s"),
    }


def parse_output(tool: str, text: str, command: str = "") -> BenchmarkResult:
    """Parse a benchmark's output with every parser in ``OUTPUT_PARSERS``.

    Args:
        tool: The tool's name, recorded in the result.
        text: Everything the tool printed.
        command: The command line, recorded in the result.

    Raises:
        DeviceError: The output holds no average inference time.
    """
    fields: dict[str, Any] = {}
    for name in OUTPUT_PARSERS:
        fields.update({k: v for k, v in OUTPUT_PARSERS.get(name)(text).items() if v is not None})
    if "inference_avg_us" not in fields:
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        raise DeviceError(f"{tool} printed no inference timings; its last line: {lines[-1] if lines else 'nothing'}")
    return BenchmarkResult(tool=tool, command=command, output=text, **fields)


# Running ------------------------------------------------------------------------------------------


def run_benchmark(conn: AdbConnection, model: str, options: BenchmarkOptions = BenchmarkOptions(), *,
                  tool: str | None = None, binary: str | None = None, workdir: str | None = None,
                  timeout_s: float = DEFAULT_TIMEOUT_S) -> BenchmarkResult:
    """Run a benchmark binary on the device and parse its output.

    Args:
        conn: The connection.
        model: The model's device path (``.tflite`` → ``benchmark_model``, ``.onnx`` → ``onnxruntime_perf_test``).
        options: Threads, delegate, runs, warm-up.
        tool: A name in ``BENCHMARK_TOOLS`` (default: chosen by the model's suffix).
        binary: The binary's device path (default: the tool's usual place in ``/data/local/tmp``).
        workdir: Folder to run in, first on ``LD_LIBRARY_PATH`` (default: the model's folder).
        timeout_s: Limit for the whole run; past it the run is ended on the device.

    Raises:
        DeviceError: The binary is missing, not executable, crashed, failed, timed out, or printed no timings.
    """
    chosen = BENCHMARK_TOOLS.get(tool) if tool is not None else tool_for(model)
    binary = binary or chosen.default_binary
    folder = workdir or model.rpartition("/")[0] or "/data/local/tmp"
    argv = chosen.command(binary, model, options)
    command = " ".join(quote(a) for a in argv)
    result = run(conn, f"cd {quote(folder)} && LD_LIBRARY_PATH={quote(folder)}${{LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}} "
                       f"{command} 2>&1", timeout_s=timeout_s)
    where = f"{chosen.name} on {conn.serial}"
    if result.exit_status == 127:
        raise DeviceError(f"{binary} not found on {conn.serial}: give one with --benchmark-binary PATH (e.g. TFLite's "
                          f"android_aarch64 benchmark_model) or install it at {chosen.default_binary}")
    if result.exit_status == 126:
        raise DeviceError(f"{binary} is not executable on {conn.serial}: {result.last_line()}")
    if result.signal:
        raise DeviceError(f"{where} crashed ({result.signal}): {result.last_line()}")
    if not result.ok:
        raise DeviceError(f"{where} failed (exit {result.exit_status}): {result.last_line()}")
    return parse_output(chosen.name, result.output, command)
