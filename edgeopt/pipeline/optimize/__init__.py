"""Graph → Graph optimization passes, one module per technique, registered by name."""
from __future__ import annotations

from collections.abc import Callable, Sequence

from edgeopt.ir import Graph
from edgeopt.registry import Registry

Pass = Callable[[Graph], Graph]
PASSES: Registry[Pass] = Registry("optimization pass")

DEFAULT_PASSES = ("fold_batch_norm", "batch_norm_as_mul_add", "fuse_layer_norm", "fuse_gelu", "div_by_constant_as_mul",
                  "square_as_mul", "gather_as_slice", "fuse_activation", "conv1d_as_conv2d",
                  "depth_to_space_as_dcr")


def optimize(graph: Graph, passes: Sequence[str] = DEFAULT_PASSES) -> Graph:
    """Apply the named passes in order; each returns a new Graph."""
    for name in passes:
        graph = PASSES.get(name)(graph)
    return graph


# Register the passes (import for the side effect of their decorators).
from edgeopt.pipeline.optimize import conv1d_as_conv2d, fold_batch_norm, fuse_activation, fuse_gelu  # noqa: E402,F401
from edgeopt.pipeline.optimize import batch_norm_as_mul_add, cross_layer_equalization  # noqa: E402,F401
from edgeopt.pipeline.optimize import arithmetic_as_mul, fuse_layer_norm, gather_as_slice  # noqa: E402,F401
from edgeopt.pipeline.optimize import depth_to_space_as_dcr  # noqa: E402,F401
