"""import -> route -> pre-check -> optimize -> export -> verify, and the report.

Every stage runs through the ``run_stage`` hook (timed, logged, wrappable by plugins).
The output folder appears complete or not at all: everything is written into a
temporary folder beside it, then renamed into place.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import glob
import json
import os
import platform
import shutil
import sys
import tempfile
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import __version__
from .data import Preprocess, load_dataset, sha256_path
from .errors import BadInput, EdgeconvError, ToolchainFailed, ToolchainMissing, UnsupportedOperators
from .model import IOContract, Model, parse_input_shapes, pinned_shapes
from .plugins import pm, registry
from .records import Artifact, Importer, Job, Pass, Target, did_you_mean, load_ref
from .report import MANIFEST_SCHEMA, SCHEMA, Budgets
from .verify.fidelity import verify_models


@dataclass
class StageCall:
    """What ``run_stage`` receives: the stage's work, and where to put its timing."""

    stage: str
    run: Callable[[], Any]
    timings: dict[str, float]


def run_stage(stage: str, fn: Callable[[], Any], timings: dict[str, float]) -> Any:
    return pm.hook.run_stage(stage=stage, call=StageCall(stage, fn, timings))


@dataclass
class Result:
    report: dict[str, Any]
    artifact: Path | None
    exit_code: int

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


# -- import -------------------------------------------------------------------------------
def pick_importer(source: Any, source_form: str | None = None) -> Importer:
    reg = registry()
    if source_form:
        for imp in reg.importers.values():
            if source_form in (imp.name, imp.form):
                return imp
        known = sorted({i.name for i in reg.importers.values()} | {i.form for i in reg.importers.values()})
        raise BadInput(f"--from {source_form!r} is not an installed importer (installed: {', '.join(known)})"
                       f"{did_you_mean(source_form, known)}", stage="import")
    for imp in reg.importers.values():
        if imp.matches is not None:
            try:
                if load_ref(imp.matches)(source):
                    return imp
            except Exception:
                continue
    if isinstance(source, (str, Path)):
        path = Path(source)
        for imp in reg.importers.values():
            if path.suffix.lower() in imp.suffixes:
                return imp
        if not path.exists():
            raise BadInput("no such file or folder", file=path, stage="import")
        suffixes = sorted({s for i in reg.importers.values() for s in i.suffixes})
        raise BadInput(
            f"cannot tell the model format from {path.suffix or 'a name without suffix'!r} "
            f"(known: {', '.join(suffixes)}); give --from FORMAT",
            file=path,
            stage="import",
        )
    raise BadInput(f"no installed importer takes a {type(source).__name__}", stage="import")


def load(source: Any, *, input_shapes: Any = None, source_form: str | None = None,
         options: dict[str, Any] | None = None) -> Model:
    """Import a model (any form an importer accepts) and read its IO contract."""
    imp = pick_importer(source, source_form)
    missing = [r for r in imp.requirements if not r.satisfied()]
    if missing:
        raise ToolchainMissing(f"reading this model needs {missing[0].what}", file=_where(source),
                               stage="import", hint=missing[0].hint)
    profiles = _profiles(input_shapes)
    model = load_ref(imp.load)(source, input_shapes=pinned_shapes(profiles) or None, options=options or {})
    if isinstance(source, (str, Path)):
        model.meta.setdefault("source_path", str(source))
    return model


def _profiles(input_shapes: Any) -> dict[str, list[tuple[int, ...]]]:
    if not input_shapes:
        return {}
    if isinstance(input_shapes, dict):
        return {k: ([tuple(v)] if v and isinstance(v[0], int) else [tuple(s) for s in v]) for k, v in input_shapes.items()}
    return parse_input_shapes(list(input_shapes))


def _where(source: Any) -> str:
    return str(source) if isinstance(source, (str, Path)) else f"<{type(source).__name__}>"


