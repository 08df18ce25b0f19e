"""DepthToSpace → DEPTH_TO_SPACE and SpaceToDepth → SPACE_TO_DEPTH, on the program's NHWC layout.

TFLite's DEPTH_TO_SPACE reads channel ``(i * b + j) * C_out + c`` into pixel offset ``(i, j)``, channel ``c``:
ONNX's mode DCR (TensorFlow's). Mode CRD (what ``torch.onnx.export`` writes for ``nn.PixelShuffle``) reads
channel ``c * b * b + i * b + j`` instead. Where a Conv computes those channels, ``optimize.depth_to_space_as_dcr``
has already reordered its filters and made the op DCR; any other CRD input is put in DCR order here by a
RESHAPE to ``[N * H * W, C_out, b * b]``, a TRANSPOSE (0, 2, 1) and a RESHAPE back, whatever produces it.
ONNX's SpaceToDepth has a single order, TFLite's. All of them copy values, so every tensor shares the
input's encoding (``quantize.spec.SHARED_SCALE_OPS``).
"""
from __future__ import annotations

import numpy as np

from edgeopt.errors import UnsupportedOpError
from edgeopt.ir import Node
from edgeopt.pipeline.lower.context import LOWERINGS, LowerContext
from edgeopt.pipeline.lower.gather import transposed


def _block_size(node: Node, ctx: LowerContext) -> int:
    if len(ctx.src_shape(node.inputs[0])) != 4:
        raise UnsupportedOpError(node.op, node.name, "only 4-D NCHW inputs are supported")
    return int(node.attrs["blocksize"])


def _reshape(node: Node, ctx: LowerContext, x: str, shape: tuple[int, ...]) -> str:
    y = ctx.temp_like(f"{node.name}/reshaped", shape, x)
    target = np.array(shape, np.int32)
    ctx.emit("RESHAPE", [x, ctx.constant(f"{node.name}/shape", target, "int32")], [y], node,
             new_shape=target.tolist())
    return y


@LOWERINGS.register("DepthToSpace")
def lower_depth_to_space(node: Node, ctx: LowerContext) -> None:
    """DepthToSpace (mode DCR, or CRD through a channel permutation) → DEPTH_TO_SPACE."""
    b = _block_size(node, ctx)
    mode = node.attrs.get("mode", "DCR")
    if mode not in ("DCR", "CRD"):
        raise UnsupportedOpError("DepthToSpace", node.name, f"mode {mode!r} is not DCR or CRD")
    x = ctx.activation(node.inputs[0], node)
    n, h, w, c = ctx.shape(x)
    if mode == "CRD":
        groups = _reshape(node, ctx, x, (n * h * w, c // (b * b), b * b))
        dcr = transposed(node, ctx, groups, (n * h * w, b * b, c // (b * b)), (0, 2, 1))
        x = _reshape(node, ctx, dcr, (n, h, w, c))
    ctx.emit("DEPTH_TO_SPACE", [x], [ctx.activation(node.outputs[0], node)], node, block_size=b)


@LOWERINGS.register("SpaceToDepth")
def lower_space_to_depth(node: Node, ctx: LowerContext) -> None:
    """SpaceToDepth → SPACE_TO_DEPTH."""
    b = _block_size(node, ctx)
    x = ctx.activation(node.inputs[0], node)
    ctx.emit("SPACE_TO_DEPTH", [x], [ctx.activation(node.outputs[0], node)], node, block_size=b)
