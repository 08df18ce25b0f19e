"""Per-layer compression ratios for a MAC budget (AIMET's greedy compression-ratio selection, in spirit).

1. **Score table**: every compressible layer is compressed alone, by each method, at each candidate ratio
   (the fraction of the layer's MACs kept), and the model is scored against the uncompressed one on
   the evaluation data: output SQNR and top-1 agreement without labels, top-1 with labels.
2. **Choice**: each (layer, method, ratio) is a saving (MACs) at a loss (the top-1 drop when labels are
   given, else the relative output noise ``10^(-SQNR/10)``, which adds up across layers as independent
   noises do). Starting from the uncompressed model, the move of least added loss per MAC saved is
   taken until the budget is met; the last move's ratio is then interpolated so the model lands on the
   budget rather than below it.
3. **Application**: prunings first, then decompositions, each re-fit against the uncompressed model.

With ``multiple`` > 1 (a kernel's channel block, e.g. 16 for XNNPACK's int8 output-channel tiles on
this host), every count that compression decides (a pruned layer's kept input channels, an SVD's rank)
is rounded to a multiple of it: 16 channels pruned to 11 run as slowly as 16, so the table offers only
counts that can save time, and candidate ratios giving the same count are scored once.
"""
from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from edgeopt.ir import Graph, Node
from edgeopt.pipeline.compress.channel_groups import TiedChannels, channels
from edgeopt.pipeline.compress.channel_pruning import (input_channel_drops, prune_input_channels, prune_reason,
                                                      tied_layers)
from edgeopt.pipeline.compress.layers import graph_macs, node_by_name, node_macs, outputs
from edgeopt.pipeline.compress.refit import refit_decomposition
from edgeopt.pipeline.compress.svd import decompose, full_rank, rank_for_ratio, svd_kind

log = logging.getLogger(__name__)

METHODS = ("svd", "prune")
DEFAULT_RATIOS = (0.25, 0.375, 0.5, 0.625, 0.75, 0.875)


@dataclass(frozen=True)
class Score:
    """How a compressed model's outputs compare with the uncompressed model's on the evaluation data."""

    sqnr_db: float
    agreement: float          # top-1 agreement with the uncompressed model, percent
    top1: float | None = None  # top-1 against the labels, percent, when labels were given


@dataclass(frozen=True)
class Entry:
    """One row of the score table: ``layer`` compressed alone by ``method`` keeping ``ratio`` of its MACs."""

    layer: str
    method: str
    ratio: float
    macs: int                 # the whole model's MACs with that one change
    score: Score
    tied: tuple[str, ...] = ()  # other layers whose input channels a pruning also cuts
    latency_ms: float | None = None  # the whole model's priced latency with that one change, when priced


@dataclass
class ScoreTable:
    """The per-layer score table, and the layers left alone with the reason."""

    base_macs: int
    base: Score
    entries: list[Entry] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    base_latency_ms: float | None = None
    not_faster: list[str] = field(default_factory=list)  # priced candidates no faster than the model, not scored

    def to_json(self) -> dict:
        return {"base_macs": self.base_macs, "base": asdict(self.base), "base_latency_ms": self.base_latency_ms,
                "entries": [asdict(e) for e in self.entries], "skipped": self.skipped, "not_faster": self.not_faster}

    @classmethod
    def from_json(cls, data: dict) -> ScoreTable:
        entries = [Entry(**{**e, "score": Score(**e["score"]), "tied": tuple(e["tied"])}) for e in data["entries"]]
        return cls(data["base_macs"], Score(**data["base"]), entries, dict(data["skipped"]), data["base_latency_ms"],
                   list(data["not_faster"]))

    def untied(self) -> ScoreTable:
        """The table without the prunings that also cut other layers' inputs (a residual stream's group):
        only layers whose input channels are theirs alone (a block's inner convolutions) get pruned."""
        entries = [e for e in self.entries if not (e.method == "prune" and e.tied)]
        return ScoreTable(self.base_macs, self.base, entries, self.skipped, self.base_latency_ms, self.not_faster)

    def base_cost(self, priced: bool) -> float:
        """The uncompressed model's latency (``priced``) or MACs."""
        return self.base_latency_ms if priced else self.base_macs

    def cost(self, entry: Entry, priced: bool) -> float:
        """An entry's whole-model latency (``priced``) or MACs."""
        return entry.latency_ms if priced else entry.macs