# -- route --------------------------------------------------------------------------------
def find_route(form: str, target: Target, via: str | None = None) -> list[Pass]:
    """The shortest chain of convert passes from ``form`` to a form the target accepts."""
    reg = registry()
    edges: dict[str, list[Pass]] = {}
    for p in reg.passes.values():
        if p.kind == "convert" and p.to_form:
            edges.setdefault(p.form, []).append(p)

    def bfs(start: str, goals: set[str]) -> list[Pass] | None:
        queue: deque[tuple[str, list[Pass]]] = deque([(start, [])])
        seen = {start}
        while queue:
            here, path = queue.popleft()
            if here in goals:
                return path
            for p in edges.get(here, []):
                if p.to_form not in seen:
                    seen.add(p.to_form)
                    queue.append((p.to_form, [*path, p]))
        return None

    if via:
        first, second = bfs(form, {via}), bfs(via, set(target.accepts))
        route = None if first is None or second is None else first + second
    else:
        route = bfs(form, set(target.accepts))
    if route is None:
        raise BadInput(
            f"no route from a {form!r} model to target {target.name!r} (it accepts: "
            f"{', '.join(target.accepts)}{'; via ' + via if via else ''}); is the importer/converter installed?",
            stage="route",
        )
    return route


# -- output -------------------------------------------------------------------------------
@contextlib.contextmanager
def staged_output(out: Path, force: bool) -> Iterator[Path]:
    """Yield a temporary folder beside ``out``; on success rename it to ``out``.

    A lock file serialises runs into one folder; on any failure (SIGINT/SIGTERM
    included) the temporary folder is removed and ``out`` is left as it was.
    """
    import fcntl

    out = out.absolute()
    check_output(out, force)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        lock_path = out.parent / f".{out.name}.lock"
        lock = open(lock_path, "w")
    except OSError as exc:
        raise BadInput(f"cannot write to the output folder ({exc.strerror})", file=out.parent, stage="export") from None
    try:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise BadInput("another edgeconv run is writing this output right now", file=out, stage="export") from None
        check_output(out, force)
        try:
            try:
                staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
                umask = os.umask(0)
                os.umask(umask)
                staging.chmod(0o777 & ~umask)  # mkdtemp makes it 0700; the output is an ordinary folder
            except OSError as exc:
                raise BadInput(f"cannot write to the output folder ({exc.strerror})", file=out.parent,
                               stage="export") from None
            yield staging
            if out.exists():
                old = out.parent / f".{out.name}.old-{os.getpid()}"
                os.rename(out, old)
                os.rename(staging, out)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.rename(staging, out)
        except BaseException:
            # Under the lock every staging folder of this output is this run's (or a crashed
            # run's): remove them all, so that a signal landing between mkdtemp and the
            # assignment above cannot leave one behind.
            for stale in out.parent.glob(f".{glob.escape(out.name)}.tmp-*"):
                shutil.rmtree(stale, ignore_errors=True)
            raise
    finally:
        with contextlib.suppress(OSError):
            lock_path.unlink()
        lock.close()


