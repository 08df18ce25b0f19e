"""The automatic recipe's section of the printed report: each step tried, what it gave, and what mixed
precision promoted at what latency price."""
from __future__ import annotations

from rich.console import Console
from rich.table import Table

SHOWN_PROMOTIONS = 8


def render_recipe(report: dict, console: Console) -> None:
    """Print the recipe's steps (``report["recipe"]``), its outcome and its mixed precision, if the report
    has them."""
    steps = report.get("recipe")
    if not steps:
        return
    budget = report["recipe_budget"]
    metric = "int8 top-1 %" if budget["metric"] == "top1" else "int8 agree %"
    table = Table(title=f"automatic recipe (max drop {budget['max_drop']:g} points of fp32 {budget['fp32']:.2f})")
    table.add_column("step", no_wrap=True)
    table.add_column(metric, justify="right")
    table.add_column("drop", justify="right")
    table.add_column("est. ms", justify="right")
    table.add_column("s", justify="right")
    table.add_column("kept")
    for s in steps:
        mark = " *" if s["step"] == budget["chosen"] else ""
        latency = "" if s.get("latency_ms") is None else f"{s['latency_ms']:.3f}"
        table.add_row(s["step"] + mark, f"{s['int8']:.2f}", f"{s['drop']:+.2f}", latency, f"{s['seconds']:.1f}",
                      "adopted" if s.get("adopted", True) else "dropped")
    console.print(table)
    outcome = "met" if budget["met"] else "[yellow]missed[/] (kept the best step)"
    console.print(f"budget {outcome}: chosen step '{budget['chosen']}' (*)")
    _render_mixed_precision(report.get("recipe_mixed_precision"), console)


def _render_mixed_precision(mp: dict | None, console: Console) -> None:
    if mp is None:
        return
    console.print(f"mixed precision: {len(mp['candidates'])} candidate layers ranked by sensitivity "
                  f"({mp['sensitivity_samples']} samples, {mp['sensitivity_seconds']:.1f} s) "
                  f"on '{mp['base_step']}'")
    promoted = mp["promoted"]
    if not promoted:
        console.print("  chosen step promotes no layer")
        return
    for p in promoted[:SHOWN_PROMOTIONS]:
        sqnr = "exact" if p["sqnr_db"] is None else f"{p['sqnr_db']:.1f} dB"
        also = f" (with {', '.join(p['with'])})" if p["with"] else ""
        console.print(f"  {p['node']}{also} -> {p['to']}  ({p['kind']} alone: {sqnr})")
    if len(promoted) > SHOWN_PROMOTIONS:
        console.print(f"  ... and {len(promoted) - SHOWN_PROMOTIONS} more (report.json recipe_mixed_precision)")
    if mp["latency_price_ms"] is not None:
        console.print(f"  estimated latency {mp['base_latency_ms']:.3f} -> {mp['latency_ms']:.3f} ms "
                      f"({mp['latency_price_ms']:+.3f} ms for mixed precision)")
