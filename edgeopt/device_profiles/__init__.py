"""Device profiles: TOML files (one per device) read with ``tomllib`` and validated into frozen models.

A profile is named by its name (``arm-cortex-a78-xnnpack``, the file's stem) or by the path of a
``.toml`` file. A name is looked up first in the user's profile folder (``user_profile_dir``: where
``profiles calibrate host`` writes this machine's figures), then among the built-in profiles of this
package: a user profile shadows the built-in one of the same name. Every problem with a profile becomes
one ``ProfileError`` line naming the file, the key and the bad value.
"""
from __future__ import annotations

import difflib
import re
import tomllib
from importlib import resources
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Union, cast, get_args, get_origin

from pydantic import BaseModel, ValidationError

from edgeopt.device_profiles.schema import DeviceProfile
from edgeopt.errors import ProfileError

__all__ = ["DeviceProfile", "list_profiles", "load_profile", "profile_file", "user_profile_dir"]

_SUFFIX = ".toml"


def user_profile_dir() -> Path:
    """The user's profile folder: ``profiles`` in edgeopt's config folder (``platformdirs``; on Linux
    ``$XDG_CONFIG_HOME/edgeopt/profiles``, by default ``~/.config/edgeopt/profiles``)."""
    from platformdirs import user_config_dir

    return Path(user_config_dir("edgeopt")) / "profiles"


def _builtin_profiles() -> list[str]:
    return sorted(
        entry.name.removesuffix(_SUFFIX)
        for entry in resources.files(__name__).iterdir()
        if entry.name.endswith(_SUFFIX)
    )


def _user_profiles() -> list[str]:
    folder = user_profile_dir()
    return sorted(p.stem for p in folder.glob(f"*{_SUFFIX}") if p.is_file()) if folder.is_dir() else []


def list_profiles() -> list[str]:
    """Names of the profiles found by name (the user's and the built-in ones), sorted."""
    return sorted({*_builtin_profiles(), *_user_profiles()})


def profile_file(name: str) -> tuple[Path, bool]:
    """The file a profile name resolves to, and whether it is the user's (shadowing any built-in one).

    Raises:
        ProfileError: no profile of that name, with the closest names.
    """
    user = user_profile_dir() / f"{name}{_SUFFIX}"
    if user.is_file():
        return user, True
    if name not in _builtin_profiles():
        known = list_profiles()
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.5)
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise ProfileError(f"unknown device profile '{name}'; {hint}known: {', '.join(known) or 'none'} "
                           "(or give the path of a .toml file)")
    return Path(str(resources.files(__name__).joinpath(name + _SUFFIX))), False


def load_profile(name_or_path: str) -> DeviceProfile:
    """Read and validate a device profile.

    Args:
        name_or_path: a profile name (see :func:`list_profiles`: the user's folder first, then the
            built-in ones), or the path of a ``.toml`` file (anything ending in ``.toml`` or containing a path separator is taken as a path).

    Returns:
        The validated, frozen profile.

    Raises:
        ProfileError: unknown name (with the closest one), unreadable file, invalid TOML, or a key that is missing, unknown or
            holds a bad value. The message is one line naming the file, the key and the value.
    """
    if name_or_path.endswith(_SUFFIX) or "/" in name_or_path or "\\" in name_or_path:
        path = Path(name_or_path)
        try:
            text = path.read_bytes().decode("utf-8")
        except FileNotFoundError:
            raise ProfileError(f"device profile file {path} does not exist") from None
        except (OSError, UnicodeDecodeError) as err:
            raise ProfileError(f"cannot read device profile {path}: {err}") from None
        return parse_profile(text, str(path))
    path, _ = profile_file(name_or_path)
    return parse_profile(path.read_text(encoding="utf-8"), str(path))


def parse_profile(text: str, source: str) -> DeviceProfile:
    """Validate the TOML ``text`` of a profile; ``source`` names its file in error messages.

    Raises:
        ProfileError: invalid TOML, or a key that is missing, unknown or holds a bad value.
    """
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ProfileError(f"{source}: invalid TOML: {_toml_error(err, text)}") from None
    try:
        return DeviceProfile.model_validate(data)
    except ValidationError as err:
        raise ProfileError(f"{source}: {_validation_error(err)}") from None


def _toml_error(err: tomllib.TOMLDecodeError, text: str) -> str:
    # Python 3.11's TOMLDecodeError carries the position only in its message: "... (at line 3, column 7)".
    message = str(err)
    match = re.search(r"\(at line (\d+), column \d+\)", message)
    if match is None:
        return message
    lines = text.splitlines()
    number = int(match.group(1))
    line = lines[number - 1].strip() if 0 < number <= len(lines) else ""
    return f"{message}: {_shorten(line)}" if line else message


def _validation_error(err: ValidationError) -> str:
    problems = err.errors(include_url=False)
    first = problems[0]
    loc = tuple(first["loc"])
    # A bad dict key is reported at (..., key, "[key]"): name the key itself.
    key = ".".join(str(part) for part in loc if part != "[key]") or "(top level)"
    if first["type"] == "missing":
        line = f"missing key {key}"
    elif first["type"] == "extra_forbidden":
        value = _shorten(repr(first["input"]))
        line = f"unknown key {key} = {value} (allowed here: {_allowed_keys(loc[:-1])})"
    else:
        line = f"{key} = {_shorten(repr(first['input']))}: {first['msg']}"
    if len(problems) > 1:
        line += f" (and {len(problems) - 1} more problem{'s' if len(problems) > 2 else ''})"
    return line


def _allowed_keys(section: tuple[Any, ...]) -> str:
    # Unknown keys are only reported inside models; the path to one steps through model fields, dict keys
    # and list indices (and X | None), so follow the annotations until the innermost model.
    annotation: Any = DeviceProfile
    for part in section:
        annotation = _unwrap(annotation)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            annotation = annotation.model_fields[str(part)].annotation
        else:  # dict[K, V] or list[V]: the step is a key or an index
            annotation = get_args(annotation)[-1]
    model = cast("type[BaseModel]", _unwrap(annotation))
    return ", ".join(model.model_fields)


def _unwrap(annotation: Any) -> Any:
    """``X | None`` → ``X``; ``Annotated[X, ...]`` → ``X``."""
    while get_origin(annotation) in (Union, UnionType, Annotated):
        annotation = next(a for a in get_args(annotation) if a is not type(None))
    return annotation


def _shorten(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
