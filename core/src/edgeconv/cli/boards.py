"""``edgeconv boards``: add, list, check and remove the boards artifacts can run on (docs/boards.md).

``register(app)`` adds the ``boards`` group to a Typer app (the CLI calls it). Nothing heavy at import: asyncssh is
imported when a board is reached (``check``, ``add --accept-new-host-key``).
"""

from __future__ import annotations

import functools
import json
from typing import Annotated, Any

import typer

from ..errors import BadInput
from ..places import inventory as inv
from .common import guard


def _guarded(fn: Any) -> Any:
    """A command wrapped in the CLI's one-line error guard."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with guard():
            return fn(*args, **kwargs)

    return wrapper


def _accept_key(board: inv.Board, fingerprint: str | None) -> str:
    """Fetch the board's host key, check it against ``fingerprint`` when given, write it to edgeconv's known_hosts."""
    from ..places.ssh import fetch_host_key, trust_host_key

    key = fetch_host_key(board)
    if key is None:
        raise BadInput(f"board {board.name!r} presented no host key", stage="boards")
    got = key.get_fingerprint("sha256")
    if fingerprint and fingerprint != got:
        raise BadInput(f"board {board.name!r} presents host key {got}, not the {fingerprint} you expected: refused",
                       stage="boards")
    path = trust_host_key(board, key)
    typer.echo(f"trusted host key of {board.address()}: {key.get_algorithm()} {got} (in {path})")
    return got


def add(
    name: Annotated[str, typer.Argument(help="A name for the board (letters, digits, _.-).")],
    url: Annotated[str, typer.Argument(help="ssh://[user@]host[:port]")],
    kind: Annotated[str, typer.Option("--kind", help=f"Board family: {', '.join(inv.KINDS)}.")] = "generic",
    python: Annotated[str, typer.Option("--python", help="The board's Python (a command name or absolute path).")]
    = "python3",
    key: Annotated[str | None, typer.Option("--key", help="Private key file on this host (default: the SSH agent "
                                                "and ~/.ssh/id_*). No passwords are stored.")] = None,
    cache: Annotated[str, typer.Option("--cache", help="Cache folder on the board.")] = "~/.cache/edgeconv-board",
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds to connect and log in.")] = 20.0,
    accept_new_host_key: Annotated[bool, typer.Option("--accept-new-host-key", help="Connect now and trust the host "
                                                      "key the board presents (check the fingerprint printed).")]
    = False,
    host_key_fingerprint: Annotated[str | None, typer.Option("--host-key-fingerprint", help="With "
                                    "--accept-new-host-key: accept only this key (SHA256:..., from ssh-keygen -lf on "
                                    "the board).")] = None,
) -> None:
    """Add a board to the inventory (no secrets stored: keys by path or the SSH agent)."""
    fields: dict[str, Any] = {"url": url, "kind": kind, "python": python, "cache": cache, "timeout": timeout}
    if key:
        fields["key"] = key
    board = inv.make_board(name, fields)
    entries = inv.raw_entries()
    if name in entries:
        raise BadInput(f"a board named {name!r} exists; edgeconv boards remove {name} first", file=inv.inventory_path(),
                       stage="boards")
    if host_key_fingerprint and not accept_new_host_key:
        raise BadInput("--host-key-fingerprint goes with --accept-new-host-key", stage="boards")
    if accept_new_host_key:
        _accept_key(board, host_key_fingerprint)
    entries[name] = inv.entry(board)
    path = inv.write_inventory(entries)
    typer.echo(f"added board {name} ({board.address()}, {board.kind}) to {path}")
    if not accept_new_host_key:
        from ..places.ssh import host_key_known

        if not host_key_known(board):
            typer.echo(f"its host key is not known yet: edgeconv boards check {name} --trust-host-key")


def list_boards(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List the boards of the inventory."""
    boards, problems = inv.read_inventory()
    rows = [{"name": b.name, "url": b.url, "kind": b.kind, "python": b.python, "key": b.key, "cache": b.cache}
            for b in boards.values()]
    if as_json:
        typer.echo(json.dumps({"inventory": str(inv.inventory_path()), "boards": rows, "problems": problems},
                              indent=2))
        return
    if not rows and not problems:
        typer.echo(f"no boards (inventory: {inv.inventory_path()}); add one: edgeconv boards add NAME ssh://user@host")
        return
    for r in rows:
        typer.echo(f"{r['name']}  {r['url']}  kind={r['kind']}  python={r['python']}"
                   + (f"  key={r['key']}" if r["key"] else ""))
    for name, why in problems.items():
        typer.echo(f"{name}  INVALID: {why}")


