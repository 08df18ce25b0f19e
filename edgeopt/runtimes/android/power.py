"""Energy per inference from the phone's fuel gauge (``/sys/class/power_supply/*/current_now``, ``voltage_now``).

A sampling loop runs on the device itself (started in the background over adb shell, so the host's
link latency does not pace it), writing ``uptime idle-time current voltage`` lines to a file while the
benchmark runs; an idle baseline is sampled the same way just before. Gauges differ:

- units: the kernel ABI says µA and µV, some vendors report mA (and mV). Phone currents lie between
  about 10 mA and 5 A, so a median magnitude below 10,000 means mA; voltages are read as µV, mV or V
  by magnitude (a Li-ion cell sits at 3-4.5 V).
- sign: Pixels report discharge as negative current, many others as positive. Discharging, the idle
  current's sign is the discharge sign; charging, the run's extra load moves the current towards it.

Energy per inference = (mean power during the timed runs - mean idle power) x mean inference time,
with the standard error of that difference as its uncertainty. It is a fuel-gauge estimate: the gauge
averages over its own window and sees everything else the phone does.
"""
from __future__ import annotations

import logging
import math
import secrets
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from edgeopt.errors import DeviceError
from edgeopt.runtimes.android.benchmark import BenchmarkResult
from edgeopt.runtimes.android.connection import AdbConnection
from edgeopt.runtimes.android.shell import quote, run

log = logging.getLogger(__name__)

SUPPLY_ROOT = "/sys/class/power_supply"
FUEL_GAUGE_NOTE = ("fuel-gauge estimate: (mean battery power during the timed runs - mean idle power) x mean "
                   "inference time; the gauge averages over its own window and includes everything else the "
                   "phone does")
MIN_WINDOW_SAMPLES = 3
_CHARGING_STATES = ("Charging", "Full")
_EXTERNAL_TYPES = ("USB", "USB_C", "USB_PD", "USB_DCP", "USB_CDP", "USB_ACA", "Mains", "Wireless")
_LIST_SUPPLIES = (
    f'for d in {SUPPLY_ROOT}/*; do printf "%s|%s|%s|%s|%s\\n" "$d" "$(cat "$d/type" 2>/dev/null)" '
    '"$(cat "$d/status" 2>/dev/null)" "$(cat "$d/online" 2>/dev/null)" '
    '"$([ -r "$d/current_now" ] && [ -r "$d/voltage_now" ] && echo gauge)"; done'
)


@dataclass(frozen=True)
class Battery:
    """The battery's supply folder and whether external power is feeding the phone."""

    path: str
    status: str
    external_power: tuple[str, ...]

    @property
    def charging(self) -> bool:
        return self.status in _CHARGING_STATES or bool(self.external_power)


@dataclass(frozen=True)
class Sample:
    """One gauge reading: device uptime (s) and the raw ``current_now`` and ``voltage_now`` values."""

    time_s: float
    current: float
    voltage: float


@dataclass(frozen=True)
class EnergyEstimate:
    """Energy per inference from the fuel gauge, with its uncertainty (one standard error).

    ``discharge_sign`` is the sign the gauge gives discharge current (-1 on Pixels).
    """

    mj_per_inference: float
    uncertainty_mj: float
    idle_mw: float
    run_mw: float
    idle_samples: int
    run_samples: int
    current_unit: str
    voltage_unit: str
    discharge_sign: int
    warnings: tuple[str, ...] = ()
    note: str = FUEL_GAUGE_NOTE


def find_battery(conn: AdbConnection, *, timeout_s: float | None = None) -> Battery:
    """The supply with a fuel gauge (type ``Battery`` preferred), and which external supplies are online.

    Raises:
        DeviceError: No supply reports both ``current_now`` and ``voltage_now``.
    """
    rows = [line.split("|") for line in run(conn, _LIST_SUPPLIES, timeout_s=timeout_s).output.splitlines()]
    rows = [r for r in rows if len(r) == 5]
    gauges = sorted((r for r in rows if r[4] == "gauge"), key=lambda r: (r[1] != "Battery", r[0]))
    if not gauges:
        raise DeviceError(f"{conn.serial} has no fuel gauge ({SUPPLY_ROOT}/*/current_now and voltage_now): "
                          "energy cannot be measured on it; run without energy measurement")
    external = tuple(r[0].rpartition("/")[2] for r in rows if r[1] in _EXTERNAL_TYPES and r[3].strip() == "1")
    return Battery(gauges[0][0], gauges[0][2].strip() or "Unknown", external)


