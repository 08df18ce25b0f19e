"""The Android device path (edgeopt.runtimes.android) against the test ADB device, over the real wire protocol.

adb-shell speaks to ``adb_device.TestDevice`` on loopback: handshake with RSA keys, shell with exit
status, verified pushes, the benchmark stand-in running real LiteRT invocations, fuel-gauge sampling,
and every injected fault ending in one clear ``DeviceError``. The output parsers are checked on
hand-written samples in the formats of the real tools.
"""
from __future__ import annotations

import base64
import socket
import stat
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from tests.adb_device import Battery, Faults, TestDevice, standin_script
from tests.adb_device.protocol import decode_public_key
from tests.builders.programs import chain_program

from edgeopt.errors import DeviceError, RegistryError, exit_code
from edgeopt.pipeline.emit.tflite import program_to_tflite
from edgeopt.runtimes.litert import LiteRT
from edgeopt.runtimes.android import (
    BENCHMARK_TOOLS,
    AdbConnection,
    BenchmarkOptions,
    DeviceUnavailableError,
    WorkDir,
    connect,
    ensure_adb_key,
    estimate_energy,
    list_devices,
    measure_energy,
    parse_output,
    push_verified,
    run,
    run_benchmark,
    tool_for,
)
from edgeopt.runtimes.android import connection as connection_mod
from edgeopt.runtimes.android.connection import tcp_address
from edgeopt.runtimes.android.power import (
    MIN_WINDOW_SAMPLES,
    Sample,
    current_unit,
    find_battery,
    timed_window,
    voltage_unit,
)

FAST = 0.6  # seconds: the timeout for tests that wait for a silent device


@pytest.fixture(autouse=True)
def _no_device_thread_outlives_a_test() -> None:
    yield
    assert not [t.name for t in threading.enumerate() if t.name.startswith("adb-device")]


@pytest.fixture(scope="module")
def adb_key(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return ensure_adb_key(tmp_path_factory.mktemp("keys") / "adbkey")


@pytest.fixture(scope="module")
def model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("model") / "model.int8.tflite"
    path.write_bytes(program_to_tflite(chain_program(np.random.default_rng(0), h=16, w=16, width=16)))
    return path


@pytest.fixture
def make_device(tmp_path: Path, adb_key: Path) -> Iterator[Callable[..., TestDevice]]:
    devices: list[TestDevice] = []

    def make(**kwargs: object) -> TestDevice:
        kwargs.setdefault("authorized_keys", [Path(f"{adb_key}.pub").read_text()])
        device = TestDevice(tmp_path / f"device{len(devices)}", **kwargs).__enter__()  # type: ignore[arg-type]
        devices.append(device)
        return device

    yield make
    for device in devices:
        device.close()


def open_connection(device: TestDevice, key: Path, timeout_s: float = 10.0) -> AdbConnection:
    return connect(device.serial, key_path=key, timeout_s=timeout_s, auth_timeout_s=FAST)


def device_files(device: TestDevice, folder: str = "/data/local/tmp/edgeopt") -> list[str]:
    root = device.sandbox.host_path(folder)
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()) if root.exists() else []


# Keys and connections -----------------------------------------------------------------------------


def test_adb_key_is_created_in_the_adb_tools_format(tmp_path: Path) -> None:
    key = ensure_adb_key(tmp_path / ".android" / "adbkey")
    assert key.read_text().startswith("-----BEGIN PRIVATE KEY-----\n")  # PKCS#8, as adb writes it
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    pub = Path(f"{key}.pub").read_text()
    encoded, _, owner = pub.partition(" ")
    assert len(base64.b64decode(encoded)) == 524 and "@" in owner and not pub.endswith("\n")
    decode_public_key(pub.encode())  # the device side reads it back as a 2048-bit key
    before = key.read_bytes()
    Path(f"{key}.pub").unlink()
    assert ensure_adb_key(key) == key and key.read_bytes() == before  # kept; .pub rewritten from it
    assert Path(f"{key}.pub").read_text() == pub


def test_connect_shell_exit_status_and_merged_stderr(make_device, adb_key: Path) -> None:
    device = make_device()
    with open_connection(device, adb_key) as conn:
        ok = run(conn, "echo out; echo err >&2")
        failed = run(conn, "echo partial; exit 3")
        no_newline = run(conn, "printf 'no newline'")
        model = run(conn, "getprop ro.product.model").output.strip()
    assert (ok.output, ok.exit_status) == ("out\nerr\n", 0)
    assert (failed.output, failed.exit_status) == ("partial\n", 3)
    assert no_newline.output == "no newline"
    assert model == "EdgeoptTestDevice"
    assert all(service.startswith("shell:") for service in device.record.services)
    assert device.record.host_versions == [0x01000000]  # adb-shell's protocol version: checksums on


