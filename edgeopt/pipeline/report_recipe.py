"""The automatic recipe's section of the printed report: each step tried and what it gave."""
from __future__ import annotations

from rich.console import Console
from rich.table import Table


def render_recipe(report: dict, console: Console) -> None:
    """Print the recipe's steps (``report["recipe"]``) and its outcome, if the report has them."""
    steps = report.get("recipe")
    if not steps:
        return
    budget = report["recipe_budget"]
    metric = "top-1 %" if budget["metric"] == "top1" else "top-1 agreement %"
    table = Table(title=f"automatic recipe (max drop {budget['max_drop']:g} points of fp32 {budget['fp32']:.2f})")
    table.add_column("step")
    table.add_column(f"int8 {metric}", justify="right")
    table.add_column("drop", justify="right")
    table.add_column("seconds", justify="right")
    for s in steps:
        mark = " *" if s["step"] == budget["chosen"] else ""
        table.add_row(s["step"] + mark, f"{s['int8']:.2f}", f"{s['drop']:+.2f}", f"{s['seconds']:.1f}")
    console.print(table)
    outcome = "met" if budget["met"] else "[yellow]missed[/] (kept the best step)"
    console.print(f"budget {outcome}: chosen step '{budget['chosen']}' (*)")
