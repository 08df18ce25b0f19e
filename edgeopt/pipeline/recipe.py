"""The automatic recipe (``edgeopt deploy --max-drop``): try the post-training techniques in order of
cost, measure each on the integer program that would ship, stop at the first that meets the budget.

Steps, in order (like AIMET's AutoQuant, but every number comes from the integer executor):

1. ``min/max``: global min/max ranges, nearest-rounded per-channel weights.
2. ``+ CLE``: cross-layer equalization with high-bias absorption (recalibrated afterwards).
3. ``+ bias correction``: empirical, on ``BIAS_CORRECTION_SAMPLES`` calibration samples.
4. ``ranges: percentile``, ``ranges: mse``, ``ranges: sqnr``: activation range setting.
5. ``+ AdaRound``: adaptive weight rounding.
6. ``w8a16 on k ops``: int16 activations on the ``k`` most sensitive ops the profile and the 16x8
   kernels allow, ``k`` doubling until all are int16.

Each technique is adopted into the running configuration only if its accuracy is at least the best so
far (a step that hurts is reported and dropped), so later steps build on what helped. Accuracy is top-1
on the evaluation data with labels, else top-1 agreement with the float model (fp32 counts as 100).
The first configuration within ``max_drop`` points of fp32 is returned; when none is, the best one is,
with one warning.

Mixed-precision sensitivity: each candidate op is made int16 alone and scored by the SQNR of the
program's output against the float model on ``SENSITIVITY_SAMPLES`` evaluation samples; the ops whose
int16 version gains most are promoted first.
"""
from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace

import numpy as np

from edgeopt.ir import Graph, QuantizedGraph
from edgeopt.pipeline.calibrate import TensorStats, calibrate
from edgeopt.pipeline.evaluate import run_float, run_int8, top1
from edgeopt.pipeline.lower import lower
from edgeopt.pipeline.optimize.cross_layer_equalization import cross_layer_equalization
from edgeopt.pipeline.quantize import quantize_minmax
from edgeopt.pipeline.quantize.adaround import AdaRoundConfig, adaround
from edgeopt.pipeline.quantize.bias_correction import empirical_bias_correction
from edgeopt.pipeline.quantize.minmax import SHARED_SCALE_OPS
from edgeopt.pipeline.quantize.precision import apply_precision, int16_support
from edgeopt.pipeline.quantize.range_setting import set_ranges
from edgeopt.qprogram import QProgram

log = logging.getLogger(__name__)

BIAS_CORRECTION_SAMPLES = 32
SENSITIVITY_SAMPLES = 64
RANGE_STEPS = ("percentile", "mse", "sqnr")


@dataclass(frozen=True)
class RecipeStep:
    """One tried configuration: its name, int8 accuracy, drop from fp32 (points) and build+eval time."""

    step: str
    int8: float
    drop: float
    seconds: float

    def as_dict(self) -> dict:
        return {"step": self.step, "int8": round(self.int8, 4), "drop": round(self.drop, 4),
                "seconds": round(self.seconds, 3)}


@dataclass(frozen=True)
class RecipeConfig:
    """What the recipe applies; each step changes one field."""

    cle: bool = False
    bias_correction: bool = False
    range_method: str = "minmax"
    adaround: bool = False
    int16: frozenset[str] = field(default_factory=frozenset)


@dataclass(frozen=True)
class RecipeResult:
    """The chosen quantized graph and program, every step tried, and whether the budget was met."""

    qgraph: QuantizedGraph
    program: QProgram
    config: RecipeConfig
    steps: tuple[RecipeStep, ...]
    fp32: float
    metric: str
    max_drop: float
    met: bool
    chosen: str

    def report(self) -> dict:
        """The report.json section: ``recipe`` (the steps) and ``recipe_budget`` (the outcome)."""
        return {"recipe": [s.as_dict() for s in self.steps],
                "recipe_budget": {"max_drop": self.max_drop, "metric": self.metric, "fp32": round(self.fp32, 4),
                                  "met": self.met, "chosen": self.chosen}}


