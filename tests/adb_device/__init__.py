"""A test ADB device on loopback: the real wire protocol, a sandboxed shell, a benchmark stand-in."""
from __future__ import annotations

from tests.adb_device.sandbox import Battery, standin_script
from tests.adb_device.server import Faults, TestDevice

__all__ = ["Battery", "Faults", "TestDevice", "standin_script"]
