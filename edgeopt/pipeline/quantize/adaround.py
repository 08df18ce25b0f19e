"""AdaRound (Nagel et al. 2020, "Up or Down? Adaptive Rounding for Post-Training Quantization").

Each Conv/Gemm weight is rounded up or down per element, chosen by minimising the layer's output
reconstruction error instead of rounding to nearest. Layer by layer, in torch on the CPU:

    W̃ = s · clip(floor(W / s) + h(V), -qmax, qmax),   h(V) = clip(sigmoid(V)·(ζ - γ) + γ, 0, 1)
    loss = Σ_c (f(W̃ ∗ x̃ + b) - f(W ∗ x + b))²  (summed over channels, averaged over output positions)
           + λ · Σ (1 - |2h(V) - 1|^β)

with ζ = 1.1, γ = -0.1, λ = 0.01, Adam on V (initialised so h(V) is the fractional part: the start is
nearest rounding's soft version), no regulariser for the first 20 % of the budget, then β annealed
linearly from 20 to 2 (the paper's and AIMET's schedule). ``f`` is the layer's fused activation
(ReLU/ReLU6), as in the paper's reconstruction of the activation's output.

Choices made here (documented because they trade accuracy for CPU minutes; measured on
EfficientNet-Lite0 and ResNet-20 with ``benchmarks/ptq.py``):
    * Inputs: the layer's float inputs from the float graph, rounded to the input tensor's own int8
      encoding (``x̃``); the target is the float layer on the float input. This is the paper's
      asymmetric reconstruction restricted to the layer's own input rounding: it needs no partially
      quantized model to be run, so all layers' inputs are gathered in one ONNX Runtime pass over the
      calibration samples (or a few, see below), and errors of earlier layers are not compensated.
      Measured: at 4 bits AdaRound recovers most of the loss (ResNet-20 W4A8 test1000 91.0 % against
      nearest 90.5 %, fp32 91.5 %); at 8 bits it gains nothing measurable and lost 0.46 point on
      EfficientNet-Lite0 (val1300 82.46 % against nearest 82.92 %, mse ranges), which is why the
      automatic recipe adopts it only when it does not lower accuracy.
    * Output positions, not feature maps: the loss is a sum of independent per-output-position terms,
      and each output position of a conv depends only on its receptive-field patch. So the pass caches,
      per layer, ``positions`` (2048) output positions drawn uniformly without replacement from all
      (sample, y, x) of the calibration samples: the input patch (im2col) stored as the int8 codes of
      ``x̃`` (4× smaller than float), and the float target ``f(W ∗ x + b)`` at that position. A step
      is then one batched matmul ``[groups, batch, patch] @ [groups, patch, out]`` on ``batch_size``
      patches, never a full-image convolution: its cost no longer grows with the image size, and the
      cache holds a few thousand rows per layer instead of every feature map (EfficientNet-Lite0's
      first layer inputs alone are 320 MB per 200 images as float feature maps). Positions drawn from
      many images are also more varied than whole images. A Gemm has one position per sample. When
      the patches of all layers exceed ``cache_bytes``, the layers are split into consecutive groups,
      one ONNX Runtime pass each (EfficientNet-Lite0: 542 MiB of patches, two passes, where caching
      whole feature maps took eleven).
    * Batches: a layer's cached positions are shuffled once, then its training positions are visited
      in consecutive slices (epochs of about ``positions / batch_size`` steps), so a step reads a view
      instead of gathering rows. Patches are laid out ``[groups, positions, patch]`` so that a
      depthwise layer is a batched matmul too: the earlier multiply-and-sum materialised
      ``batch × channels × k²`` products and made EfficientNet-Lite0's 5×5 depthwise layers 30-40 s
      each.
    * Budget: at most ``iterations`` (default 300, against AIMET's 10 000 and the paper's 20 000 steps
      of 32 whole images) Adam steps of ``batch_size`` (256) cached positions per layer, at lr 0.05
      (AIMET: 1e-3 over 10 000 steps; with 300 steps, lr 0.01 moved V too little: ResNet-20 W4A8 +
      AdaRound 91.3 % at lr 0.01, 91.7 % at 0.05, nearest 90.5 %, fp32 91.5 %). After the warm-up a
      layer stops early once its rounding has converged: at most ``tolerance`` (0.1 %) of its up/down
      decisions (``h(V) >= 0.5``) changed since the previous check ``CHECK_EVERY`` steps earlier,
      twice running, or every variable has hardened (``|2h(V) - 1| > 0.99``), after which the
      regulariser only pushes decided variables further. This fires on small layers; on ResNet-20's
      and EfficientNet-Lite0's layers the annealed regulariser keeps moving a few decisions until β is
      low, so they run the whole (lowered) budget. EfficientNet-Lite0, all 50 Conv/Gemm layers: 151 s
      (31 s of it gathering) on this 2-core machine at load 3-4, where 500 full-image steps per layer
      had not finished in 28 minutes.
    * Whole layer at once: V has the weight's shape, and all its output channels are optimised in one
      vectorised step (channels are independent given the input, so this equals per-channel runs).
    * Threads: torch runs on ``threads`` intra-op threads (default 1, restored afterwards). A step's
      matmul is a few MFLOP, too small to split well, and torch's OpenMP workers spin-wait: on this
      2-core machine shared with other jobs (load 7-8), the built-in example took 70-80 s with torch's
      default 2 threads and 4-12 s with 1.
    * Safeguard: a layer whose AdaRounded reconstruction error is not below nearest rounding's keeps
      nearest rounding (the weight encoding's own rounding, bit for bit). Both are measured on held-out
      positions (1/``HOLDOUT`` of the layer's cache, never trained on): a layer with more binary
      variables than data overfits (EfficientNet-Lite0's classifier, 1.28 M weights fit on 200
      samples, had 24× lower error on its training samples), and only unseen positions show it. With
      fewer than ``HOLDOUT`` positions, both are measured on the training positions.

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
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from edgeopt.errors import InternalError
from edgeopt.ir import Graph, Node, QParams, QuantizedGraph, input_arrays, weight_out_axis
from edgeopt.pipeline.emit.onnx import graph_to_onnx
from edgeopt.progress import counter
from edgeopt.runtimes.onnxruntime import OnnxRuntime

log = logging.getLogger(__name__)

ZETA, GAMMA = 1.1, -0.1
ADAROUND_OPS = ("Conv", "Gemm")
CHECK_EVERY = 25  # iterations between convergence checks
HOLDOUT = 8  # 1/8 of a layer's cached positions are held out to judge AdaRound against nearest rounding


@dataclass(frozen=True)
class AdaRoundConfig:
    """Budget and hyper-parameters of AdaRound (defaults: see the module docstring)."""

    iterations: int = 300
    batch_size: int = 256
    samples: int = 256
    positions: int = 2048
    tolerance: float = 1e-3
    reg_weight: float = 0.01
    beta_start: float = 20.0
    beta_end: float = 2.0
    warm_up: float = 0.2
    lr: float = 5e-2
    cache_bytes: int = 512 * 2**20
    threads: int = 1
    seed: int = 0


@dataclass(frozen=True)
class LayerResult:
    """What AdaRound did to one layer: reconstruction MSE on held-out positions with nearest and adaptive
    rounding (the final integers are nearest rounding's when ``kept_nearest``)."""

    node: str
    nearest_mse: float
    adaround_mse: float
    iterations: int
    seconds: float
    flipped: int  # weights rounded differently from nearest
    kept_nearest: bool


@dataclass(frozen=True)
class AdaRoundResult:
    """The graph with AdaRounded weights, their (fixed) encodings, a report per layer, and the time spent
    gathering the layers' inputs (ONNX Runtime passes and patch extraction; not in any layer's time)."""

    graph: Graph
    weight_encodings: Mapping[str, QParams]
    layers: tuple[LayerResult, ...]
    gather_seconds: float


@dataclass(frozen=True)
class _Layer:
    """A Conv/Gemm as a grouped matmul on patches: ``y[p, g, o] = Σ_k x[p, g, k] · w[g, o, k] + b``."""

    node: Node
    groups: int
    kernel: tuple[int, ...]  # (kh, kw) for a Conv, () for a Gemm
    strides: tuple[int, ...]
    dilations: tuple[int, ...]
    pads: tuple[int, ...]  # [top, left, bottom, right]
    out_hw: tuple[int, ...]  # () for a Gemm
    bias: np.ndarray | None

    @property
    def per_sample(self) -> int:
        return math.prod(self.out_hw)

    def to_gok(self, w: object) -> object:
        """The weight (numpy or torch, in its graph layout) as ``[groups, out per group, patch]``."""
        if weight_out_axis(self.node) == 1:  # a Gemm's (K, N)
            w = w.T
        return w.reshape(self.groups, w.shape[0] // self.groups, -1)

    def patches(self, x: np.ndarray, where: np.ndarray) -> np.ndarray:
        """Input patches ``[groups, len(where), patch]`` of one sample ``x`` ([1, C, H, W] or [1, ...])
        at flat output positions ``where``."""
        if not self.kernel:
            return np.repeat(x.reshape(self.groups, 1, -1), len(where), axis=1)
        top, left, bottom, right = self.pads
        x = np.pad(x[0], ((0, 0), (top, bottom), (left, right))) if any(self.pads) else x[0]
        oy, ox = np.divmod(where, self.out_hw[1])
        kh, kw = self.kernel
        rows = oy[:, None] * self.strides[0] + np.arange(kh) * self.dilations[0]  # [P, kh]
        cols = ox[:, None] * self.strides[1] + np.arange(kw) * self.dilations[1]  # [P, kw]
        patch = x[:, rows[:, :, None], cols[:, None, :]]  # [C, P, kh, kw]
        c, p = patch.shape[:2]
        return patch.reshape(self.groups, c // self.groups, p, -1).transpose(0, 2, 1, 3).reshape(self.groups, p, -1)

    def forward(self, x: object, w_gok: object) -> object:
        """``f(x · wᵀ + b)`` in torch: ``x`` [groups, P, patch] → [P, out channels], one batched matmul
        (the product of a depthwise layer's patches and weights is never materialised)."""
        import torch

        y = torch.matmul(x, w_gok.transpose(1, 2))  # [groups, P, out per group]
        y = y[0] if self.groups == 1 else y.transpose(0, 1).reshape(y.shape[1], -1)
        if self.bias is not None:
            y = y + torch.from_numpy(self.bias)
        act = self.node.attrs.get("fused_activation")
        if act == "Relu":
            return torch.relu(y)
        if act == "Relu6":
            return torch.clamp(y, 0.0, 6.0)
        return y


@dataclass
class _Cache:
    """One layer's cached positions: ``x̃``'s integer codes [groups, P, patch] and the float target [P, out]."""

    codes: np.ndarray
    target: np.ndarray


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
    graph, enc = qgraph.graph, qgraph.encodings
    layers = [_layer(n, graph) for n in graph.nodes if n.op in ADAROUND_OPS and n.inputs[1] in graph.initializers
              and n.inputs[1] in enc and n.inputs[0] in enc]
    x = calib_x[: config.samples]
    weights = dict(graph.initializers)
    encodings: dict[str, QParams] = {}
    results = []
    rng = np.random.default_rng(config.seed)
    gather_seconds = 0.0
    tick = counter("AdaRound (layers)", len(layers))
    with _torch_threads(config.threads):
        for group in _cache_groups(graph, layers, len(x), config.positions, config.cache_bytes):
            start = time.perf_counter()
            where = {lay.node.name: _positions(len(x) * lay.per_sample, config.positions, rng) for lay in group}
            caches = _gather(graph, enc, group, x, where)
            gather_seconds += time.perf_counter() - start
            for lay in group:
                start = time.perf_counter()
                node, w_name = lay.node, lay.node.inputs[1]
                w_q = enc[w_name]
                q, result = _adaround_layer(lay, graph.initializers[w_name], caches.pop(node.name),
                                            enc[node.inputs[0]], w_q, config)
                new_w = (q * _bcast(w_q.scale.astype(np.float64), w_q.axis, q.ndim)).astype(np.float32)
                if not np.array_equal(w_q.quantize(new_w), q.astype(w_q.dtype)):
                    raise InternalError(f"AdaRound weights of '{node.name}' do not round-trip through their encoding")
                weights[w_name], encodings[w_name] = new_w, w_q
                flipped = int(np.count_nonzero(w_q.quantize(graph.initializers[w_name]).astype(np.int64) != q))
                results.append(LayerResult(node.name, *result, time.perf_counter() - start, flipped,
                                           result[1] >= result[0]))
                log.info("adaround %s: mse %.3g → %.3g in %d iterations", node.name, *result)
                tick(len(results))
    return AdaRoundResult(graph.replace(initializers=weights), encodings, tuple(results), gather_seconds)


def _positions(total: int, wanted: int, rng: np.random.Generator) -> np.ndarray:
    """``min(wanted, total)`` distinct flat (sample, y, x) output positions, sorted (uniform, no replacement)."""
    return np.sort(rng.choice(total, min(wanted, total), replace=False))


@contextmanager
def _torch_threads(threads: int) -> Iterator[None]:
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _bcast(a: np.ndarray, axis: int | None, ndim: int) -> np.ndarray:
    if axis is None:
        return a.reshape(())
    shape = [1] * ndim
    shape[axis] = -1
    return a.reshape(shape)


def _layer(node: Node, graph: Graph) -> _Layer:
    bias = graph.initializers.get(node.inputs[2]) if len(node.inputs) > 2 and node.inputs[2] else None
    bias = None if bias is None else np.array(bias, np.float32)  # a writable copy, for torch.from_numpy
    if node.op == "Gemm":
        return _Layer(node, 1, (), (), (), (), (), bias)
    in_shape, w_shape = graph.shape(node.inputs[0]), graph.shape(node.inputs[1])
    kernel = tuple(w_shape[2:])
    strides = tuple(node.attrs.get("strides", (1, 1)))
    dilations = tuple(node.attrs.get("dilations", (1, 1)))
    pads = tuple(_conv_pads(node, in_shape[2:], kernel, strides, dilations))
    out_hw = tuple((s + pads[i] + pads[i + 2] - d * (k - 1) - 1) // st + 1
                   for i, (s, k, st, d) in enumerate(zip(in_shape[2:], kernel, strides, dilations)))
    return _Layer(node, int(node.attrs.get("group", 1)), kernel, strides, dilations, pads, out_hw, bias)


def _row_bytes(graph: Graph, lay: _Layer) -> int:
    """Bytes one cached position of ``lay`` takes: int8 patch codes and a float32 target row."""
    w_shape = graph.shape(lay.node.inputs[1])
    patch = math.prod(w_shape[1:]) * lay.groups if lay.kernel else math.prod(graph.shape(lay.node.inputs[0])[1:])
    out = w_shape[weight_out_axis(lay.node)]
    return patch + 4 * out


def _cache_groups(graph: Graph, layers: list[_Layer], samples: int, positions: int,
                  budget: int) -> list[list[_Layer]]:
    """Consecutive layers whose cached positions fit in ``budget`` bytes together (one ORT pass each)."""
    groups: list[list[_Layer]] = []
    size = 0
    for lay in layers:
        nbytes = min(positions, samples * lay.per_sample) * _row_bytes(graph, lay)
        if not groups or size + nbytes > budget:
            groups.append([])
            size = 0
        groups[-1].append(lay)
        size += nbytes
    return groups


def _gather(graph: Graph, enc: Mapping[str, QParams], group: list[_Layer], x: np.ndarray,
            where: Mapping[str, np.ndarray]) -> dict[str, _Cache]:
    """Each layer's patches at its positions ``where`` (flat over samples × output positions), in one
    ONNX Runtime pass over ``x``, one sample at a time, keeping only the patches."""
    inputs = {t.name for t in graph.inputs}
    wanted = sorted({lay.node.inputs[0] for lay in group} - inputs)
    session = OnnxRuntime(graph_to_onnx(graph.replace(outputs=tuple(graph.tensors[t] for t in wanted)))) \
        if wanted else None
    codes: dict[str, list[np.ndarray]] = {lay.node.name: [] for lay in group}
    targets: dict[str, list[np.ndarray]] = {lay.node.name: [] for lay in group}
    w_gok = {lay.node.name: lay.to_gok(np.array(graph.initializers[lay.node.inputs[1]], np.float32))
             for lay in group}
    for i in range(len(x)):
        names = [t.name for t in graph.inputs]
        values = dict(zip(names, input_arrays(x[i:i + 1], names)))
        values.update(zip(session.output_names, session.run_batch(x[i:i + 1])) if session else ())
        for lay in group:
            name, t_in = lay.node.name, lay.node.inputs[0]
            pos = where[name]
            mine = pos[np.searchsorted(pos, i * lay.per_sample):np.searchsorted(pos, (i + 1) * lay.per_sample)]
            if not len(mine):
                continue
            patch = lay.patches(values[t_in], mine - i * lay.per_sample)
            codes[name].append(enc[t_in].quantize(patch))
            targets[name].append(_float_target(lay, patch, w_gok[name]))
    return {name: _Cache(np.concatenate(codes[name], axis=1), np.concatenate(targets[name])) for name in codes}


def _float_target(lay: _Layer, patch: np.ndarray, w_gok: np.ndarray) -> np.ndarray:
    import torch

    with torch.no_grad():
        return lay.forward(torch.from_numpy(np.ascontiguousarray(patch, np.float32)), torch.from_numpy(w_gok)).numpy()


def _adaround_layer(lay: _Layer, w_graph: np.ndarray, cache: _Cache, x_q: QParams, w_q: QParams,
                    cfg: AdaRoundConfig) -> tuple[np.ndarray, tuple[float, float, int]]:
    """Integer weights of one layer, and (nearest MSE, AdaRound MSE, iterations used)."""
    import torch

    w = np.asarray(w_graph, np.float64)
    scale = _bcast(w_q.scale.astype(np.float64), w_q.axis, w.ndim)
    qmax = float(min(round(float(np.abs(w / scale).max()) if w.size else 0.0), w_q.qmax))  # the grid's extent
    gen = torch.Generator().manual_seed(cfg.seed)
    order = torch.randperm(cache.target.shape[0], generator=gen)  # shuffled once: batches are then slices
    xq = _dequantize(x_q, np.ascontiguousarray(cache.codes[:, order.numpy()]))
    target = torch.from_numpy(cache.target)[order].contiguous()
    w_t = torch.from_numpy(w.astype(np.float32))
    s_t = torch.from_numpy(scale.astype(np.float32))
    floor = torch.floor(w_t / s_t)
    frac = (w_t / s_t - floor).clamp(0.0, 1.0)
    # h(V) = frac at the start: V = logit((frac - γ) / (ζ - γ)).
    p = ((frac - GAMMA) / (ZETA - GAMMA)).clamp(1e-4, 1 - 1e-4)
    v = torch.log(p / (1 - p)).requires_grad_(True)

    def soft(v: torch.Tensor) -> torch.Tensor:
        return (torch.sigmoid(v) * (ZETA - GAMMA) + GAMMA).clamp(0.0, 1.0)

    # The last 1/HOLDOUT of the shuffled positions only judge the result (see the safeguard).
    held = len(target) // HOLDOUT
    fit = len(target) - held
    judge = slice(fit, None) if held else slice(None)

    def recon(q: torch.Tensor) -> float:
        with torch.no_grad():
            return float(_recon_loss(lay.forward(xq[:, judge], lay.to_gok(s_t * q)), target[judge]))

    nearest = torch.from_numpy(w_q.quantize(w).astype(np.float32))
    nearest_mse = recon(nearest)
    opt = torch.optim.Adam([v], lr=cfg.lr)
    warm = int(cfg.warm_up * cfg.iterations)
    batch = min(cfg.batch_size, fit)
    batches = fit // batch
    it, settled, last = 0, 0, None
    for it in range(1, cfg.iterations + 1):
        rows = slice((it - 1) % batches * batch, ((it - 1) % batches + 1) * batch)
        h = soft(v)
        w_soft = lay.to_gok(s_t * torch.clamp(floor + h, -qmax, qmax))
        loss = _recon_loss(lay.forward(xq[:, rows], w_soft), target[rows])
        if it > warm:
            rel = (it - warm) / max(cfg.iterations - warm, 1)
            beta = cfg.beta_end + (cfg.beta_start - cfg.beta_end) * max(0.0, 1.0 - rel)
            loss = loss + cfg.reg_weight * (1 - (2 * h - 1).abs().pow(beta)).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if it > warm and it % CHECK_EVERY == 0:
            with torch.no_grad():
                h = soft(v)
                decided = h >= 0.5
                changed = int((decided != last).sum()) if last is not None else decided.numel()
                settled = settled + 1 if changed <= cfg.tolerance * decided.numel() else 0
                last = decided
                if settled >= 2 or bool(((2 * h - 1).abs() > 0.99).all()):
                    break
    with torch.no_grad():
        q = torch.clamp(floor + (soft(v) >= 0.5).float(), -qmax, qmax)
    ada_mse = recon(q)
    if ada_mse >= nearest_mse:
        q = nearest
    return q.numpy().astype(np.int64), (nearest_mse, ada_mse, it)


def _dequantize(x_q: QParams, codes: np.ndarray) -> object:
    """``x̃`` as float32 in torch, without ``QParams.dequantize``'s int64 copy of the whole cache."""
    import torch

    if x_q.per_channel:
        return torch.from_numpy(x_q.dequantize(codes))
    return torch.from_numpy(codes).float().sub_(float(x_q.zero_point[0])).mul_(float(x_q.scale[0]))


def _recon_loss(y: object, target: object) -> object:
    """Squared error summed over channels, averaged over output positions (as AIMET)."""
    return (y - target).pow(2).sum(1).mean()


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
