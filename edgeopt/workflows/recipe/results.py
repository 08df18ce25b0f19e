"""What the recipe tried and chose: its configurations, steps and result (the report's ``recipe`` sections)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgeopt.ir import QuantizedGraph
from edgeopt.pipeline.quantize.mixed_precision import Promotion
from edgeopt.pipeline.quantize.sensitivity import LayerSensitivity
from edgeopt.qprogram import QProgram
from edgeopt.workflows.recipe.paired import PairedDrop


@dataclass(frozen=True)
class RecipeStep:
    """One tried configuration: its name, int8 accuracy and drop from fp32 (points) on the screening samples,
    build+eval time, estimated latency, whether later steps build on it (``adopted``; else it is dropped),
    the layers it promotes, its int8 accuracy on all samples when it was confirmed there
    (``confirmed``), the standard error of its drop on the screening samples, paired with fp32's
    (``drop_se``, ``paired``), and, when its program was byte for byte that of an earlier step, that step
    (``same_as``: its outputs were reused, not recomputed)."""

    step: str
    int8: float
    drop: float
    seconds: float
    latency_ms: float
    adopted: bool
    promoted: tuple[Promotion, ...] = ()
    confirmed: float | None = None
    drop_se: float | None = None
    same_as: str | None = None

    def as_dict(self) -> dict:
        entry = {"step": self.step, "int8": round(self.int8, 4), "drop": round(self.drop, 4),
                 "seconds": round(self.seconds, 3),
                 "latency_ms": round(self.latency_ms, 6),
                 "adopted": self.adopted}
        if self.promoted:
            entry["promoted"] = [p.to_json() for p in self.promoted]
        if self.confirmed is not None:
            entry["int8_all"] = round(self.confirmed, 4)
        if self.drop_se is not None:
            entry["drop_se"] = round(self.drop_se, 4)
        if self.same_as is not None:
            entry["same_as"] = self.same_as
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
    which), fp32 and int8 accuracy there, the int8 outputs, the drop there paired with fp32 (``paired``,
    with its standard error), the same on the tuning and held-out samples together (``combined``), and the
    fp32 outputs."""

    samples: int
    source: str
    fp32: float
    int8: float
    int8_out: np.ndarray
    paired: PairedDrop
    combined: PairedDrop
    fp32_out: np.ndarray | None = None

    def to_json(self, max_drop: float) -> dict:
        """The report's ``held_out`` entry; ``met``: the drop there within ``max_drop``; ``within_error``: within
        it plus one standard error; ``combined``: the same on every sample the chosen program ran on."""
        return {"samples": self.samples, "source": self.source, "fp32": round(self.fp32, 4),
                "int8": round(self.int8, 4), "drop": round(self.fp32 - self.int8, 4),
                **_verdict(self.paired, max_drop), "combined": {**self.combined.to_json(),
                                                                **_verdict(self.combined, max_drop)}}


def _verdict(drop: PairedDrop, max_drop: float) -> dict:
    return {"drop_se": round(drop.se, 4), "met": drop.drop <= max_drop, "within_error": drop.drop - drop.se <= max_drop}


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
    fp32_out: np.ndarray | None = None
    """The float graph's outputs on all the evaluation data (as ``int8_out``: deploy reuses them)."""

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
            out["recipe_budget"]["held_out"] = self.held_out.to_json(self.max_drop)
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
