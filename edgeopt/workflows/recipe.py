"""The automatic recipe (``edgeopt deploy --max-drop``): try the post-training techniques in order of
cost, measure each on the integer program that would ship, stop at the first that meets the budget.

Steps, in order (like AIMET's AutoQuant, but every number comes from the integer executor):

1. ``min/max``: global min/max ranges, nearest-rounded weights (per channel or per tensor, as the
   profile says).
2. ``+ CLE``: cross-layer equalization with high-bias absorption (recalibrated afterwards), scaling across
   a ReLU6 only where it provably changes nothing (``relu6="exact"``).
3. ``+ CLE across ReLU6`` (only when the graph has a pair joined by a ReLU6): equalization through every
   ReLU6, whose clip becomes a per-channel MINIMUM (``relu6="clip"``; float outputs unchanged, one more
   elementwise op per pair, priced by the cost model like any other).
4. ``+ bias correction``: empirical, on ``BIAS_CORRECTION_SAMPLES`` calibration samples.
5. ``ranges: percentile``, ``ranges: mse``, ``ranges: sqnr``: activation range setting.
6. ``weights: mse`` (only when some weight is quantized per tensor): the per-tensor weight scale of least
   squared error (``quantize.weight_range``).
7. ``+ AdaRound``: adaptive weight rounding.
8. ``+ fine-tuning``: quantization-aware fine-tuning of the configuration so far by distillation from the
   fp32 model on the calibration inputs, no labels (``torch.finetune``); minutes on a CPU, so it comes
   after every post-training step, and before mixed precision, whose float or int16 layers cost latency
   on every inference where fine-tuning costs time once.
9. ``mixed precision: k layers``: the ``k`` layers whose quantization alone costs most (the per-layer
   sensitivity analysis, ``pipeline.quantize.sensitivity``, of the configuration so far) kept at int16
   activations where the profile and the 16x8 kernels allow, else in float (``pipeline.quantize.mixed_precision``),
   ``k`` doubling until every candidate is promoted.

Each technique is adopted into the running configuration only if its accuracy is at least the best so
far (a step that hurts is reported as dropped), so later steps build on what helped. Layers that mixed
precision sends to float get back the float graph's weights and biases (``float_plan.with_float_weights``):
bias correction, AdaRound and fine-tuning change them for int8's sake only. Accuracy is top-1
on the evaluation data with labels, else top-1 agreement with the float model (fp32 counts as 100).
The first configuration within ``max_drop`` points of fp32 is returned; when none is, the cheapest of
the best (below), with one warning. The caller may pass held-out samples (``holdout``; deploy holds out
the half of ``--data`` it does not tune on, or all of it with ``--tune-data``): the returned program is
scored on them once, so the reported accuracy is not the one the steps were selected on.

Screening: each step is scored on the first ``screen_samples`` (default ``SCREEN_SAMPLES``) evaluation
samples, and a step within budget there, or short of it by less than one standard error of the screen
(``100 sqrt(p (1 - p) / n)`` points: 1.8 at 80 % on 500 samples), is confirmed on all of them before the
recipe stops or goes on (a confirmed step is reported with both figures). When no step meets the budget,
the recipe returns, among the steps within one standard error of the most accurate, the one whose
program has the least estimated latency: it does not pay for float layers with accuracy it cannot
resolve. The returned configuration is always scored on all samples (``RecipeResult.int8_out``). AIMET's mixed precision
search works the same way (a cheap phase-1 evaluation, by default SQNR on a few samples, to rank and
search; the user's full phase-2 evaluation to decide). Scoring dominates the recipe's time
(EfficientNet-Lite0, 1300 ImageNet images: about 85 s per step on 2 cores, 14 steps), and the steps'
differences of a few tenths of a point are at the resolution of even 1300 samples (one image is 0.08
point). Each step also records the estimated latency of its program (the target profile's cost model),
so the report shows what mixed precision costs in latency.

Every configuration is quantized and shipped through the ``Target`` (``pipeline.target``), as deploy's
own configuration is: the recipe scores the very program that would ship.
"""
from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

import numpy as np

