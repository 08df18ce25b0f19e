"""Shell commands with an exit status, over the legacy ``shell:`` service.

The legacy service (the only one adb-shell speaks) merges stderr into stdout and reports no exit
status, so each command is followed by a line that prints one: a random marker and ``$?``. The
marker is random per call so that no output of the command can be mistaken for it.
"""
from __future__ import annotations

import secrets
import shlex
import signal
from dataclasses import dataclass

from edgeopt.errors import DeviceError
from edgeopt.runtimes.android.connection import AdbConnection, brief


@dataclass(frozen=True)
class ShellResult:
    """A finished command: its merged stdout/stderr and exit status (128 + N: killed by signal N)."""

    command: str
    output: str
    exit_status: int

    @property
    def ok(self) -> bool:
        return self.exit_status == 0

    @property
    def signal(self) -> str | None:
        """The name of the signal that killed the command (``"SIGSEGV"``), or None."""
        if self.exit_status <= 128:
            return None
        try:
            return signal.Signals(self.exit_status - 128).name
        except ValueError:
            return None

    def last_line(self) -> str:
        """The last non-empty output line, for error messages."""
        lines = [line.strip() for line in self.output.splitlines() if line.strip()]
        return lines[-1] if lines else "no output"


def quote(word: str) -> str:
    """Quote ``word`` for the device's shell (POSIX single quotes, which mksh and toybox sh accept)."""
    return shlex.quote(word)


def run(conn: AdbConnection, command: str, *, timeout_s: float | None = None, check: str | None = None) -> ShellResult:
    """Run ``command`` on the device and learn its exit status.

    Args:
        conn: The connection.
        command: A shell command line (may span lines; may end in ``&``).
        timeout_s: Limit for the command (default: the connection's timeout).
        check: If given, a non-zero exit raises ``DeviceError`` starting with this description.

    Returns:
        The output (without the status line) and the exit status.

    Raises:
        DeviceError: The connection failed or timed out, or ``check`` was given and the command failed.
    """
    marker = f"__edgeopt_rc_{secrets.token_hex(4)}="
    # A subshell, so that `exit N` in the command still reaches the status line; newlines, not ';', so
    # that a command ending in '&' stays valid.
    text = conn.shell(f"(\n{command}\n)\nprintf '\\n{marker}%s\\n' \"$?\"", timeout_s=timeout_s,
                      what=f"running `{brief(command)}`")
    text = text.replace("\r\n", "\n")  # adbd before Android 7 runs commands in a pty, which writes \r\n
    head, found, tail = text.rpartition("\n" + marker)
    status = tail.strip()
    if not found or not status.isdigit():
        raise DeviceError(f"the shell on {conn.serial} ended without an exit status for `{brief(command)}` "
                          "(the connection may have closed early); retry")
    result = ShellResult(command, head, int(status))
    if check is not None and not result.ok:
        raise DeviceError(f"{check} failed on {conn.serial} (exit {result.exit_status}): {result.last_line()}")
    return result
