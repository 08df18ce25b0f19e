"""The shipped profile library: every profile loads, validates and sources its numbers; the new sections
(quantization rules, compute units, placement, crossing) reject bad values in one ProfileError line
naming the file, the key and the value; ``edgeopt profiles validate`` reports either."""
from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgeopt.cli import app
from edgeopt.device_profiles import list_profiles, load_profile
from edgeopt.errors import ProfileError

SHIPPED = ("arm-cortex-a78-xnnpack", "arm-ethos-u55-vela", "google-coral-edgetpu", "host", "snapdragon-845-hexagon-dsp",
           "snapdragon-8-gen-2-htp")
# A float literal (1.0, 2e9, 3.2e-12): every such value in a shipped profile is a measured or sourced number.
FLOAT = re.compile(r"\d\.\d|\d[eE][-+]?\d")


def _text(name: str) -> str:
    return resources.files("edgeopt.device_profiles").joinpath(f"{name}.toml").read_text(encoding="utf-8")


def test_the_five_profiles_ship() -> None:
    assert set(SHIPPED) <= set(list_profiles())


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_profile_loads_and_its_units_are_priced(name: str) -> None:
    profile = load_profile(name)
    units = profile.units()
    assert list(units)[-1] == "cpu" and units["cpu"].rule("ANY_OP_AT_ALL") is not None  # the last resort runs all
    for unit in units.values():
        assert unit.performance is not None and unit.energy is not None
        assert set(unit.performance.peak_macs_per_s) == set(unit.energy.mac_j)
    if len(units) > 1:
        assert profile.crossing is not None


@pytest.mark.parametrize("name", SHIPPED)
def test_every_number_has_a_source_or_estimate_comment(name: str) -> None:
    lines = _text(name).splitlines()
    for i, line in enumerate(lines):
        value = line.split("=", 1)[-1].strip()
        if line.startswith("#") or "=" not in line or value.startswith('"') or not FLOAT.search(value):
            continue
        above = lines[i - 1].strip()
        assert above.startswith("#") or "#" in line, f"{name}.toml:{i + 1} has no source comment: {line}"


def test_host_numbers_are_measured_here() -> None:
    text = _text("host")
    for key in ("peak_int8_macs_per_s", "peak_fp32_macs_per_s", "memory_bandwidth_bytes_per_s", "per_op_overhead_s"):
        above = text[: text.index(f"\n{key} =")].splitlines()
        comments = []
        while above and above[-1].startswith("#"):
            comments.append(above.pop())
        assert comments and comments[-1].startswith("# measured on "), key


def test_quantization_rules_follow_the_documents() -> None:
    htp, tpu, vela, a78 = (load_profile(n) for n in ("snapdragon-8-gen-2-htp", "google-coral-edgetpu",
                                                    "arm-ethos-u55-vela", "arm-cortex-a78-xnnpack"))
    assert [(k.activation, k.param) for k in htp.quantization.kernels("Conv")] == [(8, 8), (16, 8)]  # w8a8, w8a16
    # w8a8 by default, 16x8 on LiteRT's builtin kernels beside XNNPACK (priced at peak_int16_macs_per_s)
    assert [(k.activation, k.param) for k in a78.quantization.kernels("Conv")] == [(8, 8), (16, 8)]
    assert not tpu.quantization.per_channel("Conv")
    assert vela.quantization.per_channel("Conv") and not vela.quantization.per_channel("Gemm")
    assert [(k.activation, k.param) for k in vela.quantization.kernels("HardSwish")] == [(8, 8)]
    assert ["Conv", "Relu"] in [g.op_list for g in a78.quantization.supergroups]


def _broken(tmp_path: Path, name: str, old: str, new: str) -> Path:
    text = _text(name)
    assert old in text, old
    path = tmp_path / f"broken-{name}.toml"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    return path


