"""The default backend: a local pool of processes (``--workers N``, default the number of cores).

Processes, not threads: a conversion holds the GIL for long stretches and imports heavy frameworks (TensorFlow,
OpenVINO) that are best kept apart. The pool uses the ``spawn`` start method (no fork of a driver that may hold
threads and locks) and starts its workers inside a scratch folder, so a worker's first ``sys.path`` entry and its
working folder are never the user's folder (a ``json.py`` beside the spec is never imported); each cell also runs
in a scratch folder of its own (``cells.scratch_cwd``).

A worker that dies (killed, out of memory, a crash in a native library) breaks a ``ProcessPoolExecutor``: every
cell in flight then fails with it. Those cells are run again one by one, each in a fresh single-worker pool, so
that only the cell that really kills its worker is reported (``error``, exit 4) and no other cell is lost.

Ctrl-C: pending cells are cancelled, running workers get one SIGINT (the conversion removes its staging folder),
the pool is shut down, and no record is written for a cell that did not finish.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ..errors import EXIT_TOOLCHAIN
from .cells import Cell, here, record, run_cell

DIED = ("the worker process running this cell died (killed, out of memory, or a crash in a native library); "
        "it was run again alone and died again")


_started: Any = None  # in a worker: the queue its "started" events go to


def _init_worker(started: Any, scratch: str) -> None:
    """In each worker: one Ctrl-C interrupts the running cell (its conversion cleans up); more are ignored, so
    the clean-up itself is never interrupted. ``started``: the queue for progress events. Temporary files (the
    worker's and its children's) go under the pool's scratch folder, which the driver removes even when a worker
    was killed before it could clean up."""
    global _started
    _started = started
    os.environ["TMPDIR"] = scratch
    tempfile.tempdir = scratch

    def once(signum: int, frame: Any) -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, once)


def _work(cell: Cell, output: str, board: str | None = None) -> dict[str, Any]:
    if _started is not None:
        _started.put({"event": "started", "key": cell.key, "id": cell.id, **here(backend="local", board=board)})
    return run_cell(cell, output, place=board, placement={"backend": "local", "board": board})


@contextlib.contextmanager
def isolated_start(folder: Path) -> Iterator[None]:
    """Start children from ``folder`` with a ``sys.path`` that has neither the working folder nor the running
    script's folder: ``spawn`` runs ``python -c ...`` in the parent's working folder (its first ``sys.path``
    entry) and hands the parent's ``sys.path`` to the child, and Ray gives its workers the driver's working and
    script folders; a ``numpy.py`` or ``openvino.py`` there would be imported instead of the real one. Used only
    while children are started (the pool's submits, ``ray.init``)."""
    import sys

    old_cwd, old_path = os.getcwd(), list(sys.path)
    script = os.path.dirname(os.path.realpath(sys.argv[0])) if sys.argv and sys.argv[0] else None
    unsafe = {"", ".", old_cwd, script}
    safe = [p for p in old_path if p not in unsafe and os.path.abspath(p) not in unsafe]
    os.chdir(folder)
    sys.path[:] = safe
    try:
        yield
    finally:
        sys.path[:] = old_path
        os.chdir(old_cwd)


class LocalBackend:
    name = "local"

    def __init__(self, workers: int | None = None) -> None:
        self.workers = max(1, workers or os.cpu_count() or 1)
        self.boards: dict[str, str] = {}  # cell key -> the board (of this host's inventory) it verifies on

    def describe(self) -> dict[str, Any]:
        return {"backend": "local", "workers": self.workers}

    def prepare(self, cells: list[Cell]) -> None:
        """Board cells get a board of this host's inventory (fail fast, exit 3, when none fits). Nothing else to
        check: a cell whose target is missing here says so in its own record (exit 3). Runs on one board never
        overlap: the board path holds a lock per board."""
        from . import fleet

        board_cells = [c for c in cells if c.board]
        if board_cells:
            self.boards = fleet.assign_local_boards(board_cells)

    def close(self) -> None:
        pass

    def run(self, cells: list[Cell], out: Path, events: Callable[[dict[str, Any]], None]) -> Iterator[dict[str, Any]]:
        scratch = Path(tempfile.mkdtemp(prefix="edgeconv-matrix-"))
        try:
            suspects = yield from self._pool(cells, out, self.workers, scratch, events)
            for cell in suspects:  # alone, each in a fresh pool: only a cell that kills its worker again fails
                again = yield from self._pool([cell], out, 1, scratch, events)
                for c in again:
                    yield record(c, status="error", exit_code=EXIT_TOOLCHAIN, error=DIED,
                                 placement=here(backend="local"))
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    def _pool(self, cells: list[Cell], out: Path, workers: int, scratch: Path,
              events: Callable[[dict[str, Any]], None]):
        """Run ``cells`` in one pool; yield their records; return the cells in flight when a worker died."""
        import multiprocessing
        from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
        if not cells:
            return []
        ctx = multiprocessing.get_context("spawn")
        started = ctx.SimpleQueue()
        pool = ProcessPoolExecutor(max_workers=min(workers, len(cells)), mp_context=ctx, initializer=_init_worker,
                                   initargs=(started, str(scratch)))
        try:
            with isolated_start(scratch):  # every worker is spawned by these submits
                futures = {pool.submit(_work, cell, str(out / cell.folder), self.boards.get(cell.key)): cell
                           for cell in cells}
            pending = set(futures)
            while pending:
                done, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
                _drain(started, events)
                broken = [f for f in done if _broken(f)]
                for fut in done:
                    if fut not in broken:
                        yield fut.result()
                if broken:  # a worker died: finished cells count, the rest are suspects
                    suspects = [futures[f] for f in broken]
                    for fut in pending:
                        if fut.done() and not _broken(fut):
                            yield fut.result()
                        else:
                            suspects.append(futures[fut])
                    return suspects
            return []
        except BaseException:
            _interrupt(pool)
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


def _drain(queue: Any, events: Callable[[dict[str, Any]], None]) -> None:
    while not queue.empty():
        ev = queue.get()
        events({**ev, "where": f"{ev.get('host')} pid {ev.get('pid')}"})


def _broken(fut: Any) -> bool:
    from concurrent.futures.process import BrokenProcessPool

    return fut.done() and not fut.cancelled() and isinstance(fut.exception(), BrokenProcessPool)


def _interrupt(pool: Any) -> None:
    """Cancel what has not started; give each running worker one SIGINT so its conversion cleans up."""
    for fut in list(getattr(pool, "_pending_work_items", {}).values()):
        fut.future.cancel()
    for pid in list(getattr(pool, "_processes", None) or {}):  # the pool's own workers, by pid
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGINT)
