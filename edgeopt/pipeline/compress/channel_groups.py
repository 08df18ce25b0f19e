"""Which channels must go together: propagate a set of dropped channels through the Graph to a fixed point.

Dropping channel c of a tensor constrains its producer and every consumer. The rules, by op:

- **ends**: an ungrouped Conv, a Gemm or a 2-D MatMul with a constant weight absorbs a drop on its output
  (its weight's output channels go) and on its input (its weight's input channels go);
- **channel-wise** ops (activations, BatchNormalization, pools, spatial Pad/Slice/Resize/ReduceMean,
  depthwise Conv)
  carry the same set from input to output and back;
- **elementwise** Add/Sub/Mul/Div/Max/Min/Sum tie every full-channel input to the output (a residual add
  makes one group of the whole residual stream); a constant operand is sliced;
- **Concat** and **Split** on the channel axis shift the indices by each part's offset;
- **Pad on the channel axis** (option-A shortcuts) shifts them by the leading pad, and a dropped padding
  channel just shortens the pad;
- a **Flatten/Reshape** of ``(N, C, 1, 1)`` into ``(N, C)`` keeps the indices.

A drop reaching a graph input or output, or any other op, makes the whole set impossible: ``TiedChannels``
says where. Channel axis is 1 for every tensor (NCHW and ``(N, features)``).
"""
from __future__ import annotations

from collections import deque
from collections.abc import Callable

from edgeopt.ir import Graph, Node

UNARY = frozenset({"Relu", "Clip", "LeakyRelu", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh", "Elu", "Selu",
                   "PRelu", "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "Identity",
                   "Dropout", "Resize", "BatchNormalization", "Softplus", "Mish", "Gelu", "Neg", "Abs"})
ELEMENTWISE = frozenset({"Add", "Sub", "Mul", "Div", "Max", "Min", "Sum"})


class TiedChannels(ValueError):
    """The channels cannot be dropped; the message names the op and node that forbid it, and why."""


def is_end(graph: Graph, node: Node) -> bool:
    """Whether ``node`` absorbs channel drops on its data input and output (ungrouped Conv, Gemm, MatMul)."""
    if len(node.inputs) < 2 or node.inputs[1] not in graph.initializers:
        return False
    if node.op == "Conv":
        return node.attrs.get("group", 1) == 1
    if node.op == "Gemm":
        return not node.attrs.get("transA", 0) and len(graph.shape(node.inputs[0])) == 2
    return node.op == "MatMul" and len(graph.shape(node.inputs[0])) == 2 \
        and graph.initializers[node.inputs[1]].ndim == 2


def is_depthwise(graph: Graph, node: Node) -> bool:
    """An ``N, C, H, W`` Conv with ``group == C`` and one output channel per group."""
    if node.op != "Conv" or node.inputs[1] not in graph.initializers:
        return False
    c = graph.shape(node.inputs[0])[1]
    return node.attrs.get("group", 1) == c and graph.initializers[node.inputs[1]].shape[0] == c


def channels(graph: Graph, tensor: str) -> int:
    """The channel count (axis 1) of ``tensor``."""
    return graph.shape(tensor)[1]


Require = Callable[[str, set[int]], None]


def propagate(graph: Graph, tensor: str, drop: set[int]) -> dict[str, frozenset[int]]:
    """Every tensor's dropped channels once ``drop`` is removed from ``tensor`` (only tensors that lose some).

    Raises:
        TiedChannels: a drop reaches a graph input or output or an op that cannot take it, or leaves a
            tensor with no channel (a narrower stream tied through an option-A shortcut).
    """
    drops: dict[str, set[int]] = {tensor: set(drop)}
    queue = deque([tensor])
    inputs = {t.name for t in graph.inputs}

    def require(t: str, idx: set[int]) -> None:
        new = idx - drops.get(t, set())
        if new:
            drops.setdefault(t, set()).update(new)
            queue.append(t)

    while queue:
        t = queue.popleft()
        d = drops[t]
        if t in inputs or graph.is_output(t):
            raise TiedChannels(f"tensor '{t}' is a graph {'input' if t in inputs else 'output'}: its channels "
                               "are part of the model's interface")
        producer = graph.producer(t)
        if producer is not None:
            _rule(graph, producer, t, d, require)
        for consumer in graph.consumers(t):
            _rule(graph, consumer, t, d, require)
    emptied = next((t for t, d in drops.items() if len(d) >= channels(graph, t)), None)
    if emptied is not None:
        raise TiedChannels(f"tensor '{emptied}' would lose all of its {channels(graph, emptied)} channels (a "
                           "narrower tensor tied to the pruned one): keep more channels")
    return {t: frozenset(d) for t, d in drops.items() if d}


