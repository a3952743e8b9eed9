"""The Ray backend: the same cells, on a Ray cluster (``--cluster ray://HOST:10001 | auto | local | HOST:PORT``).

- A plain cell is a Ray task (1 CPU; a cell whose target needs an isolated toolchain environment also asks for
  ``toolchain:<name>``, which only hosts that have it advertise). Ray retries a task whose worker or node died
  (``max_retries``); a cell that still cannot finish becomes a ``lost`` record (exit 4), which the next run retries.
- A board cell goes to the actor of one physical board (named ``edgeconv-board.<node>.<board>``, detached, pinned
  to the board's node, holding one ``board:<kind>``): one cell at a time per board, so latency stays clean.
- Inputs go once into the content-addressed store (``store.py``), and each node fetches them into its own cache;
  outputs come back the same way and are written into OUT by the driver. Each task writes its record into the
  store too, so a run that lost its driver is recovered by the next one without converting again.
- Before anything is submitted, ``fleet.check_capacity`` fails fast (exit 3) when no live node can serve some
  cell; while running, a cell whose only capable node left is cancelled and reported ``lost``.
- Ctrl-C cancels every pending task (a running conversion gets KeyboardInterrupt and removes its staging folder).
"""

from __future__ import annotations

import os
import socket
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from .. import __version__
from ..errors import EXIT_TOOLCHAIN, ToolchainMissing
from . import fleet
from .cells import Cell, here, record, run_cell
from .store import ActorStore, FolderStore, StoreService, cached_input, get_tree, put_input, put_tree

NAMESPACE = "edgeconv"
STORE_ACTOR = "edgeconv-store"
POLL_SECONDS = 1.0
RECHECK_SECONDS = 5.0
MAX_RETRIES = 3


def connect(cluster: str) -> bool:
    """Connect this process to the cluster; returns whether we did (and so must disconnect)."""
    ray = fleet.import_ray()
    if ray.is_initialized():
        return False
    kwargs: dict[str, Any] = {"namespace": NAMESPACE, "log_to_driver": False, "configure_logging": False}
    if cluster == "local":  # this host, advertising its boards and toolchains as `fleet join` would
        resources, labels = local_advertisement()
        kwargs.update(address="local", include_dashboard=False, resources=resources, labels=labels)
    elif cluster == "auto":
        kwargs["address"] = "auto"
    else:
        kwargs["address"] = cluster
    from .local import isolated_start
    from .store import node_cache

    # Ray puts the driver's working and script folders on its workers' sys.path, and a local instance's
    # processes keep the working folder: start it from an empty folder that stays (never the user's).
    empty = node_cache() / "driver-cwd"
    empty.mkdir(parents=True, exist_ok=True)
    try:
        with isolated_start(empty):
            ray.init(**kwargs)
    except (ConnectionError, RuntimeError, ValueError, TimeoutError) as exc:
        where = "RAY_ADDRESS or a cluster started on this host" if cluster == "auto" else cluster
        raise ToolchainMissing(f"cannot reach a Ray cluster at {where}: {' '.join(str(exc).split())[:200]}",
                               stage="fleet", hint="start one with `ray start --head`, or give --cluster local") from None
    return True


def local_advertisement() -> tuple[dict[str, float], dict[str, str]]:
    """What ``--cluster local`` advertises: this host's inventory boards, ready toolchains and runtimes."""
    return fleet.advertisement(fleet.local_boards()[1], fleet.host_toolchains(), fleet.host_runtimes(),
                               os.cpu_count() or 1)


def cluster_nodes() -> list[fleet.NodeView]:
    import ray

    return fleet.node_views(ray.nodes())


# -- actors --------------------------------------------------------------------------------------------------------
def store_actor(root: str | None = None):
    """The store's actor on the head node (created once, detached: it outlives this driver)."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    head = next((n for n in cluster_nodes() if n.alive and n.head), None)
    strategy = NodeAffinitySchedulingStrategy(head.node_id, soft=False) if head else "DEFAULT"
    actor = ray.remote(StoreService).options(
        name=STORE_ACTOR, namespace=NAMESPACE, lifetime="detached", get_if_exists=True, num_cpus=0,
        scheduling_strategy=strategy, max_restarts=-1,
    ).remote(root)
    return actor


class BoardService:
    """One physical board: runs the cells given to it one at a time (``max_concurrency=1``), on its node."""

    def __init__(self, board: str, kind: str) -> None:
        self.board, self.kind = board, kind

    def version(self) -> str:
        return __version__

    def run(self, cell: Cell, inputs: dict[str, Any], store_root: str | None, run: str) -> dict[str, Any]:
        return remote_cell(cell, inputs, store_root, run, board=self.board)


def board_actor(node: fleet.NodeView, board: str, kind: str):
    """The actor of ``board`` on ``node``; an actor left by another edgeconv version is replaced."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    name = f"edgeconv-board.{node.node_id[:12]}.{board}"

    def make():
        return ray.remote(BoardService).options(
            name=name, namespace=NAMESPACE, lifetime="detached", get_if_exists=True, num_cpus=0, max_concurrency=1,
            resources={fleet.board_resource(kind): 1},
            scheduling_strategy=NodeAffinitySchedulingStrategy(node.node_id, soft=False),
        ).remote(board, kind)

    actor = make()
    if ray.get(actor.version.remote()) != __version__:
        ray.kill(actor)
        actor = make()
    return actor


