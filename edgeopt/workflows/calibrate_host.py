"""``edgeopt profiles calibrate host``: measure this machine's roofline numbers with LiteRT micro-benchmarks.

Each benchmark is a small program built here (a QProgram written by edgeopt's own TFLite writer, int8,
16x8 or float32), run with LiteRT's default kernels (XNNPACK) on one thread, as ``LiteRT.time_inference`` times
a deployed model; the median of the timed runs is kept. The programs and what they pin down:

- a chain of ``n`` tiny ADDs for ``n`` in a few lengths: the slope of time against ``n`` is the per-op
  overhead (the intercept is the cost of one ``invoke``, which the cost model does not price);
- one large ADD at a few sizes: bytes moved over time is the sustained memory bandwidth;
- a 3x3 CONV_2D swept over its output channels (inputs fixed), then over its input channels (outputs
  fixed), int8 and float32: where its time steps is the kernel's channel block on each axis
  (``channel_granularity``, e.g. XNNPACK's int8 GEMM tile of 16 outputs and reduction step of 8 inputs);
- 3x3 and 1x1 CONV_2Ds of small CNNs' shapes, int8 and float32: MACs (channels rounded up to the
  measured blocks) over time is the peak MAC rate per dtype;
- CONV_2Ds in 16x8 (int16 activations with zero point 0, int8 per-channel weights, int64 biases, as
  edgeopt writes w8a16 programs; LiteRT runs them on its builtin kernels, XNNPACK has none): the
  ``peak_int16_macs_per_s``;
- a 3x3 DEPTHWISE_CONV_2D, int8 and float32: its MAC rate, which XNNPACK reaches far less of than a
  dense convolution's (few MACs per byte, no reduction over channels), kept as a per-kind rate.

Each large program is priced with ``time = work / rate + per_op_overhead``, so every rate is fitted
after the overhead is subtracted. The numbers are written into a device profile's performance keys,
each with a comment ``measured on <CPU> by edgeopt profiles calibrate host on <date>``, and the
``[hardware]`` keys name this CPU. The joules per MAC (``energy.int8_mac_j``, ``fp32_mac_j``,
``int16_mac_j``) stay ESTIMATES, re-derived so that no figure of another machine is left: the power the
profile already assumed for that work (its ``<precision>_mac_j`` times its ``peak_<precision>_macs_per_s``)
over the rate measured here. By default the profile is ``host.toml`` in the user's config folder (started
from the built-in ``host``), which shadows the built-in one; the installed package is not written.
"""
from __future__ import annotations

import datetime as dt
import json
import math
import platform
import re
import statistics
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from edgeopt.errors import ProfileError
from edgeopt.fileio import atomic_write_text, check_output_file
from edgeopt.ir import QParams
from edgeopt.pipeline.emit.tflite import program_to_tflite
from edgeopt.qprogram import QOp, QProgram, QTensor
from edgeopt.runtimes.litert import LiteRT

if TYPE_CHECKING:
    from edgeopt.device_profiles.schema import DeviceProfile

Dtype = Literal["int8", "int16", "float32"]
FLOAT_BYTES = 4
# Keys of the profile's performance section that the calibration measures, in the order written.
PERFORMANCE_KEYS = (
    "peak_int8_macs_per_s",
    "peak_fp32_macs_per_s",
    "peak_int16_macs_per_s",
    "memory_bandwidth_bytes_per_s",
    "per_op_overhead_s",
    "channel_granularity",
    "op_macs_per_s",
    "output_elements_per_s",
)
# The cost model's name of each benchmark dtype with the full set of benchmarks (16x8 has its convolutions only).
PRECISION = {"int8": "int8", "float32": "fp32"}
# Scale of the 16x8 benchmarks' int16 activations (symmetric, zero point 0; timing ignores values).
INT16_SCALE = 0.05 / 256


