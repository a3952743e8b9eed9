"""The records plugins register, and option validation.

Each record is one row of a formats table (the ultralytics ``export_formats()`` idea): a
``Target`` says what it is, what it accepts, which options and precisions it allows and
what it needs installed; a ``Importer``, ``Pass`` or ``RunnerSpec`` likewise. The work
itself sits behind lazy references (``"package.module:function"``), so that registering
a plugin never imports a vendor SDK or a framework.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .data import Dataset, Preprocess, load_dataset, random_dataset
from .errors import BadInput
from .model import IOContract, Model
from .report import Budgets

Ref = str | Callable[..., Any]  # "module:attr" or the callable itself

PRECISIONS = ("fp32", "fp16", "bf16", "int8", "int8-dynamic")

# Targets published as separate distributions (plugins/edgeconv-*). When no installed plugin
# registers one, `edgeconv targets` lists it as missing with this hint, and `--to` it exits 3.
# edgeconv never installs anything itself. (No edgeconv distribution is on PyPI yet: from a
# checkout the extra resolves only with the plugin path in the same pip command.)
KNOWN_TARGETS: dict[str, tuple[str, str, str]] = {
    name: (dist, title, f'pip install "edgeconv[{extra}]" (from a checkout: pip install -e "./core[{extra}]" -e ./plugins/{dist})')
    for name, dist, extra, title in (
        ("openvino", "edgeconv-openvino", "openvino", "OpenVINO IR for Intel CPUs, GPUs and NPUs"),
        ("tflite", "edgeconv-tflite", "tflite", "TFLite / LiteRT for ARM boards and phones"),
        ("tensorrt", "edgeconv-tensorrt", "jetson", "TensorRT plans for NVIDIA Jetson and GPUs"),
        ("ascend", "edgeconv-ascend", "ascend", ".om for Huawei Ascend NPUs (ATC)"),
        ("sophon", "edgeconv-sophon", "sophon", ".bmodel for Sophgo Sophon (tpu-mlir)"),
        ("rknn", "edgeconv-rknn", "rknn", ".rknn for Rockchip NPUs (rknn-toolkit2)"),
        ("executorch", "edgeconv-executorch", "executorch", "ExecuTorch .pte (XNNPACK) for phones and ARM boards"),
    )
}


def load_ref(ref: Ref) -> Callable[..., Any]:
    """Resolve a lazy ``"module:attr"`` reference (imports the module now). A reference that cannot be resolved is
    the registering plugin's fault: ``ToolchainFailed`` (exit 4) naming it, never a traceback."""
    if callable(ref):
        return ref
    from .errors import ToolchainFailed

    module, _, attr = ref.partition(":")
    try:
        obj: Any = importlib.import_module(module)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise ToolchainFailed(f"{ref} cannot be loaded ({type(exc).__name__}: {' '.join(str(exc).split())[:200]}); "
                              "the plugin that registered it is broken", stage="plugin") from exc
    return obj


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    import difflib

    lowered = {c.lower(): c for c in choices}
    close = difflib.get_close_matches(word.lower(), list(lowered), n=1, cutoff=0.5)
    return f"; did you mean {lowered[close[0]]!r}?" if close else ""


def keep_float_option(options: dict[str, Any] | None) -> list[str]:
    """The ``keep_float`` target option as a list of node names: a comma-separated string, or a
    list/tuple of names (what ``-O keep_float=a,b`` and the Python API give)."""
    value = (options or {}).get("keep_float")
    if not value:
        return []
    items = value.split(",") if isinstance(value, str) else list(value)
    return list(dict.fromkeys(str(v).strip() for v in items if str(v).strip()))


