"""The terminal report: rich tables of a conversion, of ``--precision auto``'s candidates, of the demo, of
``inspect`` and of a device profile. Every string that comes from a model, a manifest or a report (names, paths,
reasons) goes through ``safe``: no markup or control sequence of theirs reaches the terminal. Tables wrap long
cells; the verdict and the accuracy are never cut."""

import json
from typing import Any

import typer

from ..report import AUTO_COLUMNS, auto_rows, human_size
from .common import console, echo_err, emit_json, safe


def _fmt(v: float | None, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def emit(result: Any, as_json: bool) -> None:
    """The report on stdout (JSON, or tables), then the exit code."""
    if as_json:
        emit_json(result.report)
    else:
        render(result.report, console())
    if result.exit_code:
        raise typer.Exit(result.exit_code)


def _verdict_line(report: dict[str, Any]) -> str:
    verdict = report.get("verdict", {})
    colour = {"pass": "green", "fail": "red"}.get(verdict.get("status"), "yellow")
    route = " -> ".join(str(f) for f in report.get("route") or [])
    auto = " (--precision auto)" if report.get("precision_requested") == "auto" else ""
    reason = f": {safe(verdict['reason'])}" if verdict.get("reason") else ""
    return (f"[bold]{safe(report['source']['path'])}[/] -> [bold]{safe(report['target'])}[/] "
            f"{safe(report['precision'])}{auto}  ({safe(route)})  "
            f"[{colour}]{safe(verdict.get('status', '?')).upper()}[/]{reason}")


def _fidelity_table(fid: list[dict[str, Any]]):
    from rich.table import Table

    t = Table(title="fidelity (artifact vs source)", title_justify="left")
    for col in ("output", "shape", "cosine", "max abs", "SQNR dB", "top-1", "worst slice", "ok"):
        t.add_column(col, justify="left" if col in ("output", "shape", "worst slice", "ok") else "right",
                     overflow="fold")
    from ..verification.metrics import slice_text as worst_slice

    for f in fid:
        top = (f.get("topk_agreement") or {}).get("top1")
        slice_text = worst_slice(f) or "-"
        t.add_row(safe(f["name"]), "x".join(map(str, f.get("shape") or [])), _fmt(f.get("cosine"), ".6f"),
                  _fmt(f.get("max_abs"), ".3g"), _fmt(f.get("sqnr_db"), ".1f"), _fmt(top, ".3f"), safe(slice_text),
                  "[green]yes[/]" if f["pass"] else f"[red]no[/] {safe('; '.join(f.get('failures') or []))}")
    return t


def _measurements(report: dict[str, Any]):
    from rich.table import Table

    acc, lat = report.get("accuracy"), report.get("latency_ms")
    t = Table(title="measurements", title_justify="left")
    for col in ("what", "source", "artifact", "ratio"):
        t.add_column(col, justify="left" if col == "what" else "right", no_wrap=col != "what")
    if acc:
        t.add_row("accuracy (%)", f"{acc['source'] * 100:.2f}", f"{acc['artifact'] * 100:.2f}",
                  f"drop {acc['drop_pp']:+.2f} pp")
    if lat:
        src = (report.get("source_latency_ms") or {}).get("p50")
        t.add_row("latency p50 (ms)", _fmt(src, ".3f"), f"{lat['p50']:.3f}", f"{lat['p50'] / src:.2f}x" if src else "")
        t.add_row("latency p90/p99 (ms)", "", f"{lat['p90']:.3f} / {lat['p99']:.3f}", f"{lat['runs']} runs")
    if report.get("peak_rss_bytes"):
        mem = report.get("memory") or {}
        t.add_row("peak RSS", "", human_size(report["peak_rss_bytes"]), f"model {human_size(mem.get('model_rss_bytes'))}")
    return t


def render(report: dict[str, Any], out: Any) -> None:
    """Print one conversion's report as rich tables."""
    out.print(_verdict_line(report))
    art = report.get("artifact") or {}
    if art:
        src_size = report["source"].get("size_bytes")
        ratio = f" ({art['size_bytes'] / src_size:.2f}x source)" if src_size and art.get("size_bytes") else ""
        out.print(f"artifact: {safe(art.get('path'))}  {human_size(art.get('size_bytes'))}{ratio}")
    if report.get("fidelity"):
        out.print(_fidelity_table(report["fidelity"]))
    task = report.get("task")
    if isinstance(task, dict):
        ok = "[green]pass[/]" if task.get("pass") else f"[red]FAIL[/] {safe('; '.join(task.get('failures') or []))}"
        metrics = ", ".join(f"{safe(k)} {v:.4g}" if isinstance(v, (int, float)) else f"{safe(k)} {safe(v)}"
                            for k, v in (task.get("metrics") or {}).items())
        out.print(f"task check {safe(task.get('name'))}: {metrics} {ok}")
    t = _measurements(report)
    if t.row_count:
        out.print(t)
    if report.get("auto"):
        render_auto(report["auto"], out)
    for name, b in (report.get("budgets") or {}).items():
        mark = "[green]pass[/]" if b["pass"] else "[red]FAIL[/]"
        proxy = f" ({safe(b['proxy'])})" if b.get("proxy") else ""
        out.print(f"budget {safe(name)}: {safe(b['value'])} <= {safe(b['limit'])}: {mark}{proxy}")
    for w in report.get("warnings") or []:
        out.print(f"[yellow]warning:[/] {safe(w)}")


def render_auto(auto: dict[str, Any], out: Any) -> None:
    from rich.table import Table

    t = Table(title=f"--precision auto: candidates (accuracy budget {safe(auto.get('accuracy_budget_pp'))} pp, "
                    f"{safe(auto.get('accuracy_budget_source'))})", title_justify="left")
    for col in AUTO_COLUMNS:
        t.add_column(col, justify="right" if col in ("size", "acc. drop", "cosine", "p50 ms") else "left",
                     overflow="fold")
    for row in auto_rows(auto):
        t.add_row(*(safe(x) for x in row))
    out.print(t)
    sens = auto.get("sensitivity")
    if sens:
        top = ", ".join(f"{r['node']} ({r['sqnr_db']:.1f} dB)" for r in (sens.get("ranked") or [])[:5])
        out.print(f"sensitive layers ({safe(sens.get('ranked_by') or 'alone in int8, output SQNR')}): {safe(top)}")
        out.print(f"kept in float: {safe(', '.join(sens.get('keep_float') or []) or 'none found')} "
                  f"after {len(sens.get('trials') or [])} trial build(s)")
    out.print(f"[bold]winner:[/] {safe(auto.get('why') or '')}")


def render_demo(reports: list[dict[str, Any]], out: Any) -> None:
    from rich.table import Table

    t = Table(title="edgeconv demo: digits CNN, every ready target", title_justify="left")
    for col in ("target", "precision", "size", "latency p50", "accuracy", "drop", "verdict"):
        # nothing is cut with an ellipsis: narrow columns wrap (fold); the verdict and the accuracy keep room
        t.add_column(col, justify="left" if col in ("target", "precision", "verdict") else "right",
                     overflow="fold", min_width={"verdict": 6, "accuracy": 8}.get(col))
    for r in reports:
        acc = r.get("accuracy") or {}
        lat = r.get("latency_ms") or {}
        status = (r.get("verdict") or {}).get("status", "?")
        colour = {"pass": "green", "fail": "red"}.get(status, "yellow")
        reason = r["verdict"].get("reason") if status != "pass" else None
        t.add_row(safe(r["target"]), safe(r["precision"]), human_size((r.get("artifact") or {}).get("size_bytes")),
                  f"{lat['p50']:.3f} ms" if lat.get("p50") is not None else "-",
                  f"{acc['artifact'] * 100:.2f} %" if acc else "-", f"{acc['drop_pp']:+.2f} pp" if acc else "-",
                  f"[{colour}]{safe(status)}[/]" + (f" {safe(reason)}" if reason else ""))
    out.print(t)


def say_prune(report: dict[str, Any]) -> None:
    """One line on stderr: what pruning changed (the numbers are in source.meta.prune)."""
    p = ((report.get("source") or {}).get("meta") or {}).get("prune")
    if not p:
        return
    par, w, lat = p["parameters"], p["weights_bytes"], p["latency_ms"]
    text = (f"edgeconv: pruned {p['ratio']:.0%} of the channels: parameters {par['before']:,} -> {par['after']:,} "
            f"(-{par['reduction']:.1%}), weights {human_size(w['before'])} -> {human_size(w['after'])}, "
            f"eager latency x{lat['ratio']}")
    acc = p.get("accuracy")
    if acc:
        text += (f", accuracy {acc['before']:.2%} -> {acc['after']:.2%} ({-acc['drop_pp']:+.2f} pp on "
                 f"{acc['samples']} labelled samples)")
    text += f"; fine-tune {p['finetune']['seconds']} s" if p.get("finetune") else "; not fine-tuned"
    echo_err(text)


def render_inspect(info: dict[str, Any]) -> None:
    from rich.table import Table

    from ..model import format_shape

    out = console()
    out.print(f"[bold]{safe(info['source'])}[/] ({safe(info['form'])})  {safe(json.dumps(info.get('meta', {}), default=str))}")
    t = Table(title="IO contract", title_justify="left")
    for col in ("", "name", "shape", "dtype", "layout"):
        t.add_column(col, overflow="fold")
    for role in ("inputs", "outputs"):
        for spec in info["io"][role]:
            t.add_row(role[:-1], safe(spec["name"]), safe(format_shape(tuple(spec["shape"]))), safe(spec["dtype"]),
                      safe(spec.get("layout") or ""))
    out.print(t)
    if info.get("ops"):
        out.print("ops: " + safe(", ".join(f"{k} x{v}" for k, v in info["ops"].items())))
        out.print(f"parameters: {info.get('parameters', 0):,}")
    if info.get("suggested_task"):
        task = info["suggested_task"]
        name = task.get("name") if isinstance(task, dict) else task
        why = task.get("reason", "") if isinstance(task, dict) else ""
        out.print(f"suggested task check: --task {safe(name)} {safe(why)}")
    for name, s in info["targets"].items():
        extra = ", ".join(f"{u['node']} ({u['op_type']})" for u in s.get("unsupported", [])[:8])
        out.print(f"target {safe(name)}: {safe(s['status'])} {safe(extra or s.get('reason') or s.get('hint') or '')}")


def render_device(dev: Any, target_status: str) -> None:
    out = console()
    out.print(f"[bold]{safe(dev.name)}[/]: {safe(dev.title)} ({safe(dev.vendor)})")
    also = f" (also: {', '.join(dev.also)})" if dev.also else ""
    colour = "green" if target_status == "ready" else "yellow"
    out.print(f"target: {safe(dev.target)} [{colour}]{target_status}[/]{safe(also)}")
    out.print(f"precisions (preferred first): {safe(', '.join(dev.precisions))}")
    out.print("options: " + safe(" ".join(f"-O {k}={v}" for k, v in dev.options.items()) or "none"))
    out.print("budgets: " + safe(", ".join(f"{k}={v}" for k, v in dev.budgets.items()) or "none")
              + f" ({safe(dev.budgets_reason)})")
    if dev.note:
        out.print(f"note: {safe(dev.note)}")
    out.print("[bold]facts[/] (each with its source; URLs unbroken to copy):")
    for key, f in dev.facts.items():
        out.print(f"  [bold]{safe(key)}[/]: {safe(f.get('value', ''))}")
        out.print(f"    source ({safe(f.get('kind', ''))}): {safe(f.get('source', ''))}", soft_wrap=True)
    for key in dev.unknown:
        out.print(f"  [bold]{safe(key)}[/]: unknown (searched, no source found)")
