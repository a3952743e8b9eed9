"""The fleet: Ray nodes that advertise boards and toolchains, and the checks made before a matrix is submitted.

What a host advertises when it joins (``edgeconv fleet join HEAD --boards boards.toml`` wraps ``ray start``):

- a custom **resource** per attached board kind, ``board:<kind>`` = the number of such boards, and one per ready
  isolated toolchain environment, ``toolchain:<name>`` = the host's CPU count (a cell that needs one asks for 1);
- **labels** (Ray node labels; values are label-safe text): ``edgeconv/board.<board name>`` = its kind, one per
  board; ``edgeconv/toolchain.<name>`` = its main package version (or ``ready``); ``edgeconv/runtime.<dist>`` =
  the version of each runtime installed on the host (onnxruntime, openvino, ai-edge-litert, tensorflow,
  tensorrt); ``edgeconv/version`` = edgeconv's version.

A board cell goes to the board's actor (one named actor per physical board, on the node that has it, running one
cell at a time), whose conversion verifies on the board through the board path (``place=`` the board's name in
that host's ``edgeconv boards`` inventory). Ray waits forever for a resource no node has, so ``check_capacity``
compares what the cells need with what the live nodes offer, before anything is submitted.

The boards file has the inventory's format (``[boards.NAME]`` with ``kind = ...``; docs/boards.md); other fields
of an entry (url, python, key, ...) belong to the board path and are not read here.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import BadInput, ToolchainMissing
from .spec import NAME_RE

LABEL = "edgeconv"  # label key prefix (a DNS label): edgeconv/board.<name>, edgeconv/toolchain.<name>, ...
RUNTIME_DISTS = ("onnxruntime", "openvino", "ai-edge-litert", "tflite-runtime", "tensorflow", "tensorrt")
FLEET_HINT = 'pip install "edgeconv[fleet]" (Ray 2.60)'
_LABEL_VALUE = re.compile(r"[^A-Za-z0-9_.-]")


def board_resource(kind: str) -> str:
    return f"board:{kind}"


def toolchain_resource(name: str) -> str:
    return f"toolchain:{name}"


def label_value(text: str) -> str:
    """Any text as a Ray label value: at most 63 of [A-Za-z0-9_.-], starting and ending alphanumeric."""
    value = _LABEL_VALUE.sub("_", str(text))[:63].strip("_.-")
    return value or "unknown"


def import_ray():
    try:
        import ray
    except ImportError:
        raise ToolchainMissing("running on a Ray cluster needs Ray, which is not installed", stage="fleet",
                               hint=FLEET_HINT) from None
    return ray


# -- a host's boards and what it advertises ------------------------------------------------------------------------
@dataclass(frozen=True)
class HostBoard:
    name: str
    kind: str


def read_boards(path: Path) -> list[HostBoard]:
    """The boards attached to this host, from a boards file in the inventory's format."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise BadInput(f"cannot read the boards file ({why})", file=path, stage="fleet") from None
    except tomllib.TOMLDecodeError as exc:
        raise BadInput(f"the boards file is not valid TOML: {' '.join(str(exc).split())}", file=path,
                       stage="fleet") from None
    extra = sorted(set(data) - {"boards"})
    if extra or not isinstance(data.get("boards", {}), dict):
        raise BadInput(f"unexpected content {extra[0] if extra else 'boards'!r}: a boards file holds [boards.NAME] "
                       "tables only", file=path, stage="fleet")
    out = []
    for name, fields in data.get("boards", {}).items():
        if not NAME_RE.fullmatch(name) or len(name) > 50:
            raise BadInput(f"board name {name!r}: 1-50 letters, digits, '.', '_' or '-'", file=path, stage="fleet")
        if not isinstance(fields, dict):
            raise BadInput(f"board {name!r} is not a table", file=path, stage="fleet")
        kind = fields.get("kind", "generic")
        if not isinstance(kind, str) or not NAME_RE.fullmatch(kind):
            raise BadInput(f"board {name!r}: kind {kind!r} must be 1-63 letters, digits, '.', '_' or '-'", file=path,
                           stage="fleet")
        out.append(HostBoard(name, kind))
    return out


