"""Assertions shared by the CLI tests."""
from __future__ import annotations

from typer.testing import Result


def assert_one_line_error(result: Result, code: int, *needles: str) -> None:
    """The command failed with exit ``code`` and exactly one ``error:`` line on stderr holding ``needles``."""
    assert result.exit_code == code, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    assert "Traceback" not in result.output
    for needle in needles:
        assert needle in result.stderr