def _rule(graph: Graph, node: Node, t: str, d: set[int], require: Require) -> None:
    """Apply ``node``'s constraint for the drop ``d`` on its tensor ``t`` (an input or output of it)."""
    data_in = node.inputs[0]
    out = node.outputs[0]
    if is_end(graph, node):
        if t == data_in or t == out:
            return
    elif node.op in UNARY or is_depthwise(graph, node) or node.op == "Slice" and _slice_keeps_channels(graph, node) \
            or node.op == "Pad" and _pad_amounts(graph, node) == (0, 0):
        if t in (data_in, out):
            _tie(graph, node, t, d, [data_in, out], require)
            return
    elif node.op in ("ReduceMean", "ReduceMax") and _reduces_space_only(graph, node):
        if t in (data_in, out):
            _tie(graph, node, t, d, [data_in, out], require)
            return
    elif node.op in ELEMENTWISE:
        full = [i for i in node.inputs if i not in graph.initializers and _channel_dim(graph, i, out) > 1]
        if t in full or t == out:
            _tie(graph, node, t, d, [*full, out], require)
            return
    elif node.op == "Concat" and _axis(node, graph.shape(out)) == 1:
        _concat(graph, node.inputs, out, t, d, require)
        return
    elif node.op == "Split" and _axis(node, graph.shape(data_in)) == 1:
        if t == data_in or t in node.outputs:
            _concat(graph, node.outputs, data_in, t, d, require)
            return
    elif node.op == "Pad" and _pad_amounts(graph, node) is not None:
        before, _ = _pad_amounts(graph, node)
        c_in = channels(graph, data_in)
        if t == data_in:
            require(out, {c + before for c in d})
            return
        if t == out:
            inner = {c - before for c in d if before <= c < before + c_in}
            if inner:
                require(data_in, inner)
            return
    elif node.op in ("Flatten", "Reshape") and _is_squeeze(graph, node):
        _tie(graph, node, t, d, [data_in, out], require)
        return
    raise TiedChannels(f"{node.op} node '{node.name}' reads or writes '{t}' and cannot drop its channels")


def _tie(graph: Graph, node: Node, t: str, d: set[int], tied: list[str], require: Require) -> None:
    for other in tied:
        if other != t:
            if channels(graph, other) != channels(graph, t):
                raise TiedChannels(f"{node.op} node '{node.name}' ties '{t}' to '{other}' of another channel count")
            require(other, d)


def _concat(graph: Graph, parts: tuple[str, ...], whole: str, t: str, d: set[int], require: Require) -> None:
    offsets, start = {}, 0
    for p in parts:
        offsets[p] = start
        start += channels(graph, p)
    if t == whole:
        for p in parts:
            lo, hi = offsets[p], offsets[p] + channels(graph, p)
            inner = {c - lo for c in d if lo <= c < hi}
            if inner:
                require(p, inner)
    else:
        require(whole, {c + offsets[t] for c in d})


def _axis(node: Node, shape: tuple[int, ...]) -> int:
    axis = node.attrs.get("axis", 0)
    return axis + len(shape) if axis < 0 else axis


def _channel_dim(graph: Graph, tensor: str, out: str) -> int:
    """The size ``tensor`` has along the output's channel axis once broadcast (right-aligned)."""
    shape, rank = graph.shape(tensor), len(graph.shape(out))
    index = 1 - (rank - len(shape))
    return shape[index] if 0 <= index < len(shape) else 1


def _pad_amounts(graph: Graph, node: Node) -> tuple[int, int] | None:
    """``(before, after)`` padding of the channel axis of a constant Pad, or None when not static."""
    if node.attrs.get("mode", "constant") != "constant":
        return None
    pads = node.attrs.get("pads")
    if pads is None:
        if len(node.inputs) < 2 or node.inputs[1] not in graph.initializers or \
                (len(node.inputs) > 3 and node.inputs[3]):
            return None
        pads = graph.initializers[node.inputs[1]].tolist()
    rank = len(pads) // 2
    return int(pads[1]), int(pads[rank + 1])


def _slice_keeps_channels(graph: Graph, node: Node) -> bool:
    """A Slice that leaves the channel axis whole (e.g. option-A's ``x[:, :, ::2, ::2]``)."""
    rank = len(graph.shape(node.inputs[0]))
    if any(t and t not in graph.initializers for t in node.inputs[1:]):
        return False
    starts = graph.initializers[node.inputs[1]].tolist()
    axes = graph.initializers[node.inputs[3]].tolist() if len(node.inputs) > 3 and node.inputs[3] else \
        list(range(len(starts)))
    axes = [a + rank if a < 0 else a for a in axes]
    return 1 not in axes or graph.shape(node.inputs[0])[1] == graph.shape(node.outputs[0])[1]


def _reduces_space_only(graph: Graph, node: Node) -> bool:
    """A reduction over spatial axes that keeps the channel axis (global pooling written as ReduceMean)."""
    rank = len(graph.shape(node.inputs[0]))
    if len(node.inputs) > 1 and node.inputs[1]:
        if node.inputs[1] not in graph.initializers:
            return False
        axes = graph.initializers[node.inputs[1]].tolist()
    else:
        axes = node.attrs.get("axes", list(range(rank)))
    return node.attrs.get("keepdims", 1) == 1 and 1 not in [a + rank if a < 0 else a for a in axes]


def _is_squeeze(graph: Graph, node: Node) -> bool:
    shape_in, shape_out = graph.shape(node.inputs[0]), graph.shape(node.outputs[0])
    return len(shape_out) == 2 and len(shape_in) >= 2 and all(s == 1 for s in shape_in[2:]) \
        and shape_out == shape_in[:2]