@dataclass(frozen=True)
class Choice:
    """A layer's chosen compression: ``method`` keeping ``ratio`` of its MACs."""

    layer: str
    method: str
    ratio: float


def score(logits: np.ndarray, base_logits: np.ndarray, labels: np.ndarray | None) -> Score:
    """Output SQNR (dB) and top-1 agreement of ``logits`` against ``base_logits``, top-1 against ``labels``."""
    flat, base = logits.reshape(len(logits), -1), base_logits.reshape(len(base_logits), -1)
    noise = float(np.sum((flat.astype(np.float64) - base) ** 2))
    sqnr = 10 * math.log10(float(np.sum(base.astype(np.float64) ** 2)) / noise) if noise > 0 else 200.0
    agreement = float(np.mean(flat.argmax(1) == base.argmax(1)) * 100)
    top1 = float(np.mean(flat.argmax(1) == labels) * 100) if labels is not None else None
    return Score(min(sqnr, 200.0), agreement, top1)


def rounded_count(count: float, multiple: int, limit: int) -> int:
    """``count`` rounded to the nearest multiple of ``multiple`` (at least one multiple, at most ``limit``;
    ``limit`` itself when it is below ``multiple``)."""
    return min(limit, max(multiple, round(count / multiple) * multiple))


def kept_count(graph: Graph, choice: Choice, multiple: int = 1, reference: Graph | None = None) -> int:
    """The channel count ``choice`` keeps: its SVD rank, or a pruning's input channels (counted on
    ``reference``, the uncompressed model, when given), a multiple of ``multiple``."""
    node = node_by_name(graph, choice.layer)
    if choice.method == "svd":
        rank = rank_for_ratio(graph, node, choice.ratio, node_macs(graph, node))
        return rounded_count(rank, multiple, full_rank(graph, node))
    c = channels(graph, node.inputs[0])
    original = channels(reference, node.inputs[0]) if reference is not None else c
    return min(c, rounded_count(choice.ratio * original, multiple, original))


def compress_layer(graph: Graph, choice: Choice, calib: np.ndarray, reference: Graph | None = None,
                   multiple: int = 1) -> tuple[Graph, tuple[str, ...]]:
    """``graph`` with one layer compressed as ``choice`` says (pruning and SVD re-fit on ``calib`` against
    ``reference``, the uncompressed model, else ``graph``), and the other
    layers whose input channels that pruning also cut. Kept counts are multiples of ``multiple``.

    Raises:
        TiedChannels: pruning that layer's input channels is impossible.
        ValueError: the layer cannot be decomposed.
    """
    node = node_by_name(graph, choice.layer)
    keep = kept_count(graph, choice, multiple, reference)
    if choice.method == "svd":
        decomposed = decompose(graph, node.name, keep)
        return refit_decomposition(decomposed, graph, reference or graph, node.name, calib), ()
    drops = input_channel_drops(graph, node.name, keep, calib)
    return (prune_input_channels(graph, node.name, keep, calib, reference, drops=drops),
            tied_layers(graph, node.name, drops))


def score_table(graph: Graph, methods: Sequence[str], ratios: Sequence[float], calib: np.ndarray,
                x: np.ndarray, labels: np.ndarray | None = None,
                progress: Callable[[int, int], None] | None = None,
                price: Callable[[Graph], float] | None = None, multiple: int = 1) -> ScoreTable:
    """Score every compressible layer of ``graph`` alone, by each method, at each ratio.

    Args:
        graph: the uncompressed model.
        methods: among ``"svd"`` and ``"prune"``.
        ratios: candidate fractions of a layer's MACs to keep (each in (0, 1)).
        calib: calibration inputs for pruning's re-fit.
        x: evaluation inputs; ``labels`` their classes, when known.
        progress: called with (done, total) after each candidate.
        price: a model's latency (e.g. ``latency.latency_pricer``); each candidate is priced with it first,
            and one no faster than the uncompressed model (a decomposition whose extra op and padded
            channel blocks cost what its MACs save) is listed in ``not_faster`` and not scored.
        multiple: kept channel counts and ranks are multiples of it; ratios giving the same count are
            scored once (the first).
    """
    base_logits = outputs(graph, x)
    table = ScoreTable(graph_macs(graph), score(base_logits, base_logits, labels),
                       base_latency_ms=price(graph) if price else None)
    jobs: list[Choice] = []
    for node in graph.nodes:
        reasons = []
        for method in methods:
            reason = _reason(graph, node, method)
            if reason is None:
                counts = {kept_count(graph, Choice(node.name, method, r), multiple): r for r in reversed(ratios)}
                jobs += [Choice(node.name, method, r) for r in ratios if r in counts.values()]
            else:
                reasons.append(f"{method}: {reason}")
        if reasons and node_macs(graph, node) and not any(j.layer == node.name for j in jobs):
            table.skipped[node.name] = "; ".join(reasons)
    for i, job in enumerate(jobs):
        try:
            compressed, tied = compress_layer(graph, job, calib, multiple=multiple)
        except TiedChannels as exc:
            table.skipped.setdefault(job.layer, f"{job.method}: {exc}")
            continue
        macs = graph_macs(compressed)
        latency = price(compressed) if price else None
        if latency is not None and latency >= table.base_latency_ms:
            table.not_faster.append(f"{job.layer} {job.method} {job.ratio:g}")
        elif macs < table.base_macs:
            table.entries.append(Entry(job.layer, job.method, job.ratio, macs,
                                       score(outputs(compressed, x), base_logits, labels), tied, latency))
        if progress:
            progress(i + 1, len(jobs))
    return table


