"""The recipe's last step: mixed precision, promoting the most sensitive layers in doubling numbers."""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace

from edgeopt.pipeline.quantize.mixed_precision import rank_promotions
from edgeopt.pipeline.quantize.sensitivity import sensitivity_of
from edgeopt.workflows.recipe.builder import Builder, Built
from edgeopt.workflows.recipe.results import MixedPrecision, RecipeConfig


class MixedPrecisionStep:
    """Promotes the most sensitive layers of a configuration, doubling their number until in budget."""

    def __init__(self, builder: Builder, samples: int) -> None:
        self.builder, self.samples = builder, samples
        self.seen: MixedPrecision | None = None

    def run(self, base: tuple[float, str, RecipeConfig, Built], attempt: Callable[..., bool]) -> bool:
        """Rank the layers of ``base`` (the adopted step: accuracy, name, configuration, build) by sensitivity
        and try promoting ``k`` = 1, 2, 4, ... of them; True once in budget.

        The sensitivity analysis's time is counted in the first mixed-precision step.
        """
        _, base_step, config, (_, base_program, base_latency_ms) = base
        start = time.perf_counter()
        qgraph = self.builder.int8(config)
        layers = sensitivity_of(qgraph, self.builder.x, samples=self.samples)
        target = self.builder.target
        ranked = rank_promotions(qgraph.graph, layers, int16_allowed=target.int16_allowed,
                                 float_allowed=target.float_allowed(base_program), base_plan=self.builder.base_plan)
        extra = time.perf_counter() - start
        self.seen = MixedPrecision(tuple(layers), min(self.samples, len(self.builder.x)), extra, tuple(ranked),
                                   base_step, base_latency_ms)
        k = 1
        while ranked:
            k = min(k, len(ranked))
            label = f"all {k}" if k == len(ranked) > 1 else str(k)
            name = f"mixed precision: {label} layer{'s' if k > 1 else ''}"
            if attempt(name, replace(config, promoted=tuple(ranked[:k])), extra):
                return True
            extra = 0.0
            if k == len(ranked):
                break
            k *= 2
        return False
