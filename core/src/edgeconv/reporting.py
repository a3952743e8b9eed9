"""The report (schema ``edgeconv.report/1``, docs/fidelity.md): what was converted how, what verification found,
and the verdict with its exit code and the check that decided it."""

from __future__ import annotations

import datetime as _dt
import platform
import sys
from pathlib import Path
from typing import Any

from ._version import __version__
from .model import Model
from .records import Artifact, Target
from .report import SCHEMA, Budgets

# The core's own dependencies; every other tool's version comes from the artifact (Artifact.tools), the importer
# (Model.meta) or the runner (its info), so that a backend records what it used without the core naming it.
CORE_MODULES = ("numpy", "onnx", "onnxruntime", "onnxslim")


def versions(extra: dict[str, str] | None = None) -> dict[str, str]:
    v = {"edgeconv": __version__, "python": platform.python_version(), "platform": platform.platform()}
    for mod in CORE_MODULES:
        m = sys.modules.get(mod)
        if m is not None and getattr(m, "__version__", None):
            v[mod] = str(m.__version__)
    v.update({k: str(x) for k, x in (extra or {}).items() if x is not None})
    return v


def files_size(files: list[Path]) -> int:
    return sum(f.stat().st_size for f in files if f.is_file())


def source_size(path: Path | None, model: Model) -> int | None:
    """The source on disk: a file with the external data the importer found, or a folder's files."""
    if path is None or not path.exists():
        return None
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size + sum(Path(p).stat().st_size for p in model.meta.get("external_data", []))


def jsonable(opts: Any) -> dict[str, Any]:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dict(opts).items()}


def conversion_report(*, where: str, sha256: str | None, size: int | None, model: Model, target: Target,
                      precision: str, options: dict[str, Any], forms: list[str], passes: list[dict[str, Any]],
                      artifact: Artifact, staging: Path, final: Path, calibration: Any,
                      device: Any) -> dict[str, Any]:
    """The report of one conversion before verification: artifact paths as they will be once ``staging`` (where
    the exporter wrote) is renamed to ``final``."""
    files = artifact.files or [artifact.path]
    moved = lambda p: str(final / Path(p).relative_to(staging))  # noqa: E731
    return {
        "schema": SCHEMA,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "source": {"path": where, "sha256": sha256, "form": model.form, "size_bytes": size,
                   "io": model.io.to_dict(), "meta": model.meta},
        "target": target.name,
        "target_provider": target.dist,
        "precision": precision,
        "options": jsonable(options),
        "route": forms,
        "passes": passes,
        "artifact": {"path": moved(artifact.path), "files": [moved(f) for f in files], "form": artifact.form,
                     "size_bytes": files_size(files), "manifest": str(final / "manifest.json"),
                     "io": artifact.io.to_dict(), "details": artifact.details},
        "calibration": calibration,
        **({"device": dict(device)} if device else {}),
    }


def not_run(report: dict[str, Any], reason: str) -> None:
    report.update({"fidelity": None, "accuracy": None, "latency_ms": None, "peak_rss_bytes": None,
                   "runtime": {"artifact": "not run", "reason": reason}})


def failures(report: dict[str, Any]) -> list[tuple[str, str]]:
    """(the check that failed, why) for every failed check, in the order they decide: task, outputs, the labelled
    accuracy's default gate (when no --max-accuracy-drop budget replaces it), precision share, the artifact's deployment
    check (``details["deployment"]``: a plugin's check of the artifact as plain deployment code loads it), budgets."""
    out: list[tuple[str, str]] = []
    task = report.get("task")
    if isinstance(task, dict) and task.get("pass") is False:
        for why in task.get("failures") or ["failed"]:
            out.append((f"task {task.get('name')}", why))
    for f in report.get("fidelity") or []:
        if not f.get("pass", True):
            out.append((f"output {f['name']}", "; ".join(f.get("failures") or ["failed"])))
    acc = report.get("accuracy")
    if isinstance(acc, dict) and acc.get("pass") is False and "accuracy_drop_pp" not in (report.get("budgets") or {}):
        out.append(("accuracy", f"{acc.get('metric', 'accuracy')} dropped {acc.get('drop_pp')} pp > "
                                f"{acc.get('limit_pp')} pp (the default gate; --max-accuracy-drop sets another)"))
    share = report.get("precision_share")
    if isinstance(share, dict) and share.get("pass") is False:
        out.append(("precision", share.get("reason") or "less of the model runs at the requested precision"))
    deploy = ((report.get("artifact") or {}).get("details") or {}).get("deployment")
    if isinstance(deploy, dict) and deploy.get("pass") is False:  # the artifact as deployment code loads it
        out.append(("deployment", str(deploy.get("reason") or f"{deploy.get('check')} fails the fidelity contract")))
    for k, b in (report.get("budgets") or {}).items():
        if not b["pass"]:
            why = f"{b['value']} > {b['limit']}" if b["value"] is not None else str(b.get("reason"))
            out.append((f"budget {k}", why))
    return out


def finish(report: dict[str, Any], budgets: Budgets, timings: dict[str, float], warnings: list[str],
           tools: dict[str, str], not_run_reason: str | None = None, not_run_code: int = 0) -> None:
    """Budgets, verdict (with its exit code and the check that decided it), timings, versions and warnings."""
    report["budgets"] = budgets.evaluate(report)
    failed = failures(report)
    if failed:
        texts = [f"{check}: {why}" for check, why in failed]
        report["verdict"] = {"status": "fail", "reason": texts[0], "failures": texts, "decided_by": failed[0][0],
                             "exit_code": 1}
    elif not_run_reason:
        report["verdict"] = {"status": "not-run", "reason": not_run_reason, "exit_code": not_run_code}
    else:
        checks = ["task " + report["task"]["name"]] if isinstance(report.get("task"), dict) else []
        checks += [f"output {f['name']}" for f in report.get("fidelity") or []]
        report["verdict"] = {"status": "pass", "reason": None, "decided_by": checks, "exit_code": 0}
    report["timings"] = dict(timings)
    report["versions"] = versions(tools)
    report["warnings"] = list(dict.fromkeys(warnings))


def exit_code(report: dict[str, Any]) -> int:
    return report["verdict"]["exit_code"]
