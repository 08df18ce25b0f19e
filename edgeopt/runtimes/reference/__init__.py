"""The integer reference executor: one module per op family (Prepare and its int8, 16x8 and float32
kernels together, as TFLite's ``integer_ops/<op>.h``), each registering them in ``registry.KERNELS`` and
``registry.PREPARERS`` by (kind, mode) when imported."""
from __future__ import annotations

from edgeopt.registry import import_submodules

import_submodules(__name__)
