"""One ADB stream (OPEN ... CLSE) on the device side, with the protocol's flow control.

Each WRTE the device sends must be acknowledged by the host's OKAY before the next one on the same
stream; the device acknowledges the host's WRTEs at once and buffers their data here.
"""
from __future__ import annotations

import threading
from collections.abc import Callable

WAIT_SLICE_S = 0.05


class StreamClosedError(Exception):
    """The stream or its connection is gone."""


class Stream:
    """A stream's two directions. ``send`` is the connection's packet writer."""

    def __init__(self, local_id: int, remote_id: int, max_payload: int,
                 send: Callable[[bytes, int, int, bytes], None], alive: Callable[[], bool]) -> None:
        self.local_id, self.remote_id = local_id, remote_id
        self._max_payload = max_payload
        self._send = send
        self._alive = alive
        self._inbox = bytearray()
        self._cond = threading.Condition()
        self._acked = threading.Event()
        self._acked.set()
        self.closed = False
        self.on_close: Callable[[], None] | None = None

    # host → device
    def feed(self, data: bytes) -> None:
        with self._cond:
            self._inbox += data
            self._cond.notify_all()

    def acknowledge(self) -> None:
        self._acked.set()

    def read_exact(self, size: int) -> bytes:
        """``size`` bytes the host wrote; StreamClosedError if the stream closes first."""
        with self._cond:
            while len(self._inbox) < size:
                if self.closed or not self._alive():
                    raise StreamClosedError
                self._cond.wait(WAIT_SLICE_S)
            data = bytes(self._inbox[:size])
            del self._inbox[:size]
            return data

    def take(self) -> bytes:
        """Whatever the host has written so far (for a shell's stdin)."""
        with self._cond:
            data = bytes(self._inbox)
            self._inbox.clear()
            return data

    # device → host
    def write(self, data: bytes) -> None:
        """Send ``data`` in WRTE packets, each after the host acknowledged the previous one."""
        for start in range(0, len(data), self._max_payload):
            while not self._acked.wait(WAIT_SLICE_S):
                if self.closed or not self._alive():
                    raise StreamClosedError
            if self.closed:
                raise StreamClosedError
            self._acked.clear()
            self._send(b"WRTE", self.local_id, self.remote_id, data[start : start + self._max_payload])

    def close(self, notify_host: bool) -> None:
        """Close once; tell the host (CLSE) unless it closed first."""
        with self._cond:
            if self.closed:
                return
            self.closed = True
            self._cond.notify_all()
        if notify_host and self._alive():
            self._send(b"CLSE", self.local_id, self.remote_id, b"")
        if self.on_close is not None:
            self.on_close()
