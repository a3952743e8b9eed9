"""The HTML report: one report (``edgeconv.report/1``) or a demo run (``edgeconv.demo/1``) as
one self-contained page.

The page holds the summary verdict and budgets, the route and passes, per-output fidelity,
a latency distribution per variant, size / latency / accuracy side by side across variants,
where everything ran, and the manifest. It loads nothing from anywhere: the CSS is inline and
the plots are matplotlib SVGs embedded as ``data:`` URIs in ``<img>`` tags. There is no
JavaScript at all. Why matplotlib SVG rather than plotly: plotly's inline JavaScript alone is
~4 MB per page, against ~100-300 KB for this whole page; an ``<img>`` SVG cannot run code or
clash with the page's element ids; the page prints, works with scripts disabled and in CI
artifact viewers. Every number a plot shows is also in a table next to it.

matplotlib is imported only while plots are drawn (``edgeconv[report]``); this module imports
the standard library only, so the CLI can name it without slowing its start-up.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import json
from pathlib import Path
from typing import Any

from ._version import __version__
from .errors import BadInput, ToolchainMissing
from .report import DEMO_SCHEMA, MANIFEST_SCHEMA, SCHEMA, human_size

HINT = 'pip install "edgeconv[report]" (or pip install matplotlib)'
LAYERS_SCHEMA = "edgeconv.layers/1"  # edgeconv debug layers (edgeconv.debug.layers.SCHEMA)
MANIFEST_LIMIT = 200_000  # characters of a manifest shown in the page

_STATUS_COLOUR = {"pass": "#1a7f37", "fail": "#cf222e", "not-run": "#9a6700", "error": "#cf222e"}


# -- input --------------------------------------------------------------------------------
def require_plotting() -> None:
    """Raise ``ToolchainMissing`` (exit 3, with the install hint) when matplotlib is absent.

    A cheap check (no import): the CLI calls it before a conversion given ``--report``.
    """
    import importlib.util

    if importlib.util.find_spec("matplotlib") is None:
        raise ToolchainMissing("the HTML report needs matplotlib, which is not installed", stage="report", hint=HINT)


def load_document(path: str | Path) -> dict[str, Any]:
    """Read a report: a ``report.json``, the output of ``--json``, ``edgeconv demo --json``, an
    output folder holding ``report.json``, or ``-`` for standard input."""
    import sys

    if str(path) == "-":
        text, where = sys.stdin.read(), "<stdin>"
    else:
        p = Path(path)
        if p.is_dir():
            p = p / "report.json"
        where = str(p)
        try:
            text = p.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise BadInput("no such file", file=where, stage="report") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise BadInput(f"cannot read the report ({exc})", file=where, stage="report") from None
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise BadInput(f"not JSON ({exc})", file=where, stage="report") from None
    check_document(doc, where)
    return doc


def check_document(doc: Any, where: str = "<report>") -> None:
    """A report or a demo document, with the fields the page needs."""
    schema = doc.get("schema") if isinstance(doc, dict) else None
    if schema == LAYERS_SCHEMA:
        if not isinstance(doc.get("layers"), list) or not isinstance(doc.get("first_diverging"), dict):
            raise BadInput("not an edgeconv layers document (no 'layers' or 'first_diverging')", file=where,
                           stage="report")
        return
    if schema == SCHEMA:
        reports = [doc]
    elif schema == DEMO_SCHEMA and isinstance(doc.get("results"), list):
        reports = doc["results"]
    else:
        raise BadInput(f"not an edgeconv report (schema {schema!r}; expected {SCHEMA!r}, {DEMO_SCHEMA!r} or "
                       f"{LAYERS_SCHEMA!r})",
                       file=where, stage="report")
    for n, r in enumerate(reports):
        if not isinstance(r, dict) or not isinstance(r.get("verdict"), dict) or "target" not in r:
            raise BadInput(f"result {n} is not a report (no 'target' or 'verdict')", file=where, stage="report")


def variants(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """The reports a document holds: one for a report, every result for a demo run."""
    return [doc] if doc.get("schema") == SCHEMA else list(doc["results"])


# -- output -------------------------------------------------------------------------------
def write_html(doc: dict[str, Any], out: str | Path, *, force: bool = False, inputs: Any = ()) -> Path:
    """Render ``doc`` and write the page atomically, never over an existing file without ``force`` or over an
    input (``edgeconv.output.write_file``). A report whose fields are not what edgeconv writes is bad input."""
    from .output import write_file

    try:
        page = render_html(doc)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        raise BadInput(f"not a well-formed edgeconv report ({type(exc).__name__}: {' '.join(str(exc).split())[:120]})",
                       file=str(out), stage="report") from None
    return write_file(Path(out), page, force=force, inputs=tuple(inputs), what="the HTML report")


def render_html(doc: dict[str, Any]) -> str:
    """The whole page for a report or a demo document, as a string."""
    check_document(doc)
    require_plotting()
    if doc.get("schema") == LAYERS_SCHEMA:
        return _layers_page(doc)
    items = variants(doc)
    single = doc.get("schema") == SCHEMA
    status = _overall(items)
    title = _title(items[0]) if single else f"edgeconv demo: {len(items)} conversions"
    parts = [
        f'<header><h1>{_e(title)}</h1>{_badge(status)}'
        f'<p class="meta">edgeconv report · rendered {_dt.datetime.now(_dt.timezone.utc):%Y-%m-%d %H:%M UTC} '
        f'by edgeconv {_e(__version__)}{" · run " + _e(items[0]["created"]) if single and items[0].get("created") else ""}</p>'
        "</header>",
        _summary_single(items[0]) if single else _summary_many(items),
        _auto_section(items[0]) if single and items[0].get("auto") else "",
        _layers_section(items[0]["layers"]) if single and isinstance(items[0].get("layers"), dict) else "",
        _comparison(items),
        _latency_section(items),
    ]
    if single:
        parts.append(_details(items[0], open_=True))
    else:
        parts.append('<section><h2 id="variants">Each conversion</h2>')
        for n, r in enumerate(items):
            parts.append(f'<details class="variant" id="v{n}"><summary>{_e(_label(r))} {_badge(_status(r))}</summary>'
                         f"{_details(r)}</details>")
        parts.append("</section>")
    raw = json.dumps(doc, indent=1, default=str)
    parts.append(f'<section><details><summary>The JSON document ({len(raw):,} characters)</summary>'
                 f"<pre>{_e(raw)}</pre></details></section>")
    return _PAGE.format(title=_e(title), css=_CSS, body="\n".join(parts))


# -- helpers ------------------------------------------------------------------------------
def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _status(r: dict[str, Any]) -> str:
    return str((r.get("verdict") or {}).get("status") or "?")


def _overall(items: list[dict[str, Any]]) -> str:
    found = {_status(r) for r in items}
    for s in ("error", "fail", "not-run", "pass"):
        if s in found:
            return s
    return "?"


def _badge(status: str) -> str:
    colour = _STATUS_COLOUR.get(status, "#57606a")
    return f'<span class="badge" style="background:{colour}">{_e(status.upper())}</span>'


def _label(r: dict[str, Any]) -> str:
    return f"{r.get('target', '?')} {r.get('precision', '')}".strip()


def _title(r: dict[str, Any]) -> str:
    src = Path(str((r.get("source") or {}).get("path") or "model")).name
    return f"{src} → {_label(r)}"


def _num(v: Any, spec: str = ".4g", suffix: str = "") -> str:
    if v is None or isinstance(v, bool) or not isinstance(v, (int, float)):
        return "–" if v is None else _e(v)
    return f"{format(v, spec)}{suffix}"


def _pct(v: Any) -> str:
    return "–" if not isinstance(v, (int, float)) else f"{v * 100:.2f} %"


def _yes(ok: Any) -> str:
    if ok is None:
        return "–"
    return '<span class="ok">yes</span>' if ok else '<span class="bad">no</span>'


def _table(header: list[str], rows: list[list[str]], cls: str = "") -> str:
    """Cells are HTML already (escape with ``_e`` before)."""
    head = "".join(f"<th>{h}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _kv(data: dict[str, Any] | None) -> str:
    if not data:
        return '<p class="none">none</p>'
    rows = [[_e(k), f"<code>{_e(v if isinstance(v, str) else json.dumps(v, default=str))}</code>"]
            for k, v in data.items()]
    return _table(["", ""], rows, "kv")


def _accuracy_value(r: dict[str, Any]) -> tuple[float | None, str]:
    """The artifact's accuracy (labels), else its top-1 agreement with the source."""
    acc = r.get("accuracy")
    if acc and isinstance(acc.get("artifact"), (int, float)):
        return acc["artifact"] * 100, "accuracy"
    tops = [f["topk_agreement"]["top1"] for f in r.get("fidelity") or [] if f.get("topk_agreement")]
    return (min(tops) * 100, "top-1 agreement") if tops else (None, "")