@dataclass(frozen=True)
class Sizes:
    """Problem sizes of the micro-benchmarks; ``QUICK`` is for tests, ``FULL`` for a real calibration.

    ``dense`` lists CONV_2D shapes (H=W, Ci, Co, K) for a KxK SAME stride-1 convolution; ``block_sweep``
    is (H=W, fixed channels, largest swept count) of the 3x3 CONV_2Ds swept one channel at a time, on
    each axis, for the channel blocks; ``depthwise``
    lists (H=W, C) for a 3x3 DEPTHWISE_CONV_2D; ``dense_int16`` the CONV_2D shapes timed in 16x8
    (LiteRT's builtin kernel, tens of times slower than XNNPACK's int8); ``add_elements`` the element counts of the large ADDs;
    ``chain_lengths`` the lengths of the chains of 8-element ADDs.
    """

    dense: tuple[tuple[int, int, int, int], ...]
    block_sweep: tuple[int, int, int]
    depthwise: tuple[tuple[int, int], ...]
    dense_int16: tuple[tuple[int, int, int, int], ...]
    add_elements: tuple[int, ...]
    chain_lengths: tuple[int, ...]
    runs: int
    warmup: int


# Channel counts of small CNNs (16 to 384, some not a power of two) at their usual resolutions, 1x1 and
# 3x3, so that the channel granularity and the peak are fitted where models run; the largest (56x56x64
# 3x3, 115.6 M MACs) takes milliseconds in float, well above timer noise.
FULL = Sizes(
    dense=((56, 64, 64, 3), (32, 16, 16, 3), (16, 32, 32, 3), (8, 64, 64, 3), (32, 3, 16, 3), (28, 24, 24, 3),
           (20, 96, 96, 3), (40, 16, 96, 1), (40, 96, 24, 1), (20, 144, 32, 1), (10, 384, 64, 1),
           (10, 64, 384, 1), (20, 48, 48, 1)),
    # 64 outputs x 64 inputs at 32x32 is 37.7 M MACs: tens of microseconds in int8, a step of 16
    # channels a quarter of that, well above the spread of a median of 30 runs.
    block_sweep=(32, 64, 64),
    depthwise=((112, 32), (56, 96), (28, 144), (14, 384), (7, 960)),
    # 174 M MACs in all: about 0.1 s a run at the built-in profile's 1.67e9 MAC/s.
    dense_int16=((56, 64, 64, 3), (20, 96, 96, 3), (28, 24, 24, 3), (40, 16, 96, 1), (10, 384, 64, 1)),
    add_elements=(1 << 18, 1 << 20, 1 << 22),
    chain_lengths=(1, 16, 64, 128), runs=30, warmup=5)
QUICK = Sizes(dense=((8, 16, 16, 3), (8, 24, 8, 1)), block_sweep=(8, 16, 8), depthwise=((8, 16),),
              dense_int16=((8, 16, 16, 3), (8, 24, 8, 1)), add_elements=(1 << 14, 1 << 16),
              chain_lengths=(1, 4, 8), runs=3, warmup=1)
# Channel blocks tried for the dense kernels, per axis: 1 (no rounding) up to 64; a sweep up to C channels
# tells apart the blocks up to C / 2 (two steps at least).
GRANULARITIES = (1, 2, 4, 8, 16, 32, 64)
# Fits of the channel sweep this close (median absolute log error, about 1 %) are a tie.
STEP_TIE = 0.01


@dataclass(frozen=True)
class Measurement:
    """One timed micro-benchmark and the work it does; ``channels`` is (Ci, Co) of a dense op, else ().

    ``name`` is ``conv`` for the dense shapes, ``sweep_output`` / ``sweep_input`` for the block sweeps.
    """

    name: str
    dtype: Dtype
    ops: int
    macs: int
    bytes: int
    out_elements: int
    seconds: float
    channels: tuple[int, ...] = ()


@dataclass(frozen=True)
class HostNumbers:
    """The fitted numbers: the profile's five performance keys, the optional refinements, the invoke cost.

    ``channel_granularity``, ``op_macs_per_s`` and ``output_elements_per_s`` are the optional
    performance keys of the same names (see ``edgeopt.device_profiles.schema.Performance``), keyed by
    the cost model's dtypes ``int8`` and ``fp32``.
    """

    peak_int8_macs_per_s: float
    peak_fp32_macs_per_s: float
    peak_int16_macs_per_s: float
    memory_bandwidth_bytes_per_s: float
    per_op_overhead_s: float
    channel_granularity: dict[str, dict[str, int]]
    op_macs_per_s: dict[str, dict[str, float]]
    output_elements_per_s: dict[str, float]
    invoke_overhead_s: float

    def performance(self) -> dict[str, object]:
        """The values of the profile's performance keys."""
        return {key: getattr(self, key) for key in PERFORMANCE_KEYS}


