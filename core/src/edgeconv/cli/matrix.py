"""``edgeconv matrix``: a conversion matrix, locally or on Ray (``edgeconv.matrix``); ``register`` also adds the
``fleet`` group (``edgeconv.cli.fleet``).

Nothing heavy at import: Typer only. Ray, the conversion frameworks and rich load when a command runs.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from .common import guard
from .matrix_args import ClusterOpt, SpecArg  # noqa: E402


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
        from ..matrix.live import Progress
        from ..matrix.runner import run_matrix
        from ..matrix.spec import load_spec

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
        from ..matrix.local import LocalBackend

        return LocalBackend(workers)
    from ..matrix.ray_backend import RayBackend

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
    from .fleet import fleet_app

    app.command("matrix")(matrix)
    app.add_typer(fleet_app(), name="fleet")


def main(argv: list[str] | None = None) -> None:
    """``python -m edgeconv.matrix ...``: the commands without the rest of the CLI (the Ray job entry point)."""
    app = typer.Typer(add_completion=False, no_args_is_help=True, help="edgeconv matrix and fleet commands.")
    register(app)
    app(args=argv if argv is not None else sys.argv[1:], prog_name="edgeconv")
