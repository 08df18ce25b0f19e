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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cifar_resnet import write_resnet_files  # noqa: E402

from edgeopt.workflows.deploy import deploy  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calib-size", type=int, default=1000)
    parser.add_argument("--device", default="arm-cortex-a78-xnnpack")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        onnx_path, test, calib = write_resnet_files(tmp, 20, args.calib_size)
        start = time.perf_counter()
        result = deploy(str(onnx_path), args.device, data=test, calib=calib,
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