BROKEN = [
    ("google-coral-edgetpu", "DEPTHWISE_CONV_2D = { dilation = [1] }", "DEPTHWISE_CONV2D = { dilation = [1] }",
     "compute_units.npu.ops.DEPTHWISE_CONV2D = 'DEPTHWISE_CONV2D': Value error, not a TFLite builtin operator"),
    ("google-coral-edgetpu", "DEPTHWISE_CONV_2D = { dilation = [1] }", "DEPTHWISE_CONV_2D = { dilation = [0] }",
     "compute_units.npu.ops.DEPTHWISE_CONV_2D.dilation.0 = 0"),
    ("google-coral-edgetpu", "SOFTMAX = { max_inner_dims = 1, max_elements = 16000 }",
     "SOFTMAX = { max_inner_dim = 1 }", "unknown key compute_units.npu.ops.SOFTMAX.max_inner_dim = 1 (allowed here: dtypes"),
    ("arm-ethos-u55-vela", 'dtypes = ["int8", "int16"]', 'dtypes = ["int8", "int4"]',
     "compute_units.npu.defaults.dtypes.1 = 'int4'"),
    ("arm-ethos-u55-vela", "max_stride = [3, 3]", "max_stride = [3]", "max_stride = [3]"),
    ("arm-ethos-u55-vela", 'kind = "npu"', 'kind = "tpu"', "compute_units.npu.kind = 'tpu'"),
    ("arm-ethos-u55-vela", 'fallback_order = ["npu", "cpu"]', 'fallback_order = ["npu"]',
     "placement.fallback_order ['npu'] must name each of the compute_units ['cpu', 'npu'] once"),
    ("snapdragon-8-gen-2-htp", "peak_macs_per_s = { int8 = 204.8e9, int16 = 102.4e9, fp32 = 51.2e9 }",
     "peak_macs_per_s = { int8 = 204.8e9, int16 = -1.0, fp32 = 51.2e9 }",
     "compute_units.cpu.performance.peak_macs_per_s.int16 = -1.0"),
    ("snapdragon-8-gen-2-htp", "\n[crossing]\n", "\n[crossing_cost]\n", "unknown key crossing_cost"),
    ("snapdragon-8-gen-2-htp", "supported_kernels = [{ activation = 8, param = 8 }, { activation = 16, param = 8 }]",
     "supported_kernels = [{ activation = 12, param = 8 }]",
     "quantization.defaults.supported_kernels.0.activation = 12"),
    ("arm-cortex-a78-xnnpack", "per_channel_quantization = true", 'per_channel_quantization = "yes"',
     "quantization.defaults.per_channel_quantization = 'yes'"),
    ("host", 'name = "litert"', 'name = "tensorflow"', "runtime.name = 'tensorflow'"),
    ("host", "int16_mac_j = 5.2e-9", "", "performance.peak_int16_macs_per_s and energy.int16_mac_j go together"),
]


@pytest.mark.parametrize(("name", "old", "new", "expected"), BROKEN,
                         ids=[f"{b[0]}:{b[3][:30]}" for b in BROKEN])
def test_broken_profile_is_one_line_naming_file_key_and_value(tmp_path: Path, name: str, old: str, new: str,
                                                              expected: str) -> None:
    path = _broken(tmp_path, name, old, new)
    with pytest.raises(ProfileError) as info:
        load_profile(str(path))
    message = str(info.value)
    assert message.startswith(f"{path}: ")
    assert expected in message
    assert "\n" not in message


def test_unit_pricing_must_cover_its_dtypes(tmp_path: Path) -> None:
    text = _text("arm-ethos-u55-vela").replace('HARD_SWISH = { dtypes = ["int8"] }', 'HARD_SWISH = { dtypes = ["fp16"] }')
    npu_priced = text.replace("[compute_units.npu]\n", "[compute_units.npu]\nperformance = { peak_macs_per_s = "
                              "{ int8 = 1.0e9 }, memory_bandwidth_bytes_per_s = 1.0e9, per_op_overhead_s = 0.0 }\n")
    path = tmp_path / "unpriced.toml"
    path.write_text(npu_priced, encoding="utf-8")
    with pytest.raises(ProfileError, match=r"compute_units\.npu = .*Value error, performance\.peak_macs_per_s has "
                                           r"no entry for fp16, int16, which the ops run at"):
        load_profile(str(path))


def test_cli_validate(tmp_path: Path) -> None:
    runner = CliRunner()
    good = runner.invoke(app, ["profiles", "validate", "google-coral-edgetpu"])
    assert good.exit_code == 0, good.output
    assert "valid profile 'google-coral-edgetpu'" in good.output and "npu (Edge TPU), cpu (Cortex-A53)" in good.output
    path = _broken(tmp_path, "google-coral-edgetpu", "DEPTHWISE_CONV_2D = { dilation = [1] }",
                   "DEPTHWISE_CONV_2D = { dilation = 1 }")
    bad = runner.invoke(app, ["profiles", "validate", str(path)])
    assert bad.exit_code == 6
    assert "compute_units.npu.ops.DEPTHWISE_CONV_2D.dilation = 1" in " ".join(bad.output.split())
