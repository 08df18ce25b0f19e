"""Channel pruning with reconstruction (He et al. 2017, "Channel pruning for accelerating very deep neural
networks"; AIMET's channel pruning): Graph → Graph.

For an ungrouped Conv, the input channels to drop are those whose contribution to the layer's output on
calibration data has the least energy: with ``P_c`` the im2col patches of input channel c and ``W_c`` its
weight slice, channel c contributes ``P_c W_c`` and we keep the channels of largest ``||P_c W_c||^2``.
The drop is carried through the graph (``channel_groups.propagate``): the producing conv loses those
output channels (weight rows, bias, batch-norm statistics), channel-wise ops in between (batch norms,
activations, depthwise convs with their weights) lose them too, and every other reader of the tied
tensors loses those input channels. Then each Conv/Gemm that lost input channels is re-fit by least
squares, in graph order: its remaining weights and its bias are solved so that, on the calibration data,
it reproduces its output in the reference (uncompressed) model from the inputs it sees once the layers
before it are re-fit. A re-fit that does not beat the cut weights on held-out calibration images is
dropped (the layer keeps its cut weights).
"""
from __future__ import annotations

import numpy as np

from edgeopt.ir import Graph, Node, TensorInfo
from edgeopt.pipeline.compress.channel_groups import TiedChannels, channels, is_depthwise, is_end, propagate
from edgeopt.pipeline.compress.layers import activations, conv_geometry, node_by_name
from edgeopt.pipeline.compress.refit import MAX_ROWS, im2col, refit_layer


def prune_reason(graph: Graph, node: Node) -> str | None:
    """Why ``node``'s input channels cannot be pruned, or None when they can."""
    if node.op != "Conv" or not is_end(graph, node):
        return f"{node.op} node '{node.name}' is not an ungrouped Conv with constant weights"
    if conv_geometry(node) is None:
        return f"Conv node '{node.name}' uses auto_pad SAME"
    try:
        propagate(graph, node.inputs[0], {0})
    except TiedChannels as exc:
        return str(exc)
    return None


def input_channel_drops(graph: Graph, name: str, keep: int, x: np.ndarray) -> dict[str, frozenset[int]]:
    """The channels every tensor loses when Conv ``name`` keeps its ``keep`` input channels of largest
    output-contribution energy on the calibration batch ``x`` (empty when it keeps them all).

    When the channels are tied (a residual stream, a concatenation), a channel's score is the sum, over
    every layer that would lose input channels with it, of the share of that layer's output energy those
    channels carry: each reader of the group counts, not only ``name``. A channel that cannot be dropped
    alone scores infinite (kept first).

    Raises:
        TiedChannels: the channels are tied to a graph input/output or an op that cannot drop them.
    """
    node = node_by_name(graph, name)
    tensor = node.inputs[0]
    count = channels(graph, tensor)
    if keep >= count:
        return {}
    closures = [_closure(graph, tensor, c) for c in range(count)]
    touched = set().union(*(cl for cl in closures if cl is not None))
    readers = [n for n in graph.nodes if is_end(graph, n) and n.inputs[0] in touched
               and (n.op != "Conv" or conv_geometry(n))]
    acts = activations(graph, x, [n.inputs[0] for n in readers])
    shares = {}
    for reader in readers:
        energy = _channel_energy(graph, reader, acts[reader.inputs[0]])
        shares[reader.inputs[0], reader.name] = energy / max(float(energy.sum()), 1e-30)
    score = np.array([np.inf if cl is None else sum(float(share[list(cl.get(t, ()))].sum())
                                                    for (t, _), share in shares.items())
                      for cl in closures])
    order = np.argsort(-score, kind="stable")
    return propagate(graph, tensor, set(order[keep:].tolist()))


def _closure(graph: Graph, tensor: str, channel: int) -> dict[str, frozenset[int]] | None:
    """The channels every tensor loses with ``channel`` of ``tensor`` alone, or None when it cannot go."""
    try:
        return propagate(graph, tensor, {channel})
    except TiedChannels:
        return None


def tied_layers(graph: Graph, name: str, drops: dict[str, frozenset[int]]) -> tuple[str, ...]:
    """The other layers whose input channels ``drops`` also cuts (a residual stream, a concat's readers)."""
    return tuple(n.name for n in graph.nodes if n.name != name and n.op == "Conv" and is_end(graph, n)
                 and drops.get(n.inputs[0]))