# -- summary ------------------------------------------------------------------------------
def _verdict_block(r: dict[str, Any]) -> str:
    v = r.get("verdict") or {}
    out = f'<p class="verdict">{_badge(_status(r))} '
    out += _e(v.get("reason")) if v.get("reason") else "every output within its thresholds and every budget met"
    if v.get("exit_code") is not None:
        out += f' <span class="muted">(exit code {_e(v["exit_code"])})</span>'
    out += "</p>"
    failures = v.get("failures") or []
    if len(failures) > 1:
        out += "<ul>" + "".join(f"<li>{_e(f)}</li>" for f in failures) + "</ul>"
    return out


def _budgets(r: dict[str, Any]) -> str:
    budgets = r.get("budgets") or {}
    if not budgets:
        return '<p class="none">No budgets were set (<code>--max-size</code>, <code>--max-latency</code>, <code>--max-accuracy-drop</code>).</p>'
    units = {"size_bytes": " B", "latency_ms_p50": " ms", "accuracy_drop_pp": " pp"}
    rows = []
    for name, b in budgets.items():
        note = b.get("proxy") or b.get("reason") or ""
        rows.append([_e(name), _num(b.get("value"), ".6g", units.get(name, "")), "≤ " + _num(b.get("limit"), ".6g", units.get(name, "")),
                     _yes(b.get("pass")), _e(note)])
    return _table(["budget", "value", "limit", "pass", "note"], rows)


