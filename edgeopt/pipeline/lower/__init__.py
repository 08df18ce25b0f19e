"""lower: QuantizedGraph (NCHW, float ops + encodings) → QProgram (NHWC TFLite int8 ops, params set)."""
from __future__ import annotations

from edgeopt.errors import UnsupportedOpError
from edgeopt.ir import Graph, QuantizedGraph
from edgeopt.pipeline.lower.context import LOWERINGS, LowerContext, program_perm
from edgeopt.pipeline.lower.float_island import lowering_of
from edgeopt.pipeline.lower.movement_pairs import compose_movement
from edgeopt.pipeline.lower.subsample import subsample_as_depthwise
from edgeopt.qprogram import QProgram, Rounding
from edgeopt.registry import import_submodules
from edgeopt.runtimes.reference.prepare import prepare_program

import_submodules("edgeopt.pipeline.lower")  # each module registers the lowerings of its ops


# What a user can do about ops that the optimizer's rewrites leave behind only in unusual forms.
LEFTOVER_HINTS = {
    "Erf": "TFLite has no ERF; only GELU's x * 0.5 * (1 + erf(x / sqrt(2))) is recognised (use nn.GELU)",
    "Pow": "only Pow(x, 2) lowers (as MUL of x by itself)",
}


def check_lowerable(graph: Graph) -> None:
    """Fail fast, before calibration, on the first node no lowering exists for.

    Raises:
        UnsupportedOpError: naming the op, the node and what is supported (or what to do instead).
    """
    for node in graph.nodes:
        if node.op not in LOWERINGS:
            hint = LEFTOVER_HINTS.get(node.op, f"no int8 lowering for it yet (supported: {', '.join(LOWERINGS)})")
            raise UnsupportedOpError(node.op, node.name, hint)


def lower(qgraph: QuantizedGraph, rounding: Rounding = "single") -> QProgram:
    """Lower a quantized graph to the int8 program, with multipliers and shifts precomputed; the nodes
    of ``qgraph.float_nodes`` become float islands (``lower.float_island``).

    Raises:
        UnsupportedOpError: a node without a lowering, or a float node the graph does not have.
    """
    graph = qgraph.graph
    check_lowerable(graph)
    unknown = sorted(qgraph.float_nodes - {n.name for n in graph.nodes})
    if unknown:
        raise UnsupportedOpError("float_nodes", unknown[0], "no node of the graph has this name")
    ctx = LowerContext(qgraph)
    for t in graph.inputs:
        ctx.activation(t.name, graph.nodes[0])
    for node in graph.nodes:
        lowering_of(node, ctx)(node, ctx)
    outputs = {t.name for t in graph.outputs}
    ops = subsample_as_depthwise(compose_movement(ctx.ops, ctx.tensors, outputs), ctx.tensors, outputs)
    used = {t for op in ops for t in op.inputs + op.outputs} | {t.name for t in graph.inputs}
    program = QProgram(
        name=graph.name,
        tensors={k: v for k, v in ctx.tensors.items() if k in used},
        ops=tuple(ops),
        inputs=tuple(t.name for t in graph.inputs),
        outputs=tuple(t.name for t in graph.outputs),
        rounding=rounding,
        input_layouts=tuple(program_perm(len(t.shape)) for t in graph.inputs),
        output_layouts=tuple(program_perm(len(t.shape)) for t in graph.outputs),
    )
    return prepare_program(program)
