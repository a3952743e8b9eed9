"""Progress in the terminal: a live table (rich) on a TTY, one line per finished cell otherwise."""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from ..report import human_size
from .index_html import summary

COLOURS = {"pass": "green", "fail": "red", "error": "red", "lost": "magenta", "not-run": "yellow"}
MAX_ROWS = 40  # beyond this the table shows the running and most recent cells only


class Progress:
    def __init__(self, *, live: bool | None = None, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.live_wanted = self.stream.isatty() if live is None else live
        self.rows: dict[str, dict[str, Any]] = {}
        self.order: list[str] = []
        self.total = 0
        self.done = 0
        self.started_at = time.monotonic()
        self._live = None

    # -- events --------------------------------------------------------------------------------------------------
    def begin(self, cell_ids: list[str], kept: dict[str, dict[str, Any]], backend: str) -> None:
        self.order = list(cell_ids)
        self.total = len(cell_ids)
        self.backend = backend
        for cid in cell_ids:
            self.rows[cid] = {"state": "queued", "where": ""}
        for cid, rec in kept.items():
            self.rows[cid] = {"state": "kept", "rec": rec, "where": summary(rec)["where"]}
            self.done += 1
        if self.live_wanted:
            from rich.console import Console
            from rich.live import Live

            self._live = Live(self._table(), console=Console(file=self.stream, highlight=False),
                              refresh_per_second=4, transient=False)
            self._live.start()
        elif kept:
            self._say(f"{len(kept)} of {self.total} cell(s) unchanged since the last run: kept")

    def started(self, cell_id: str, where: str, event: dict[str, Any] | None = None) -> None:
        row = self.rows.setdefault(cell_id, {})
        row.update(state="running", where=where, since=time.monotonic())
        self._refresh()

    def finished(self, rec: dict[str, Any]) -> None:
        self.done += 1
        s = summary(rec)
        self.rows[rec["id"]] = {"state": "done", "rec": rec, "where": s["where"]}
        if self._live is None:
            extra = f": {s['reason']}" if s["reason"] and s["status"] != "pass" else ""
            self._say(f"[{self.done}/{self.total}] {rec['id']}: {s['status']} (exit {s['exit_code']}, "
                      f"{rec.get('seconds') or 0:.1f} s{', ' + s['where'] if s['where'] else ''}){extra}")
        self._refresh()

    def stop(self) -> None:
        if self._live is not None:
            self._live.update(self._table())
            self._live.stop()
            self._live = None

    # -- drawing -------------------------------------------------------------------------------------------------
    def _say(self, text: str) -> None:
        print(" ".join(text.split()), file=self.stream, flush=True)

    def _refresh(self) -> None:
        if self._live is not None:
            self._live.update(self._table())

    def _table(self):
        from rich.markup import escape
        from rich.table import Table

        elapsed = time.monotonic() - self.started_at
        running = sum(1 for r in self.rows.values() if r.get("state") == "running")
        t = Table(title=f"edgeconv matrix ({self.backend}): {self.done}/{self.total} done, {running} running, "
                        f"{elapsed:.0f} s", title_justify="left")
        for col in ("cell", "status", "size", "p50 ms", "acc. drop", "where"):
            t.add_column(col, justify="right" if col in ("size", "p50 ms", "acc. drop") else "left")
        ids = self.order
        if len(ids) > MAX_ROWS:
            active = [i for i in ids if self.rows[i].get("state") == "running"]
            recent = [i for i in ids if self.rows[i].get("state") == "done"][-(MAX_ROWS - len(active)):]
            ids = [i for i in ids if i in set(active) | set(recent)]
        for cid in ids:
            row = self.rows[cid]
            rec = row.get("rec")
            if rec is None:
                state = row.get("state", "queued")
                t.add_row(escape(cid), f"[cyan]{state}[/]" if state == "running" else state, "", "", "",
                          escape(row.get("where", "")))
                continue
            s = summary(rec)
            colour = COLOURS.get(s["status"], "white")
            kept = " (kept)" if row.get("state") == "kept" else ""
            t.add_row(escape(cid), f"[{colour}]{escape(str(s['status']))}[/]{kept}", human_size(s["size"]),
                      "-" if s["p50"] is None else f"{s['p50']:.3f}",
                      "-" if s["drop"] is None else f"{float(s['drop']):+.2f}", escape(s["where"]))
        return t