@dataclass(frozen=True)
class Calibration:
    """What ``calibrate`` measured and fitted, and where it wrote the profile (None: not written)."""

    cpu: str
    date: str
    numbers: HostNumbers
    measurements: tuple[Measurement, ...]
    path: Path | None


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (``platform.processor()`` elsewhere)."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        text = ""
    match = re.search(r"^model name\s*:\s*(.+)$", text, re.MULTILINE)
    return (match.group(1).strip() if match else platform.processor()) or "unknown CPU"


# ---------------------------------------------------------------------------------------------------
# Benchmark programs


class _Builder:
    """Grows one int8, 16x8 or float32 program; quantized tensors get fixed, valid encodings (timing ignores values).

    In 16x8 (``dtype`` int16) activations are int16 with zero point 0, weights int8 per-channel and biases
    int64, as ``pipeline.lower`` writes a w8a16 program.
    """

    def __init__(self, name: str, dtype: Dtype, rng: np.random.Generator) -> None:
        self.name, self.dtype, self.rng = name, dtype, rng
        self.tensors: dict[str, QTensor] = {}
        self.ops: list[QOp] = []

    def activation(self, name: str, shape: tuple[int, ...]) -> str:
        scale = {"int8": 0.05, "int16": INT16_SCALE}.get(self.dtype)
        qparams = QParams(np.array([scale]), np.array([0])) if scale is not None else None
        self.tensors[name] = QTensor(name, shape, self.dtype, qparams)
        return name

    def weights(self, name: str, shape: tuple[int, ...], axis: int) -> tuple[str, str]:
        channels = shape[axis]
        if self.dtype in ("int8", "int16"):
            w_scale = np.full(channels, 0.01, np.float32)
            self.tensors[name] = QTensor(name, shape, "int8", QParams(w_scale, np.zeros(channels), axis=axis),
                                         self.rng.integers(-127, 128, shape))
            x_scale, bias_dtype = (0.05, "int32") if self.dtype == "int8" else (INT16_SCALE, "int64")
            bias_q = QParams(w_scale * np.float32(x_scale), np.zeros(channels), dtype=bias_dtype, axis=0)
            self.tensors[name + "/bias"] = QTensor(name + "/bias", (channels,), bias_dtype, bias_q,
                                                   self.rng.integers(-1000, 1000, channels))
        else:
            self.tensors[name] = QTensor(name, shape, "float32", None, self.rng.standard_normal(shape) * 0.1)
            self.tensors[name + "/bias"] = QTensor(name + "/bias", (channels,), "float32", None,
                                                   self.rng.standard_normal(channels))
        return name, name + "/bias"

    def op(self, kind: str, inputs: tuple[str, ...], output: str, **options: object) -> None:
        self.ops.append(QOp(kind, inputs, (output,), options, source=output))

    def build(self, inputs: tuple[str, ...], outputs: tuple[str, ...]) -> QProgram:
        return QProgram(self.name, self.tensors, self.ops, inputs, outputs)


def conv_program(dtype: Dtype, h: int, cin: int, cout: int, kernel: int, depthwise: bool = False) -> QProgram:
    """One KxK SAME, stride-1 CONV_2D (Ci→Co) or DEPTHWISE_CONV_2D (C→C, ``cout`` ignored) on [1, H, H, Ci]."""
    kind = "DEPTHWISE_CONV_2D" if depthwise else "CONV_2D"
    cout = cin if depthwise else cout
    b = _Builder(kind.lower(), dtype, np.random.default_rng(0))
    x, y = b.activation("x", (1, h, h, cin)), b.activation("y", (1, h, h, cout))
    weights = b.weights("w", (1, kernel, kernel, cin), 3) if depthwise else \
        b.weights("w", (cout, kernel, kernel, cin), 0)
    options: dict[str, object] = {"padding": "SAME", "stride_h": 1, "stride_w": 1, "dilation_h_factor": 1,
                                  "dilation_w_factor": 1, "fused_activation_function": "NONE"}
    if depthwise:
        options["depth_multiplier"] = 1
    b.op(kind, (x, *weights), y, **options)
    return b.build((x,), (y,))


