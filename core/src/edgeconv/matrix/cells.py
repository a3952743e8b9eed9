"""Cells: one model x target x precision (x board) each, its key, and running it as one ordinary conversion.

A cell's *key* is the sha256 of everything that decides its result: the source's and the data's sha256, the
model's options, the target, its options, the precision, the budgets, the verification settings, the board, the
edgeconv version and the versions of the target's toolchain (its plugin distribution and what that requires, the
core runtimes, an isolated toolchain environment's build). A re-run skips a cell whose key has a result.

``run_cell`` is the only place a cell turns into work, and it does so through the public API
(``edgeconv.convert``) exactly as a user would: the conversion writes its own output folder and report. Whatever
happens inside (an ``EdgeconvError`` or any other exception) becomes a record with an exit code; only an
interrupt (Ctrl-C) goes through.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from .. import __version__
from ..errors import EXIT_TOOLCHAIN, EdgeconvError
from .spec import AUTO, BoardEntry, ModelEntry, Spec, TargetEntry

CELL_SCHEMA = "edgeconv.matrix-cell/1"
# Statuses a record can have. "lost": the machinery (a worker process or a node) died under the cell; such a
# cell is run again by the next run. Every other status is the cell's result and is kept by a re-run.
STATUSES = ("pass", "fail", "not-run", "error", "lost")
# The runtimes every conversion uses (import, simplification, the source's runner): part of every key.
CORE_PACKAGES = ("edgeconv", "numpy", "onnx", "onnxruntime", "onnxslim")


@dataclass(frozen=True)
class Cell:
    model: str
    target: str
    precision: str
    source: str
    data: str | None = None
    calib: str | None = None
    input_shapes: dict[str, list[list[int]]] | None = None
    task: str | None = None
    task_options: dict[str, Any] | None = None
    source_form: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    budgets: dict[str, Any] = field(default_factory=dict)  # Budgets fields, parsed
    runs: int = 50
    verify_samples: int | None = None
    memory: bool = True
    board_kind: str | None = None
    board_name: str | None = None
    toolchains: tuple[str, ...] = ()  # isolated toolchain environments the target needs (Ray: node resources)
    hashes: dict[str, str | None] = field(default_factory=dict)
    key: str = ""

    @property
    def board(self) -> str | None:
        return f"kind={self.board_kind}" if self.board_kind else (f"name={self.board_name}" if self.board_name else None)

    @property
    def id(self) -> str:
        """``digits/openvino/int8``, or ``digits/onnxruntime/fp32@kind=rk3588``."""
        return f"{self.model}/{self.target}/{self.precision}" + (f"@{self.board}" if self.board else "")

    @property
    def column(self) -> str:
        return f"{self.target}/{self.precision}" + (f"@{self.board}" if self.board else "")

    @property
    def folder(self) -> str:
        """The cell's output folder, relative to the matrix output: ``cells/digits/openvino-int8``."""
        on = f"-on-{self.board_kind or self.board_name}" if self.board else ""
        return f"cells/{self.model}/{self.target}-{self.precision}{on}"

    def coords(self) -> dict[str, Any]:
        return {"model": self.model, "target": self.target, "precision": self.precision, "board": self.board}

    def key_material(self, versions: dict[str, Any]) -> dict[str, Any]:
        d = asdict(self)
        for drop in ("source", "data", "calib", "key", "hashes"):  # paths differ between machines; hashes decide
            d.pop(drop)
        d["inputs"] = {k: {"sha256": v, "name": Path(getattr(self, k)).name if getattr(self, k) else None}
                       for k, v in self.hashes.items()}
        d["versions"] = versions
        d["edgeconv"] = __version__
        return d


