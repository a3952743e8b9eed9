"""The ``matrix`` command and the ``fleet`` group, added to an app by ``register(app)`` (the CLI calls it).

Nothing heavy at import: Typer only. Ray, the conversion frameworks and rich load when a command runs.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer

from ..errors import EXIT_TOOLCHAIN, EdgeconvError

INTERRUPTED = 130


def _err(message: str) -> None:
    typer.echo(f"edgeconv: error: {message}", err=True)


@contextlib.contextmanager
def guard(what: str = "") -> Iterator[None]:
    """One-line errors with the documented exit codes; a traceback only with EDGECONV_DEBUG (the CLI's --debug)."""
    debug = bool(os.environ.get("EDGECONV_DEBUG"))
    try:
        yield
    except typer.Exit:
        raise
    except EdgeconvError as exc:
        if debug:
            import traceback

            traceback.print_exc()
        _err(exc.one_line())
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt:
        _err(f"interrupted{what}")
        raise typer.Exit(INTERRUPTED) from None
    except Exception as exc:
        if debug:
            import traceback

            traceback.print_exc()
        _err(f"internal error: {type(exc).__name__}: {' '.join(str(exc).split())[:300]} "
             "(set EDGECONV_DEBUG=1 for the traceback)")
        raise typer.Exit(EXIT_TOOLCHAIN) from None


SpecArg = Annotated[Path, typer.Argument(help="The matrix spec (YAML): models, targets, precisions, budgets, boards.",
                                         show_default=False)]
ClusterOpt = Annotated[str | None, typer.Option(
    "--cluster", help="Run on Ray: ray://HOST:10001 (Ray Client), auto (RAY_ADDRESS or the local cluster), local "
                      "(a Ray instance started for this run), or HOST:PORT (a cluster's GCS address).")]


def matrix(
    spec: SpecArg,
    output: Annotated[Path, typer.Option("-o", "--output", help="The output folder (results.jsonl, index.html, "
                                         "cells/).", show_default=False)],
    workers: Annotated[int | None, typer.Option("--workers", min=1, help="Local pool size (default: the number "
                                                   "of cores).")] = None,
    cluster: ClusterOpt = None,
    store: Annotated[Path | None, typer.Option("--store", help="On Ray: a folder every node mounts, for the "
                                                  "content-addressed store (default: a folder on the head).")] = None,
    allow_outside: Annotated[bool, typer.Option("--allow-outside", help="Let the spec name files outside its "
                                                "folder (absolute paths, ..).")] = False,
    fresh: Annotated[bool, typer.Option("--fresh", help="Ignore earlier results: run every cell.")] = False,
    rerun_failed: Annotated[bool, typer.Option("--rerun-failed", help="Run again the cells that failed or "
                                               "errored, even when nothing changed.")] = False,
    jsonl: Annotated[bool, typer.Option("--jsonl", help="Also print each cell's record to standard output as it "
                                        "finishes (one JSON per line).")] = False,
) -> None:
    """Run a conversion matrix: every model x target x precision (x board) as one conversion with its report."""
    with guard("; the cells that finished are in results.jsonl: run again to continue"):
        from .live import Progress
        from .runner import run_matrix
        from .spec import load_spec

        if workers is not None and cluster is not None:
            raise _bad("--workers is for the local pool; on Ray the cluster's resources decide")
        parsed = load_spec(spec, allow_outside=allow_outside)
        backend = make_backend(workers, cluster, store)
        progress = Progress(live=None if not jsonl else False)
        emit = (lambda rec: print(json.dumps(rec, default=str), flush=True)) if jsonl else None
        outcome = run_matrix(parsed, output, backend=backend, resume=not fresh, rerun_failed=rerun_failed,
                             progress=progress, on_record=emit)
        if not jsonl:
            _summary(outcome)
        raise typer.Exit(outcome.exit_code)


def _bad(text: str):
    from ..errors import BadInput

    return BadInput(text, stage="options")


def make_backend(workers: int | None, cluster: str | None, store: Path | None):
    if cluster is None:
        if store is not None:
            raise _bad("--store is for Ray (--cluster); the local pool writes into the output folder")
        from .local import LocalBackend

        return LocalBackend(workers)
    from .ray_backend import RayBackend

    return RayBackend(cluster, store=store)


def _summary(outcome) -> None:
    counts: dict[str, int] = {}
    for r in outcome.records:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    text = ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "no cells"
    typer.echo(f"{len(outcome.records)} cell(s): {text}; ran {outcome.ran}, kept {outcome.kept} unchanged; "
               f"exit {outcome.exit_code}")
    for s in outcome.skipped:
        typer.echo(f"not offered: {s['model']} {s['target']}/{s['precision']} ({s['reason']})")
    typer.echo(f"results: {outcome.out / 'results.jsonl'}")
    typer.echo(f"index: {outcome.out / 'index.html'}")


def register(app: typer.Typer) -> None:
    """Add ``matrix`` and the ``fleet`` group to ``app``."""
    from .fleet_commands import fleet_app

    app.command("matrix")(matrix)
    app.add_typer(fleet_app(), name="fleet")


def main(argv: list[str] | None = None) -> None:
    """``python -m edgeconv.matrix ...``: the commands without the rest of the CLI (the Ray job entry point)."""
    app = typer.Typer(add_completion=False, no_args_is_help=True, help="edgeconv matrix and fleet commands.")
    register(app)
    app(args=argv if argv is not None else sys.argv[1:], prog_name="edgeconv")
