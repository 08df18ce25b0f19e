"""Typed errors. A user error ends in one line saying what is wrong and what to do; a bug is InternalError.

The CLI maps each class to its exit code through ``EXIT_CODES``; nothing else decides how an error looks.
"""
from __future__ import annotations


class EdgeoptError(Exception):
    """Base of every error edgeopt raises on purpose. ``str(err)`` is the one line a user sees."""


class ModelLoadError(EdgeoptError):
    """The model file is missing, corrupt, or not a model edgeopt can read."""


class UnsupportedOpError(EdgeoptError):
    """A node whose op the pipeline (or a device profile rule) cannot handle."""

    def __init__(self, op: str, node: str, why: str) -> None:
        self.op, self.node, self.why = op, node, why
        super().__init__(f"unsupported op {op} (node '{node}'): {why}")


class DataError(EdgeoptError):
    """A data or calibration file is missing, unreadable, or does not fit the model."""


class ProfileError(EdgeoptError):
    """A device profile is unknown or invalid."""


class DeviceError(EdgeoptError):
    """A target device cannot be reached or used."""


class RegistryError(EdgeoptError):
    """A lookup by name in a registry (kernels, emitters, passes, profiles) found nothing."""


class OptionError(EdgeoptError):
    """An option value that only the model can refute (an ``--override`` naming no node): a usage error."""


class OutputError(EdgeoptError):
    """The output location cannot hold the results (a file, under a file, read-only, inside the package)."""


class AccuracyError(EdgeoptError):
    """The int8 model missed the ``--max-drop`` accuracy budget; the artifacts and the report are written."""


class InternalError(EdgeoptError):
    """A bug in edgeopt: an invariant broke. Reported with a hint to rerun with --debug."""


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
