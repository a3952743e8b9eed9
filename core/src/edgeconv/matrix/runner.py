"""Run a matrix: plan the cells, keep what a previous run already did, run the rest on a backend, stream the
records, write the index. The backend (a local pool or Ray) only turns cells into records.

The output folder::

    OUT/results.jsonl                        one cell record per line (schema edgeconv.matrix-cell/1)
    OUT/index.html                           models x target/precision, a link to each cell's report
    OUT/cells/<model>/<target>-<precision>/  each cell's conversion output (artifact, manifest.json, report.json)

Exit code: the worst cell's (0 pass, 1 verification or budget failed, 2 bad input, 3 toolchain missing, 4 the
toolchain failed or the machinery lost the cell).
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ..errors import EXIT_TOOLCHAIN, BadInput
from . import index_html
from .cells import Cell, Plan, here, plan_cells, record
from .live import Progress
from .results import ResultsFile
from .spec import Spec, load_spec

LOCK = ".edgeconv-matrix.lock"


class Backend(Protocol):
    name: str

    def describe(self) -> dict[str, Any]: ...

    def prepare(self, cells: list[Cell]) -> None:
        """Before anything is written: connect, and fail fast when these cells cannot be served."""
        ...

    def close(self) -> None: ...

    def run(self, cells: list[Cell], out: Path, events: Callable[[dict[str, Any]], None]) -> Iterator[dict[str, Any]]:
        """Yield one record per cell, in any order, as they finish; call ``events`` with progress events."""
        ...


@dataclass
class Outcome:
    out: Path
    records: list[dict[str, Any]]
    exit_code: int
    ran: int = 0
    kept: int = 0
    skipped: list[dict[str, str]] = field(default_factory=list)


def keep(rec: dict[str, Any], out: Path, rerun_failed: bool) -> bool:
    """Whether a previous record stands: its cell's key is unchanged (the caller checked), it is a result (not
    a cell the machinery lost), and its output folder is still there."""
    if rec.get("status") == "lost":
        return False
    if rerun_failed and rec.get("status") in ("fail", "error"):
        return False
    folder = index_html._folder(rec)
    return folder is None or (out / folder / "report.json").is_file()


def check_out(out: Path) -> None:
    """OUT is a new folder, an empty one, or a previous matrix output: never someone's other files."""
    if out.exists() and not out.is_dir():
        raise BadInput("the output path is a file; the matrix writes a folder", file=out, stage="matrix")
    if out.is_dir() and not (out / "results.jsonl").exists() and any(p.name != LOCK for p in out.iterdir()):
        raise BadInput("the output folder holds other files (no results.jsonl from an earlier matrix run); give a "
                       "new or empty folder", file=out, stage="matrix")


@contextlib.contextmanager
def locked(out: Path) -> Iterator[None]:
    import fcntl

    try:
        out.mkdir(parents=True, exist_ok=True)
        f = open(out / LOCK, "w")
    except OSError as exc:
        raise BadInput(f"cannot write to the output folder ({exc.strerror})", file=out, stage="matrix") from None
    try:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise BadInput("another matrix run is writing this folder right now", file=out, stage="matrix") from None
        yield
    finally:
        f.close()