def _loop(battery: Battery, interval_s: float, max_samples: int, stop_file: str | None = None) -> str:
    """A bounded sampling loop printing one line per sample: ``/proc/uptime``'s two fields, current, voltage."""
    condition = f"[ $i -lt {max_samples} ]" + (f" && [ ! -e {quote(stop_file)} ]" if stop_file else "")
    current, voltage = quote(f"{battery.path}/current_now"), quote(f"{battery.path}/voltage_now")
    return (f'i=0; while {condition}; do echo "$(cat /proc/uptime) $(cat {current}) $(cat {voltage})"; '
            f"sleep {interval_s:g}; i=$((i+1)); done")


def parse_samples(text: str) -> list[Sample]:
    """Samples from the loop's output; torn or malformed lines (a loop stopped mid-write) are skipped."""
    samples = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) != 4:
            continue
        try:
            samples.append(Sample(float(fields[0]), float(fields[2]), float(fields[3])))
        except ValueError:
            continue
    return samples


def sample(conn: AdbConnection, battery: Battery, seconds: float, interval_s: float = 0.05) -> list[Sample]:
    """Sample the gauge for about ``seconds`` (an idle baseline), waiting for the loop to finish."""
    count = max(2, math.ceil(seconds / interval_s))
    result = run(conn, _loop(battery, interval_s, count), timeout_s=conn.timeout_s + 4 * seconds,
                 check="sampling the fuel gauge")
    return parse_samples(result.output)


class PowerSampler:
    """The gauge sampled on the device in the background while the ``with`` block runs.

    After the block, ``samples`` holds the readings and ``end_time_s`` the device uptime when it ended.
    The loop stops at a stop file, or by itself after ``max_seconds``, so it never outlives a lost link.
    """

    def __init__(self, conn: AdbConnection, battery: Battery, folder: str, *, interval_s: float = 0.05,
                 max_seconds: float = 600.0) -> None:
        self.conn, self.battery, self.interval_s = conn, battery, interval_s
        token = secrets.token_hex(4)
        self._out, self._stop = f"{folder}/power-{token}.txt", f"{folder}/power-{token}.stop"
        self._max_samples = math.ceil(max_seconds / interval_s)
        self.samples: list[Sample] = []
        self.end_time_s = 0.0

    def __enter__(self) -> PowerSampler:
        loop = _loop(self.battery, self.interval_s, self._max_samples, self._stop)
        # Ignoring SIGHUP keeps the loop alive when adbd (before Android 7, in a pty) hangs up on the shell.
        run(self.conn, f"(trap '' HUP; {loop}) > {quote(self._out)} 2>&1 < /dev/null &",
            check="starting the power sampler")
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is not None:
            try:
                run(self.conn, f"touch {quote(self._stop)}")
            except DeviceError as err:
                log.warning("could not stop the power sampler on %s (it stops by itself): %s", self.conn.serial, err)
            return
        stopped = run(self.conn, f"cat /proc/uptime; touch {quote(self._stop)}; sleep {2 * self.interval_s:g}; "
                                 f"cat {quote(self._out)}", check="reading the power samples")
        first, _, rest = stopped.output.partition("\n")
        try:
            self.end_time_s = float(first.split()[0])
        except (ValueError, IndexError):
            raise DeviceError(f"cannot read /proc/uptime on {self.conn.serial} to time the power samples: "
                              f"{first.strip()[:80]}") from None
        self.samples = parse_samples(rest)


def current_unit(values: Sequence[float]) -> tuple[str, float]:
    """``("uA", 1e-6)`` or ``("mA", 1e-3)`` from the readings' magnitude (see the module docstring)."""
    return ("mA", 1e-3) if statistics.median(abs(v) for v in values) < 10_000 else ("uA", 1e-6)


def voltage_unit(values: Sequence[float]) -> tuple[str, float]:
    """``("uV", 1e-6)``, ``("mV", 1e-3)`` or ``("V", 1.0)`` from the readings' magnitude."""
    typical = statistics.median(abs(v) for v in values)
    return ("uV", 1e-6) if typical > 100_000 else ("mV", 1e-3) if typical > 100 else ("V", 1.0)


