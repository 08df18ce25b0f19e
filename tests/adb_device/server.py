"""A small ADB device (the adbd side) on 127.0.0.1, speaking the real wire protocol to real clients.

The handshake follows adbd: the host sends CNXN; the device answers AUTH(TOKEN) with 20 random bytes;
the host signs it with each of its keys (AUTH SIGNATURE) and, if none is authorized, offers its public
key (AUTH RSAPUBLICKEY), which a phone shows as the "Allow USB debugging?" prompt; the device answers
CNXN once a signature verifies (or the prompt is accepted). Streams then open with OPEN("service:"),
are acknowledged with OKAY, carry WRTE data (each acknowledged by OKAY) and end with CLSE.

Threads: one accepting, one reading per connection, one per open stream. Everything blocks on sockets
that ``close()`` shuts down, and every wait is sliced, so ``close()`` always returns.
"""
from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import rsa

from tests.adb_device import protocol
from tests.adb_device.protocol import A_VERSION, A_VERSION_SKIP_CHECKSUM, MAX_PAYLOAD, Packet
from tests.adb_device.sandbox import Battery, Sandbox
from tests.adb_device.services import run_shell, run_sync
from tests.adb_device.streams import Stream

JOIN_TIMEOUT_S = 5.0
PROPERTIES = {
    "ro.product.name": "edgeopt_test",
    "ro.product.model": "EdgeoptTestDevice",
    "ro.product.device": "edgeopt_test",
}
GETPROPS = {**PROPERTIES, "ro.product.cpu.abi": "arm64-v8a", "ro.build.version.sdk": "34"}


@dataclass(frozen=True)
class Faults:
    """Fault injection.

    Attributes:
        unauthorized: Reject every key and never accept the prompt (the user never taps Allow).
        offline: Accept TCP connections but never answer CNXN (adb shows the device as offline).
        stall: Complete the handshake, then never answer anything again.
        drop_push_after: Drop the connection once a push has delivered this many file bytes.
        stay_down_after_drop: After that drop, behave as offline (no later handshake completes).
        corrupt_push: Flip one byte of every pushed file (a transfer the checksum must catch).
        no_checksum_tools: No ``sha256sum``, ``md5sum`` or ``toybox`` (an old or stripped-down device).
        benchmark: ``"ok"``; ``"missing"`` (no ``/data/local/tmp/benchmark_model``); ``"crash"``
            (the stand-in dies of SIGSEGV mid-run); ``"quiet"`` (it prints no delegate line).
    """

    unauthorized: bool = False
    offline: bool = False
    stall: bool = False
    drop_push_after: int | None = None
    stay_down_after_drop: bool = False
    corrupt_push: bool = False
    no_checksum_tools: bool = False
    benchmark: str = "ok"


@dataclass
class Record:
    """What clients did, for tests to inspect."""

    host_banners: list[str] = field(default_factory=list)
    host_versions: list[int] = field(default_factory=list)
    services: list[str] = field(default_factory=list)
    sync: list[str] = field(default_factory=list)
    pushed: list[str] = field(default_factory=list)
    offered_keys: int = 0


class TestDevice:
    """The device. Use as a context manager; ``serial`` is ``127.0.0.1:PORT``."""

    __test__ = False  # not a pytest test class

    def __init__(self, root: Path, *, authorized_keys: Sequence[str] = (), accept_new_keys: bool = False,
                 faults: Faults | None = None, battery: Battery | None = None,
                 features: tuple[str, ...] = ()) -> None:
        """Create the sandbox under ``root``.

        Args:
            root: Empty folder for the device's file system.
            authorized_keys: Public keys (``adbkey.pub`` text) the device trusts.
            accept_new_keys: Accept a newly offered key, as if the user tapped Allow.
            faults: Fault injection (default: none).
            battery: The fake fuel gauge (default: ``Battery()``).
            features: Features advertised in the CNXN banner; advertise only implemented ones.
        """
        faults = faults or Faults()
        self.sandbox = Sandbox(root, battery or Battery(), GETPROPS, faults.benchmark, faults.no_checksum_tools)
        self.faults = faults
        self.accept_new_keys = accept_new_keys
        self.features = features
        self.record = Record()
        self._keys: list[rsa.RSAPublicKey] = [protocol.decode_public_key(k.encode()) for k in authorized_keys]
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._connections: list[_Connection] = []
        self._procs: list[subprocess.Popen[bytes]] = []
        self.dropped = False
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.05)
        self.port = self._listener.getsockname()[1]
        self.serial = f"127.0.0.1:{self.port}"
        self._acceptor = threading.Thread(target=self._accept_loop, name="adb-device-accept", daemon=True)

    def __enter__(self) -> TestDevice:
        self._acceptor.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def authorize(self, public_key: str) -> None:
        """Trust ``public_key`` (the text of an ``adbkey.pub``)."""
        with self._lock:
            self._keys.append(protocol.decode_public_key(public_key.encode()))

    def trusts(self, token: bytes, signature: bytes) -> bool:
        with self._lock:
            return any(protocol.signature_matches(key, token, signature) for key in self._keys)

    def track(self, proc: subprocess.Popen[bytes]) -> None:
        with self._lock:
            self._procs.append(proc)

    def running_commands(self) -> int:
        """How many shell commands started by clients are still running (their leaders)."""
        with self._lock:
            return sum(proc.poll() is None for proc in self._procs)

    def close(self) -> None:
        """Stop accepting, hang up on every client, end every command still running, join every thread."""
        self._stopping.set()
        if self._acceptor.is_alive():
            self._acceptor.join(JOIN_TIMEOUT_S)
        self._listener.close()
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            conn.hang_up()
        self._kill_commands()  # before joining: a silent command blocks its stream's thread
        for conn in connections:
            conn.join()
        self._kill_commands()  # any started while the connections were going down

    def _kill_commands(self) -> None:
        """Kill each command's process group: background jobs (a power sampler) outlive their shell."""
        with self._lock:
            procs = list(self._procs)
        for proc in procs:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    def _accept_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                sock, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # small replies go out at once
            conn = _Connection(self, sock)
            with self._lock:
                self._connections.append(conn)
            conn.start()


