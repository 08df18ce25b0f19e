"""Progress: counts reported by the pipeline's long stages reach the caller's reporter; the CLI's renderer
prints a line per stage and a count line every few seconds when stderr is not a terminal."""
from __future__ import annotations

import io

from rich.console import Console

from edgeopt.console_progress import ConsoleProgress
from edgeopt.progress import counter, reporting, track
from edgeopt.workflows.deploy import deploy


class Recorder:
    def __init__(self) -> None:
        self.stages: list[str] = []
        self.counts: list[tuple[str, int, int | None]] = []

    def __call__(self, stage: str) -> None:
        self.stages.append(stage)

    def count(self, task: str, done: int, total: int | None) -> None:
        self.counts.append((task, done, total))


def test_counts_reach_the_reporter_only_while_it_is_current() -> None:
    rec = Recorder()
    with reporting(rec):
        assert list(track([3, 4], "a", 7, weight=lambda v: v)) == [3, 4]
        counter("b", None)(5)
    list(track([1], "c", 1))  # no reporter current: nothing recorded, nothing fails
    with reporting(lambda stage: None):  # a plain stage callable gets no counts and needs none
        list(track([1], "d", 1))
    assert rec.counts == [("a", 0, 7), ("a", 3, 7), ("a", 7, 7), ("b", 0, None), ("b", 5, None)]


def test_deploy_reports_stages_and_sample_counts(tmp_path) -> None:
    rec = Recorder()
    result = deploy(None, "arm-cortex-a78-xnnpack", out=tmp_path, progress=rec, sensitivity=True)
    assert rec.stages[:3] == ["load", "calibrate", "quantize"] and "sensitivity" in rec.stages
    finals = {task: (done, total) for task, done, total in rec.counts}
    n = result.report["accuracy"]["n"]
    assert finals["calibrate (samples)"] == (500, 500)
    assert finals["evaluate (samples)"] == (n, n)  # fp32 and int8 on each chunk as it is read
    done, total = finals["sensitivity (probe runs: layers x samples)"]
    assert done == total > 0
    for task in finals:  # every count rises from 0 to its total
        values = [d for t, d, _ in rec.counts if t == task]
        assert values[0] == 0 and values == sorted(values)


def test_plain_rendering_prints_stages_and_a_count_line_every_interval() -> None:
    now = [0.0]
    out = io.StringIO()
    console = Console(file=out, width=80, force_terminal=False)
    with ConsoleProgress(console, "deploy", interval=5.0, clock=lambda: now[0]) as progress:
        progress("calibrate")
        for done in range(0, 101, 10):  # 100 samples, 1 s per 10
            progress.count("calibrate (samples)", done, 100)
            now[0] += 1.0
        progress("emulate")
        progress.count("int8 inference (samples)", 0, 4)
        progress.count("int8 inference (samples)", 4, 4)  # quick: no count line at all
    lines = out.getvalue().splitlines()
    assert lines[0].endswith("deploy: calibrate") and lines[-1].endswith("deploy: emulate")
    counts = lines[1:-1]
    assert counts == ["[   5.0 s]   calibrate (samples): 50/100 (50 %), about 5 s left",
                      "[  10.0 s]   calibrate (samples): 100/100 done in 10 s"]


def test_terminal_rendering_draws_a_bar_with_counts_and_time_left() -> None:
    out = io.StringIO()
    console = Console(file=out, width=100, force_terminal=True)
    with ConsoleProgress(console, "deploy") as progress:
        progress("recipe: + CLE")
        progress.count("int8 inference (samples)", 256, 540)
        progress._progress.refresh()  # draw now rather than on rich's refresh thread
        drawn = out.getvalue()
    assert "deploy: recipe: + CLE" in drawn and "int8 inference (samples)" in drawn and "256/540" in drawn
    assert "left" in drawn
