"""``edgeconv inspect``: the IO contract, the operator histogram, per-target support, the suggested task check."""

from __future__ import annotations

from collections import Counter
from typing import Any

from .plugins import registry
from .records import load_ref


def inspect_model(source: Any, *, input_shapes: Any = None, source_form: str | None = None,
                  options: dict[str, Any] | None = None) -> dict[str, Any]:
    from .request import profiles
    from .stages.importing import load
    from .stages.routing import find_route

    model = load(source, profiles=profiles(input_shapes), source_form=source_form, options=options)
    out: dict[str, Any] = {
        "schema": "edgeconv.inspect/1",
        "source": str(source),
        "form": model.form,
        "io": model.io.to_dict(),
        "meta": model.meta,
    }
    proto = model.obj if model.form == "onnx" else None
    if proto is not None:
        ops = Counter((f"{n.domain}::" if n.domain not in ("", "ai.onnx") else "") + n.op_type for n in proto.graph.node)
        out["ops"] = dict(sorted(ops.items(), key=lambda kv: (-kv[1], kv[0])))
        out["parameters"] = int(sum(_numel(i) for i in proto.graph.initializer))
    support: dict[str, Any] = {}
    for name, tgt in sorted(registry().targets.items()):
        if tgt.missing():
            support[name] = {"status": "missing", "hint": tgt.missing()[0].hint}
            continue
        if tgt.precheck is None:
            support[name] = {"status": "unknown", "reason": "the target has no operator pre-check"}
            continue
        try:
            route = find_route(model.form, tgt)
        except Exception as exc:
            support[name] = {"status": "no-route", "reason": str(exc)}
            continue
        if route:
            support[name] = {"status": "unknown", "reason": f"checked after conversion via {route[-1].to_form}"}
            continue
        try:
            found = load_ref(tgt.precheck)(model, None)
        except Exception as exc:  # a target's pre-check failing must not hide the others
            support[name] = {"status": "error", "reason": f"{type(exc).__name__}: {exc}"}
            continue
        hard = [u for u in found if not u.fallback]
        support[name] = {
            "status": "supported" if not hard else "unsupported",
            "unsupported": [{"node": u.node, "op_type": u.op_type, "reason": u.reason} for u in hard],
            "fallback": [{"node": u.node, "op_type": u.op_type, "reason": u.reason} for u in found if u.fallback],
        }
    out["targets"] = support
    out["suggested_task"] = suggested_task(model.io)
    return out


def suggested_task(io: Any) -> dict[str, Any] | None:
    """The task check (``--task``) the outputs' shapes suggest, with the reason, and any other that fits; None when
    none fits (the per-output and per-slice comparison still apply)."""
    from .verification.comparators import suggest

    found = [s for s in suggest(io) if s.get("reason")]
    if not found:
        return None
    return {**found[0], "others": found[1:]}


def _numel(t) -> int:
    n = 1
    for d in t.dims:
        n *= d
    return n