def local_boards() -> tuple[Path, list[HostBoard]]:
    """This host's boards: its boards inventory (``edgeconv boards``), when there is one."""
    from ..places.inventory import inventory_path

    path = inventory_path()
    return path, (read_boards(path) if path.is_file() else [])


def assign_local_boards(cells: list[Any]) -> dict[str, str]:
    """Board cells to boards of this host's inventory (round-robin over a kind's boards): cell key -> board name.
    No board for some cell: fail fast, in one line (exit 3)."""
    path, boards = local_boards()
    out: dict[str, str] = {}
    missing: dict[str, list[str]] = {}
    turn: dict[str, int] = {}
    for c in cells:
        names = [b.name for b in boards if (b.kind == c.board_kind if c.board_kind else b.name == c.board_name)]
        if not names:
            missing.setdefault(c.board, []).append(c.id)
            continue
        i = turn.get(c.board, 0)
        turn[c.board] = i + 1
        out[c.key] = names[i % len(names)]
    if missing:
        parts = "; ".join(f"{b} (needed by {len(ids)} cell(s), e.g. {ids[0]})" for b, ids in missing.items())
        raise ToolchainMissing(f"no board {parts} in this host's boards inventory", file=path, stage="fleet",
                               hint="edgeconv boards add NAME ssh://user@host --kind KIND, or run on a fleet "
                                    "with --cluster")
    return out


def host_toolchains() -> dict[str, str]:
    """The isolated toolchain environments ready on this host: name -> its first package's version (or 'ready')."""
    from .. import toolchain
    from ..plugins import registry

    out = {}
    for name, tc in sorted(registry().toolchains.items()):
        if toolchain.is_ready(tc):
            versions = toolchain.status(tc).get("versions") or {}
            first = next((v for v in versions.values() if v), None)
            out[name] = first or "ready"
    return out


def host_runtimes() -> dict[str, str]:
    from importlib import metadata

    out = {}
    for dist in RUNTIME_DISTS:
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return out


def advertisement(boards: list[HostBoard], toolchains: dict[str, str], runtimes: dict[str, str],
                  num_cpus: int) -> tuple[dict[str, float], dict[str, str]]:
    """(custom resources, labels) a host joins with."""
    from .. import __version__

    resources: dict[str, float] = {}
    for b in boards:
        resources[board_resource(b.kind)] = resources.get(board_resource(b.kind), 0) + 1
    for name in toolchains:
        resources[toolchain_resource(name)] = float(max(1, num_cpus))
    labels = {f"{LABEL}/version": label_value(__version__)}
    labels.update({f"{LABEL}/board.{b.name}": b.kind for b in boards})
    labels.update({f"{LABEL}/toolchain.{n}": label_value(v) for n, v in toolchains.items()})
    labels.update({f"{LABEL}/runtime.{d}": label_value(v) for d, v in runtimes.items()})
    return resources, labels


def ray_executable() -> list[str]:
    """The ``ray`` command of this environment (beside this Python), else ``python -m`` its CLI module."""
    import sys

    beside = Path(sys.executable).with_name("ray")
    if beside.is_file() and os.access(beside, os.X_OK):
        return [str(beside)]
    return [sys.executable, "-I", "-m", "ray.scripts.scripts"]


def join_argv(head: str, resources: dict[str, float], labels: dict[str, str], *, num_cpus: int | None = None,
              block: bool = False, extra: Iterable[str] = ()) -> list[str]:
    """``ray start --address HEAD --resources JSON --labels k=v,...``: an argument list, never a shell line."""
    if not head or head.startswith("-") or any(c.isspace() for c in head):
        raise BadInput(f"head address {head!r} is not HOST:PORT", stage="fleet")
    argv = [*ray_executable(), "start", "--address", head]
    if resources:
        argv += ["--resources", json.dumps(resources, sort_keys=True)]
    if labels:
        argv += ["--labels", ",".join(f"{k}={v}" for k, v in sorted(labels.items()))]
    if num_cpus is not None:
        argv += ["--num-cpus", str(num_cpus)]
    if block:
        argv.append("--block")
    return argv + list(extra)


