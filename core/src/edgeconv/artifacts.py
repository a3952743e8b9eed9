"""An existing artifact: verify it again against its source (``edgeconv verify``), or time it (``edgeconv bench``).

An output folder is read through its manifest, which is checked first (``edgeconv.manifest``: file hashes, runner
settings); ``verify`` also checks that the source given is the one the artifact was made from.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path
from typing import Any

from . import manifest, reporting
from .data import load_dataset
from .model import Model
from .records import Result
from .report import SCHEMA, Budgets
from .request import check_int, profiles, source_path
from .stages import importing, run_stage
from .errors import BadInput
from .verification import tuning
from .verification.bench import latency, peak_memory
from .verification.fidelity import verify_models
from .verification.runners import make_runner


def open_artifact(path: str | Path, *, input_shapes: Any = None) -> tuple[Model, dict[str, Any] | None]:
    """An output folder (manifest checked) or a model file (imported as a source), and its manifest if any."""
    model, record = manifest.load_artifact(path)
    if model is None:
        model = importing.load(path, profiles=profiles(input_shapes))
    return model, record


def verify(source: Any, artifact: str | Path, *, data: Any = None, precision: str | None = None,
           input_shapes: Any = None, budgets: Budgets | None = None, thresholds: dict[str, float] | None = None,
           runs: int = 50, threads: int | None = None, seed: int = 0, memory: bool = True,
           label_output: str | None = None, source_form: str | None = None,
           source_options: dict[str, Any] | None = None, task: str | None = None,
           task_options: dict[str, Any] | None = None, state: dict[str, str] | None = None,
           verify_samples: int | None = None, place: str | None = None) -> Result:
    """Verify an existing artifact (an output folder or a model file) against its source."""
    runs = check_int("--runs", runs, 1)
    threads = check_int("--threads", threads, 1, 1024, optional=True)
    seed = check_int("--seed", seed, 0, 2**32 - 1)
    timings: dict[str, float] = {}
    art, record = open_artifact(artifact)
    if record is not None:
        manifest.check_source(record, source_path(source))
    src = run_stage("import", lambda: importing.load(source, profiles=profiles(input_shapes), source_form=source_form,
                                                  options=dict(source_options or {})), timings)
    prec = precision or (record or {}).get("precision", "fp32")
    with tempfile.TemporaryDirectory(prefix="edgeconv-") as scratch:
        ver = run_stage("verify", lambda: verify_models(
            src, art, data=data, precision=prec, thresholds=thresholds, runs=runs, threads=threads, seed=seed,
            memory=memory, scratch=Path(scratch), runner_options=(record or {}).get("runner_options"),
            label_output=label_output, task=task, task_options=task_options, state=state,
            verify_samples=verify_samples, place=place), timings)
    files = [art.path.parent / f for f in record["artifact"]] if record else [art.path]
    report: dict[str, Any] = {
        "schema": SCHEMA,
        "source": {"path": importing.where(source), "form": src.form, "io": src.io.to_dict()},
        "target": (record or {}).get("target", art.form),
        "precision": prec,
        "route": (record or {}).get("route", [src.form, art.form]),
        "artifact": {"path": str(art.path), "size_bytes": reporting.files_size(files), "form": art.form},
        **ver,
    }
    reporting.finish(report, budgets or Budgets(), timings, report.pop("_warnings", []), {})
    return Result(report, art.path, reporting.exit_code(report))


def bench(model: str | Path, *, runs: int = 100, warmup: int = 10, threads: int | None = None,
          input_shapes: Any = None, data: Any = None, seed: int = 0, memory: bool = True,
          place: str | None = None, tune: str = "quick") -> dict[str, Any]:
    """Latency (and peak memory) of one model or artifact folder on its runner, with the settings its manifest
    records; on a board with ``place`` (measured there). When ``--precision auto`` stored runner settings, they are
    also timed against the runtime's defaults in paired, interleaved rounds (``tune``: ``off`` skips it) and a
    warning says when the stored settings lose on this machine now."""
    import numpy as np

    runs = check_int("--runs", runs, 1)
    warmup = check_int("--warmup", warmup, 0)
    threads = check_int("--threads", threads, 1, 1024, optional=True)
    if tune not in tuning.TUNE_LEVELS:
        raise BadInput(f"--tune {tune!r} must be one of {', '.join(tuning.TUNE_LEVELS)}", stage="options")
    m, record = open_artifact(model, input_shapes=input_shapes)
    ds = load_dataset(data, m.io, what="--data", seed=seed, random_samples=1)
    feed = next(iter(ds.feeds(m.io)))[0]
    opts = dict((record or {}).get("runner_options") or {})
    with make_runner(m, place=place, threads=threads, **opts) as runner:
        lat = latency(runner, feed, runs=runs, warmup=warmup)
        info = runner.info
    stored = ((record or {}).get("auto") or {}).get("runner_settings") or {}
    versus = _stored_vs_defaults(m, opts, stored, feed, threads, tune) if stored and place is None else None
    mem: dict[str, Any] = {}
    if place is not None:  # measured where it ran, by the board half
        mem = {k: info[k] for k in ("peak_rss_bytes", "baseline_rss_bytes", "model_rss_bytes") if k in info}
    elif memory:
        with tempfile.TemporaryDirectory(prefix="edgeconv-") as scratch:
            f = Path(scratch) / "_feed.npz"
            np.savez(f, **feed)
            mem = peak_memory(m.form, m.path, {**opts, **({"threads": threads} if threads else {})}, f)
    return {"schema": "edgeconv.bench/1", "model": str(model), "form": m.form, "latency_ms": lat,
            "peak_rss_bytes": mem.get("peak_rss_bytes"), "memory": mem, "runtime": info,
            "stored_settings": versus, "warnings": (versus or {}).get("warnings", []),
            "versions": reporting.versions()}


def _stored_vs_defaults(m: Model, opts: dict[str, Any], stored: dict[str, Any], feed: dict[str, Any],
                        threads: int | None, tune: str) -> dict[str, Any] | None:
    """The settings ``--precision auto`` stored against the runtime's defaults, paired and interleaved, with an A/A
    pair for the noise (``edgeconv.verification.tuning``)."""
    if tune == "off":
        return None
    rounds, per_round = tuning.TUNE_LEVELS[tune]
    defaults = {k: v for k, v in opts.items() if k not in stored}
    runners = [make_runner(m, threads=threads, **o) for o in (opts, defaults, defaults)]
    try:
        for r in runners:
            r.open()
        cs = [tuning.Contender(k, lambda r=r: r.run(feed)) for k, r in zip(("stored", "defaults", "A/A"), runners)]
        tuning.interleaved_rounds(cs, rounds, per_round)
    finally:
        for r in runners:
            r.close()
    effect = tuning.paired_effect(cs[1].samples, cs[0].samples)
    noise = tuning.aa_noise(cs[1].samples, cs[2].samples)
    out = {"settings": stored, "ratio_to_defaults": round(math.exp(effect), 4),
           "noise": round(math.exp(noise), 4), "load": tuning.machine_load(), "warnings": []}
    if effect > noise:
        out["warnings"].append(f"the stored runner settings {stored} are {out['ratio_to_defaults']:.2f}x the runtime "
                               f"defaults' latency on this machine now (noise {out['noise']:.2f}x): run without them")
    return out


LOCAL = ("local", "here", "host")  # --on local: this host (a simulator's place for a vendor target)


def _place(name: str | None) -> str | None:
    return None if name is None or name in LOCAL else name


def verify_places(source: Any, artifact: str | Path, places: list[str], **kwargs: Any) -> Result:
    """``edgeconv verify --on A --on B``: the artifact verified at each place, then the places compared with each
    other on the same inputs (every output of each place against the first place's, by the metric table): a
    simulator that disagrees with the board, or two boards that disagree, is found here. The result is the first
    place's report with ``places`` (each place's verdict, fidelity, latency and runtime) and ``agreement``; its
    exit code is the worst of the places and the agreement."""
    kwargs.pop("place", None)
    results = [(p, verify(source, artifact, place=_place(p), **kwargs)) for p in places]
    report = dict(results[0][1].report)
    report["places"] = [{"place": p, "verdict": r.report["verdict"], "fidelity": r.report.get("fidelity"),
                         "accuracy": r.report.get("accuracy"), "latency_ms": r.report.get("latency_ms"),
                         "runtime": (r.report.get("runtime") or {}).get("artifact")} for p, r in results]
    report["agreement"] = _agreement(artifact, places, kwargs)
    code = max(r.exit_code for _p, r in results)
    if any(not a["pass"] for a in report["agreement"]):
        code = max(code, 1)
        report["verdict"] = {**report["verdict"], "status": "fail", "exit_code": code,
                             "reason": next(a["reason"] for a in report["agreement"] if not a["pass"])}
    return Result(report, results[0][1].artifact, code)


def _agreement(artifact: str | Path, places: list[str], kwargs: dict[str, Any]) -> list[dict[str, Any]]:
    """Each place's outputs against the first place's, on the same verification samples."""
    import numpy as np

    from .model import IOContract
    from .verification.fidelity import adapt_inputs
    from .verification.metrics import compare, thresholds_for

    art, record = open_artifact(artifact)
    src_io = IOContract.from_dict(record["source_io"]) if record and record.get("source_io") else art.io
    ds = load_dataset(kwargs.get("data"), src_io, what="--data", seed=kwargs.get("seed", 0),
                      limit=kwargs.get("verify_samples"))
    opts = dict((record or {}).get("runner_options") or {})
    outs: dict[str, dict[str, list[Any]]] = {}
    for p in places:
        with make_runner(art, place=_place(p), threads=kwargs.get("threads"), **opts) as runner:
            for feed, _ in ds.feeds(src_io):
                for k, v in runner.run(adapt_inputs(feed, src_io, art.io)).items():
                    outs.setdefault(p, {}).setdefault(k, []).append(np.asarray(v))
    # one artifact at two places should give the same answers: the gates of fp32, whatever its precision
    limits = thresholds_for("fp32", kwargs.get("thresholds"))
    first = places[0]
    rows = []
    for p in places[1:]:
        per_output = [compare(name, np.concatenate(outs[first][name]), np.concatenate(outs[p].get(name, [])), limits)
                      for name in outs[first]]
        failed = [f"{o['name']}: {'; '.join(o['failures'])}" for o in per_output if not o["pass"]]
        rows.append({"places": [first, p], "outputs": per_output, "pass": not failed,
                     "reason": f"{p} disagrees with {first}: {failed[0]}" if failed else None})
    return rows
