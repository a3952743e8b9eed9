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
from typing import Any

from .errors import BadInput

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
    )
}


def load_ref(ref: Ref) -> Callable[..., Any]:
    """Resolve a lazy ``"module:attr"`` reference (imports the module now)."""
    if callable(ref):
        return ref
    module, _, attr = ref.partition(":")
    obj: Any = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    import difflib

    lowered = {c.lower(): c for c in choices}
    close = difflib.get_close_matches(word.lower(), list(lowered), n=1, cutoff=0.5)
    return f"; did you mean {lowered[close[0]]!r}?" if close else ""


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
    toolchains: tuple[str, ...] = ()

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


def _toolchain_ready(name: str) -> bool:
    from .toolchain import is_ready

    return is_ready(name)


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
    """Transforms a ``Model``: ``run(model, job) -> (Model, info dict)``.

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
    plugin: str = ""


@dataclass
class RunnerSpec:
    """Runs a model of one form: ``factory(model, **options) -> Runner``."""

    form: str
    name: str
    factory: Ref
    requirements: tuple[Requirement, ...] = ()
    plugin: str = ""


@dataclass
class Unsupported:
    """A node a target's pre-check says it cannot run."""

    node: str
    op_type: str
    reason: str = ""
    fallback: bool = False  # True: runs, but falls back (warn only)
