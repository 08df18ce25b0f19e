"""AdaRound (Nagel et al. 2020, "Up or Down? Adaptive Rounding for Post-Training Quantization").

Each Conv/Gemm weight is rounded up or down per element, chosen by minimising the layer's output
reconstruction error instead of rounding to nearest. Layer by layer, in torch on the CPU:

    W̃ = s · clip(floor(W / s) + h(V), -qmax, qmax),   h(V) = clip(sigmoid(V)·(ζ - γ) + γ, 0, 1)
    loss = Σ_c (f(W̃ ∗ x̃ + b) - f(W ∗ x + b))²  (summed over channels, averaged over the rest)
           + λ · Σ (1 - |2h(V) - 1|^β)

with ζ = 1.1, γ = -0.1, λ = 0.01, Adam on V (initialised so h(V) is the fractional part: the start is
nearest rounding's soft version), no regulariser for the first 20 % of the budget, then β annealed
linearly from 20 to 2 (the paper's and AIMET's schedule). ``f`` is the layer's fused activation
(ReLU/ReLU6), as in the paper's reconstruction of the activation's output.

Choices made here (documented because they trade accuracy for CPU minutes):
    * Inputs: the layer's float inputs from the float graph, rounded to the input tensor's own int8
      encoding (``x̃``); the target is the float layer on the float input. This is the paper's
      asymmetric reconstruction restricted to the layer's own input rounding: it needs no partially
      quantized model to be run, so all layers' inputs can be gathered in one ONNX Runtime pass (split
      into passes only when they exceed ``cache_bytes``), and errors of earlier layers are not
      compensated.
    * Budget: ``iterations`` (default 500, against AIMET's 10 000) Adam steps of ``batch_size``
      cached samples per layer; after the warm-up a layer stops early once its rounding has
      converged: no up/down decision (``h(V) >= 0.5``) changed over the last two checks
      (``2 * CHECK_EVERY`` steps), or every variable has hardened (``|2h(V) - 1| > 0.99``), after
      which the regulariser only pushes decided variables further.
    * Whole layer at once: V has the weight's shape, and all its output channels are optimised in one
      vectorised step (channels are independent given the input, so this equals per-channel runs).
    * Safeguard: a layer whose AdaRounded reconstruction error on the cached samples is not below
      nearest rounding's keeps nearest rounding.

Hook into the pipeline: the graph's float weight is replaced by its AdaRounded value ``s · q`` (as
float32) and the layer's weight encoding is returned, to be passed to ``quantize_minmax(...,
weight_encodings=...)`` so it is not recomputed from the new weights (their max may have moved).
``QParams.quantize`` then reproduces ``q`` exactly: ``fl32(s·q) = s·q·(1 + δ)`` with ``|δ| ≤ 2⁻²⁴``,
so ``fl32(s·q) / s`` is within ``|q|·2⁻²⁴ ≤ 127·2⁻²⁴ ≪ 0.5`` of ``q`` and rounds back to it; this is
also checked on every layer.
"""
from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from edgeopt.errors import InternalError
from edgeopt.ir import Graph, Node, QParams, QuantizedGraph
from edgeopt.pipeline.emit.onnx import graph_to_onnx
from edgeopt.runtimes.onnxruntime import OnnxRuntime

log = logging.getLogger(__name__)

ZETA, GAMMA = 1.1, -0.1
ADAROUND_OPS = ("Conv", "Gemm")
CHECK_EVERY = 50  # iterations between convergence checks


@dataclass(frozen=True)
class AdaRoundConfig:
    """Budget and hyper-parameters of AdaRound (defaults: see the module docstring)."""

    iterations: int = 500
    batch_size: int = 32
    samples: int = 256
    reg_weight: float = 0.01
    beta_start: float = 20.0
    beta_end: float = 2.0
    warm_up: float = 0.2
    lr: float = 1e-2
    cache_bytes: int = 512 * 2**20
    seed: int = 0


@dataclass(frozen=True)
class LayerResult:
    """What AdaRound did to one layer: reconstruction MSE with nearest and adaptive rounding."""

    node: str
    nearest_mse: float
    adaround_mse: float
    iterations: int
    seconds: float
    flipped: int  # weights rounded differently from nearest
    kept_nearest: bool


@dataclass(frozen=True)
class AdaRoundResult:
    """The graph with AdaRounded weights, their (fixed) encodings, and a report per layer."""

    graph: Graph
    weight_encodings: Mapping[str, QParams]
    layers: tuple[LayerResult, ...]