def _summary_single(r: dict[str, Any]) -> str:
    src, art = r.get("source") or {}, r.get("artifact") or {}
    lat, src_lat = r.get("latency_ms") or {}, r.get("source_latency_ms") or {}
    acc = r.get("accuracy") or {}
    size_ratio = (art["size_bytes"] / src["size_bytes"]) if art.get("size_bytes") and src.get("size_bytes") else None
    lat_ratio = (lat["p50"] / src_lat["p50"]) if lat.get("p50") and src_lat.get("p50") else None
    rows = [
        ["size", _e(human_size(src.get("size_bytes"))), _e(human_size(art.get("size_bytes"))),
         f"{size_ratio:.2f}×" if size_ratio else "–"],
        ["latency p50", _num(src_lat.get("p50"), ".4g", " ms"), _num(lat.get("p50"), ".4g", " ms"),
         f"{lat_ratio:.2f}×" if lat_ratio else "–"],
    ]
    if acc:
        rows.append(["accuracy (top-1)", _pct(acc.get("source")), _pct(acc.get("artifact")),
                     f"drop {_num(acc.get('drop_pp'), '+.2f', ' pp')}"])
    if r.get("peak_rss_bytes"):
        rows.append(["peak RSS", "", _e(human_size(r["peak_rss_bytes"])),
                     f"model {_e(human_size((r.get('memory') or {}).get('model_rss_bytes')))}"])
    return (
        '<section><h2 id="summary">Summary</h2>'
        f"{_verdict_block(r)}"
        f'<p><b>{_e(src.get("path"))}</b> ({_e(src.get("form"))}) → <b>{_e(r.get("target"))}</b> '
        f'{_e(r.get("precision"))}, route {_route(r)}</p>'
        f'<p>artifact: <code>{_e(art.get("path"))}</code></p>'
        + _table(["", "source", "artifact", "ratio"], rows, "summary")
        + "<h3>Budgets</h3>" + _budgets(r)
        + _warnings(r)
        + "</section>"
    )


def _summary_many(items: list[dict[str, Any]]) -> str:
    rows = []
    for n, r in enumerate(items):
        art, lat, acc = r.get("artifact") or {}, r.get("latency_ms") or {}, r.get("accuracy") or {}
        src_size = (r.get("source") or {}).get("size_bytes")
        ratio = f"{art['size_bytes'] / src_size:.2f}×" if art.get("size_bytes") and src_size else "–"
        failed = [k for k, b in (r.get("budgets") or {}).items() if not b.get("pass")]
        rows.append([
            f'<a href="#v{n}">{_e(r.get("target"))}</a>', _e(r.get("precision")), _badge(_status(r)),
            _e(human_size(art.get("size_bytes"))) if art else "–", ratio, _num(lat.get("p50"), ".4g", " ms"),
            _pct(acc.get("artifact")) if acc else "–", _num(acc.get("drop_pp"), "+.2f", " pp") if acc else "–",
            (f"{len(r.get('budgets') or {}) - len(failed)}/{len(r.get('budgets') or {})} met" if r.get("budgets") else "none"),
            _e((r.get("verdict") or {}).get("reason") or ""),
        ])
    src = next((r.get("source") for r in items if r.get("source")), None) or {}
    head = f'<p>source: <b>{_e(src.get("path"))}</b> ({_e(src.get("form"))}, {_e(human_size(src.get("size_bytes")))})</p>' if src else ""
    return ('<section><h2 id="summary">Summary</h2>' + head
            + _table(["target", "precision", "verdict", "size", "vs source", "latency p50", "accuracy", "drop",
                      "budgets", "reason"], rows, "summary")
            + "</section>")


def _auto_section(r: dict[str, Any]) -> str:
    """``--precision auto``: every candidate, its verdict per budget, and why the winner won."""
    from .report import AUTO_COLUMNS, auto_rows

    auto = r["auto"]
    rows = [[_e(x) for x in row] for row in auto_rows(auto)]
    sens = auto.get("sensitivity") or {}
    ranked = "".join(f"<li>{_e(x['node'])} ({_e(x['op_type'])}): {x['sqnr_db']:.1f} dB</li>"
                     for x in (sens.get("ranked") or [])[:10])
    by = sens.get("ranked_by") or "output SQNR with each layer alone in int8"
    extra = (f"<h3>Sensitive layers</h3><p>ranked by {_e(by)}:</p><ol>{ranked}</ol>"
             f"<p>kept in float: <b>{_e(', '.join(sens.get('keep_float') or []) or 'none found')}</b> after "
             f"{len(sens.get('trials') or [])} trial build(s)</p>") if sens else ""
    notes = "".join(f"<li>{_e(n)}</li>" for n in auto.get("notes") or [])
    return ('<section><h2 id="auto">--precision auto</h2>'
            f"<p><b>winner:</b> {_e(auto.get('why'))}</p>"
            f"<p>accuracy budget {_e(auto.get('accuracy_budget_pp'))} pp ({_e(auto.get('accuracy_budget_source'))})</p>"
            + _table(list(AUTO_COLUMNS), rows, "summary") + extra + (f"<ul>{notes}</ul>" if notes else "")
            + "</section>")


