"""``edgeconv targets``, ``plugins``, ``doctor``, ``devices``: what is installed, ready, broken, and the device profiles."""

from typing import Annotated, Optional

import typer

from .common import clean, console, emit_json, guard, safe
from .render import render_device


def targets(
    options: Annotated[bool, typer.Option("--options", help="List each target's options.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List targets: ready, missing (with the install hint) or broken."""
    from ..plugins import plugins, registry

    reg = registry()
    rows = []
    for name, t in sorted(reg.targets.items()):
        miss = t.missing()
        rows.append({
            "name": name, "title": t.title, "status": "missing" if miss else "ready",
            "hint": miss[0].hint if miss else None, "provider": t.dist, "precisions": list(t.precisions),
            "accepts": list(t.accepts), "suffix": t.suffix,
            "options": [{"name": o.name, "type": o.type.__name__, "default": o.default, "help": o.help} for o in t.options],
        })
    from ..records import KNOWN_TARGETS

    for name, (dist, title, hint) in sorted(KNOWN_TARGETS.items()):
        if name not in reg.targets and name not in reg.conflicts:
            rows.append({"name": name, "title": title, "status": "missing", "hint": hint,
                         "provider": f"{dist} (not installed)"})
    for name, who in sorted(reg.conflicts.items()):
        rows.append({"name": name, "status": "conflict", "hint": f"registered by {' and '.join(who)}", "provider": ", ".join(who)})
    for p in plugins():
        if p.broken:
            rows.append({"name": p.name, "status": "broken", "hint": f"{p.stage}: {p.error}", "provider": f"{p.dist} {p.version}"})
    if as_json:
        emit_json({"schema": "edgeconv.targets/1", "targets": rows})
        return
    # A plain table: rich costs ~100 ms to import, and this command must start fast.
    colour = {"ready": "green", "missing": "yellow", "broken": "red", "conflict": "red"}
    header = ("target", "status", "precisions", "accepts", "provider", "note")
    table = [header] + [
        (r["name"], r["status"], ",".join(r.get("precisions") or []), ",".join(r.get("accepts") or []),
         r.get("provider") or "", r.get("hint") or r.get("title") or "")
        for r in rows
    ]
    table = [tuple(clean(cell) for cell in row) for row in table]  # a plugin's names and hints are data
    widths = [max(len(row[i]) for row in table) for i in range(len(header) - 1)]
    for n, row in enumerate(table):
        cells = [cell.ljust(w) for cell, w in zip(row, widths)]
        if n:
            cells[1] = typer.style(cells[1], fg=colour[row[1]])
        typer.echo("  ".join([*cells, row[-1]]).rstrip())
    if options:
        for r in rows:
            for o in r.get("options") or []:
                typer.echo(clean(f"  {r['name']}: -O {o['name']}=<{o['type']}> (default {o['default']!r}) {o['help']}"))

def devices(
    name: Annotated[Optional[str], typer.Argument(help="A device: show its profile and the source of every fact.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List device profiles (`--device NAME` on convert), or show one with its sources."""
    with guard():
        from ..devices import SCHEMA, catalogue, get
        from ..plugins import registry

        reg = registry()

        def status(target: str) -> str:
            t = reg.targets.get(target)
            return "ready" if t is not None and not t.missing() else "missing"

        if name is not None:
            dev = get(name)
            if as_json:
                emit_json({"schema": SCHEMA, "device": {**dev.to_dict(), "target_status": status(dev.target)}})
                return
            render_device(dev, status(dev.target))
            return
        devs = list(catalogue().values())
    if as_json:
        emit_json({"schema": SCHEMA, "devices": [{**d.to_dict(), "target_status": status(d.target)}
                                                 for d in devs]})
        return
    from rich.table import Table

    table = Table(title="device profiles (edgeconv devices NAME: details and sources)", title_justify="left")
    for col in ("device", "target", "precisions"):
        table.add_column(col, no_wrap=True)
    table.add_column("options", overflow="fold")
    table.add_column("memory", overflow="fold", ratio=1)
    for d in devs:
        colour = "green" if status(d.target) == "ready" else "yellow"
        table.add_row(safe(d.name), f"[{colour}]{safe(d.target)}[/]", ",".join(d.precisions),
                      safe(" ".join(f"{k}={v}" for k, v in d.options.items())), safe(d.fact("memory") or "unknown"))
    console().print(table)

def plugins(
    all_: Annotated[bool, typer.Option("--all", help="Include built-in plugins.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List installed plugins, their versions and hooks, and broken ones with the error."""
    from ..plugins import plugins as list_plugins

    items = [p for p in list_plugins() if all_ or not p.builtin]
    data = [{"name": p.name, "distribution": p.dist, "version": p.version, "module": p.module,
             "builtin": p.builtin, "hooks": p.hooks, "broken": p.broken, "error": p.error, "stage": p.stage}
            for p in items]
    if as_json:
        emit_json(data)
        return
    if not data:
        typer.echo("no plugins installed (built-ins: edgeconv plugins --all)")
    for p in data:
        state = f"BROKEN at {p['stage']}: {p['error']}" if p["broken"] else ", ".join(p["hooks"])
        typer.echo(clean(f"{p['name']}  {p['distribution']} {p['version']}  {state}"))

def doctor(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Check the environment deeply: every target's toolchain, versions, CPU features."""
    import json

    with guard():
        from ..doctor import run_doctor

        info = run_doctor()
    if as_json:
        emit_json(info)
        return
    out = console()
    for k, v in info["host"].items():
        out.print(f"{safe(k)}: {safe(v)}")
    for name, t in info["targets"].items():
        colour = {"ready": "green", "missing": "yellow"}.get(t["status"], "red")
        out.print(f"[bold]{safe(name)}[/] [{colour}]{safe(t['status'])}[/] {safe(t.get('hint') or t.get('error') or '')}")
        if t.get("details"):
            out.print("  " + safe(json.dumps(t["details"], default=str)))
    for p in info["broken_plugins"]:
        out.print(f"[red]broken plugin[/] {safe(p)}")


def register(app: typer.Typer) -> None:
    app.command()(targets)
    app.command()(devices)
    app.command()(plugins)
    app.command()(doctor)