from edgeopt.ir import Graph, QuantizedGraph
from edgeopt.pipeline.calibrate import TensorStats, calibrate
from edgeopt.pipeline.evaluate import run_float, run_int8, top1
from edgeopt.pipeline.optimize.cross_layer_equalization import cross_layer_equalization
from edgeopt.pipeline.quantize.adaround import AdaRoundConfig, adaround
from edgeopt.pipeline.quantize.bias_correction import empirical_bias_correction
from edgeopt.pipeline.quantize.float_plan import with_float_weights
from edgeopt.pipeline.quantize.mixed_precision import Promotion, promotion_plan, rank_promotions
from edgeopt.pipeline.quantize.precision import apply_precision
from edgeopt.pipeline.quantize.sensitivity import DEFAULT_SAMPLES, LayerSensitivity, sensitivity_of
from edgeopt.pipeline.quantize.spec import WEIGHTED_OPS
from edgeopt.pipeline.target import Target
from edgeopt.qprogram import QProgram
from edgeopt.runtimes.cost import estimate

log = logging.getLogger(__name__)

BIAS_CORRECTION_SAMPLES = 32
SCREEN_SAMPLES = 500
RANGE_STEPS = ("percentile", "mse", "sqnr")
Built = tuple[QuantizedGraph, QProgram, float]
"""A configuration: its quantized graph, the program that ships from it, and that program's estimated
latency (ms)."""


@dataclass(frozen=True)
class RecipeStep:
    """One tried configuration: its name, int8 accuracy and drop from fp32 (points) on the screening samples,
    build+eval time, estimated latency, whether later steps build on it (``adopted``; else it is dropped),
    the layers it promotes, and its int8 accuracy on all samples when it was confirmed there
    (``confirmed``)."""

    step: str
    int8: float
    drop: float
    seconds: float
    latency_ms: float
    adopted: bool
    promoted: tuple[Promotion, ...] = ()
    confirmed: float | None = None

    def as_dict(self) -> dict:
        entry = {"step": self.step, "int8": round(self.int8, 4), "drop": round(self.drop, 4),
                 "seconds": round(self.seconds, 3),
                 "latency_ms": round(self.latency_ms, 6),
                 "adopted": self.adopted}
        if self.promoted:
            entry["promoted"] = [p.to_json() for p in self.promoted]
        if self.confirmed is not None:
            entry["int8_all"] = round(self.confirmed, 4)
        return entry


@dataclass(frozen=True)
class RecipeConfig:
    """What the recipe applies; each step changes one field. ``cle``: the equalization's ReLU6 policy
    (``""``: none, ``"exact"``, ``"clip"``); ``weight_range``: ``Target.weight_range_method``; ``promoted``:
    mixed precision's layers, most sensitive first."""

    cle: str = ""
    bias_correction: bool = False
    range_method: str = "minmax"
    weight_range: str = "minmax"
    adaround: bool = False
    finetune: bool = False
    promoted: tuple[Promotion, ...] = ()


@dataclass(frozen=True)
class FineTuneConfig:
    """The fine-tuning step's budget: ``epochs`` over at most ``samples`` calibration inputs, ``batch`` per
    step, Adam at ``lr`` (``torch.finetune.finetune_quantized``)."""

    epochs: int = 2
    samples: int = 256
    batch: int = 16
    lr: float = 1e-5


@dataclass(frozen=True)
class MixedPrecision:
    """What the mixed-precision step saw: the sensitivity of the configuration it started from (on
    ``samples`` evaluation samples, in ``seconds``), the candidates it ranked from it, and that
    configuration's name and latency (the baseline of mixed precision's latency price)."""

    sensitivity: tuple[LayerSensitivity, ...]
    samples: int
    seconds: float
    candidates: tuple[Promotion, ...]
    base_step: str
    base_latency_ms: float


@dataclass(frozen=True)
class Screening:
    """How the steps were scored: on the first ``samples`` of ``total`` evaluation samples, where fp32 scored
    ``fp32``; the chosen configuration scored ``int8_all`` on all of them, fp32 ``fp32_all``."""

    samples: int
    total: int
    fp32: float
    fp32_all: float
    int8_all: float