def add_chain_program(dtype: Dtype, elements: int, length: int) -> QProgram:
    """``length`` ADDs in a chain, each adding the graph input to the previous result, on [1, elements]."""
    b = _Builder(f"add_chain_{length}", dtype, np.random.default_rng(0))
    x = b.activation("x", (1, elements))
    previous = x
    for i in range(length):
        out = b.activation(f"y{i}", (1, elements))
        b.op("ADD", (previous, x), out, fused_activation_function="NONE")
        previous = out
    return b.build((x,), (previous,))


# ---------------------------------------------------------------------------------------------------
# Measurement and fit


def time_program(program: QProgram, runs: int, warmup: int) -> float:
    """Median seconds per ``invoke`` of ``program`` under LiteRT default kernels (XNNPACK), one thread."""
    runner = LiteRT(program_to_tflite(program), kernels="default", num_threads=1)
    spec = runner.input_details[0]
    rng = np.random.default_rng(0)
    if np.issubdtype(spec.dtype, np.integer):
        info = np.iinfo(spec.dtype)
        x = rng.integers(info.min, info.max, spec.shape, endpoint=True).astype(spec.dtype)
    else:
        x = rng.standard_normal(spec.shape).astype(spec.dtype)
    return statistics.median(runner.time_inference([x], runs=runs, warmup=warmup))


def run_benchmarks(sizes: Sizes = FULL) -> list[Measurement]:
    """Build and time every micro-benchmark at ``sizes``, int8 and float32 (the chains in float32 only),
    and the 16x8 convolutions.

    Returns:
        One measurement per program.
    """
    out: list[Measurement] = []

    def timed(program: QProgram, **work: object) -> None:
        out.append(Measurement(seconds=time_program(program, sizes.runs, sizes.warmup), **work))  # type: ignore[arg-type]

    for length in sizes.chain_lengths:
        timed(add_chain_program("float32", 8, length), name=f"add_chain_{length}", dtype="float32", ops=length,
              macs=0, bytes=0, out_elements=8 * length)
    for dtype in ("int8", "float32"):
        itemsize = 1 if dtype == "int8" else FLOAT_BYTES
        for elements in sizes.add_elements:
            timed(add_chain_program(dtype, elements, 1), name="add", dtype=dtype, ops=1, macs=0,
                  bytes=3 * elements * itemsize, out_elements=elements)
        for h, cin, cout, k in sizes.dense:
            timed(conv_program(dtype, h, cin, cout, k), name="conv", dtype=dtype, ops=1,
                  macs=h * h * cin * cout * k * k, bytes=0, out_elements=h * h * cout, channels=(cin, cout))
        h, fixed, largest = sizes.block_sweep
        for axis in ("output", "input"):
            for count in range(1, largest + 1):
                cin, cout = (fixed, count) if axis == "output" else (count, fixed)
                timed(conv_program(dtype, h, cin, cout, 3), name=f"sweep_{axis}", dtype=dtype, ops=1,
                      macs=h * h * cin * cout * 9, bytes=0, out_elements=h * h * cout, channels=(cin, cout))
        for h, c in sizes.depthwise:
            timed(conv_program(dtype, h, c, c, 3, depthwise=True), name="depthwise", dtype=dtype, ops=1,
                  macs=h * h * c * 9, bytes=0, out_elements=h * h * c)
    for h, cin, cout, k in sizes.dense_int16:
        timed(conv_program("int16", h, cin, cout, k), name="conv", dtype="int16", ops=1,
              macs=h * h * cin * cout * k * k, bytes=0, out_elements=h * h * cout, channels=(cin, cout))
    return out


def padded_macs(macs: int, channels: tuple[int, int], blocks: tuple[int, int]) -> float:
    """MACs of a dense op with ``channels`` (Ci, Co) whose output channels are rounded up to ``blocks[0]``
    and input channels to ``blocks[1]`` (the cost model's ``channel_block`` order: output, input)."""
    (cin, cout), (out_block, in_block) = channels, blocks
    return macs * (math.ceil(cout / out_block) * out_block / cout) * (math.ceil(cin / in_block) * in_block / cin)


