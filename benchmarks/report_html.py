"""The size of report.html and the time it adds to a deploy, on real models from ../shared/data.

    python benchmarks/report_html.py [--model resnet20|efficientnet-lite0] [--out DIR] [--samples N]

Deploys the model with ``--max-drop`` and ``--sensitivity`` (every section of the page: recipe, sensitivity,
equalization, placement), keeping the output folder, then measures in a fresh Python process what the page
costs: importing the renderer (Jinja2, matplotlib) and drawing the plots and rendering report.html from the
deploy's report.json, as deploy does (the Model Explorer files are a JSON dump; CLE's before/after ranges,
when the recipe tried it, are in the deploy's own time). Prints the page's size. Skips (exit 0) when
../shared/data is absent. Goals: under 2 s added, under 2 MB for EfficientNet-Lite0.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from shared_data import require

from edgeopt.pipeline.frontend.load import export_torch
from edgeopt.workflows.deploy import deploy

RENDER = """
import json, sys, time
import edgeopt.pipeline.report, edgeopt.workflows.recipe  # what a deploy has loaded before its report
start, cpu = time.perf_counter(), time.process_time()
from edgeopt.pipeline.report.html import deploy_html, deploy_plots  # Jinja2, matplotlib
imported = time.perf_counter()
report = json.loads(open(sys.argv[1]).read())
html = deploy_html(report, deploy_plots(report))  # as deploy's _write_report: the plots once
done = time.perf_counter()
print(json.dumps({"import_s": imported - start, "render_s": done - imported, "cpu_s": time.process_time() - cpu}))
"""

def _resnet20(tmp: Path, samples: int) -> tuple[Path, Path, Path]:
    from cifar_resnet import write_resnet_files

    return write_resnet_files(tmp, 20, 1000, samples)


def _efficientnet_lite0(tmp: Path, samples: int) -> tuple[Path, Path, Path]:
    from imagenet import calib_samples, efficientnet_lite0, val1300

    require("imagenet/dataset.txt")
    model = tmp / "efficientnet_lite0.onnx"
    model.write_bytes(export_torch(efficientnet_lite0(), torch.zeros(1, 3, 224, 224)).SerializeToString())
    x, y = val1300(samples)
    np.savez(tmp / "test.npz", x=x, y=y)
    np.savez(tmp / "calib.npz", x=calib_samples())
    return model, tmp / "test.npz", tmp / "calib.npz"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=("resnet20", "efficientnet-lite0"), default="resnet20")
    parser.add_argument("--device", default="arm-cortex-a78-xnnpack")
    parser.add_argument("--samples", type=int, default=1000, help="evaluation samples")
    parser.add_argument("--max-drop", type=float, default=0.5)
    parser.add_argument("--out", type=Path, default=None, help="keep the deploy's folder here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        model, data, calib = (_resnet20 if args.model == "resnet20" else _efficientnet_lite0)(tmp, args.samples)
        out = args.out or tmp / "out"
        start = time.perf_counter()
        result = deploy(str(model), args.device, data=data, calib=calib, out=out, max_drop=args.max_drop,
                        sensitivity=True)
        deploy_s = time.perf_counter() - start
        probe = subprocess.run([sys.executable, "-c", RENDER, str(out / "report.json")], check=True,
                               capture_output=True, text=True)
        cost = json.loads(probe.stdout)
        sizes = {p.name: p.stat().st_size for p in sorted(out.iterdir()) if p.suffix in (".html", ".json", ".svg")}
    report = result.report
    print(f"{args.model} on {args.device}: {len(report['placement']['ops'])} ops, {len(report['recipe'])} recipe "
          f"steps, {len(report['sensitivity'])} sensitivity entries, "
          f"{len((report.get('equalization') or {}).get('layers', []))} equalization panels")
    print(f"  deploy wall time (report included)        {deploy_s:7.1f} s")
    print(f"  report: import Jinja2 + matplotlib        {cost['import_s']:7.2f} s")
    print(f"  report: plots + report.html               {cost['render_s']:7.2f} s")
    print(f"  time the report adds to a deploy           {cost['import_s'] + cost['render_s']:7.2f} s (goal < 2 s); "
          f"CPU time {cost['cpu_s']:.2f} s (wall time grows with the machine's load; load average "
          f"{os.getloadavg()[0]:.1f})")
    for name, size in sizes.items():
        print(f"  {name:28s} {size / 1024:8.1f} KiB")


if __name__ == "__main__":
    main()