@dataclass(frozen=True)
class HeldOut:
    """The chosen program on samples the recipe did not select on: ``samples`` of them (``source`` says
    which), fp32 and int8 accuracy there, and the int8 outputs."""

    samples: int
    source: str
    fp32: float
    int8: float
    int8_out: np.ndarray

    def to_json(self) -> dict:
        return {"samples": self.samples, "source": self.source, "fp32": round(self.fp32, 4),
                "int8": round(self.int8, 4), "drop": round(self.fp32 - self.int8, 4)}


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
    mixed_precision: MixedPrecision | None = None
    int8_out: np.ndarray | None = None
    """The chosen program's outputs on all the evaluation data: deploy's report reuses them rather than
    running the program once more."""
    screening: Screening | None = None
    """Set when the steps were scored on fewer samples than the evaluation data holds."""
    held_out: HeldOut | None = None
    """The chosen program on the held-out samples, when the caller gave some."""
    tuned_on: str = ""
    """Which samples the recipe selected on (for the report)."""

    def report(self) -> dict:
        """The report.json sections: ``recipe`` (the steps), ``recipe_budget`` (the outcome) and, when the
        recipe reached it, ``recipe_mixed_precision`` (the ranking and what the chosen step promoted)."""
        chosen = next(s for s in self.steps if s.step == self.chosen)
        out = {"recipe": [s.as_dict() for s in self.steps],
               "recipe_budget": {"max_drop": self.max_drop, "metric": self.metric, "fp32": round(self.fp32, 4),
                                 "met": self.met, "chosen": self.chosen, "latency_ms": _ms(chosen.latency_ms),
                                 "baseline_latency_ms": _ms(self.steps[0].latency_ms)}}
        if self.tuned_on:
            out["recipe_budget"]["tuned_on"] = self.tuned_on
        if self.held_out is not None:
            out["recipe_budget"]["held_out"] = self.held_out.to_json()
        if self.screening is not None:
            sc = self.screening
            out["recipe_budget"]["screening"] = {"samples": sc.samples, "total": sc.total, "fp32": round(sc.fp32, 4),
                                                 "fp32_all": round(sc.fp32_all, 4), "int8_all": round(sc.int8_all, 4)}
        mp = self.mixed_precision
        if mp is not None:
            price = chosen.latency_ms - mp.base_latency_ms
            out["recipe_mixed_precision"] = {
                "sensitivity_samples": mp.samples, "sensitivity_seconds": round(mp.seconds, 3),
                "candidates": [p.to_json() for p in mp.candidates],
                "promoted": [p.to_json() for p in self.config.promoted],
                "base_step": mp.base_step, "base_latency_ms": _ms(mp.base_latency_ms),
                "latency_ms": _ms(chosen.latency_ms), "latency_price_ms": _ms(price)}
        return out


def _ms(value: float) -> float:
    return round(value, 6)


