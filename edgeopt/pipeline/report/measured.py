"""measured: the rows and lines a measuring target (host, adb) adds to the deploy table, from report.json's
``measured`` dict (``workflows.measure``): int8 and fp32 side by side, the tool, the delegates."""
from __future__ import annotations

from rich.console import Console

PRECISIONS = ("fp32", "int8")  # the table's column order


def measured_rows(measured: dict) -> list[tuple[str, str, str]]:
    """The deploy table's measured rows: label, fp32 cell, int8 cell ("-" where a file was not measured)."""

    def cells(key: str, fmt: str) -> list[str]:
        return [fmt.format(measured[key][p]) if measured[key].get(p) is not None else "-" for p in PRECISIONS]

    rows = [("latency ms (measured)", *cells("latency_ms", "{:.3f}")), ("fps (measured)", *cells("fps", "{:.1f}"))]
    if "energy_mj" in measured:
        energy = measured["energy_mj"]
        rows.append(("energy mJ/inference (fuel gauge)", *(
            f"{energy[p]:.4f} ± {energy['uncertainty'][p]:.4f}" if p in energy else "-" for p in PRECISIONS)))
    return rows


def render_measured(measured: dict, console: Console) -> None:
    """Print how the figures were measured and what each file's delegate took."""
    runs = ", ".join(f"{p} {n}" for p, n in measured.get("runs", {}).items() if n)
    console.print(f"measured on {measured['target']} with {measured['tool']}, {measured.get('threads')} "
                  f"thread(s), {measured.get('statistic', 'mean')} of the timed runs"
                  + (f" ({runs})" if runs else ""), highlight=False)
    for precision, delegates in measured["delegates"].items():
        for d in delegates:
            took = (f"{d['replaced']} of {d['total'] or '?'} ops" if d["replaced"] is not None else
                    {"all": "every op", "part": "part of the graph", "none": "no op"}.get(d["executes"], "?"))
            kept = f" (left to the CPU kernels: {', '.join(d['kept'])})" if d.get("kept") else ""
            console.print(f"{precision}: delegate {d['name']} took {took}{kept}", highlight=False)
    if "delegates_note" in measured:
        console.print(f"[yellow]delegates:[/] {measured['delegates_note']}")
    for warning in measured.get("energy_mj", {}).get("warnings", []):
        console.print(f"[yellow]energy warning:[/] {warning}")