class _Builder:
    """Builds and scores configurations, caching what several steps share (CLE graph, statistics)."""

    def __init__(self, graph: Graph, calib_x: np.ndarray, x: np.ndarray, y: np.ndarray | None,
                 rounding: str, base_plan: Mapping[str, str], adaround_config: AdaRoundConfig,
                 weight_rule: Callable[[QuantizedGraph], QuantizedGraph]) -> None:
        self.graph, self.calib_x, self.x, self.y, self.weight_rule = graph, calib_x, x, y, weight_rule
        self.rounding, self.base_plan, self.adaround_config = rounding, dict(base_plan), adaround_config
        self.fp32_out = run_float(graph, x)
        self.fp32 = top1(self.fp32_out, y) if y is not None else 100.0
        self._graphs: dict[bool, Graph] = {}
        self._stats: dict[tuple[bool, str], dict[str, TensorStats]] = {}
        self._raw: dict[bool, dict[str, TensorStats]] = {}
        self._int8: dict[RecipeConfig, QuantizedGraph] = {}

    def float_graph(self, cle: bool) -> Graph:
        if cle not in self._graphs:
            self._graphs[cle] = cross_layer_equalization(self.graph) if cle else self.graph
        return self._graphs[cle]

    def stats(self, cle: bool, method: str) -> dict[str, TensorStats]:
        if (cle, method) not in self._stats:
            if cle not in self._raw:
                self._raw[cle] = calibrate(self.float_graph(cle), self.calib_x, histograms=True)
            self._stats[cle, method] = set_ranges(self._raw[cle], method)
        return self._stats[cle, method]

    def int8(self, config: RecipeConfig) -> QuantizedGraph:
        """The quantized graph of ``config`` before mixed precision (cached: AdaRound is the costly part)."""
        key = replace(config, int16=frozenset())
        if key not in self._int8:
            stats = self.stats(config.cle, config.range_method)
            qgraph = self.weight_rule(quantize_minmax(self.float_graph(config.cle), stats))
            if config.adaround:
                result = adaround(qgraph, self.calib_x, self.adaround_config)
                qgraph = self.weight_rule(quantize_minmax(result.graph, stats, weight_encodings=result.weight_encodings))
            if config.bias_correction:
                qgraph = empirical_bias_correction(qgraph, self.calib_x[:BIAS_CORRECTION_SAMPLES])
            self._int8[key] = qgraph
        return self._int8[key]

    def build(self, config: RecipeConfig) -> tuple[QuantizedGraph, QProgram]:
        plan = {**self.base_plan, **{name: "int16" for name in config.int16}}
        qgraph = apply_precision(self.int8(config), self.stats(config.cle, config.range_method), plan)
        return qgraph, lower(qgraph, rounding=self.rounding)

    def score(self, program: QProgram) -> float:
        out = run_int8(program, self.x)
        if self.y is not None:
            return top1(out, self.y)
        n = len(self.x)
        return float(np.mean(self.fp32_out.reshape(n, -1).argmax(1) == out.reshape(n, -1).argmax(1)) * 100)

    def sqnr(self, program: QProgram, n: int) -> float:
        """Output SQNR (dB) of ``program`` against the float model on the first ``n`` samples."""
        ref = self.fp32_out[:n].astype(np.float64)
        err = run_int8(program, self.x[:n]).astype(np.float64) - ref
        return 10.0 * math.log10(max(float(np.sum(ref ** 2)), 1e-30) / max(float(np.sum(err ** 2)), 1e-30))


