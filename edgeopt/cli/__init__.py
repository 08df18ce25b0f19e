"""The command line: typer wiring only; every command parses options, calls the library once and renders
its result. One module per command group; this one assembles the ``edgeopt`` app from them."""
from __future__ import annotations

import typer

from edgeopt.cli.compare import compare, sweep
from edgeopt.cli.compress import compress
from edgeopt.cli.deploy import deploy
from edgeopt.cli.profiles import profiles_app
from edgeopt.cli.tools import convert, devices, emulate

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Optimize, quantize and deploy neural networks to edge devices, or emulate them.")
for command in (deploy, emulate, convert):
    app.command()(command)
app.add_typer(profiles_app, name="profiles")
for command in (compare, devices, compress, sweep):
    app.command()(command)

__all__ = ["app"]
