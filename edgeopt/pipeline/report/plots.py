"""The report's plots, drawn with matplotlib (a ``Figure`` without pyplot, so no global backend or
state, rendered by matplotlib's SVG writer) and returned as SVG text ready to inline in report.html or to write beside it.

Every plot reads report.json's dicts (``Report.to_json`` and the compress report), so a plot can be
redrawn from a stored report. Text stays text (``svg.fonttype: none``) and the file carries no date, so
a plot is small and the same report always gives the same bytes.
"""
from __future__ import annotations

import functools
import io
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ParamSpec

import matplotlib
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

P = ParamSpec("P")
SVG_RC = {"svg.fonttype": "none", "svg.hashsalt": "edgeopt", "font.size": 9, "axes.titlesize": 10,
          "font.sans-serif": ["DejaVu Sans", "Arial"]}  # named once per text element: keep the list short
KIND_COLORS = {"weights": "#4c78a8", "activation": "#f58518"}
METHOD_COLORS = {"svd": "#1f77b4", "prune": "#d62728"}
UNIT_COLORS = ("#4c78a8", "#f58518", "#54a24b", "#e45756", "#72b7b2", "#b279a2", "#9d755d")
MAX_BARS = 20
SQNR_CAP = 80.0  # dB; higher (near-lossless) compression points are drawn at the cap
SHOWN_OP_TYPES = 12
PRECISION_MARKERS = {"w8a8": "o", "w8a16": "s"}


def to_svg(fig: Figure) -> str:
    """``fig`` as SVG text without the XML prolog (inlinable in HTML, still a valid standalone SVG)."""
    buf = io.StringIO()
    with matplotlib.rc_context(SVG_RC):
        # constrained layout already keeps every label inside the figure: no second, "tight" drawing pass
        fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None})
    text = buf.getvalue()
    return text[text.index("<svg"):]


def _figure(width: float, height: float) -> Figure:
    return Figure(figsize=(width, height), layout="constrained")


def _styled(plot: Callable[P, str]) -> Callable[P, str]:
    """Run ``plot`` under ``SVG_RC``: text takes its font size when it is created, not when it is drawn."""
    @functools.wraps(plot)
    def styled(*args: P.args, **kwargs: P.kwargs) -> str:
        with matplotlib.rc_context(SVG_RC):
            return plot(*args, **kwargs)
    return styled


