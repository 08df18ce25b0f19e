"""comparison: deployed models side by side, each row with its ratio to the first model (compare.json).

``comparison`` builds the summary ``edgeopt compare`` writes as ``compare.json`` from the models'
report.json dicts; ``render_comparison`` prints it as a table that fits an 80-column terminal: labels
wrap, numbers never do (and are never cut).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table

SCHEMA_VERSION = 1
Getter = Callable[[dict], float | None]


def _measured(key: str, precision: str) -> Getter:
    return lambda r: (r.get("measured") or {}).get(key, {}).get(precision)


def _accuracy(key: str) -> Getter:
    return lambda r: (r["accuracy"] or {}).get(key) if (r["accuracy"] or {}).get("metric") == "top1" else None


def _speedup(r: dict) -> float | None:
    fps = (r.get("measured") or {}).get("fps", {})
    return fps["int8"] / fps["fp32"] if fps.get("int8") and fps.get("fp32") else None


# key, label, getter, format ("measured": on the target in the table's title)
ROWS: tuple[tuple[str, str, Getter, str], ...] = (
    ("macs", "MACs", lambda r: r["macs"], "{:,.0f}"),
    ("params", "parameters", lambda r: r["params"], "{:,.0f}"),
    ("int8_tflite_kib", "int8 .tflite KiB", lambda r: r["size_bytes"]["int8_tflite"] / 1024, "{:.1f}"),
    ("top1_fp32", "top-1 % fp32", _accuracy("fp32"), "{:.2f}"),
    ("top1_int8", "top-1 % int8", _accuracy("int8"), "{:.2f}"),
    ("agreement_int8", "int8 agrees with fp32 %", lambda r: (r["accuracy"] or {}).get("agreement"), "{:.2f}"),
    ("fps_int8_estimate", "fps int8 (estimate)", lambda r: r["fps"]["int8"], "{:.1f}"),
    ("energy_mj_int8_estimate", "mJ int8 (estimate)", lambda r: r["energy_mj"]["int8"], "{:.4f}"),
    ("fps_int8_measured", "fps int8 (measured)", _measured("fps", "int8"), "{:.1f}"),
    ("fps_fp32_measured", "fps fp32 (measured)", _measured("fps", "fp32"), "{:.1f}"),
    ("int8_over_fp32_measured", "int8 / fp32 fps (measured)", _speedup, "{:.2f}"),
    ("energy_mj_int8_measured", "mJ int8 (measured)", _measured("energy_mj", "int8"), "{:.4f}"),
    ("energy_mj_fp32_measured", "mJ fp32 (measured)", _measured("energy_mj", "fp32"), "{:.4f}"),
)


def comparison(reports: Sequence[dict], out_dirs: Sequence[str]) -> dict[str, Any]:
    """The summary of deployed models (report.json dicts, the base first): each row's values and ratios.

    Args:
        reports: report.json dicts, one per model, the base (uncompressed) model first.
        out_dirs: each model's output folder.

    Returns:
        ``{"schema_version", "device", "target", "models": [{"name", "out_dir"}], "rows": [{"key", "label",
        "values", "ratios"}], "measured": [...]}``: ``ratios[i]`` is model i+1's value over the base's
        (None where either is missing or the base is 0); rows no model has are left out; ``measured``
        holds each model's timing details (tool, threads, statistic, runs, spread) when a target measured.
    """
    target = next((r["measured"]["target"] for r in reports if r.get("measured")), "emulate")
    rows = []
    for key, label, get, fmt in ROWS:
        values = [_number(get(r)) for r in reports]
        if all(v is None for v in values):
            continue
        base = values[0]
        ratios = [None if base in (None, 0) or v is None else round(v / base, 4) for v in values[1:]]
        rows.append({"key": key, "label": label, "format": fmt, "values": values,
                     "ratios": ratios})
    names = [r["model"] for r in reports]
    if len(set(names)) < len(names):
        names = [f"{i}-{n}" for i, n in enumerate(names)]
    return {
        "schema_version": SCHEMA_VERSION,
        "device": reports[0]["device"],
        "target": target,
        "models": [{"name": n, "out_dir": str(d)} for n, d in zip(names, out_dirs)],
        "rows": rows,
        "measured": [_timing(r["measured"]) if r.get("measured") else None for r in reports],
    }


def _number(value: float | None) -> float | None:
    return None if value is None else round(float(value), 6)


def _timing(measured: dict) -> dict:
    keys = ("tool", "threads", "statistic", "runs", "latency_ms", "spread_ms", "delegates")
    return {k: measured[k] for k in keys if k in measured}


LABEL_MIN_WIDTH = 12  # the label column wraps down to this; past it, the numbers go to a further table


def render_comparison(summary: dict, console: Console) -> None:
    """Print ``comparison``'s summary: one column per model, then the ratio to the first model per other model.

    Columns that do not fit the console's width go to a further table below (with the labels again):
    labels wrap, numbers are never wrapped or cut.
    """
    models = [m["name"] for m in summary["models"]]
    rows = summary["rows"]
    columns = [(name, [_cell(row["values"][i], row["format"]) for row in rows]) for i, name in enumerate(models)]
    columns += [("ratio" if len(models) == 2 else f"{name} ratio", [_ratio(row["ratios"][i]) for row in rows])
                for i, name in enumerate(models[1:])]
    title = f"edgeopt compare on {summary['device']}, target {summary['target']}"
    for n, chunk in enumerate(_chunks(columns, console.width - LABEL_MIN_WIDTH - 1)):
        table = Table(title=title if n == 0 else None, box=box.SIMPLE_HEAD, title_justify="left", pad_edge=False)
        table.add_column("", ratio=1, min_width=LABEL_MIN_WIDTH)
        for header, cells in chunk:
            table.add_column(header, justify="right", no_wrap=True, min_width=max(map(len, cells)))
        for i, row in enumerate(rows):
            table.add_row(row["label"], *(cells[i] for _, cells in chunk))
        console.print(table)
    console.print(f"ratio: model / {models[0]} (the base)", highlight=False)
    for name, timing in zip(models, summary["measured"]):
        if timing:
            console.print(_timing_line(name, timing), highlight=False)


def _chunks(columns: list[tuple[str, list[str]]], width: int) -> list[list[tuple[str, list[str]]]]:
    """``columns`` in consecutive groups that each fit ``width`` (a column takes its widest cell, or its
    header's longest word, plus padding); a column wider than ``width`` goes alone."""
    chunks: list[list[tuple[str, list[str]]]] = [[]]
    used = 0
    for header, cells in columns:
        need = max(*map(len, cells), *map(len, header.split())) + 3
        if chunks[-1] and used + need > width:
            chunks.append([])
            used = 0
        chunks[-1].append((header, cells))
        used += need
    return chunks


def _cell(value: float | None, fmt: str) -> str:
    return "-" if value is None else fmt.format(value)


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _timing_line(name: str, t: dict) -> str:
    parts = []
    for key, spread in t.get("spread_ms", {}).items():
        low, high = ("p10", "p90") if "p10" in spread else ("p5", "p95") if "p5" in spread else ("min", "max")
        runs = (t.get("runs") or {}).get(key)
        parts.append(f"{key} {t['latency_ms'][key]:.4g} ms ({low} {spread.get(low, float('nan')):.4g}, {high} "
                     f"{spread.get(high, float('nan')):.4g}{f', {runs} runs' if runs else ''})")
    return f"{name}: {t.get('statistic', 'mean')} latency " + "; ".join(parts) + f"; {t.get('threads')} thread(s)"