# -- the task ------------------------------------------------------------------------------------------------------
def open_store(store_root: str | None):
    if store_root is not None:
        return FolderStore(store_root)
    import ray

    return ActorStore(ray.get_actor(STORE_ACTOR, namespace=NAMESPACE))


def remote_cell(cell: Cell, inputs: dict[str, Any], store_root: str | None, run: str,
                board: str | None = None) -> dict[str, Any]:
    """On a node: fetch the inputs (once per node), convert, put the output into the store, return the record."""
    import ray

    ctx = ray.get_runtime_context()
    placement = {"backend": "ray", "node_id": ctx.get_node_id(), "host": socket.gethostname(),
                 "ip": ray.util.get_node_ip_address(), "board": board}
    store = open_store(store_root)
    try:  # progress: which node started which cell (fire and forget, best effort)
        ray.get_actor(STORE_ACTOR, namespace=NAMESPACE).event.remote(
            run, {"event": "started", "key": cell.key, "id": cell.id, "t": time.time(), **placement})
    except Exception:  # noqa: S110
        pass
    started = time.monotonic()
    try:
        local = {k: str(cached_input(store, ref, name)) for k, (ref, name) in inputs.items()}
    except Exception as exc:  # a damaged store or a full disk: this cell's error, not the run's
        return record(cell, status="error", exit_code=EXIT_TOOLCHAIN, placement={**here(), **placement},
                      error=f"could not fetch the inputs from the store: {type(exc).__name__}: {exc}",
                      seconds=time.monotonic() - started)
    with tempfile.TemporaryDirectory(prefix="edgeconv-cell-out-") as tmp:
        out = Path(tmp) / cell.folder.replace("/", "_")
        rec = run_cell(cell, out, inputs=local, place=board, placement=placement)
        if rec["output"] is not None and out.is_dir():
            rec["artifacts"] = put_tree(store, out)
    store.put_result(cell.key, rec)
    return rec


def _task(cell: Cell, inputs: dict[str, Any], store_root: str | None, run: str) -> dict[str, Any]:
    return remote_cell(cell, inputs, store_root, run)


class RayBackend:
    name = "ray"

    def __init__(self, cluster: str, *, store: Path | None = None, recover: bool = True,
                 num_cpus_per_cell: float = 1.0) -> None:
        self.cluster = cluster
        self.store_root = str(Path(store).absolute()) if store is not None else None
        self.recover = recover
        self.num_cpus = num_cpus_per_cell

    def describe(self) -> dict[str, Any]:
        return {"backend": "ray", "cluster": self.cluster, "store": self.store_root or "head"}

    def prepare(self, cells: list[Cell]) -> None:
        """Connect, and fail fast (exit 3, one line) when no live node can serve some cell."""
        fleet.import_ray()
        self.connected = connect(self.cluster)
        fleet.check_capacity(cells, cluster_nodes())

    def close(self) -> None:
        if getattr(self, "connected", False):
            import ray

            ray.shutdown()
            self.connected = False

    def run(self, cells: list[Cell], out: Path, events: Callable[[dict[str, Any]], None]) -> Iterator[dict[str, Any]]:
        import ray

        if not cells:
            return
        actor = store_actor()
        store = FolderStore(self.store_root) if self.store_root else ActorStore(actor)
        yield from _Run(self, ray, cells, out, events, store, actor, cluster_nodes()).run()