def test_check_raises_one_line(make_device, adb_key: Path) -> None:
    one_line = r"^listing failed on 127\.0\.0\.1:\d+ \(exit [12]\): ls: .*nothing-here.*$"  # GNU ls: 2, toybox: 1
    with open_connection(make_device(), adb_key) as conn, pytest.raises(DeviceError, match=one_line):
        run(conn, "ls /data/local/tmp/nothing-here", check="listing")


def test_vendor_keys_are_offered_too(make_device, adb_key: Path, tmp_path: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    vendor = ensure_adb_key(tmp_path / "vendor" / "ci.adb_key")
    device = make_device(authorized_keys=[Path(f"{vendor}.pub").read_text()])
    monkeypatch.setenv("ADB_VENDOR_KEYS", str(vendor.parent))  # a folder of *.adb_key, as adb reads it
    with open_connection(device, adb_key) as conn:
        assert run(conn, "true").ok


def test_a_new_key_is_accepted_when_the_user_taps_allow(make_device, adb_key: Path) -> None:
    device = make_device(authorized_keys=[], accept_new_keys=True)
    with open_connection(device, adb_key) as conn:
        assert run(conn, "true").ok
    assert device.record.offered_keys == 1


@pytest.mark.parametrize(
    ("faults", "state", "words"),
    [
        (Faults(unauthorized=True), "unauthorized", "tap Allow"),
        (Faults(offline=True), "offline", "did not complete the ADB handshake"),
    ],
)
def test_handshake_faults_name_the_state(make_device, adb_key: Path, faults: Faults, state: str, words: str) -> None:
    device = make_device(faults=faults)
    with pytest.raises(DeviceUnavailableError) as err:
        open_connection(device, adb_key, timeout_s=FAST)
    assert err.value.state == state and words in str(err.value)
    assert "\n" not in str(err.value) and exit_code(err.value) == 7


def test_unreachable_device(adb_key: Path) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(DeviceUnavailableError, match="connection refused") as err:
        connect(f"127.0.0.1:{port}", key_path=adb_key, timeout_s=FAST)
    assert err.value.state == "unreachable"


def test_a_stalled_device_times_out(make_device, adb_key: Path) -> None:
    device = make_device(faults=Faults(stall=True))
    conn = open_connection(device, adb_key, timeout_s=FAST)
    start = time.monotonic()
    with pytest.raises(DeviceError, match=r"did not answer within 0\.6 s while running `echo hello`"):
        run(conn, "echo hello")
    assert time.monotonic() - start < 4 * FAST
    conn.close()


def test_list_devices_and_refusing_to_guess(make_device, adb_key: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = make_device(), make_device()
    c = make_device(faults=Faults(unauthorized=True))
    found = {d.serial: d for d in list_devices([a.serial, b.serial, c.serial], usb=False, key_path=adb_key,
                                               timeout_s=FAST, auth_timeout_s=FAST)}
    assert (found[a.serial].state, found[a.serial].detail) == ("device", "EdgeoptTestDevice")
    assert found[c.serial].state == "unauthorized"
    with pytest.raises(DeviceError, match=r"^3 devices found .*choose one with --target adb:SERIAL$"):
        connect(known=[a.serial, b.serial, c.serial], key_path=adb_key, timeout_s=FAST, auth_timeout_s=FAST)
    with connect(known=[a.serial], key_path=adb_key, timeout_s=FAST) as conn:
        assert conn.serial == a.serial
    monkeypatch.setenv("ANDROID_SERIAL", b.serial)  # as with adb, it names the device
    with connect(key_path=adb_key, timeout_s=FAST) as conn:
        assert conn.serial == b.serial


def test_serials_and_usb_without_the_extra(monkeypatch: pytest.MonkeyPatch, adb_key: Path) -> None:
    assert tcp_address("192.168.1.20:5555") == ("192.168.1.20", 5555)
    assert tcp_address("[::1]:5037") == ("::1", 5037)
    assert tcp_address("10.0.0.7") == ("10.0.0.7", 5555)
    assert tcp_address("R58M123ABC") is None and tcp_address("emulator-5554") is None
    monkeypatch.setattr(connection_mod, "usb_unavailable_reason", lambda: "USB support is not installed: pip x")
    with pytest.raises(DeviceError, match=r"cannot use USB device R58M123ABC: USB support is not installed"):
        connect("R58M123ABC", key_path=adb_key)


# Pushes -------------------------------------------------------------------------------------------


def test_push_is_verified_then_renamed(make_device, adb_key: Path, tmp_path: Path) -> None:
    device = make_device()
    local = tmp_path / "blob.bin"
    local.write_bytes(np.random.default_rng(1).bytes(300_000))
    with open_connection(device, adb_key) as conn, WorkDir(conn, "run1") as work:
        pushed = work.push(local, mode=0o755)
        on_device = device.sandbox.host_path(pushed.remote)
        assert on_device.read_bytes() == local.read_bytes()
        assert stat.S_IMODE(on_device.stat().st_mode) == 0o755
        assert device_files(device) == ["run1/blob.bin"]
    assert pushed.checksum.startswith("sha256:") and pushed.size == 300_000
    sent_to = device.record.pushed[-1]
    assert sent_to.startswith("/data/local/tmp/edgeopt/run1/.blob.bin.") and sent_to.endswith(".part")
    assert device_files(device) == []  # the work folder went on exit


def test_keep_leaves_the_work_folder(make_device, adb_key: Path, model_file: Path) -> None:
    device = make_device()
    with open_connection(device, adb_key) as conn, WorkDir(conn, "kept", keep=True) as work:
        work.push(model_file)
    assert device_files(device) == ["kept/model.int8.tflite"]


def test_a_refused_push_leaves_nothing(make_device, adb_key: Path, model_file: Path) -> None:
    with open_connection(make_device(), adb_key) as conn:
        refused = r"^127\.0\.0\.1:\d+ refused pushing model\.int8\.tflite .*Permission denied$"
        with pytest.raises(DeviceError, match=refused):
            push_verified(conn, model_file, "/system/model.int8.tflite")
        assert run(conn, "true").ok  # the connection recovers


def test_without_checksum_tools_the_file_is_read_back(make_device, adb_key: Path, model_file: Path) -> None:
    device = make_device(faults=Faults(no_checksum_tools=True))
    with open_connection(device, adb_key) as conn, WorkDir(conn, "r") as work:
        assert work.push(model_file).checksum.startswith("readback:sha256:")
    assert "RECV" in device.record.sync


def test_a_corrupted_transfer_is_caught(make_device, adb_key: Path, model_file: Path) -> None:
    device = make_device(faults=Faults(corrupt_push=True))
    with open_connection(device, adb_key) as conn, WorkDir(conn, "r") as work:
        with pytest.raises(DeviceError, match=r"model\.int8\.tflite arrived corrupted on .*retry the push$"):
            work.push(model_file)
        assert device_files(device) == []  # neither the final name nor the .part


def test_a_dropped_push_leaves_nothing_that_looks_complete(make_device, adb_key: Path, tmp_path: Path) -> None:
    device = make_device(faults=Faults(drop_push_after=100_000))
    local = tmp_path / "model.tflite"
    local.write_bytes(np.random.default_rng(2).bytes(1_000_000))
    with open_connection(device, adb_key) as conn:
        run(conn, "mkdir -p /data/local/tmp/edgeopt/r")
        with pytest.raises(DeviceError, match=r"^lost the connection to .* while pushing model\.tflite"):
            push_verified(conn, local, "/data/local/tmp/edgeopt/r/model.tflite")
        assert device_files(device) == []  # reconnected and removed the partial .part file


def test_a_dropped_push_on_a_device_that_stays_down(make_device, adb_key: Path, tmp_path: Path) -> None:
    device = make_device(faults=Faults(drop_push_after=100_000, stay_down_after_drop=True))
    local = tmp_path / "model.tflite"
    local.write_bytes(np.random.default_rng(3).bytes(1_000_000))
    with open_connection(device, adb_key, timeout_s=FAST) as conn:
        run(conn, "mkdir -p /data/local/tmp/edgeopt/r")
        with pytest.raises(DeviceError, match=r"^lost the connection"):
            push_verified(conn, local, "/data/local/tmp/edgeopt/r/model.tflite")
    (left,) = device_files(device)  # cleanup could not reach it: only a partial .part remains
    assert left.startswith("r/.model.tflite.") and left.endswith(".part")
    assert device.sandbox.host_path(f"/data/local/tmp/edgeopt/{left}").stat().st_size < 1_000_000


# Benchmarks ---------------------------------------------------------------------------------------

QUICK = BenchmarkOptions(threads=1, runs=20, warmup=2, min_secs=0.2, warmup_min_secs=0.05)


def test_benchmark_runs_litert_on_the_device_and_parses(make_device, adb_key: Path, model_file: Path) -> None:
    device = make_device()
    with open_connection(device, adb_key) as conn, WorkDir(conn, "bench") as work:
        model = work.push(model_file)
        result = run_benchmark(conn, model.remote, QUICK, timeout_s=60)
    assert result.tool == "benchmark_model"
    assert result.command.split() == [
        "/data/local/tmp/benchmark_model", "--graph=/data/local/tmp/edgeopt/bench/model.int8.tflite",
        "--num_threads=1", "--num_runs=20", "--warmup_runs=2", "--min_secs=0.2", "--warmup_min_secs=0.05",
        "--use_xnnpack=true",
    ]
    assert result.inference is not None and result.inference.count >= 20
    assert result.inference.min_us <= result.inference_avg_us <= result.inference.max_us
    assert result.warmup is not None and result.init_us > 0 and result.memory_overall_mb is not None
    (delegate,) = result.delegates  # what XNNPACK really took of the chain (not its int8 AVERAGE_POOL_2D)
    truth = LiteRT(model_file, kernels="default").delegation()
    assert (delegate.delegate, delegate.replaced, delegate.total, delegate.partitions, delegate.complete) == (
        "TfLiteXNNPackDelegate", truth.replaced, truth.total, truth.partitions, False)
    assert 0 < result.timed_seconds < 5 and result.fps > 0


def test_a_pushed_benchmark_binary_is_used(make_device, adb_key: Path, model_file: Path, tmp_path: Path) -> None:
    device = make_device(faults=Faults(benchmark="missing"))
    binary = tmp_path / "benchmark_model"
    binary.write_text(standin_script())
    with open_connection(device, adb_key) as conn, WorkDir(conn, "b") as work:
        model, tool = work.push(model_file), work.push(binary, mode=0o755)
        result = run_benchmark(conn, model.remote, QUICK, binary=tool.remote, timeout_s=60)
    assert result.command.startswith("/data/local/tmp/edgeopt/b/benchmark_model ")


@pytest.mark.parametrize(
    ("benchmark", "message"),
    [
        ("missing", r"^/data/local/tmp/benchmark_model not found on .*: give one with --benchmark-binary PATH"),
        ("crash", r"^benchmark_model on 127\.0\.0\.1:\d+ crashed \(SIGSEGV\): "),
    ],
)
def test_benchmark_binary_faults(make_device, adb_key: Path, model_file: Path, benchmark: str, message: str) -> None:
    device = make_device(faults=Faults(benchmark=benchmark))
    with open_connection(device, adb_key) as conn, WorkDir(conn, "f") as work:
        model = work.push(model_file)
        with pytest.raises(DeviceError, match=message):
            run_benchmark(conn, model.remote, QUICK, timeout_s=60)
    assert device_files(device) == []


def test_a_benchmark_past_its_timeout_is_ended_on_the_device(make_device, adb_key: Path, model_file: Path) -> None:
    device = make_device()
    with open_connection(device, adb_key) as conn, WorkDir(conn, "t") as work:
        model = work.push(model_file)
        start = time.monotonic()
        with pytest.raises(DeviceError, match=r"did not answer within 1 s while running"):
            run_benchmark(conn, model.remote, BenchmarkOptions(runs=10**9, min_secs=600), timeout_s=1)
        assert time.monotonic() - start < 4
    deadline = time.monotonic() + 3
    while device.running_commands() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert device.running_commands() == 0
    assert device_files(device) == []  # the WorkDir reconnected to clean up


def test_command_lines_for_each_tool_and_delegate() -> None:
    tflite = BENCHMARK_TOOLS.get("benchmark_model")
    flags = {d: tflite.command("bm", "m.tflite", BenchmarkOptions(delegate=d))[5:] for d in
             ("cpu", "xnnpack", "gpu", "nnapi", "hexagon")}
    assert flags == {"cpu": ["--use_xnnpack=false"], "xnnpack": ["--use_xnnpack=true"], "gpu": ["--use_gpu=true"],
                     "nnapi": ["--use_nnapi=true"], "hexagon": ["--use_hexagon=true"]}
    assert tflite.command("bm", "m.tflite", BenchmarkOptions(delegate="qnn"))[-2:] == [
        "--external_delegate_path=libQnnTFLiteDelegate.so", "--external_delegate_options=backend_type:htp"]
    ort = BENCHMARK_TOOLS.get("onnxruntime_perf_test")
    assert ort.command("pt", "m.onnx", BenchmarkOptions(threads=2, runs=30, delegate="qnn")) == [
        "pt", "-e", "qnn", "-m", "times", "-r", "30", "-x", "2", "-I", "-s", "-i", "backend_path|libQnnHtp.so",
        "m.onnx"]
    with pytest.raises(DeviceError, match="no 'gpu' execution provider"):
        ort.command("pt", "m.onnx", BenchmarkOptions(delegate="gpu"))
    with pytest.raises(DeviceError, match=r"unknown delegate 'tpu' \(known: cpu, xnnpack"):
        tflite.command("bm", "m.tflite", BenchmarkOptions(delegate="tpu"))
    assert tool_for("/x/model.onnx").name == "onnxruntime_perf_test"
    with pytest.raises(DeviceError, match=r"must end in one of \.tflite, \.onnx|must end in one of \.onnx, \.tflite"):
        tool_for("model.pt")
    with pytest.raises(RegistryError, match="known: benchmark_model, onnxruntime_perf_test"):
        BENCHMARK_TOOLS.get("ai_benchmark")


# Output parsers, on samples in each real format ---------------------------------------------------

RECENT_XNNPACK = """\
INFO: STARTING!
INFO: Log parameter values verbosely: [0]
INFO: Num threads: [4]
INFO: Graph: [/data/local/tmp/edgeopt/run/model.int8.tflite]
INFO: Use xnnpack: [1]
INFO: Loaded model /data/local/tmp/edgeopt/run/model.int8.tflite
INFO: Initialized TensorFlow Lite runtime.
INFO: Created TensorFlow Lite XNNPACK delegate for CPU.
INFO: Replacing 64 out of 64 node(s) with delegate (TfLiteXNNPackDelegate) node, yielding 1 partitions for the whole graph.
INFO: The input model file size (MB): 5.43261
INFO: Initialized session in 17.187ms.
INFO: Running benchmark for at least 1 iterations and at least 0.5 seconds but terminate if exceeding 150 seconds.
INFO: count=1 curr=3512391

INFO: Running benchmark for at least 50 iterations and at least 1 seconds but terminate if exceeding 150 seconds.
INFO: count=50 first=2981775 curr=2937102 min=2897145 max=3102456 avg=2.95034e+06 std=41210 p5=2901877 median=2946020 p95=3031884

INFO: Inference timings in us: Init: 17187, First inference: 3512391, Warmup (avg): 3.51239e+06, Inference (avg): 2.95034e+06
INFO: Note: as the benchmark tool itself affects memory footprint, the following is only APPROXIMATE to the actual memory footprint of the model at runtime. Take the information at your discretion.
INFO: Memory footprint delta from the start of the tool (MB): init=12.0664 overall=38.8203
INFO: Overall peak memory footprint (MB) via periodic monitoring: 41.1211
"""

OLDER_GPU = """\
STARTING!
Log parameter values verbosely: [0]
Num threads: [4]
Graph: [/data/local/tmp/mobilenet_v1_1.0_224.tflite]
Use gpu: [1]
Loaded model /data/local/tmp/mobilenet_v1_1.0_224.tflite
INFO: Initialized TensorFlow Lite runtime.
INFO: Created TensorFlow Lite delegate for GPU.
ERROR: Following operations are not supported by GPU delegate:
SQUEEZE: Operation is not supported.
29 operations will run on the GPU, and the remaining 2 operations will run on the CPU.
INFO: Replacing 29 node(s) with delegate (TfLiteGpuDelegateV2) node, yielding 2 partitions.
INFO: Initialized OpenCL-based API.
INFO: Created 1 GPU delegate kernels.
Explicitly applied GPU delegate, and the model graph will be partially executed by the delegate w/ 1 delegate kernels.
The input model file size (MB): 16.9008
Initialized session in 912.61ms.
Running benchmark for at least 1 iterations and at least 0.5 seconds but terminate if exceeding 150 seconds.
count=82 first=33672 curr=5914 min=5718 max=33672 avg=6117.93 std=3043

Running benchmark for at least 50 iterations and at least 1 seconds but terminate if exceeding 150 seconds.
count=169 first=5972 curr=5878 min=5683 max=6401 avg=5905.34 std=114

Inference timings in us: Init: 912610, First inference: 33672, Warmup (avg): 6117.93, Inference (avg): 5905.34
Note: as the benchmark tool itself affects memory footprint, the following is only APPROXIMATE to the actual memory footprint of the model at runtime. Take the information at your discretion.
Peak memory footprint (MB): init=60.9961 overall=61.4258
"""

OLDEST = """\
Initialized session in 38.467ms
Running benchmark for at least 1 iterations and at least 0.5 seconds
count=7 first=83235 curr=81092 min=80114 max=83235 avg=81620.4 std=1046

Running benchmark for at least 50 iterations and at least 1 seconds
count=50 first=79449 curr=81350 min=77385 max=88213 avg=79732 std=1929

Average inference timings in us: Warmup: 81620.4, Init: 38467, Inference: 79732
"""

NNAPI_THEN_XNNPACK = """\
INFO: Created TensorFlow Lite delegate for NNAPI.
VERBOSE: Replacing 5 out of 64 node(s) with delegate (TfLiteNnapiDelegate) node, yielding 5 partitions for the whole graph.
INFO: Created TensorFlow Lite XNNPACK delegate for CPU.
VERBOSE: Replacing 59 out of 62 node(s) with delegate (TfLiteXNNPackDelegate) node, yielding 5 partitions for the whole graph.
INFO: Initialized session in 210.4ms.
INFO: count=3 curr=1200(all same)

INFO: count=60 first=1210 curr=1190 min=1150 max=1320 avg=1198.5 std=31 p5=1160 median=1195 p95=1260

INFO: Inference timings in us: Init: 210400, First inference: 1200, Warmup (avg): 1200, Inference (avg): 1198.5
"""

ORT_CLASSIC = """\
Setting intra_op_num_threads to 4
Session creation time cost: 0.0388237 s
First inference time cost: 5 ms
Total inference time cost: 0.135012 s
Total inference requests: 100
Average inference time cost: 1.35012 ms
Total inference run time: 0.13621 s
Number of inferences per second: 734.161
Avg CPU usage: 87 %
Peak working set size: 40181760 bytes
Avg CPU usage:87
Peak working set size:40181760
Runs:100
Min Latency: 0.00123 s
Max Latency: 0.00259 s
P50 Latency: 0.00131 s
P90 Latency: 0.00148 s
P95 Latency: 0.00161 s
P99 Latency: 0.00241 s
P999 Latency: 0.00259 s
"""

ORT_RECENT_QNN = """\
Setting intra_op_num_threads to 1
Disabling intra-op thread spinning between runs
Session creation time cost: 2.74716 s
First inference time cost: 85 ms
Total inference time cost: 6.22935 s
Total inference requests: 100
Average inference time cost total: 62.2935 ms
Total inference run time: 6.23146 s
Number of inferences per second: 16.0476
Total CPU usage: 382 %
Peak working set size: 114634752 bytes
Min Latency: 0.0529422 s
Max Latency: 0.0912857 s
P50 Latency: 0.0603562 s
P90 Latency: 0.0741593 s
P95 Latency: 0.0837052 s
P99 Latency: 0.0912857 s
P999 Latency: 0.0912857 s
"""


def test_parse_recent_benchmark_model_with_e_notation() -> None:
    r = parse_output("benchmark_model", RECENT_XNNPACK)
    timings = (r.init_us, r.first_inference_us, r.warmup_avg_us, r.inference_avg_us)
    assert timings == (17187, 3512391, 3.51239e6, 2.95034e6)
    assert (r.warmup.count, r.warmup.avg_us, r.warmup.std_us) == (1, 3512391, 0)
    stats = r.inference
    assert (stats.count, stats.min_us, stats.max_us, stats.std_us) == (50, 2897145, 3102456, 41210)
    assert (r.inference.percentile("p5"), r.inference.percentile("median"), r.inference.percentile("p95")) == (
        2901877, 2946020, 3031884)
    assert (r.memory_init_mb, r.memory_overall_mb, r.memory_peak_mb) == (12.0664, 38.8203, 41.1211)
    assert r.timed_seconds == pytest.approx(50 * 2.95034)
    assert [(d.delegate, d.replaced, d.total, d.partitions) for d in r.delegates] == [
        ("TfLiteXNNPackDelegate", 64, 64, 1)]


def test_parse_older_benchmark_model_with_partial_gpu_delegation() -> None:
    r = parse_output("benchmark_model", OLDER_GPU)
    assert (r.init_us, r.inference_avg_us, r.warmup.count, r.inference.count) == (912610, 5905.34, 82, 169)
    assert r.inference.percentiles_us == ()  # this version printed none
    assert (r.memory_init_mb, r.memory_overall_mb, r.memory_peak_mb) == (60.9961, 61.4258, None)
    (gpu,) = r.delegates
    assert (gpu.delegate, gpu.replaced, gpu.total, gpu.partitions, gpu.complete) == (
        "TfLiteGpuDelegateV2", 29, None, 2, None)


def test_parse_oldest_benchmark_model_summary() -> None:
    r = parse_output("benchmark_model", OLDEST)
    assert (r.init_us, r.warmup_avg_us, r.inference_avg_us, r.first_inference_us) == (38467, 81620.4, 79732, None)
    assert (r.warmup.count, r.inference.count, r.inference.first_us) == (7, 50, 79449)


def test_parse_two_delegates_and_all_same_stats() -> None:
    r = parse_output("benchmark_model", NNAPI_THEN_XNNPACK)
    assert [(d.delegate, d.replaced, d.total, d.complete) for d in r.delegates] == [
        ("TfLiteNnapiDelegate", 5, 64, False), ("TfLiteXNNPackDelegate", 59, 62, False)]
    assert (r.warmup.count, r.warmup.avg_us, r.warmup.min_us, r.warmup.max_us) == (3, 1200, 1200, 1200)
    assert r.inference.percentile("p50") == 1195


APPLIED_ONLY = """INFO: Created TensorFlow Lite XNNPACK delegate for CPU.
INFO: XNNPACK delegate created.
INFO: Created TensorFlow Lite delegate for NNAPI.
INFO: Explicitly applied XNNPACK delegate, and the model graph will be partially executed by the delegate w/ 3 delegate kernels.
INFO: Though NNAPI delegate is explicitly applied, the model graph will not be executed by the delegate.
INFO: Inference timings in us: Init: 5000, First inference: 900, Warmup (avg): 900, Inference (avg): 850
"""


def test_parse_recent_benchmark_model_that_logs_no_replacing_line() -> None:
    """Recent builds log "Replacing N out of M" only at VERBOSE; their "Explicitly applied" summary still says
    whether a delegate took all, part or none of the graph."""
    r = parse_output("benchmark_model", APPLIED_ONLY)
    assert [(d.delegate, d.replaced, d.partitions, d.executes, d.complete) for d in r.delegates] == [
        ("XNNPACK", None, 3, "part", False), ("NNAPI", None, 0, "none", False)]
    full = parse_output("benchmark_model", APPLIED_ONLY.replace(
        "partially executed by the delegate w/ 3 delegate kernels", "completely executed by the delegate"))
    assert (full.delegates[0].executes, full.delegates[0].partitions, full.delegates[0].complete) == ("all", 1, True)


@pytest.mark.parametrize(("text", "avg_ms", "cpu", "peak"), [(ORT_CLASSIC, 1.35012, 87, 40181760),
                                                             (ORT_RECENT_QNN, 62.2935, 382, 114634752)])
def test_parse_onnxruntime_perf_test(text: str, avg_ms: float, cpu: float, peak: int) -> None:
    r = parse_output("onnxruntime_perf_test", text)
    assert r.inference_avg_us == pytest.approx(avg_ms * 1e3)
    assert r.cpu_usage_pct == cpu and r.memory_peak_mb == pytest.approx(peak / 2**20)
    assert r.inference.count == 100 and r.timed_seconds is not None and r.delegates == ()
    assert [name for name, _ in r.inference.percentiles_us] == ["p50", "p90", "p95", "p99", "p999"]
    assert r.inference.min_us <= r.inference.percentile("p50") <= r.inference.max_us


def test_parse_classic_onnxruntime_values() -> None:
    r = parse_output("onnxruntime_perf_test", ORT_CLASSIC)
    assert (r.init_us, r.first_inference_us) == (pytest.approx(38823.7), 5000)
    assert r.inference.percentile("p90") == pytest.approx(1480)


def test_output_without_timings_is_an_error() -> None:
    with pytest.raises(DeviceError, match=r"^benchmark_model printed no inference timings; its last line: "
                                          r"ERROR: Failed to mmap model m\.tflite$"):
        parse_output("benchmark_model", "ERROR: Could not open 'm.tflite'.\nERROR: Failed to mmap model m.tflite\n")


# Energy -------------------------------------------------------------------------------------------


def _samples(current: float, voltage: float, n: int, start: float = 0.0, jitter: float = 0.0) -> list[Sample]:
    rng = np.random.default_rng(int(abs(current)) % 1000)
    return [Sample(start + 0.05 * i, current + jitter * rng.standard_normal(), voltage) for i in range(n)]


def test_energy_math_is_independent_of_units_and_sign() -> None:
    # 300 mA idle, 800 mA under load at 3.9 V: 1.95 W more; 2 ms per inference → 3.9 mJ.
    pixel = estimate_energy(_samples(-300_000, 3_900_000, 40), _samples(-800_000, 3_900_000, 40), 0.002)
    vendor = estimate_energy(_samples(300, 3900, 40), _samples(800, 3900, 40), 0.002)
    assert (pixel.current_unit, pixel.voltage_unit, pixel.discharge_sign) == ("uA", "uV", -1)
    assert (vendor.current_unit, vendor.voltage_unit, vendor.discharge_sign) == ("mA", "mV", 1)
    for e in (pixel, vendor):
        assert e.mj_per_inference == pytest.approx(3.9) and e.uncertainty_mj == pytest.approx(0.0)
        assert (e.idle_mw, e.run_mw) == (pytest.approx(1170), pytest.approx(3120)) and e.warnings == ()
        assert e.note.startswith("fuel-gauge estimate")


def test_energy_uncertainty_and_noise_warning() -> None:
    idle, timed = _samples(-300_000, 3.9e6, 50, jitter=20_000), _samples(-302_000, 3.9e6, 50, jitter=20_000)
    e = estimate_energy(idle, timed, 0.001)
    p_idle = [-s.current * 1e-6 * 3.9 for s in idle]
    p_run = [-s.current * 1e-6 * 3.9 for s in timed]
    expected = np.sqrt(np.var(p_run, ddof=1) / 50 + np.var(p_idle, ddof=1) / 50) * 1e-3 * 1e3
    assert e.uncertainty_mj == pytest.approx(expected)
    assert any("within the gauge's noise" in w for w in e.warnings)
    with pytest.raises(DeviceError, match="too few fuel-gauge samples"):
        estimate_energy(idle[:1], timed, 0.001)


def test_units_by_magnitude_and_the_timed_window() -> None:
    assert current_unit([-250_000, -260_000]) == ("uA", 1e-6) and current_unit([250, 4000]) == ("mA", 1e-3)
    assert voltage_unit([3.85e6]) == ("uV", 1e-6) and voltage_unit([3850]) == ("mV", 1e-3)
    assert voltage_unit([3.85]) == ("V", 1.0)
    samples = _samples(1, 1, 100)  # 0.00 .. 4.95 s
    window, warning = timed_window(samples, end_time_s=5.0, timed_seconds=1.0)
    assert [s.time_s for s in window] == pytest.approx([4.0 + 0.05 * i for i in range(20)]) and warning is None
    everything, warning = timed_window(samples, end_time_s=5.0, timed_seconds=0.05)
    assert len(everything) == 100 and "too short" in warning


def test_energy_measured_on_the_fake_battery(make_device, adb_key: Path, model_file: Path) -> None:
    battery = Battery(current=-320_000, voltage=3_870_000, load_factor=2.5)
    device = make_device(battery=battery)
    options = BenchmarkOptions(threads=1, runs=20, warmup=1, min_secs=1.0, warmup_min_secs=0.05)
    with open_connection(device, adb_key) as conn, WorkDir(conn, "power") as work:
        model = work.push(model_file)
        result, energy = measure_energy(
            conn, work.path, lambda: run_benchmark(conn, model.remote, options, timeout_s=60),
            idle_seconds=0.3, interval_s=0.02, max_seconds=30)
    idle_mw, load_mw = 320 * 3.87, 800 * 3.87
    assert (energy.current_unit, energy.voltage_unit, energy.discharge_sign) == ("uA", "uV", -1)
    assert energy.idle_mw == pytest.approx(idle_mw)
    assert idle_mw < energy.run_mw <= load_mw + 1e-6 and energy.run_samples >= MIN_WINDOW_SAMPLES
    full = (load_mw - idle_mw) * 1e-3 * result.inference_avg_us * 1e-6 * 1e3
    assert 0.3 * full < energy.mj_per_inference <= full * 1.000001
    assert not any("external power" in w for w in energy.warnings)
    assert device_files(device) == []  # sampler files went with the work folder


def test_charging_over_usb_is_flagged(make_device, adb_key: Path) -> None:
    device = make_device(battery=Battery(current=450_000, status="Charging", usb_online=True))
    with open_connection(device, adb_key) as conn:
        battery = find_battery(conn)
    assert (battery.path, battery.status, battery.external_power, battery.charging) == (
        "/sys/class/power_supply/battery", "Charging", ("usb",), True)
    e = estimate_energy(_samples(450_000, 4.2e6, 10), _samples(200_000, 4.2e6, 10), 0.001, charging=True)
    assert e.discharge_sign == -1 and e.mj_per_inference > 0
    assert any("external power" in w and "unplug" in w for w in e.warnings)
