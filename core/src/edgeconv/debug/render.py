"""The ``debug layers`` document as text: one line per matched tensor in graph order, the first diverging layers."""

from __future__ import annotations

import re
from typing import Any

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def clean(text: Any, width: int | None = None) -> str:
    """A name from a model, safe for a terminal (control characters removed), cut to ``width``."""
    s = _CONTROL.sub("?", str(text))
    if width is not None and len(s) > width:
        s = s[: width - 1] + "…"
    return s


def _m(values: dict[str, Any] | None) -> str:
    if not values:
        return f"{'-':>9} {'-':>7} {'-':>9}"
    cos, sqnr, mx = (values.get(k) for k in ("cosine", "sqnr_db", "max_abs"))
    return (f"{cos:9.6f} " if cos is not None else f"{'-':>9} ") + \
           (f"{sqnr:7.1f} " if sqnr is not None else f"{'-':>7} ") + \
           (f"{mx:9.3g}" if mx is not None else f"{'-':>9}")


def text(doc: dict[str, Any], *, only_failing: bool = False) -> str:
    """The table of the module's doc, then the verdict lines."""
    iso = doc.get("isolated")
    first = doc.get("first_diverging") or {}
    marks: dict[str, list[str]] = {}
    for m in ("accumulated", "isolated"):
        if first.get(m):
            marks.setdefault(first[m]["tensor"], []).append(m)
    gates = ", ".join(f"{k} {v:g}" for k, v in (doc.get("gates") or {}).items())
    head = f"{'#':>4}  {'node':<28} {'op':<14} {'tensor':<28} {'acc cos':>9} {'acc SQNR':>7} {'acc max':>9}"
    if iso:
        head += f"  {'iso cos':>9} {'iso SQNR':>7} {'iso max':>9}"
    lines = [f"{doc.get('target')} artifact ({doc.get('form')}, {doc.get('precision')}) vs its source, layer by "
             f"layer: {doc.get('matched')} of {doc['reference']['tensors']} reference tensors matched on "
             f"{(doc.get('data') or {}).get('samples', '?')} sample(s); gates at {doc.get('precision')}: {gates}", head]
    for r in doc.get("layers") or []:
        bad = any(not (r.get(m) or {}).get("pass", True) for m in ("accumulated", "isolated"))
        if only_failing and not bad:
            continue
        line = (f"{r['index']:>4}  {clean(r['node'], 28):<28} {clean(r['op_type'], 14):<14} "
                f"{clean(r['tensor'], 28):<28} {_m(r.get('accumulated'))}")
        if iso:
            line += f"  {_m(r.get('isolated'))}"
        if r["tensor"] in marks:
            line += f"  <- first diverging ({', '.join(marks[r['tensor']])})"
        elif bad:
            line += "  !"
        lines.append(line)
    lines += verdict_lines(doc)
    return "\n".join(lines)


def verdict_lines(doc: dict[str, Any]) -> list[str]:
    first = doc.get("first_diverging") or {}
    out = []
    for mode, what in (("accumulated", "fed its own tensors"), ("isolated", "each layer fed the source's tensors")):
        if mode == "isolated" and not doc.get("isolated"):
            out.append("isolated: not offered by this runtime (it cannot feed one layer the source's tensors)")
            continue
        r = first.get(mode)
        if r is None:
            out.append(f"{mode} ({what}): no layer misses the gates")
            continue
        fused = f" (with {', '.join(clean(n) for n in r['fused'][:4])})" if r.get("fused") else ""
        out.append(f"FIRST DIVERGING LAYER ({mode}, {what}): node {clean(r['node'])!r} ({clean(r['op_type'])}){fused}"
                   f", tensor {clean(r['tensor'])!r}: {'; '.join(r['failures'])}")
    worst = doc.get("worst_isolated") or []
    if worst:
        out.append("largest own error (isolated): " + ", ".join(
            f"{clean(w['node'])} {w['sqnr_db']:.1f} dB" for w in worst[:5]))
    if doc.get("unmatched"):
        out.append(f"{len(doc['unmatched'])} reference tensor(s) have no counterpart in the artifact (e.g. "
                   f"{clean(doc['unmatched'][0])!r})")
    out += [f"note: {clean(n)}" for n in doc.get("notes") or []]
    out += [f"warning: {clean(w)}" for w in doc.get("warnings") or []]
    return out