def run_recipe(graph: Graph, calib_x: np.ndarray, x: np.ndarray, y: np.ndarray | None, *, max_drop: float,
               rounding: str, int16_allowed: Callable[[str], bool], base_plan: Mapping[str, str] | None = None,
               adaround_config: AdaRoundConfig = AdaRoundConfig(),
               weight_rule: Callable[[QuantizedGraph], QuantizedGraph] = lambda qgraph: qgraph,
               progress: Callable[[str], None] | None = None) -> RecipeResult:
    """Try the recipe's steps on ``graph`` until the int8 program is within ``max_drop`` of fp32.

    Args:
        graph: the optimized float graph (batch norms folded, activations fused).
        calib_x: calibration inputs.
        x: evaluation inputs; ``y``: their labels, or None to score top-1 agreement with fp32.
        max_drop: the accuracy budget, in points below fp32.
        rounding: the profile's requantization rounding for the lowered program.
        int16_allowed: whether the device profile allows int16 activations for an ONNX op type.
        base_plan: the precision plan to start from (default: every node int8).
        adaround_config: AdaRound's budget.
        weight_rule: the profile's weight rule applied after ``quantize_minmax`` (e.g.
            ``profile_rules.profile_weights``: per-tensor weights where the profile says so).
        progress: called with each step's name as it starts.

    Returns:
        The first configuration meeting the budget, else the most accurate one tried.
    """
    step_cb = progress or (lambda _: None)
    builder = _Builder(graph, calib_x, x, y, rounding, base_plan or {}, adaround_config, weight_rule)
    steps: list[RecipeStep] = []
    # best: the configuration later steps build on (a tie adopts the newer technique); chosen: the
    # earliest step with the highest accuracy (what is returned when the budget is missed).
    best: tuple[float, str, RecipeConfig, QuantizedGraph, QProgram] | None = None
    chosen: tuple[float, str, RecipeConfig, QuantizedGraph, QProgram] | None = None

    def attempt(name: str, config: RecipeConfig, extra_seconds: float = 0.0) -> bool:
        """Build and score ``config``; adopt it if it is the best so far; True when it meets the budget."""
        nonlocal best, chosen
        step_cb(f"recipe: {name}")
        start = time.perf_counter()
        qgraph, program = builder.build(config)
        acc = builder.score(program)
        steps.append(RecipeStep(name, acc, builder.fp32 - acc, time.perf_counter() - start + extra_seconds))
        log.info("recipe step %s: int8 %.2f (drop %.2f)", name, acc, builder.fp32 - acc)
        if best is None or acc >= best[0]:
            best = (acc, name, config, qgraph, program)
        if chosen is None or acc > chosen[0]:
            chosen = best
        return builder.fp32 - acc <= max_drop

    def current() -> RecipeConfig:
        assert best is not None
        return best[2]

    met = (attempt("min/max", RecipeConfig())
           or attempt("+ CLE", replace(current(), cle=True))
           or attempt("+ bias correction", replace(current(), bias_correction=True))
           or any(attempt(f"ranges: {m}", replace(current(), range_method=m)) for m in RANGE_STEPS)
           or attempt("+ AdaRound", replace(current(), adaround=True))
           or _mixed_precision(builder, current(), int16_allowed, attempt))
    assert chosen is not None
    acc, name, config, qgraph, program = chosen
    if not met:
        log.warning("the recipe missed the budget: best int8 %.2f is %.2f points below fp32 %.2f (max drop %.2f), "
                    "from step '%s'", acc, builder.fp32 - acc, builder.fp32, max_drop, name)
    return RecipeResult(qgraph, program, config, tuple(steps), builder.fp32, "top1" if y is not None else
                        "top1_agreement", max_drop, met, name)


def _mixed_precision(builder: _Builder, config: RecipeConfig, int16_allowed: Callable[[str], bool],
                     attempt: Callable[..., bool]) -> bool:
    """Promote the most sensitive ops to int16 activations, doubling their number; True once in budget.

    The sensitivity analysis's time is counted in the first mixed-precision step.
    """
    start = time.perf_counter()
    graph = builder.float_graph(config.cle)
    candidates = [n.name for n in graph.nodes if n.op not in SHARED_SCALE_OPS and int16_allowed(n.op)
                  and int16_support(n, graph) is None and builder.base_plan.get(n.name, "int8") == "int8"]
    if not candidates:
        return False
    n = min(SENSITIVITY_SAMPLES, len(builder.x))
    gains = {}
    for name in candidates:
        _, program = builder.build(replace(config, int16=config.int16 | {name}))
        gains[name] = builder.sqnr(program, n)
    ranked = sorted(candidates, key=lambda c: -gains[c])
    extra = time.perf_counter() - start
    k = 1
    while True:
        k = min(k, len(ranked))
        chosen = frozenset(ranked[:k])
        label = "all" if k == len(ranked) else str(k)
        if attempt(f"w8a16 on {label} ops", replace(config, int16=config.int16 | chosen), extra):
            return True
        extra = 0.0
        if k == len(ranked):
            return False
        k *= 2
