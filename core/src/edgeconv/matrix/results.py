"""``OUT/results.jsonl``: one cell record per line, streamed as cells finish, never a half line, never twice.

A run starts by rewriting the file (atomically) with the records it keeps from the previous run, then appends
each new record with one ``write`` of the whole line on an ``O_APPEND`` descriptor, flushed to disk. Reading
tolerates a damaged last line (a machine that lost power mid-write) and keeps the last record per cell key.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from ..report import dumps
from .cells import CELL_SCHEMA


class ResultsFile:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.fd: int | None = None
        self.written: set[str] = set()

    def read(self) -> dict[str, dict[str, Any]]:
        """The previous run's records by cell key (lines that are not cell records are ignored)."""
        out: dict[str, dict[str, Any]] = {}
        try:
            text = self.path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return out
        for line in text.splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if isinstance(rec, dict) and rec.get("schema") == CELL_SCHEMA and isinstance(rec.get("key"), str):
                out[rec["key"]] = rec
        return out

    def begin(self, kept: list[dict[str, Any]]) -> None:
        """Replace the file with ``kept`` (atomically), then open it for appending."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".results-", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                for rec in kept:
                    f.write(_line(rec))
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        self.written = {rec["key"] for rec in kept}
        self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)

    def append(self, rec: dict[str, Any]) -> bool:
        """Append one record; a key already written in this run is not written again (returns False)."""
        if rec["key"] in self.written:
            return False
        assert self.fd is not None, "begin() first"
        data = _line(rec).encode("utf-8")
        view = memoryview(data)
        while view:  # one write for a regular file; the loop only guards a short write
            n = os.write(self.fd, view)
            view = view[n:]
        os.fsync(self.fd)
        self.written.add(rec["key"])
        return True

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def _line(rec: dict[str, Any]) -> str:
    return dumps(rec, separators=(",", ":")) + "\n"
