"""A compressed model's price on a device: its int8 program's latency in the profile's cost model.

Fewer MACs is not more speed: real kernels round channel counts up to their block (a profile measured by
``edgeopt profiles calibrate host`` knows by how much), and small layers are bound by memory or per-op
overhead. Ratios chosen for ``--target-latency`` are therefore priced on the program that would ship:
the graph optimized, quantized on a few calibration samples (the ranges do not change the price), lowered
and placed as ``deploy`` does, then ``runtimes.cost.estimate``.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np

from edgeopt.ir import Graph
from edgeopt.pipeline.optimize import optimize
from edgeopt.pipeline.target import Target
from edgeopt.runtimes.cost import estimate

PRICING_SAMPLES = 4


def int8_latency_ms(graph: Graph, target: Target, x: np.ndarray) -> float:
    """Estimated latency (ms) of ``graph``'s int8 program on ``target``'s device."""
    optimized = optimize(graph)
    resolved = target.check(optimized)
    qgraph = target.quantize(optimized, target.ranges(optimized, x[:PRICING_SAMPLES]), resolved.plan)
    shipped = target.ship(qgraph)
    return estimate(shipped.program, target.profile, shipped.placement).latency_ms


def latency_pricer(target: Target, x: np.ndarray) -> Callable[[Graph], float]:
    """``int8_latency_ms`` bound to ``target`` and the calibration inputs ``x``."""
    return lambda graph: int8_latency_ms(graph, target, x)