def channel_step(counts: list[int], seconds: list[float], candidates: tuple[int, ...] = GRANULARITIES) -> int:
    """The channel block of a kernel timed at each of ``counts`` channels on one axis (``seconds``).

    Each candidate block ``b`` (at most half the largest count, so that it steps twice) predicts
    ``t = a + k * ceil(c / b) * b``, a staircase flat inside a block; ``a`` and ``k`` are fitted by least
    squares. The block whose staircase fits best (median absolute log error, robust to a run that a
    loaded machine slowed) wins; the smallest block within ``STEP_TIE`` of that error wins over it, so a
    flat or straight line (no step to see) is block 1.
    """
    counts_a, times = np.asarray(counts, float), np.asarray(seconds, float)

    def error(block: int) -> float:
        padded = np.ceil(counts_a / block) * block
        slope, intercept = np.polyfit(padded, times, 1)
        predicted = np.maximum(intercept + slope * padded, 1e-12)
        return float(np.median(np.abs(np.log(predicted / times))))

    usable = [b for b in candidates if 2 * b <= max(counts)] or [1]
    errors = {b: error(b) for b in usable}
    best = min(errors.values())
    return min(b for b in usable if errors[b] <= best + STEP_TIE)


def fit(measurements: list[Measurement]) -> HostNumbers:
    """Fit the cost model's numbers to the measurements.

    Each op is priced ``max(MACs / rate, bytes / bandwidth, output elements / element rate) + per-op
    overhead`` (``edgeopt.runtimes.cost``), a dense op ``MACs / rate + output elements / element rate``
    in place of the first and last terms (``runtimes.cost_refine``), and a program adds one ``invoke``
    overhead. The overheads come from a line through the chains' times (slope: per op; intercept: per invoke). The memory roofs
    are the best rates achieved net of the overheads (a roof bounds every op from above): bandwidth over
    the float ADDs (bytes), the element rate per dtype over its ADDs. The output and input channel
    blocks per dtype are the steps of the two sweeps (``channel_step``). The dense peak per dtype is
    the rate, among those the convolutions achieved with their channels rounded up to those blocks,
    that predicts the convolutions best (median absolute log error): robust to one convolution that
    happened to run fast or slow. The 16x8 peak is fitted the same way with neither
    refinement (the cost model prices 16x8 ops with ``MACs / peak_int16_macs_per_s`` alone). DEPTHWISE_CONV_2D, which XNNPACK runs far below the
    dense peak, gets its median achieved MAC rate per dtype.

    Raises:
        ProfileError: a benchmark is missing or a fitted number is not positive and finite.
    """
    chains = [m for m in measurements if m.name.startswith("add_chain_")]
    if len(chains) < 2:
        raise ProfileError("calibrate host: the per-op overhead needs at least two add chains")
    slope, intercept = np.polyfit([m.ops for m in chains], [m.seconds for m in chains], 1)
    # Below a nanosecond an overhead cannot be told from timer noise; keep it positive.
    floor = 1e-9
    per_op, invoke = max(float(slope), floor), max(float(intercept), floor)

    def rows(name: str, dtype: Dtype) -> list[Measurement]:
        found = [m for m in measurements if m.name == name and m.dtype == dtype]
        if not found:
            raise ProfileError(f"calibrate host: no {dtype} {name} benchmark to fit")
        return found

    def net(m: Measurement) -> float:
        return max(m.seconds - per_op - invoke, floor)

    bandwidth = max(m.bytes / net(m) for m in rows("add", "float32"))
    element_rate = {PRECISION[d]: max(m.out_elements / net(m) for m in rows("add", d)) for d in PRECISION}
    peak: dict[str, float] = {}
    granularity: dict[str, dict[str, int]] = {}

    def dense_fit(convs: list[Measurement], blocks: tuple[int, int], elements_per_s: float) -> float:
        # A dense op is priced MACs / rate + outputs / element rate (runtimes.cost_refine: the GEMM's
        # requantize-and-store follows its accumulation); the MACs' share of each time is what is fitted.
        def mac_s(m: Measurement) -> float:
            return max(net(m) - m.out_elements / elements_per_s, floor)

        def error(rate: float) -> float:
            predicted = [padded_macs(m.macs, m.channels, blocks) / rate + m.out_elements / elements_per_s
                         for m in convs]
            return statistics.median(abs(math.log(p / net(m))) for p, m in zip(predicted, convs))

        # Candidate peaks are the rates the convolutions achieved; the one with the least error wins.
        return min((padded_macs(m.macs, m.channels, blocks) / mac_s(m) for m in convs), key=error)

    for dtype, precision in PRECISION.items():
        sweeps = {axis: rows(f"sweep_{axis}", dtype) for axis in ("output", "input")}
        granularity[precision] = {
            axis: channel_step([m.channels[1 if axis == "output" else 0] for m in found], [m.seconds for m in found])
            for axis, found in sweeps.items()}
        blocks = (granularity[precision]["output"], granularity[precision]["input"])
        peak[precision] = dense_fit(rows("conv", dtype), blocks, element_rate[precision])
    peak["int16"] = dense_fit(rows("conv", "int16"), (1, 1), math.inf)
    depthwise = {PRECISION[d]: statistics.median(m.macs / net(m) for m in rows("depthwise", d)) for d in PRECISION}
    numbers = HostNumbers(
        peak_int8_macs_per_s=peak["int8"], peak_fp32_macs_per_s=peak["fp32"], peak_int16_macs_per_s=peak["int16"],
        memory_bandwidth_bytes_per_s=bandwidth, per_op_overhead_s=per_op,
        channel_granularity=granularity, op_macs_per_s={"DEPTHWISE_CONV_2D": depthwise},
        output_elements_per_s=element_rate, invoke_overhead_s=invoke,
    )
    values = [*peak.values(), bandwidth, per_op, invoke, *element_rate.values(), *depthwise.values()]
    if not all(math.isfinite(v) and v > 0 for v in values):
        raise ProfileError(f"calibrate host: a fitted number is not positive and finite: {numbers}")
    return numbers


