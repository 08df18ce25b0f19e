"""Image preprocessing for image-folder data sources: the common cases, given as ``key=value,...`` or a TOML file.

One image becomes one model-ready sample, in this order (as torchvision's ``Resize``/``CenterCrop``/
``ToTensor``/``Normalize`` and the Keras preprocessing functions do it):

1. ``order``: read as RGB (default), BGR (channels reversed, as Caffe-trained models take them) or gray (one
   channel);
2. ``resize=S``: the shorter side scaled to S pixels (bilinear, Pillow's antialiased filter, the one
   torchvision uses on PIL images), or ``resize=HxW`` to an exact size;
3. ``crop=S`` or ``crop=HxW``: the centre crop (torchvision's rounding of the offsets);
4. values: ``((pixel * scale + offset) - mean) / std`` per channel, pixels 0..255 (``mean``/``std`` one value
   or one per channel: ``mean=[123.675,116.28,103.53]``);
5. ``layout``: nchw (default, ONNX and PyTorch models) or nhwc (TensorFlow and .tflite models);
6. ``dtype``: float32 (default), or uint8/int8 for models that take raw integers (the values after step 4,
   rounded and clipped).

Example: ``resize=256,crop=224,scale=0.00392156862745098,mean=[0.485,0.456,0.406],std=[0.229,0.224,0.225]``.
A TOML file holds the same keys at its top level (lists as TOML arrays).
"""
from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np

from edgeopt.errors import DataError

Order = Literal["rgb", "bgr", "gray"]
Layout = Literal["nchw", "nhwc"]
SampleDtype = Literal["float32", "uint8", "int8"]
Size = tuple[int, int]


@dataclass(frozen=True)
class Preprocess:
    """How an image becomes one sample (module docstring: the steps in order). ``resize``: an int scales the
    shorter side, a pair is an exact (height, width); ``crop``: the centre (height, width)."""

    resize: int | Size | None = None
    crop: Size | None = None
    scale: float = 1.0
    offset: float = 0.0
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    order: Order = "rgb"
    layout: Layout = "nchw"
    dtype: SampleDtype = "float32"

    def __post_init__(self) -> None:
        """Check every value, so that a bad one fails before any image is read.

        Raises:
            DataError: one line naming the key and what it takes.
        """
        for key, allowed in (("order", Order), ("layout", Layout), ("dtype", SampleDtype)):
            if getattr(self, key) not in get_args(allowed):
                raise DataError(f"preprocess {key}={getattr(self, key)!r}: use one of {', '.join(get_args(allowed))}")
        channels = 1 if self.order == "gray" else 3
        for key in ("mean", "std"):
            values = getattr(self, key)
            if len(values) not in (1, channels):
                raise DataError(f"preprocess {key} has {len(values)} values; give 1 or {channels} (one per channel)")
        if any(s == 0 for s in self.std):
            raise DataError("preprocess std holds a zero; give the standard deviations to divide by")
        resize = self.resize if isinstance(self.resize, tuple) else () if self.resize is None else (self.resize,)
        sizes = [*resize, *(self.crop or ())]
        if any(s <= 0 for s in sizes):
            raise DataError(f"preprocess sizes must be positive (resize={self.resize}, crop={self.crop})")

    def __call__(self, image: Any) -> np.ndarray:
        """One PIL image → one sample, ``[C, H, W]`` (nchw) or ``[H, W, C]`` (nhwc) in ``dtype``."""
        from PIL import Image

        image = image.convert("L" if self.order == "gray" else "RGB")
        if self.resize is not None:
            w, h = image.size
            if isinstance(self.resize, tuple):
                size = (self.resize[1], self.resize[0])
            else:  # the shorter side to ``resize``, the other in proportion (torchvision's int rounding)
                short, long = sorted((w, h))
                other = int(self.resize * long / short)
                size = (self.resize, other) if w <= h else (other, self.resize)
            if size != (w, h):
                image = image.resize(size, Image.Resampling.BILINEAR)
        if self.crop is not None:
            w, h = image.size
            ch, cw = self.crop
            if ch > h or cw > w:
                raise DataError(f"preprocess crop {ch}x{cw} is larger than the image ({h}x{w} after resize); "
                                "resize it first (resize=S) or crop less")
            top, left = round((h - ch) / 2.0), round((w - cw) / 2.0)
            image = image.crop((left, top, left + cw, top + ch))
        pixels = np.asarray(image, np.float32)
        pixels = pixels[:, :, None] if pixels.ndim == 2 else pixels
        if self.order == "bgr":
            pixels = pixels[:, :, ::-1]
        values = ((pixels * np.float32(self.scale) + np.float32(self.offset)) - np.asarray(self.mean, np.float32)) \
            / np.asarray(self.std, np.float32)
        if self.layout == "nchw":
            values = values.transpose(2, 0, 1)
        if self.dtype != "float32":
            info = np.iinfo(self.dtype)
            values = np.clip(np.rint(values), info.min, info.max)
        return np.ascontiguousarray(values, dtype=self.dtype)