@_styled
def sensitivity_svg(entries: Sequence[Mapping[str, Any]], limit: int = MAX_BARS) -> str:
    """Horizontal bars of output SQNR (dB) for the ``limit`` entries of report.json's ``sensitivity`` with
    the lowest SQNR (lowest at the top), coloured by what was quantized; an exact layer (``sqnr_db``
    null) is drawn at the longest finite bar. Each bar's SVG group has the id ``bar-<i>``."""
    shown = sorted(entries, key=lambda e: math.inf if e["sqnr_db"] is None else e["sqnr_db"])[:limit]
    finite = [e["sqnr_db"] for e in shown if e["sqnr_db"] is not None]
    full = max([*finite, 1.0])
    fig = _figure(7.5, 0.8 + 0.26 * max(len(shown), 1))
    ax = fig.add_subplot()
    for i, e in enumerate(shown):
        value = full if e["sqnr_db"] is None else e["sqnr_db"]
        bar = ax.barh(i, value, color=KIND_COLORS.get(e["kind"], "#999"))[0]
        bar.set_gid(f"bar-{i}")
        label = "exact" if e["sqnr_db"] is None else f"{e['sqnr_db']:.1f} dB"
        ax.text(value, i, f" {label}, {e['agreement']:.0f} % agree", va="center", fontsize=7)
    ax.set_yticks(range(len(shown)), [f"{e['node']} ({e['kind']})" for e in shown], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlim(min([0.0, *finite]), full * 1.35)
    ax.set_xlabel("output SQNR (dB) with this tensor alone quantized; lower = more sensitive")
    ax.set_title(f"Per-layer quantization sensitivity ({len(shown)} of {len(entries)}, lowest SQNR first)")
    for kind, color in KIND_COLORS.items():
        ax.bar(0, 0, color=color, label=kind)
    ax.legend(loc="upper right", fontsize=7)  # the top bars are the shortest
    return to_svg(fig)


@_styled
def recipe_svg(steps: Sequence[Mapping[str, Any]], budget: Mapping[str, Any]) -> str:
    """The recipe's steps (report.json ``recipe``): int8 accuracy per step (bars; dropped steps hatched) with
    the budget line, and estimated latency per step (line) on a second axis; the chosen step is starred."""
    names = [s["step"] for s in steps]
    fig = _figure(max(7.5, 0.55 * len(steps) + 2), 3.6)
    ax = fig.add_subplot()
    colors = ["#54a24b" if s["step"] == budget["chosen"] else "#4c78a8" for s in steps]
    bars = ax.bar(range(len(steps)), [s["int8"] for s in steps], color=colors,
                  alpha=0.9, label="int8 accuracy (screening samples)")
    for bar, s in zip(bars, steps):
        if not s.get("adopted", True):
            bar.set_hatch("//")
            bar.set_alpha(0.45)
    screening = budget.get("screening")
    fp32 = screening["fp32"] if screening else budget["fp32"]  # the steps' accuracies are on the screening samples
    ax.axhline(fp32 - budget["max_drop"], color="#e45756", linestyle="--", linewidth=1,
               label=f"budget: fp32 {fp32:.2f} - {budget['max_drop']:g}")
    accs = [s["int8"] for s in steps]
    low = min([*accs, fp32 - budget["max_drop"]])
    ax.set_ylim(max(0.0, low - 2 * max(1.0, fp32 - low)), min(100.0, fp32 + 1.0) + 0.5)
    chosen = names.index(budget["chosen"]) if budget["chosen"] in names else None
    if chosen is not None:
        ax.plot([chosen], [accs[chosen]], marker="*", markersize=14, color="#f2b701", linestyle="none",
                label=f"chosen: {budget['chosen']}")
    ax.set_ylabel("int8 top-1 %" if budget["metric"] == "top1" else "int8 agreement %")
    ax.set_xticks(range(len(steps)), names, rotation=30, ha="right", fontsize=7)
    twin = ax.twinx()
    latency = [s.get("latency_ms") for s in steps]
    twin.plot(range(len(steps)), latency, color="#333", marker="o", markersize=3, linewidth=1,
              label="estimated latency (ms)")
    twin.set_ylabel("estimated latency (ms)")
    handles = ax.get_legend_handles_labels()
    more = twin.get_legend_handles_labels()
    ax.legend(handles[0] + more[0], handles[1] + more[1], loc="lower left", fontsize=7)
    ax.set_title("Automatic recipe: accuracy and estimated latency per step\n(hatched: dropped)", fontsize=9)
    return to_svg(fig)


@_styled
def weight_ranges_svg(layers: Sequence[Mapping[str, Any]]) -> str:
    """Per-channel weight ranges of each layer of report.json's ``equalization`` before (grey band) and after
    (blue outline) cross-layer equalization: one panel per layer, each output channel's min to max."""
    fig = _figure(7.5, 2.2 * max(len(layers), 1))
    axes = fig.subplots(max(len(layers), 1), 1, squeeze=False)[:, 0]
    for ax, layer in zip(axes, layers):
        before, after = layer["before"], layer["after"]
        channels = range(len(before["min"]))
        ax.fill_between(channels, before["min"], before["max"], step="mid", color="#aaaaaa", alpha=0.7,
                        label="before CLE", linewidth=0)
        for key, label in (("max", "after CLE"), ("min", None)):
            ax.step(channels, after[key], where="mid", color="#1f4e9c", linewidth=0.8, label=label)
        ax.axhline(0, color="#333", linewidth=0.5)
        ax.set_title(f"{layer['node']}: spread (largest channel |w| over the median one) "
                     f"{before['spread']:.1f} -> {after['spread']:.1f}", fontsize=8)
        ax.set_xlabel("output channel", fontsize=7)
        ax.set_ylabel("weight", fontsize=7)
        ax.legend(loc="upper right", fontsize=7)
    return to_svg(fig)


@_styled
def placement_time_svg(ops: Sequence[Mapping[str, Any]]) -> str:
    """Where the estimated time goes (report.json ``placement.ops``): total µs per op type (the
    ``SHOWN_OP_TYPES`` costliest, the rest as "other"), stacked by compute unit."""
    by_type: dict[str, dict[str, float]] = {}
    for row in ops:
        by_type.setdefault(row["op"], {}).setdefault(row["unit"], 0.0)
        by_type[row["op"]][row["unit"]] += row["time_us"]
    ranked = sorted(by_type, key=lambda k: -sum(by_type[k].values()))
    if len(ranked) > SHOWN_OP_TYPES:
        other: dict[str, float] = {}
        for kind in ranked[SHOWN_OP_TYPES - 1:]:
            for unit, t in by_type.pop(kind).items():
                other[unit] = other.get(unit, 0.0) + t
        ranked = [*ranked[:SHOWN_OP_TYPES - 1], "other"]
        by_type["other"] = other
    units = list(dict.fromkeys(unit for row in ops for unit in [row["unit"]]))
    fig = _figure(7.5, 0.9 + 0.3 * max(len(ranked), 1))
    ax = fig.add_subplot()
    left = [0.0] * len(ranked)
    for j, unit in enumerate(units):
        widths = [by_type[k].get(unit, 0.0) for k in ranked]
        ax.barh(range(len(ranked)), widths, left=left, color=UNIT_COLORS[j % len(UNIT_COLORS)], label=unit)
        left = [a + b for a, b in zip(left, widths)]
    total = sum(left) or 1.0
    for i, t in enumerate(left):
        ax.text(t, i, f" {t:.1f} µs ({100 * t / total:.0f} %)", va="center", fontsize=7)
    ax.set_yticks(range(len(ranked)), ranked, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, max(left, default=1.0) * 1.3 or 1.0)
    ax.set_xlabel("estimated time (µs) by op type, stacked by compute unit")
    ax.set_title("Where the time goes")
    ax.legend(loc="lower right", fontsize=7)
    return to_svg(fig)


@_styled
def compare_svg(reports: Sequence[Mapping[str, Any]]) -> str:
    """Accuracy against fps and against energy per inference, one point per model compared (measured fps and
    energy where a device measured them, else the estimate)."""
    fig = _figure(7.5, 3.2)
    ax_fps, ax_energy = fig.subplots(1, 2)
    for i, r in enumerate(reports):
        acc = (r.get("accuracy") or {}).get("int8")
        measured = r.get("measured") or {}
        fps = measured.get("fps", r["fps"])["int8"]
        energy = measured.get("energy_mj", r["energy_mj"])["int8"]
        color = UNIT_COLORS[i % len(UNIT_COLORS)]
        for ax, value in ((ax_fps, fps), (ax_energy, energy)):
            ax.plot([value], [0.0 if acc is None else acc], marker="o", markersize=7, color=color, linestyle="none")
            ax.annotate(r["model"], (value, 0.0 if acc is None else acc), textcoords="offset points",
                        xytext=(5, 4), fontsize=7)
    metric = next((r["accuracy"]["metric"] for r in reports if r.get("accuracy")), "top1")
    label = "int8 top-1 %" if metric == "top1" else "int8 agreement %"
    ax_fps.set_xlabel("fps (int8; measured where a device measured it)")
    ax_energy.set_xlabel("energy mJ/inference (int8)")
    for ax in (ax_fps, ax_energy):
        ax.set_ylabel(label)
        ax.margins(0.25)
    fig.suptitle(f"Accuracy against speed and energy on {reports[0]['device']}", fontsize=10)
    return to_svg(fig)


@_styled
def compress_svg(entries: Sequence[Mapping[str, Any]], columns: int = 4) -> str:
    """The compression score table (``ScoreTable.to_json()["entries"]``): one panel per scored layer, the
    model's output SQNR (dB, capped at ``SQNR_CAP``) against the fraction of the layer's MACs kept, one line
    per method. Panel ``i``'s SVG group has the id ``layer-<i>``, each line ``line-<i>-<method>``."""
    layers = list(dict.fromkeys(e["layer"] for e in entries))
    rows = max(1, math.ceil(len(layers) / columns))
    fig = _figure(2.0 * columns, 1.7 * rows + 0.6)
    axes = fig.subplots(rows, columns, squeeze=False, sharex=True, sharey=True).ravel()
    for i, (ax, layer) in enumerate(zip(axes, layers)):
        ax.set_gid(f"layer-{i}")
        for method, color in METHOD_COLORS.items():
            points = sorted((e["ratio"], min(max(e["score"]["sqnr_db"], 0.0), SQNR_CAP)) for e in entries
                            if e["layer"] == layer and e["method"] == method)
            if points:
                line = ax.plot([p[0] for p in points], [p[1] for p in points], color=color, marker=".",
                               markersize=3, linewidth=1.2, label=method)[0]
                line.set_gid(f"line-{i}-{method}")
        ax.set_title(layer[-28:], fontsize=7)
        ax.tick_params(labelsize=6)
    for ax in axes[len(layers):]:
        ax.set_visible(False)
    axes[0].set_xlim(0, 1)
    axes[0].set_ylim(0, SQNR_CAP)
    axes[0].legend(fontsize=6, loc="lower right")
    fig.supxlabel("fraction of the layer's MACs kept", fontsize=8)
    fig.supylabel(f"output SQNR (dB, capped at {SQNR_CAP:g})", fontsize=8)
    fig.suptitle("Compression: score against ratio, each layer alone", fontsize=10)
    return to_svg(fig)


@_styled
def sweep_svg(rows: Sequence[Mapping[str, Any]]) -> str:
    """Accuracy against estimated latency (log scale) for the combinations of a sweep (sweep.json's
    ``combinations``): colour by device, marker by precision (w8a16's squares larger and under w8a8's circles,
    so a profile that ran both alike shows both), filled for the ``minmax`` recipe and hollow for ``auto``, with
    the fp32 accuracy as a dashed line. Failed combinations and those without accuracy are not drawn; point
    ``i`` (of the drawn ones, in the rows' order) has the SVG id ``point-<i>``."""
    drawn = [r for r in rows if r["status"] == "ok" and r.get("accuracy")]
    devices = list(dict.fromkeys(r["device"] for r in drawn))
    fig = _figure(7.5, 4.2)
    ax = fig.add_subplot()
    for i, r in enumerate(drawn):
        color = UNIT_COLORS[devices.index(r["device"]) % len(UNIT_COLORS)]
        square = r["precision"] != "w8a8"
        point = ax.plot([r["latency_ms"]], [r["accuracy"]["int8"]], marker=PRECISION_MARKERS.get(r["precision"], "D"),
                        markersize=11 if square else 7, linestyle="none", markeredgewidth=1.5,
                        zorder=2 if square else 3, **_filled_or_hollow(color, r["recipe"] == "minmax"))[0]
        point.set_gid(f"point-{i}")
    if drawn:
        ax.axhline(drawn[0]["accuracy"]["fp32"], color="#333", linestyle="--", linewidth=0.8,
                   label=f"fp32 {drawn[0]['accuracy']['fp32']:.2f}")
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        ax.xaxis.set_minor_formatter(FuncFormatter(lambda value, _: f"{value:g}" if _mantissa(value) in (2, 5) else ""))
        ax.tick_params(axis="x", which="minor", labelsize=7)
    for j, device in enumerate(devices):
        ax.plot([], [], color=UNIT_COLORS[j % len(UNIT_COLORS)], linewidth=6, label=device)
    for precision in dict.fromkeys(r["precision"] for r in drawn):
        ax.plot([], [], marker=PRECISION_MARKERS.get(precision, "D"), color="#555", linestyle="none", label=precision)
    if any(r["recipe"] == "auto" for r in drawn):
        ax.plot([], [], marker="o", linestyle="none", label="auto recipe", **_filled_or_hollow("#555", False))
    metric = next((r["accuracy"]["metric"] for r in drawn), "top1")
    ax.set_ylabel("int8 top-1 %" if metric == "top1" else "int8 agreement %")
    ax.set_xlabel("estimated latency (ms, int8, log scale; the profile's cost model)")
    ax.margins(0.15)
    if drawn:
        ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=7, frameon=False)
    ax.set_title(f"Accuracy against latency: {len(drawn)} of {len(rows)} combinations"
                 + ("" if len(drawn) == len(rows) else " (failed or without accuracy: not drawn)"))
    return to_svg(fig)


def _filled_or_hollow(color: str, filled: bool) -> dict[str, str]:
    """A marker filled with ``color`` (white edge: visible over a same-colour marker under it), or hollow."""
    return {"markerfacecolor": color, "markeredgecolor": "white"} if filled else \
        {"markerfacecolor": "white", "markeredgecolor": color}


def _mantissa(value: float) -> int:
    return round(value / 10 ** math.floor(math.log10(value)))
