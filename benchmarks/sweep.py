"""ResNet-20 (CIFAR-10) swept over device profiles x precisions: in-process, one task at a time, then on a
local Ray with ``--workers`` CPUs; the same rows both ways, and each way's wall time.

    python benchmarks/sweep.py [--devices A,B] [--precisions w8a8,w8a16] [--workers 2] [--out DIR] [--skip-in-process]

The checkpoint from ../shared/data is exported to a float .onnx file and CIFAR-10 test1000 and 500 training
images are written as .npz files, so every task reads paths, as ``edgeopt sweep resnet20.onnx --data test.npz
--calib calib.npz`` does. The Ray run's folder (``--out``, default a temporary one) keeps sweep.json, report.html
and each combination's folder. Needs Ray for the second run (``pip install 'edgeopt[ray]'``). Skips (exit 0)
when ../shared/data is absent.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from rich.console import Console

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cifar_resnet import load_checkpoint
from shared_data import cifar10_nchw, require

from edgeopt.device_profiles import list_profiles
from edgeopt.pipeline.frontend.load import export_torch
from edgeopt.pipeline.report.sweep import render_sweep
from edgeopt.workflows.sweep import sweep

SAME = ("name", "status", "error", "precision_mode", "accuracy", "latency_ms", "fps", "energy_mj", "macs",
        "int8_tflite_bytes")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", default=",".join(list_profiles()))
    parser.add_argument("--precisions", default="w8a8,w8a16")
    parser.add_argument("--recipes", default="minmax")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--calib-size", type=int, default=500)
    parser.add_argument("--out", type=Path, default=None, help="keep the Ray sweep's folder here")
    parser.add_argument("--skip-in-process", action="store_true", help="only the Ray run")
    args = parser.parse_args()
    ckpt, test, calib = require("models/resnet_cifar10/resnet20-12fca82f.th", "cifar10/test1000_lossless.npz",
                                "cifar10/calib_train5000_lossless.npz")
    combos = {"devices": args.devices.split(","), "precisions": args.precisions.split(","),
              "recipes": args.recipes.split(",")}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        model = tmp / "resnet20.onnx"
        model.write_bytes(export_torch(load_checkpoint(ckpt, 20), torch.zeros(1, 3, 32, 32)).SerializeToString())
        x, y = cifar10_nchw(test)
        np.savez(tmp / "test.npz", x=x, y=y)
        np.savez(tmp / "calib.npz", x=cifar10_nchw(calib, args.calib_size)[0])
        shared = {"data": tmp / "test.npz", "calib": tmp / "calib.npz", "calib_size": args.calib_size}
        walls = {}
        if not args.skip_in_process:
            start = time.perf_counter()
            local = sweep(str(model), **combos, out=tmp / "in-process", use_ray=False, **shared)
            walls["in-process, one at a time"] = time.perf_counter() - start
        start = time.perf_counter()
        on_ray = sweep(str(model), **combos, out=args.out or tmp / "ray", use_ray=True, workers=args.workers,
                       **shared)
        walls[f"Ray, {args.workers} workers (Ray's start included)"] = time.perf_counter() - start
    render_sweep(on_ray.report, Console(width=80))
    print(f"ResNet-20, CIFAR-10 test1000, {args.calib_size} calibration images, {len(on_ray.rows)} combinations, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    for how, wall in walls.items():
        print(f"  {how:45s} {wall:7.1f} s wall")
    if not args.skip_in_process:
        same = [{k: r.get(k) for k in SAME} for r in local.rows] == [{k: r.get(k) for k in SAME} for r in on_ray.rows]
        print(f"  the same rows both ways: {'yes' if same else 'NO'}")
        print(f"  sum of the tasks' own seconds: in-process {sum(r['seconds'] or 0 for r in local.rows):.1f} s, "
              f"on Ray {sum(r['seconds'] or 0 for r in on_ray.rows):.1f} s")


if __name__ == "__main__":
    main()
