"""Device profiles: every shipped one loads; a broken one gives one ProfileError line naming file and key."""
from __future__ import annotations

from importlib import resources
from pathlib import Path

import pytest
from pydantic import ValidationError

from edgeopt.device_profiles import DeviceProfile, list_profiles, load_profile
from edgeopt.errors import ProfileError

A78 = "arm-cortex-a78-xnnpack"


def _shipped_text(name: str = A78) -> str:
    return resources.files("edgeopt.device_profiles").joinpath(f"{name}.toml").read_text(encoding="utf-8")


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "broken.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_a78_profile_is_listed() -> None:
    assert A78 in list_profiles()


@pytest.mark.parametrize("name", list_profiles())
def test_every_shipped_profile_loads(name: str) -> None:
    profile = load_profile(name)
    assert isinstance(profile, DeviceProfile)
    assert profile.name == name  # the name given to --device is the one the profile reports


def test_every_number_in_shipped_profiles_has_a_source_comment() -> None:
    for name in list_profiles():
        lines = _shipped_text(name).splitlines()
        for i, line in enumerate(lines):
            value = line.split("=", 1)[-1].strip()
            if "=" in line and not line.startswith("#") and value[:1].isdigit():
                assert lines[i - 1].startswith("#") or "#" in line, f"{name}.toml:{i + 1} has no source"


def test_a78_numbers() -> None:
    profile = load_profile(A78)
    assert profile.runtime.name == "litert"
    assert profile.runtime.delegate == "xnnpack"
    assert profile.runtime.requantization_rounding == "single"
    assert profile.runtime.threads == 1
    # 2 SDOT/cycle x 16 MACs and 2 FMLA/cycle x 4 MACs at 2.42 GHz: int8 peak is 4x fp32 peak.
    assert profile.performance.peak_int8_macs_per_s == pytest.approx(32 * 2.42e9)
    assert profile.performance.peak_fp32_macs_per_s == pytest.approx(8 * 2.42e9)


def test_profile_loads_from_a_path(tmp_path: Path) -> None:
    path = tmp_path / "mine.toml"
    path.write_text(_shipped_text().replace(f'name = "{A78}"', 'name = "my-phone"'), encoding="utf-8")
    assert load_profile(str(path)).name == "my-phone"


def test_profile_is_frozen() -> None:
    profile = load_profile(A78)
    with pytest.raises(ValidationError):
        profile.performance.peak_int8_macs_per_s = 1.0  # type: ignore[misc]


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("peak_int8_macs_per_s = 77.44e9", "peak_int8_macs_per_s = -1", "peak_int8_macs_per_s = -1"),
        ("peak_int8_macs_per_s = 77.44e9", 'peak_int8_macs_per_s = "fast"', "peak_int8_macs_per_s = 'fast'"),
        ("static_power_w = 0.3", "static_power_w = nan", "energy.static_power_w = nan"),
        ('requantization_rounding = "single"', 'requantization_rounding = "up"', "rounding = 'up'"),
        ("dram_byte_j = 80.0e-12", "", "missing key energy.dram_byte_j"),
        ("threads = 1", "threads = 1\nthreadz = 2", "unknown key runtime.threadz = 2"),
        ("threads = 1", "threads = = 1", "invalid TOML"),
    ],
    ids=["negative", "string", "nan", "rounding", "missing", "unknown", "bad-toml"],
)
def test_broken_profile_names_file_and_key(tmp_path: Path, old: str, new: str, expected: str) -> None:
    text = _shipped_text()
    assert old in text
    path = _write(tmp_path, text.replace(old, new, 1))
    with pytest.raises(ProfileError) as info:
        load_profile(str(path))
    message = str(info.value)
    assert str(path) in message
    assert expected in message
    assert "\n" not in message


def test_bad_toml_message_shows_the_line(tmp_path: Path) -> None:
    path = _write(tmp_path, _shipped_text().replace("threads = 1", "threads = = 1"))
    with pytest.raises(ProfileError, match=r"line \d+.*threads = = 1"):
        load_profile(str(path))


def test_unknown_name_lists_known_profiles() -> None:
    with pytest.raises(ProfileError) as info:
        load_profile("pixel-9000")
    assert "pixel-9000" in str(info.value)
    for name in list_profiles():
        assert name in str(info.value)


def test_missing_file_is_a_profile_error(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match="does not exist"):
        load_profile(str(tmp_path / "absent.toml"))