def check_output(out: Path, force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise BadInput("the output path is a file; edgeconv writes a folder", file=out, stage="export")
    if out.exists() and not force and any(out.iterdir()):
        raise BadInput("the output folder exists; give --force to replace it", file=out, stage="export")


def _files_size(files: list[Path]) -> int:
    return sum(f.stat().st_size for f in files if f.is_file())


def versions(extra: dict[str, str] | None = None) -> dict[str, str]:
    v = {"edgeconv": __version__, "python": platform.python_version(), "platform": platform.platform()}
    for mod in ("numpy", "onnx", "onnxruntime", "onnxslim", "torch", "tensorflow", "openvino", "nncf", "tensorrt"):
        m = sys.modules.get(mod)
        if m is not None and getattr(m, "__version__", None):
            v[mod] = str(m.__version__)
    v.update(extra or {})
    return v


# -- convert ------------------------------------------------------------------------------
def convert(
    source: Any,
    target: str = "onnxruntime",
    *,
    precision: str | None = None,
    calibration: Any = None,
    data: Any = None,
    input_shapes: Any = None,
    output: str | Path | None = None,
    force: bool = False,
    options: dict[str, Any] | None = None,
    budgets: Budgets | None = None,
    thresholds: dict[str, float] | None = None,
    verify: bool = True,
    runs: int = 50,
    warmup: int = 5,
    threads: int | None = None,
    seed: int = 0,
    source_form: str | None = None,
    via: str | None = None,
    preprocess: Preprocess | None = None,
    skip_passes: tuple[str, ...] = (),
    memory: bool = True,
    label_output: str | None = None,
    source_options: dict[str, Any] | None = None,
    prepare_only: bool = False,
    status: Callable[[str], None] | None = None,
    keep_float: Any = None,
    device: dict[str, Any] | None = None,
    task: str | None = None,
    task_options: dict[str, Any] | None = None,
    state: dict[str, str] | None = None,
    verify_samples: int | None = None,
    place: str | None = None,
) -> Result:
    """Convert ``source`` for ``target``, verify the artifact against the source, report.

    Returns a ``Result`` with the artifact folder, the report (schema
    ``edgeconv.report/1``) and the exit code (0 pass, 1 verification/budget failed).
    Bad input, a missing or failing toolchain raise ``EdgeconvError`` subclasses.

    ``source_options`` go to the importer and the route: ``example_inputs``, ``input_names``,
    ``output_names``, ``dynamic`` (axis names, e.g. ``["batch"]``), ``weights``,
    ``trust_pickle``, ``trust_code``, ``exporter`` (``dynamo``/``torchscript``), ``opset``.

    ``prepare_only``: for targets that offer it (option ``prepare_only``), write everything that
    can be made on this host (e.g. a prepared/QDQ ONNX and the build recipe) without the
    vendor toolchain; the target's requirements are then not checked up front.

    ``precision="auto"`` builds every precision the target offers (and INT8 with its most
    sensitive layers in float when plain INT8 misses the accuracy budget), verifies and times
    each, and keeps the fastest that meets every budget (``edgeconv.auto``, docs/auto.md).

    ``keep_float``: ONNX node names that stay in float in an INT8 model (a list, or one
    comma-separated string); the same as the target option ``-O keep_float=...``.

    ``device``: the record of a device profile already applied to these arguments
    (``edgeconv.devices.resolve(...).report()``, as ``--device`` does); kept in report.json and
    the manifest so the artifact says which device it was made for.
    """
    if precision == "auto":
        args = {k: v for k, v in locals().items() if k != "precision"}  # every parameter, as given
        from .auto import convert_auto

        return convert_auto(**args)
    say = status or (lambda msg: None)
    timings: dict[str, float] = {}
    reg = registry()
    tgt = reg.target(target)
    precision = precision or tgt.default_precision
    tgt.check_precision(precision)
    opts = tgt.validate_options(options)
    if keep_float:
        if not supports_keep_float(tgt):
            raise BadInput(f"target {tgt.name!r} cannot keep layers in float (it has no keep_float option)",
                           stage="options")
        from .sensitivity import keep_float_option

        opts["keep_float"] = tuple(keep_float_option({"keep_float": keep_float}))
    if prepare_only:
        if "prepare_only" not in opts:
            raise BadInput(f"target {tgt.name!r} has no prepare-only mode", stage="options")
        opts["prepare_only"] = True
    missing = [] if opts.get("prepare_only") else tgt.missing()
    if missing:
        raise ToolchainMissing(f"target {tgt.name!r} needs {missing[0].what}, which is not installed",
                               stage="target", hint=missing[0].hint)
    budgets = budgets or Budgets()
    profiles = _profiles(input_shapes)

    say("importing")
    source_options = dict(source_options or {})
    model = run_stage("import", lambda: load(source, input_shapes=profiles, source_form=source_form,
                                             options=source_options), timings)
    src_path = Path(source) if isinstance(source, (str, Path)) else None
    say("routing")
    route = run_stage("route", lambda: find_route(model.form, tgt, via), timings)
    stem = src_path.stem if src_path else "model"
    if isinstance(source, str) and not src_path.exists() and ":" in source:  # file.py:factory
        stem = Path(source.split(":")[0]).stem
    out = Path(output) if output else Path.cwd() / f"{stem}-{tgt.name}-{precision}"
    src_hash = sha256_path(src_path) if src_path and src_path.exists() else None
    src_size = _source_size(src_path, model)

    def write() -> dict[str, Any]:
        """Everything that writes lands in a staging folder, renamed into place at the end."""
        with staged_output(out, force) as staging, tempfile.TemporaryDirectory(prefix="edgeconv-") as scratch:
            job = Job(tgt, precision, opts, staging, Path(scratch), stem, model.io, source_options, profiles,
                      calibration, preprocess, seed, data=data, budgets=budgets, label_output=label_output,
                      output=out.absolute(), status=say)
            passes: list[dict[str, Any]] = []
            current = model

            def apply(p: Pass) -> None:
                nonlocal current
                miss = [r for r in p.requirements if not r.satisfied()]
                if miss:
                    raise ToolchainMissing(f"pass {p.name} needs {miss[0].what}", stage="optimize", hint=miss[0].hint)
                say(f"{p.name}")
                try:
                    current, info = load_ref(p.run)(current, job)
                except EdgeconvError as exc:
                    exc.file = exc.file or _where(source)
                    raise
                passes.append({"name": p.name, "kind": p.kind, "form": p.form, **(info or {})})

            for p in route:
                run_stage("convert", lambda p=p: apply(p), timings)
            forms = [model.form] + [p.to_form for p in route]

            if tgt.precheck is not None:
                say("pre-check")
                found = run_stage("precheck", lambda: load_ref(tgt.precheck)(current, job), timings)
                hard = [(u.node, u.op_type) for u in found if not u.fallback]
                for u in found:
                    if u.fallback:
                        job.warn(f"node {u.node} ({u.op_type}) falls back: {u.reason}")
                if hard:
                    raise UnsupportedOperators(tgt.name, hard, file=_where(source), stage="precheck")

            def optimize() -> None:
                for p in reg.passes.values():
                    if p.kind == "generic" and p.form == current.form and p.name not in skip_passes:
                        apply(p)
                for name in tgt.precision_passes.get(precision, ()):
                    if name not in reg.passes:
                        raise ToolchainMissing(f"target {tgt.name!r} needs pass {name!r}, which no plugin registers",
                                               stage="optimize")
                    apply(reg.passes[name])

            run_stage("optimize", optimize, timings)
            say("export")

            def export() -> Artifact:
                job.model = current
                try:
                    return load_ref(tgt.exporter)(current, job)
                except EdgeconvError as exc:
                    exc.file = exc.file or _where(source)
                    raise
                except OSError as exc:
                    if exc.errno in _WRITE_ERRORS:
                        raise  # reported as an output problem below
                    raise ToolchainFailed(f"{tgt.name} export failed: {exc}", file=_where(source), stage="export") from None
                except Exception as exc:
                    raise ToolchainFailed(f"{tgt.name} export failed: {' '.join(str(exc).split())[:300]}",
                                          file=_where(source), stage="export") from None

            art = run_stage("export", export, timings)
            if art.form not in forms:
                forms.append(art.form)
            art_files = art.files or [art.path]
            final = lambda p: out.absolute() / Path(p).relative_to(staging)  # noqa: E731
            report: dict[str, Any] = {
                "schema": SCHEMA,
                "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                "source": {
                    "path": _where(source),
                    "sha256": src_hash,
                    "form": model.form,
                    "size_bytes": src_size,
                    "io": model.io.to_dict(),
                    "meta": model.meta,
                },
                "target": tgt.name,
                "target_provider": tgt.dist,
                "precision": precision,
                "options": _jsonable(opts),
                "route": forms,
                "passes": passes,
                "artifact": {
                    "path": str(final(art.path)),
                    "files": [str(final(f)) for f in art_files],
                    "form": art.form,
                    "size_bytes": _files_size(art_files),
                    "manifest": str(out.absolute() / "manifest.json"),
                    "io": art.io.to_dict(),
                    "details": art.details,
                },
                "calibration": job._calib.describe() if job._calib is not None else None,
                **({"device": device} if device else {}),
            }
            if verify and art.runnable:
                say("verify")
                art_model = Model(form=art.form, io=art.io, path=art.path)
                ver = run_stage(
                    "verify",
                    lambda: verify_models(
                        model, art_model, data=data, precision=precision, thresholds=thresholds, runs=runs,
                        warmup=warmup, threads=threads, seed=seed, memory=memory, scratch=Path(scratch),
                        runner_options=art.runner_options, label_output=label_output, status=say, task=task,
                        task_options=task_options, state=state, verify_samples=verify_samples,
                        calibration=job._calib if job._calib is not None else calibration, place=place,
                    ),
                    timings,
                )
                report.update(ver)
            else:
                reason = art.not_runnable_reason if not art.runnable else "verification skipped (--no-verify)"
                report.update({"fidelity": None, "accuracy": None, "latency_ms": None, "peak_rss_bytes": None,
                               "runtime": {"artifact": "not run", "reason": reason}})
            finish(report, budgets, timings, job.warnings + report.pop("_warnings", []), art.tools,
                   not_run=None if (verify and art.runnable) else reason,
                   not_run_code=0 if art.runnable else art.not_run_code)
            manifest = {
                "schema": MANIFEST_SCHEMA,
                "artifact": [str(Path(f).relative_to(staging)) for f in art_files],
                "form": art.form,
                "target": tgt.name,
                "precision": precision,
                "source": {k: report["source"][k] for k in ("path", "sha256", "form", "size_bytes")},
                "route": forms,
                "options": report["options"],
                "passes": [{"name": p["name"], **({"settings": p["settings"]} if "settings" in p else {})} for p in passes],
                "tools": report["versions"],
                "io": art.io.to_dict(),
                "source_io": model.io.to_dict(),
                "calibration": report["calibration"],
                "runner_options": art.runner_options,
                "details": art.details,
                "verification": {k: report.get(k) for k in ("verdict", "fidelity", "accuracy", "latency_ms", "budgets")},
                **({"device": device} if device else {}),
            }
            (staging / "manifest.json").write_text(json.dumps(manifest, indent=2, default=str))
            (staging / "report.json").write_text(json.dumps(report, indent=2, default=str))
        return report

    try:
        report = write()
    except OSError as exc:
        if exc.errno in _WRITE_ERRORS:  # disk full, quota, read-only: nothing was left behind
            raise BadInput(f"cannot write the output ({exc.strerror})", file=out, stage="export") from None
        raise
    return Result(report=report, artifact=out.absolute(), exit_code=_exit_code(report))


