"""What every test shares: no ambient adb settings or keys.

Tests mirror ``edgeopt/``'s folders; what several of them build (programs, ONNX models, literal ports of
the C++ arithmetic, CLI assertions, paths) lives in ``tests/builders/``, imported as
``tests.builders.<module>``.
"""
from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _no_ambient_adb(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """The user's adb settings never reach a test: ANDROID_SERIAL and ADB_VENDOR_KEYS are unset, and
    ANDROID_USER_HOME (where edgeopt keeps the user's adb key) is a fresh folder."""
    monkeypatch.delenv("ANDROID_SERIAL", raising=False)
    monkeypatch.delenv("ADB_VENDOR_KEYS", raising=False)
    monkeypatch.setenv("ANDROID_USER_HOME", str(tmp_path_factory.mktemp("android-home")))


@pytest.fixture(autouse=True)
def _no_user_profiles(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """The user's own device profiles (``profiles calibrate host`` writes one) never shadow a built-in one in a
    test: the config folder (platformdirs: $XDG_CONFIG_HOME on Linux) is a fresh one."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path_factory.mktemp("config-home")))
