"""Typed errors. A user error ends in one line saying what is wrong and what to do; a bug is InternalError.

The CLI maps each class to its exit code through ``EXIT_CODES``; nothing else decides how an error looks.
Each class's ``example`` is a line it really prints; ``docs/errors.md`` is generated from this module
(``python -m tools.errors_table``) and a test keeps it equal.
"""
from __future__ import annotations

from typing import ClassVar


class EdgeoptError(Exception):
    """Base of every error edgeopt raises on purpose. ``str(err)`` is the one line a user sees."""

    example: ClassVar[str] = ""


class ModelLoadError(EdgeoptError):
    """The model file is missing, corrupt, or not a model edgeopt can read."""

    example: ClassVar[str] = "model file 'net.onnx' does not exist"


class UnsupportedOpError(EdgeoptError):
    """A node whose op the pipeline (or a device profile rule) cannot handle."""

    example: ClassVar[str] = ("unsupported op DEPTHWISE_CONV_2D (node 'dw1'): int16 activations requested, but "
                              "the profile allows only w8a8 kernels")

    def __init__(self, op: str, node: str, why: str) -> None:
        self.op, self.node, self.why = op, node, why
        super().__init__(f"unsupported op {op} (node '{node}'): {why}")


class DataError(EdgeoptError):
    """A data or calibration file is missing, unreadable, or does not fit the model."""

    example: ClassVar[str] = ("'val.npz': x holds 3 NaN/Inf value(s) (or beyond float32), the first in sample "
                              "17; replace or drop those samples")


class ProfileError(EdgeoptError):
    """A device profile is unknown or invalid."""

    example: ClassVar[str] = ("unknown device profile 'arm-cortex-a78-xnnpak'; did you mean "
                              "'arm-cortex-a78-xnnpack'? known: ... (or give the path of a .toml file)")


class DeviceError(EdgeoptError):
    """A target device cannot be reached or used."""

    example: ClassVar[str] = ("cannot reach 192.168.1.20:5555: connection refused; enable ADB over TCP on the "
                              "phone (`adb tcpip 5555` over USB) and check the address")


class RegistryError(EdgeoptError):
    """A lookup by name in a registry (kernels, emitters, passes, profiles) found nothing."""

    example: ClassVar[str] = "no 16x8 kernel for 'SOFTMAX' (known: ADD, CONV_2D, ...)"


class OptionError(EdgeoptError):
    """An option value that only the model can refute (an ``--override`` naming no node): a usage error."""

    example: ClassVar[str] = ("precision override 'Gem' names no node or op type of the optimized graph 'net' "
                              "(op types: Conv, Gemm, ...); did you mean Gemm?")


class OutputError(EdgeoptError):
    """The output location cannot hold the results (a file, under a file, read-only, inside the package)."""

    example: ClassVar[str] = "--out 'build/report.json' is a file, not a folder; give a folder path"


class AccuracyError(EdgeoptError):
    """The int8 model missed the ``--max-drop`` accuracy budget; the artifacts and the report are written."""

    example: ClassVar[str] = ("no recipe step met --max-drop 1.0 (kept 'adaround'); the artifacts and "
                              "report.json are written: raise --max-drop or see the recipe table")


class InternalError(EdgeoptError):
    """A bug in edgeopt: an invariant broke. Reported with a hint to rerun with --debug."""

    example: ClassVar[str] = "ValueError: ... (a bug in edgeopt; rerun with --debug and report the traceback)"


EXIT_CODES: dict[type[EdgeoptError], int] = {
    ModelLoadError: 3,
    UnsupportedOpError: 4,
    DataError: 5,
    ProfileError: 6,
    DeviceError: 7,
    RegistryError: 8,
    OptionError: 2,
    OutputError: 9,
    AccuracyError: 10,
    InternalError: 70,
}


def exit_code(err: BaseException) -> int:
    """Exit code for ``err``: its class's entry in EXIT_CODES (searched along the MRO), 70 for anything else."""
    for cls in type(err).__mro__:
        if cls in EXIT_CODES:
            return EXIT_CODES[cls]
    return 2 if isinstance(err, EdgeoptError) else 70


def first_line(exc: BaseException, limit: int = 300) -> str:
    """The first line of a third-party exception's message, for wrapping it in one of ours."""
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:limit]