def prune_input_channels(graph: Graph, name: str, keep: int, x: np.ndarray, reference: Graph | None = None,
                         drops: dict[str, frozenset[int]] | None = None) -> Graph:
    """``graph`` with Conv ``name`` reading only ``keep`` of its input channels, upstream surgery done and
    every affected layer re-fit on the calibration batch ``x``.

    Args:
        graph: the model to prune (not modified).
        name: an ungrouped Conv node.
        keep: input channels to keep (1 .. all).
        x: calibration inputs (a batch of the model's input).
        reference: the model whose layer outputs the re-fit reproduces (default: ``graph``).
        drops: ``input_channel_drops(graph, name, keep, x)`` when already computed.

    Raises:
        TiedChannels: the channels are tied to a graph input/output or an op that cannot drop them.
    """
    drops = input_channel_drops(graph, name, keep, x) if drops is None else drops
    return reconstruct(apply_drops(graph, drops), graph, reference or graph, drops, x)


def apply_drops(graph: Graph, drops: dict[str, frozenset[int]]) -> Graph:
    """``graph`` with the channels ``drops`` (from ``propagate``) removed from every tensor and weight."""
    inits = dict(graph.initializers)
    tensors = dict(graph.tensors)
    for t, d in drops.items():
        shape = list(graph.shape(t))
        shape[1] -= len(d)
        tensors[t] = TensorInfo(t, tuple(shape), graph.tensors[t].dtype)
    nodes = [_pruned_node(graph, n, drops, inits) for n in graph.nodes]
    return graph.replace(nodes=tuple(nodes), initializers=inits, tensors=tensors).without_unused_initializers()


def _keep(d: frozenset[int] | None, n: int) -> np.ndarray:
    return np.array([i for i in range(n) if not d or i not in d], dtype=np.int64)


def _pruned_node(graph: Graph, node: Node, drops: dict[str, frozenset[int]], inits: dict[str, np.ndarray]) -> Node:
    """``node`` with its weights, parameters and attributes cut to its tensors' remaining channels."""
    d_in, d_out = drops.get(node.inputs[0]) if node.inputs else None, drops.get(node.outputs[0])
    if not d_in and not d_out and not any(drops.get(t) for t in node.inputs):
        return node
    inputs, attrs = list(node.inputs), {}

    def cut(index: int, axis: int, d: frozenset[int] | None) -> None:
        if not d or len(inputs) <= index or not inputs[index] or inputs[index] not in inits:
            return
        w = inits[inputs[index]]
        if w.ndim == 0 or w.shape[axis] == 1:  # broadcast over the channels: nothing to cut
            return
        w = np.take(w, _keep(d, w.shape[axis]), axis=axis)
        inputs[index] = f"{node.name}.pruned{index}"
        inits[inputs[index]] = w

    if is_end(graph, node):
        out_axis = 0 if node.op == "Conv" or node.op == "Gemm" and node.attrs.get("transB", 0) else 1
        cut(1, 1 - out_axis if node.op != "Conv" else 1, d_in)
        cut(1, out_axis, d_out)
        cut(2, inits[node.inputs[2]].ndim - 1 if len(node.inputs) > 2 and node.inputs[2] in inits else 0, d_out)
        attrs.update(_cut_stats(node, d_out))
    elif is_depthwise(graph, node):
        cut(1, 0, d_out)
        cut(2, 0, d_out)
        attrs["group"] = channels(graph, node.inputs[0]) - len(d_in or ())
        attrs.update(_cut_stats(node, d_out))
    elif node.op in ("BatchNormalization", "PRelu", "Add", "Sub", "Mul", "Div", "Max", "Min", "Sum"):
        rank = len(graph.shape(node.outputs[0]))
        for i, t in enumerate(node.inputs):
            if node.op == "BatchNormalization" and i > 0:
                cut(i, 0, d_out)
            elif t in inits and inits[t].ndim >= rank - 1:
                cut(i, inits[t].ndim - (rank - 1), d_out)  # a constant operand, right-aligned to the output
    elif node.op == "Pad":
        _cut_pad(graph, node, drops, inputs, inits, attrs)
    elif node.op == "Split":
        sizes = [channels(graph, o) - len(drops.get(o, ())) for o in node.outputs]
        if len(inputs) > 1 and inputs[1]:
            inputs[1] = f"{node.name}.pruned1"
            inits[inputs[1]] = np.array(sizes, np.int64)
        elif "split" in node.attrs:
            attrs["split"] = sizes
        else:
            inputs = [inputs[0], f"{node.name}.pruned1"]
            inits[inputs[1]] = np.array(sizes, np.int64)
            return Node(node.op, node.name, tuple(inputs), node.outputs,
                        {k: v for k, v in node.attrs.items() if k != "num_outputs"})
    elif node.op == "Reshape":
        shape = list(graph.shape(node.outputs[0]))
        shape[1] -= len(d_out or ())
        inputs[1] = f"{node.name}.pruned1"
        inits[inputs[1]] = np.array(shape, np.int64)
    return node.with_(inputs=tuple(inputs), attrs=attrs)


