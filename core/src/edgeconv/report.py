"""The report (schema ``edgeconv.report/1``): budgets, verdict, and the terminal table."""

from __future__ import annotations

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


def render(report: dict[str, Any], console) -> None:
    """Print one conversion's report as rich tables."""
    from rich.markup import escape as e
    from rich.table import Table

    verdict = report.get("verdict", {})
    colour = {"pass": "green", "fail": "red"}.get(verdict.get("status"), "yellow")
    art = report.get("artifact") or {}
    route = " -> ".join(report.get("route") or [])
    console.print(
        f"[bold]{e(report['source']['path'])}[/] -> [bold]{report['target']}[/] {report['precision']}"
        + (" (--precision auto)" if report.get("precision_requested") == "auto" else "")
        + f"  ({e(route)})  [{colour}]{verdict.get('status', '?').upper()}[/]"
        + (f": {e(verdict['reason'])}" if verdict.get("reason") else "")
    )
    if art:
        src_size = report["source"].get("size_bytes")
        ratio = f" ({art['size_bytes'] / src_size:.2f}x source)" if src_size and art.get("size_bytes") else ""
        console.print(f"artifact: {e(str(art.get('path')))}  {human_size(art.get('size_bytes'))}{ratio}")
    fid = report.get("fidelity") or []
    if fid:
        t = Table(title="fidelity (artifact vs source)", title_justify="left")
        for col in ("output", "shape", "cosine", "max abs", "mean abs", "SQNR dB", "top-1", "ok"):
            t.add_column(col, justify="right" if col not in ("output", "shape") else "left")
        for f in fid:
            top = (f.get("topk_agreement") or {}).get("top1")
            t.add_row(
                f["name"],
                "x".join(map(str, f["shape"])),
                _fmt(f.get("cosine"), ".6f"),
                _fmt(f.get("max_abs"), ".3g"),
                _fmt(f.get("mean_abs"), ".3g"),
                _fmt(f.get("sqnr_db"), ".1f"),
                _fmt(top, ".3f"),
                "[green]yes[/]" if f["pass"] else f"[red]no[/] {e('; '.join(f['failures']))}",
            )
        console.print(t)
    acc = report.get("accuracy")
    lat = report.get("latency_ms")
    t = Table(show_header=True, title="measurements", title_justify="left")
    for col in ("what", "source", "artifact", "ratio"):
        t.add_column(col, justify="left" if col == "what" else "right")
    if acc:
        t.add_row("accuracy (%)", f"{acc['source'] * 100:.2f}", f"{acc['artifact'] * 100:.2f}", f"drop {acc['drop_pp']:+.2f} pp")
    if lat:
        src = (report.get("source_latency_ms") or {}).get("p50")
        ratio = f"{lat['p50'] / src:.2f}x" if src else ""
        t.add_row("latency p50 (ms)", _fmt(src, ".3f"), f"{lat['p50']:.3f}", ratio)
        t.add_row("latency p90/p99 (ms)", "", f"{lat['p90']:.3f} / {lat['p99']:.3f}", f"{lat['runs']} runs")
    if report.get("peak_rss_bytes"):
        mem = report.get("memory") or {}
        t.add_row("peak RSS", "", human_size(report["peak_rss_bytes"]), f"model {human_size(mem.get('model_rss_bytes'))}")
    if t.row_count:
        console.print(t)
    if report.get("auto"):
        render_auto(report["auto"], console)
    for name, b in (report.get("budgets") or {}).items():
        mark = "[green]pass[/]" if b["pass"] else "[red]FAIL[/]"
        console.print(f"budget {name}: {b['value']} <= {b['limit']}: {mark}" + (f" ({b['proxy']})" if b.get("proxy") else ""))
    for w in report.get("warnings") or []:
        console.print(f"[yellow]warning:[/] {e(w)}")


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


def render_auto(auto: dict[str, Any], console) -> None:
    from rich.markup import escape as e
    from rich.table import Table

    t = Table(title=f"--precision auto: candidates (accuracy budget {auto.get('accuracy_budget_pp')} pp, "
                    f"{auto.get('accuracy_budget_source')})", title_justify="left")
    for col in AUTO_COLUMNS:
        t.add_column(col, justify="right" if col in ("size", "acc. drop", "cosine", "p50 ms") else "left")
    for row in auto_rows(auto):
        t.add_row(*(e(x) for x in row))
    console.print(t)
    sens = auto.get("sensitivity")
    if sens:
        top = ", ".join(f"{r['node']} ({r['sqnr_db']:.1f} dB)" for r in (sens.get("ranked") or [])[:5])
        console.print(f"sensitive layers (alone in int8, output SQNR): {e(top)}")
        console.print(f"kept in float: {e(', '.join(sens.get('keep_float') or []) or 'none found')} "
                      f"after {len(sens.get('trials') or [])} trial build(s)")
    console.print(f"[bold]winner:[/] {e(auto.get('why') or '')}")


def _fmt(v: float | None, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def render_demo(reports: list[dict[str, Any]], console) -> None:
    from rich.markup import escape
    from rich.table import Table

    t = Table(title="edgeconv demo: digits CNN, every ready target", title_justify="left")
    for col in ("target", "precision", "size", "latency p50", "accuracy", "drop", "verdict"):
        t.add_column(col, justify="left" if col in ("target", "precision", "verdict") else "right",
                     no_wrap=col != "verdict")
    for r in reports:
        acc = r.get("accuracy") or {}
        lat = r.get("latency_ms") or {}
        status = (r.get("verdict") or {}).get("status", "?")
        colour = {"pass": "green", "fail": "red"}.get(status, "yellow")
        t.add_row(
            r["target"],
            r["precision"],
            human_size((r.get("artifact") or {}).get("size_bytes")),
            f"{lat['p50']:.3f} ms" if lat.get("p50") is not None else "-",
            f"{acc['artifact'] * 100:.2f} %" if acc else "-",
            f"{acc['drop_pp']:+.2f} pp" if acc else "-",
            f"[{colour}]{status}[/]" + (f" {escape(str(r['verdict'].get('reason')))}" if status != "pass" and r["verdict"].get("reason") else ""),
        )
    console.print(t)