def compute_key(material: dict[str, Any]) -> str:
    text = json.dumps(material, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


# -- from a spec to cells -------------------------------------------------------------------------------------------
@dataclass
class Plan:
    cells: list[Cell]
    skipped: list[dict[str, str]]  # combinations a target does not offer: {model, target, precision, reason}


def plan_cells(spec: Spec) -> Plan:
    hashes = _Hashes()
    cells: list[Cell] = []
    skipped: list[dict[str, str]] = []
    boards: list[BoardEntry | None] = [None, *spec.boards]
    for model in spec.models:
        for board in boards:
            for target in spec.targets:
                if board is not None and board.targets is not None and target.name not in board.targets:
                    continue
                wanted = (board.precisions if board is not None and board.precisions else spec.precisions)
                for precision in wanted or (_target_info(target.name)["default"],):
                    why = _not_offered(target.name, precision)
                    if why:
                        if board is None:
                            skipped.append({"model": model.name, "target": target.name, "precision": precision,
                                            "reason": why})
                        continue
                    cells.append(_cell(spec, model, target, precision, board, hashes))
    return Plan(cells, skipped)


def _cell(spec: Spec, model: ModelEntry, target: TargetEntry, precision: str, board: BoardEntry | None,
          hashes: _Hashes) -> Cell:
    budgets = {k: v for k, v in asdict(spec.budgets).items() if v is not None}
    cell = Cell(
        model=model.name, target=target.name, precision=precision, source=str(model.source),
        data=str(model.data) if model.data else None, calib=str(model.calib) if model.calib else None,
        input_shapes=model.input_shapes, task=model.task, task_options=model.task_options,
        source_form=model.source_form, options=dict(target.options), budgets=budgets, runs=spec.runs,
        verify_samples=spec.verify_samples, memory=spec.memory, board_kind=board.kind if board else None,
        board_name=board.name if board else None, toolchains=tuple(_target_info(target.name)["toolchains"]),
        hashes={k: hashes(getattr(model, k)) for k in ("source", "data", "calib")},
    )
    return _with_key(cell)


def _with_key(cell: Cell) -> Cell:
    from dataclasses import replace

    return replace(cell, key=compute_key(cell.key_material(target_versions(cell.target))))


class _Hashes:
    """sha256 of each input path, once per run."""

    def __init__(self) -> None:
        self.seen: dict[Path, str] = {}

    def __call__(self, path: Path | None) -> str | None:
        if path is None:
            return None
        if path not in self.seen:
            from ..data import sha256_path

            self.seen[path] = sha256_path(path)
        return self.seen[path]


@cache
def _target_info(name: str) -> dict[str, Any]:
    """What the driver knows of a target: its precisions, default, toolchain environments (empty when the
    target's plugin is not installed here: its cells then say so themselves, exit 3)."""
    from ..plugins import registry

    try:
        tgt = registry().target(name)
    except EdgeconvError:
        return {"precisions": None, "default": "fp32", "toolchains": (), "dist": None, "modules": ()}
    return {
        "precisions": tuple(tgt.precisions),
        "default": tgt.default_precision,
        "toolchains": tuple(dict.fromkeys(t.name for r in tgt.requirements for t in r.toolchains)),
        "dist": tgt.dist or None,
        "modules": tuple(m for r in tgt.requirements for m in r.modules),
    }


def _not_offered(target: str, precision: str) -> str | None:
    offered = _target_info(target)["precisions"]
    if offered is None or precision == AUTO or precision in offered:
        return None
    return f"target {target!r} offers {', '.join(offered)}"


@cache
def target_versions(target: str) -> dict[str, Any]:
    """The versions a target's result depends on, read without importing anything heavy: the core runtimes, the
    target's plugin distribution and the distributions it requires, its requirement modules' distributions, and
    each isolated toolchain environment's build (the hash of its specification and its packages' versions)."""
    from importlib import metadata

    info = _target_info(target)
    out: dict[str, Any] = {p: _dist_version(p) for p in CORE_PACKAGES}
    dist = info["dist"]
    if dist and dist != "edgeconv":  # a plugin: its version and the versions of what it requires
        out[dist] = _dist_version(dist)
        for req in (metadata.requires(dist) or []) if out[dist] else []:
            if "extra ==" in req:
                continue
            name = re.split(r"[<>=!~\[ (;]", req.strip(), maxsplit=1)[0]
            out[name] = _dist_version(name)
    mapping = metadata.packages_distributions() if info["modules"] else {}
    for module in info["modules"]:
        for dist in mapping.get(module.split(".")[0], ()):
            out[dist] = _dist_version(dist)
    for name in info["toolchains"]:
        out[f"toolchain:{name}"] = _toolchain_build(name)
    return out


def _dist_version(name: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _toolchain_build(name: str) -> dict[str, Any] | None:
    from .. import toolchain
    from ..plugins import registry

    tc = registry().toolchains.get(name)
    if tc is None:
        return None
    st = toolchain.status(tc)
    return {"spec": tc.spec_hash(), "state": st.get("state"), "versions": st.get("versions")}


# -- running one cell -----------------------------------------------------------------------------------------------
def record(cell: Cell, *, status: str, exit_code: int, report: dict[str, Any] | None = None,
           error: str | None = None, placement: dict[str, Any] | None = None,
           seconds: float | None = None) -> dict[str, Any]:
    """One line of results.jsonl: the cell, its key, its status and exit code, its full report (schema
    ``edgeconv.report/1``, as the pipeline wrote it) or the one-line error, and where it ran."""
    assert status in STATUSES, status
    return {"schema": CELL_SCHEMA, "key": cell.key, "cell": cell.coords(), "id": cell.id, "status": status,
            "exit_code": exit_code, "error": error, "output": cell.folder if report is not None else None,
            "seconds": None if seconds is None else round(seconds, 3), "placement": placement or {},
            "report": report}


def here(**extra: Any) -> dict[str, Any]:
    """Where this process runs (the placement record's base)."""
    return {"host": socket.gethostname(), "pid": os.getpid(), **extra}


@contextlib.contextmanager
def scratch_cwd() -> Iterator[Path]:
    """Run in a fresh scratch folder, never the user's (or a Ray worker's) working folder."""
    try:
        old = os.getcwd()
    except FileNotFoundError:  # a worker whose working folder was removed
        old = tempfile.gettempdir()
    folder = Path(tempfile.mkdtemp(prefix="edgeconv-cell-"))
    os.chdir(folder)
    try:
        yield folder
    finally:
        os.chdir(old)
        shutil.rmtree(folder, ignore_errors=True)


def run_cell(cell: Cell, output: str | Path, *, inputs: dict[str, str | None] | None = None,
             place: str | None = None, placement: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run one cell as one ordinary conversion into ``output``; return its record. ``inputs`` replaces the
    driver's paths (``source``, ``data``, ``calib``) with local copies; ``place``: the board to verify on."""
    import edgeconv

    from ..report import Budgets

    paths = {"source": cell.source, "data": cell.data, "calib": cell.calib, **(inputs or {})}
    started = time.monotonic()
    where = {**here(), **(placement or {})}
    try:
        with scratch_cwd():
            result = edgeconv.convert(
                paths["source"], cell.target, precision=cell.precision, calibration=paths["calib"],
                data=paths["data"], input_shapes=cell.input_shapes, budgets=Budgets(**cell.budgets),
                output=Path(output), force=True, options=dict(cell.options) or None, task=cell.task,
                task_options=cell.task_options, runs=cell.runs, verify_samples=cell.verify_samples, place=place,
                memory=cell.memory,
                source_form=cell.source_form,
            )
    except EdgeconvError as exc:
        return record(cell, status="error", exit_code=exc.exit_code, error=exc.one_line(), placement=where,
                      seconds=time.monotonic() - started)
    except Exception as exc:  # a cell's failure never stops the others: it becomes its record
        text = " ".join(str(exc).split())[:300]
        return record(cell, status="error", exit_code=EXIT_TOOLCHAIN, placement=where,
                      error=f"internal error: {type(exc).__name__}: {text}", seconds=time.monotonic() - started)
    status = (result.report.get("verdict") or {}).get("status", "error")
    return record(cell, status=status if status in STATUSES else "error", exit_code=result.exit_code,
                  report=result.report, placement=where, seconds=time.monotonic() - started)