def _reason(graph: Graph, node: Node, method: str) -> str | None:
    if method == "svd":
        if svd_kind(graph, node) is None:
            return f"{node.op} node '{node.name}' is not an ungrouped Conv or a linear layer with constant weights"
        return None
    return prune_reason(graph, node) if node.op == "Conv" else f"{node.op} node '{node.name}' is not a Conv"


def _loss(s: Score, base: Score) -> float:
    noise = 10 ** (-s.sqnr_db / 10)
    if s.top1 is not None and base.top1 is not None:
        return max(0.0, base.top1 - s.top1) + 1e-3 * noise  # noise breaks ties between equal top-1 drops
    return noise


def choose(table: ScoreTable, target_cost: float, priced: bool = False) -> list[Choice]:
    """Per-layer choices whose summed savings bring the model to ``target_cost`` (MACs, or latency in ms
    when ``priced``) at the least summed loss.

    A layer's savings and losses are read from the table as if they added up; a pruning decides the
    input channels of the layers tied to it (a residual stream), so those are not pruned again. The last
    move's ratio is interpolated between its two table neighbours so that the total lands on the target.
    """
    base = table.base_cost(priced)
    need = base - target_cost
    options: dict[str, list[tuple[float, float, Entry]]] = {}
    for e in table.entries:
        options.setdefault(e.layer, []).append((base - table.cost(e, priced), _loss(e.score, table.base), e))
    current: dict[str, tuple[float, float, Entry | None]] = {layer: (0, 0.0, None) for layer in options}
    saved = 0
    last: tuple[str, tuple[float, float, Entry | None]] | None = None
    locked: set[str] = set()  # layers whose input channels another layer's pruning already decides
    while saved < need:
        best = None
        for layer, opts in options.items():
            s0, l0, _ = current[layer]
            for s, loss, e in opts:
                if s > s0 and not (e.method == "prune" and layer in locked):
                    rate = (loss - l0) / (s - s0)
                    if best is None or rate < best[0]:
                        best = (rate, layer, (s, loss, e))
        if best is None:
            break
        _, layer, move = best
        if move[2].method == "prune":
            locked.update(move[2].tied)
        last = (layer, current[layer])
        saved += move[0] - current[layer][0]
        current[layer] = move
    choices = {layer: Choice(layer, e.method, e.ratio) for layer, (_, _, e) in current.items() if e is not None}
    if last is not None and saved > need:
        layer, (s_prev, _, e_prev) = last
        s_new, _, e_new = current[layer]
        r_prev = e_prev.ratio if e_prev is not None and e_prev.method == e_new.method else 1.0
        s_prev = s_prev if e_prev is not None and e_prev.method == e_new.method else 0
        t = (s_new - (saved - need) - s_prev) / (s_new - s_prev)   # fraction of the move that is needed
        choices[layer] = Choice(layer, e_new.method, r_prev + t * (e_new.ratio - r_prev))
    return list(choices.values())


