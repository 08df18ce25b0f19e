"""Generate ``docs/errors.md``: every error class of ``edgeopt.errors``, its exit code and an example line.

    python -m tools.errors_table          # rewrite docs/errors.md
    python -m tools.errors_table --check  # exit 1 when docs/errors.md differs from the generated table

``tests/test_errors_table.py`` checks that the file in the repository equals what this writes.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from edgeopt import errors

DOC = Path(__file__).resolve().parents[1] / "docs" / "errors.md"
HEADER = """# Errors and exit codes

Generated from `edgeopt/errors.py` by `python -m tools.errors_table`; do not edit by hand (a test checks
it). A user error ends in one line on stderr with no traceback (add `--debug` for one); the exit code
tells scripts which kind it was.

| exit | error | when | example line |
| ---: | --- | --- | --- |
"""
# Exits that are not an error class: typer's own usage errors, success, and Ctrl-C.
OTHER_ROWS = (
    (0, "(none)", "Success (artifacts and report written).", ""),
    (2, "usage error (typer)", ("An option value typer refuses before any work: an unknown option, a value "
                                "outside its choices, a bad --input-shape or --override form."),
     "Invalid value for '--range-method': 'foo' is not one of 'minmax', 'percentile', 'mse', 'sqnr'."),
    (130, "(interrupted)", ("Ctrl-C. The output folder holds the earlier run's set or this run's, never a mix; "
                            "the line says which."), "interrupted; no output folder was changed"),
)


def _cell(text: str) -> str:
    return text.replace("``", "`").replace("|", "\\|").replace("\n", " ")


def _code(text: str) -> str:
    """``text`` as a Markdown code span (double backticks: some lines quote a command in backticks)."""
    return f"`` {text.replace('|', '&#124;')} ``"


def render() -> str:
    """The whole Markdown file, rows in exit-code order."""
    rows = [(code, f"`{cls.__name__}`", (cls.__doc__ or "").strip().splitlines()[0],
             ("internal error: " if cls is errors.InternalError else "error: ") + cls.example)
            for cls, code in errors.EXIT_CODES.items()]
    rows += list(OTHER_ROWS)
    lines = [f"| {code} | {name} | {_cell(when)} | {_code(example) if example else ''} |"
             for code, name, when, example in sorted(rows, key=lambda r: r[0])]
    return HEADER + "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only compare with docs/errors.md")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        same = DOC.is_file() and DOC.read_text(encoding="utf-8") == text
        print(f"{DOC}: {'up to date' if same else 'differs: run python -m tools.errors_table'}")
        return 0 if same else 1
    DOC.write_text(text, encoding="utf-8")
    print(f"{DOC}: {text.count(chr(10)) - HEADER.count(chr(10))} rows")
    return 0


if __name__ == "__main__":
    sys.exit(main())
