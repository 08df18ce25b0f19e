"""The test ADB device driven by Debian's real ``adb`` client, so its protocol is checked by code nobody here wrote.

The adb server runs in the foreground (``adb -P PORT nodaemon server``) as a child of the test, with an
isolated HOME and a private port, so it can always be ended; the key it uses is one edgeopt made,
which also checks that ``ensure_adb_key`` writes what ``adb`` reads. Skipped when ``adb`` is not installed.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from tests.adb_device import Faults, TestDevice

from edgeopt.runtimes.android import connect, ensure_adb_key, run

pytestmark = pytest.mark.skipif(shutil.which("adb") is None, reason="Debian's adb client is not installed "
                                "(apt-get install adb)")

Adb = Callable[..., subprocess.CompletedProcess[str]]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def home(tmp_path: Path) -> Path:
    ensure_adb_key(tmp_path / "home" / ".android" / "adbkey")
    return tmp_path / "home"


@pytest.fixture
def adb(home: Path) -> Iterator[Adb]:
    """``adb -P PORT ARGS`` against a private server that the fixture starts and always ends."""
    port = _free_port()
    env = {**os.environ, "HOME": str(home), "ANDROID_ADB_SERVER_PORT": str(port), "ADB_MDNS": "0"}
    for name in ("ANDROID_SERIAL", "ADB_VENDOR_KEYS", "ANDROID_USER_HOME", "ADB_TRACE"):
        env.pop(name, None)

    def call(*args: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["adb", "-P", str(port), *args], env=env, capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL)

    server = subprocess.Popen(["adb", "-P", str(port), "nodaemon", "server"], env=env, stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while call("devices").returncode != 0:
            assert time.monotonic() < deadline and server.poll() is None, "the adb server did not start"
            time.sleep(0.05)
        yield call
    finally:
        try:
            call("kill-server", timeout=5)
            server.wait(5)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def _device_line(adb: Adb, serial: str, state: str) -> str:
    """``serial``'s line in ``adb devices -l`` once it shows ``state`` (the server connects in the background)."""
    deadline = time.monotonic() + 5
    while True:
        listing = adb("devices", "-l").stdout
        lines = [line for line in listing.splitlines() if line.split()[:2] == [serial, state]]
        if lines:
            return lines[0]
        assert time.monotonic() < deadline, f"{serial} never showed as {state}: {listing!r}"
        time.sleep(0.05)


def test_real_adb_connects_pushes_runs_and_pulls(adb: Adb, home: Path, tmp_path: Path) -> None:
    key = home / ".android" / "adbkey"
    payload = os.urandom(300_000)
    (tmp_path / "big.bin").write_bytes(payload)
    (tmp_path / "small.txt").write_text("small file\n")
    with TestDevice(tmp_path / "device", authorized_keys=[Path(f"{key}.pub").read_text()]) as device:
        assert adb("connect", device.serial).stdout.strip() == f"connected to {device.serial}"
        line = _device_line(adb, device.serial, "device")
        assert "product:edgeopt_test model:EdgeoptTestDevice device:edgeopt_test" in line

        big = adb("-s", device.serial, "push", str(tmp_path / "big.bin"), "/data/local/tmp/big.bin")
        small = adb("-s", device.serial, "push", str(tmp_path / "small.txt"), "/data/local/tmp/d/small.txt")
        assert big.returncode == 0 and "1 file pushed" in big.stdout and small.returncode == 0
        assert device.sandbox.host_path("/data/local/tmp/big.bin").read_bytes() == payload
        assert device.sandbox.host_path("/data/local/tmp/d/small.txt").read_text() == "small file\n"

        shell = adb("-s", device.serial, "shell", "sha256sum /data/local/tmp/big.bin; echo to-stderr >&2; exit 3")
        assert shell.stdout.split()[0] == hashlib.sha256(payload).hexdigest()
        assert "to-stderr" in shell.stdout  # the legacy shell merges stderr ...
        assert shell.returncode == 0  # ... and reports no exit status: why edgeopt appends one
        assert adb("-s", device.serial, "exec-out", "getprop ro.product.model").stdout == "EdgeoptTestDevice\n"
        assert adb("-s", device.serial, "pull", "/data/local/tmp/big.bin", str(tmp_path / "back.bin")).returncode == 0
        assert (tmp_path / "back.bin").read_bytes() == payload

        with connect(device.serial, key_path=key, timeout_s=10) as conn:  # edgeopt reads what adb wrote
            assert run(conn, "cat /data/local/tmp/d/small.txt").output == "small file\n"

    record = device.record
    assert record.host_versions[0] == 0x01000001  # checksums off on adb's connection
    assert "shell_v2" in record.host_banners[0]  # adb offers the v2 protocols; the device advertises none
    assert [s.split(":")[0] for s in record.services[:4]] == ["sync", "sync", "shell", "exec"]
    assert record.sync[:3] == ["STAT", "SEND", "QUIT"]  # v1 STAT, no STA2/LST2 without stat_v2/ls_v2
    assert record.offered_keys == 0  # the signature with edgeopt's key was accepted


def test_real_adb_sees_an_unauthorized_device(adb: Adb, tmp_path: Path) -> None:
    with TestDevice(tmp_path / "device", faults=Faults(unauthorized=True)) as device:
        adb("connect", device.serial)
        _device_line(adb, device.serial, "unauthorized")
        assert device.record.offered_keys >= 1  # adb offered its public key for the prompt
        adb("disconnect", device.serial)
