"""Lower, place, and honour the placement: ops the device runs only in float become float islands.

``place`` tags an integer op that no compute unit runs at its dtype, but one runs in float32, as a float
fallback. Its source node then joins ``QuantizedGraph.float_nodes``, the graph is lowered once more
(the node's ops now float32 between DEQUANTIZE and QUANTIZE) and placed once more, with the first
placement's reasons kept on those ops' rows.
"""
from __future__ import annotations

from edgeopt.device_profiles import DeviceProfile
from edgeopt.errors import InternalError
from edgeopt.ir import QuantizedGraph
from edgeopt.pipeline.lower import lower
from edgeopt.pipeline.place import place
from edgeopt.qprogram import Placement
from edgeopt.pipeline.quantize.float_plan import keep_in_float
from edgeopt.qprogram import QProgram


def lower_and_place(qgraph: QuantizedGraph, profile: DeviceProfile) -> tuple[QuantizedGraph, QProgram, Placement]:
    """Lower ``qgraph`` for ``profile`` and place it, moving float-only ops into float islands.

    Args:
        qgraph: the quantized graph.
        profile: the device; its requantization rounding and compute units apply.

    Returns:
        The quantized graph with the fallback nodes added to ``float_nodes`` (``qgraph`` itself if none),
        its program and the program's placement.

    Raises:
        UnsupportedOpError: an op no unit of the profile runs, in its dtype or in float32.
    """
    rounding = profile.runtime.requantization_rounding
    program = lower(qgraph, rounding=rounding)
    placement = place(program, profile)
    fallbacks = placement.float_fallbacks()
    if not fallbacks:
        return qgraph, program, placement
    qgraph = keep_in_float(qgraph, {source for source, _ in fallbacks})
    program = lower(qgraph, rounding=rounding)
    placement = place(program, profile, fallbacks)
    if still := placement.float_fallbacks():
        raise InternalError(f"ops {sorted(still)} still need float after their nodes became float islands")
    return qgraph, program, placement