def _cut_stats(node: Node, d_out: frozenset[int] | None) -> dict[str, tuple[float, ...]]:
    """The node's batch-norm statistics (``bn_beta``, ``bn_gamma``) without the dropped channels."""
    return {k: tuple(v[i] for i in _keep(d_out, len(v))) for k, v in node.attrs.items()
            if k in ("bn_beta", "bn_gamma") and d_out}


def _cut_pad(graph: Graph, node: Node, drops: dict[str, frozenset[int]], inputs: list[str],
             inits: dict[str, np.ndarray], attrs: dict) -> None:
    """A channel Pad whose output lost channels: shorten the leading and trailing channel padding."""
    pads = list(node.attrs["pads"]) if "pads" in node.attrs else inits[node.inputs[1]].tolist()
    rank = len(pads) // 2
    d_out = drops.get(node.outputs[0], frozenset())
    c_in = channels(graph, node.inputs[0])
    before, after = pads[1], pads[rank + 1]
    pads[1] = before - sum(1 for c in d_out if c < before)
    pads[rank + 1] = after - sum(1 for c in d_out if c >= before + c_in)
    if "pads" in node.attrs:
        attrs["pads"] = pads
    else:
        inputs[1] = f"{node.name}.pruned1"
        inits[inputs[1]] = np.array(pads, np.int64)


def reconstruct(pruned: Graph, before: Graph, reference: Graph, drops: dict[str, frozenset[int]],
                x: np.ndarray) -> Graph:
    """Re-fit every Conv/Gemm of ``pruned`` that lost input channels, by least squares on ``x`` (a MatMul,
    having no bias input, is only cut).

    The target of each is its output in ``reference`` when that tensor has there the channel count it
    had in ``before`` (the graph the drops were computed on), else its output in ``before``; its
    remaining output channels only. Convs with a fused activation are left as cut (their
    pre-activation output is not a tensor to fit).

    The layers are re-fit one after another in graph order, each on the inputs it sees once the layers
    before it are re-fit: a group's layers (a residual stream's readers) feed each other, and a layer
    fitted to inputs that an upstream re-fit then changes no longer fits them. A layer whose re-fit does
    not lower its own output error below the cut weights' (on held-out images of ``x``, see
    ``refit.refit_layer``) keeps the cut weights.
    """
    sinks = [n for n in pruned.nodes if n.op in ("Conv", "Gemm") and is_end(pruned, n) and drops.get(n.inputs[0])
             and "fused_activation" not in n.attrs and (n.op != "Conv" or conv_geometry(n))]
    if not sinks:
        return pruned
    use_ref = {n.outputs[0]: n.outputs[0] in reference.tensors and
               reference.shape(n.outputs[0]) == before.shape(n.outputs[0]) for n in sinks}
    targets = activations(reference, x, [t for t, ok in use_ref.items() if ok])
    targets.update(activations(before, x, [t for t, ok in use_ref.items() if not ok]))
    rng = np.random.default_rng(0)
    for node in sinks:
        y = np.take(targets[node.outputs[0]], _keep(drops.get(node.outputs[0]),
                                                      targets[node.outputs[0]].shape[1]), axis=1)
        pruned = refit_layer(pruned, node, activations(pruned, x, [node.inputs[0]])[node.inputs[0]], y, rng)
    return pruned


def _channel_energy(graph: Graph, node: Node, x: np.ndarray) -> np.ndarray:
    """``||P_c W_c||^2`` per input channel c of ``node`` on its input ``x``: ``P_c`` the im2col patches of
    channel c for a Conv; for a Gemm/MatMul, feature c's column, so ``sum(x_c^2) * ||W_c||^2``."""
    w = graph.initializers[node.inputs[1]]
    if node.op != "Conv":
        per_input = w if node.op == "Gemm" and node.attrs.get("transB", 0) else w.T   # (outputs, inputs)
        return np.sum(x.astype(np.float64) ** 2, axis=0) * np.sum(per_input.astype(np.float64) ** 2, axis=0)
    kh, kw = w.shape[2:]
    patches = im2col(x, node, (kh, kw))
    if len(patches) > MAX_ROWS:
        patches = patches[np.random.default_rng(0).choice(len(patches), MAX_ROWS, replace=False)]
    per = patches.reshape(len(patches), w.shape[1], kh * kw)
    wc = w.reshape(w.shape[0], w.shape[1], kh * kw)
    return np.array([np.sum((per[:, c] @ wc[:, c].T) ** 2) for c in range(w.shape[1])])