def _route(r: dict[str, Any]) -> str:
    forms = r.get("route") or []
    return " → ".join(f"<code>{_e(f)}</code>" for f in forms) or "–"


def _warnings(r: dict[str, Any]) -> str:
    ws = r.get("warnings") or []
    if not ws:
        return ""
    return "<h3>Warnings</h3><ul class=\"warn\">" + "".join(f"<li>{_e(w)}</li>" for w in ws) + "</ul>"


# -- plots --------------------------------------------------------------------------------
def _svg_img(fig: Any, alt: str) -> str:
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    return f'<img class="plot" alt="{_e(alt)}" src="data:image/svg+xml;base64,{data}">'


def _rc() -> Any:
    import matplotlib

    return matplotlib.rc_context({
        "svg.fonttype": "path",  # glyphs as paths: the page needs no font
        "svg.hashsalt": "edgeconv",  # reproducible ids
        "font.size": 9,
        "axes.spines.top": False,
        "axes.spines.right": False,
        "axes.grid": True,
        "grid.alpha": 0.3,
    })


def _plain(text: str) -> str:
    """No mathtext: a ``$`` in a name is a dollar sign."""
    return text.replace("$", r"\$")


def _comparison(items: list[dict[str, Any]]) -> str:
    """Size, latency p50 and accuracy side by side: the source, then every variant."""
    rows: list[tuple[str, float | None, float | None, float | None, str]] = []
    first = next((r for r in items if r.get("source")), None)
    if first:
        src = first["source"]
        acc = (first.get("accuracy") or {}).get("source")
        rows.append((f"source ({src.get('form', '?')})", src.get("size_bytes"),
                     (first.get("source_latency_ms") or {}).get("p50"), acc * 100 if isinstance(acc, (int, float)) else None,
                     "source"))
    metric = "accuracy"
    for r in items:
        value, what = _accuracy_value(r)
        metric = what or metric
        rows.append((_label(r), (r.get("artifact") or {}).get("size_bytes"), (r.get("latency_ms") or {}).get("p50"),
                     value, _status(r)))
    if not any(v is not None for row in rows[1 if first else 0:] for v in row[1:4]):
        return '<section><h2 id="comparison">Size, latency and accuracy</h2><p class="none">Nothing was measured.</p></section>'
    budgets: dict[str, float] = {}
    for r in items:
        for k, b in (r.get("budgets") or {}).items():
            if isinstance(b.get("limit"), (int, float)):
                budgets.setdefault(k, b["limit"])

    from matplotlib.figure import Figure

    with _rc():
        n = len(rows)
        fig = Figure(figsize=(10, 0.9 + 0.34 * n))
        axes = fig.subplots(1, 3, sharey=True)
        labels = [_plain(row[0]) for row in rows]
        ys = list(range(n))
        sizes = [row[1] for row in rows]
        scale, unit = _size_unit([s for s in sizes if s])
        panels = [
            (axes[0], [s / scale if s else None for s in sizes], f"size ({unit})", ".3g",
             budgets.get("size_bytes", 0) / scale if "size_bytes" in budgets else None),
            (axes[1], [row[2] for row in rows], "latency p50 (ms)", ".3g", budgets.get("latency_ms_p50")),
            (axes[2], [row[3] for row in rows], f"{metric} (%)", ".2f", None),
        ]
        for ax, values, xlabel, spec, limit in panels:
            colours = [_STATUS_COLOUR.get(row[4], "#8c959f") for row in rows]
            ax.barh(ys, [v or 0 for v in values], color=colours, alpha=0.85, height=0.6)
            top = max((v for v in values if v), default=1)
            for y, v in zip(ys, values, strict=True):
                if v is None:  # not measured: a dash at the axis' left edge
                    ax.text(0.01, y, "–", va="center", fontsize=8, transform=ax.get_yaxis_transform())
                else:
                    ax.annotate(format(v, spec), (v, y), xytext=(3, 0), textcoords="offset points", va="center",
                                fontsize=8, annotation_clip=False)
            if limit:
                ax.axvline(limit, color="#cf222e", linestyle="--", linewidth=1)
                ax.text(limit, 1.0, " budget", color="#cf222e", fontsize=8, va="bottom",
                        transform=ax.get_xaxis_transform())
                top = max(top, limit)
            ax.set_xlabel(xlabel)
            ax.set_xlim(0, top * 1.25)
            ax.grid(axis="y", visible=False)
        if metric != "accuracy" or any(v is not None for v in panels[2][1]):
            axes[2].set_xlim(max(0, min((v for v in panels[2][1] if v is not None), default=0) - 5), 101)
        axes[0].set_yticks(ys, labels)
        axes[0].invert_yaxis()
        img = _svg_img(fig, f"Bar charts of size, p50 latency and {metric} for the source and each artifact.")
    table = _table(["", "size", "latency p50", metric],
                   [[_e(row[0]), _e(human_size(row[1])), _num(row[2], ".4g", " ms"), _num(row[3], ".2f", " %")]
                    for row in rows], "num")
    note = "" if metric == "accuracy" else (
        '<p class="muted">No labels were given: the last column is the top-1 agreement with the source '
        "(an upper bound on the accuracy drop), not an accuracy.</p>")
    caption = ("<figcaption>The source (grey) and each artifact, coloured by its verdict (green pass, red fail, "
               "amber not run); dashed red lines are the budgets.</figcaption>")
    return (f'<section><h2 id="comparison">Size, latency and accuracy</h2><figure>{img}{caption}</figure>'
            f"{table}{note}</section>")


