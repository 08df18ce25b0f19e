"""Progress of long work, reported by library code and shown by whoever called it (the CLI renders it).

Library code never prints. A workflow takes a ``progress`` object from its caller and makes it current for
the run (``reporting``); the stages below it report counts through ``track`` or ``counter`` without a
parameter threaded through every signature (the calibration loop, the executor's batches, AdaRound's
layers, the sensitivity probes). With no reporter current, reporting costs one context-variable read.

A reporter is any object with ``count(task, done, total)``; a plain callable taking a stage name (the
``progress`` argument ``deploy`` has always taken) still gets the stage names, and no counts.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Protocol, TypeVar, runtime_checkable

T = TypeVar("T")


@runtime_checkable
class Counter(Protocol):
    """Receives counts: ``done`` of ``total`` units of ``task`` (``total`` None when unknown)."""

    def count(self, task: str, done: int, total: int | None) -> None: ...


_current: ContextVar[Counter | None] = ContextVar("edgeopt_progress", default=None)


@contextmanager
def reporting(progress: object | None) -> Iterator[None]:
    """Make ``progress`` the current counter for the block, if it is one (``Counter``); else change nothing."""
    if not isinstance(progress, Counter):
        yield
        return
    token = _current.set(progress)
    try:
        yield
    finally:
        _current.reset(token)


def report(task: str, done: int, total: int | None) -> None:
    """Tell the current counter, if any, that ``done`` of ``total`` units of ``task`` are done."""
    current = _current.get()
    if current is not None:
        current.count(task, done, total)


def counter(task: str, total: int | None) -> Callable[[int], None]:
    """A function reporting ``done`` of ``total`` for ``task`` to the current counter (a no-op without one);
    it reports 0 at once, so the task shows before its first unit ends."""
    current = _current.get()
    if current is None:
        return lambda done: None
    current.count(task, 0, total)
    return lambda done: current.count(task, done, total)


def track(items: Iterable[T], task: str, total: int | None = None, weight: Callable[[T], int] | None = None
          ) -> Iterator[T]:
    """Yield ``items``, reporting after each how many units of ``task`` are done (an item is one unit, or
    ``weight(item)`` units: a batch counts its samples)."""
    tick = counter(task, total)
    done = 0
    for item in items:
        yield item
        done += 1 if weight is None else weight(item)
        tick(done)