def estimate_energy(idle: Sequence[Sample], timed: Sequence[Sample], inference_s: float, *,
                    charging: bool = False) -> EnergyEstimate:
    """Energy per inference from idle and timed-run gauge samples.

    Args:
        idle: Samples with the phone idle, just before the run.
        timed: Samples during the timed runs.
        inference_s: Mean inference time in seconds.
        charging: External power is connected (the estimate is then unreliable, and says so).

    Raises:
        DeviceError: Fewer than two samples on either side, or a gauge that reads zero current.
    """
    if len(idle) < 2 or len(timed) < 2:
        raise DeviceError(f"too few fuel-gauge samples ({len(idle)} idle, {len(timed)} during the run) to estimate "
                          "energy; run the benchmark longer")
    currents = [s.current for s in (*idle, *timed)]
    if not any(currents):
        raise DeviceError("the fuel gauge reads zero current: this phone does not report it; run without energy")
    i_unit, i_scale = current_unit(currents)
    v_unit, v_scale = voltage_unit([s.voltage for s in (*idle, *timed)])
    idle_median = statistics.median(s.current for s in idle)
    if charging or idle_median == 0:
        sign = -1 if statistics.fmean(s.current for s in timed) < statistics.fmean(s.current for s in idle) else 1
    else:
        sign = -1 if idle_median < 0 else 1

    def watts(samples: Sequence[Sample]) -> list[float]:
        return [sign * s.current * i_scale * s.voltage * v_scale for s in samples]

    p_idle, p_run = watts(idle), watts(timed)
    delta = statistics.fmean(p_run) - statistics.fmean(p_idle)
    error = math.sqrt(statistics.variance(p_run) / len(p_run) + statistics.variance(p_idle) / len(p_idle))
    warnings = []
    if charging:
        warnings.append("the phone is on external power: the gauge also sees the charger, so this number is "
                        "unreliable; unplug it and measure over ADB-over-TCP")
    if delta <= 2 * error:
        warnings.append(f"the run's extra power ({delta * 1e3:.1f} ± {error * 1e3:.1f} mW) is within the gauge's "
                        "noise; run longer or with the phone quieter")
    return EnergyEstimate(
        mj_per_inference=delta * inference_s * 1e3,
        uncertainty_mj=error * inference_s * 1e3,
        idle_mw=statistics.fmean(p_idle) * 1e3,
        run_mw=statistics.fmean(p_run) * 1e3,
        idle_samples=len(p_idle),
        run_samples=len(p_run),
        current_unit=i_unit,
        voltage_unit=v_unit,
        discharge_sign=sign,
        warnings=tuple(warnings),
    )


def timed_window(samples: Sequence[Sample], end_time_s: float,
                 timed_seconds: float | None) -> tuple[list[Sample], str | None]:
    """The samples of the timed runs: the last ``timed_seconds`` before the run ended.

    Returns the samples and a warning when there were too few to use that window (then every sample
    of the run is used, warm-up and set-up included).
    """
    if timed_seconds is not None:
        window = [s for s in samples if end_time_s - timed_seconds <= s.time_s <= end_time_s]
        if len(window) >= MIN_WINDOW_SAMPLES:
            return window, None
    return list(samples), ("the timed runs were too short for the gauge's sampling, so the whole run (set-up and "
                           "warm-up included) was used; run longer for a cleaner number")


def measure_energy(conn: AdbConnection, folder: str, benchmark: Callable[[], BenchmarkResult], *,
                   idle_seconds: float = 2.0, interval_s: float = 0.05,
                   max_seconds: float = 600.0) -> tuple[BenchmarkResult, EnergyEstimate]:
    """Run ``benchmark`` while sampling the fuel gauge, after an idle baseline; estimate mJ per inference.

    Args:
        conn: The connection.
        folder: A writable device folder for the sampler's files (the run's work folder).
        benchmark: Runs the benchmark (e.g. a ``run_benchmark`` call) and returns its result.
        idle_seconds: Length of the idle baseline.
        interval_s: Sampling interval.
        max_seconds: The sampler stops by itself after this long.

    Raises:
        DeviceError: No fuel gauge, too few samples, or the benchmark failed.
    """
    battery = find_battery(conn)
    if battery.charging:
        log.warning("%s is on external power (%s): energy numbers will be unreliable", conn.serial,
                    ", ".join(battery.external_power) or battery.status)
    idle = sample(conn, battery, idle_seconds, interval_s)
    with PowerSampler(conn, battery, folder, interval_s=interval_s, max_seconds=max_seconds) as sampler:
        result = benchmark()
    window, warning = timed_window(sampler.samples, sampler.end_time_s, result.timed_seconds)
    estimate = estimate_energy(idle, window, result.inference_avg_us / 1e6, charging=battery.charging)
    if warning:
        estimate = replace(estimate, warnings=(*estimate.warnings, warning))
    return result, estimate
