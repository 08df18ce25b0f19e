"""Verified pushes into a per-run working folder under ``/data/local/tmp/edgeopt/``.

A file is sent under a temporary name (``.NAME.<random>.part``), its checksum is computed on the
device and compared with the local one, and only then is it renamed into place with ``mv``. A dropped
connection, a corrupted transfer or a device that keeps half a file therefore never leaves a file
under the final name: anything incomplete is a ``.part`` file, removed as soon as the device can be
reached again, and the whole folder goes when the run ends (unless kept).
"""
from __future__ import annotations

import hashlib
import logging
import re
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from edgeopt.errors import DeviceError
from edgeopt.runtimes.android.connection import AdbConnection
from edgeopt.runtimes.android.shell import quote, run

log = logging.getLogger(__name__)

REMOTE_ROOT = "/data/local/tmp/edgeopt"
_SAFE_NAME = re.compile(r"^[A-Za-z0-9._-]+$")
# Tools tried in order: toybox provides sha256sum and md5sum as applets on Android 6+, older phones may
# only have the `toybox NAME` form or md5sum. A device with none is checked by reading the file back.
_CHECKSUM_SCRIPT = """f={path}
for t in sha256sum 'toybox sha256sum' md5sum 'toybox md5sum'; do
  if out=$($t "$f" 2>/dev/null); then echo "$t|$out"; exit 0; fi
done
echo 'none|'"""
_HEX = re.compile(r"^[0-9a-f]{32}(?:[0-9a-f]{32})?$")


@dataclass(frozen=True)
class PushedFile:
    """A file in place on the device, whose content was verified.

    Attributes:
        local: The file sent.
        remote: Its path on the device.
        size: Bytes.
        checksum: ``ALGO:HEX`` as verified on the device (``sha256`` or ``md5``), or ``readback:sha256:HEX``
            when the device has no checksum tool and the file was read back.
    """

    local: Path
    remote: str
    size: int
    checksum: str


def device_checksum(conn: AdbConnection, remote: str, *, timeout_s: float | None = None) -> tuple[str, str] | None:
    """``(algorithm, hex digest)`` of a device file from the first checksum tool it has, or None if it has none.

    Raises:
        DeviceError: The connection failed, or the tool printed something that is not a digest.
    """
    result = run(conn, _CHECKSUM_SCRIPT.format(path=quote(remote)), timeout_s=timeout_s)
    lines = result.output.strip().splitlines()
    tool, _, out = (lines[-1] if lines else "none|").partition("|")
    if tool == "none":
        return None
    digest = out.split()[0] if out.split() else ""
    if not _HEX.match(digest):
        raise DeviceError(f"`{tool}` on {conn.serial} printed no checksum for {remote}: {out.strip()[:80]}")
    return ("sha256" if "sha256" in tool else "md5"), digest


def push_verified(conn: AdbConnection, local: str | Path, remote: str, *, mode: int = 0o644,
                  timeout_s: float | None = None) -> PushedFile:
    """Push ``local`` to ``remote`` through a temporary name, verify it on the device, then rename it.

    Args:
        conn: The connection.
        local: The file to send.
        remote: Its final device path; the folder must exist.
        mode: Permission bits on the device (0o755 for a binary).
        timeout_s: Per-answer timeout.

    Returns:
        What was pushed and how it was verified.

    Raises:
        DeviceError: The local file is unreadable, the transfer failed, the checksum differs, or the
            rename failed. The temporary file is then removed if the device can still be reached.
    """
    local = Path(local)
    size, digests = _local_digests(local)
    folder, _, name = remote.rpartition("/")
    tmp = f"{folder}/.{name}.{secrets.token_hex(4)}.part"
    try:
        conn.push(local, tmp, mode=mode, timeout_s=timeout_s)
        checksum = _verify(conn, tmp, digests, local, timeout_s)
        run(conn, f"mv -f {quote(tmp)} {quote(remote)}", timeout_s=timeout_s, check=f"moving {name} into place")
    except BaseException:
        remove_quietly(conn, tmp)
        raise
    log.info("pushed %s to %s:%s (%d bytes, %s)", local.name, conn.serial, remote, size, checksum)
    return PushedFile(local, remote, size, checksum)