def run_matrix(spec: Spec | str | Path, out: str | Path, *, backend: Backend | None = None, resume: bool = True,
               rerun_failed: bool = False, progress: Progress | None = None,
               on_record: Callable[[dict[str, Any]], None] | None = None) -> Outcome:
    """Run every cell of ``spec`` not already done into ``out``; see the module's docstring."""
    if not isinstance(spec, Spec):
        spec = load_spec(spec)
    if backend is None:
        from .local import LocalBackend

        backend = LocalBackend()
    out = Path(out).absolute()
    check_out(out)
    plan = plan_cells(spec)
    progress = progress or Progress(live=False)
    results = ResultsFile(out / "results.jsonl")
    try:
        backend.prepare(_todo(plan, results.read() if resume else {}, out, rerun_failed)[1])  # nothing written yet
        with locked(out):
            previous = results.read() if resume else {}
            kept, todo = _todo(plan, previous, out, rerun_failed)
            results.begin(kept)
            records = {r["key"]: r for r in kept}
            progress.begin([c.id for c in plan.cells], {r["id"]: r for r in kept}, backend.name)
            index = _Index(spec, plan, out, backend)
            try:
                index.write(records)
                _collect(backend, todo, out, results, records, progress, on_record, index)
            finally:
                results.close()
                index.write(records)
                progress.stop()
    finally:
        backend.close()
    ordered = [records[c.key] for c in plan.cells if c.key in records]
    worst = max((r.get("exit_code") or 0 for r in ordered), default=0)
    return Outcome(out=out, records=ordered, exit_code=worst, ran=len(todo), kept=len(kept), skipped=plan.skipped)


def _todo(plan: Plan, previous: dict[str, dict[str, Any]], out: Path,
          rerun_failed: bool) -> tuple[list[dict[str, Any]], list[Cell]]:
    """(records kept from the previous run, cells to run)."""
    kept = [previous[c.key] for c in plan.cells if c.key in previous and keep(previous[c.key], out, rerun_failed)]
    kept_keys = {r["key"] for r in kept}
    return kept, [c for c in plan.cells if c.key not in kept_keys]


def _collect(backend: Backend, todo: list[Cell], out: Path, results: ResultsFile, records: dict[str, Any],
             progress: Progress, on_record: Callable[[dict[str, Any]], None] | None, index: _Index) -> None:
    """Write each record the backend yields (once per key); a cell the backend did not answer for is ``lost``."""
    wanted = {c.key: c for c in todo}
    stream = backend.run(todo, out, _events(progress))
    try:
        for rec in stream:
            if rec["key"] not in wanted or not results.append(rec):
                continue  # not ours, or already written: a record is never written twice
            _settle(rec, out, wanted[rec["key"]])
            records[rec["key"]] = rec
            progress.finished(rec)
            if on_record:
                on_record(rec)
            index.write(records)
    finally:
        stream.close()  # Ctrl-C here: the backend cancels and shuts down now, not when collected
    for cell in todo:  # the backend ended without a record for it: say so, never drop it
        if cell.key not in records:
            rec = record(cell, status="lost", exit_code=EXIT_TOOLCHAIN, placement=here(backend=backend.name),
                         error="the backend finished without a result for this cell")
            results.append(rec)
            records[cell.key] = rec
            progress.finished(rec)
            if on_record:
                on_record(rec)


def _settle(rec: dict[str, Any], out: Path, cell: Cell) -> None:
    """A cell without an output (an error): remove a stale folder an earlier run left for it."""
    if rec.get("output") is None:
        shutil.rmtree(out / cell.folder, ignore_errors=True)


def _events(progress: Progress) -> Callable[[dict[str, Any]], None]:
    def on(event: dict[str, Any]) -> None:
        if event.get("event") == "started":
            progress.started(event["id"], event.get("where", ""), event)

    return on


class _Index:
    def __init__(self, spec: Spec, plan: Plan, out: Path, backend: Backend) -> None:
        self.out, self.plan, self.backend = out, plan, backend
        self.models = [m.name for m in spec.models]
        self.columns = list(dict.fromkeys(c.column for c in plan.cells))
        self.title = f"edgeconv matrix: {spec.path.name}"

    def write(self, records: dict[str, dict[str, Any]]) -> None:
        keys = {c.key for c in self.plan.cells}
        recs = [r for k, r in records.items() if k in keys]
        text = index_html.render(recs, models=self.models, columns=self.columns, title=self.title, out=self.out,
                                 skipped=self.plan.skipped, backend=self.backend.describe())
        index_html.write(self.out / "index.html", text)
