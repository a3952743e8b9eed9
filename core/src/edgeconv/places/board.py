"""``BoardRunner``: the Runner contract, with the artifact running on a board (docs/boards.md).

``activate`` connects, takes the board's lock, sends what the board's content-addressed cache lacks (the
runner's board half and the artifact's files, by sha256: a second run sends nothing) and loads the artifact with
the board's Python; ``infer`` sends one feed and brings the outputs back; ``time_runs`` runs the timing loop on the
board (no network inside the timed section); ``deactivate`` ends the agent (it removes its scratch). ``info`` says
where it ran: board, kind, host, the board's Python and pid, runtime versions, what was transferred, and after a
timing run the board process's memory (``peak_rss_bytes``, ``baseline_rss_bytes``, ``model_rss_bytes``).
"""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import BadInput, ToolchainMissing
from ..runner import Runner
from .agent import pack_arrays, unpack_arrays
from .inventory import Board
from .ssh import AgentSession

if TYPE_CHECKING:
    import numpy as np

    from ..model import Model

MAX_FILES = 1000


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def half_source(module: str) -> bytes:
    """The board half's file, found without importing it (it may need a runtime this host lacks)."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        raise ToolchainMissing(f"the board half {module!r} is not installed here", stage="verify")
    return Path(spec.origin).read_bytes()


def artifact_files(path: Path) -> tuple[dict[str, Path], str]:
    """(relative name -> file, main name): the artifact's files as they must sit beside each other on the board.
    A folder (a SavedModel, an OpenVINO folder) goes whole; a file goes with its OpenVINO ``.bin`` if it has one."""
    from .agent import PART_RE

    if path.is_dir():
        files = {p.relative_to(path).as_posix(): p for p in sorted(path.rglob("*")) if p.is_file()}
        main = "."
    else:
        files = {path.name: path}
        if path.suffix == ".xml" and path.with_suffix(".bin").is_file():
            files[path.with_suffix(".bin").name] = path.with_suffix(".bin")
        main = path.name
    if len(files) > MAX_FILES:
        raise BadInput(f"the artifact has {len(files)} files; at most {MAX_FILES} go to a board", file=path,
                       stage="verify")
    for rel in files:
        if not all(PART_RE.match(p) for p in rel.split("/")):
            raise BadInput(f"file name {rel!r} cannot go to a board (letters, digits and ._+- only)", file=path,
                           stage="verify")
    return files, main


class BoardRunner(Runner):
    """Runs a model of one form on a board through the form's registered runner's board half."""

    def __init__(self, model: Model, *, board: Board, runner: str, half: str, **options: Any) -> None:
        super().__init__(model, **options)
        self.board = board
        self.runner_name = runner
        self.half = half
        self.name = f"{runner}@{board.name}"
        self.session: AgentSession | None = None

    def activate(self) -> None:
        if self.model.path is None:
            raise BadInput("only a model on disk can go to a board", stage="verify")
        path = Path(self.model.path)
        files, main = artifact_files(path)
        code = half_source(self.half)
        shas = {rel: sha256_file(p) for rel, p in files.items()}
        half_sha = hashlib.sha256(code).hexdigest()
        session = AgentSession(self.board, lock=True)
        hello = session.open()
        try:
            session.ensure_blobs({half_sha: code, **{shas[rel]: p for rel, p in files.items()}})
            options = {k: v for k, v in self.options.items() if v is not None}
            loaded = session.request({"op": "load", "half": half_sha, "files": shas,
                                      "main": "" if main == "." else main, "options": options})[0]
        except BaseException:
            session.abort()
            raise
        self.session = session
        self.info = {
            **loaded.get("info", {}),
            "where": "board",
            "board": self.board.name,
            "kind": self.board.kind,
            "host": self.board.address(),
            "runner": self.runner_name,
            "board_python": loaded.get("executable"),
            "board_python_version": hello.get("python"),
            "board_pid": loaded.get("pid"),
            "board_cache": hello.get("cache"),
            "transfer": dict(session.sent),
            **_memory(loaded.get("rss")),
        }

    def infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        specs, payload = pack_arrays(feed)
        reply, data = self._session().request({"op": "infer", "arrays": specs}, payload)
        return {k: v.copy() for k, v in unpack_arrays(reply.get("arrays", []), data).items()}

    def time_runs(self, feed: dict[str, np.ndarray], *, runs: int = 50, warmup: int = 5,
                  max_seconds: float = 10.0) -> list[float]:
        """The timing loop of ``verify.bench.latency``, run by the board half on the board (milliseconds)."""
        specs, payload = pack_arrays(feed)
        reply = self._session().request({"op": "time", "arrays": specs, "runs": int(runs), "warmup": int(warmup),
                                         "max_seconds": float(max_seconds)}, payload,
                                        timeout=max_seconds * 3 + 600)[0]
        self.info.update(_memory(reply.get("rss")))
        self.info["timed_by"] = {"pid": reply.get("pid"), "python": reply.get("executable")}
        return [float(t) for t in reply["times_ms"]]

    def memory(self) -> dict[str, Any]:
        """The board process's memory now (peak since it started; baseline before the model was loaded)."""
        mem = _memory(self._session().request({"op": "rss"})[0])
        self.info.update(mem)
        return mem

    def deactivate(self) -> None:
        session, self.session = self.session, None
        if session is not None:
            self.info["transfer"] = dict(session.sent)
            session.close()

    def _session(self) -> AgentSession:
        if self.session is None:
            raise BadInput(f"runner {self.name} is not active", stage="verify")
        return self.session


def _memory(rss: dict[str, Any] | None) -> dict[str, Any]:
    keys = ("peak_rss_bytes", "baseline_rss_bytes", "model_rss_bytes")
    return {k: rss[k] for k in keys if rss and rss.get(k) is not None}
