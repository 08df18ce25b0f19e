"""Deploy ResNet-20 (CIFAR-10) from ../shared/data through the ONNX path; print fp32 and int8 top-1.

    python benchmarks/resnet20_deploy.py [--calib-size 1000]

The checkpoint is exported to a float .onnx file first, so the benchmark exercises the same path as
`edgeopt deploy resnet20.onnx --data test.npz --calib calib.npz`. int8 top-1 is measured by running the
lowered int8 program in the integer reference executor on CIFAR-10 test1000. Expectation: within 0.5
point of fp32. Skips (exit 0) when ../shared/data is absent.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cifar_resnet import load_checkpoint  # noqa: E402
from shared_data import cifar10_nchw, require  # noqa: E402

from edgeopt.workflows.deploy import deploy  # noqa: E402
from edgeopt.pipeline.frontend.load import export_torch  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calib-size", type=int, default=1000)
    parser.add_argument("--device", default="arm-cortex-a78-xnnpack")
    args = parser.parse_args()
    ckpt, test, calib = require("models/resnet_cifar10/resnet20-12fca82f.th", "cifar10/test1000_lossless.npz",
                                "cifar10/calib_train5000_lossless.npz")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        onnx_path = tmp / "resnet20.onnx"
        onnx_path.write_bytes(export_torch(load_checkpoint(ckpt, 20), torch.zeros(1, 3, 32, 32)).SerializeToString())
        x, y = cifar10_nchw(test)
        np.savez(tmp / "test.npz", x=x, y=y)
        np.savez(tmp / "calib.npz", x=cifar10_nchw(calib, args.calib_size)[0])
        start = time.perf_counter()
        result = deploy(str(onnx_path), args.device, data=tmp / "test.npz", calib=tmp / "calib.npz",
                        out=tmp / "out", calib_size=args.calib_size)
        elapsed = time.perf_counter() - start
    acc = result.report["accuracy"]
    print(f"ResNet-20 CIFAR-10 test1000 (n={acc['n']}), calibration {args.calib_size} training images, "
          f"device {args.device}")
    print(f"  fp32 top-1 (ONNX Runtime)           {acc['fp32']:6.2f} %")
    print(f"  int8 top-1 (integer executor)       {acc['int8']:6.2f} %   ({acc['int8'] - acc['fp32']:+.2f} points)")
    print(f"  int8/fp32 top-1 agreement           {acc['agreement']:6.2f} %")
    print(f"  deploy wall time                    {elapsed:6.1f} s")
    print(f"  goal: int8 within 0.5 point of fp32: {'met' if acc['fp32'] - acc['int8'] <= 0.5 else 'MISSED'}")


if __name__ == "__main__":
    main()
