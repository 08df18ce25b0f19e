"""A ``benchmark_model`` stand-in for the test device: times real LiteRT invocations on the host.

It takes TFLite's flags (``--graph``, ``--num_threads``, ``--num_runs``, ``--warmup_runs``,
``--min_secs``, ``--warmup_min_secs``, ``--use_xnnpack`` and the other delegates' switches) and prints
what ``tensorflow/lite/tools/benchmark`` prints, in the same format (C++ stream formatting: six
significant digits, ``e+06`` for large averages). XNNPACK is LiteRT's default kernels here; the
"Replacing N out of M node(s)" and "Explicitly applied XNNPACK delegate" lines say what XNNPACK really
took (``LiteRT.delegation``). While it runs it raises the fake battery's current, as a real load would.

The device passes ``EDGEOPT_TEST_BENCHMARK_FAULT=crash`` to make it die of SIGSEGV after warm-up, and
``quiet`` to print no delegate line (as older builds, whose delegate logs stay below the log level).
"""
from __future__ import annotations

import os
import resource
import signal
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the edgeopt of this checkout, not another install
from edgeopt.runtimes.litert import Delegation, LiteRT

DEFAULTS = {"num_threads": "-1", "num_runs": "50", "warmup_runs": "1", "min_secs": "1", "warmup_min_secs": "0.5",
            "max_secs": "150", "use_xnnpack": "true"}
UNSUPPORTED_DELEGATES = {"use_gpu": "GPU", "use_nnapi": "NNAPI", "use_hexagon": "Hexagon"}


def log(message: str) -> None:
    print(f"INFO: {message}", flush=True)


def fmt(value: float) -> str:
    """C++ ``std::ostream << double`` with its default precision."""
    return f"{value:.6g}"


def stat_line(times_us: list[int]) -> str:
    """``Stat<int64_t>::OutputToStream`` with percentiles, as recent benchmark_model prints it."""
    a = np.asarray(times_us, dtype=np.int64)
    if len(set(times_us)) == 1:
        return f"count={len(a)} curr={a[-1]}" + ("(all same)" if len(a) > 1 else "")
    p5, median, p95 = (int(np.percentile(a, q, method="lower")) for q in (5, 50, 95))
    return (f"count={len(a)} first={a[0]} curr={a[-1]} min={a.min()} max={a.max()} avg={fmt(a.mean())} "
            f"std={int(a.std())} p5={p5} median={median} p95={p95}")


def run_loop(model: LiteRT, inputs: list[np.ndarray], min_runs: int, min_secs: float, max_secs: float) -> list[int]:
    log(f"Running benchmark for at least {min_runs} iterations and at least {fmt(min_secs)} seconds but "
        f"terminate if exceeding {fmt(max_secs)} seconds.")
    start = time.perf_counter()
    times: list[int] = []
    while (len(times) < min_runs or time.perf_counter() - start < min_secs) and time.perf_counter() - start <= max_secs:
        times.append(round(model.time_inference(inputs, runs=1, warmup=0)[0] * 1e6))
    log(stat_line(times) + "\n")
    return times


def log_delegation(d: Delegation) -> None:
    """What XNNPACK really took, as benchmark_model and the TFLite runtime log it (the VERBOSE line shows where
    the log level lets it, as on Android builds; LiteRT itself logs "Created … XNNPACK delegate")."""
    if d.replaced:
        print(f"VERBOSE: Replacing {d.replaced} out of {d.total} node(s) with delegate ({d.delegate}) node, "
              f"yielding {d.partitions} partitions for the whole graph.", flush=True)
    if d.replaced == d.total:
        log("Explicitly applied XNNPACK delegate, and the model graph will be completely executed by the delegate.")
    elif d.replaced:
        log("Explicitly applied XNNPACK delegate, and the model graph will be partially executed by the delegate "
            f"w/ {d.partitions} delegate kernels.")
    else:
        log("Though XNNPACK delegate is explicitly applied, the model graph will not be executed by the delegate.")


def main(argv: list[str]) -> int:
    flags = dict(DEFAULTS)
    for arg in argv:
        key, _, value = arg.lstrip("-").partition("=")
        flags[key] = value
    log("STARTING!")
    log("Log parameter values verbosely: [0]")
    log(f"Num threads: [{flags['num_threads']}]")
    log(f"Graph: [{flags.get('graph', '')}]")
    for key, name in UNSUPPORTED_DELEGATES.items():
        if flags.get(key) == "true":
            print(f"ERROR: {name} acceleration is unsupported on this platform.", flush=True)
            return 1
    graph = Path(flags.get("graph", ""))
    try:
        content = graph.read_bytes()
    except OSError:
        print(f"ERROR: Could not open '{graph}'.", flush=True)
        print(f"ERROR: Failed to mmap model {graph}", flush=True)
        return 1
    log(f"Loaded model {graph}")
    xnnpack = flags["use_xnnpack"] == "true"
    rss_start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    threads = int(flags["num_threads"])
    model = LiteRT(content, kernels="default" if xnnpack else "reference", num_threads=max(threads, 1))
    init_us = round((time.perf_counter() - t0) * 1e6)
    rss_init = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if xnnpack and os.environ.get("EDGEOPT_TEST_BENCHMARK_FAULT") != "quiet":
        log_delegation(model.delegation())
    log(f"The input model file size (MB): {fmt(len(content) / 1e6)}")
    log(f"Initialized session in {fmt(init_us / 1e3)}ms.")
    rng = np.random.default_rng(0)
    inputs = [_random_input(rng, spec.shape, spec.dtype) for spec in model.input_details]
    battery = os.environ.get("EDGEOPT_TEST_BATTERY")
    idle = Path(battery, "current_now").read_text() if battery else None
    try:
        if battery:
            Path(battery, "current_now").write_text(os.environ["EDGEOPT_TEST_LOAD_CURRENT"] + "\n")
        warmup = run_loop(model, inputs, int(flags["warmup_runs"]), float(flags["warmup_min_secs"]),
                          float(flags["max_secs"]))
        if os.environ.get("EDGEOPT_TEST_BENCHMARK_FAULT") == "crash":
            os.kill(os.getpid(), signal.SIGSEGV)
        timed = run_loop(model, inputs, int(flags["num_runs"]), float(flags["min_secs"]),
                         float(flags["max_secs"]))
    finally:
        if battery and idle is not None:
            Path(battery, "current_now").write_text(idle)
    rss_end = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    log(f"Inference timings in us: Init: {init_us}, First inference: {warmup[0]}, "
        f"Warmup (avg): {fmt(float(np.mean(warmup)))}, Inference (avg): {fmt(float(np.mean(timed)))}")
    log("Note: as the benchmark tool itself affects memory footprint, the following is only APPROXIMATE to the "
        "actual memory footprint of the model at runtime. Take the information at your discretion.")
    log(f"Memory footprint delta from the start of the tool (MB): init={fmt((rss_init - rss_start) / 1024)} "
        f"overall={fmt((rss_end - rss_start) / 1024)}")
    return 0


def _random_input(rng: np.random.Generator, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return rng.integers(info.min, info.max, size=shape, endpoint=True).astype(dtype)
    return rng.standard_normal(shape).astype(dtype)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
