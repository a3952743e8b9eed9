"""The report's schema names, budgets, and the plain formatting both reports share (``edgeconv.cli.render`` prints
it in a terminal, ``edgeconv.html_report`` as a page)."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

from .errors import BadInput

SCHEMA = "edgeconv.report/1"
DEMO_SCHEMA = "edgeconv.demo/1"
MANIFEST_SCHEMA = "edgeconv.manifest/1"

_UNITS = {"": 1, "b": 1, "kb": 1000, "mb": 1000**2, "gb": 1000**3, "kib": 1024, "mib": 1024**2, "gib": 1024**3}


def parse_size(text: str | int | float) -> int:
    """``"25MB"``, ``"300KiB"``, ``"1.5GB"`` or a byte count."""
    if isinstance(text, (int, float)):
        return int(text)
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", text)
    if not m or m[2].lower() not in _UNITS:
        raise BadInput(f"--max-size {text!r} is not a size like 25MB, 300KiB or 1048576", stage="options")
    return int(float(m[1]) * _UNITS[m[2].lower()])


def parse_ms(text: str | int | float) -> float:
    """``"100ms"``, ``"0.1s"`` or a number of milliseconds."""
    if isinstance(text, (int, float)):
        return float(text)
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*(ms|s|us)?\s*", text)
    if not m:
        raise BadInput(f"--max-latency {text!r} is not a duration like 100ms or 0.1s", stage="options")
    return float(m[1]) * {"ms": 1.0, None: 1.0, "s": 1000.0, "us": 0.001}[m[2]]


def parse_pp(text: str | int | float) -> float:
    """An accuracy drop in percentage points: ``"1"``, ``"0.5pp"``, ``"1%"``."""
    if isinstance(text, (int, float)):
        return float(text)
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*(pp|%)?\s*", text)
    if not m:
        raise BadInput(f"--max-accuracy-drop {text!r} is not a number of percentage points like 0.5", stage="options")
    return float(m[1])


@dataclass
class Budgets:
    max_size: int | None = None  # bytes
    max_latency: float | None = None  # ms, compared with p50
    max_accuracy_drop: float | None = None  # percentage points

    @classmethod
    def parse(cls, max_size=None, max_latency=None, max_accuracy_drop=None) -> Budgets:
        return cls(
            parse_size(max_size) if max_size is not None else None,
            parse_ms(max_latency) if max_latency is not None else None,
            parse_pp(max_accuracy_drop) if max_accuracy_drop is not None else None,
        )

    def evaluate(self, report: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.max_size is not None:
            value = (report.get("artifact") or {}).get("size_bytes")
            out["size_bytes"] = _check(self.max_size, value, "the artifact's size")
        if self.max_latency is not None:
            value = (report.get("latency_ms") or {}).get("p50")
            out["latency_ms_p50"] = _check(self.max_latency, value, "latency (not measured)")
        if self.max_accuracy_drop is not None:
            acc = report.get("accuracy")
            if acc:
                out["accuracy_drop_pp"] = _check(self.max_accuracy_drop, acc["drop_pp"], "accuracy")
            else:
                # Without labels, the share of samples whose top-1 changed bounds the drop.
                tops = [f["topk_agreement"]["top1"] for f in report.get("fidelity") or [] if f.get("topk_agreement")]
                value = round((1 - min(tops)) * 100, 3) if tops else None
                entry = _check(self.max_accuracy_drop, value, "accuracy (no labels and no classifier output)")
                entry["proxy"] = "top-1 disagreement with the source (no labels given): an upper bound on the drop"
                out["accuracy_drop_pp"] = entry
        return out


def _check(limit: float, value: float | None, what: str) -> dict[str, Any]:
    if value is None:
        return {"limit": limit, "value": None, "pass": False, "reason": f"{what} was not measured"}
    return {"limit": limit, "value": value, "pass": bool(value <= limit)}


def human_size(n: int | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return str(n)


def auto_rows(auto: dict[str, Any]) -> list[list[str]]:
    """One row per ``--precision auto`` candidate: the numbers it was judged by, its verdict per budget."""
    rows = []
    for c in auto.get("candidates") or []:
        acc = c.get("accuracy") or {}
        fid = c.get("fidelity") or {}
        budgets = "; ".join(f"{k} {b['value']}<={b['limit']} {'ok' if b['pass'] else 'FAIL'}"
                            for k, b in (c.get("budgets") or {}).items())
        settings = c.get("best_settings")
        rows.append([
            ("* " if c["name"] == auto.get("winner") else "") + c["name"],
            human_size(c.get("size_bytes")),
            f"{acc['drop_pp']:+.2f} pp" if acc else "-",
            _fmt(fid.get("cosine"), ".5f"),
            _fmt(c.get("latency_ms_p50"), ".3f"),
            (", ".join(f"{k}={v}" for k, v in settings.items()) or "defaults") if settings is not None else "-",
            budgets or "-",
            "meets" if c.get("qualifies") else ("; ".join(c.get("failures") or []) or c.get("status") or "-"),
        ])
    return rows


AUTO_COLUMNS = ("candidate", "size", "acc. drop", "cosine", "p50 ms", "runner settings", "budgets", "verdict")


def _fmt(v: float | None, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def finite(doc: Any) -> Any:
    """``doc`` with every non-finite float (NaN, +-Infinity: a metric of a collapsed tensor, a vendor tool's "inf")
    replaced by None, so that the JSON written is JSON (Python's json module would write ``NaN``/``Infinity``)."""
    if isinstance(doc, float):
        return doc if math.isfinite(doc) else None
    if isinstance(doc, dict):
        return {k: finite(v) for k, v in doc.items()}
    if isinstance(doc, (list, tuple)):
        return [finite(v) for v in doc]
    return doc


def dumps(doc: Any, **kwargs: Any) -> str:
    """Strict JSON of a report, manifest or document: non-finite floats as null, anything else unknown as text."""
    return json.dumps(finite(doc), allow_nan=False, default=str, **kwargs)
