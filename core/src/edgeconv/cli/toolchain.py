"""``edgeconv toolchain list | install NAME | remove NAME``: the isolated toolchain environments plugins declare
(``register_toolchains``), built only on this explicit command; see ``edgeconv.toolchain``."""

import json
from typing import Annotated, Optional

import typer

from .common import guard

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def _size(n: int | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def _lookup(name: str):
    from ..errors import BadInput
    from ..plugins import registry
    from ..records import did_you_mean

    reg = registry()
    if name in reg.toolchain_conflicts:
        raise BadInput(f"toolchain {name!r} is declared by more than one plugin: "
                       f"{' and '.join(reg.toolchain_conflicts[name])}; disable one with EDGECONV_DISABLE_PLUGINS",
                       stage="toolchain")
    tc = reg.toolchains.get(name)
    if tc is None:
        known = sorted(reg.toolchains)
        raise BadInput(f"no installed plugin declares a toolchain {name!r} (declared: {', '.join(known) or 'none'})"
                       f"{did_you_mean(name, known)}", stage="toolchain")
    return tc



def list_cmd(
    check: Annotated[bool, typer.Option("--check", help="Also run each ready environment's check.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """The declared environments: state (missing / ready / broken), Python, size on disk, versions."""
    with guard():
        from ..doctor import toolchain_states
        from ..toolchain import stale_folders, toolchains_dir

        states = toolchain_states(deep=check)
        stale = [str(p) for p in stale_folders()]
    if as_json:
        typer.echo(json.dumps({"schema": "edgeconv.toolchains/1", "folder": str(toolchains_dir()),
                               "toolchains": list(states.values()), "stale": stale}, indent=2, default=str))
        return
    if not states:
        typer.echo("no installed plugin declares a toolchain environment")
    colour = {"ready": "green", "missing": "yellow", "broken": "red"}
    for name, st in states.items():
        state = typer.style(st["state"], fg=colour.get(st["state"], "red"))
        where = " ".join(st["command"]) if st.get("source") == "setting" else st.get("path", "")
        versions = ", ".join(f"{k} {v}" for k, v in (st.get("versions") or {}).items() if v)
        typer.echo(f"{name}  {state}  python {st.get('python', '?')}  {_size(st.get('size_bytes'))}  "
                   f"{where}{'  ' + versions if versions else ''}")
        if st.get("reason") and st["state"] != "ready":
            typer.echo(f"  {st['reason']}" + (f" (hint: {st['hint']})" if st.get("hint") else ""))
    for path in stale:
        typer.echo(f"left over by an interrupted run (safe to delete): {path}")

def install_cmd(
    name: Annotated[str, typer.Argument(help="The toolchain to build (see `edgeconv toolchain list`).")],
    force: Annotated[bool, typer.Option("--force", help="Rebuild even when it is ready (replaces it atomically).")] = False,
    python: Annotated[Optional[str], typer.Option("--python", help="The base interpreter (default: found on PATH or in pyenv).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print what would run; build nothing.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Build the environment NAME in the per-user cache folder: pinned, recorded, atomic."""
    import sys

    with guard():
        from ..toolchain import install, plan

        tc = _lookup(name)
        if dry_run:
            p = plan(tc, python)
            if as_json:
                typer.echo(json.dumps(p.to_dict(), indent=2))
                return
            typer.echo(f"would build {tc.name} ({tc.title}) in {p.target} with Python {p.python_version} "
                       f"({p.python}); spec {tc.spec_hash()[:12]}")
            import shlex

            for n, (what, argv) in enumerate(p.steps, 1):
                shown = [a if "\n" not in a else f"<{a.count(chr(10))}-line script>" for a in argv]
                typer.echo(f"  {n}. {what}" + (f": {shlex.join(shown)}" if argv else ""))
            return
        show = not as_json and sys.stderr.isatty()
        if show:
            from rich.console import Console
            from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

            with Progress(SpinnerColumn(), TextColumn("[bold]{task.fields[step]}[/] {task.description}"),
                          TimeElapsedColumn(), console=Console(stderr=True), transient=True) as bar:
                task = bar.add_task("", step=f"toolchain {name}")

                def progress(msg: str) -> None:
                    if msg.startswith(("Collecting", "Downloading", "Building", "Installing", "Successfully")):
                        bar.update(task, description=msg)
                    else:
                        bar.console.print(f"[dim]{name}:[/] {msg}")
                        bar.update(task, step=msg[:60], description="")

                state = install(tc, python=python, force=force, progress=progress)
        else:
            state = install(tc, python=python, force=force,
                            progress=(lambda msg: None) if as_json else
                            (lambda msg: None if msg.startswith(("Collecting", "Downloading", "Building",
                                                                 "Installing", "Successfully"))
                             else typer.echo(f"{name}: {msg}", err=True)))
    if as_json:
        typer.echo(json.dumps(state, indent=2, default=str))
        return
    from ..toolchain import env_path

    if state.get("already"):
        typer.echo(f"{name} is already installed and ready in {env_path(name)} (rebuild: --force)")
        return
    typer.echo(f"{name} ready in {env_path(name)}: Python {state['python']['version']}, "
               f"{_size(state.get('size_bytes'))}, {len(state.get('packages', {}))} packages, "
               f"built in {state.get('build_seconds')} s")

def remove_cmd(
    name: Annotated[str, typer.Argument(help="The toolchain whose cache environment to delete.")],
) -> None:
    """Delete the environment NAME from the cache folder (a setting EDGECONV_TOOLCHAIN_<NAME> is left alone)."""
    with guard():
        from ..toolchain import env_path, remove

        _lookup(name)
        path = env_path(name)
        removed = remove(name)
    typer.echo(f"removed {path}" if removed else f"{name} is not installed ({path} does not exist)")


def register(app: typer.Typer) -> None:
    group = typer.Typer(help="Isolated toolchain environments that plugins declare (built only when you ask).",
                        no_args_is_help=True)
    group.command("list")(list_cmd)
    group.command("install")(install_cmd)
    group.command("remove")(remove_cmd)
    app.add_typer(group, name="toolchain")
