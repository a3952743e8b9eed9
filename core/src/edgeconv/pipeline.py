"""The sequence of one conversion, over one ``ConversionRequest``:

    plan -> import -> route -> pre-check -> optimize -> export -> verify -> report -> output

Each step is a public function over small records (``Plan``, ``Prepared``, ``Built``) so that a strategy above the
pipeline (``--precision auto``, the matrix) reuses them: auto prepares once and builds, verifies and times every
candidate from the same ``Prepared``. Every stage runs through the ``run_stage`` hook (timed, logged, wrappable by
plugins). The output folder appears complete or not at all (``edgeconv.output``).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import manifest, output, reporting
from .data import sha256_path
from .errors import BadInput, ToolchainMissing
from .model import Model
from .plugins import registry
from .records import Artifact, Job, Result, Target
from .report import MANIFEST_SCHEMA, dumps
from .request import ConversionRequest, source_path
from .stages import exporting, importing, optimizing, routing, run_stage
from .verification.fidelity import verify_models

Status = Callable[[str], None]


def _quiet(msg: str) -> None:
    pass


# -- plan: what the request resolves to, checked before any work ------------------------------------------------------
@dataclass
class Plan:
    request: ConversionRequest
    target: Target
    precision: str
    options: dict[str, Any]  # the target's options, validated (keep_float and prepare_only folded in)

    @property
    def output(self) -> Path:
        return self.request.default_output(self.target.name, self.precision)


def supports_keep_float(tgt: Target) -> bool:
    """A target takes ``keep_float`` when it declares the option, or its INT8 is the core's onnxruntime pass."""
    return any(o.name == "keep_float" for o in tgt.options) or "ort.quantize_static" in tgt.precision_passes.get("int8", ())


def plan(req: ConversionRequest, precision: str | None = None) -> Plan:
    """The target, precision and options of ``req`` (``precision`` overrides the request's: auto's candidates)."""
    tgt = registry().target(req.target)
    prec = precision or req.precision or tgt.default_precision
    tgt.check_precision(prec)
    opts = tgt.validate_options(req.options)
    if req.keep_float:
        if not supports_keep_float(tgt):
            raise BadInput(f"target {tgt.name!r} cannot keep layers in float (it has no keep_float option)",
                           stage="options")
        opts["keep_float"] = tuple(req.keep_float)
    if req.prepare_only:
        if "prepare_only" not in opts:
            raise BadInput(f"target {tgt.name!r} has no prepare-only mode", stage="options")
        opts["prepare_only"] = True
    missing = [] if opts.get("prepare_only") else tgt.missing()
    if missing:
        raise ToolchainMissing(f"target {tgt.name!r} needs {missing[0].what}, which is not installed",
                               stage="target", hint=missing[0].hint)
    return Plan(req, tgt, prec, opts)


# -- prepare: import, route, generic passes, pre-check (once per source and target) ---------------------------------
@dataclass
class Prepared:
    source: Model  # what verification compares the artifact with: as imported, or after a reference pass (pruning)
    model: Model  # in the form the target receives, generic passes done, pre-checked
    forms: list[str]
    passes: list[dict[str, Any]]
    job: Job  # the preparation's job: its warnings, calibration and hand-off state go on to every build
    where: str
    sha256: str | None
    size: int | None


def new_job(p: Plan, source: Model, scratch: Path, status: Status) -> Job:
    req = p.request
    return Job(target=p.target, precision=p.precision, options=dict(p.options), workdir=scratch, scratch=scratch,
               stem=req.stem, source_io=source.io, source_options=dict(req.source_options),
               input_profiles=dict(req.input_shapes), calibration_source=req.calibration, preprocess=req.preprocess,
               seed=req.seed, data=req.data, budgets=req.budgets, label_output=req.label_output, output=p.output,
               thresholds=dict(req.thresholds), status=status)


