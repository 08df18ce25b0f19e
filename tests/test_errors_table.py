"""docs/errors.md is the table generated from edgeopt/errors.py, and every error class is in it."""
from __future__ import annotations

from edgeopt import errors
from tools import errors_table


def test_the_checked_in_table_is_the_generated_one() -> None:
    assert errors_table.DOC.read_text(encoding="utf-8") == errors_table.render(), \
        "docs/errors.md is stale: run python -m tools.errors_table"


def test_every_error_class_has_an_exit_code_and_an_example() -> None:
    classes = [c for c in vars(errors).values()
               if isinstance(c, type) and issubclass(c, errors.EdgeoptError) and c is not errors.EdgeoptError]
    for cls in classes:
        assert cls in errors.EXIT_CODES and cls.example, cls.__name__
        assert f"`{cls.__name__}`" in errors_table.render()
