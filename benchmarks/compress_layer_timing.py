"""Why fewer MACs is not more fps: one ResNet-32 3x3 layer at each stage's shape, timed alone under LiteRT
XNNPACK (one thread, int8 and float32) at full width, with fewer output or input channels (pruning), and
as the k x 1 then 1 x k pair of a spatial SVD at several ranks.

    python benchmarks/compress_layer_timing.py [--runs 300]

Each program is built with the same small-program builder ``edgeopt profiles calibrate host`` uses and
timed the same way (median of ``--runs`` invocations). MACs are printed beside the time, both relative
to the full-width layer, so a saving in MACs that buys no time shows as a ratio near 1.00.
"""
from __future__ import annotations

import argparse

import numpy as np

from edgeopt.workflows.calibrate_host import Dtype, _Builder, conv_program, time_program

STAGES = ((32, 16), (16, 32), (8, 64))  # ResNet-32's three stages: H (= W) and channels
OPTIONS = {"stride_h": 1, "stride_w": 1, "dilation_h_factor": 1, "dilation_w_factor": 1,
           "fused_activation_function": "NONE"}


def svd_pair_program(dtype: Dtype, h: int, c: int, rank: int, kernel: int = 3):
    """A k x 1 CONV_2D (C→rank) then a 1 x k CONV_2D (rank→C) on [1, H, H, C], both SAME and stride 1."""
    b = _Builder("svd_pair", dtype, np.random.default_rng(0))
    x, mid, y = b.activation("x", (1, h, h, c)), b.activation("mid", (1, h, h, rank)), b.activation("y", (1, h, h, c))
    b.op("CONV_2D", (x, *b.weights("w0", (rank, kernel, 1, c), 0)), mid, padding="SAME", **OPTIONS)
    b.op("CONV_2D", (mid, *b.weights("w1", (c, 1, kernel, rank), 0)), y, padding="SAME", **OPTIONS)
    return b.build((x,), (y,))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=300)
    args = parser.parse_args()

    def timed(program) -> float:
        return time_program(program, runs=args.runs, warmup=args.runs // 10)

    for dtype in ("int8", "float32"):
        for h, c in STAGES:
            full = timed(conv_program(dtype, h, c, c, 3))
            cells = [f"{dtype} {h}x{h} 3x3 {c}->{c}: {full * 1e6:.1f} us"]
            for n in sorted({c // 4, c // 2, 3 * c // 4, c - 5} - {0}):
                cells.append(f"out {n}: MACs {n / c:.2f} time {timed(conv_program(dtype, h, c, n, 3)) / full:.2f}")
            for n in sorted({c // 4, c // 2, 3 * c // 4, c - 5} - {0}):
                cells.append(f"in {n}: MACs {n / c:.2f} time {timed(conv_program(dtype, h, n, c, 3)) / full:.2f}")
            for rank in sorted({c // 4, c // 2, c} - {0}):
                cells.append(f"svd rank {rank}: MACs {2 * rank / (3 * c):.2f} "
                             f"time {timed(svd_pair_program(dtype, h, c, rank)) / full:.2f}")
            print("\n    ".join(cells), flush=True)


if __name__ == "__main__":
    main()