class _Builder:
    """Builds and scores configurations, caching what several steps share (CLE graph, statistics)."""

    def __init__(self, graph: Graph, calib_x: np.ndarray, x: np.ndarray, y: np.ndarray | None, screen: int,
                 target: Target, base_plan: Mapping[str, str], adaround_config: AdaRoundConfig,
                 finetune_config: FineTuneConfig) -> None:
        self.graph, self.calib_x, self.target = graph, calib_x, target
        self.base_plan, self.adaround_config, self.finetune_config = dict(base_plan), adaround_config, finetune_config
        self.all_x, self.all_y, self.all_fp32_out = x, y, run_float(graph, x)
        self.screened = 0 < screen < len(x)
        n = screen if self.screened else len(x)
        self.x, self.y, self.fp32_out = x[:n], None if y is None else y[:n], self.all_fp32_out[:n]
        self.fp32 = top1(self.fp32_out, self.y) if y is not None else 100.0
        self.fp32_all = top1(self.all_fp32_out, y) if y is not None else 100.0
        self._graphs: dict[str, Graph] = {}
        self._stats: dict[tuple[str, str], dict[str, TensorStats]] = {}
        self._raw: dict[str, dict[str, TensorStats]] = {}
        self._int8: dict[RecipeConfig, QuantizedGraph] = {}

    def float_graph(self, cle: str) -> Graph:
        """The float graph equalized with ReLU6 policy ``cle`` (``""``: not equalized)."""
        if cle not in self._graphs:
            self._graphs[cle] = cross_layer_equalization(self.graph, relu6=cle) if cle else self.graph
        return self._graphs[cle]

    def crosses_relu6(self) -> bool:
        """Whether equalizing through every ReLU6 changes more than the provable rule does (a ReLU6 pair)."""
        return any(n.op == "Min" for n in self.float_graph("clip").nodes)

    def has_per_tensor_weights(self) -> bool:
        """Whether the profile quantizes some weighted node of the graph per tensor."""
        return any(n.op in WEIGHTED_OPS and not self.target.rules.per_channel(n.op) for n in self.graph.nodes)

    def target_for(self, config: RecipeConfig) -> Target:
        """The target with ``config``'s weight range method."""
        return replace(self.target, weight_range_method=config.weight_range)

    def stats(self, cle: str, method: str) -> dict[str, TensorStats]:
        if (cle, method) not in self._stats:
            if cle not in self._raw:
                self._raw[cle] = calibrate(self.float_graph(cle), self.calib_x, histograms=True)
            self._stats[cle, method] = self.target.set_ranges(self.float_graph(cle), self._raw[cle], method)
        return self._stats[cle, method]

    def int8(self, config: RecipeConfig) -> QuantizedGraph:
        """The quantized graph of ``config`` before mixed precision (cached: AdaRound is the costly part)."""
        key = replace(config, promoted=())
        if key not in self._int8:
            stats, target = self.stats(config.cle, config.range_method), self.target_for(config)
            if config.finetune:  # from the post-training configuration, then quantized again on the same ranges
                from edgeopt.torch.finetune import finetune_quantized  # torch loads only when it gets here

                ft = self.finetune_config
                trained = finetune_quantized(self.int8(replace(key, finetune=False)), self.graph,
                                             self.calib_x[:ft.samples], target, epochs=ft.epochs, batch=ft.batch,
                                             lr=ft.lr)
                self._int8[key] = target.quantize(trained, stats)
                return self._int8[key]
            qgraph = target.quantize(self.float_graph(config.cle), stats)
            if config.adaround:
                result = adaround(qgraph, self.calib_x, self.adaround_config)
                qgraph = target.quantize(result.graph, stats, weight_encodings=result.weight_encodings)
            if config.bias_correction:
                qgraph = empirical_bias_correction(qgraph, self.calib_x[:BIAS_CORRECTION_SAMPLES])
            self._int8[key] = qgraph
        return self._int8[key]

    def build(self, config: RecipeConfig) -> Built:
        # The plan applies after AdaRound and bias correction, which refine the int8 graph (``int8``).
        plan = {**self.base_plan, **promotion_plan(config.promoted)}
        qgraph = apply_precision(self.int8(config), self.stats(config.cle, config.range_method), plan)
        # Float layers get back the float weights and biases those refinements changed for int8's sake.
        qgraph = with_float_weights(qgraph, self.float_graph(config.cle))
        shipped = self.target_for(config).ship(qgraph)
        return qgraph, shipped.program, estimate(shipped.program, self.target.profile, shipped.placement).latency_ms

    def score(self, program: QProgram, every_sample: bool = False) -> tuple[float, np.ndarray]:
        """The program's accuracy on the screening samples (or on all of them), and its outputs."""
        out = run_int8(program, self.all_x if every_sample else self.x)
        return self.accuracy(out, every_sample), out

    def sampling_error(self, accuracy: float) -> float:
        """One standard error (points) of an accuracy of ``accuracy`` % measured on the screening samples
        (binomial: ``100 sqrt(p (1 - p) / n)``); 0 when every sample is scored."""
        if not self.screened:
            return 0.0
        p = min(max(accuracy / 100.0, 0.0), 1.0)
        return 100.0 * math.sqrt(p * (1.0 - p) / len(self.x))

    def accuracy(self, out: np.ndarray, every_sample: bool) -> float:
        """The accuracy of int8 outputs on the screening samples (or on all of them)."""
        y, fp32 = (self.all_y, self.all_fp32_out) if every_sample else (self.y, self.fp32_out)
        if y is not None:
            return top1(out, y)
        n = len(out)
        return float(np.mean(fp32.reshape(n, -1).argmax(1) == out.reshape(n, -1).argmax(1)) * 100)


