"""``run_recipe``: the steps in order of cost, stopping at the first within budget (see the package's docstring)."""
from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import replace

import numpy as np

from edgeopt.ir import Graph
from edgeopt.pipeline.evaluate import run_both, top1
from edgeopt.pipeline.frontend.samples import Samples, as_samples
from edgeopt.pipeline.quantize.adaround import AdaRoundConfig
from edgeopt.pipeline.quantize.sensitivity import DEFAULT_SAMPLES
from edgeopt.pipeline.target import Target
from edgeopt.workflows.recipe.builder import Builder, Built
from edgeopt.workflows.recipe.mixed import MixedPrecisionStep
from edgeopt.workflows.recipe.results import FineTuneConfig, HeldOut, RecipeConfig, RecipeResult, RecipeStep, Screening

log = logging.getLogger(__name__)

SCREEN_SAMPLES = 500
RANGE_STEPS = ("percentile", "mse", "sqnr")


def run_recipe(graph: Graph, calib_x: np.ndarray, x: np.ndarray | Samples, y: np.ndarray | None, *, target: Target,
               max_drop: float, base_plan: Mapping[str, str] | None = None,
               adaround_config: AdaRoundConfig = AdaRoundConfig(),
               finetune_config: FineTuneConfig = FineTuneConfig(),
               sensitivity_samples: int = DEFAULT_SAMPLES, screen_samples: int = SCREEN_SAMPLES,
               holdout: tuple[np.ndarray, np.ndarray | None] | Samples | None = None, tuned_on: str = "",
               holdout_source: str = "", progress: Callable[[str], None] | None = None) -> RecipeResult:
    """Try the recipe's steps on ``graph`` until the int8 program is within ``max_drop`` of fp32.

    Args:
        graph: the optimized float graph (batch norms folded, activations fused).
        calib_x: calibration inputs.
        x: evaluation inputs (an array, or ``Samples`` read in chunks: only the screening subset is held);
            ``y``: their labels, or None to score top-1 agreement with fp32 (``Samples`` carry their own).
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
        holdout: inputs and labels (or None), or ``Samples`` (read in chunks), the recipe does not select
            on: the chosen program is scored on them once, at the end (``RecipeResult.held_out``), so that
            its reported accuracy is not selected on the samples it is reported on.
        tuned_on, holdout_source: which samples ``x`` and ``holdout`` are, for the report.
        progress: called with each step's name as it starts.

    Returns:
        The first configuration meeting the budget, else the most accurate one tried.
    """
    step_cb = progress or (lambda _: None)
    builder = Builder(graph, calib_x, x, y, screen_samples, target, base_plan or {}, adaround_config,
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

    mixed = MixedPrecisionStep(builder, sensitivity_samples)
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
    h_x = None if holdout is None else holdout if isinstance(holdout, Samples) else as_samples(*holdout)
    if h_x is not None and len(h_x):
        step_cb("recipe: held-out samples")
        h_y = h_x.labels
        h_fp32, h_out = run_both(graph, program, h_x)  # one read of the held-out samples
        if h_y is not None:
            h_acc, h_ref = top1(h_out, h_y), top1(h_fp32, h_y)
        else:
            n = len(h_out)
            h_acc, h_ref = float(np.mean(h_fp32.reshape(n, -1).argmax(1) == h_out.reshape(n, -1).argmax(1)) * 100), 100.0
        held_out = HeldOut(len(h_x), holdout_source, h_ref, h_acc, h_out, h_fp32)
        log.info("recipe: the chosen step '%s' scores int8 %.2f (fp32 %.2f) on %d held-out samples (%s)", name,
                 h_acc, h_ref, len(h_x), holdout_source)
    return RecipeResult(qgraph, program, config, tuple(steps), builder.fp32, "top1" if builder.all_y is not None else
                        "top1_agreement", max_drop, met, name, mixed.seen, outputs[name], screening, held_out,
                        tuned_on, builder.all_fp32_out)


def _cheapest_within_error(tried: list[tuple[float, str, RecipeConfig, Built]],
                           error: Callable[[float], float]) -> tuple[float, str, RecipeConfig, Built]:
    """Among the configurations whose accuracy is within one standard error (``error``) of the most
    accurate one, the one of least estimated latency (the earliest on a tie): differences inside the
    screen's sampling error do not justify a slower program."""
    top = max(acc for acc, *_ in tried)
    close = [t for t in tried if t[0] >= top - error(top)]
    return min(close, key=lambda t: t[3][2])  # min keeps the first of equal latencies
