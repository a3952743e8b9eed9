"""``edgeconv fleet status``: nodes, boards, toolchains, runtimes, and the matrix queue."""

from __future__ import annotations

from typing import Any

from . import fleet


def gather(cluster: str) -> dict[str, Any]:
    from .ray_backend import NAMESPACE, cluster_nodes, connect

    ray = fleet.import_ray()
    connected = connect(cluster)
    try:
        nodes = cluster_nodes()
        total, free = ray.cluster_resources(), ray.available_resources()
        actors = [a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
                  if a.get("namespace") == NAMESPACE]
        return {
            "schema": "edgeconv.fleet-status/1",
            "cluster": cluster,
            "nodes": [n.to_dict() for n in nodes],
            "resources": {k: {"total": v, "free": free.get(k, 0.0)} for k, v in sorted(total.items())
                          if k == "CPU" or k.startswith(("board:", "toolchain:"))},
            "boards": [{"name": b, "kind": k, "node_id": n.node_id, "host": n.host, "alive": n.alive,
                        "actor": any(a.endswith(f".{n.node_id[:12]}.{b}") for a in actors)}
                       for n in nodes for b, k in sorted(n.boards.items())],
            "queue": _queue(),
        }
    finally:
        if connected:
            ray.shutdown()


def _queue() -> dict[str, Any]:
    """Matrix cells (tasks ``edgeconv-cell ...`` and board runs) by state; needs the head's dashboard (state API)."""
    try:
        from ray.util.state import list_tasks

        tasks = list_tasks(limit=10_000, raise_on_missing_output=False, detail=False, timeout=10)
    except Exception as exc:  # no dashboard on the head, or an older head: say so instead of failing
        return {"available": False, "reason": f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}"}
    counts: dict[str, int] = {}
    for t in tasks:
        name = str(_field(t, "name") or "")
        if name.startswith("edgeconv-cell") or name == "BoardService.run":
            state = str(_field(t, "state") or "?")
            counts[state] = counts.get(state, 0) + 1
    return {"available": True, "cells_by_state": counts}


def _field(task: Any, name: str) -> Any:
    return task.get(name) if isinstance(task, dict) else getattr(task, name, None)


def render(info: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console(highlight=False)
    t = Table(title=f"fleet ({escape(info['cluster'])}): {len(info['nodes'])} node(s)", title_justify="left")
    for col in ("node", "host", "alive", "CPU", "boards", "toolchains", "runtimes"):
        t.add_column(col)
    for n in info["nodes"]:
        t.add_row(escape(n["node_id"][:12]) + (" (head)" if n["head"] else ""), escape(n["host"]),
                  "yes" if n["alive"] else "[red]no[/]", f"{n['resources'].get('CPU', 0):g}",
                  escape(", ".join(f"{b} ({k})" for b, k in n["boards"].items()) or "-"),
                  escape(", ".join(f"{k} {v}" for k, v in n["toolchains"].items()) or "-"),
                  escape(", ".join(f"{k} {v}" for k, v in n["runtimes"].items()) or "-"))
    console.print(t)
    for name, r in info["resources"].items():
        console.print(f"{escape(name)}: {r['free']:g} free of {r['total']:g}")
    q = info["queue"]
    if q.get("available"):
        text = ", ".join(f"{k.lower()} {v}" for k, v in sorted(q["cells_by_state"].items())) or "empty"
        console.print(f"matrix cells: {escape(text)}")
    else:
        console.print(f"matrix cells: unknown (the state API did not answer: {escape(q.get('reason', ''))})")