def run_recipe(graph: Graph, calib_x: np.ndarray, x: np.ndarray, y: np.ndarray | None, *, target: Target,
               max_drop: float, base_plan: Mapping[str, str] | None = None,
               adaround_config: AdaRoundConfig = AdaRoundConfig(),
               finetune_config: FineTuneConfig = FineTuneConfig(),
               sensitivity_samples: int = DEFAULT_SAMPLES, screen_samples: int = SCREEN_SAMPLES,
               holdout: tuple[np.ndarray, np.ndarray | None] | None = None, tuned_on: str = "",
               holdout_source: str = "", progress: Callable[[str], None] | None = None) -> RecipeResult:
    """Try the recipe's steps on ``graph`` until the int8 program is within ``max_drop`` of fp32.

    Args:
        graph: the optimized float graph (batch norms folded, activations fused).
        calib_x: calibration inputs.
        x: evaluation inputs; ``y``: their labels, or None to score top-1 agreement with fp32.
        target: the device's rules: every configuration is quantized (``ranges``, ``quantize``) and shipped
            (``ship``, then priced by the cost model) through it; mixed precision promotes a layer to int16
            where it allows (``int16_allowed``), else to float where a unit runs it so (``float_allowed``).
            Its ``range_method`` is ignored: the steps choose theirs.
        max_drop: the accuracy budget, in points below fp32.
        base_plan: the precision plan to start from (default: every node int8).
        adaround_config: AdaRound's budget.
        finetune_config: the fine-tuning step's budget.
        sensitivity_samples: evaluation samples the mixed-precision step's sensitivity analysis uses.
        screen_samples: how many evaluation samples each step is scored on (0: all); a step within budget
            on them is confirmed on all samples.
        holdout: inputs and labels (or None) the recipe does not select on: the chosen program is scored
            on them once, at the end (``RecipeResult.held_out``), so that its reported accuracy is not
            selected on the samples it is reported on.
        tuned_on, holdout_source: which samples ``x`` and ``holdout`` are, for the report.
        progress: called with each step's name as it starts.

    Returns:
        The first configuration meeting the budget, else the most accurate one tried.
    """
    step_cb = progress or (lambda _: None)
    builder = _Builder(graph, calib_x, x, y, screen_samples, target, base_plan or {}, adaround_config,
                       finetune_config)
    steps: list[RecipeStep] = []
    # best: the configuration later steps build on (a tie adopts the newer technique); tried: every
    # configuration, from which the returned one is chosen when the budget is missed; chosen: a met one.
    best: tuple[float, str, RecipeConfig, Built] | None = None
    tried: list[tuple[float, str, RecipeConfig, Built]] = []
    chosen: tuple[float, str, RecipeConfig, Built] | None = None
    outputs: dict[str, np.ndarray] = {}  # each step's outputs on every evaluation sample, where known

    def attempt(name: str, config: RecipeConfig, extra_seconds: float = 0.0) -> bool:
        """Build and score ``config``; adopt it if it is the best so far; True when it meets the budget.

        A screened step within the budget plus one standard error of the screen is confirmed on every
        sample before it is judged (the screen alone would reject steps that meet the budget)."""
        nonlocal best, chosen
        step_cb(f"recipe: {name}")
        start = time.perf_counter()
        built = builder.build(config)
        acc, out = builder.score(built[1])
        met, confirmed = builder.fp32 - acc <= max_drop, None
        if not builder.screened:
            outputs[name] = out
        elif builder.fp32 - acc <= max_drop + builder.sampling_error(acc):
            confirmed, outputs[name] = builder.score(built[1], every_sample=True)
            met = builder.fp32_all - confirmed <= max_drop
        adopt = best is None or acc >= best[0]
        steps.append(RecipeStep(name, acc, builder.fp32 - acc, time.perf_counter() - start + extra_seconds,
                                built[2], adopt, config.promoted, confirmed))
        log.info("recipe step %s: int8 %.2f (drop %.2f)%s%s", name, acc, builder.fp32 - acc,
                 "" if confirmed is None else f", {confirmed:.2f} on all samples", "" if adopt else ", dropped")
        if adopt:
            best = (acc, name, config, built)
        tried.append((acc, name, config, built))
        if met:
            chosen = (acc, name, config, built)
        return met

    def adopted() -> tuple[float, str, RecipeConfig, Built]:
        assert best is not None
        return best

    def current() -> RecipeConfig:
        return adopted()[2]

    mixed = _MixedPrecisionStep(builder, sensitivity_samples)
    met = (attempt("min/max", RecipeConfig())
           or attempt("+ CLE", replace(current(), cle="exact"))
           or (builder.crosses_relu6() and attempt("+ CLE across ReLU6", replace(current(), cle="clip")))
           or attempt("+ bias correction", replace(current(), bias_correction=True))
           or any(attempt(f"ranges: {m}", replace(current(), range_method=m)) for m in RANGE_STEPS)
           or (builder.has_per_tensor_weights() and attempt("weights: mse", replace(current(), weight_range="mse")))
           or attempt("+ AdaRound", replace(current(), adaround=True))
           or attempt("+ fine-tuning", replace(current(), finetune=True))
           or mixed.run(adopted(), attempt))
    if chosen is None:
        chosen = _cheapest_within_error(tried, builder.sampling_error)
    acc, name, config, (qgraph, program, _) = chosen
    if not met:
        log.warning("the recipe missed the budget: best int8 %.2f is %.2f points below fp32 %.2f (max drop %.2f), "
                    "from step '%s'", acc, builder.fp32 - acc, builder.fp32, max_drop, name)
    if name not in outputs:
        outputs[name] = builder.score(program, every_sample=True)[1]
    screening = None
    if builder.screened:
        int8_all = builder.accuracy(outputs[name], every_sample=True)
        screening = Screening(len(builder.x), len(builder.all_x), builder.fp32, builder.fp32_all, int8_all)
    held_out = None
    if holdout is not None and len(holdout[0]):
        step_cb("recipe: held-out samples")
        h_x, h_y = holdout
        h_fp32, h_out = run_float(graph, h_x), run_int8(program, h_x)
        if h_y is not None:
            h_acc, h_ref = top1(h_out, h_y), top1(h_fp32, h_y)
        else:
            n = len(h_out)
            h_acc, h_ref = float(np.mean(h_fp32.reshape(n, -1).argmax(1) == h_out.reshape(n, -1).argmax(1)) * 100), 100.0
        held_out = HeldOut(len(h_x), holdout_source, h_ref, h_acc, h_out)
        log.info("recipe: the chosen step '%s' scores int8 %.2f (fp32 %.2f) on %d held-out samples (%s)", name,
                 h_acc, h_ref, len(h_x), holdout_source)
    return RecipeResult(qgraph, program, config, tuple(steps), builder.fp32, "top1" if y is not None else
                        "top1_agreement", max_drop, met, name, mixed.seen, outputs[name], screening, held_out,
                        tuned_on)


def _cheapest_within_error(tried: list[tuple[float, str, RecipeConfig, Built]],
                           error: Callable[[float], float]) -> tuple[float, str, RecipeConfig, Built]:
    """Among the configurations whose accuracy is within one standard error (``error``) of the most
    accurate one, the one of least estimated latency (the earliest on a tie): differences inside the
    screen's sampling error do not justify a slower program."""
    top = max(acc for acc, *_ in tried)
    close = [t for t in tried if t[0] >= top - error(top)]
    return min(close, key=lambda t: t[3][2])  # min keeps the first of equal latencies


class _MixedPrecisionStep:
    """Promotes the most sensitive layers of a configuration, doubling their number until in budget."""

    def __init__(self, builder: _Builder, samples: int) -> None:
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
