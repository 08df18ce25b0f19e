"""Where the tests find the checkout's files and the shared data beside it."""
from __future__ import annotations

from pathlib import Path

import edgeopt

ROOT = Path(__file__).resolve().parents[2]
"""The checkout: ``edgeopt/``, ``tests/``, ``benchmarks/``."""
PROFILES = Path(edgeopt.__file__).resolve().parent / "device_profiles"
"""The shipped device profiles (``*.toml``)."""
SHARED_DATA = ROOT.parent / "shared" / "data"
"""``../shared/data`` beside the checkout: real models and labelled data. A user's checkout has none, so a test
that reads it skips when it is absent."""
