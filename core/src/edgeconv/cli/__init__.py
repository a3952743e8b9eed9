"""The ``edgeconv`` command line, built in a factory after plugins have loaded.

Each command lives in a module of this package with a ``register(app)`` function; nothing heavy is imported until a
command runs, so ``edgeconv --help`` and ``edgeconv targets`` start as fast as Typer itself. The commands parse their
option groups once into the request the API takes (``edgeconv.request.ConversionRequest``).

Plugins add commands through the ``register_commands`` hook; a plugin whose hook raises (or exits, or prints on
stdout) is recorded as broken and every other command keeps working.
"""

import contextlib
import io
import os
import signal
import sys
from typing import Annotated

import typer

from .._version import __version__
from ..errors import EXIT_FAILED, EXIT_TOOLCHAIN
from .common import STATE, echo_err, error

COMMAND_MODULES = ("convert", "verify", "inspect", "info", "demo", "toolchain", "boards", "matrix", "debug")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"edgeconv {__version__}")
        raise typer.Exit(0)


def _main(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks.")] = False,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")] = False,
) -> None:
    if debug:
        STATE["debug"] = True


def _plugin_commands(app: typer.Typer) -> None:
    """Each plugin's ``register_commands`` on its own: one that raises, exits or interrupts is recorded as broken
    (``edgeconv plugins``), and what it prints goes to stderr, never into a ``--json`` document on stdout."""
    from ..plugins import pm, record_broken

    for impl in reversed(pm.hook.register_commands.get_hookimpls()):
        stray = io.StringIO()
        try:
            with contextlib.redirect_stdout(stray):
                impl.function(app=app)
        except (Exception, SystemExit, KeyboardInterrupt) as exc:  # noqa: BLE001 - a plugin's fault, not the user's
            record_broken(impl.plugin_name, "register_commands", exc)
        if stray.getvalue():
            echo_err(stray.getvalue().rstrip())


def make_app() -> typer.Typer:
    """Load plugins, then build the Typer app (plugins may add commands)."""
    import importlib

    from ..plugins import load_plugins

    load_plugins()
    app = typer.Typer(name="edgeconv", no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False,
                      rich_markup_mode=None,
                      help="Convert a trained model for an edge device, and prove it still computes the same answers, "
                           "fits and is fast enough.")
    app.callback()(_main)
    for name in COMMAND_MODULES:
        importlib.import_module(f"{__name__}.{name}").register(app)
    _plugin_commands(app)
    return app


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``edgeconv`` script."""

    def _term(signum, frame):  # SIGTERM unwinds like Ctrl-C: temporary output is removed
        STATE["terminated"] = True
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _term)
    if "--debug" in (argv if argv is not None else sys.argv[1:]) or os.environ.get("EDGECONV_DEBUG"):
        STATE["debug"] = True
    from ..quiet import route_library_logs

    route_library_logs(debug=STATE["debug"])
    try:
        app = make_app()
    except (Exception, SystemExit) as exc:  # never a traceback for a broken environment
        error(f"could not start: {type(exc).__name__}: {exc}")
        sys.exit(EXIT_TOOLCHAIN)
    sys.exit(_run(app, argv))


def _run(app: typer.Typer, argv: list[str] | None) -> int:
    """Run the app; a usage error (an unknown option, a missing argument, a value of the wrong type) is one line
    with exit 2, like every other error of edgeconv."""
    from typer.exceptions import TyperException
    from typer.main import get_command

    try:
        code = get_command(app).main(args=argv, prog_name="edgeconv", standalone_mode=False)
    except KeyboardInterrupt:
        error("interrupted; no output was written")
        return 130
    except TyperException as exc:  # click's usage errors (typer vendors click)
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        error(f"{message} (see edgeconv --help)")
        return int(getattr(exc, "exit_code", 2) or 2)
    return code if isinstance(code, int) else 0


__all__ = ["EXIT_FAILED", "main", "make_app"]