def supports_keep_float(tgt: Target) -> bool:
    """Whether a target takes ``keep_float``: it declares the option, or its INT8 is the core's
    onnxruntime pass (which reads it)."""
    return any(o.name == "keep_float" for o in tgt.options) or "ort.quantize_static" in tgt.precision_passes.get("int8", ())


_WRITE_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG}


def _source_size(path: Path | None, model: Model) -> int | None:
    if path is None or not path.exists():
        return None
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    size = path.stat().st_size
    # external data beside an ONNX file, as the importer found it
    size += sum(Path(p).stat().st_size for p in model.meta.get("external_data", []))
    return size


def _jsonable(opts: dict[str, Any]) -> dict[str, Any]:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in opts.items()}


def _exit_code(report: dict[str, Any]) -> int:
    return report["verdict"]["exit_code"]


def finish(report: dict[str, Any], budgets: Budgets, timings: dict[str, float], warnings: list[str],
           tools: dict[str, str], not_run: str | None = None, not_run_code: int = 0) -> None:
    """Budgets, verdict (with its exit code), timings, versions and warnings."""
    report["budgets"] = budgets.evaluate(report)
    fails = [f"output {f['name']}: {'; '.join(f['failures'])}" for f in report.get("fidelity") or [] if not f["pass"]]
    fails += [f"budget {k}: {b['value']} > {b['limit']}" if b["value"] is not None else f"budget {k}: {b.get('reason')}"
              for k, b in report["budgets"].items() if not b["pass"]]
    if fails:
        report["verdict"] = {"status": "fail", "reason": fails[0], "failures": fails, "exit_code": 1}
    elif not_run:
        report["verdict"] = {"status": "not-run", "reason": not_run, "exit_code": not_run_code}
    else:
        report["verdict"] = {"status": "pass", "reason": None, "exit_code": 0}
    report["timings"] = dict(timings)
    report["versions"] = versions(tools)
    report["warnings"] = list(dict.fromkeys(warnings))