def prepare(p: Plan, scratch: Path, timings: dict[str, float], status: Status = _quiet) -> Prepared:
    req = p.request
    where = importing.where(req.source)
    status("importing")
    source = run_stage("import", lambda: importing.load(req.source, profiles=dict(req.input_shapes),
                                                        source_form=req.source_form,
                                                        options=dict(req.source_options)), timings)
    status("routing")
    route = run_stage("route", lambda: routing.find_route(source.form, p.target, req.via), timings)
    job = new_job(p, source, scratch, status)
    passes: list[dict[str, Any]] = []
    current = source

    reference = source

    def generic(model: Model) -> Model:
        nonlocal reference
        for gp in optimizing.generic_passes(model.form, req.skip_passes):
            model, record = run_stage("optimize", lambda gp=gp, m=model: optimizing.apply(gp, m, job, where), timings)
            if record is not None:
                passes.append(record)
                if gp.reference:  # it changes the function on purpose (pruning): verify against its output
                    reference = model
        return model

    for cp in route:  # a form's generic passes run before the model leaves it (pruning on the torch form)
        current = generic(current)
        current, record = run_stage("convert", lambda cp=cp, m=current: optimizing.apply(cp, m, job, where), timings)
        passes.append(record or {"name": cp.name, "kind": cp.kind, "form": cp.form})
    status("pre-check")
    run_stage("precheck", lambda: optimizing.precheck(current, p.target, job, where), timings)
    current = generic(current)
    path = source_path(req.source) if isinstance(req.source, (str, Path)) else None
    sha = sha256_path(path) if path is not None and path.exists() else None
    forms = [source.form] + [cp.to_form for cp in route]
    return Prepared(reference, current, forms, passes, job, where, sha, reporting.source_size(path, source))


def onnx_twin(prepared: Prepared, timings: dict[str, float] | None = None) -> Model | None:
    """The prepared model as ONNX, for work that names ONNX nodes when the target receives another form (auto's
    layer ranking for a target that takes torch models: keep_float then names the twin's nodes, which the target
    maps to its own units). The model itself when it is ONNX already; None when no convert route reaches ONNX."""
    model = prepared.model
    if model.form == "onnx":
        return model
    route = routing.route_to(model.form, "onnx")
    if route is None:
        return None
    job = prepared.job.fork()
    for cp in route:
        model, _ = run_stage("convert", lambda cp=cp, m=model: optimizing.apply(cp, m, job, prepared.where),
                             timings if timings is not None else {})
    return model


# -- build: precision passes and export, into a folder ---------------------------------------------------------------
@dataclass
class Built:
    plan: Plan
    artifact: Artifact
    job: Job
    passes: list[dict[str, Any]] = field(default_factory=list)
    workdir: Path | None = None


def build(prepared: Prepared, p: Plan, workdir: Path, timings: dict[str, float], status: Status = _quiet) -> Built:
    job = prepared.job.fork(precision=p.precision, options=dict(p.options), workdir=workdir, status=status)
    passes = list(prepared.passes)
    current = prepared.model

    def optimize() -> Model:
        model = current
        for pp in optimizing.precision_passes(p.target, p.precision):
            model, record = optimizing.apply(pp, model, job, prepared.where)
            if record is not None:
                passes.append(record)
        return model

    current = run_stage("optimize", optimize, timings)
    status("export")
    art = run_stage("export", lambda: exporting.export(current, p.target, job, prepared.where), timings)
    return Built(p, art, job, passes, workdir)


def forms_of(prepared: Prepared, built: Built) -> list[str]:
    return prepared.forms + ([built.artifact.form] if built.artifact.form not in prepared.forms else [])


# -- verify and report -----------------------------------------------------------------------------------------------
def verify_built(prepared: Prepared, built: Built, scratch: Path, timings: dict[str, float],
                 status: Status = _quiet, *, memory: bool | None = None, runs: int | None = None) -> dict[str, Any]:
    """The fidelity contract, latency and memory of a built artifact against the prepared source."""
    req = built.plan.request
    art = built.artifact
    status("verify")
    calib = built.job._calib if built.job._calib is not None else req.calibration
    return run_stage("verify", lambda: verify_models(
        prepared.source, Model(form=art.form, io=art.io, path=art.path), data=req.data, precision=built.plan.precision,
        thresholds=dict(req.thresholds), runs=runs or req.runs, warmup=req.warmup, threads=req.threads, seed=req.seed,
        memory=req.memory if memory is None else memory, scratch=scratch, runner_options=art.runner_options,
        label_output=req.label_output, status=status, task=req.task, task_options=dict(req.task_options),
        state=dict(req.state), verify_samples=req.verify_samples, calibration=calib, place=req.place), timings)


