"""Assertions shared by the CLI tests."""
from __future__ import annotations

from typer.testing import Result

from edgeopt.console_progress import PLAIN_LINE


def assert_one_line_error(result: Result, code: int, *needles: str) -> None:
    """The command failed with exit ``code`` and exactly one ``error:`` line on stderr holding ``needles``
    (besides the plain progress lines of the stages that ran before it: stderr is no terminal here)."""
    assert result.exit_code == code, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip() and not PLAIN_LINE.match(line)]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    assert "Traceback" not in result.output
    for needle in needles:
        assert needle in result.stderr
