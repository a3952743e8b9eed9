"""``OUT/index.html``: the matrix as one table, models x target/precision(/board), one cell per conversion.

Each cell shows the verdict, the artifact's size, latency p50, the accuracy drop (or the top-1 disagreement that
bounds it when no labels were given) and links to the cell's ``report.json`` (and ``report.html`` when present).
Everything that comes from a spec, a model or a report is escaped; links are relative paths inside OUT that were
built here (never taken from a record). No JavaScript, no external resource.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import html
import os
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import quote

from ..report import human_size

COLOURS = {"pass": "#1a7f37", "fail": "#cf222e", "error": "#cf222e", "lost": "#8250df", "not-run": "#9a6700"}

CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#1f2328}
table{border-collapse:collapse}th,td{border:1px solid #d0d7de;padding:.35em .6em;vertical-align:top}
th{background:#f6f8fa;text-align:left}.v{font-weight:600}.small{color:#59636e;font-size:12px}
td.na{background:#f6f8fa;color:#8c959f}
"""


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def summary(rec: dict[str, Any]) -> dict[str, Any]:
    """The numbers a table cell shows, from a record (tolerant of missing fields)."""
    report = rec.get("report") or {}
    acc = report.get("accuracy") or {}
    drop = acc.get("drop_pp")
    proxy = False
    if drop is None:
        b = (report.get("budgets") or {}).get("accuracy_drop_pp") or {}
        drop, proxy = b.get("value"), bool(b.get("proxy"))
    verdict = report.get("verdict") or {}
    return {
        "status": rec.get("status"),
        "exit_code": rec.get("exit_code"),
        "size": (report.get("artifact") or {}).get("size_bytes"),
        "p50": (report.get("latency_ms") or {}).get("p50"),
        "drop": drop,
        "drop_is_bound": proxy,
        "reason": rec.get("error") or verdict.get("reason"),
        "precision": report.get("precision"),
        "where": _where(rec.get("placement") or {}),
    }


def _where(p: dict[str, Any]) -> str:
    parts = [p.get("host"), (p.get("node_id") or "")[:8] or None, p.get("board") and f"board {p['board']}"]
    return " ".join(str(x) for x in parts if x)


def _cell_html(rec: dict[str, Any] | None, out: Path) -> str:
    if rec is None:
        return '<td class="na">not run yet</td>'
    s = summary(rec)
    colour = COLOURS.get(s["status"], "#59636e")
    lines = [f'<span class="v" style="color:{colour}">{_e(s["status"])}</span> <span class="small">exit '
             f'{_e(s["exit_code"])}</span>']
    if s["precision"] and rec.get("cell", {}).get("precision") == "auto":
        lines.append(f"auto &rarr; {_e(s['precision'])}")
    if s["size"] is not None:
        lines.append(f"size {_e(human_size(s['size']))}")
    if s["p50"] is not None:
        lines.append(f"p50 {s['p50']:.3f} ms")
    if s["drop"] is not None:
        lines.append(f"acc. drop {'&le; ' if s['drop_is_bound'] else ''}{float(s['drop']):+.2f} pp")
    if s["reason"] and s["status"] != "pass":
        lines.append(f'<span class="small">{_e(str(s["reason"])[:300])}</span>')
    if s["where"]:
        lines.append(f'<span class="small">ran on {_e(s["where"])}</span>')
    links = []
    folder = _folder(rec)
    if folder is not None:
        for name in ("report.json", "report.html"):
            if (out / folder / name).is_file():
                links.append(f'<a href="{quote(folder + "/" + name)}">{name}</a>')
    if links:
        lines.append(" &middot; ".join(links))
    return "<td>" + "<br>".join(lines) + "</td>"


def _folder(rec: dict[str, Any]) -> str | None:
    """The cell's folder, rebuilt from its coordinates (never a path read from the record)."""
    from .cells import Cell

    c = rec.get("cell") or {}
    if rec.get("output") is None or not all(isinstance(c.get(k), str) for k in ("model", "target", "precision")):
        return None
    board = c.get("board") or ""
    kind, _, value = board.partition("=")
    cell = Cell(model=c["model"], target=c["target"], precision=c["precision"], source="",
                board_kind=value if kind == "kind" else None, board_name=value if kind == "name" else None)
    return cell.folder


def render(records: list[dict[str, Any]], *, models: list[str], columns: list[str], title: str,
           out: Path, skipped: list[dict[str, str]] | None = None, backend: dict[str, Any] | None = None) -> str:
    by = {(r["cell"]["model"], _column(r)): r for r in records}
    head = "".join(f"<th>{_e(c)}</th>" for c in columns)
    rows = []
    for m in models:
        cells = "".join(_cell_html(by.get((m, c)), out) for c in columns)
        rows.append(f"<tr><th>{_e(m)}</th>{cells}</tr>")
    counts: dict[str, int] = {}
    for r in records:
        counts[r.get("status", "?")] = counts.get(r.get("status", "?"), 0) + 1
    worst = max((r.get("exit_code") or 0 for r in records), default=0)
    skipped_html = ""
    if skipped:
        items = "".join(f"<li>{_e(s['model'])} {_e(s['target'])}/{_e(s['precision'])}: {_e(s['reason'])}</li>"
                        for s in skipped)
        skipped_html = f"<h2>Not offered</h2><ul>{items}</ul>"
    when = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    ran = ", ".join(f"{_e(k)}={_e(v)}" for k, v in (backend or {}).items())
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">"
        f"<title>{_e(title)}</title><style>{CSS}</style></head><body>"
        f"<h1>{_e(title)}</h1>"
        f"<p>{len(records)} cell(s): {_e(', '.join(f'{k} {v}' for k, v in sorted(counts.items())))}; exit code "
        f"{_e(worst)} (the worst cell's). Written {_e(when)}; {ran}. One line per cell in "
        f"<a href=\"results.jsonl\">results.jsonl</a>.</p>"
        f"<table><tr><th>model</th>{head}</tr>{''.join(rows)}</table>{skipped_html}</body></html>\n"
    )


def _column(rec: dict[str, Any]) -> str:
    c = rec["cell"]
    return f"{c['target']}/{c['precision']}" + (f"@{c['board']}" if c.get("board") else "")


def write(path: Path, text: str) -> None:
    """Atomically: a reader never sees half a page."""
    fd, tmp = tempfile.mkstemp(prefix=".index-", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