class _Connection:
    """One host connection: the handshake, then streams."""

    def __init__(self, device: TestDevice, sock: socket.socket) -> None:
        self.device = device
        self.sock = sock
        self.version = A_VERSION
        self.max_payload = MAX_PAYLOAD
        self.online = False
        self.dead = False
        self._token = b""
        self._send_lock = threading.Lock()
        self._streams: dict[int, Stream] = {}
        self._threads: list[threading.Thread] = []
        self._next_id = 1
        self._reader = threading.Thread(target=self._read_loop, name="adb-device-conn", daemon=True)

    def start(self) -> None:
        self._reader.start()

    def hang_up(self) -> None:
        """Close the connection as a cable pull would: no more packets either way."""
        self.dead = True
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)

    def join(self) -> None:
        self._reader.join(JOIN_TIMEOUT_S)
        for thread in list(self._threads):
            thread.join(JOIN_TIMEOUT_S)

    def send(self, command: bytes, arg0: int, arg1: int, data: bytes = b"") -> None:
        with self._send_lock:
            if self.dead:
                return
            try:
                self.sock.sendall(protocol.pack(command, arg0, arg1, data))
            except OSError:
                self.dead = True

    def _read_loop(self) -> None:
        try:
            while not self.dead:
                packet = protocol.read_packet(self.sock, check_sum=self.version < A_VERSION_SKIP_CHECKSUM)
                if packet is None:
                    break
                self._handle(packet)
        except (OSError, protocol.ProtocolError):
            pass
        finally:
            self.dead = True
            for stream in list(self._streams.values()):
                stream.close(notify_host=False)
            self.sock.close()

    def _handle(self, p: Packet) -> None:
        faults = self.device.faults
        if p.command == b"CNXN":
            self.device.record.host_banners.append(p.data.rstrip(b"\0").decode(errors="replace"))
            self.device.record.host_versions.append(p.arg0)
            if faults.offline or (faults.stay_down_after_drop and self.device.dropped):
                return
            self.version = min(p.arg0, A_VERSION)
            self.max_payload = min(p.arg1, MAX_PAYLOAD)
            self._send_token()
        elif p.command == b"AUTH" and not self.online:
            self._auth(p)
        elif not self.online or faults.stall:
            return
        elif p.command == b"OPEN":
            self._open(p.arg0, p.data.rstrip(b"\0").decode())
        elif p.command == b"WRTE":
            stream = self._streams.get(p.arg1)
            if stream is not None:
                stream.feed(p.data)
                self.send(b"OKAY", stream.local_id, stream.remote_id)
        elif p.command == b"OKAY":
            stream = self._streams.get(p.arg1)
            if stream is not None:
                stream.acknowledge()
        elif p.command == b"CLSE":
            stream = self._streams.get(p.arg1)
            if stream is not None:
                stream.close(notify_host=True)

    def _send_token(self) -> None:
        self._token = os.urandom(protocol.TOKEN_SIZE)
        self.send(b"AUTH", protocol.AUTH_TOKEN, 0, self._token)

    def _auth(self, p: Packet) -> None:
        if p.arg0 == protocol.AUTH_SIGNATURE:
            if not self.device.faults.unauthorized and self.device.trusts(self._token, p.data):
                self._go_online()
            else:
                self._send_token()
        elif p.arg0 == protocol.AUTH_RSAPUBLICKEY:
            self.device.record.offered_keys += 1
            if self.device.accept_new_keys and not self.device.faults.unauthorized:
                self.device.authorize(p.data.rstrip(b"\0").decode())
                self._go_online()
            # otherwise the prompt waits on the phone's screen: say nothing

    def _go_online(self) -> None:
        self.online = True
        banner = protocol.device_banner(PROPERTIES, self.device.features)
        self.send(b"CNXN", self.version, MAX_PAYLOAD, banner)

    def _open(self, remote_id: int, service: str) -> None:
        self.device.record.services.append(service)
        name, _, argument = service.partition(":")
        kind = name.split(",")[0]
        if kind not in ("shell", "exec", "sync"):
            self.send(b"CLSE", 0, remote_id)  # a failed OPEN is answered CLSE(0, remote-id)
            return
        local_id, self._next_id = self._next_id, self._next_id + 1
        stream = Stream(local_id, remote_id, self.max_payload, self.send, lambda: not self.dead)
        self._streams[local_id] = stream
        self.send(b"OKAY", local_id, remote_id)
        device = self.device
        if kind == "sync":
            serve = partial(run_sync, stream, device.sandbox, device.faults, self._drop, device.record)
        else:
            serve = partial(run_shell, stream, device.sandbox, argument, device.faults.benchmark, device.track)
        thread = threading.Thread(target=self._serve, args=(stream, serve), name=f"adb-device-{kind}", daemon=True)
        self._threads.append(thread)
        thread.start()

    def _drop(self) -> None:
        self.device.dropped = True
        self.hang_up()

    def _serve(self, stream: Stream, serve: Callable[[], None]) -> None:
        try:
            serve()
        finally:
            stream.close(notify_host=True)
            self._streams.pop(stream.local_id, None)
