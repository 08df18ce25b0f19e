"""Compress ResNet-32 (CIFAR-10) to 50 % and 70 % of its MACs; int8 top-1 and host fps before and after.

    python benchmarks/compress.py [--targets 0.5,0.7] [--calib-size 256] [--methods svd,prune]

The checkpoint is exported to a float .onnx, compressed label-free (layers scored by output SQNR against
the uncompressed model on CIFAR-10 *training* images, pruning re-fit on the same images), and each model
is deployed (arm-cortex-a78-xnnpack, calibrated on 500 training images) and evaluated on test1000 in the
integer executor. Then each compressed model is fine-tuned without labels (distillation from the
uncompressed model on 1024 other training images, ``--finetune-epochs``) and deployed again. Host fps:
the int8 .tflite under LiteRT's default kernels (XNNPACK), one thread, median of 200 timed invocations.
Skips (exit 0) when ../shared/data is absent.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cifar_resnet import load_checkpoint  # noqa: E402
from shared_data import cifar10_nchw, require  # noqa: E402

from edgeopt.pipeline.emit.onnx import graph_to_onnx, write_onnx  # noqa: E402
from edgeopt.pipeline.evaluate import quantize_input  # noqa: E402
from edgeopt.pipeline.frontend.load import export_torch, load  # noqa: E402
from edgeopt.torch.distill import distill  # noqa: E402
from edgeopt.runtimes.litert import LiteRT  # noqa: E402
from edgeopt.workflows.compress import compress  # noqa: E402
from edgeopt.workflows.deploy import deploy  # noqa: E402


def _host_fps(result, x: np.ndarray) -> float:
    runtime = LiteRT(result.out_dir / "model.int8.tflite", kernels="default", num_threads=1)
    times = runtime.time_inference([quantize_input(result.program, x[:1])], runs=200, warmup=20)
    return 1.0 / statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", default="0.5,0.7")
    parser.add_argument("--methods", default="svd,prune")
    parser.add_argument("--ratios", default="0.25,0.5,0.75", help="candidate fractions of a layer's MACs")
    parser.add_argument("--calib-size", type=int, default=64)
    parser.add_argument("--finetune-epochs", type=int, default=3)
    parser.add_argument("--finetune-size", type=int, default=1024)
    parser.add_argument("--device", default="arm-cortex-a78-xnnpack")
    args = parser.parse_args()
    ckpt, test, calib = require("models/resnet_cifar10/resnet32-d509ac18.th", "cifar10/test1000_lossless.npz",
                                "cifar10/calib_train5000_lossless.npz")
    cpu0, wall0 = time.process_time(), time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        onnx_path = tmp / "resnet32.onnx"
        onnx_path.write_bytes(export_torch(load_checkpoint(ckpt, 32), torch.zeros(1, 3, 32, 32)).SerializeToString())
        x, y = cifar10_nchw(test)
        np.savez(tmp / "test.npz", x=x, y=y)
        pool = cifar10_nchw(calib, 500 + args.finetune_size)[0]
        calib_x, finetune_x = pool[:500], pool[500:]
        np.savez(tmp / "calib.npz", x=calib_x)
        np.savez(tmp / "compress_calib.npz", x=calib_x[-args.calib_size:])

        def deployed(model: Path, name: str):
            return deploy(str(model), args.device, data=tmp / "test.npz", calib=tmp / "calib.npz",
                          out=tmp / f"deploy-{name}")

        rows = []
        base = deployed(onnx_path, "base")
        rows.append(("uncompressed", 1.0, base, 0.0, None))
        for target in (float(t) for t in args.targets.split(",")):
            start = time.process_time()
            result = compress(str(onnx_path), target, out=tmp / "compress", calib=tmp / "compress_calib.npz",
                              methods=tuple(args.methods.split(",")), calib_size=args.calib_size,
                              ratios=tuple(float(r) for r in args.ratios.split(",")))
            seconds = time.process_time() - start
            ratio = result.report["macs_after"] / result.report["macs_before"]
            rows.append((f"compressed {target:.0%}", ratio,
                         deployed(tmp / "compress" / "model.compressed.onnx", str(target)), seconds, result))
            if args.finetune_epochs:
                start = time.process_time()
                tuned = distill(result.graph, load(str(onnx_path)).graph, finetune_x, epochs=args.finetune_epochs,
                                progress=print)
                path = tmp / f"finetuned{target}.onnx"
                write_onnx(graph_to_onnx(tuned), path)
                rows.append(("  + fine-tuned", ratio, deployed(path, f"ft{target}"), time.process_time() - start,
                             result))
        print(f"ResNet-32 CIFAR-10 test1000, device {args.device}, methods {args.methods}, ratios {args.ratios}, "
              f"label-free scoring "
              f"on {args.calib_size} training images, distillation {args.finetune_epochs} epochs on "
              f"{len(finetune_x)} other training images")
        print(f"{'model':18s} {'MACs':>7s} {'fp32 top-1':>10s} {'int8 top-1':>10s} {'est. fps':>9s} "
              f"{'host fps':>9s} {'CPU s':>7s} {'table':>7s}")
        base_fps = _host_fps(base, x)
        for name, ratio, dep, seconds, result in rows:
            acc = dep.report["accuracy"]
            fps = base_fps if result is None else _host_fps(dep, x)
            table = "" if result is None else ("cached" if result.table_cached else "scored")
            print(f"{name:18s} {ratio:7.3f} {acc['fp32']:9.2f}% {acc['int8']:9.2f}% {dep.report['fps']['int8']:9.1f} "
                  f"{fps:9.1f} {seconds:7.1f} {table:>7s}   (host fps x{fps / base_fps:.2f})")
        for name, _, _, _, result in rows[1:]:
            if name.strip().startswith("+"):
                continue
            print(f"{name}: " + ", ".join(f"{r.layer.split('/')[-2] if '/' in r.layer else r.layer}:"
                                          f"{r.method}@{r.ratio:.2f}" for r in result.rows))
    print(f"CPU seconds for the whole run: {time.process_time() - cpu0:.0f} (wall {time.perf_counter() - wall0:.0f})")


if __name__ == "__main__":
    main()