class _Run:
    """One run's state on the driver: the submitted cells, their progress events, the results coming back."""

    def __init__(self, backend: RayBackend, ray: Any, cells: list[Cell], out: Path,
                 events: Callable[[dict[str, Any]], None], store: Any, actor: Any, nodes: list[fleet.NodeView]):
        self.b, self.ray, self.cells, self.out, self.events = backend, ray, cells, out, events
        self.store, self.actor, self.nodes = store, actor, nodes
        self.id = uuid.uuid4().hex
        self.seen_events = 0
        self.attempts: dict[str, list[dict[str, Any]]] = {}

    def run(self) -> Iterator[dict[str, Any]]:
        todo = []
        for cell in self.cells:
            rec = self._recovered(cell) if self.b.recover else None
            if rec is not None:
                yield rec
            else:
                todo.append(cell)
        pending = self._submit(todo)
        try:
            yield from self._collect(pending)
        except BaseException:
            for ref in pending:  # Ctrl-C (or a failure here): nothing keeps running for this driver
                try:
                    self.ray.cancel(ref, recursive=True)
                except Exception:  # noqa: S112 (already finished, or its actor is gone)
                    continue
            raise
        finally:
            try:
                self.actor.forget.remote(self.id)
            except Exception:  # noqa: S110 (the head went away: nothing to forget)
                pass

    def _recovered(self, cell: Cell) -> dict[str, Any] | None:
        """A result a previous driver did not live to collect (found in the store by the cell's key)."""
        rec = self.store.get_result(cell.key)
        if not rec or rec.get("status") not in ("pass", "fail", "not-run"):  # an error may be this run's to fix
            return None
        if not self._materialize(rec, cell):
            return None
        rec.setdefault("placement", {})["recovered_from_store"] = True
        return rec

    def _inputs(self, cell: Cell, uploaded: dict[str, Any]) -> dict[str, Any]:
        out = {}
        for k in ("source", "data", "calib"):
            path = getattr(cell, k)
            if path is not None:
                if path not in uploaded:
                    uploaded[path] = put_input(self.store, Path(path))
                out[k] = (uploaded[path], Path(path).name)
        return out

    def _submit(self, cells: list[Cell]) -> dict[Any, Cell]:
        ray = self.ray
        uploaded: dict[str, Any] = {}
        task = ray.remote(_task)
        boards = _BoardPicker(self.nodes)
        pending: dict[Any, Cell] = {}
        for cell in cells:
            inputs = self._inputs(cell, uploaded)
            if cell.board:
                ref = boards.actor_for(cell).run.remote(cell, inputs, self.b.store_root, self.id)
            else:
                resources = {fleet.toolchain_resource(t): 1 for t in cell.toolchains}
                ref = task.options(num_cpus=self.b.num_cpus, resources=resources or None, max_retries=MAX_RETRIES,
                                   retry_exceptions=False, name=f"edgeconv-cell {cell.id}").remote(
                    cell, inputs, self.b.store_root, self.id)
            pending[ref] = cell
        return pending

    def _collect(self, pending: dict[Any, Cell]) -> Iterator[dict[str, Any]]:
        last_check = time.monotonic()
        while pending:
            ready, _ = self.ray.wait(list(pending), num_returns=1, timeout=POLL_SECONDS)
            self._drain_events()
            for ref in ready:
                cell = pending.pop(ref)
                yield self._finish(ref, cell)
            if time.monotonic() - last_check > RECHECK_SECONDS:
                last_check = time.monotonic()
                yield from self._orphans(pending)

    def _finish(self, ref: Any, cell: Cell) -> dict[str, Any]:
        try:
            rec = self.ray.get(ref)
        except self.ray.exceptions.RayError as exc:
            text = " ".join(str(exc).split())[:300]
            return self._lost(cell, f"the Ray worker or node running it was lost ({type(exc).__name__}: {text})")
        if rec.get("artifacts") and not self._materialize(rec, cell):
            return self._lost(cell, "its output could not be fetched from the store")
        self._drain_events()
        rec["placement"]["attempts"] = self.attempts.get(cell.key, [])
        return rec

    def _materialize(self, rec: dict[str, Any], cell: Cell) -> bool:
        try:
            if rec.get("artifacts"):
                get_tree(self.store, rec["artifacts"], self.out / cell.folder)
            return True
        except (OSError, ValueError, self.ray.exceptions.RayError):
            return False

    def _lost(self, cell: Cell, why: str) -> dict[str, Any]:
        return record(cell, status="lost", exit_code=EXIT_TOOLCHAIN, error=why,
                      placement={**here(backend="ray"), "attempts": self.attempts.get(cell.key, [])})

    def _drain_events(self) -> None:
        try:
            new = self.ray.get(self.actor.events_since.remote(self.id, self.seen_events), timeout=10)
        except Exception:  # progress is best effort: never a reason to fail the run
            return
        self.seen_events += len(new)
        for ev in new:
            self.attempts.setdefault(ev["key"], []).append(
                {k: ev.get(k) for k in ("node_id", "host", "ip", "board", "t")})
            where = " ".join(x for x in (ev.get("host"), (ev.get("node_id") or "")[:8],
                                         ev.get("board") and f"board {ev['board']}") if x)
            self.events({**ev, "where": where})

    def _orphans(self, pending: dict[Any, Cell]) -> Iterator[dict[str, Any]]:
        """Cells whose every capable node left: cancel and report them instead of waiting forever."""
        nodes = cluster_nodes()
        for ref, cell in list(pending.items()):
            missing = fleet.unmet(set(fleet.cell_needs(cell)), nodes)
            if missing:
                pending.pop(ref)
                try:
                    self.ray.cancel(ref, force=True)
                except Exception:  # noqa: S110
                    pass
                yield self._lost(cell, f"no live node offers {', '.join(missing)} any more (its node left)")


class _BoardPicker:
    """Board cells to board actors: by name, or round-robin over the boards of a kind."""

    def __init__(self, nodes: list[fleet.NodeView]) -> None:
        self.nodes = nodes
        self.actors: dict[tuple[str, str], Any] = {}
        self.turn: dict[str, int] = {}

    def actor_for(self, cell: Cell):
        need = fleet.board_resource(cell.board_kind) if cell.board_kind else f"board {cell.board_name}"
        choices = fleet.boards_for(need, self.nodes)
        i = self.turn.get(need, 0)
        self.turn[need] = i + 1
        node, name, kind = choices[i % len(choices)]
        key = (node.node_id, name)
        if key not in self.actors:
            self.actors[key] = board_actor(node, name, kind)
        return self.actors[key]
