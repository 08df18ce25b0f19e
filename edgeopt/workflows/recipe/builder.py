"""Builds and scores the recipe's configurations through the ``Target``, caching what steps share."""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import replace

import numpy as np

from edgeopt.ir import Graph, QuantizedGraph
from edgeopt.memory import release_free_memory
from edgeopt.pipeline.calibrate import TensorStats, calibrate
from edgeopt.pipeline.evaluate import agreement, run_float, run_int8, top1
from edgeopt.pipeline.frontend.samples import Samples, as_samples
from edgeopt.pipeline.optimize.cross_layer_equalization import cross_layer_equalization
from edgeopt.pipeline.quantize.adaround import AdaRoundConfig, adaround
from edgeopt.pipeline.quantize.bias_correction import empirical_bias_correction
from edgeopt.pipeline.quantize.float_plan import with_float_weights
from edgeopt.pipeline.quantize.mixed_precision import promotion_plan
from edgeopt.pipeline.quantize.precision import apply_precision
from edgeopt.pipeline.quantize.spec import WEIGHTED_OPS
from edgeopt.pipeline.target import Target
from edgeopt.qprogram import QProgram
from edgeopt.runtimes.cost import estimate
from edgeopt.workflows.recipe.paired import PairedDrop, hits, paired_drop
from edgeopt.workflows.recipe.results import FineTuneConfig, RecipeConfig

BIAS_CORRECTION_SAMPLES = 32
Built = tuple[QuantizedGraph, QProgram, float]
"""A configuration: its quantized graph, the program that ships from it, and that program's estimated
latency (ms)."""


class Builder:
    """Builds and scores configurations, caching what several steps share (CLE graph, statistics).

    Of the evaluation samples only the screening subset's inputs are held (``x``: the first ``screen``);
    every other pass (confirmations, the all-sample score) reads ``all_x`` in chunks. Outputs (one row of
    the model's first output a sample) are kept."""

    def __init__(self, graph: Graph, calib_x: np.ndarray, x: np.ndarray | Samples, y: np.ndarray | None,
                 screen: int, target: Target, base_plan: Mapping[str, str], adaround_config: AdaRoundConfig,
                 finetune_config: FineTuneConfig) -> None:
        self.graph, self.calib_x, self.target = graph, calib_x, target
        self.base_plan, self.adaround_config, self.finetune_config = dict(base_plan), adaround_config, finetune_config
        self.all_x = as_samples(x, y)
        self.all_y = self.all_x.labels
        self.screened = 0 < screen < len(self.all_x)
        n = screen if self.screened else len(self.all_x)
        head, self.rest = self.all_x.split(n)
        self.x, self.y = self.all_x.head(n), head.labels
        self.fp32_out = run_float(graph, self.x)
        self.all_fp32_out = (np.concatenate([self.fp32_out, run_float(graph, self.rest)]) if len(self.rest)
                             else self.fp32_out)
        self.fp32 = top1(self.fp32_out, self.y) if self.y is not None else 100.0
        self.fp32_all = top1(self.all_fp32_out, self.all_y) if self.all_y is not None else 100.0
        self._graphs: dict[str, Graph] = {}
        self._stats: dict[tuple[str, str], dict[str, TensorStats]] = {}
        self._raw: dict[tuple[str, bool], dict[str, TensorStats]] = {}  # (cle, with histograms)
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
        """The ranges ``method`` sets on the graph equalized with ``cle``. Histograms (half of calibration's
        time on EfficientNet-Lite0) are collected only for a method that reads them: min/max's ranges are
        the same without."""
        if (cle, method) not in self._stats:
            histograms = method != "minmax"
            key = (cle, True) if (cle, True) in self._raw or histograms else (cle, False)
            if key not in self._raw:
                self._raw[key] = calibrate(self.float_graph(cle), self.calib_x, histograms=histograms)
            self._stats[cle, method] = self.target.set_ranges(self.float_graph(cle), self._raw[key], method)
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
        release_free_memory()  # what the last configuration's build and scoring freed
        # The plan applies after AdaRound and bias correction, which refine the int8 graph (``int8``).
        plan = {**self.base_plan, **promotion_plan(config.promoted)}
        qgraph = apply_precision(self.int8(config), self.stats(config.cle, config.range_method), plan)
        # Float layers get back the float weights and biases those refinements changed for int8's sake.
        qgraph = with_float_weights(qgraph, self.float_graph(config.cle))
        shipped = self.target_for(config).ship(qgraph)
        return qgraph, shipped.program, estimate(shipped.program, self.target.profile, shipped.placement).latency_ms

    def score(self, program: QProgram) -> tuple[float, np.ndarray]:
        """The program's accuracy on the screening samples, and its outputs there (``score_rest``: the rest)."""
        release_free_memory()  # what building it freed (AdaRound's and fine-tuning's tensors)
        out = run_int8(program, self.x)
        return self.accuracy(out, every_sample=False), out

    def score_rest(self, program: QProgram, screen_out: np.ndarray) -> np.ndarray:
        """The program's outputs on every evaluation sample, given ``screen_out``, its outputs on the screening
        samples: only the samples past them are run, read in chunks (each sample's outputs do not depend on
        the others)."""
        if not len(self.rest):
            return screen_out
        return np.concatenate([screen_out, run_int8(program, self.rest)])

    def paired(self, out: np.ndarray, every_sample: bool = False) -> PairedDrop:
        """The drop from fp32 of int8 outputs ``out`` on the screening samples (or on all of them), paired
        sample by sample with fp32's, and its standard error (``paired``)."""
        y, fp32 = (self.all_y, self.all_fp32_out) if every_sample else (self.y, self.fp32_out)
        return paired_drop(hits(fp32, y, fp32), hits(out, y, fp32))

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
        return top1(out, y) if y is not None else agreement(out, fp32)