# -- verify -------------------------------------------------------------------------------
def load_artifact(path: str | Path) -> tuple[Model, dict[str, Any] | None]:
    """An output folder (with its manifest) or a model file, as a ``Model``."""
    p = Path(path)
    manifest_file = p / "manifest.json" if p.is_dir() else None
    if manifest_file and manifest_file.is_file():
        manifest = read_manifest(manifest_file)
        io = IOContract.from_dict(manifest["io"])
        return Model(form=manifest["form"], io=io, path=p / manifest["artifact"][0]), manifest
    return load(p), None


def read_manifest(file: Path) -> dict[str, Any]:
    """Read and check a manifest: its schema, fields, and files that stay inside its folder."""
    def bad(why: str) -> BadInput:
        return BadInput(f"not a valid edgeconv manifest: {why}", file=file, stage="verify")

    try:
        manifest = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise BadInput(f"unreadable manifest ({' '.join(str(exc).split())[:200]})", file=file, stage="verify") from None
    if not isinstance(manifest, dict) or manifest.get("schema") != MANIFEST_SCHEMA:
        raise bad(f"schema is not {MANIFEST_SCHEMA!r}")
    files = manifest.get("artifact")
    if not isinstance(manifest.get("form"), str) or not isinstance(files, list) or not files:
        raise bad("'form' or 'artifact' is missing")
    base = file.parent.resolve()
    for name in files:
        if not isinstance(name, str) or not name or Path(name).is_absolute():
            raise bad(f"artifact file {name!r} is not a relative path")
        target = (base / name).resolve()
        if base not in target.parents:
            raise bad(f"artifact file {name!r} points outside the folder")
        if not target.is_file():
            raise bad(f"artifact file {name!r} is missing")
    try:
        IOContract.from_dict(manifest["io"])
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise bad(f"'io' is not an IO contract ({type(exc).__name__}: {exc})") from None
    return manifest


