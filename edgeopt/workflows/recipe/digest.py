"""A digest of a QProgram's whole content: two steps whose programs have the same digest run the same
integers on every input, so the recipe scores the program once."""
from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping
from typing import Any

import numpy as np

from edgeopt.qprogram import QProgram


def program_digest(program: QProgram) -> str:
    """SHA-256 over every field of ``program`` (ops, tensors with their names, shapes, dtypes, quantization
    parameters and constant data, rounding, layouts), arrays by dtype, shape and bytes. Equal digests mean
    equal programs; a program that differs only in a tensor's name gets another digest (never a wrong match)."""
    h = hashlib.sha256()
    _feed(h, program)
    return h.hexdigest()


def _feed(h: Any, value: Any) -> None:
    if isinstance(value, np.ndarray | np.generic):
        a = np.ascontiguousarray(value)
        h.update(f"<{a.dtype.str}{a.shape}>".encode())
        h.update(a.tobytes())
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        h.update(f"<{type(value).__name__}>".encode())
        for f in dataclasses.fields(value):
            h.update(f.name.encode())
            _feed(h, getattr(value, f.name))
    elif isinstance(value, Mapping):
        h.update(f"{{{len(value)}".encode())
        for key in sorted(value, key=str):
            _feed(h, key)
            _feed(h, value[key])
    elif isinstance(value, list | tuple):
        h.update(f"[{len(value)}".encode())
        for item in value:
            _feed(h, item)
    else:
        h.update(f"{type(value).__name__}:{value!r};".encode())
