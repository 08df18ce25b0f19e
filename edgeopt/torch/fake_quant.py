"""Fake quantization in torch with a straight-through estimator (STE), for QuantSim.

``fq(x) = s · (clamp(round(x / s) + z, qmin, qmax) - z)`` with round half away from zero, as
``QParams.quantize`` and TFLite round. The STE passes the gradient of ``round`` through unchanged
(``y + (round(y) - y).detach()``), while ``clamp`` keeps its own gradient: zero outside the
representable range, one inside. When the scale is a trainable parameter its gradient is the one of
this expression, which is the LSQ estimator (Esser et al. 2020) with the zero point held fixed.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from edgeopt.ir import QParams


def round_half_away(y: torch.Tensor) -> torch.Tensor:
    """Round to nearest, ties away from zero, with a straight-through gradient."""
    rounded = torch.sign(y) * torch.floor(torch.abs(y) + 0.5)
    return y + (rounded - y).detach()


def fake_quant(x: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor, qmin: int, qmax: int) -> torch.Tensor:
    """Quantize and dequantize ``x`` (scale and zero point broadcast against ``x``)."""
    q = torch.clamp(round_half_away(x / scale) + zero_point, qmin, qmax)
    return (q - zero_point) * scale


def _bcast(v: torch.Tensor, ndim: int, axis: int | None) -> torch.Tensor:
    if axis is None:
        return v.reshape(())
    shape = [1] * ndim
    shape[axis] = -1
    return v.reshape(shape)


class ActivationQuantizer(nn.Module):
    """Per-tensor fake quantizer of one activation encoding (or of a group of tensors sharing it).

    Disabled (identity) until ``load`` gives it an encoding. ``learn_scale``: the scale becomes a
    trainable parameter (its zero point stays fixed); ``fixed`` encodings (softmax, logistic) never learn.
    """

    def __init__(self, learn_scale: bool = False, fixed: QParams | None = None) -> None:
        super().__init__()
        self.learn_scale = learn_scale and fixed is None
        self.dtype = "int8"
        self.scale = nn.Parameter(torch.ones(()), requires_grad=self.learn_scale)
        self.register_buffer("zero_point", torch.zeros(()))
        self.enabled = False
        if fixed is not None:
            self.load(fixed)

    def load(self, qp: QParams) -> None:
        """Take the per-tensor encoding ``qp``."""
        with torch.no_grad():
            self.scale.copy_(torch.tensor(float(qp.scale[0])))
            self.zero_point.copy_(torch.tensor(float(qp.zero_point[0])))
        self.dtype = qp.dtype
        self.enabled = True

    def qparams(self) -> QParams:
        """The current encoding (float32 scale, as the files store it)."""
        return QParams(scale=np.float32(self.scale.detach().abs().item()), zero_point=int(self.zero_point.item()),
                       dtype=self.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.enabled:
            return x
        info = np.iinfo(self.dtype)
        return fake_quant(x, self.scale.abs(), self.zero_point, int(info.min), int(info.max))


class WeightQuantizer(nn.Module):
    """Symmetric fake quantizer of a weight along its output-channel ``axis``, on the integer range ``qrange``.

    ``encode`` gives the weight's encoding from its value, as the target quantizes it
    (``Target.weight_encoding``: bit width, ``strict_symmetric``, per-channel or per-tensor, widened where
    the bias would overflow int32). Without ``learn_scale`` it is called on the current weight on every
    call, so training sees exactly the grid that export writes and the program ships. With ``learn_scale``
    the scale is a parameter, initialised from the weight's encoding when encodings load (``per_channel``
    False: one scale, the largest, exported).
    """

    def __init__(self, axis: int, channels: int, encode: Callable[[np.ndarray], QParams], qrange: tuple[int, int],
                 learn_scale: bool = False, per_channel: bool = True) -> None:
        super().__init__()
        self.axis, self.encode, self.learn_scale, self.per_channel = axis, encode, learn_scale, per_channel
        self.qmin, self.qmax = qrange
        self.scale = nn.Parameter(torch.ones(channels), requires_grad=learn_scale)
        self.encoding: QParams | None = None
        self.enabled = False

    def load(self, weight: torch.Tensor, encoding: QParams | None = None) -> None:
        """Enable, starting from the weight's own encoding, or holding ``encoding``'s scales (a
        QuantizedGraph's weight encodings, e.g. AdaRound's, whose weights already sit on that grid)."""
        self.encoding = encoding
        with torch.no_grad():
            if encoding is None:
                self.scale.copy_(self._minmax_scale(weight))
            else:
                self.scale.copy_(torch.from_numpy(encoding.scale.astype(np.float32)).expand_as(self.scale))
        self.enabled = True

    def _minmax_scale(self, weight: torch.Tensor) -> torch.Tensor:
        """The scales of ``encode``'s encoding of the current weight, one per channel."""
        scale = self.encode(weight.detach().cpu().numpy()).scale
        return torch.from_numpy(scale.copy()).to(weight.device, weight.dtype).expand_as(self.scale)

    def current_scale(self, weight: torch.Tensor) -> torch.Tensor:
        held = self.learn_scale or self.encoding is not None
        return self.scale.abs() if held else self._minmax_scale(weight)

    def qparams(self, weight: torch.Tensor) -> QParams:
        """The encoding export writes for ``weight``."""
        if self.encoding is not None and not self.learn_scale:
            return self.encoding
        if not self.learn_scale:
            return self.encode(weight.detach().cpu().numpy())
        scale = self.scale.detach().abs().cpu().numpy().astype(np.float32)
        if not self.per_channel:
            return QParams(scale=np.float32(scale.max()), zero_point=0, dtype="int8")
        return QParams(scale=scale, zero_point=np.zeros(scale.shape, np.int64), dtype="int8", axis=self.axis)

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        if not self.enabled:
            return weight
        scale = _bcast(self.current_scale(weight), weight.ndim, self.axis)
        return fake_quant(weight, scale, torch.zeros((), dtype=weight.dtype), self.qmin, self.qmax)


def fake_quant_bias(bias: torch.Tensor, input_scale: torch.Tensor, weight_scale: torch.Tensor,
                    dtype: str = "int32") -> torch.Tensor:
    """int32 bias (int64 behind int16 activations) on scale ``input_scale · weight_scale[c]`` (TFLite's
    bias encoding), fake-quantized."""
    scale = (input_scale.double() * weight_scale.double()).float()
    info = np.iinfo(dtype)
    return fake_quant(bias, scale, torch.zeros((), dtype=bias.dtype), int(info.min), int(info.max))
