"""Printed tables fit an 80-column terminal and never cut a number (rich shortens a cell to "+64.…")."""
from __future__ import annotations

import io

import pytest
from rich.console import Console

from edgeopt.pipeline.report.recipe import render_recipe
from edgeopt.pipeline.report.tables import fitted_table

STEPS = ["min/max", "+ CLE", "+ bias correction", "ranges: percentile", "+ AdaRound",
         "mixed precision: all 128 layers"]


def _recipe_report() -> dict:
    steps = [{"step": name, "int8": 1.25 + 7 * i, "drop": 64.21 - 7 * i, "seconds": 1234.5, "latency_ms": 12.345678,
              "adopted": i % 2 == 0} for i, name in enumerate(STEPS)]
    steps[-1]["int8_all"] = 36.75
    return {"recipe": steps, "recipe_budget": {
        "max_drop": 1.0, "metric": "top1", "fp32": 75.12, "met": False, "chosen": STEPS[-1],
        "screening": {"samples": 500, "total": 1300, "fp32": 75.0, "fp32_all": 75.12, "int8_all": 36.75}}}


@pytest.mark.parametrize("width", [80, 120])
def test_recipe_table_fits_the_terminal_with_every_number_whole(width: int) -> None:
    out = io.StringIO()
    render_recipe(_recipe_report(), Console(file=out, width=width, force_terminal=False))
    text = out.getvalue()
    assert max(len(line) for line in text.splitlines()) <= width
    assert "…" not in text
    for s in _recipe_report()["recipe"]:
        for value in (f"{s['int8']:.2f}", f"{s['drop']:+.2f}", f"{s['latency_ms']:.3f}", f"{s['seconds']:.1f}"):
            assert value in text, value


def test_columns_are_dropped_from_the_right_before_a_number_is_cut() -> None:
    rows = [["a long layer name", "1,234,567", "7,654,321", "123.456", "adopted"]]
    out = io.StringIO()
    Console(file=out, width=40, force_terminal=False).print(
        fitted_table("t", ["layer", "MACs before", "MACs after", "SQNR", "kept"], rows, 40))
    text = out.getvalue()
    assert "1,234,567" in text and "7,654,321" in text and "…" not in text and "adopted" not in text
    assert max(len(line) for line in text.splitlines()) <= 40
