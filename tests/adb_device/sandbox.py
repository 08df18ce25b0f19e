"""The test device's file system: a host folder standing in for the few device paths edgeopt touches.

``/data/local/tmp`` and ``/sys/class/power_supply`` live under ``root``; every other device path is
out of reach. Shell commands run in a real ``/bin/sh`` after the device paths in their text are
rewritten to host paths (and back in their output). A command that names any other absolute path
(bar ``/proc/uptime`` and ``/dev/null``) is refused instead of run, so that no test touches the host's
files by accident; this is a guard for the tests' own commands, not a security boundary.
"""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

MAPPED = ("/data/local/tmp", "/sys/class/power_supply")
HOST_PATHS = ("/proc/uptime", "/dev/null")
_ABSOLUTE = re.compile(r"(?<![\w.$}])/[\w.+@-][\w./+@-]*")
STANDIN = Path(__file__).with_name("benchmark_model.py")


@dataclass(frozen=True)
class Battery:
    """The fake fuel gauge. Values are written as the kernel would, in ``units`` (µA/µV or mA/mV).

    ``current`` is the idle draw; a running benchmark stand-in draws ``load_factor`` times as much.
    Negative current means discharging, as on Pixel phones; some vendors use the opposite sign.
    """

    current: int = -320_000
    voltage: int = 3_870_000
    status: str = "Discharging"
    usb_online: bool = False
    load_factor: float = 2.5


class Sandbox:
    """A device file system under ``root``, with the fake battery and optional benchmark binary."""

    def __init__(self, root: Path, battery: Battery, props: dict[str, str], benchmark: str,
                 no_checksum_tools: bool) -> None:
        self.root = root
        self.battery = battery
        self.benchmark = benchmark
        for path in MAPPED:
            self.host_path(path).mkdir(parents=True, exist_ok=True)
        self._write_supplies()
        bin_dir = root / "system" / "bin"
        bin_dir.mkdir(parents=True, exist_ok=True)
        lines = "\n".join(f"{key}) echo {shlex.quote(value)} ;;" for key, value in props.items())
        _write_script(bin_dir / "getprop", f'case "$1" in\n{lines}\n*) echo ;;\nesac\n')
        if no_checksum_tools:  # shadow the host's tools the way a missing applet fails
            for tool in ("sha256sum", "md5sum", "toybox"):
                _write_script(bin_dir / tool, f'echo "{tool}: not found" >&2; exit 127\n')
        if benchmark != "missing":
            _write_script(self.host_path("/data/local/tmp/benchmark_model"), standin_script())
        self.path_env = f"{bin_dir}:{os.environ.get('PATH', '/usr/bin:/bin')}"

    def _write_supplies(self) -> None:
        battery = self.host_path("/sys/class/power_supply/battery")
        usb = self.host_path("/sys/class/power_supply/usb")
        for folder, files in (
            (battery, {"type": "Battery", "status": self.battery.status, "current_now": self.battery.current,
                       "voltage_now": self.battery.voltage}),
            (usb, {"type": "USB", "online": int(self.battery.usb_online)}),
        ):
            folder.mkdir(parents=True, exist_ok=True)
            for name, value in files.items():
                (folder / name).write_text(f"{value}\n")

    def host_path(self, device_path: str) -> Path:
        """The host path behind ``device_path``; PermissionError for paths outside the mapped folders."""
        clean = os.path.normpath("/" + device_path.lstrip("/"))
        if not any(clean == root or clean.startswith(root + "/") for root in MAPPED):
            raise PermissionError(f"{device_path}: Permission denied")
        return self.root / clean.lstrip("/")

    def to_host(self, text: str) -> str:
        """Rewrite device paths in a command line to host paths."""
        for path in MAPPED:
            text = text.replace(path, str(self.root) + path)
        return text

    def to_device(self, data: bytes) -> bytes:
        """Rewrite host paths in command output back to device paths."""
        return data.replace(str(self.root).encode(), b"")

    def spawn(self, command: str, fault: str) -> subprocess.Popen[bytes]:
        """Start ``command`` in ``/bin/sh`` as adbd's raw (non-pty) shell would: stderr merged into stdout.

        A command naming an unmapped absolute path runs as a shell that reports it and exits 1.
        """
        outside = [p for p in _ABSOLUTE.findall(self.to_host(command))
                   if not p.startswith(str(self.root)) and p not in HOST_PATHS]
        if outside:
            command = f"echo {shlex.quote(outside[0] + ': not available on the test device')} >&2; exit 1"
        battery = self.host_path("/sys/class/power_supply/battery")
        env = {
            "PATH": self.path_env,
            "HOME": str(self.host_path("/data/local/tmp")),
            "TMPDIR": str(self.host_path("/data/local/tmp")),
            "EDGEOPT_TEST_BENCHMARK_FAULT": fault,
            "EDGEOPT_TEST_BATTERY": str(battery),
            "EDGEOPT_TEST_LOAD_CURRENT": str(round(self.battery.current * self.battery.load_factor)),
        }
        return subprocess.Popen(
            ["/bin/sh", "-c", self.to_host(command)],
            cwd=self.host_path("/data/local/tmp"),
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # one process group, so closing the stream can end the whole job
        )


def standin_script() -> str:
    """A ``benchmark_model`` executable for the test device: runs the Python stand-in."""
    return f'#!/bin/sh\nexec {shlex.quote(sys.executable)} {shlex.quote(str(STANDIN))} "$@"\n'


def _write_script(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(0o755)