def adaround(qgraph: QuantizedGraph, calib_x: np.ndarray, config: AdaRoundConfig = AdaRoundConfig()) -> AdaRoundResult:
    """AdaRound every Conv/Gemm weight of ``qgraph`` on (at most ``config.samples`` of) ``calib_x``.

    Args:
        qgraph: the float graph with its encodings (from ``quantize_minmax``): the weights' per-channel
            scales and the inputs' activation encodings are taken from it.
        calib_x: calibration inputs, as the graph input expects them.
        config: budget and hyper-parameters.

    Returns:
        The new graph (weights replaced by ``scale * q``), the weight encodings to keep, per-layer results.
    """
    import torch

    graph, enc = qgraph.graph, qgraph.encodings
    layers = [n for n in graph.nodes if n.op in ADAROUND_OPS and n.inputs[1] in graph.initializers
              and n.inputs[1] in enc and n.inputs[0] in enc]
    x = calib_x[: config.samples]
    weights = dict(graph.initializers)
    encodings: dict[str, QParams] = {}
    results = []
    torch.manual_seed(config.seed)
    for group in _cache_groups(graph, layers, len(x), config.cache_bytes):
        cached = _layer_inputs(graph, [n.inputs[0] for n in group], x)
        for node in group:
            start = time.perf_counter()
            w_name = node.inputs[1]
            w_q = enc[w_name]
            q, result = _adaround_layer(node, graph, cached[node.inputs[0]], enc[node.inputs[0]], w_q, config)
            new_w = (q.astype(np.float64) * _bcast(w_q.scale.astype(np.float64), w_q.axis, q.ndim)).astype(np.float32)
            if not np.array_equal(w_q.quantize(new_w), q.astype(w_q.dtype)):
                raise InternalError(f"AdaRound weights of '{node.name}' do not round-trip through their encoding")
            weights[w_name], encodings[w_name] = new_w, w_q
            results.append(LayerResult(node.name, *result, time.perf_counter() - start,
                                       *_flips(graph.initializers[w_name], w_q, q, result)))
            log.info("adaround %s: mse %.3g → %.3g in %d iterations", node.name, result[0], result[1], result[2])
        del cached
    return AdaRoundResult(graph.replace(initializers=weights), encodings, tuple(results))


def _flips(w: np.ndarray, w_q: QParams, q: np.ndarray, result: tuple) -> tuple[int, bool]:
    nearest = w_q.quantize(w).astype(np.int64)
    return int(np.count_nonzero(nearest != q)), bool(result[1] >= result[0])


def _bcast(a: np.ndarray, axis: int | None, ndim: int) -> np.ndarray:
    if axis is None:
        return a.reshape(())
    shape = [1] * ndim
    shape[axis] = -1
    return a.reshape(shape)


def _cache_groups(graph: Graph, layers: list[Node], n: int, budget: int) -> list[list[Node]]:
    """Consecutive layers whose cached inputs fit in ``budget`` bytes together (one ORT pass each)."""
    groups: list[list[Node]] = []
    size = 0
    for node in layers:
        nbytes = 4 * n * math.prod(graph.shape(node.inputs[0])[1:])
        if not groups or size + nbytes > budget:
            groups.append([])
            size = 0
        groups[-1].append(node)
        size += nbytes
    return groups


def _layer_inputs(graph: Graph, names: list[str], x: np.ndarray) -> dict[str, np.ndarray]:
    """The float values of tensors ``names`` on every sample of ``x`` (graph inputs taken as they are)."""
    inputs = {t.name for t in graph.inputs}
    wanted = sorted({t for t in names if t not in inputs})
    out = {t: x for t in names if t in inputs}
    if wanted:
        sub = graph.replace(outputs=tuple(graph.tensors[t] for t in wanted))
        session = OnnxRuntime(graph_to_onnx(sub))
        chunks: dict[str, list[np.ndarray]] = {t: [] for t in wanted}
        for values in session.iter_run(x):
            for name, value in zip(session.output_names, values):
                chunks[name].append(value)
        out.update({t: np.concatenate(v) for t, v in chunks.items()})
    return out


