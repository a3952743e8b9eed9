"""One conversion, asked for once: the frozen ``ConversionRequest`` the CLI, the Python API, ``--precision auto``
and the matrix all build the same way, checked before any work starts.

Every number is bounded here (a thread count of 100000 used to crash a child after a minute; a negative seed or
run count was taken as given): a value out of range is bad input (exit 2) naming the option.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from .data import Preprocess
from .errors import BadInput
from .model import check_shape_sizes, parse_input_shapes
from .report import Budgets

MAX_THREADS = 1024
MAX_RUNS = 1_000_000
MAX_SEED = 2**32 - 1
PRECISION_AUTO = "auto"


def _frozen(mapping: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return MappingProxyType(dict(mapping or {}))


def check_int(name: str, value: Any, low: int, high: int | None = None, *, optional: bool = False) -> int | None:
    """``value`` as an int within [low, high], else ``BadInput`` naming the option (``--threads``)."""
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        try:
            if isinstance(value, bool) or float(value) != int(value):
                raise ValueError
            value = int(value)
        except (TypeError, ValueError):
            raise BadInput(f"{name} {value!r} is not a whole number", stage="options") from None
    if value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise BadInput(f"{name} {value} is out of range: it must be {bound}", stage="options")
    return value


def check_ratio(value: Any) -> float:
    """A channel ratio in (0, 1): ``0.3`` or ``"30%"`` (``--prune``); anything else is a one-line ``BadInput``."""
    text = str(value).strip()
    try:
        ratio = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        raise BadInput(f"--prune {value!r} is not a number (give a channel ratio such as 0.3)", stage="prune") from None
    if not 0.0 < ratio < 1.0:
        raise BadInput(f"--prune {value!r} must be a channel ratio between 0 and 1 (exclusive), e.g. 0.3",
                       stage="prune")
    return ratio


def profiles(input_shapes: Any) -> dict[str, list[tuple[int, ...]]]:
    """``--input-shape`` values (``["x:1,3,224,224"]``) or a dict ``{name: shape or [min, opt, max]}`` as
    per-input shape lists (one shape, or a min/opt/max profile), checked for size."""
    if not input_shapes:
        return {}
    if isinstance(input_shapes, Mapping):
        out: dict[str, list[tuple[int, ...]]] = {}
        for k, v in input_shapes.items():
            try:
                shapes = [tuple(int(d) for d in v)] if v and isinstance(v[0], int) else [tuple(int(d) for d in s) for s in v]
            except (TypeError, ValueError):
                raise BadInput(f"input shape {k}: {v!r} is not a shape (a list of positive integers)",
                               stage="options") from None
            if any(d <= 0 for s in shapes for d in s):
                raise BadInput(f"input shape {k}: every dimension must be > 0", stage="options")
            out[str(k)] = shapes
        check_shape_sizes(out)
        return out
    return parse_input_shapes(list(input_shapes))


def source_path(source: Any) -> Path | None:
    """The source's file or folder, when it is one (not an in-memory model, not ``file.py:factory``)."""
    if not isinstance(source, (str, Path)):
        return None
    p = Path(source)
    if isinstance(source, str) and ":" in source and not p.exists():
        return Path(source.split(":")[0])  # file.py:factory: the file holds the code
    return p


def stem(source: Any) -> str:
    p = source_path(source)
    return p.stem if p is not None else "model"