def parse_preprocess(spec: str | Path | Mapping[str, Any] | Preprocess | None) -> Preprocess:
    """``spec`` as a Preprocess: ``key=value,...`` (lists in brackets: ``mean=[0.485,0.456,0.406]``), the path
    of a ``.toml`` file with the same keys, a mapping of them, or None (the defaults).

    Raises:
        DataError: an unknown key, a value that does not parse, or an unreadable TOML file.
    """
    if isinstance(spec, Preprocess):
        return spec
    if spec is None:
        return Preprocess()
    if isinstance(spec, Mapping):
        values = dict(spec)
    elif str(spec).endswith(".toml"):
        values = _read_toml(Path(spec))
    else:
        values = _parse_pairs(str(spec))
    known = {f.name for f in fields(Preprocess)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise DataError(f"unknown preprocess key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    try:
        return Preprocess(**{k: _converted(k, v) for k, v in values.items()})
    except (TypeError, ValueError) as exc:
        raise DataError(f"preprocess '{spec}': {exc}") from None


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise DataError(f"preprocess file '{path}' does not exist") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise DataError(f"preprocess file '{path}' is not readable TOML: {exc}") from None


def _parse_pairs(spec: str) -> dict[str, Any]:
    """``a=1,b=[1,2,3],c=x`` → {"a": "1", "b": ["1", "2", "3"], "c": "x"} (commas inside brackets kept)."""
    values: dict[str, Any] = {}
    for part in re.findall(r"[^,\[]+(?:\[[^\]]*\])?[^,]*", spec):
        key, eq, value = part.strip().partition("=")
        if not eq or not key:
            raise DataError(f"preprocess '{spec}': '{part.strip()}' is not key=value (e.g. resize=256,crop=224)")
        value = value.strip()
        values[key.strip()] = [v.strip() for v in value[1:-1].split(",") if v.strip()] \
            if value.startswith("[") and value.endswith("]") else value
    return values


def _converted(key: str, value: Any) -> Any:
    if key in ("resize", "crop"):
        return _size(key, value)
    if key in ("scale", "offset"):
        return _number(key, value)
    if key in ("mean", "std"):
        items = value if isinstance(value, list | tuple) else [value]
        return tuple(_number(key, v) for v in items)
    return str(value).lower()


def _number(key: str, value: Any) -> float:
    try:
        if isinstance(value, str) and "/" in value:  # scale=1/255
            top, _, bottom = value.partition("/")
            return float(top) / float(bottom)
        return float(value)
    except (TypeError, ValueError, ZeroDivisionError):
        raise ValueError(f"{key}={value!r} is not a number") from None


def _size(key: str, value: Any) -> int | Size:
    """``S`` (an int: resize's shorter side; a crop's square) or ``HxW``/``[H, W]``."""
    try:
        if isinstance(value, list | tuple):
            h, w = (int(v) for v in value)
            return (h, w)
        text = str(value).lower()
        if "x" in text:
            h, w = (int(v) for v in text.split("x"))
            return (h, w)
        side = int(text)
        return side if key == "resize" else (side, side)
    except ValueError:
        raise ValueError(f"{key}={value!r} is not a size: give S or HxW") from None