def _adaround_layer(node: Node, graph: Graph, x: np.ndarray, x_q: QParams, w_q: QParams,
                    cfg: AdaRoundConfig) -> tuple[np.ndarray, tuple[float, float, int]]:
    """Integer weights of one layer, and (nearest MSE, AdaRound MSE, iterations used)."""
    import torch

    w = np.asarray(graph.initializers[node.inputs[1]], np.float64)
    bias = graph.initializers.get(node.inputs[2]) if len(node.inputs) > 2 and node.inputs[2] else None
    scale = _bcast(w_q.scale.astype(np.float64), w_q.axis, w.ndim)
    qmax = (float(np.abs(w / scale).max()) if w.size else 0.0)
    qmax = float(min(round(qmax), w_q.qmax))  # the weight grid's extent: 2^(bits-1) - 1
    layer = _torch_layer(node, graph, torch.tensor(np.asarray(bias, np.float32)) if bias is not None else None)
    xf = torch.from_numpy(np.ascontiguousarray(x, np.float32))
    xq = torch.from_numpy(x_q.dequantize(x_q.quantize(x)))
    w_t = torch.from_numpy(w.astype(np.float32))
    s_t = torch.from_numpy(scale.astype(np.float32))
    with torch.no_grad():
        target = layer(xf, w_t)
    floor = torch.floor(w_t / s_t)
    frac = (w_t / s_t - floor).clamp(0.0, 1.0)
    # h(V) = frac at the start: V = logit((frac - γ) / (ζ - γ)).
    p = ((frac - GAMMA) / (ZETA - GAMMA)).clamp(1e-4, 1 - 1e-4)
    v = torch.log(p / (1 - p)).requires_grad_(True)

    def soft(v: torch.Tensor) -> torch.Tensor:
        return (torch.sigmoid(v) * (ZETA - GAMMA) + GAMMA).clamp(0.0, 1.0)

    def weights(h: torch.Tensor) -> torch.Tensor:
        return s_t * torch.clamp(floor + h, -qmax, qmax)

    def recon(wt: torch.Tensor) -> float:
        with torch.no_grad():
            return float(_recon_loss(layer(xq, wt), target))

    nearest = torch.clamp(floor + (frac >= 0.5).float(), -qmax, qmax)
    nearest_mse = recon(s_t * nearest)
    opt = torch.optim.Adam([v], lr=cfg.lr)
    warm = int(cfg.warm_up * cfg.iterations)
    gen = torch.Generator().manual_seed(cfg.seed)
    it, settled, last = 0, 0, None
    for it in range(1, cfg.iterations + 1):
        idx = torch.randint(0, len(xq), (min(cfg.batch_size, len(xq)),), generator=gen)
        h = soft(v)
        loss = _recon_loss(layer(xq[idx], weights(h)), target[idx])
        if it > warm:
            rel = (it - warm) / max(cfg.iterations - warm, 1)
            beta = cfg.beta_end + (cfg.beta_start - cfg.beta_end) * max(0.0, 1.0 - rel)
            loss = loss + cfg.reg_weight * (1 - (2 * h - 1).abs().pow(beta)).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if it > warm and it % CHECK_EVERY == 0:
            with torch.no_grad():
                decided = soft(v) >= 0.5
                settled = settled + 1 if last is not None and bool((decided == last).all()) else 0
                last = decided
                if settled >= 2 or bool(((2 * soft(v) - 1).abs() > 0.99).all()):
                    break
    with torch.no_grad():
        q = torch.clamp(floor + (soft(v) >= 0.5).float(), -qmax, qmax)
    ada_mse = recon(s_t * q)
    if ada_mse >= nearest_mse:
        q = nearest
    return q.numpy().astype(np.int64), (nearest_mse, ada_mse, it)


def _recon_loss(y: object, target: object) -> object:
    """Squared error summed over channels (axis 1), averaged over samples and positions (as AIMET)."""
    return (y - target).pow(2).sum(1).mean()


def _torch_layer(node: Node, graph: Graph, bias: object):
    """``(x, w) -> f(layer(x, w) + b)`` in torch for a Conv or Gemm node with its fused activation."""
    import torch
    import torch.nn.functional as F

    act = node.attrs.get("fused_activation")

    def activation(y: torch.Tensor) -> torch.Tensor:
        if act == "Relu":
            return torch.relu(y)
        if act == "Relu6":
            return torch.clamp(y, 0.0, 6.0)
        return y

    if node.op == "Gemm":
        trans_b = bool(node.attrs.get("transB", 0))
        return lambda x, w: activation(F.linear(x.flatten(1), w if trans_b else w.T, bias))
    w_shape = graph.shape(node.inputs[1])
    strides = tuple(node.attrs.get("strides", (1, 1)))
    dilations = tuple(node.attrs.get("dilations", (1, 1)))
    groups = int(node.attrs.get("group", 1))
    pads = _conv_pads(node, graph.shape(node.inputs[0])[2:], w_shape[2:], strides, dilations)

    def conv(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        x = F.pad(x, (pads[1], pads[3], pads[0], pads[2])) if any(pads) else x
        return activation(F.conv2d(x, w, bias, strides, 0, dilations, groups))

    return conv


def _conv_pads(node: Node, size: tuple[int, ...], kernel: tuple[int, ...], strides: tuple[int, ...],
               dilations: tuple[int, ...]) -> list[int]:
    """ONNX pads ``[top, left, bottom, right]`` (explicit, or derived from auto_pad)."""
    auto_pad = node.attrs.get("auto_pad", "NOTSET")
    if auto_pad == "NOTSET":
        return list(node.attrs.get("pads", [0, 0, 0, 0]))
    if auto_pad == "VALID":
        return [0, 0, 0, 0]
    begins, ends = [], []
    for s, k, st, d in zip(size, kernel, strides, dilations):
        total = max((math.ceil(s / st) - 1) * st + (k - 1) * d + 1 - s, 0)
        small, large = total // 2, total - total // 2
        begins.append(small if auto_pad == "SAME_UPPER" else large)
        ends.append(large if auto_pad == "SAME_UPPER" else small)
    return begins + ends
