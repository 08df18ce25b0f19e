"""The compression score table as a plot: one small panel per layer, the model's output SQNR (dB) against
the fraction of that layer's MACs kept, one line per method (SVG, no plotting library needed)."""
from __future__ import annotations

from xml.sax.saxutils import escape, quoteattr

from edgeopt.pipeline.compress.ratio_selection import ScoreTable

COLORS = {"svd": "#1f77b4", "prune": "#d62728"}
PANEL_W, PANEL_H, PAD, COLUMNS, TOP = 180, 120, 28, 5, 50
SQNR_CAP = 80.0  # dB; higher (near-lossless) points are drawn at the cap


def compress_svg(table: ScoreTable) -> str:
    """An SVG of ``table``: a ``<g class="layer">`` panel per scored layer with a ``<polyline class="METHOD">``
    per method through its (ratio, SQNR) points."""
    layers = list(dict.fromkeys(e.layer for e in table.entries))
    rows = (len(layers) + COLUMNS - 1) // COLUMNS
    width, height = COLUMNS * (PANEL_W + PAD) + PAD, TOP + rows * (PANEL_H + PAD) + PAD
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="10">',
             f'<text x="{width / 2:g}" y="18" text-anchor="middle" font-size="14">Output SQNR (dB, 0..'
             f'{SQNR_CAP:g}) against the fraction of the layer\'s MACs kept (0..1), each layer alone</text>']
    for j, (method, color) in enumerate(COLORS.items()):
        parts.append(f'<text x="{PAD + j * 80}" y="38" fill="{color}">— {method}</text>')
    for i, layer in enumerate(layers):
        x0 = PAD + (i % COLUMNS) * (PANEL_W + PAD)
        y0 = TOP + (i // COLUMNS) * (PANEL_H + PAD)
        parts += [f'<g class="layer"><title>{escape(layer)}</title>',
                  f'<rect x="{x0}" y="{y0}" width="{PANEL_W}" height="{PANEL_H}" fill="none" stroke="#999"/>',
                  f'<text x="{x0 + 2}" y="{y0 - 3}">{escape(layer[-32:])}</text>']
        for method, color in COLORS.items():
            points = sorted((e.ratio, min(max(e.score.sqnr_db, 0.0), SQNR_CAP)) for e in table.entries
                            if e.layer == layer and e.method == method)
            if points:
                coords = " ".join(f"{x0 + r * PANEL_W:.1f},{y0 + PANEL_H * (1 - s / SQNR_CAP):.1f}" for r, s in points)
                parts.append(f'<polyline class={quoteattr(method)} points="{coords}" fill="none" '
                             f'stroke="{color}" stroke-width="1.5"/>')
        parts.append("</g>")
    parts.append("</svg>")
    return "\n".join(parts) + "\n"
