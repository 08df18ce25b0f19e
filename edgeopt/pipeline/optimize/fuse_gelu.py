"""Fuse the elementwise chains exporters write for GELU into one ``Gelu`` node (ONNX opset 20).

torch's dynamo exporter (opset 18) writes ``nn.GELU()`` as ``x * (0.5 * (1 + Erf(x / sqrt(2))))`` and
``nn.GELU(approximate="tanh")`` as ``x * (0.5 * (1 + Tanh(sqrt(2/pi) * (x + 0.044715 * x^3))))``
(Div, Erf, Add, Mul, Mul; Pow, Mul, Add, Mul, Tanh, Add, Mul, Mul); the TorchScript exporter writes
``(x * (1 + Erf(x / sqrt(2)))) * 0.5``. Any association and operand order
of the outer products and sums is matched, ``x / sqrt(2)`` also as ``x * (1/sqrt(2))`` and ``x^3`` also
as ``Pow(x, 3)`` only. Every intermediate must feed only the next node of the chain. A graph that gains a
Gelu is raised to opset 20, the first that defines it (opsets 19 and 20 change none of the op forms the
pipeline reads).
"""
from __future__ import annotations

import math

import numpy as np

from edgeopt.ir import Graph, Node, TensorInfo
from edgeopt.pipeline.optimize import PASSES

GELU_OPSET = 20
_RTOL = 1e-5


class _Matcher:
    """Walks a chain backwards from its last node, collecting the nodes it consumes."""

    def __init__(self, graph: Graph) -> None:
        self.graph = graph
        self.used: list[Node] = []

    def const(self, name: str, value: float) -> bool:
        arr = self.graph.initializers.get(name)
        return arr is not None and arr.size == 1 and math.isclose(float(arr.reshape(())), value, rel_tol=_RTOL)

    def node(self, tensor: str, op: str) -> Node | None:
        """The producer of ``tensor`` if it is an ``op`` read only by the chain (not a graph output)."""
        producer = self.graph.producer(tensor)
        if (producer is None or producer.op != op or len(self.graph.consumers(tensor)) != 1
                or self.graph.is_output(tensor)):
            return None
        self.used.append(producer)
        return producer

    def factors(self, node: Node, depth: int = 1) -> list[str]:
        """Operands of a product, expanding inner single-use Mul nodes ``depth`` levels deep."""
        out: list[str] = []
        for t in node.inputs:
            inner = self.graph.producer(t)
            if depth and inner is not None and inner.op == "Mul" and self.node(t, "Mul") is not None:
                out += self.factors(inner, depth - 1)
            else:
                out.append(t)
        return out

    def one_plus(self, tensor: str) -> str | None:
        """``e`` when ``tensor = 1 + e`` (either order)."""
        add = self.node(tensor, "Add")
        if add is None:
            return None
        a, b = add.inputs
        return b if self.const(a, 1.0) else a if self.const(b, 1.0) else None

    def scaled_input(self, tensor: str, x: str, factor: float) -> bool:
        """Whether ``tensor = x * factor`` (Mul, either order) or ``x / (1 / factor)`` (Div)."""
        producer = self.graph.producer(tensor)
        if producer is not None and producer.op == "Div" and self.node(tensor, "Div") is not None:
            return producer.inputs[0] == x and self.const(producer.inputs[1], 1.0 / factor)
        mul = self.node(tensor, "Mul")
        if mul is None or x not in mul.inputs:
            return False
        return self.const(mul.inputs[1] if mul.inputs[0] == x else mul.inputs[0], factor)

    def erf_arg(self, tensor: str, x: str) -> bool:
        erf = self.node(tensor, "Erf")
        return erf is not None and self.scaled_input(erf.inputs[0], x, math.sqrt(0.5))

    def tanh_arg(self, tensor: str, x: str) -> bool:
        """``tensor = Tanh(sqrt(2/pi) * (x + 0.044715 * x^3))``."""
        tanh = self.node(tensor, "Tanh")
        outer = tanh and self.node(tanh.inputs[0], "Mul")
        if not outer:
            return False
        k, inner = outer.inputs if self.graph.initializers.get(outer.inputs[0]) is not None else outer.inputs[::-1]
        if not self.const(k, math.sqrt(2.0 / math.pi)):
            return False
        add = self.node(inner, "Add")
        if add is None or x not in add.inputs:
            return False
        cubic = self.node(add.inputs[1] if add.inputs[0] == x else add.inputs[0], "Mul")
        if cubic is None:
            return False
        c, power = cubic.inputs if self.graph.initializers.get(cubic.inputs[0]) is not None else cubic.inputs[::-1]
        pow_node = self.node(power, "Pow")
        return (self.const(c, 0.044715) and pow_node is not None and pow_node.inputs[0] == x
                and self.const(pow_node.inputs[1], 3.0))


