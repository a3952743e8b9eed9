"""The ``fleet`` command group (join, status, submit)."""

from __future__ import annotations

import typer


def fleet_app() -> typer.Typer:
    app = typer.Typer(help="A Ray cluster of hosts and boards for the matrix (docs/fleet.md).", no_args_is_help=True)
    return app
