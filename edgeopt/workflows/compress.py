"""compress: load a model, score its layers, choose per-layer ratios for a MAC target, write the fp32 ONNX.

The score table is cached in the output folder (``score_table.json``), keyed by the model's hash, the
methods, the candidate ratios and the data's hash, so a second target on the same model and data
costs no new scoring. ``model.compressed.onnx`` is a float ONNX file that goes through ``deploy`` like
any other; ``compress.json`` holds the choices, the table and the before/after figures, ``compress.svg``
plots the table (score against ratio per layer), ``report.html`` shows it all on one page.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgeopt.device_profiles import load_profile
from edgeopt.device_profiles.schema import DeviceProfile
from edgeopt.errors import DataError
from edgeopt.fileio import check_output_dir, write_set
from edgeopt.ir import Graph
from edgeopt.pipeline.compress.latency import latency_pricer
from edgeopt.pipeline.compress.layers import graph_macs, graph_params, node_macs, outputs
from edgeopt.pipeline.compress.ratio_selection import (DEFAULT_RATIOS, METHODS, Choice, ScoreTable,
                                                       compress_to_target, score, score_table)
from edgeopt.pipeline.emit.onnx import graph_to_onnx
from edgeopt.pipeline.frontend.data import check_labels
from edgeopt.pipeline.frontend.load import LoadedModel, load
from edgeopt.pipeline.frontend.sources import DataSource, open_sources
from edgeopt.pipeline.report.html import compress_html
from edgeopt.pipeline.report.plots import compress_svg
from edgeopt.pipeline.target import Target
from edgeopt.progress import report as report_count
from edgeopt.progress import reporting

log = logging.getLogger(__name__)

DEFAULT_CALIB_SIZE = 128
DEFAULT_EVAL_SIZE = 256
DEFAULT_FINETUNE_SIZE = 2048
TABLE_FILE = "score_table.json"
# Every file of the output folder, written as a set (fileio.write_set).
OUTPUT_FILES = ("model.compressed.onnx", "compress.json", "compress.svg", "report.html", TABLE_FILE)


@dataclass(frozen=True)
class LayerRow:
    """One compressed layer as the report prints it."""

    layer: str
    method: str
    ratio: float
    macs_before: int
    macs_after: int
    table_ratio: float      # the nearest candidate ratio scored in the table
    table_sqnr_db: float    # the model's output SQNR with only this layer compressed at table_ratio


@dataclass(frozen=True)
class CompressResult:
    graph: Graph
    choices: list[Choice]
    table: ScoreTable
    table_cached: bool
    rows: list[LayerRow]
    report: dict
    out_dir: Path


def compress(model: str | None, target_macs: float | None = None, *, out: str | Path,
             target_latency: float | None = None, device: str | None = None, methods: Sequence[str] = METHODS,
             data: str | Path | None = None, calib: str | Path | None = None,
             calib_size: int = DEFAULT_CALIB_SIZE, eval_size: int = DEFAULT_EVAL_SIZE,
             ratios: Sequence[float] = DEFAULT_RATIOS, input_shape: tuple[int, ...] | None = None,
             finetune_epochs: int = 0, finetune_size: int = DEFAULT_FINETUNE_SIZE,
             finetune_augment: bool = False, channel_multiple: int | None = None, prune_groups: bool = False,
             progress: Callable[[str], None] | None = None,
             preprocess: str | Path | Mapping[str, Any] | None = None) -> CompressResult:
    """Compress ``model`` to ``target_macs`` (a fraction of its MACs), or to ``target_latency`` (a fraction
    of its int8 latency on ``device``, priced by the profile's cost model), and write the results into ``out``.

    Args:
        model: as for ``deploy`` (an .onnx file, a .pt2, an entry point, or None for the example).
        target_macs: the fraction of the model's MACs to keep, in (0, 1].
        out: the output folder.
        methods: among ``"svd"`` and ``"prune"``; each layer gets the one that scores best per MAC.
        data: the evaluation set (its first ``eval_size``), a data source (``frontend.sources``: an .npz with
            ``x`` and optional labels ``y``, an image folder, an entry point ...); only the samples used are read.
        calib: the data for pruning's re-fit, as ``data`` (default: the start of ``data``).
        ratios: candidate fractions of a layer's MACs to keep.
        finetune_epochs: epochs of label-free distillation from the uncompressed model (0: none), on the
            first ``finetune_size`` samples of the calibration file (or of ``data``).
        finetune_augment: distil on random flips and shifts of those samples (NCHW images).
        channel_multiple: kept channel counts and SVD ranks are multiples of it (a kernel's channel
            block); None: with a device, ``profile_multiple`` of its int8 channel blocks, else 1.
        prune_groups: True to also prune groups of tied channels (a residual stream, cut in every reader at
            once) as one move; by default only layers whose input channels are their own (a residual
            block's inner convolutions) are pruned. The table is the same either way. Each move is scored
            alone, and a group's cuts in many layers do not add up with the other moves: on ResNet-32 at
            50 % of the MACs the selection gave 85.9 % top-1 with groups and 91.4 % without.
        progress: called with the name of each stage as it starts; if it also has ``count(task, done,
            total)`` (``edgeopt.progress.Counter``), that gets the layers scored.
        preprocess: how the images of an image-folder source become samples (``frontend.preprocess``).

    Raises:
        DataError: no calibration data, or a target or method out of range.
        ModelLoadError: the model cannot be loaded.
    """
    with reporting(progress):
        return _compress(model, target_macs, out, target_latency, device, methods, data, calib, calib_size,
                         eval_size, ratios, input_shape, finetune_epochs, finetune_size, finetune_augment,
                         channel_multiple, prune_groups, progress, preprocess)


def _compress(model: str | None, target_macs: float | None, out: str | Path, target_latency: float | None,
              device: str | None, methods: Sequence[str], data: str | Path | None, calib: str | Path | None,
              calib_size: int, eval_size: int, ratios: Sequence[float], input_shape: tuple[int, ...] | None,
              finetune_epochs: int, finetune_size: int, finetune_augment: bool, channel_multiple: int | None,
              prune_groups: bool, progress: Callable[[str], None] | None,
              preprocess: str | Path | Mapping[str, Any] | None) -> CompressResult:
    if (target_macs is None) == (target_latency is None):
        raise DataError("give one target: --target-macs R or --target-latency R --device PROFILE (R a fraction)")
    option, target = ("--target-macs", target_macs) if target_latency is None else ("--target-latency", target_latency)
    if not 0 < target <= 1:
        raise DataError(f"{option} {target} is not a fraction in (0, 1]; e.g. 0.5 keeps half")
    if target_latency is not None and device is None:
        raise DataError("--target-latency needs --device PROFILE: the latency is priced by that profile's cost model")
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise DataError(f"unknown compression method(s) {', '.join(unknown) or '(none)'}; use svd, prune or svd,prune")
    out = check_output_dir(out, OUTPUT_FILES)
    given = open_sources([data, calib], preprocess)
    say = progress or (lambda s: None)
    say("loading")
    loaded = load(model, input_shape)
    graph = loaded.graph
    # Only the samples some step uses are read (scoring, calibration, distillation), however large the source.
    used = max(eval_size, calib_size, finetune_size if finetune_epochs else 0)
    x, y = loaded.read_data(given[str(data)], limit=used) if data is not None else (None, None)
    if data is not None:
        check_labels(data, y, int(np.prod(graph.outputs[0].shape[1:])))
    pool = _calibration(given.get(str(calib)), loaded, x, max(calib_size, finetune_size if finetune_epochs else 0))
    calib_x = pool[:calib_size]
    eval_x, eval_y = (x[:eval_size], None if y is None else y[:eval_size]) if x is not None else (calib_x, None)
    profile = load_profile(device) if device is not None else None
    multiple = channel_multiple or (profile_multiple(profile) if profile is not None else 1)
    price = latency_pricer(Target(profile), calib_x) if target_latency is not None else None
    key = _key(graph, [*methods, f"device={device if price else ''}", f"multiple={multiple}"], ratios,
               calib_x, eval_x, eval_y)
    table, cached = _cached_table(out / TABLE_FILE, key)
    if table is None:
        say("scoring layers")
        table = score_table(graph, methods, ratios, calib_x, eval_x, eval_y, price=price, multiple=multiple,
                            progress=lambda i, n: report_count("scoring (layer, method, ratio) candidates", i, n))
    say("applying the chosen ratios")
    compressed, choices = compress_to_target(graph, table if prune_groups else table.untied(), target, calib_x,
                                             price=price, multiple=multiple)
    rows = _rows(graph, compressed, choices, table)
    base_logits = outputs(graph, eval_x)
    final = score(outputs(compressed, eval_x), base_logits, eval_y)
    finetuned = None
    if finetune_epochs > 0:
        from edgeopt.torch.distill import distill

        compressed = distill(compressed, graph, pool[:finetune_size], epochs=finetune_epochs,
                             augment=finetune_augment, progress=say)
        finetuned = score(outputs(compressed, eval_x), base_logits, eval_y)
    report = {
        "model": loaded.name, "target_macs": target_macs, "target_latency": target_latency, "device": device,
        "methods": list(methods), "ratios": list(ratios), "channel_multiple": multiple, "prune_groups": prune_groups,
        "macs_before": graph_macs(graph), "macs_after": graph_macs(compressed),
        "latency_ms_before": table.base_latency_ms, "latency_ms_after": price(compressed) if price else None,
        "params_before": graph_params(graph), "params_after": graph_params(compressed),
        "eval": {"n": len(eval_x), "labels": eval_y is not None, "base": asdict(table.base),
                 "compressed": asdict(final), "finetuned": None if finetuned is None else asdict(finetuned)},
        "finetune": {"epochs": finetune_epochs, "augment": finetune_augment,
                     "samples": int(min(finetune_size, len(pool))) if finetune_epochs else 0},
        "calibration_samples": len(calib_x),
        "layers": [asdict(r) for r in rows], "skipped": table.skipped, "score_table": table.to_json(),
        "table_cached": cached,
    }
    write_set(out, {"model.compressed.onnx": graph_to_onnx(compressed).SerializeToString(),
                    "compress.json": json.dumps(report, indent=1).encode(),
                    "compress.svg": compress_svg(report["score_table"]["entries"]).encode(),
                    "report.html": compress_html(report).encode(),
                    TABLE_FILE: json.dumps({"key": key, "table": table.to_json()}).encode()}, OUTPUT_FILES)
    return CompressResult(compressed, choices, table, cached, rows, report, out)


def profile_multiple(profile: DeviceProfile) -> int:
    """The channel multiple compression rounds to on ``profile``: its int8 output channel block, so that a
    pruned producer's kept outputs fill whole tiles; the consumer then reads that many input channels,
    so the multiple is also one of the input block (their least common multiple: 16 for XNNPACK's int8
    16-output by 8-input GEMM). An SVD's rank is the first factor's outputs and the second's inputs alike.
    """
    return math.lcm(*profile.performance.channel_block("int8"))


def _calibration(calib: DataSource | None, loaded: LoadedModel, x: np.ndarray | None, used: int) -> np.ndarray:
    if calib is not None:
        return loaded.read_data(calib, labels=False, limit=used)[0]
    if loaded.calib is not None:
        return loaded.calib
    if x is None:
        raise DataError("compress needs data: pass --calib CALIB.npz or --data DATA.npz (x: model-ready inputs)")
    return x


def _key(graph: Graph, methods: Sequence[str], ratios: Sequence[float], *arrays: np.ndarray | None) -> str:
    h = hashlib.sha256(graph_to_onnx(graph).SerializeToString())
    h.update(json.dumps([list(methods), [float(r) for r in ratios]]).encode())
    for a in arrays:
        h.update(b"none" if a is None else np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def _cached_table(path: Path, key: str) -> tuple[ScoreTable | None, bool]:
    try:
        stored = json.loads(path.read_text())
        if stored.get("key") == key:
            return ScoreTable.from_json(stored["table"]), True
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return None, False


def _rows(graph: Graph, compressed: Graph, choices: list[Choice], table: ScoreTable) -> list[LayerRow]:
    after = {n.name: node_macs(compressed, n) for n in compressed.nodes}
    rows = []
    for node in graph.nodes:
        choice = next((c for c in choices if c.layer == node.name), None)
        if choice is None:
            continue
        entries = [e for e in table.entries if e.layer == node.name and e.method == choice.method]
        nearest = min(entries, key=lambda e: abs(e.ratio - choice.ratio))
        macs_after = sum(after.get(n, 0) for n in (node.name, f"{node.name}.svd0", f"{node.name}.svd1"))
        rows.append(LayerRow(node.name, choice.method, round(choice.ratio, 4), node_macs(graph, node), macs_after,
                             nearest.ratio, round(nearest.score.sqnr_db, 2)))
    return rows