def _size_unit(sizes: list[float]) -> tuple[float, str]:
    top = max(sizes, default=0)
    for scale, unit in ((1e9, "GB"), (1e6, "MB"), (1e3, "KB")):
        if top >= scale:
            return scale, unit
    return 1.0, "B"


def _latency_section(items: list[dict[str, Any]]) -> str:
    rows: list[tuple[str, dict[str, Any]]] = []
    first = next((r for r in items if (r.get("source_latency_ms") or {}).get("samples_ms")), None)
    if first:
        rows.append((f"source on {_runtime_name(first, 'source')}", first["source_latency_ms"]))
    for r in items:
        lat = r.get("latency_ms") or {}
        if lat:
            rows.append((f"{_label(r)} on {_runtime_name(r, 'artifact')}", lat))
    head = '<section><h2 id="latency">Latency</h2>'
    if not rows:
        return head + '<p class="none">Latency was not measured (verification did not run).</p></section>'
    limit = next((b["limit"] for r in items for k, b in (r.get("budgets") or {}).items() if k == "latency_ms_p50"), None)
    img = _latency_figure(rows, limit)
    table = _table(
        ["variant", "runs", "warm-up", "p10", "p50", "p90", "p99", "mean", "throughput"],
        [[_e(label), _num(lat.get("runs"), "d"), _num(lat.get("warmup"), "d"), *(_num(lat.get(k), ".4g", " ms") for k in ("p10", "p50", "p90", "p99", "mean")),
          _num(lat.get("throughput_per_s"), ",.0f", "/s")] for label, lat in rows], "num",
    )
    batch = "Timed inferences after warm-up, at the model's batch size, on this host."
    caption = ("<figcaption>Each timed run (dots), their density (shaded), the quartiles (box), p10 to p90 "
               "(whiskers) and the median (red).</figcaption>")
    return f"{head}<p>{batch}</p>" + (f"<figure>{img}{caption}</figure>" if img else "") + table + "</section>"


def _runtime_name(r: dict[str, Any], which: str) -> str:
    info = (r.get("runtime") or {}).get(which) or {}
    if isinstance(info, dict):
        return str(info.get("runtime") or info.get("name") or which)
    return str(info)


def _latency_figure(rows: list[tuple[str, dict[str, Any]]], limit: float | None) -> str:
    """One row per variant: the samples' distribution (violin), quartiles (box) and each sample."""
    import numpy as np
    from matplotlib import cbook
    from matplotlib.figure import Figure

    data = [(label, np.asarray(lat.get("samples_ms") or [], dtype=float)) for label, lat in rows]
    data = [(label, s[np.isfinite(s)]) for label, s in data]
    data = [(label, s) for label, s in data if s.size]
    if not data:
        return ""
    with _rc():
        fig = Figure(figsize=(10, 1.0 + 0.5 * len(data)))
        ax = fig.subplots()
        ys = np.arange(len(data))
        lo = min(float(s.min()) for _, s in data)
        hi = max(float(s.max()) for _, s in data)
        log = lo > 0 and hi / lo > 20
        for y, (_, s) in zip(ys, data, strict=True):
            if s.size > 2 and float(s.std()) > 0:
                # The density of log10(samples) on a log axis: a fair shape for long-tailed timings.
                stats = cbook.violin_stats([np.log10(s) if log else s], _kde, points=200)
                if log:
                    for st in stats:
                        for k in ("coords", "mean", "median", "min", "max"):
                            st[k] = 10 ** np.asarray(st[k])
                parts = ax.violin(stats, positions=[y], orientation="horizontal", widths=0.8, showextrema=False)
                for body in parts["bodies"]:
                    body.set_facecolor("#54aeff")
                    body.set_alpha(0.35)
            jitter = np.random.default_rng(0).uniform(-0.18, 0.18, s.size)
            ax.scatter(s, y + jitter, s=6, color="#0969da", alpha=0.5, linewidths=0)
        ax.boxplot([s for _, s in data], positions=ys, orientation="horizontal", widths=0.35, showfliers=False,
                   medianprops={"color": "#cf222e", "linewidth": 1.5}, whis=(10, 90))
        if log:
            ax.set_xscale("log")
        if limit:
            ax.axvline(limit, color="#cf222e", linestyle="--", linewidth=1)
            ax.text(limit, 1.0, " budget p50", color="#cf222e", fontsize=8, va="bottom", transform=ax.get_xaxis_transform())
        ax.set_yticks(ys, [_plain(label) for label, _ in data])
        ax.invert_yaxis()
        ax.set_xlabel("latency per inference (ms" + (", log scale)" if log else ")"))
        ax.grid(axis="y", visible=False)
        return _svg_img(fig, "Latency distribution per variant: violin, box and each timed sample, in milliseconds.")


def _kde(x: Any, coords: Any) -> Any:
    from matplotlib import mlab

    return mlab.GaussianKDE(x, "scott").evaluate(coords)