# -- what the cluster offers, what cells need ------------------------------------------------------------------------
@dataclass
class NodeView:
    node_id: str
    host: str
    ip: str
    alive: bool
    head: bool
    resources: dict[str, float]
    labels: dict[str, str]
    boards: dict[str, str] = field(default_factory=dict)  # board name -> kind
    toolchains: dict[str, str] = field(default_factory=dict)
    runtimes: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return asdict(self)


def node_views(raw_nodes: list[dict[str, Any]]) -> list[NodeView]:
    """``ray.nodes()`` as views (board, toolchain and runtime labels read back)."""
    out = []
    for n in raw_nodes:
        labels = {str(k): str(v) for k, v in (n.get("Labels") or {}).items()}

        def under(prefix: str, labels: dict[str, str] = labels) -> dict[str, str]:
            return {k[len(prefix):]: v for k, v in labels.items() if k.startswith(prefix)}

        resources = dict(n.get("Resources") or {})
        out.append(NodeView(
            node_id=n.get("NodeID", ""), host=n.get("NodeManagerHostname", ""), ip=n.get("NodeManagerAddress", ""),
            alive=bool(n.get("Alive")), head="node:__internal_head__" in resources, resources=resources,
            labels=labels, boards=under(f"{LABEL}/board."), toolchains=under(f"{LABEL}/toolchain."),
            runtimes=under(f"{LABEL}/runtime."),
        ))
    return out


def cell_needs(cell: Any) -> list[str]:
    """What a cell needs from the cluster, as the names the capacity check and its messages use."""
    needs = [toolchain_resource(t) for t in cell.toolchains]
    if cell.board_kind:
        needs.append(board_resource(cell.board_kind))
    if cell.board_name:
        needs.append(f"board {cell.board_name}")
    return needs


def boards_for(need: str, nodes: list[NodeView]) -> list[tuple[NodeView, str, str]]:
    """The live (node, board name, kind) that can serve a board need (``board:<kind>`` or ``board <name>``)."""
    out = []
    for n in nodes:
        if not n.alive:
            continue
        for name, kind in sorted(n.boards.items()):
            if need == f"board {name}" or (need == board_resource(kind) and n.resources.get(need, 0) >= 1):
                out.append((n, name, kind))
    return out


def unmet(needs: set[str], nodes: list[NodeView]) -> list[str]:
    missing = []
    for need in sorted(needs):
        if need.startswith("board"):
            ok = bool(boards_for(need, nodes))
        else:
            ok = any(n.alive and n.resources.get(need, 0) >= 1 for n in nodes)
        if not ok:
            missing.append(need)
    return missing


def check_capacity(cells: list[Any], nodes: list[NodeView]) -> None:
    """Fail fast, in one line (exit 3), when no live node can serve some cell (Ray would wait forever)."""
    by_need: dict[str, list[str]] = {}
    for c in cells:
        for need in cell_needs(c):
            by_need.setdefault(need, []).append(c.id)
    missing = unmet(set(by_need), nodes)
    if not missing:
        return
    offered = sorted({k for n in nodes if n.alive for k in n.resources if k.startswith(("board:", "toolchain:"))}
                     | {f"board {b}" for n in nodes if n.alive for b in n.boards})
    parts = [f"{m} (needed by {len(by_need[m])} cell(s), e.g. {by_need[m][0]})" for m in missing]
    alive = sum(1 for n in nodes if n.alive)
    raise ToolchainMissing(
        f"no live node of the cluster offers {'; '.join(parts)}; its {alive} node(s) offer "
        f"{', '.join(offered) or 'no boards or toolchains'}", stage="fleet",
        hint="start a host with the board or toolchain: edgeconv fleet join HEAD --boards boards.toml",
    )
