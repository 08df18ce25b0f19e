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
5. ``weights: mse`` (only when some weight is quantized per tensor): the per-tensor weight scale of least
   squared error (``quantize.weight_range``). It comes before the activation ranges because on such a
   target the weights' one grid per tensor is where int8 loses most (the report's weight SQNR says how
   much), and each step tried costs a bias correction and a scoring.
6. ``ranges: percentile``, ``ranges: mse``, ``ranges: sqnr``: activation range setting.
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
samples. Its drop from fp32 there is paired sample by sample with fp32's (``paired``): its standard error
counts only the samples where the two disagree (about 1 point on 500 samples where int8 flips 5 % of the
answers, against the 1.8 points of an accuracy of 80 % alone). A step within budget there, or short of it by
less than one such standard error, is confirmed on all of them before the recipe stops or goes on, running
only the samples past the screen (a confirmed step is reported with both figures); a step further from the
budget is rejected on the screen. A step whose program is byte for byte one already scored
(``digest.program_digest``) takes that step's outputs instead of running again (reported ``same_as``).
The budget is judged on the samples the recipe selects on (``met``); the report then gives the chosen
program's drop on the held-out samples and on both together, each with its paired standard error and
whether it meets the budget there (a drop of a few tenths over 650 held-out samples is within the
sampling error of one of a few tenths under). When no step meets the budget,
the recipe returns, among the steps within one standard error of the most accurate, the one whose
program has the least estimated latency: it does not pay for float layers with accuracy it cannot
resolve. The returned configuration is always scored on all samples (``RecipeResult.int8_out``). AIMET's mixed precision
search works the same way (a cheap phase-1 evaluation, by default SQNR on a few samples, to rank and
search; the user's full phase-2 evaluation to decide). Scoring and bias correction dominate the
recipe's time (EfficientNet-Lite0 on a per-tensor target, 650 tuning images, a shared 2-core machine at
load 6: 67 s for a step scored on the screen alone, about 130 s for one with bias correction confirmed on
all 650), and the steps' differences of a few tenths of a point are at the resolution of even 1300
samples (one image is 0.08 point). Each step also records the estimated latency of its program (the target profile's cost model),
so the report shows what mixed precision costs in latency.

Every configuration is quantized and shipped through the ``Target`` (``pipeline.target``), as deploy's
own configuration is: the recipe scores the very program that would ship.
"""
from __future__ import annotations

from edgeopt.workflows.recipe.builder import BIAS_CORRECTION_SAMPLES
from edgeopt.workflows.recipe.results import (FineTuneConfig, HeldOut, MixedPrecision, RecipeConfig, RecipeResult,
                                              RecipeStep, Screening)
from edgeopt.workflows.recipe.run import RANGE_STEPS, SCREEN_SAMPLES, run_recipe

__all__ = ["BIAS_CORRECTION_SAMPLES", "RANGE_STEPS", "SCREEN_SAMPLES", "FineTuneConfig", "HeldOut", "MixedPrecision",
           "RecipeConfig", "RecipeResult", "RecipeStep", "Screening", "run_recipe"]