def verify(source: Any, artifact: str | Path, *, data: Any = None, precision: str | None = None,
           input_shapes: Any = None, budgets: Budgets | None = None, thresholds: dict[str, float] | None = None,
           runs: int = 50, threads: int | None = None, seed: int = 0, memory: bool = True,
           label_output: str | None = None, source_form: str | None = None,
           source_options: dict[str, Any] | None = None, task: str | None = None,
           task_options: dict[str, Any] | None = None, state: dict[str, str] | None = None,
           verify_samples: int | None = None, place: str | None = None) -> Result:
    """Verify an existing artifact (an output folder or a model file) against its source."""
    timings: dict[str, float] = {}
    src = run_stage("import", lambda: load(source, input_shapes=input_shapes, source_form=source_form,
                                           options=source_options), timings)
    art, manifest = load_artifact(artifact)
    prec = precision or (manifest or {}).get("precision", "fp32")
    with tempfile.TemporaryDirectory(prefix="edgeconv-") as scratch:
        ver = run_stage("verify", lambda: verify_models(
            src, art, data=data, precision=prec, thresholds=thresholds, runs=runs, threads=threads, seed=seed,
            memory=memory, scratch=Path(scratch), runner_options=(manifest or {}).get("runner_options"),
            label_output=label_output, task=task, task_options=task_options, state=state,
            verify_samples=verify_samples, place=place), timings)
    files = [art.path.parent / f for f in manifest["artifact"]] if manifest else [art.path]
    report: dict[str, Any] = {
        "schema": SCHEMA,
        "source": {"path": _where(source), "form": src.form, "io": src.io.to_dict()},
        "target": (manifest or {}).get("target", art.form),
        "precision": prec,
        "route": (manifest or {}).get("route", [src.form, art.form]),
        "artifact": {"path": str(art.path), "size_bytes": _files_size(files), "form": art.form},
        **ver,
    }
    finish(report, budgets or Budgets(), timings, report.pop("_warnings", []), {})
    return Result(report, art.path, _exit_code(report))


def bench(model: str | Path, *, runs: int = 100, warmup: int = 10, threads: int | None = None,
          input_shapes: Any = None, data: Any = None, seed: int = 0, memory: bool = True,
          place: str | None = None) -> dict[str, Any]:
    """Latency (and peak memory) of one model or artifact folder on its runner."""
    import numpy as np

    from .verify.bench import latency, peak_memory
    from .verify.runners import make_runner

    p = Path(model)
    if p.is_dir() and (p / "manifest.json").is_file():
        m, manifest = load_artifact(p)
    else:
        m, manifest = load(p, input_shapes=input_shapes), None
    ds = load_dataset(data, m.io, what="--data", seed=seed, random_samples=1)
    feed = next(iter(ds.feeds(m.io)))[0]
    opts = dict((manifest or {}).get("runner_options") or {})
    with make_runner(m, place=place, threads=threads, **opts) as runner:
        lat = latency(runner, feed, runs=runs, warmup=warmup)
        info = runner.info
    mem = {}
    if place is not None:  # measured where it ran, by the board half
        mem = {k: info[k] for k in ("peak_rss_bytes", "baseline_rss_bytes", "model_rss_bytes") if k in info}
    elif memory:
        with tempfile.TemporaryDirectory(prefix="edgeconv-") as scratch:
            f = Path(scratch) / "_feed.npz"
            np.savez(f, **feed)
            mem = peak_memory(m.form, m.path, {**opts, **({"threads": threads} if threads else {})}, f)
    return {"schema": "edgeconv.bench/1", "model": str(p), "form": m.form, "latency_ms": lat,
            "peak_rss_bytes": mem.get("peak_rss_bytes"), "memory": mem, "runtime": info, "versions": versions()}
