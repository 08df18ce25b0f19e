"""The automatic recipe's section of the printed report: each step tried, what it gave, and what mixed
precision promoted at what latency price."""
from __future__ import annotations

from rich.console import Console

from edgeopt.pipeline.report.tables import fitted_table

SHOWN_PROMOTIONS = 8


def render_recipe(report: dict, console: Console) -> None:
    """Print the recipe's steps (``report["recipe"]``), its outcome and its mixed precision, if the report
    has them."""
    steps = report.get("recipe")
    if not steps:
        return
    budget = report["recipe_budget"]
    screening = budget.get("screening")
    metric = "int8 top-1 %" if budget["metric"] == "top1" else "int8 agree %"
    rows = []
    for s in steps:
        mark = " *" if s["step"] == budget["chosen"] else ""
        latency = "" if s.get("latency_ms") is None else f"{s['latency_ms']:.3f}"
        everyone = [] if screening is None else [
            f"{s['int8_all']:.2f}" if "int8_all" in s else f"{screening['int8_all']:.2f}" if mark else ""]
        se = f" ±{s['drop_se']:.2f}" if "drop_se" in s else ""
        kept = ("adopted" if s.get("adopted", True) else "dropped") + (f" (= {s['same_as']})" if "same_as" in s else "")
        rows.append([s["step"] + mark, f"{s['int8']:.2f}", *everyone, f"{s['drop']:+.2f}{se}", latency,
                     f"{s['seconds']:.1f}", kept])
    headers = ["step", metric if screening is None else f"{metric} ({screening['samples']})",
               *([] if screening is None else [f"all {screening['total']}"]), "drop", "est. ms", "s", "kept"]
    console.print(fitted_table(f"automatic recipe (max drop {budget['max_drop']:g} points of fp32 {budget['fp32']:.2f})",
                          headers, rows, console.width))
    outcome = "met" if budget["met"] else "[yellow]missed[/] (kept the best step)"
    where = " on the tuning samples" if budget.get("held_out") else ""
    console.print(f"budget {outcome}{where}: chosen step '{budget['chosen']}' (*)")
    if screening is not None:
        console.print(f"steps scored on the first {screening['samples']} of {screening['total']} samples (fp32 "
                      f"{screening['fp32']:.2f} there); a step within budget there, and the chosen step, also on "
                      f"all {screening['total']} (fp32 {screening['fp32_all']:.2f})")
    if budget.get("tuned_on"):
        console.print(f"steps selected on {budget['tuned_on']}")
    held = budget.get("held_out")
    if held is not None:
        console.print(f"chosen step on {held['source']}, not selected on: int8 {held['int8']:.2f}, fp32 "
                      f"{held['fp32']:.2f} (drop {held['drop']:.2f}{_se(held)}): {_within(held)}")
        both = held.get("combined")
        if both is not None:
            console.print(f"on the tuning and held-out samples together ({both['samples']}): drop "
                          f"{both['drop']:.2f}{_se(both)}: {_within(both)}")
    _render_mixed_precision(report.get("recipe_mixed_precision"), console)


def _se(entry: dict) -> str:
    return f" ±{entry['drop_se']:.2f}" if "drop_se" in entry else ""


def _within(entry: dict) -> str:
    """Whether a drop meets the budget, and, when it does not, whether one standard error reaches it."""
    if entry["met"]:
        return "within the budget"
    return "over the budget" + (" (by less than one standard error)" if entry.get("within_error") else "")


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
