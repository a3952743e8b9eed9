"""Layer by layer: the metric table's cosine, SQNR and max-abs per matched tensor, and the first diverging layer.

The metrics are the fidelity contract's rows (``edgeconv.verification.metrics.table()``: the same functions that judge a
model's outputs), computed on every tensor the artifact's trace holds, over all samples. A layer *diverges* when a
gated metric misses its gate at the artifact's precision (the table's thresholds: int8 cosine >= 0.98 and SQNR >=
12 dB, fp32 cosine >= 0.9999 and SQNR >= 40 dB, ...); the **first diverging layer** is the first such tensor in the
reference's graph order, for the accumulated trace (the artifact fed its own tensors) and for the isolated trace
(each layer fed the reference's tensors: its own error only).
"""

from __future__ import annotations

from typing import Any

from .trace import Trace

LAYER_METRICS = ("cosine", "sqnr_db", "max_abs")  # computed per tensor, in this order
LAYER_GATES = ("cosine", "sqnr_db")  # the rows whose per-precision thresholds say "diverged"


def gates(precision: str, overrides: dict[str, float] | None = None) -> dict[str, float]:
    """The per-layer gates at ``precision``: the metric table's thresholds of ``LAYER_GATES`` (with overrides)."""
    from ..verification.metrics import thresholds_for

    limits = thresholds_for(precision, overrides)
    return {k: limits[k] for k in LAYER_GATES if k in limits}


def metrics(ref: Any, out: Any) -> dict[str, float | None]:
    """``LAYER_METRICS`` of one tensor (all samples), by the metric table's own functions."""
    from ..records import load_ref
    from ..verification.metrics import table

    rows = table()
    out_values: dict[str, float | None] = {}
    for name in LAYER_METRICS:
        metric = rows.get(name)
        if metric is None:
            continue
        value = load_ref(metric.compute)(ref, out)
        if isinstance(value, tuple):
            value = value[0]
        out_values[name] = None if value is None else float(value)
    return out_values


def judge(values: dict[str, float | None], limits: dict[str, float]) -> list[str]:
    """The failures of one tensor's metrics against the per-layer gates."""
    from ..verification.metrics import table

    rows = table()
    failures = []
    for name, limit in limits.items():
        value = values.get(name)
        metric = rows.get(name)
        if value is None or metric is None or metric.passes(value, limit):
            continue
        failures.append(f"{metric.title} {format(value, metric.format)} {'<' if metric.better == 'higher' else '>'} "
                        f"{limit:g}")
    return failures


def compare(reference: Trace, accumulated: Trace | None, isolated: Trace | None,
            limits: dict[str, float]) -> list[dict[str, Any]]:
    """One row per reference tensor the artifact exposed, in graph order: accumulated and isolated metrics."""
    rows = []
    for index, name in enumerate(reference.order):
        traced = [(mode, t) for mode, t in (("accumulated", accumulated), ("isolated", isolated))
                  if t is not None and name in t.tensors]
        if not traced:
            continue
        ref = reference.stacked(name)
        info = reference.info.get(name, {})
        art = next(t for _, t in traced).info.get(name, {}).get("artifact") or {}
        row: dict[str, Any] = {"index": index, "tensor": name, "node": info.get("node") or "",
                               "op_type": info.get("op_type") or "", "shape": list(ref.shape[1:]),
                               "artifact": {k: v for k, v in art.items() if k in ("name", "op", "fused", "layout")}}
        for mode, t in traced:
            values = metrics(ref, t.stacked(name))
            failures = judge(values, limits)
            row[mode] = {**values, "pass": not failures, "failures": failures}
        rows.append(row)
    return rows


def first_diverging(rows: list[dict[str, Any]], mode: str) -> dict[str, Any] | None:
    """The first row (graph order) whose ``mode`` metrics miss a gate."""
    return next((r for r in rows if mode in r and not r[mode]["pass"]), None)


def worst(rows: list[dict[str, Any]], mode: str, n: int = 10) -> list[dict[str, Any]]:
    """The ``n`` rows of lowest ``mode`` SQNR (ties: lowest cosine): where the precision went."""
    have = [r for r in rows if mode in r and r[mode].get("sqnr_db") is not None]
    return sorted(have, key=lambda r: (r[mode]["sqnr_db"], r[mode].get("cosine") or 0.0))[:n]