# -- layer by layer (edgeconv debug layers) ----------------------------------------------
def _layers_page(doc: dict[str, Any]) -> str:
    """A layers document on its own page: the verdict lines, the per-layer plot and table, the JSON."""
    status = "fail" if any((doc.get("first_diverging") or {}).values()) else "pass"
    title = (f"{Path(str(doc.get('source') or 'model')).name} → {doc.get('target', '?')} "
             f"{doc.get('precision', '')}, layer by layer")
    raw = json.dumps(doc, indent=1, default=str)
    body = "\n".join([
        f'<header><h1>{_e(title)}</h1>{_badge(status)}<p class="meta">edgeconv debug layers · rendered '
        f'{_dt.datetime.now(_dt.timezone.utc):%Y-%m-%d %H:%M UTC} by edgeconv {_e(__version__)} · artifact '
        f'<code>{_e(doc.get("artifact"))}</code></p></header>',
        _layers_section(doc),
        f'<section><details><summary>The JSON document ({len(raw):,} characters)</summary><pre>{_e(raw)}</pre>'
        "</details></section>",
    ])
    return _PAGE.format(title=_e(title), css=_CSS, body=body)


def _layers_section(doc: dict[str, Any]) -> str:
    """Per matched tensor in graph order: the plot (SQNR and cosine, accumulated and isolated, the gates, the first
    diverging layer) and the same numbers in a table."""
    rows = doc.get("layers") or []
    first = doc.get("first_diverging") or {}
    lines = []
    for mode, what in (("accumulated", "the artifact fed its own tensors"),
                       ("isolated", "each layer fed the source's tensors")):
        r = first.get(mode)
        if mode == "isolated" and not doc.get("isolated"):
            lines.append("isolated: not offered by this runtime")
        elif r is None:
            lines.append(f"{mode} ({what}): no layer misses the gates")
        else:
            fused = f" (with {', '.join(map(str, r['fused'][:4]))})" if r.get("fused") else ""
            lines.append(f"first diverging layer, {mode} ({what}): node {r['node']!r} ({r['op_type']}){fused}, "
                         f"tensor {r['tensor']!r}: {'; '.join(r.get('failures') or [])}")
    gates = ", ".join(f"{k} {v:g}" for k, v in (doc.get("gates") or {}).items())
    head = (f"<p>{_e(doc.get('matched'))} of {_e((doc.get('reference') or {}).get('tensors'))} reference tensors "
            f"matched on {_e((doc.get('data') or {}).get('samples'))} sample(s); gates at "
            f"{_e(doc.get('precision'))}: {_e(gates)}</p><ul>" + "".join(f"<li>{_e(ln)}</li>" for ln in lines) + "</ul>")
    table_rows = []
    for r in rows:
        cells = [_num(r.get("index"), "d"), f"<code>{_e(r.get('node'))}</code>", _e(r.get("op_type")),
                 f"<code>{_e(r.get('tensor'))}</code>"]
        for mode in ("accumulated", "isolated"):
            m = r.get(mode) or {}
            cells += [_num(m.get("cosine"), ".6f"), _num(m.get("sqnr_db"), ".1f"), _num(m.get("max_abs"), ".3g"),
                      _yes(m.get("pass")) if m else "–"]
        table_rows.append(cells)
    table = _table(["#", "node", "op", "tensor", "acc cosine", "acc SQNR dB", "acc max abs", "acc pass",
                    "iso cosine", "iso SQNR dB", "iso max abs", "iso pass"], table_rows, "num")
    notes = "".join(f"<li>{_e(n)}</li>" for n in [*(doc.get("notes") or []), *(doc.get("warnings") or [])])
    return ('<section><h2 id="layers">Layer by layer</h2>' + head + _layers_figure(doc) + table
            + (f"<ul class=\"warn\">{notes}</ul>" if notes else "") + "</section>")


