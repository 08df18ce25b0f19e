"""The sensitivity section of the report: the layers whose quantization alone costs the most, printed as a
table and drawn as a standalone SVG bar chart (``sensitivity_svg``)."""
from __future__ import annotations

import math
from collections.abc import Sequence
from xml.sax.saxutils import escape, quoteattr

from rich.console import Console
from rich.table import Table

from edgeopt.pipeline.quantize.sensitivity import LayerSensitivity


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


MAX_BARS = 20
LABEL_W, BAR_W, VALUE_W = 300, 380, 90  # columns: layer name, bar, value (px)
ROW_H, TOP, BOTTOM = 22, 40, 30
COLORS = {"weights": "#4c78a8", "activation": "#f58518"}


def sensitivity_svg(layers: Sequence[LayerSensitivity], limit: int = MAX_BARS) -> str:
    """An SVG bar chart of the ``limit`` entries with the lowest SQNR, one ``<rect class="bar">`` each,
    lowest at the top; bar length is SQNR in dB (a negative SQNR draws no bar; an infinite one, full length)."""
    shown = sorted(layers, key=lambda r: r.sqnr_db)[:limit]
    finite = [r.sqnr_db for r in shown if math.isfinite(r.sqnr_db)]
    top = max([v for v in finite if v > 0], default=1.0)
    width, height = LABEL_W + BAR_W + VALUE_W, TOP + ROW_H * len(shown) + BOTTOM
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">',
        f'<text x="{width / 2:g}" y="20" text-anchor="middle" font-size="14">'
        f"Per-layer quantization sensitivity: output SQNR (dB), lowest first</text>",
    ]
    for i, r in enumerate(shown):
        y = TOP + i * ROW_H
        length = BAR_W if r.sqnr_db == math.inf else BAR_W * min(max(r.sqnr_db, 0.0), top) / top
        value = f"{r.sqnr_db:.1f} dB" if math.isfinite(r.sqnr_db) else f"{r.sqnr_db} dB"
        label, tip = f"{r.node} ({r.kind})", f"{r.node} {r.kind}: {value}, top-1 agreement {r.agreement:.1f} %"
        parts += [
            f'<text x="{LABEL_W - 6}" y="{y + ROW_H * 0.7:g}" text-anchor="end">{escape(label)}</text>',
            f'<rect class="bar" x="{LABEL_W}" y="{y + 3}" width="{length:.1f}" height="{ROW_H - 6}" '
            f'fill={quoteattr(COLORS[r.kind])}><title>{escape(tip)}</title></rect>',
            f'<text x="{LABEL_W + length + 4:.1f}" y="{y + ROW_H * 0.7:g}">{escape(value)}</text>',
        ]
    legend_y = height - 10
    for j, (kind, color) in enumerate(COLORS.items()):
        x = LABEL_W + j * 110
        parts += [f'<rect x="{x}" y="{legend_y - 10}" width="10" height="10" fill="{color}"/>',
                  f'<text x="{x + 14}" y="{legend_y}">{kind}</text>']
    parts.append("</svg>")
    return "\n".join(parts) + "\n"