# ---------------------------------------------------------------------------------------------------
# Profile file


def toml_value(value: object) -> str:
    """``value`` (a number, or nested dicts of numbers) as a TOML value; floats keep an exponent."""
    if isinstance(value, str):
        return json.dumps(value)  # a TOML basic string: the same escapes as JSON for text like this
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, int):
        return str(value)
    return f"{float(value):.4e}"


def update_performance(text: str, values: Mapping[str, object], comment: str, table: str = "performance") -> str:
    """Set ``values`` in the ``[performance]`` table (or ``table``) of the TOML ``text``, keeping every other line.

    A key already there has its line, and the comment lines right above it, replaced by ``# comment``
    and the new value; a missing key is appended to the table.

    Raises:
        ProfileError: the text has no such table.
    """
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if re.fullmatch(rf"\s*\[{table}\]\s*(#.*)?", line)), None)
    if start is None:
        raise ProfileError(f"the profile has no [{table}] table to write the measured numbers into")
    end = next((i for i in range(start + 1, len(lines)) if re.match(r"\s*\[", lines[i])), len(lines))
    body = lines[start + 1 : end]
    while body and not body[-1].strip():
        body.pop()
    for key, value in values.items():
        entry = [f"# {comment}", f"{key} = {toml_value(value)}"]
        at = next((i for i, line in enumerate(body) if re.match(rf"\s*{key}\s*=", line)), None)
        if at is None:
            body += ["", *entry]
            continue
        first = at
        while first > 0 and body[first - 1].lstrip().startswith("#"):
            first -= 1
        body[first : at + 1] = entry
    tail = ["", *lines[end:]] if end < len(lines) else []
    return "\n".join([*lines[: start + 1], *body, *tail]) + "\n"


def builtin_profile_path(name: str = "host") -> Path:
    """Path of a built-in profile's TOML file inside the installed package."""
    import edgeopt.device_profiles as profiles

    return Path(profiles.__file__).with_name(f"{name}.toml")


def user_host_profile() -> Path:
    """Where ``profiles calibrate host`` writes by default: ``host.toml`` in the user's profile folder,
    which shadows the built-in ``host`` profile (``device_profiles.user_profile_dir``)."""
    from edgeopt.device_profiles import user_profile_dir

    return user_profile_dir() / "host.toml"


# The energy keys re-derived from the measured rates: (precision in the profile's key names, its name in words).
MAC_ENERGY = (("int8", "int8"), ("fp32", "fp32"), ("int16", "int16 (16x8)"))


