"""One registry per concept (kernels, emitters, lowerings, passes): a dict filled by a decorator."""
from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Iterable, Iterator
from typing import Generic, Literal, TypeVar

from edgeopt.errors import RegistryError
from edgeopt.qprogram import MODES, OPS, Mode

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


class OpModeRegistry(Generic[T]):
    """Entries keyed by (op kind, mode), checked against ``qprogram.OPS`` when registered: a kind outside
    the table, or a mode its row does not list in ``column`` (``modes`` for kernels, ``prepared`` for
    Prepare functions), is refused. A failed lookup lists the kinds registered for that mode."""

    def __init__(self, kind: str, column: Literal["modes", "prepared"] = "modes") -> None:
        self.kind = kind
        self.column = column
        self._entries: dict[tuple[str, Mode], T] = {}

    def register(self, *kinds: str, mode: Mode | Iterable[Mode]) -> Callable[[T], T]:
        """Decorator registering the decorated object for each of ``kinds`` in each mode of ``mode``
        (one mode, or several when one function serves them all, as data movement does)."""
        modes: tuple[Mode, ...] = (mode,) if isinstance(mode, str) else tuple(mode)  # type: ignore[assignment]
        for name in kinds:
            if name not in OPS:
                raise RegistryError(f"{self.kind}: op kind {name} not in qprogram.OPS (add a row there first)")
            allowed = getattr(OPS[name], self.column)
            for m in modes:
                if m not in allowed:
                    raise RegistryError(f"{self.kind}: {name} has no mode '{m}' in qprogram.OPS "
                                        f"({self.column}: {', '.join(sorted(allowed)) or 'none'})")

        def add(obj: T) -> T:
            for name in kinds:
                for m in modes:
                    if (name, m) in self._entries:
                        raise RegistryError(f"{self.kind} '{name}' ({m}) registered twice")
                    self._entries[name, m] = obj
            return obj

        return add

    def get(self, kind: str, mode: Mode) -> T:
        try:
            return self._entries[kind, mode]
        except KeyError:
            known = ", ".join(self.kinds(mode)) or "none"
            raise RegistryError(f"no {mode} {self.kind} for '{kind}' (known: {known})") from None

    def kinds(self, mode: Mode) -> list[str]:
        """The kinds registered in ``mode``, sorted."""
        return sorted(k for k, m in self._entries if m == mode)

    def modes(self, kind: str) -> list[Mode]:
        """The modes ``kind`` is registered in, in ``qprogram.MODES`` order."""
        return [m for m in MODES if (kind, m) in self._entries]

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def __iter__(self) -> Iterator[tuple[str, Mode]]:
        return iter(sorted(self._entries))


def import_submodules(package: str) -> None:
    """Import every module of ``package``, so that the decorators in them fill their registries.

    A new kernel, writer or lowering is then one new module: no list elsewhere to keep in step.
    """
    pkg = importlib.import_module(package)
    for info in pkgutil.iter_modules(pkg.__path__):
        importlib.import_module(f"{package}.{info.name}")
