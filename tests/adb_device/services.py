"""The device's services: ``shell:``/``exec:`` (raw, stderr merged, no exit status) and ``sync:``.

The sync protocol (AOSP ``adb/SYNC.TXT``) is a byte stream inside the ADB stream: 8-byte requests
``id, length`` then ``length`` bytes. A client may put several requests in one WRTE or split one over
several (Debian's adb sends SEND, DATA and DONE of a small file in a single write), so requests are
parsed from the stream's bytes, never from packet boundaries.
"""
from __future__ import annotations

import contextlib
import os
import signal
import stat
import struct
import subprocess
from collections.abc import Callable
from typing import TYPE_CHECKING

from tests.adb_device.sandbox import Sandbox
from tests.adb_device.streams import Stream, StreamClosedError

if TYPE_CHECKING:  # the server imports this module
    from tests.adb_device.server import Faults, Record

SYNC_DATA_MAX = 64 * 1024
_REQUEST = struct.Struct("<4sI")


def run_shell(stream: Stream, sandbox: Sandbox, command: str, fault: str,
              track: Callable[[subprocess.Popen[bytes]], None]) -> None:
    """Run ``command``; stream its output; close the stream when it exits.

    The command gets no stdin (the tests never send any). If the host closes the stream or the
    connection while the command runs, its whole process group is killed, as adbd does.
    """
    if not command.strip():
        stream.write(b"interactive shells are not supported by the test device\n")
        stream.close(notify_host=True)
        return
    proc = sandbox.spawn(command, fault)
    track(proc)
    proc.stdin.close()
    finished = False
    stream.on_close = lambda: None if finished else _kill_group(proc)
    try:
        while chunk := os.read(proc.stdout.fileno(), 65536):
            stream.write(sandbox.to_device(chunk))
        proc.wait()
        finished = True
        stream.close(notify_host=True)
    except StreamClosedError:
        _kill_group(proc)
    finally:
        proc.stdout.close()


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


class DroppedError(Exception):
    """The fault injection asked to drop the connection."""


def run_sync(stream: Stream, sandbox: Sandbox, faults: Faults, drop: Callable[[], None], record: Record) -> None:
    """Serve sync requests until QUIT or the stream closes, noting each in ``record``."""
    try:
        while True:
            ident, length = _REQUEST.unpack(stream.read_exact(_REQUEST.size))
            record.sync.append(ident.decode(errors="replace"))
            if ident == b"QUIT":
                break
            path = stream.read_exact(length).decode(errors="replace")
            if ident == b"STAT":
                stream.write(_stat(sandbox, path))
            elif ident == b"LIST":
                stream.write(_list(sandbox, path))
            elif ident == b"RECV":
                _send_file(stream, sandbox, path)
            elif ident == b"SEND":
                record.pushed.append(path.rpartition(",")[0])
                if not _receive_file(stream, sandbox, path, faults):
                    break  # adbd ends the sync session after a failed SEND
            else:
                stream.write(_fail(f"unsupported sync request {ident!r}"))
                break
        stream.close(notify_host=True)
    except DroppedError:
        drop()
    except StreamClosedError:
        pass


def _fail(message: str) -> bytes:
    data = message.encode()
    return _REQUEST.pack(b"FAIL", len(data)) + data


def _lstat(sandbox: Sandbox, path: str) -> os.stat_result | None:
    try:
        return os.lstat(sandbox.host_path(path))
    except (OSError, PermissionError):
        return None


def _stat(sandbox: Sandbox, path: str) -> bytes:
    st = _lstat(sandbox, path)
    if st is None:  # v1 STAT answers zeros for a missing file
        return struct.pack("<4s3I", b"STAT", 0, 0, 0)
    return struct.pack("<4s3I", b"STAT", st.st_mode, st.st_size & 0xFFFFFFFF, int(st.st_mtime))


def _list(sandbox: Sandbox, path: str) -> bytes:
    out = bytearray()
    try:
        names = sorted(os.listdir(sandbox.host_path(path)))
    except OSError:
        names = []
    for name in [".", "..", *names]:
        st = _lstat(sandbox, f"{path}/{name}")
        if st is not None:
            encoded = name.encode()
            out += struct.pack("<4s4I", b"DENT", st.st_mode, st.st_size & 0xFFFFFFFF, int(st.st_mtime),
                               len(encoded)) + encoded
    return bytes(out + struct.pack("<4s4I", b"DONE", 0, 0, 0, 0))


def _send_file(stream: Stream, sandbox: Sandbox, path: str) -> None:
    try:
        data = sandbox.host_path(path).read_bytes()
    except OSError as err:
        stream.write(_fail(f"{path}: {err.strerror or err}"))
        return
    for start in range(0, len(data), SYNC_DATA_MAX):
        chunk = data[start : start + SYNC_DATA_MAX]
        stream.write(_REQUEST.pack(b"DATA", len(chunk)) + chunk)
    stream.write(_REQUEST.pack(b"DONE", 0))


def _receive_file(stream: Stream, sandbox: Sandbox, spec: str, faults: Faults) -> bool:
    """SEND ``path,mode``, then DATA* and DONE(mtime); answer OKAY, or FAIL and return False.

    The file is written in place, as adbd does.

    On a dropped connection the partial file stays behind, as it would on a phone that lost power:
    the client must not rely on the device to clean up. When the file cannot be created, the DATA
    that follows is read and discarded before FAIL is sent, since clients send it without waiting.
    """
    path, _, mode_text = spec.rpartition(",")
    mode = stat.S_IMODE(int(mode_text or "0"))
    try:
        target = sandbox.host_path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        handle = open(target, "wb")  # noqa: SIM115 - closed by the `with` below, once opening is known to work
    except (OSError, PermissionError) as err:
        _discard_until_done(stream)
        stream.write(_fail(f"couldn't create file: {err.strerror or err}"))
        return False
    received = 0
    with handle:
        while True:
            ident, length = _REQUEST.unpack(stream.read_exact(_REQUEST.size))
            if ident == b"DONE":
                break
            if ident != b"DATA":
                stream.write(_fail(f"expected DATA or DONE, got {ident!r}"))
                return False
            data = stream.read_exact(length)
            if faults.corrupt_push and received == 0 and data:
                data = bytes([data[0] ^ 0xFF]) + data[1:]
            handle.write(data)
            received += length
            if faults.drop_push_after is not None and received >= faults.drop_push_after:
                handle.flush()
                raise DroppedError
    os.chmod(target, mode or 0o644)
    os.utime(target, (length, length))
    stream.write(_REQUEST.pack(b"OKAY", 0))
    return True


def _discard_until_done(stream: Stream) -> None:
    while True:
        ident, length = _REQUEST.unpack(stream.read_exact(_REQUEST.size))
        if ident == b"DONE":
            return
        stream.read_exact(length)
