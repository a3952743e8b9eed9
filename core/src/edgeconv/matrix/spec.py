"""The matrix spec (YAML): models, targets, precisions, budgets, boards. Untrusted input, checked key by key.

A spec is data. It is read with a safe YAML loader that also refuses duplicate keys and aliases (an alias can
make a small file expand into a huge document); every key is checked (an unknown one is an error with "did you
mean"), every value's type and range too. Paths are relative to the spec's folder and must stay inside it (after
symlinks): a spec cannot make edgeconv read ``/etc/...`` or ``../../secrets``. The person running the command --
not the spec -- may lift that with ``allow_outside=True`` (``--allow-outside``): then absolute paths and paths
leaving the folder are taken as given. Every error is one line naming the spec file and the key (exit 2).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import BadInput, EdgeconvError
from ..records import PRECISIONS, did_you_mean
from ..report import Budgets

SCHEMA = "edgeconv.matrix/1"
MAX_SPEC_BYTES = 1_000_000
AUTO = "auto"

SPEC_KEYS = ("schema", "models", "targets", "precisions", "budgets", "boards", "runs", "verify_samples", "memory")
MODEL_KEYS = ("name", "source", "data", "calib", "input_shapes", "task", "task_options", "from")
TARGET_KEYS = ("name", "options")
BOARD_KEYS = ("kind", "name", "targets", "precisions")
BUDGET_KEYS = ("max_size", "max_latency", "max_accuracy_drop")

# Model names, board names and board kinds become folder names and Ray resource/label names: keep them plain.
NAME_RE = re.compile(r"[A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?")


@dataclass(frozen=True)
class ModelEntry:
    name: str
    source: Path
    data: Path | None = None
    calib: Path | None = None
    input_shapes: dict[str, list[list[int]]] | None = None
    task: str | None = None
    task_options: dict[str, Any] | None = None
    source_form: str | None = None


@dataclass(frozen=True)
class TargetEntry:
    name: str
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class BoardEntry:
    """Verify cells on a board: any board of ``kind``, or the board called ``name``."""

    kind: str | None = None
    name: str | None = None
    targets: tuple[str, ...] | None = None
    precisions: tuple[str, ...] | None = None

    @property
    def label(self) -> str:
        return f"kind={self.kind}" if self.kind else f"name={self.name}"


@dataclass(frozen=True)
class Spec:
    path: Path
    models: tuple[ModelEntry, ...]
    targets: tuple[TargetEntry, ...]
    precisions: tuple[str, ...] | None  # None: each target's default precision
    budgets: Budgets
    boards: tuple[BoardEntry, ...] = ()
    runs: int = 50
    verify_samples: int | None = None
    memory: bool = True  # measure each artifact's peak memory (a child process per cell)
    budgets_given: dict[str, Any] = field(default_factory=dict)


class _Checker:
    """Builds the one-line errors: ``SPEC: models[0].source: no such file``."""

    def __init__(self, path: Path, allow_outside: bool) -> None:
        self.path = path
        self.base = path.parent.resolve()
        self.allow_outside = allow_outside

    def bad(self, where: str, why: str) -> BadInput:
        return BadInput(f"{where}: {why}" if where else why, file=self.path, stage="spec")

    def mapping(self, value: Any, where: str, keys: tuple[str, ...], required: tuple[str, ...] = ()) -> dict:
        if not isinstance(value, dict):
            raise self.bad(where, f"must be a mapping (with keys {', '.join(keys)}), not {_kind(value)}")
        for key in value:
            if not isinstance(key, str):
                raise self.bad(where, f"key {key!r} is not a string")
            if key not in keys:
                raise self.bad(where, f"unknown key {key!r} (allowed: {', '.join(keys)}){did_you_mean(key, keys)}")
        for key in required:
            if value.get(key) is None:
                raise self.bad(where, f"{key!r} is required")
        return value

    def free_mapping(self, value: Any, where: str) -> dict:
        """A mapping whose keys the receiver checks (target options, task options): plain data only."""
        if not isinstance(value, dict):
            raise self.bad(where, f"must be a mapping, not {_kind(value)}")
        _plain(self, value, where)
        return value

    def seq(self, value: Any, where: str, *, empty_ok: bool = False) -> list:
        if not isinstance(value, list):
            raise self.bad(where, f"must be a list, not {_kind(value)}")
        if not value and not empty_ok:
            raise self.bad(where, "must not be empty")
        return value

    def string(self, value: Any, where: str) -> str:
        if not isinstance(value, str) or not value.strip():
            raise self.bad(where, f"must be a non-empty string, not {_kind(value)}")
        if "\x00" in value or "\n" in value:
            raise self.bad(where, "must be one line of text")
        return value

    def name(self, value: Any, where: str) -> str:
        text = self.string(value, where)
        if not NAME_RE.fullmatch(text):
            raise self.bad(where, f"{text!r} must be 1-63 letters, digits, '.', '_' or '-' (starting and ending "
                                  "with a letter or digit)")
        return text

    def integer(self, value: Any, where: str, low: int, high: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise self.bad(where, f"must be a whole number from {low} to {high}, not {value!r}")
        return value

    def path_(self, value: Any, where: str) -> Path:
        text = self.string(value, where)
        given = Path(text)
        if given.is_absolute() and not self.allow_outside:
            raise self.bad(where, f"{text!r} is an absolute path; a spec names files relative to its folder "
                                  "(give --allow-outside to take paths outside it)")
        resolved = (self.base / given).resolve()
        if not self.allow_outside and resolved != self.base and self.base not in resolved.parents:
            raise self.bad(where, f"{text!r} points outside the spec's folder {str(self.base)!r} "
                                  "(give --allow-outside to take paths outside it)")
        if not resolved.exists():
            raise self.bad(where, f"{text!r}: no such file or folder")
        return resolved


def _kind(value: Any) -> str:
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean", type(None): "empty"}.get(
        type(value), f"a {type(value).__name__}")


def _read_yaml(path: Path) -> Any:
    try:
        import yaml
    except ImportError:
        from ..errors import ToolchainMissing

        raise ToolchainMissing("reading a matrix spec needs PyYAML", file=path, stage="spec",
                               hint='pip install "pyyaml>=6"') from None
    try:
        size = path.stat().st_size
        if size > MAX_SPEC_BYTES:
            raise BadInput(f"the spec is {size} bytes; a spec is at most {MAX_SPEC_BYTES}", file=path, stage="spec")
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise BadInput(f"cannot read the spec ({' '.join(why.split())[:200]})", file=path, stage="spec") from None

    class Loader(yaml.SafeLoader):
        def compose_node(self, parent, index):  # no aliases: a small file must stay a small document
            if self.check_event(yaml.AliasEvent):
                event = self.peek_event()
                raise yaml.MarkedYAMLError(problem="aliases (*name) are not allowed in a spec",
                                           problem_mark=event.start_mark)
            return super().compose_node(parent, index)

        def construct_mapping(self, node, deep=False):
            seen = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=deep)
                if isinstance(key, (str, int, float, bool)) and key in seen:
                    raise yaml.MarkedYAMLError(problem=f"duplicate key {key!r}", problem_mark=key_node.start_mark)
                seen.add(key) if isinstance(key, (str, int, float, bool)) else None
            return super().construct_mapping(node, deep=deep)

    try:
        return yaml.load(text, Loader=Loader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise BadInput(f"not valid YAML: {where}{' '.join(str(problem).split())[:200]}", file=path,
                       stage="spec") from None


def load_spec(path: str | Path, *, allow_outside: bool = False, known_targets: Any = None) -> Spec:
    """Read and check a spec. ``known_targets``: a callable ``name -> Target | None`` that raises ``BadInput`` for
    an unknown target name (default: the installed plugins' registry)."""
    path = Path(path)
    if not path.is_file():
        raise BadInput("no such spec file" if not path.exists() else "the spec is not a file", file=path,
                       stage="spec")
    check = _Checker(path, allow_outside)
    doc = _read_yaml(path)
    if doc is None:
        raise check.bad("", "the spec is empty")
    check.mapping(doc, "", SPEC_KEYS, required=("models", "targets"))
    if "schema" in doc and doc["schema"] != SCHEMA:
        raise check.bad("schema", f"must be {SCHEMA!r}, not {doc['schema']!r}")
    models = _models(check, doc["models"])
    targets = _targets(check, doc["targets"], known_targets)
    precisions = _precisions(check, doc["precisions"], "precisions") if doc.get("precisions") is not None else None
    budgets, given = _budgets(check, doc.get("budgets"))
    boards = _boards(check, doc.get("boards"), {t.name for t in targets})
    runs = check.integer(doc["runs"], "runs", 1, 100_000) if doc.get("runs") is not None else 50
    samples = doc.get("verify_samples")
    samples = check.integer(samples, "verify_samples", 1, 10_000_000) if samples is not None else None
    memory = doc.get("memory", True)
    if not isinstance(memory, bool):
        raise check.bad("memory", f"must be true or false, not {memory!r}")
    return Spec(path=path.resolve(), models=models, targets=targets, precisions=precisions, budgets=budgets,
                boards=boards, runs=runs, verify_samples=samples, memory=memory, budgets_given=given)


def _models(check: _Checker, value: Any) -> tuple[ModelEntry, ...]:
    out: list[ModelEntry] = []
    for i, item in enumerate(check.seq(value, "models")):
        where = f"models[{i}]"
        check.mapping(item, where, MODEL_KEYS, required=("name", "source"))
        name = check.name(item["name"], f"{where}.name")
        if name in {m.name for m in out}:
            raise check.bad(f"{where}.name", f"{name!r} is given twice")
        opt = {k: check.path_(item[k], f"{where}.{k}") for k in ("data", "calib") if item.get(k) is not None}
        task = check.string(item["task"], f"{where}.task") if item.get("task") is not None else None
        form = check.string(item["from"], f"{where}.from") if item.get("from") is not None else None
        task_options = item.get("task_options")
        if task_options is not None:
            check.free_mapping(task_options, f"{where}.task_options")
        out.append(ModelEntry(name=name, source=check.path_(item["source"], f"{where}.source"),
                              input_shapes=_shapes(check, item.get("input_shapes"), f"{where}.input_shapes"),
                              task=task, task_options=task_options, source_form=form, **opt))
    return tuple(out)


def _plain(check: _Checker, value: Any, where: str, depth: int = 0) -> None:
    """Options are plain data: strings, numbers, booleans, lists and mappings of them (no dates, no binary)."""
    if depth > 8:
        raise check.bad(where, "is nested too deeply")
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                raise check.bad(where, f"key {k!r} is not a string")
            _plain(check, v, f"{where}.{k}", depth + 1)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _plain(check, v, f"{where}[{i}]", depth + 1)
    elif not isinstance(value, (str, int, float, bool, type(None))):
        raise check.bad(where, f"must be a string, number, boolean, list or mapping, not {_kind(value)}")


def _shapes(check: _Checker, value: Any, where: str) -> dict[str, list[list[int]]] | None:
    """``{input: [1, 3, 224, 224]}``, or a (min, opt, max) profile ``{input: [[1,3,224,224], [8,...], [32,...]]}``."""
    if value is None:
        return None
    if not isinstance(value, dict) or not value:
        raise check.bad(where, "must be a mapping of input name to shape, e.g. {input: [1, 3, 224, 224]}")
    out: dict[str, list[list[int]]] = {}
    for name, shape in value.items():
        key = f"{where}.{name}"
        check.string(name, key)
        shapes = shape if isinstance(shape, list) and shape and all(isinstance(s, list) for s in shape) else [shape]
        for s in shapes:
            if not isinstance(s, list) or not s or any(isinstance(d, bool) or not isinstance(d, int) or d <= 0
                                                       for d in s):
                raise check.bad(key, f"must be a list of whole numbers > 0 (or three of them: min, opt, max), "
                                     f"not {shape!r}")
        if len(shapes) not in (1, 3) or len({len(s) for s in shapes}) != 1:
            raise check.bad(key, "give one shape, or three of one rank (min, opt, max)")
        out[name] = [list(s) for s in shapes]
    return out


def _targets(check: _Checker, value: Any, known_targets: Any) -> tuple[TargetEntry, ...]:
    if known_targets is None:
        known_targets = _registry_check
    out: list[TargetEntry] = []
    for i, item in enumerate(check.seq(value, "targets")):
        where = f"targets[{i}]"
        if isinstance(item, str):
            item = {"name": item}
        check.mapping(item, where, TARGET_KEYS, required=("name",))
        name = check.string(item["name"], f"{where}.name")
        try:
            target = known_targets(name)
        except EdgeconvError as exc:
            if exc.exit_code == BadInput.exit_code:
                raise check.bad(f"{where}.name", exc.cause) from None
            target = None  # a known target whose plugin is not installed here: each of its cells says so (exit 3)
        options = item.get("options") or {}
        check.free_mapping(options, f"{where}.options")
        if target is not None and hasattr(target, "validate_options"):
            try:
                target.validate_options(options)
            except EdgeconvError as exc:
                raise check.bad(f"{where}.options", exc.cause) from None
        if name in {t.name for t in out}:
            raise check.bad(f"{where}.name", f"{name!r} is given twice")
        out.append(TargetEntry(name, dict(options)))
    return tuple(out)


def _registry_check(name: str) -> Any:
    from ..plugins import registry

    return registry().target(name)


def _precisions(check: _Checker, value: Any, where: str) -> tuple[str, ...]:
    allowed = (*PRECISIONS, AUTO)
    out: list[str] = []
    for i, p in enumerate(check.seq(value, where)):
        text = check.string(p, f"{where}[{i}]")
        if text not in allowed:
            raise check.bad(f"{where}[{i}]", f"unknown precision {text!r} (allowed: {', '.join(allowed)})"
                                             f"{did_you_mean(text, allowed)}")
        if text in out:
            raise check.bad(f"{where}[{i}]", f"{text!r} is given twice")
        out.append(text)
    return tuple(out)


def _budgets(check: _Checker, value: Any) -> tuple[Budgets, dict[str, Any]]:
    if value is None:
        return Budgets(), {}
    check.mapping(value, "budgets", BUDGET_KEYS)
    given = {}
    for key, v in value.items():
        if v is None:
            continue
        if isinstance(v, bool) or not isinstance(v, (int, float, str)):
            raise check.bad(f"budgets.{key}", f"must be a number or a string like 25MB / 10ms / 0.5pp, not {_kind(v)}")
        if isinstance(v, (int, float)) and v < 0:
            raise check.bad(f"budgets.{key}", f"must not be negative, not {v!r}")
        given[key] = v
    try:
        return Budgets.parse(**given), given
    except BadInput as exc:
        raise check.bad("budgets", exc.cause.replace("--max-", "max_").replace("-", "_", 1)) from None


def _boards(check: _Checker, value: Any, target_names: set[str]) -> tuple[BoardEntry, ...]:
    if value is None:
        return ()
    out: list[BoardEntry] = []
    for i, item in enumerate(check.seq(value, "boards", empty_ok=True)):
        where = f"boards[{i}]"
        if isinstance(item, str):
            item = {"kind": item}
        check.mapping(item, where, BOARD_KEYS)
        if (item.get("kind") is None) == (item.get("name") is None):
            raise check.bad(where, "give exactly one of 'kind' (any board of that kind) or 'name' (that board)")
        kind = check.name(item["kind"], f"{where}.kind") if item.get("kind") is not None else None
        name = check.name(item["name"], f"{where}.name") if item.get("name") is not None else None
        targets = None
        if item.get("targets") is not None:
            targets = tuple(check.string(t, f"{where}.targets[{j}]") for j, t in
                            enumerate(check.seq(item["targets"], f"{where}.targets")))
            for j, t in enumerate(targets):
                if t not in target_names:
                    raise check.bad(f"{where}.targets[{j}]", f"{t!r} is not one of the spec's targets "
                                                             f"({', '.join(sorted(target_names))})"
                                                             f"{did_you_mean(t, target_names)}")
        precisions = (_precisions(check, item["precisions"], f"{where}.precisions")
                      if item.get("precisions") is not None else None)
        entry = BoardEntry(kind=kind, name=name, targets=targets, precisions=precisions)
        if entry.label in {b.label for b in out}:
            raise check.bad(where, f"board {entry.label} is given twice")
        out.append(entry)
    return tuple(out)
