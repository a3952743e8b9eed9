"""Route: the shortest chain of convert passes from the source's form to a form the target accepts (``--via``
forces one in between). Converting between forms is itself registered (``Pass(kind="convert", to_form=...)``)."""

from __future__ import annotations

from collections import deque

from ..errors import BadInput
from ..plugins import registry
from ..records import Pass, Target


def _edges() -> dict[str, list[Pass]]:
    edges: dict[str, list[Pass]] = {}
    for p in registry().passes.values():
        if p.kind == "convert" and p.to_form:
            edges.setdefault(p.form, []).append(p)
    return edges


def _bfs(edges: dict[str, list[Pass]], start: str, goals: set[str]) -> list[Pass] | None:
    queue: deque[tuple[str, list[Pass]]] = deque([(start, [])])
    seen = {start}
    while queue:
        here, path = queue.popleft()
        if here in goals:
            return path
        for p in edges.get(here, []):
            if p.to_form not in seen:
                seen.add(p.to_form)
                queue.append((p.to_form, [*path, p]))
    return None


def find_route(form: str, target: Target, via: str | None = None) -> list[Pass]:
    edges = _edges()
    if via:
        first, second = _bfs(edges, form, {via}), _bfs(edges, via, set(target.accepts))
        route = None if first is None or second is None else first + second
    else:
        route = _bfs(edges, form, set(target.accepts))
    if route is None:
        raise BadInput(f"no route from a {form!r} model to target {target.name!r} (it accepts: "
                       f"{', '.join(target.accepts)}{'; via ' + via if via else ''}); is the importer/converter "
                       "installed?", stage="route")
    return route


def route_to(form: str, goal: str) -> list[Pass] | None:
    """The shortest chain of convert passes from ``form`` to ``goal`` (None: there is none)."""
    return _bfs(_edges(), form, {goal})
