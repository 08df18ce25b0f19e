"""`profiles calibrate host`: micro-benchmarks, fit, atomic profile update; the cost model's refinements."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from edgeopt.device_profiles import load_profile
from edgeopt.errors import ProfileError
from edgeopt.pipeline.emit.float_program import dequantize_program
from edgeopt.pipeline.emit.tflite import program_to_tflite
from edgeopt.runtimes.cost import estimate
from edgeopt.runtimes.litert import LiteRT
from edgeopt.workflows import calibrate_host

TEMPLATE = calibrate_host.builtin_profile_path("arm-cortex-a78-xnnpack")


@pytest.fixture(scope="module")
def calibration() -> calibrate_host.Calibration:
    return calibrate_host.calibrate(sizes=calibrate_host.QUICK, write=False)


def test_fit_gives_positive_finite_plausible_numbers(calibration: calibrate_host.Calibration) -> None:
    n = calibration.numbers
    for value in (n.peak_int8_macs_per_s, n.peak_fp32_macs_per_s, n.peak_int16_macs_per_s,
                  *n.op_macs_per_s["DEPTHWISE_CONV_2D"].values()):
        assert math.isfinite(value) and 1e7 < value < 1e14, value  # 10 MMAC/s .. 100 TMAC/s for one core
    assert 1e8 < n.memory_bandwidth_bytes_per_s < 1e13
    assert all(1e6 < v < 1e12 for v in n.output_elements_per_s.values())
    assert 0 < n.per_op_overhead_s < 1e-3 and 0 < n.invoke_overhead_s < 1e-2
    assert set(n.channel_granularity) == {"int8", "fp32"}
    assert all(set(b) == {"output", "input"} and set(b.values()) <= set(calibrate_host.GRANULARITIES)
               for b in n.channel_granularity.values())
    swept = [m for m in calibration.measurements if m.name.startswith("sweep_")]
    h, fixed, largest = calibrate_host.QUICK.block_sweep
    assert len(swept) == 2 * 2 * largest  # two dtypes, two axes, every count from 1
    assert calibration.path is None
    assert {m.dtype for m in calibration.measurements} == {"int8", "int16", "float32"}
    # LiteRT runs 16x8 on its builtin kernels (XNNPACK has none): far below XNNPACK's int8.
    assert n.peak_int16_macs_per_s < n.peak_int8_macs_per_s


def test_int16_benchmark_is_a_16x8_conv_as_edgeopt_writes_it() -> None:
    program = calibrate_host.conv_program("int16", 6, 8, 4, 3)
    x, w, b = (program.tensor(name) for name in program.ops[0].inputs)
    assert (x.dtype, w.dtype, b.dtype) == ("int16", "int8", "int64")
    assert int(x.qparams.zero_point[0]) == 0 and w.qparams.axis == 0
    np.testing.assert_allclose(b.qparams.scale, x.qparams.scale[0] * w.qparams.scale, rtol=1e-6)
    runner = LiteRT(program_to_tflite(program), kernels="default")
    assert runner.input_details[0].dtype == np.int16
    (y,) = runner.run([np.full((1, 6, 6, 8), 1000, np.int16)])
    assert y.dtype == np.int16 and y.shape == (1, 6, 6, 4)


def test_write_profile_updates_only_performance_keys_and_validates(
        calibration: calibrate_host.Calibration, tmp_path: Path) -> None:
    out = tmp_path / "host.toml"
    calibrate_host.write_profile(out, calibration.numbers, "Test CPU", "2026-01-01", template=TEMPLATE)
    profile, original = load_profile(str(out)), load_profile(str(TEMPLATE))
    assert profile.performance.peak_int8_macs_per_s == pytest.approx(calibration.numbers.peak_int8_macs_per_s, 1e-3)
    assert {k: v.model_dump() for k, v in profile.performance.channel_granularity.items()} == \
        calibration.numbers.channel_granularity
    assert profile.runtime == original.runtime
    per_mac = {"int8_mac_j", "fp32_mac_j", "int16_mac_j"}
    assert profile.energy.model_dump(exclude=per_mac) == original.energy.model_dump(exclude=per_mac)
    # Each energy per MAC keeps the template's power (<p>_mac_j x peak_<p>_macs_per_s) at the measured rate.
    assert profile.performance.peak_int16_macs_per_s == pytest.approx(calibration.numbers.peak_int16_macs_per_s, 1e-3)
    for p in ("int8", "fp32", "int16"):
        power = getattr(original.energy, f"{p}_mac_j") * getattr(original.performance, f"peak_{p}_macs_per_s")
        measured = getattr(profile.energy, f"{p}_mac_j") * getattr(profile.performance, f"peak_{p}_macs_per_s")
        assert measured == pytest.approx(power, 1e-3), p
    text = out.read_text()
    comment = "# measured on Test CPU by edgeopt profiles calibrate host on 2026-01-01"
    assert text.count(comment) == len(calibrate_host.PERFORMANCE_KEYS)
    # A second calibration replaces the numbers and their comments rather than adding to them.
    calibrate_host.write_profile(out, calibration.numbers, "Test CPU", "2026-02-02")
    text = out.read_text()
    assert comment not in text and text.count("2026-02-02") == len(calibrate_host.PERFORMANCE_KEYS)
    assert text.count("peak_int8_macs_per_s =") == 1


def test_write_profile_is_atomic_on_a_bad_profile(calibration: calibrate_host.Calibration, tmp_path: Path) -> None:
    out = tmp_path / "host.toml"
    broken = TEMPLATE.read_text().replace('name = "arm-cortex-a78-xnnpack"', 'name = "Not A Name"')
    out.write_text(broken)
    with pytest.raises(ProfileError, match="name"):
        calibrate_host.write_profile(out, calibration.numbers, "Test CPU", "2026-01-01")
    assert out.read_text() == broken
    assert [p.name for p in tmp_path.iterdir()] == ["host.toml"]  # no temporary file left behind
    with pytest.raises(ProfileError, match=r"\[performance\]"):
        calibrate_host.update_performance("name = 'x'\n", {"per_op_overhead_s": 1e-6}, "c")


@pytest.mark.parametrize("block", [1, 4, 8, 16])
def test_channel_step_finds_a_synthetic_block(block: int) -> None:
    counts = list(range(1, 65))
    rng = np.random.default_rng(block)
    # 20 us fixed, 3 us per block of channels, 3 % multiplicative noise and one run slowed by a loaded machine.
    seconds = [(20 + 3 * math.ceil(c / block) * block) * 1e-6 * rng.uniform(0.97, 1.03) for c in counts]
    seconds[40] *= 2
    assert calibrate_host.channel_step(counts, seconds) == block


def test_channel_step_never_claims_a_block_the_sweep_cannot_show() -> None:
    # A sweep to 8 channels steps twice only for blocks up to 4: a flat line is block 1, not 64.
    assert calibrate_host.channel_step(list(range(1, 9)), [1e-5] * 8) == 1
    assert calibrate_host.channel_step(list(range(1, 9)), [1e-5 * math.ceil(c / 4) for c in range(1, 9)]) == 4


def test_old_single_channel_granularity_is_one_block_for_both_axes() -> None:
    text = TEMPLATE.read_text().replace("[performance]", "[performance]\nchannel_granularity = { int8 = 16 }", 1)
    from edgeopt.device_profiles import parse_profile

    profile = parse_profile(text, "old.toml")
    assert profile.performance.channel_block("int8") == (16, 16)
    assert profile.performance.channel_block("fp32") == (1, 1)
    with pytest.raises(ProfileError, match="input"):
        parse_profile(text.replace("{ int8 = 16 }", "{ int8 = { output = 16 } }"), "half.toml")


def _with_blocks(profile: object, blocks: dict) -> object:
    return profile.model_copy(update={"performance": profile.performance.model_validate(
        {**profile.performance.model_dump(), "channel_granularity": blocks})})


def test_cost_is_flat_inside_a_block_and_steps_at_its_edge() -> None:
    profile = _with_blocks(load_profile(str(TEMPLATE)), {"int8": {"output": 16, "input": 8}})

    def compute_s(cin: int, cout: int) -> float:
        (op,) = estimate(calibrate_host.conv_program("int8", 64, cin, cout, 3), profile).ops
        return op.time_s

    assert compute_s(32, 9) == pytest.approx(compute_s(32, 16))      # outputs: flat inside a block of 16
    assert compute_s(32, 17) > 1.5 * compute_s(32, 16)               # ... and a step at its edge
    assert compute_s(9, 32) == pytest.approx(compute_s(16, 32))      # inputs: flat inside a block of 8
    assert compute_s(8, 32) < 0.6 * compute_s(9, 32)                 # ... one block fewer below 9
    assert compute_s(5, 32) == pytest.approx(compute_s(8, 32))


def test_refinements_price_channel_blocks_and_depthwise(tmp_path: Path) -> None:
    profile = load_profile(str(TEMPLATE))
    refined = _with_blocks(profile, {"int8": 64})  # the single-number form: one block for both axes
    refined = refined.model_copy(update={"performance": refined.performance.model_copy(update={
        "op_macs_per_s": {"DEPTHWISE_CONV_2D": {"int8": 1e9}}})})
    narrow = calibrate_host.conv_program("int8", 8, 16, 16, 3)
    wide = calibrate_host.conv_program("int8", 8, 64, 64, 3)
    assert estimate(narrow, refined).ops[0].time_s == pytest.approx(estimate(wide, refined).ops[0].time_s)
    assert estimate(narrow, profile).ops[0].time_s < estimate(wide, profile).ops[0].time_s
    depthwise = calibrate_host.conv_program("int8", 8, 16, 16, 3, depthwise=True)
    macs = estimate(depthwise, refined).macs
    assert estimate(depthwise, refined).ops[0].time_s == pytest.approx(macs / 1e9 + profile.performance.per_op_overhead_s)


def test_float_twin_runs_in_litert() -> None:
    program = calibrate_host.conv_program("int8", 6, 8, 4, 3)
    twin = dequantize_program(program)
    assert {t.dtype for t in twin.tensors.values()} == {"float32"}
    runner = LiteRT(program_to_tflite(twin), kernels="default")
    (y,) = runner.run([np.ones((1, 6, 6, 8), np.float32)])
    assert y.shape == (1, 6, 6, 4) and np.all(np.isfinite(y))


def test_calibration_goes_to_the_users_folder_and_shadows_the_builtin_host(
        calibration: calibrate_host.Calibration) -> None:
    from typer.testing import CliRunner

    from edgeopt.cli import app
    from edgeopt.device_profiles import profile_file, user_profile_dir

    builtin = calibrate_host.builtin_profile_path().read_bytes()
    path = calibrate_host.write_profile(calibrate_host.user_host_profile(), calibration.numbers, "Test CPU 9000",
                                        "2026-01-01")
    assert path.parent == user_profile_dir() and calibrate_host.builtin_profile_path().read_bytes() == builtin
    assert profile_file("host") == (path, True)
    profile = load_profile("host")
    assert profile.hardware.soc == "Test CPU 9000" and profile.hardware.core == "Test CPU 9000"
    assert "Test CPU 9000" in profile.description and profile.hardware.vendor == "Test"
    listed = CliRunner().invoke(app, ["profiles", "list"])
    assert "shadows the built-in one of this name" in listed.stdout and str(path) in listed.stdout
    shown = CliRunner().invoke(app, ["profiles", "show", "host"])
    assert shown.stdout.startswith(f"# user profile file: {path}") and "# measured on Test CPU 9000" in shown.stdout


def test_calibrated_host_profile_holds_only_this_machines_performance(tmp_path: Path) -> None:
    out = tmp_path / "host.toml"
    result = calibrate_host.calibrate(out=out, sizes=calibrate_host.QUICK)
    builtin = load_profile(str(calibrate_host.builtin_profile_path()))
    profile = load_profile(str(out))
    assert profile.performance.peak_int16_macs_per_s == pytest.approx(result.numbers.peak_int16_macs_per_s, 1e-3)
    assert profile.performance.peak_int16_macs_per_s != builtin.performance.peak_int16_macs_per_s
    measured = f"# measured on {result.cpu} by edgeopt profiles calibrate host on {result.date}"
    text = out.read_text()
    performance = text.split("\n[performance]\n")[1].split("\n[")[0]
    comments = [line.strip() for line in performance.splitlines() if line.strip().startswith("#")]
    # Every performance number carries this machine's comment and nothing else (the built-in host's
    # "measured on Intel(R) Xeon(R) Processor: ... in 69.4 ms" for the int16 rate is gone).
    assert comments == [measured] * len(calibrate_host.PERFORMANCE_KEYS)
    assert "69.4 ms" not in text
    energy = text.split("\n[energy]\n")[1].split("\n[")[0]
    assert "ESTIMATE. The power this profile assumed for int16 (16x8) (int16_mac_j x peak_int16_macs_per_s" in energy
    assert "Xeon" not in energy and "measured int8 rate: 5.7 pJ" not in energy  # the template's machine is gone
    for p in ("int8", "fp32", "int16"):
        power = getattr(builtin.energy, f"{p}_mac_j") * getattr(builtin.performance, f"peak_{p}_macs_per_s")
        assert getattr(profile.energy, f"{p}_mac_j") == pytest.approx(
            power / getattr(result.numbers, f"peak_{p}_macs_per_s"), 1e-3), p
