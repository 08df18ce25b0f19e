"""Literal ports of TFLite's and gemmlowp's integer arithmetic (C semantics, Python ints, loop by loop), the
independent references the vectorised kernels are checked against."""
from __future__ import annotations

from typing import Any

import numpy as np

from edgeopt.runtimes.reference.arith.padding import compute_padding_height_width

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1


def srdhm_gemmlowp(a: int, b: int) -> int:
    """gemmlowp SaturatingRoundingDoublingHighMul, literally (C's truncating division)."""
    if a == b == INT32_MIN:
        return INT32_MAX
    ab = a * b
    nudge = (1 << 30) if ab >= 0 else 1 - (1 << 30)
    return trunc_div(ab + nudge, 1 << 31)


def trunc_div(a: int, b: int) -> int:
    """C's integer division (truncating towards zero), for b > 0."""
    q = abs(a) // b
    return q if a >= 0 else -q


def rdbpot_gemmlowp(x: int, exponent: int) -> int:
    """gemmlowp RoundingDivideByPOT, literally."""
    mask = (1 << exponent) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (1 if x < 0 else 0)
    return (x >> exponent) + (1 if remainder > threshold else 0)


def wrap32(v: int) -> int:
    return (v + 2**31) % 2**32 - 2**31


def mbqm_double_gemmlowp(x: int, m: int, shift: int) -> int:
    left, right = max(shift, 0), max(-shift, 0)
    return rdbpot_gemmlowp(srdhm_gemmlowp(wrap32(x * (1 << left)), m), right)


def mbqm_single_tflite(x: int, m: int, shift: int) -> int:
    total = 31 - shift
    return wrap32((x * m + (1 << (total - 1))) >> total)


def conv_loops(x, w, bias, p, rounding, depthwise):  # type: ignore[no-untyped-def]
    """``ConvPerChannel`` / ``DepthwiseConvPerChannel`` as the C++ reads (int32 arithmetic)."""
    n, h, wd, ci = x.shape
    co = w.shape[3] if depthwise else w.shape[0]
    kh, kw = w.shape[1], w.shape[2]
    out = np.zeros((n, p["output_height"], p["output_width"], co), np.int8)
    for b in range(n):
        for oy in range(p["output_height"]):
            for ox in range(p["output_width"]):
                for c in range(co):
                    acc = 0
                    for i in range(kh):
                        iy = oy * p["stride_height"] - p["pad_height"] + p["dilation_height_factor"] * i
                        for j in range(kw):
                            ix = ox * p["stride_width"] - p["pad_width"] + p["dilation_width_factor"] * j
                            if not (0 <= iy < h and 0 <= ix < wd):
                                continue
                            if depthwise:
                                k = c // p["depth_multiplier"]
                                acc += int(w[0, i, j, c]) * (int(x[b, iy, ix, k]) + p["input_offset"])
                            else:
                                for k in range(ci):
                                    acc += int(w[c, i, j, k]) * (int(x[b, iy, ix, k]) + p["input_offset"])
                    acc = wrap32(acc + int(bias[c]))  # what the C++ int32 accumulator holds
                    m, s = int(p["output_multiplier"][c]), int(p["output_shift"][c])
                    v = (mbqm_single_tflite if rounding == "single" else mbqm_double_gemmlowp)(acc, m, s)
                    v = min(max(v + p["output_offset"], p["activation_min"]), p["activation_max"])
                    out[b, oy, ox, c] = v
    return out


def pool_loops(x, p):  # type: ignore[no-untyped-def]
    n, h, wd, c = x.shape
    out = np.zeros((n, p["output_height"], p["output_width"], c), np.int8)
    for b in range(n):
        for oy in range(p["output_height"]):
            for ox in range(p["output_width"]):
                for ch in range(c):
                    y0 = oy * p["stride_height"] - p["pad_height"]
                    x0 = ox * p["stride_width"] - p["pad_width"]
                    vals = [int(x[b, y0 + i, x0 + j, ch]) for i in range(p["filter_height"])
                            for j in range(p["filter_width"]) if 0 <= y0 + i < h and 0 <= x0 + j < wd]
                    acc, cnt = sum(vals), len(vals)
                    avg = trunc_div(acc + cnt // 2, cnt) if acc > 0 else trunc_div(acc - cnt // 2, cnt)
                    out[b, oy, ox, ch] = min(max(avg, p["activation_min"]), p["activation_max"])
    return out


def random_window_params(
    rng: np.random.Generator, h: int, w: int, k: tuple[int, int], dilated: bool
) -> dict[str, Any]:
    stride = int(rng.integers(1, 3)), int(rng.integers(1, 3))
    dilation = (int(rng.integers(1, 3)), int(rng.integers(1, 3))) if dilated else (1, 1)
    padding = str(rng.choice(["SAME", "VALID"]))
    win = compute_padding_height_width(padding, h, w, k[0], k[1], *stride, *dilation)
    return {
        "stride_height": stride[0], "stride_width": stride[1], "dilation_height_factor": dilation[0],
        "dilation_width_factor": dilation[1], "pad_height": win.pad_height, "pad_width": win.pad_width,
        "output_height": win.output_height, "output_width": win.output_width,
    }
