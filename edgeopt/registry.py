"""One registry per concept (kernels, emitters, lowerings, passes): a dict filled by a decorator."""
from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from edgeopt.errors import RegistryError
from edgeopt.qprogram import OPS

T = TypeVar("T")


class Registry(Generic[T]):
    """Named entries of one kind. A failed lookup lists what exists."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, *names: str) -> Callable[[T], T]:
        """Decorator registering the decorated object under each of ``names``."""

        def add(obj: T) -> T:
            for name in names:
                if name in self._entries:
                    raise RegistryError(f"{self.kind} '{name}' registered twice")
                self._entries[name] = obj
            return obj

        return add

    def get(self, name: str) -> T:
        try:
            return self._entries[name]
        except KeyError:
            known = ", ".join(sorted(self._entries)) or "none"
            raise RegistryError(f"no {self.kind} named '{name}' (known: {known})") from None

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._entries))


class OpRegistry(Registry[T]):
    """A registry keyed by TFLite op kind: it refuses a kind that is not in ``qprogram.OPS``, the closed
    table of what a program may hold, so a new kind is added there first."""

    def register(self, *names: str) -> Callable[[T], T]:
        unknown = [n for n in names if n not in OPS]
        if unknown:
            raise RegistryError(f"{self.kind}: op kind(s) {', '.join(unknown)} not in qprogram.OPS (add a row there first)")
        return super().register(*names)


def import_submodules(package: str) -> None:
    """Import every module of ``package``, so that the decorators in them fill their registries.

    A new kernel, writer or lowering is then one new module: no list elsewhere to keep in step.
    """
    pkg = importlib.import_module(package)
    for info in pkgutil.iter_modules(pkg.__path__):
        importlib.import_module(f"{package}.{info.name}")