@dataclass(frozen=True)
class ConversionRequest:
    """Everything one conversion was asked to do; build it with ``ConversionRequest.build(...)``.

    ``options`` are the target's ``-O`` options as given (the target validates them); ``source_options`` go to the
    importer and the route (``weights``, ``trust_pickle``, ``trust_code``, ``dynamic``, ``exporter``, ``opset``,
    ``prune``, ...). ``place``: a board to verify on (docs/boards.md).
    """

    source: Any
    target: str = "onnxruntime"
    precision: str | None = None
    calibration: Any = None
    data: Any = None
    input_shapes: Mapping[str, list[tuple[int, ...]]] = field(default_factory=lambda: _frozen({}))
    output: Path | None = None
    force: bool = False
    options: Mapping[str, Any] = field(default_factory=lambda: _frozen({}))
    budgets: Budgets = field(default_factory=Budgets)
    thresholds: Mapping[str, float] = field(default_factory=lambda: _frozen({}))
    verify: bool = True
    runs: int = 50
    warmup: int = 5
    threads: int | None = None
    seed: int = 0
    source_form: str | None = None
    via: str | None = None
    preprocess: Preprocess | None = None
    skip_passes: tuple[str, ...] = ()
    memory: bool = True
    label_output: str | None = None
    source_options: Mapping[str, Any] = field(default_factory=lambda: _frozen({}))
    prepare_only: bool = False
    keep_float: tuple[str, ...] = ()
    device: Mapping[str, Any] | None = None
    task: str | None = None
    task_options: Mapping[str, Any] = field(default_factory=lambda: _frozen({}))
    state: Mapping[str, str] = field(default_factory=lambda: _frozen({}))
    verify_samples: int | None = None
    place: str | None = None

    @classmethod
    def build(cls, source: Any, target: str = "onnxruntime", **kwargs: Any) -> ConversionRequest:
        """Check and normalise the arguments of ``edgeconv.convert``; unknown keywords are a ``TypeError``."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(kwargs) - names)
        if unknown:
            raise TypeError(f"convert() got an unexpected keyword argument {unknown[0]!r}")
        kw = dict(kwargs)
        if not isinstance(target, str) or not target:
            raise BadInput(f"the target {target!r} is not a name", stage="options")
        kw["runs"] = check_int("--runs", kw.get("runs", 50), 1, MAX_RUNS)
        kw["warmup"] = check_int("--warmup", kw.get("warmup", 5), 0, MAX_RUNS)
        kw["threads"] = check_int("--threads", kw.get("threads"), 1, MAX_THREADS, optional=True)
        kw["seed"] = check_int("--seed", kw.get("seed", 0), 0, MAX_SEED)
        kw["verify_samples"] = check_int("--verify-samples", kw.get("verify_samples"), 1, optional=True)
        kw["input_shapes"] = _frozen(profiles(kw.get("input_shapes")))
        for key in ("options", "thresholds", "source_options", "task_options", "state"):
            kw[key] = _frozen(kw.get(key))
        if kw["source_options"].get("prune") is not None:  # checked before any work
            kw["source_options"] = _frozen({**kw["source_options"], "prune": check_ratio(kw["source_options"]["prune"])})
        if kw.get("budgets") is None:
            kw["budgets"] = Budgets()
        if kw.get("output") is not None:
            kw["output"] = Path(kw["output"])
        kw["skip_passes"] = tuple(kw.get("skip_passes") or ())
        keep = kw.get("keep_float") or ()
        if isinstance(keep, str):
            keep = keep.split(",")
        kw["keep_float"] = tuple(dict.fromkeys(str(k).strip() for k in keep if str(k).strip()))
        if kw.get("device") is not None:
            kw["device"] = _frozen(kw["device"])
        return cls(source=source, target=target, **kw)

    def replace(self, **changes: Any) -> ConversionRequest:
        return dataclasses.replace(self, **changes)

    @property
    def auto(self) -> bool:
        return self.precision == PRECISION_AUTO

    @property
    def stem(self) -> str:
        return stem(self.source)

    def default_output(self, target: str, precision: str) -> Path:
        return (self.output if self.output is not None else Path.cwd() / f"{self.stem}-{target}-{precision}").absolute()

    def inputs(self) -> list[Path]:
        """The files and folders this conversion reads: never replaced or removed by its output (``--force``)."""
        found = [source_path(self.source), *(_path(v) for v in (self.calibration, self.data))]
        found += [_path(self.source_options.get(k)) for k in ("weights", "prune_data")]
        return [p.absolute() for p in found if p is not None and p.exists()]


def _path(value: Any) -> Path | None:
    if isinstance(value, (str, os.PathLike)) and str(value) not in ("", "random"):
        return Path(value)
    return None