def check(
    name: Annotated[str, typer.Argument(help="The board's name.")],
    trust_host_key: Annotated[bool, typer.Option("--trust-host-key", help="If no host key is known for the board, "
                                                 "trust the one it presents (check the fingerprint printed).")]
    = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Reach the board and show what it has: Python, numpy, runtimes, CPU/NPU/GPU, memory, OS."""
    from ..places.ssh import AgentSession, host_key_known

    board = inv.get_board(name)
    if trust_host_key and not host_key_known(board):
        _accept_key(board, None)
    session = AgentSession(board, lock=False, timeout=120)
    hello = session.open()
    try:
        facts = session.request({"op": "probe"})[0]
    finally:
        session.close()
    facts = {k: v for k, v in facts.items() if k not in ("ok", "size")}
    facts.update(board=board.name, kind=board.kind, host=board.address(), cache=hello.get("cache"))
    if as_json:
        typer.echo(json.dumps(facts, indent=2))
        return
    _print_facts(facts)


def _print_facts(f: dict[str, Any]) -> None:
    mem = f.get("memory_bytes")
    lines = [
        f"board {f['board']} ({f['kind']}) at {f['host']}: reachable",
        f"  python: {f.get('python')} ({f.get('executable')})",
        f"  numpy: {f.get('numpy') or 'MISSING (pip install numpy on the board)'}",
        "  runtimes: " + (", ".join(f"{m} {r['version']}" for m, r in f.get("runtimes", {}).items()) or "none found"),
        f"  cpu: {f.get('cpu') or 'unknown'} x{f.get('cpus')} ({f.get('machine')})"
        + (f"; board: {f['board_model']}" if f.get("board_model") else ""),
        "  accelerators: " + (", ".join(f.get("accelerators") or []) or "none found"),
        f"  memory: {mem / 2**30:.1f} GiB" if mem else "  memory: unknown",
        f"  os: {f.get('os')} (kernel {f.get('kernel')})",
        f"  cache: {f.get('cache')}" + (f" (in use by agent pid {f['lock_holder']})" if f.get("lock_holder") else ""),
    ]
    typer.echo("\n".join(lines))


def remove(name: Annotated[str, typer.Argument(help="The board's name.")]) -> None:
    """Remove a board from the inventory (and its host key from edgeconv's known_hosts)."""
    from ..places.ssh import forget_host

    entries = inv.raw_entries()
    if name not in entries:
        inv.get_board(name)  # the one-line "no board named ..." with suggestions
    boards, _ = inv.read_inventory()
    board = boards.get(name)
    del entries[name]
    inv.write_inventory(entries)
    forgotten = 0
    if board is not None and not any(b.host == board.host and b.port == board.port
                                     for n, b in boards.items() if n != name):
        forgotten = forget_host(board)
    typer.echo(f"removed board {name}" + (f" and {forgotten} host key line(s)" if forgotten else ""))


def register(app: typer.Typer) -> None:
    """Add the ``boards`` command group to ``app``."""
    group = typer.Typer(name="boards", help="The boards artifacts can run on (--on NAME): add, list, check, remove.",
                        no_args_is_help=True)
    group.command("add")(_guarded(add))
    group.command("list")(_guarded(list_boards))
    group.command("check")(_guarded(check))
    group.command("remove")(_guarded(remove))
    app.add_typer(group, name="boards")