def _match(graph: Graph, last: Node) -> tuple[str, str, float, list[Node]] | None:
    """(input, approximate, scale, chain nodes) when ``last`` ends a GELU chain (``scale`` x GELU).

    The input ``x`` is any factor of the product: a direct operand of ``last`` (``x * (0.5 * (1 + e))``,
    the dynamo form) or one of an inner Mul (``(x * (1 + e)) * 0.5``, the TorchScript form). A product
    without the 0.5 (``x * (1 + e)``: onnxsim moves the 0.5 into the next layer's weights) is twice GELU.
    """
    for x in dict.fromkeys(_Matcher(graph).factors(last)):
        if x in graph.initializers:
            continue
        m = _Matcher(graph)
        factors = m.factors(last)
        if len(factors) not in (2, 3) or x not in factors:
            continue
        rest = list(factors)
        rest.remove(x)
        halves = [t for t in rest if m.const(t, 0.5)]
        if len(halves) != len(rest) - 1:
            continue
        for half in halves:
            rest.remove(half)
        e = m.one_plus(rest[0])
        if e is None:
            continue
        producer = graph.producer(e)
        scale = 1.0 if halves else 2.0
        if producer is not None and producer.op == "Erf" and m.erf_arg(e, x):
            return x, "none", scale, [*m.used, last]
        if producer is not None and producer.op == "Tanh" and m.tanh_arg(e, x):
            return x, "tanh", scale, [*m.used, last]
    return None


@PASSES.register("fuse_gelu")
def fuse_gelu(graph: Graph) -> Graph:
    """Replace each exported GELU chain by one ``Gelu`` node named after the chain's last node (followed by
    a Mul by 2 for the form without the 0.5). Chains are matched from the graph's end, so that the
    TorchScript form's inner ``x * (1 + e)`` is taken as part of its outer product, not alone."""
    nodes = list(graph.nodes)
    tensors = dict(graph.tensors)
    inits = dict(graph.initializers)
    fused = False
    for last in reversed(graph.nodes):
        if last.op != "Mul" or last not in nodes:
            continue
        match = _match(graph, last)
        if match is None or any(n not in nodes for n in match[3]):
            continue
        x, approximate, scale, chain = match
        for n in chain:
            if n is not last:
                nodes.remove(n)
                for t in n.outputs:
                    tensors.pop(t, None)
        y = last.outputs[0]
        gelu = Node("Gelu", last.name, (x,), (y,), {"approximate": approximate})
        if scale == 1.0:
            nodes[nodes.index(last)] = gelu
        else:
            half_out, two = f"{last.name}.gelu", f"{last.name}.two"
            tensors[half_out] = TensorInfo(half_out, graph.shape(y), graph.tensors[y].dtype)
            inits[two] = np.array([scale], np.float32)
            nodes[nodes.index(last):nodes.index(last) + 1] = [
                gelu.with_(outputs=(half_out,)), Node("Mul", f"{last.name}.double", (half_out, two), (y,))]
        fused = True
    if not fused:
        return graph
    return graph.replace(nodes=tuple(nodes), tensors=tensors, initializers=inits,
                         opset=max(graph.opset, GELU_OPSET)).without_unused_initializers()
