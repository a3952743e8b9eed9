"""The ``fleet`` command group: ``join`` (a host and its boards join a Ray cluster), ``status``, ``submit`` (CI)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer

from .common import guard
from .matrix_args import ClusterOpt, SpecArg


def join(
    head: Annotated[str, typer.Argument(help="The head's address, HOST:PORT (what `ray start --head` printed).",
                                        show_default=False)],
    boards: Annotated[Path | None, typer.Option("--boards", help="The boards attached to this host: a file in the "
                                                "boards inventory's format ([boards.NAME] kind = ...).")] = None,
    num_cpus: Annotated[int | None, typer.Option("--num-cpus", min=1, help="CPUs this host gives to the cluster "
                                                 "(default: all).")] = None,
    block: Annotated[bool, typer.Option("--block", help="Stay in the foreground until stopped (ray start --block)."
                                        )] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print what would be advertised and the ray start "
                                          "command; start nothing.")] = False,
) -> None:
    """Join a Ray cluster as a host that advertises its boards (board:<kind>) and toolchains as resources and labels."""
    with guard():
        from ..matrix import fleet

        found = fleet.read_boards(boards) if boards is not None else []
        toolchains, runtimes = fleet.host_toolchains(), fleet.host_runtimes()
        cpus = num_cpus or os.cpu_count() or 1
        resources, labels = fleet.advertisement(found, toolchains, runtimes, cpus)
        argv = fleet.join_argv(head, resources, labels, num_cpus=num_cpus, block=block)
        if dry_run:
            typer.echo(json.dumps({"resources": resources, "labels": labels, "argv": argv}, indent=2))
            return
        code = _run_ray_start(argv)
        if code != 0:
            from ..errors import ToolchainFailed

            raise ToolchainFailed(f"ray start exited with {code}", stage="fleet")


def _run_ray_start(argv: list[str]) -> int:
    """``ray start`` in the foreground of this command: an argument list (no shell), the caller's environment
    without PYTHON* variables, working in this host's matrix cache folder (never the caller's folder)."""
    import subprocess

    from ..matrix.store import node_cache
    from ..worker import child_env

    cwd = node_cache()
    cwd.mkdir(parents=True, exist_ok=True)
    return subprocess.run(argv, cwd=cwd, env=child_env(), shell=False, check=False).returncode  # noqa: S603


def status(
    cluster: ClusterOpt = "auto",
    as_json: Annotated[bool, typer.Option("--json", help="Print the status as JSON.")] = False,
) -> None:
    """The cluster's nodes, boards, toolchains and runtimes, and the matrix cells queued or running."""
    with guard():
        from ..matrix.fleet_status import gather, render

        info = gather(cluster or "auto")
        if as_json:
            typer.echo(json.dumps(info, indent=2, default=str))
        else:
            render(info)


def submit(
    spec: SpecArg,
    address: Annotated[str, typer.Option("--address", help="The head's dashboard (Job Submission API), e.g. "
                                         "http://HEAD:8265 (default: RAY_ADDRESS).", show_default=False)] = "",
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Write results.jsonl here (default: print "
                                                "the JSONL).")] = None,
    python: Annotated[str, typer.Option("--python", help="The head's Python that has edgeconv.")] = "python",
    timeout: Annotated[float, typer.Option("--timeout", min=1, help="Give up (and stop the job) after this many "
                                           "seconds.")] = 24 * 3600.0,
) -> None:
    """Submit a matrix as a Ray job (CI): the spec's folder is shipped; returns the JSONL and the worst exit code."""
    with guard("; the job was stopped"):
        from ..matrix.submit import submit_matrix

        code = submit_matrix(spec, address=address or os.environ.get("RAY_ADDRESS", ""), output=output,
                             python=python, timeout=timeout)
        raise typer.Exit(code)


def fleet_app() -> typer.Typer:
    app = typer.Typer(help="A Ray cluster of hosts and boards for the matrix (docs/fleet.md).", no_args_is_help=True)
    app.command("join")(join)
    app.command("status")(status)
    app.command("submit")(submit)
    return app
