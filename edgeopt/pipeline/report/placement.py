"""The report's ``placement`` section: which unit runs each op, at which dtype and cost, and why."""
from __future__ import annotations

from rich.console import Console

from edgeopt.qprogram import Placement
from edgeopt.runtimes.cost import CostReport

# Rules printed under the summary line (each with the first op it moved); every op's reason is in report.json.
SHOWN_RULES = 5


def placement_section(placement: Placement, cost: CostReport) -> dict:
    """``report.json``'s ``placement``: the summary line, op counts per unit, and one row per op
    (op, node, unit, dtype, MACs, estimated time in microseconds, energy in microjoules, reason)."""
    rows = [
        {"op": where.kind, "node": where.source, "unit": where.unit, "dtype": where.dtype, "macs": int(c.macs),
         "time_us": round(c.time_s * 1e6, 4), "energy_uj": round(c.energy_j * 1e6, 5), "reason": where.reason}
        for where, c in zip(placement.ops, cost.ops)
    ]
    return {"summary": placement.summary(), "counts": placement.counts(), "ops": rows}


def render_placement(section: dict, console: Console) -> None:
    """Print the summary line and, per rule that moved ops off their preferred unit, its first op."""
    console.print(f"placement: {section['summary']}", highlight=False)
    by_rule: dict[str, list[dict]] = {}
    for row in section["ops"]:
        if row["reason"]:
            by_rule.setdefault(row["reason"].rsplit("(rule ", 1)[-1], []).append(row)
    for rows in list(by_rule.values())[:SHOWN_RULES]:
        first = rows[0]
        more = f" (and {len(rows) - 1} more op{'s' if len(rows) > 2 else ''} by this rule)" if len(rows) > 1 else ""
        console.print(f"  {first['node'] or first['op']} → {first['unit']}: {first['reason']}{more}", highlight=False)
    if len(by_rule) > SHOWN_RULES:
        console.print(f"  … and {len(by_rule) - SHOWN_RULES} more rules (report.json \"placement\")", highlight=False)
