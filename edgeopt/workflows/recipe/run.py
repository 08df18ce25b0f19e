"""``run_recipe``: the steps in order of cost, stopping at the first within budget (see the package's docstring)."""
from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import replace

import numpy as np

from edgeopt.ir import Graph
from edgeopt.pipeline.evaluate import agreement, run_both, top1
from edgeopt.pipeline.frontend.samples import Samples, as_samples
from edgeopt.pipeline.quantize.adaround import AdaRoundConfig
from edgeopt.pipeline.quantize.sensitivity import DEFAULT_SAMPLES
from edgeopt.pipeline.target import Target
from edgeopt.workflows.recipe.builder import Builder, Built
from edgeopt.workflows.recipe.digest import program_digest
from edgeopt.workflows.recipe.mixed import MixedPrecisionStep
from edgeopt.workflows.recipe.paired import hits, paired_drop
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
    screen_outputs: dict[str, np.ndarray] = {}  # each step's outputs on the screening samples
    outputs: dict[str, np.ndarray] = {}  # each step's outputs on every evaluation sample, where known
    scored: dict[str, str] = {}  # program digest -> the first step that ran that program

    def attempt(name: str, config: RecipeConfig, extra_seconds: float = 0.0) -> bool:
        """Build and score ``config``; adopt it if it is the best so far; True when it meets the budget.

        A step whose program is byte for byte one already scored takes that step's outputs (``same_as``).
        A screened step whose paired drop (``paired``) is within the budget plus one standard error is
        confirmed on every sample before it is judged, running only the samples past the screen (the
        screen alone would reject steps that meet the budget); one further away is rejected on the screen."""
        nonlocal best, chosen
        step_cb(f"recipe: {name}")
        start = time.perf_counter()
        built = builder.build(config)
        digest = program_digest(built[1])
        same_as = scored.get(digest)
        if same_as is None:
            scored[digest] = name
            screen_outputs[name] = builder.score(built[1])[1]
        else:
            screen_outputs[name] = screen_outputs[same_as]
            if same_as in outputs:
                outputs[name] = outputs[same_as]
        acc = builder.accuracy(screen_outputs[name], every_sample=False)
        screen = builder.paired(screen_outputs[name])
        met, confirmed = screen.drop <= max_drop, None
        if not builder.screened:
            outputs[name] = screen_outputs[name]
        elif screen.drop - screen.se <= max_drop:
            if name not in outputs:
                outputs[name] = builder.score_rest(built[1], screen_outputs[name])
            confirmed = builder.accuracy(outputs[name], every_sample=True)
            met = builder.paired(outputs[name], every_sample=True).drop <= max_drop
        else:
            met = False
        adopt = best is None or acc >= best[0]
        steps.append(RecipeStep(name, acc, builder.fp32 - acc, time.perf_counter() - start + extra_seconds,
                                built[2], adopt, config.promoted, confirmed, screen.se, same_as))
        log.info("recipe step %s: int8 %.2f (drop %.2f +- %.2f)%s%s%s", name, acc, screen.drop, screen.se,
                 "" if confirmed is None else f", {confirmed:.2f} on all samples",
                 "" if same_as is None else f", the program of '{same_as}'", "" if adopt else ", dropped")
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
           or (builder.has_per_tensor_weights() and attempt("weights: mse", replace(current(), weight_range="mse")))
           or any(attempt(f"ranges: {m}", replace(current(), range_method=m)) for m in RANGE_STEPS)
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
        outputs[name] = builder.score_rest(program, screen_outputs[name])
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
            h_acc, h_ref = agreement(h_out, h_fp32), 100.0
        # Paired drops there, and on the tuning and held-out samples together (the chosen program's outputs on
        # the tuning samples are known: ``outputs[name]``).
        t_ref = hits(builder.all_fp32_out, builder.all_y, builder.all_fp32_out)
        t_int8 = hits(outputs[name], builder.all_y, builder.all_fp32_out)
        h_ref_hits, h_int8_hits = hits(h_fp32, h_y, h_fp32), hits(h_out, h_y, h_fp32)
        held_out = HeldOut(len(h_x), holdout_source, h_ref, h_acc, h_out, paired_drop(h_ref_hits, h_int8_hits),
                           paired_drop(np.concatenate([t_ref, h_ref_hits]), np.concatenate([t_int8, h_int8_hits])),
                           h_fp32)
        log.info("recipe: the chosen step '%s' scores int8 %.2f (fp32 %.2f, drop %.2f +- %.2f) on %d held-out "
                 "samples (%s)", name, h_acc, h_ref, held_out.paired.drop, held_out.paired.se, len(h_x),
                 holdout_source)
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