def _local_digests(path: Path) -> tuple[int, dict[str, str]]:
    """Size and sha256/md5 digests of a local file, read once in chunks (models can be large)."""
    hashes = {"sha256": hashlib.sha256(), "md5": hashlib.md5()}
    size = 0
    try:
        with path.open("rb") as f:
            while chunk := f.read(1 << 20):
                size += len(chunk)
                for h in hashes.values():
                    h.update(chunk)
    except OSError as err:
        raise DeviceError(f"cannot read {path} to push it: {err.strerror or err}") from err
    return size, {name: h.hexdigest() for name, h in hashes.items()}


def _verify(conn: AdbConnection, remote: str, digests: dict[str, str], local: Path, timeout_s: float | None) -> str:
    found = device_checksum(conn, remote, timeout_s=timeout_s)
    if found is None:
        algorithm, digest = "readback:sha256", hashlib.sha256(conn.pull(remote, timeout_s=timeout_s)).hexdigest()
        expected = digests["sha256"]
    else:
        algorithm, digest = found
        expected = digests[algorithm]
    if digest != expected:
        raise DeviceError(f"{local.name} arrived corrupted on {conn.serial} ({algorithm} {digest[:12]}… instead of "
                          f"{expected[:12]}…); retry the push")
    return f"{algorithm}:{digest}"


def remove_quietly(conn: AdbConnection, *paths: str) -> None:
    """Best-effort ``rm -rf`` of ``paths``: a failure is logged, never raised (used while already failing)."""
    try:
        run(conn, "rm -rf " + " ".join(quote(p) for p in paths), timeout_s=conn.timeout_s)
    except DeviceError as err:
        log.warning("could not remove %s from %s: %s", ", ".join(paths), conn.serial, err)


class WorkDir:
    """A run's folder ``/data/local/tmp/edgeopt/<run>/`` that is removed on exit unless ``keep``.

    Use as a context manager; ``push`` puts verified files in it.
    """

    def __init__(self, conn: AdbConnection, run_name: str | None = None, *, keep: bool = False,
                 root: str = REMOTE_ROOT, timeout_s: float | None = None) -> None:
        """Name the folder (it is created on entering).

        Args:
            conn: The connection.
            run_name: Folder name (letters, digits, ``._-``); default: a timestamp and a random suffix.
            keep: Leave the folder on the device at exit.
            root: Parent folder on the device.
            timeout_s: Per-answer timeout for pushes and commands.
        """
        name = run_name or f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
        if not _SAFE_NAME.match(name):
            raise DeviceError(f"run name {name!r} must use only letters, digits, '.', '_' and '-'")
        self.conn = conn
        self.path = f"{root}/{name}"
        self.keep = keep
        self.timeout_s = timeout_s

    def __enter__(self) -> WorkDir:
        run(self.conn, f"mkdir -p {quote(self.path)}", timeout_s=self.timeout_s,
            check=f"creating {self.path}")
        return self

    def __exit__(self, *exc: object) -> None:
        if self.keep:
            log.info("kept %s on %s", self.path, self.conn.serial)
        else:
            remove_quietly(self.conn, self.path)

    def push(self, local: str | Path, name: str | None = None, *, mode: int = 0o644) -> PushedFile:
        """Push ``local`` into the folder as ``name`` (default: its own name), verified; see ``push_verified``."""
        target = name or Path(local).name
        if not _SAFE_NAME.match(target):
            raise DeviceError(f"device file name {target!r} must use only letters, digits, '.', '_' and '-'")
        return push_verified(self.conn, local, f"{self.path}/{target}", mode=mode, timeout_s=self.timeout_s)