def mac_energy(profile: DeviceProfile, precision: str, measured_rate: float) -> tuple[float, str]:
    """``energy.<precision>_mac_j`` for a measured MAC rate, an ESTIMATE, and the comment that says how.

    The power ``profile`` assumes while computing at ``precision`` (its ``<precision>_mac_j`` times its
    ``peak_<precision>_macs_per_s``; its int8 pair when it prices none) is kept: joules per MAC are that
    power over the measured rate. Calibrating again keeps the power, so the comment stays true.
    """
    perf, energy = profile.performance, profile.energy
    key = precision if getattr(energy, f"{precision}_mac_j") is not None and \
        getattr(perf, f"peak_{precision}_macs_per_s") is not None else "int8"
    power = getattr(energy, f"{key}_mac_j") * getattr(perf, f"peak_{key}_macs_per_s")
    mac_j = power / measured_rate
    words = dict(MAC_ENERGY)[precision]
    comment = (f"ESTIMATE. The power this profile assumed for {words} ({key}_mac_j x peak_{key}_macs_per_s before "
               f"this calibration: {power:.3g} W) over the measured {words} rate: {mac_j:.3g} J per MAC.")
    return mac_j, comment


def write_profile(path: Path, numbers: HostNumbers, cpu: str, date: str, template: Path | None = None) -> Path:
    """Write the measured performance keys into the profile at ``path``, validated, atomically.

    ``energy``'s int8, fp32 and int16 joules per MAC follow the measured rates (``mac_energy``); every other
    key is kept.

    Args:
        path: the profile to update; if it does not exist, it is started from ``template``.
        numbers: the fitted numbers.
        cpu: the CPU's model name, for the comments.
        date: ISO date of the measurement, for the comments.
        template: the profile whose other keys a new ``path`` copies (default: the built-in ``host``).

    Raises:
        ProfileError: no profile to update, or the updated text is not a valid profile (nothing is
            written then).
    """
    from edgeopt.device_profiles import parse_profile

    source = path if path.exists() else (template or builtin_profile_path())
    try:
        text = source.read_text(encoding="utf-8")
    except OSError as err:
        raise ProfileError(f"cannot read device profile {source} to update: {err.strerror or err}") from None
    comment = f"measured on {cpu} by edgeopt profiles calibrate host on {date}"
    template_profile = parse_profile(text, str(source))
    updated = update_performance(text, numbers.performance(), comment)
    for precision, _ in MAC_ENERGY:
        mac_j, energy_comment = mac_energy(template_profile, precision,
                                           getattr(numbers, f"peak_{precision}_macs_per_s"))
        updated = update_performance(updated, {f"{precision}_mac_j": mac_j}, energy_comment, "energy")
    # The hardware the figures belong to is this machine, not the template's.
    vendor = re.sub(r"\((R|TM)\)", "", cpu).split()[0] if cpu.split() else "unknown"
    updated = update_performance(updated, {"vendor": vendor, "core": cpu, "soc": cpu},
                                 "this machine, as edgeopt profiles calibrate host read it", "hardware")
    description = f"This machine ({cpu}): one CPU core, LiteRT + XNNPACK, 1 thread; figures measured here"
    updated = re.sub(r"(?m)^description\s*=.*$", lambda _: f"description = {toml_value(description)}", updated,
                     count=1)
    parse_profile(updated, str(path))
    return atomic_write_text(path, updated)


def calibrate(out: Path | None = None, template: Path | None = None, sizes: Sizes = FULL,
              write: bool = True) -> Calibration:
    """Measure this machine and write the numbers into a profile.

    Args:
        out: the profile file to write (default: ``user_host_profile()``, in the user's config folder).
        template: when ``out`` does not exist yet, the profile it starts from (default: the built-in
            ``host`` profile); its other keys are copied unchanged.
        sizes: benchmark sizes (``QUICK`` for a smoke test).
        write: False to only measure and fit.

    Returns:
        The measurements, the fitted numbers and the path written.

    Raises:
        ProfileError: the profile to update is missing or invalid, or a fit failed.
        OutputError: ``out`` cannot be written (checked before measuring).
    """
    if write:
        check_output_file(out or user_host_profile(), "--out")
    measurements = run_benchmarks(sizes)
    numbers = fit(measurements)
    cpu, date = cpu_model(), dt.date.today().isoformat()
    path = write_profile(out or user_host_profile(), numbers, cpu, date, template) if write else None
    return Calibration(cpu, date, numbers, tuple(measurements), path)
