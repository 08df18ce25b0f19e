"""The sweep's printed table (sweep.json's dict): one row per combination of device, precision and recipe,
failed ones with their one-line error below it."""
from __future__ import annotations

from rich.console import Console

from edgeopt.pipeline.report.tables import fitted_table


def render_sweep(report: dict, console: Console) -> None:
    """Print every combination of a sweep (``report["combinations"]``) and the wall time it took."""
    rows = report["combinations"]
    metric = next((r["accuracy"]["metric"] for r in rows if r.get("accuracy")), "top1")
    table_rows = []
    for r in rows:
        config = f"{r['precision']} {r['recipe']}"
        if r["status"] != "ok":
            table_rows.append([r["device"], config, "failed", "", "", "", "", ""])
            continue
        acc = r["accuracy"]
        table_rows.append([r["device"], config, r["precision_mode"],
                           "" if acc is None else f"{acc['fp32']:.2f}", "" if acc is None else f"{acc['int8']:.2f}",
                           f"{r['latency_ms']:.3f}", f"{r['fps']:.0f}", f"{r['seconds']:.1f}"])
    label = "top-1" if metric == "top1" else "agree"
    headers = ["device", "precision recipe", "ran as", f"fp32 {label}", f"int8 {label}", "est. ms", "est. fps",
               "task s"]
    console.print(fitted_table(f"edgeopt sweep: {report['model']}", headers, table_rows, console.width,
                               left=(0, 1, 2)))
    for r in rows:
        if r["status"] != "ok":
            console.print(f"[bold red]failed[/] {r['name']}: {r['error']}", highlight=False, soft_wrap=True)
    engine = report["engine"]
    where = f"on Ray ({engine['cpus']} CPUs)" if engine["name"] == "ray" else engine["name"]
    done = sum(r["status"] == "ok" for r in rows)
    console.print(f"{done} of {len(rows)} combinations deployed, {report['wall_s']:.1f} s wall time {where}; "
                  f"sweep.json and report.html in {report['out']}", highlight=False)