def apply(graph: Graph, choices: Sequence[Choice], calib: np.ndarray, multiple: int = 1,
          memo: dict[tuple, Graph] | None = None) -> Graph:
    """``graph`` with every choice applied: prunings in graph order (re-fit against ``graph``), then SVDs;
    kept counts are multiples of ``multiple``.

    ``memo`` (kept across calls on the same graph and data) holds the model after each prefix of the
    ordered choices, keyed by the layers, methods and kept counts: successive rounds of
    ``compress_to_target`` that differ late in the order redo only the steps after the difference.
    """
    order = {n.name: i for i, n in enumerate(graph.nodes)}
    compressed = graph
    key: tuple = ()
    for c in sorted(choices, key=lambda c: (c.method != "prune", order[c.layer])):
        key += ((c.layer, c.method, kept_count(compressed, c, multiple, reference=graph)),)
        if memo is not None and key in memo:
            compressed = memo[key]
            continue
        compressed, _ = compress_layer(compressed, c, calib, reference=graph, multiple=multiple)
        if memo is not None:
            memo[key] = compressed
    return compressed


def compress_to_target(graph: Graph, table: ScoreTable, target: float, calib: np.ndarray,
                       rounds: int = 6, tolerance: float = 0.02,
                       price: Callable[[Graph], float] | None = None, multiple: int = 1
                       ) -> tuple[Graph, list[Choice]]:
    """Choose and apply ratios so the model keeps ``target`` (a fraction) of its MACs, or of its latency
    when ``price`` (the pricer the table was priced with) is given.

    Layers interact (pruning a layer's input also thins its producer, a decomposed layer may also lose
    input channels), so the achieved cost is measured and the cost asked of the table rescaled by
    (saving wanted) / (saving achieved), up to ``rounds`` times, until the model lands at most
    ``tolerance`` (a fraction of the base cost) under the target. Pruning moves in whole channels, which
    on a narrow residual stream can be several percent of the MACs; when no round lands in that window,
    the closest result over the target is topped up by decomposing one more layer (SVD moves in single
    ranks) just enough. The closest result not over the target is kept (the closest over it when none is).
    ``multiple``: as for ``score_table`` (the table should have been scored with the same); counts then
    move in whole blocks and the window may not be reached.
    """
    priced = price is not None
    measure = price or graph_macs
    base = table.base_cost(priced)
    goal = base * target
    want = base - goal
    ask = want
    results: list[tuple[float, Graph, list[Choice]]] = []
    memo: dict[tuple, Graph] = {}
    for _ in range(rounds):
        choices = choose(table, base - ask, priced)
        compressed = apply(graph, choices, calib, multiple, memo)
        cost = measure(compressed)
        results.append((cost, compressed, choices))
        log.info("target %.4g, asked %.4g: %.4g", goal, base - ask, cost)
        if goal - tolerance * base <= cost <= goal or want == 0:
            break
        ask = min(base, ask * want / max(base - cost, 1e-9 * base))
        if cost > goal and any(r[0] == cost for r in results[:-1]):  # stuck on a discrete step: ask for more
            ask = min(base, ask + tolerance * base / 2)
    if not any(goal - tolerance * base <= r[0] <= goal for r in results):
        over = [r for r in results if r[0] > goal]
        if over:
            cost, _, choices = min(over, key=lambda r: r[0])
            topped = _top_up(table, choices, cost - goal + tolerance * base / 2, priced)  # aim inside the window
            if topped is not None:
                compressed = apply(graph, topped, calib, multiple, memo)
                results.append((measure(compressed), compressed, topped))
    under = [r for r in results if r[0] <= goal]
    _, compressed, choices = max(under, key=lambda r: r[0]) if under else min(results, key=lambda r: r[0])
    return compressed, choices


def _top_up(table: ScoreTable, choices: list[Choice], excess: float, priced: bool) -> list[Choice] | None:
    """``choices`` plus the SVD of one more layer, at the least loss per saving, saving about ``excess``."""
    chosen = {c.layer for c in choices}
    best = None
    for e in table.entries:
        saving = table.base_cost(priced) - table.cost(e, priced)
        if e.method != "svd" or e.layer in chosen or saving < excess:
            continue
        rate = _loss(e.score, table.base) / saving
        if best is None or rate < best[0]:
            best = (rate, e, saving)
    if best is None:
        return None
    _, e, saving = best
    # A decomposition's saving grows about linearly as its ratio falls: (1 - ratio) * the layer's cost.
    return [*choices, Choice(e.layer, "svd", 1 - (1 - e.ratio) * excess / saving)]