@dataclass(frozen=True)
class Requirement:
    """Something a target needs. Satisfied when *any* of its modules, binaries, env
    variables or toolchain environments is present (e.g. TensorRT: the ``tensorrt`` module
    or ``trtexec``; tpu-mlir: the ``sophon`` toolchain, see ``edgeconv.toolchain``)."""

    what: str
    hint: str
    modules: tuple[str, ...] = ()
    binaries: tuple[str, ...] = ()
    env: tuple[str, ...] = ()
    toolchains: tuple[Any, ...] = ()  # Toolchain records (edgeconv.toolchain), checked by their state file

    def satisfied(self) -> bool:
        """The cheap check used by ``edgeconv targets`` (no import, no subprocess)."""
        return (
            any(_module_present(m) for m in self.modules)
            or any(_which(b) for b in self.binaries)
            or any(os.environ.get(e) for e in self.env)
            or any(_toolchain_ready(t) for t in self.toolchains)
        )


def _which(binary: str) -> str | None:
    import shutil

    return shutil.which(binary)


def _toolchain_ready(tc: Any) -> bool:
    from .toolchain import is_ready

    return is_ready(tc)


def _module_present(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


@dataclass(frozen=True)
class Option:
    """A target option, given on the command line as ``-O name=value``."""

    name: str
    type: type = str
    default: Any = None
    help: str = ""
    choices: tuple[Any, ...] = ()

    def parse(self, value: Any, target: str) -> Any:
        if isinstance(value, str) and self.type is not str:
            try:
                if self.type is bool:
                    low = value.lower()
                    if low not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
                        raise ValueError(value)
                    value = low in ("1", "true", "yes", "on")
                elif self.type in (list, tuple):
                    value = tuple(v for v in value.split(",") if v)
                else:
                    value = self.type(value)
            except ValueError:
                raise BadInput(
                    f"option {self.name}={value!r} for target {target!r} must be {self.type.__name__}",
                    stage="options",
                ) from None
        if self.choices and value not in self.choices:
            raise BadInput(
                f"option {self.name}={value!r} for target {target!r} must be one of "
                f"{', '.join(map(str, self.choices))}{did_you_mean(str(value), map(str, self.choices))}",
                stage="options",
            )
        return value


@dataclass
class Target:
    """One export format: the row of the formats table a plugin registers.

    ``exporter`` is called as ``exporter(model, job) -> Artifact`` (see ``pipeline``);
    ``precheck`` as ``precheck(model, job) -> list[Unsupported]``; ``doctor`` as
    ``doctor() -> dict`` for the deep environment check.
    """

    name: str
    title: str
    suffix: str
    accepts: tuple[str, ...]
    exporter: Ref
    artifact_form: str
    precisions: tuple[str, ...] = ("fp32",)
    default_precision: str = "fp32"  # when --precision is not given (e.g. fp16 on an NPU)
    options: tuple[Option, ...] = ()
    requirements: tuple[Requirement, ...] = ()
    precheck: Ref | None = None
    doctor: Ref | None = None
    # Passes (registered by name) that produce each precision before export.
    precision_passes: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    devices: tuple[str, ...] = ("cpu",)
    description: str = ""
    # Filled in by the plugin manager: who registered it.
    plugin: str = ""
    dist: str = ""

    def missing(self) -> list[Requirement]:
        return [r for r in self.requirements if not r.satisfied()]

    def validate_options(self, given: Mapping[str, Any] | None) -> dict[str, Any]:
        known = {o.name: o for o in self.options}
        out = {o.name: o.default for o in self.options}
        for key, value in (given or {}).items():
            name = key.replace("-", "_")
            if name not in known:
                allowed = ", ".join(known) or "none"
                raise BadInput(
                    f"target {self.name!r} has no option {key!r} (its options: {allowed})"
                    f"{did_you_mean(name, known)}",
                    stage="options",
                )
            out[name] = known[name].parse(value, self.name)
        return out

    def check_precision(self, precision: str) -> None:
        if precision not in self.precisions:
            raise BadInput(
                f"target {self.name!r} does not support precision {precision!r} "
                f"(it supports: {', '.join(self.precisions)}){did_you_mean(precision, self.precisions)}",
                stage="options",
            )


@dataclass
class Importer:
    """Recognises a source and loads it into a ``Model`` of its native form.

    ``load`` is called as ``load(source, *, input_shapes, options) -> Model``; ``matches``
    (optional) as ``matches(source) -> bool`` for sources a suffix cannot name
    (folders, in-memory objects).
    """

    name: str
    form: str
    load: Ref
    suffixes: tuple[str, ...] = ()
    matches: Ref | None = None
    requirements: tuple[Requirement, ...] = ()
    plugin: str = ""


@dataclass
class Pass:
    """Transforms a ``Model``: ``run(model, job) -> (Model, info dict)``; ``info`` None: the pass had nothing to do
    (no report entry).

    ``kind`` is ``"generic"`` (run for every target that takes the form, e.g. simplify),
    ``"precision"`` (run when a target names it in ``precision_passes``) or ``"convert"``
    (turns ``form`` into ``to_form``: the edges the router walks).
    """

    name: str
    form: str
    run: Ref
    kind: str = "generic"
    to_form: str | None = None
    description: str = ""
    requirements: tuple[Requirement, ...] = ()
    # True: the pass changes what the model computes on purpose (pruning); the artifact is then verified against
    # the pass's output, not the model as imported, and the report's source says so (source.meta).
    reference: bool = False
    plugin: str = ""


@dataclass
class RunnerSpec:
    """Runs a model of one form: ``factory(model, **options) -> Runner``.

    ``options``: the runner settings an artifact's manifest may carry (``runner_options``), name -> type; anything
    else in a manifest is refused (a manifest is untrusted input: docs/security.md). ``board``: the module of the
    runner's board half (a self-contained file that needs only numpy and the runtime, shipped to a board: docs/
    boards.md). ``tuning``: ``tuning(threads) -> list[dict]``, the runner settings ``--precision auto`` may time
    (the first is the runtime's defaults). ``tracer``: the object that runs an artifact of this form with its
    intermediate tensors exposed, for ``edgeconv debug layers`` (docs/debug.md#writing-a-tracer).
    """

    form: str
    name: str
    factory: Ref
    requirements: tuple[Requirement, ...] = ()
    options: Mapping[str, type] | None = None
    board: str | None = None
    tuning: Ref | None = None
    tracer: Ref | None = None
    plugin: str = ""


@dataclass(frozen=True)
class Metric:
    """One row of the metric table (docs/fidelity.md): a number the fidelity contract computes for each output.

    ``compute(ref, out) -> float | None`` gets the source's and the artifact's output (numpy arrays of one shape;
    None: the metric does not apply to this output, e.g. top-1 on a regression). ``thresholds`` gives the gate
    per precision (a precision not named: reported, not gated); ``better`` says which way passes. ``per_slice``:
    also computed on every slice along the output's channel axis (or a declared one), and the worst slice gates.
    """

    name: str
    title: str
    better: str  # "higher" | "lower"
    compute: Ref
    thresholds: Mapping[str, float] = field(default_factory=dict)
    format: str = ".4g"
    per_slice: bool = False
    description: str = ""
    plugin: str = ""

    def passes(self, value: float, limit: float) -> bool:
        return value >= limit if self.better == "higher" else value <= limit


@dataclass(frozen=True)
class Comparator:
    """A task check (``--task NAME``): decode both models' outputs the way a deployment reads them and compare
    the answers (classification top-k, detection boxes after NMS, CTC strings, segmentation masks).

    ``compare(refs, outs, *, io, labels, options) -> dict`` gets every output of the source and of the artifact
    by name (samples stacked on the first axis) and returns ``{"metrics": {...}, "pass": bool, "failures": [...],
    ...}``; ``suggest(io) -> str | None`` says why this task fits a model's outputs (``edgeconv inspect``).
    """

    name: str
    title: str
    compare: Ref
    suggest: Ref | None = None
    options: tuple[Option, ...] = ()
    description: str = ""
    plugin: str = ""


@dataclass(frozen=True)
class DeviceCatalogue:
    """A TOML file of device profiles a plugin ships (``register_devices``), read with ``importlib.resources``."""

    package: str
    resource: str = "devices.toml"
    plugin: str = ""


@dataclass
class Unsupported:
    """A node a target's pre-check says it cannot run."""

    node: str
    op_type: str
    reason: str = ""
    fallback: bool = False  # True: runs, but falls back (warn only)


# -- what a conversion hands a plugin, and what an exporter returns ----------------------------------------
@dataclass
class Artifact:
    """What an exporter returns: the main file (in ``job.workdir``) and what it is."""

    path: Path
    form: str
    io: IOContract
    files: list[Path] = field(default_factory=list)
    tools: dict[str, str] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    runner_options: dict[str, Any] = field(default_factory=dict)
    runnable: bool = True  # False: this host cannot run it (e.g. no GPU)
    not_runnable_reason: str = ""
    not_run_code: int = 3  # exit code when not runnable: 3 a toolchain is missing here; 0 expected (prepare-only)


@dataclass
class Job:
    """The context passes and exporters work in."""

    target: Target
    precision: str
    options: dict[str, Any]
    workdir: Path  # the output being built: exporters write here
    scratch: Path  # intermediate files, never part of the output
    stem: str
    source_io: IOContract
    source_options: dict[str, Any] = field(default_factory=dict)
    input_profiles: dict[str, list[tuple[int, ...]]] = field(default_factory=dict)
    calibration_source: Any = None
    preprocess: Preprocess | None = None
    seed: int = 0
    data: Any = None  # the user's verification data (--data), for exporters that check accuracy themselves
    budgets: Budgets | None = None
    label_output: str | None = None  # the output holding class scores, for accuracy with labelled data
    thresholds: dict[str, float] = field(default_factory=dict)  # the user's metric gates (for a plugin's own checks)
    output: Path | None = None  # where the output folder will be renamed to
    warnings: list[str] = field(default_factory=list)
    status: Callable[[str], None] = lambda msg: None
    model: Model | None = None  # the model the exporter receives (set just before export): for name mapping
    # Hand-off between this job's pre-check, passes and exporter (e.g. a converted model the pre-check made and
    # the exporter reuses), keyed by the plugin's own names: never a module global.
    state: dict[str, Any] = field(default_factory=dict)
    _calib: Dataset | None = None

    def warn(self, message: str) -> None:
        if message not in self.warnings:
            self.warnings.append(message)

    def fork(self, **changes: Any) -> Job:
        """A job for one build from this preparation's job: its own warnings and hand-off state (copies), the same
        calibration set (loaded once)."""
        import dataclasses

        return dataclasses.replace(self, **{"warnings": list(self.warnings), "state": dict(self.state), **changes})

    def calibration(self) -> Dataset:
        """The calibration set (loaded once). Required: INT8 without it is an error."""
        if self._calib is not None:
            return self._calib
        src = self.calibration_source
        if src is None:
            raise BadInput(
                f"precision {self.precision} needs calibration data: --calib PATH (.npz, .npy or a "
                "folder of images), or --calib random for a smoke run",
                stage="optimize",
            )
        limit = self.options.get("calib_limit")
        if isinstance(src, str) and src == "random":
            self._calib = random_dataset(self.source_io, min(int(limit or 32), 32), seed=self.seed)
            self.warn("calibration used random data (--calib random): INT8 accuracy is not representative")
        else:
            self._calib = load_dataset(src, self.source_io, what="--calib", limit=limit, preprocess=self.preprocess)
        return self._calib


@dataclass
class Result:
    """What ``edgeconv.convert`` / ``verify`` return: the report (schema ``edgeconv.report/1``), the artifact folder
    and the exit code (0 pass, 1 verification or a budget failed; errors raise ``EdgeconvError``)."""

    report: dict[str, Any]
    artifact: Path | None
    exit_code: int

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


@dataclass
class StageCall:
    """What the ``run_stage`` hook receives: the stage's work, and where to put its timing."""

    stage: str
    work: Callable[[], Any]
    timings: dict[str, float]
    ran: bool = False

    def run(self) -> Any:
        self.ran = True
        return self.work()