def report_of(prepared: Prepared, built: Built, final: Path, verification: dict[str, Any] | None,
              timings: dict[str, float]) -> dict[str, Any]:
    """The whole report of a built (and, when it could run, verified) artifact."""
    req, art = built.plan.request, built.artifact
    report = reporting.conversion_report(
        where=prepared.where, sha256=prepared.sha256, size=prepared.size, model=prepared.source, target=built.plan.target,
        precision=built.plan.precision, options=built.plan.options, forms=forms_of(prepared, built),
        passes=built.passes, artifact=art, staging=built.workdir or art.path.parent, final=final,
        calibration=built.job._calib.describe() if built.job._calib is not None else None, device=req.device)
    share = (art.details or {}).get("precision_share")
    if isinstance(share, dict):  # how much of the compute runs at the precision asked for (#17.2): it can fail
        report["precision_share"] = share
    reason = None
    if verification is not None:
        report.update(verification)
    else:
        reason = art.not_runnable_reason if not art.runnable else "verification skipped (--no-verify)"
        reporting.not_run(report, reason)
    warnings = built.job.warnings + report.pop("_warnings", [])
    reporting.finish(report, req.budgets, timings, warnings, art.tools, not_run_reason=reason,
                     not_run_code=0 if art.runnable else art.not_run_code)
    return report


def write_manifest(folder: Path, prepared: Prepared, built: Built, report: dict[str, Any]) -> None:
    art = built.artifact
    record = {
        "schema": MANIFEST_SCHEMA, "form": art.form, "target": built.plan.target.name, "precision": built.plan.precision,
        "source": {k: report["source"][k] for k in ("path", "sha256", "form", "size_bytes")},
        "route": report["route"], "options": report["options"],
        "passes": [{"name": p["name"], **({"settings": p["settings"]} if "settings" in p else {})} for p in built.passes],
        "tools": report["versions"], "io": art.io.to_dict(), "source_io": prepared.source.io.to_dict(),
        "calibration": report["calibration"], "runner_options": art.runner_options, "details": art.details,
        "verification": {k: report.get(k) for k in ("verdict", "fidelity", "accuracy", "latency_ms", "budgets")},
        **({"device": report["device"]} if report.get("device") else {}),
    }
    # the artifact's files where they are now: ``folder`` is the exporter's workdir, or a copy of it (auto's winner)
    made_in = built.workdir or art.path.parent
    manifest.write(folder, record, [folder / Path(f).relative_to(made_in) for f in art.files or [art.path]])


def write_report(folder: Path, report: dict[str, Any]) -> None:
    (folder / "report.json").write_text(dumps(report, indent=2), encoding="utf-8")


# -- the whole sequence ------------------------------------------------------------------------------------------------
def run(req: ConversionRequest, status: Status | None = None) -> Result:
    """Convert, verify and report one request (``edgeconv.convert``; ``--precision auto`` is ``edgeconv.auto``)."""
    say = status or _quiet
    p = plan(req)
    out = p.output
    timings: dict[str, float] = {}
    try:
        with output.staged(out, req.force, req.inputs()) as staging, \
                tempfile.TemporaryDirectory(prefix="edgeconv-") as tmp:
            scratch = Path(tmp)
            prepared = prepare(p, scratch, timings, say)
            built = build(prepared, p, staging, timings, say)
            runnable = req.verify and built.artifact.runnable
            verification = verify_built(prepared, built, scratch, timings, say) if runnable else None
            report = report_of(prepared, built, out, verification, timings)
            write_manifest(staging, prepared, built, report)
            write_report(staging, report)
    except OSError as exc:
        if exc.errno in exporting.WRITE_ERRORS:  # disk full, quota, read-only: nothing was left behind
            raise BadInput(f"cannot write the output ({exc.strerror})", file=out, stage="output") from None
        raise
    return Result(report=report, artifact=out, exit_code=reporting.exit_code(report))
