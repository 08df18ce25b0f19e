"""The sensitivity section of the printed report: the layers whose quantization alone costs the most (the
bar chart is ``plots.sensitivity_svg``)."""
from __future__ import annotations

from rich.console import Console
from rich.table import Table

SHOWN = 5


def render_sensitivity(report: dict, console: Console, shown: int = SHOWN) -> None:
    """Print the ``shown`` most sensitive entries of ``report["sensitivity"]`` (lowest SQNR first), if any."""
    entries = report.get("sensitivity")
    if not entries:
        return
    table = Table(title=f"most sensitive layers (quantized alone; {len(entries)} measured)")
    table.add_column("node")
    table.add_column("quantized")
    table.add_column("SQNR dB", justify="right")
    table.add_column("top-1 agreement %", justify="right")
    for e in entries[:shown]:
        sqnr = "exact" if e["sqnr_db"] is None else f"{e['sqnr_db']:.1f}"
        table.add_row(e["node"], e["kind"], sqnr, f"{e['agreement']:.1f}")
    console.print(table)