def _layers_figure(doc: dict[str, Any]) -> str:
    """SQNR (top) and cosine (bottom) per matched tensor in graph order; dashed lines: the gates; red: the first
    diverging layer."""
    import numpy as np
    from matplotlib.figure import Figure

    rows = doc.get("layers") or []
    if not rows:
        return ""
    x = np.arange(len(rows))
    gates = doc.get("gates") or {}
    first = {m: (doc.get("first_diverging") or {}).get(m) for m in ("accumulated", "isolated")}
    with _rc():
        fig = Figure(figsize=(10, 5.2))
        axes = fig.subplots(2, 1, sharex=True)
        for ax, key, label in ((axes[0], "sqnr_db", "SQNR (dB)"), (axes[1], "cosine", "cosine")):
            for mode, colour in (("accumulated", "#0969da"), ("isolated", "#8250df")):
                ys = np.array([np.nan if (r.get(mode) or {}).get(key) is None else float(r[mode][key]) for r in rows])
                if key == "sqnr_db":  # exact matches (200 dB) would flatten the rest of the plot
                    ys = np.minimum(ys, 120.0)
                if np.isfinite(ys).any():
                    ax.plot(x, ys, marker="o", markersize=3, linewidth=1.2, color=colour, label=mode)
            if key in gates:
                ax.axhline(gates[key], color="#cf222e", linestyle="--", linewidth=1)
            ax.set_ylabel(label)
        for mode, r in first.items():
            if r is not None:
                at = next((i for i, row in enumerate(rows) if row["tensor"] == r["tensor"]), None)
                if at is not None:
                    for ax in axes:
                        ax.axvline(at, color="#cf222e", linewidth=1, alpha=0.6)
        axes[0].legend(loc="lower left", fontsize=8)
        step = max(1, len(rows) // 40)
        axes[1].set_xticks(x[::step], [_plain(str(r.get("node") or r.get("tensor")))[:24] for r in rows[::step]],
                           rotation=60, ha="right", fontsize=7)
        return _svg_img(fig, "Per-layer SQNR and cosine against the source, in graph order; dashed lines are the "
                             "gates, the red line the first diverging layer.")


# -- one variant in detail ----------------------------------------------------------------
def _details(r: dict[str, Any], open_: bool = False) -> str:
    if not r.get("schema"):  # an error entry of a demo run: no conversion happened
        return f'<div class="variant-body">{_verdict_block(r)}</div>'
    parts = ['<div class="variant-body">']
    if not open_:
        parts.append(_verdict_block(r) + "<h3>Budgets</h3>" + _budgets(r) + _warnings(r))
    parts.append(_route_block(r))
    parts.append(_fidelity_block(r))
    parts.append(_runtime_block(r))
    parts.append(_io_block(r))
    parts.append("<h3>Settings</h3>")
    parts.append("<h4>target options</h4>" + _kv(r.get("options")))
    for key, title in (("calibration", "calibration data"), ("data", "verification data")):
        if r.get(key):
            parts.append(f"<h4>{title}</h4>" + _kv(r[key]))
    parts.append("<h4>stage timings (s)</h4>" + _kv(r.get("timings")))
    parts.append("<h4>versions</h4>" + _kv(r.get("versions")))
    parts.append(_manifest_block(r))
    parts.append("</div>")
    return "".join(parts)


def _route_block(r: dict[str, Any]) -> str:
    out = f"<h3>Route</h3><p>{_route(r)} (the forms the model passed through)</p>"
    passes = r.get("passes") or []
    if passes:
        rows = []
        for p in passes:
            info = {k: v for k, v in p.items() if k not in ("name", "kind", "form")}
            before, after = (info.pop("before", None) or {}), (info.pop("after", None) or {})
            nodes = f"{before.get('nodes', '?')} → {after.get('nodes', '?')}" if before or after else "–"
            rows.append([f"<code>{_e(p.get('name'))}</code>", _e(p.get("kind")), _e(p.get("form")), _e(nodes),
                         f"<code>{_e(json.dumps(info, default=str))}</code>" if info else ""])
        out += _table(["pass", "kind", "form", "nodes", "details"], rows)
    details = (r.get("artifact") or {}).get("details")
    if details:
        out += "<h4>what the exporter did</h4>" + _kv(details)
    return out


def _fidelity_block(r: dict[str, Any]) -> str:
    out = "<h3>Fidelity (artifact vs source, every output by name)</h3>"
    fid = r.get("fidelity")
    if not fid:
        reason = (r.get("runtime") or {}).get("reason") or (r.get("verdict") or {}).get("reason") or "verification did not run"
        return out + f'<p class="none">Not compared: {_e(reason)}</p>'
    th = r.get("thresholds") or {}
    if th:
        out += "<p>thresholds: " + ", ".join(f"{_e(k)} {'≤' if k.startswith('max_') else '≥'} {_num(v, 'g')}"
                                             for k, v in th.items()) + "</p>"
    from .verification.metrics import slice_text, task_rows

    rows = []
    for f in fid:
        top = f.get("topk_agreement") or {}
        rows.append([
            f"<code>{_e(f.get('name'))}</code>", _e("×".join(map(str, f.get("shape") or []))), _yes(f.get("shape_ok")),
            _yes(f.get("dtype_ok")), _num(f.get("nan_or_inf"), "d"), _num(f.get("cosine"), ".6f"),
            _num(f.get("max_abs"), ".3g"), _num(f.get("mean_abs"), ".3g"), _num(f.get("sqnr_db"), ".1f"),
            _num(top.get("top1"), ".3f"), _num(top.get("top5"), ".3f"), _e(slice_text(f) or "–"), _yes(f.get("pass")),
            _e("; ".join(f.get("failures") or [])),
        ])
    out += _table(["output", "shape", "shape ok", "dtype ok", "NaN/Inf", "cosine", "max abs", "mean abs", "SQNR dB",
                   "top-1", "top-5", "worst slice", "pass", "failures"], rows)
    task = r.get("task")
    if isinstance(task, dict):
        out += (f"<h4>task check <code>{_e(task.get('name'))}</code> {_yes(task.get('pass'))}</h4>"
                + _table(["metric", "value", "gate", "pass"],
                         [[_e(t), _e(v), _e(g), _yes(ok)] for t, v, g, ok in task_rows(task)])
                + "".join(f"<p>{_e(x)}</p>" for x in task.get("failures") or []))
    decided = (r.get("verdict") or {}).get("decided_by")
    if decided:
        out += f"<p>decided by: {_e(decided if isinstance(decided, str) else ', '.join(decided))}</p>"
    acc = r.get("accuracy")
    if acc:
        out += (f"<p>task metric on <code>{_e(acc.get('output'))}</code> over {_num(acc.get('samples'), 'd')} labelled "
                f"samples: source {_pct(acc.get('source'))}, artifact {_pct(acc.get('artifact'))}, "
                f"drop {_num(acc.get('drop_pp'), '+.2f', ' pp')}</p>")
    return out


def _runtime_block(r: dict[str, Any]) -> str:
    rt = r.get("runtime") or {}
    out = "<h3>What ran where</h3>"
    if not rt:
        return out + '<p class="none">not recorded</p>'
    for key in ("source", "artifact"):
        if key in rt:
            out += f"<h4>{key}</h4>" + (_kv(rt[key]) if isinstance(rt[key], dict) else f"<p>{_e(rt[key])}</p>")
    if rt.get("reason"):
        out += f"<p>{_e(rt['reason'])}</p>"
    mem = r.get("memory")
    if mem:
        out += "<h4>peak memory (a fresh process)</h4>" + _kv(mem)
    return out


def _io_block(r: dict[str, Any]) -> str:
    out = "<h3>IO contract</h3>"
    for who, io in (("source", (r.get("source") or {}).get("io")), ("artifact", (r.get("artifact") or {}).get("io"))):
        if not io:
            continue
        rows = [[_e(role[:-1]), f"<code>{_e(t.get('name'))}</code>", _e("×".join(map(str, t.get("shape") or []))),
                 _e(t.get("dtype")), _e(t.get("layout") or ""),
                 _e(f"scale {t['scale']}, zero point {t.get('zero_point')}" if t.get("scale") is not None else "")]
                for role in ("inputs", "outputs") for t in io.get(role) or []]
        out += f"<h4>{who}</h4>" + _table(["", "name", "shape", "dtype", "layout", "quantisation"], rows)
    return out


def _manifest_block(r: dict[str, Any]) -> str:
    art = r.get("artifact") or {}
    candidates = [art.get("manifest")] if art.get("manifest") else []
    if art.get("path"):
        candidates.append(str(Path(art["path"]).parent / "manifest.json"))
    out = "<h3>Manifest</h3>"
    for path in candidates:
        try:
            text = Path(path).read_text(encoding="utf-8")
            manifest = json.loads(text)
        except (OSError, ValueError):
            continue
        if not isinstance(manifest, dict) or manifest.get("schema") != MANIFEST_SCHEMA:
            continue
        shown = json.dumps(manifest, indent=1, default=str)
        cut = len(shown) > MANIFEST_LIMIT
        return out + (f"<p><code>{_e(path)}</code> ({len(text):,} bytes{', cut' if cut else ''}): source hash, route, "
                      "options, tool versions, IO contract, calibration and verification results.</p>"
                      f"<details><summary>manifest.json</summary><pre>{_e(shown[:MANIFEST_LIMIT])}</pre></details>")
    where = candidates[0] if candidates else "(no artifact)"
    return out + (f'<p class="none">No manifest at <code>{_e(where)}</code> now (moved, or a temporary folder that '
                  "is gone); the report's own fields above hold the same route, options, versions and results.</p>")


_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="edgeconv">
<title>{title}</title>
<style>{css}</style>
</head>
<body>
{body}
</body>
</html>
"""

_CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; color: #1f2328;
       max-width: 1200px; margin: 0 auto; padding: 1rem 1.5rem 3rem; }
h1 { font-size: 1.5rem; display: inline; margin-right: .6rem; }
h2 { font-size: 1.2rem; border-bottom: 1px solid #d0d7de; padding-bottom: .2rem; margin-top: 2rem; }
h3 { font-size: 1.05rem; margin: 1.2rem 0 .4rem; }
h4 { font-size: .95rem; margin: .8rem 0 .3rem; color: #57606a; }
.meta, .muted { color: #57606a; font-size: .85rem; }
.badge { color: #fff; border-radius: 1rem; padding: .1rem .6rem; font-size: .8rem; font-weight: 600; vertical-align: middle; }
table { border-collapse: collapse; margin: .4rem 0; font-size: .85rem; }
th, td { border: 1px solid #d0d7de; padding: .2rem .5rem; text-align: left; vertical-align: top; }
th { background: #f6f8fa; }
table.kv thead { display: none; }
table.summary td:not(:last-child), table.num td { white-space: nowrap; }
td code { white-space: pre-wrap; word-break: break-word; }
code, pre { font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: .82rem; }
pre { background: #f6f8fa; padding: .6rem; overflow: auto; max-height: 40rem; }
.ok { color: #1a7f37; font-weight: 600; } .bad { color: #cf222e; font-weight: 600; }
.none { color: #57606a; font-style: italic; }
ul.warn li { color: #9a6700; }
figure { margin: .5rem 0; }
figcaption { color: #57606a; font-size: .85rem; }
img.plot { max-width: 100%; height: auto; display: block; }
details.variant { border: 1px solid #d0d7de; border-radius: 6px; margin: .6rem 0; padding: .3rem .8rem; }
details.variant > summary { font-weight: 600; cursor: pointer; }
@media print { details { display: block; } pre { max-height: none; } }
"""
