"""The sweep's printed table (sweep.json's dict): one row per combination of device, precision and recipe,
failed ones with their one-line error below it."""
from __future__ import annotations

from rich.console import Console

from edgeopt.pipeline.report.tables import fitted_table


def render_sweep(report: dict, console: Console) -> None:
    """Print every combination of a sweep (``report["combinations"]``), the fp32 accuracy they share (the same
    model on the same data), each failure's one line, and the wall time."""
    rows = report["combinations"]
    acc = next((r["accuracy"] for r in rows if r.get("accuracy")), None)
    table_rows = []
    for r in rows:
        config = f"{r['precision']} {r['recipe']}"
        if r["status"] != "ok":
            table_rows.append([r["device"], config, "failed", "", "", ""])
            continue
        int8 = "" if r["accuracy"] is None else f"{r['accuracy']['int8']:.2f}"
        ran = r["precision_mode"] + (" *" if r["recipe_chosen"] else "")
        table_rows.append([r["device"], config, ran, int8, f"{r['latency_ms']:.3f}", f"{r['seconds']:.1f}"])
    # short one-line headers leave the device names room (fps: in sweep.json and report.html)
    headers = ["device", "config", "ran as", "int8", "est. ms", "task s"]
    console.print(fitted_table(f"edgeopt sweep: {report['model']}", headers, table_rows, console.width,
                               left=(0, 1, 2)))
    if acc is not None:
        metric = "top-1" if acc["metric"] == "top1" else "top-1 agreement with fp32"
        console.print(f"int8: {metric} % on {acc['n']} samples; fp32 {acc['fp32']:.2f} % (every combination); "
                      "config: precision and recipe asked for", highlight=False)
    if any(r.get("recipe_chosen") for r in rows):
        console.print("*: the auto recipe's chosen step is in sweep.json (recipe_chosen) and on each page",
                      highlight=False)
    for r in rows:
        if r["status"] != "ok":
            console.print(f"[bold red]failed[/] {r['name']}: {r['error']}", highlight=False, soft_wrap=True)
    engine = report["engine"]
    where = f"on Ray ({engine['cpus']} CPUs)" if engine["name"] == "ray" else engine["name"]
    done = sum(r["status"] == "ok" for r in rows)
    console.print(f"{done} of {len(rows)} combinations deployed, {report['wall_s']:.1f} s wall time {where}; "
                  f"sweep.json and report.html in {report['out']}", highlight=False)
