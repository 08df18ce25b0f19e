"""Output size and implicit padding of windowed ops (TFLite ``kernels/padding.h``)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Window:
    """TFLite's ``ComputePaddingHeightWidth`` result for one op.

    ``pad_height``/``pad_width`` are the padding before the first row/column (``TfLitePaddingValues``
    height/width); the window of output ``(oy, ox)`` starts at input ``(oy * stride - pad_height,
    ox * stride - pad_width)``.
    """

    output_height: int
    output_width: int
    pad_height: int
    pad_width: int


def compute_out_size(padding: str, image_size: int, filter_size: int, stride: int, dilation: int) -> int:
    """TFLite ``ComputeOutSize``: SAME ``ceil(in / stride)``, VALID ``floor((in - eff) / stride) + 1``."""
    effective = (filter_size - 1) * dilation + 1
    if padding == "SAME":
        return (image_size + stride - 1) // stride
    if padding == "VALID":
        return max((image_size + stride - effective) // stride, 0)
    raise ValueError(f"padding must be SAME or VALID, not {padding!r}")


def compute_padding(stride: int, dilation: int, in_size: int, filter_size: int, out_size: int) -> int:
    """TFLite ``ComputePaddingWithOffset``: ``max((out - 1) * stride + eff - in, 0) // 2``.

    The odd remainder (the ``offset``) goes after the last row/column, where the reference kernels
    never read: they skip every window point outside the image.
    """
    effective = (filter_size - 1) * dilation + 1
    total = max((out_size - 1) * stride + effective - in_size, 0)
    return total // 2


def compute_padding_height_width(
    padding: str,
    in_height: int,
    in_width: int,
    filter_height: int,
    filter_width: int,
    stride_height: int,
    stride_width: int,
    dilation_height: int = 1,
    dilation_width: int = 1,
) -> Window:
    """TFLite ``ComputePaddingHeightWidth``: output size and leading padding for SAME or VALID."""
    out_h = compute_out_size(padding, in_height, filter_height, stride_height, dilation_height)
    out_w = compute_out_size(padding, in_width, filter_width, stride_width, dilation_width)
    return Window(
        output_height=out_h,
        output_width=out_w,
        pad_height=compute_padding(stride_height, dilation_height, in_height, filter_height, out_h),
        pad_width=compute_padding(stride_width, dilation_width, in_width, filter_width, out_w),
    )
