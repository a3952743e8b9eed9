"""Task checks (``--task NAME``, ``register_comparators``): the chosen check decodes every output of both models
the way a deployment reads them, and its metrics are gated by the metric table like the per-output ones.

``task_options`` are the chosen check's options (``Comparator.options``) plus ``axis``: the slice axis of the
per-slice comparison, one int for every output or ``{output name: axis}``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import BadInput

if TYPE_CHECKING:
    from ..model import IOContract
    from ..records import Comparator

CORE_OPTIONS = ("axis",)
# The order ``edgeconv inspect`` suggests in: the more specific shape first.
PREFERENCE = ("detection", "segmentation", "ctc", "classification")


def comparators() -> dict[str, Comparator]:
    """Every registered task check by name."""
    from ..plugins import registry

    return registry().comparators


def resolve(task: str | None, options: dict[str, Any] | None) -> tuple[Comparator | None, dict[str, Any]]:
    """The chosen check and its options, checked (``--task`` / ``task_options``); ``(None, {...})`` without a
    task (``axis`` may still be given)."""
    from ..records import did_you_mean

    options = dict(options or {})
    found = comparators()
    comp = None
    if task is not None:
        comp = found.get(task)
        if comp is None:
            raise BadInput(f"--task {task!r} is not a registered task check (tasks: {', '.join(found) or 'none'})"
                           f"{did_you_mean(task, found)}", stage="options")
    known = {o.name: o for o in (comp.options if comp else ())}
    out: dict[str, Any] = {o.name: o.default for o in known.values()}
    for key, value in options.items():
        if key in CORE_OPTIONS:
            out[key] = _axis(value)
            continue
        if key not in known:
            names = ", ".join([*known, *CORE_OPTIONS])
            what = f"--task {task}" if task else "without --task, the only task option"
            raise BadInput(f"task option {key!r} is not known ({what}: {names}){did_you_mean(key, known)}",
                           stage="options")
        try:
            out[key] = known[key].parse(value, task or "")
        except BadInput:
            raise BadInput(f"task option {key}={value!r} for --task {task} must be {known[key].type.__name__}"
                           + (f" (one of {', '.join(map(str, known[key].choices))})" if known[key].choices else ""),
                           stage="options") from None
    return comp, out


def _axis(value: Any) -> int | dict[str, int]:
    try:
        if isinstance(value, dict):
            return {str(k): int(v) for k, v in value.items()}
        if isinstance(value, str) and ":" in value:  # "output0:1,mask:1" from the command line
            return {k.strip(): int(v) for k, _, v in (p.partition(":") for p in value.split(",") if p)}
        return int(value)
    except (TypeError, ValueError):
        raise BadInput(f"task option axis={value!r} must be an integer or NAME:AXIS pairs", stage="options") from None


def declared_axis(options: dict[str, Any], output: str) -> int | None:
    """The slice axis declared for ``output`` (task option ``axis``), or None."""
    axis = options.get("axis")
    if isinstance(axis, dict):
        return axis.get(output)
    return axis


def run(comp: Comparator, options: dict[str, Any], refs: dict[str, Any], outs: dict[str, Any], *, io: IOContract,
        labels: Any, thresholds: dict[str, float]) -> dict[str, Any]:
    """Run a task check and gate its metrics by the metric table: the ``task`` section of the report."""
    from ..records import load_ref
    from .metrics import evaluate, table

    given = {k: v for k, v in options.items() if k not in CORE_OPTIONS}
    res = load_ref(comp.compare)(refs, outs, io=io, labels=labels, options=given)
    rows = table()
    failures = list(res.get("failures") or [])
    gates: dict[str, float] = {}
    for name, value in (res.get("metrics") or {}).items():
        metric = rows.get(name)
        if metric is None:
            continue
        _, failure = evaluate(metric, value, thresholds)
        if name in thresholds:
            gates[name] = thresholds[name]
        if failure:
            failures.append(failure)
    section = {"name": comp.name, "title": comp.title, "options": given, **res, "gates": gates,
               "failures": failures, "pass": not failures}
    return section


def suggest(io: IOContract) -> list[dict[str, str]]:
    """Every task check whose ``suggest`` fits the model's outputs, the most specific first, each with its
    reason."""
    from ..records import load_ref

    found = comparators()
    order = [n for n in PREFERENCE if n in found] + [n for n in found if n not in PREFERENCE]
    out = []
    for name in order:
        comp = found[name]
        if comp.suggest is None:
            continue
        try:
            reason = load_ref(comp.suggest)(io)
        except Exception as exc:  # one plugin's guess must not break inspect
            reason = None
            out.append({"name": name, "error": f"{type(exc).__name__}: {exc}"})
        if reason:
            out.append({"name": name, "reason": reason})
    return out
