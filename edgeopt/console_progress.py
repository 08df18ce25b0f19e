"""The CLI's rendering of progress (``edgeopt.progress``): stage names and counts with time left, on stderr.

On a terminal: rich's live progress (a line for the stage, a bar with counts, elapsed and remaining time for
the long task within it). Elsewhere (CI logs, ``| tee``), where a live display would print nothing until
the end: a plain line per stage, and a line with counts and time left every ``interval`` seconds of a long
task, so a piped run is never silent for long.
"""
from __future__ import annotations

import re
import time
from collections.abc import Callable
from types import TracebackType
from typing import Self

from rich import progress as rich
from rich.console import Console

PLAIN_INTERVAL_S = 5.0
PLAIN_LINE = re.compile(r"^\[ *\d+\.\d s\] ")
"""How a plain progress line starts (seconds since the command started), for logs and tests to tell it apart."""


class ConsoleProgress:
    """A progress reporter for one command (``with ConsoleProgress(console, "deploy") as progress``): call it
    with each stage's name; ``count`` takes the counts of a long task (``edgeopt.progress.Counter``)."""

    def __init__(self, console: Console, command: str, interval: float = PLAIN_INTERVAL_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.console, self.command, self.interval, self.clock = console, command, interval, clock
        self.live = console.is_terminal
        self.start = clock()
        self._task: str | None = None
        self._task_start = self._last_line = 0.0
        self._progress: rich.Progress | None = None
        self._stage_id: rich.TaskID | None = None
        self._count_id: rich.TaskID | None = None

    def __enter__(self) -> Self:
        if self.live:
            self._progress = rich.Progress(
                rich.SpinnerColumn(), rich.TextColumn("{task.description}"), rich.BarColumn(bar_width=24),
                rich.MofNCompleteColumn(), rich.TimeElapsedColumn(), rich.TextColumn("left"),
                rich.TimeRemainingColumn(), console=self.console, transient=True)
            self._progress.start()
            self._stage_id = self._progress.add_task(self.command, total=None)
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._progress is not None:
            self._progress.stop()

    def __call__(self, stage: str) -> None:
        """A stage starts."""
        self._task = None
        if self._progress is not None and self._stage_id is not None:
            self._progress.update(self._stage_id, description=f"{self.command}: {stage}")
            if self._count_id is not None:
                self._progress.remove_task(self._count_id)
                self._count_id = None
        else:
            self.console.print(f"[{self.clock() - self.start:6.1f} s] {self.command}: {stage}", highlight=False)

    def count(self, task: str, done: int, total: int | None) -> None:
        """``done`` of ``total`` units of ``task`` are done (``total`` None: unknown)."""
        now = self.clock()
        if task != self._task:
            self._task, self._task_start, self._last_line = task, now, now
            if self._progress is not None:
                if self._count_id is not None:
                    self._progress.remove_task(self._count_id)
                self._count_id = self._progress.add_task(f"  {task}", total=total)
        if self._progress is not None and self._count_id is not None:
            self._progress.update(self._count_id, completed=done, total=total)
            return
        finished = total is not None and done >= total
        if now - self._last_line >= self.interval or (finished and self._last_line > self._task_start):
            self._last_line = now
            self.console.print(f"[{now - self.start:6.1f} s]   {task}: {_counts(done, total, now - self._task_start)}",
                               highlight=False)


def _counts(done: int, total: int | None, elapsed: float) -> str:
    if total is None:
        return f"{done} done"
    if done >= total:
        return f"{done}/{total} done in {elapsed:.0f} s"
    left = "?" if done == 0 else f"{elapsed * (total - done) / done:.0f} s"
    return f"{done}/{total} ({100 * done / max(total, 1):.0f} %), about {left} left"
