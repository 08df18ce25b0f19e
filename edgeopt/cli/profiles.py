"""``edgeopt profiles``: list, show, validate and calibrate device profiles."""
from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from edgeopt.cli.common import DebugOpt, console, err_console, guard

profiles_app = typer.Typer(no_args_is_help=True, help="List and show device profiles.")

@profiles_app.command("list")
def profiles_list() -> None:
    """List the device profiles: the built-in ones and the user's (which shadow a built-in one of their name)."""
    from edgeopt.device_profiles import list_profiles, load_profile, profile_file

    for name in list_profiles():
        profile = guard(False, lambda n=name: load_profile(n))
        path, user = profile_file(name)
        console.print(f"{name:32s} {profile.description}", highlight=False)
        if user:
            shadows = (Path(__file__).parent.parent / "device_profiles" / f"{name}.toml").is_file()
            console.print(f"{'':32s} (user profile {path}{', shadows the built-in one of this name' if shadows else ''})",
                          highlight=False, soft_wrap=True)


@profiles_app.command("show")
def profiles_show(name: Annotated[str, typer.Argument(help="Profile name or path to a .toml.")],
                  as_json: Annotated[bool, typer.Option("--json", help="Every value, defaults included, as "
                                                                       "JSON (no comments).")] = False,
                  debug: DebugOpt = False) -> None:
    """Show one device profile: its TOML file with the comments that give each number's source."""
    from edgeopt.device_profiles import load_profile, profile_file

    profile = guard(debug, lambda: load_profile(name))
    if as_json:
        console.print_json(profile.model_dump_json())
        return
    path, user = (Path(name), False) if name.endswith(".toml") or "/" in name else profile_file(name)
    console.print(f"# {'user profile' if user else 'profile'} file: {path}", highlight=False, soft_wrap=True)
    console.print(path.read_text(encoding="utf-8"), highlight=False, markup=False, soft_wrap=True, end="")


@profiles_app.command("validate")
def profiles_validate(file: Annotated[str, typer.Argument(help="Path to a profile .toml (or a built-in name).")],
                      debug: DebugOpt = False) -> None:
    """Check a device profile; print its units, or the one-line ProfileError (file, key, bad value)."""
    from edgeopt.device_profiles import load_profile

    profile = guard(debug, lambda: load_profile(file))
    units = ", ".join(f"{key} ({unit.name})" for key, unit in profile.units().items())
    console.print(f"{file}: valid profile '{profile.name}'; compute units in fallback order: {units}",
                  highlight=False)


class CalibrateTarget(str, Enum):
    host = "host"


@profiles_app.command("calibrate")
def profiles_calibrate(
    target: Annotated[CalibrateTarget, typer.Argument(help="What to measure: host (this machine, LiteRT + "
                                                           "XNNPACK, 1 thread).")],
    out: Annotated[Path | None, typer.Option(help="Profile file to write (default: host.toml in your config "
                                                  "folder, which shadows the built-in host profile); a new file "
                                                  "starts from --template.")] = None,
    template: Annotated[Path | None, typer.Option(help="Profile a new --out file copies its other keys from "
                                                       "(default: the built-in host profile).")] = None,
    debug: DebugOpt = False,
) -> None:
    """Measure this machine's int8/fp32 MAC rates, bandwidth and per-op overhead; write them into a profile."""
    from edgeopt.workflows.calibrate_host import calibrate

    with err_console.status("calibrating host (LiteRT micro-benchmarks)"):
        result = guard(debug, lambda: calibrate(out=out, template=template))
    for key, value in result.numbers.performance().items():
        console.print(f"{key:30s} {value}", highlight=False)
    console.print(f"measured on {result.cpu}; written to {result.path}", highlight=False)
