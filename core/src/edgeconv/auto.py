"""``--precision auto``: build every variant the target offers, verify and time each, keep the fastest that meets
every budget (docs/auto.md). A strategy above the pipeline: it prepares once and runs each candidate through the
pipeline's public stages; the pipeline never imports it.

1. **Prepare once**: import, route, generic passes (pruning included), pre-check (``pipeline.prepare``); the
   calibration set is loaded once for every int8 candidate.
2. **Candidates**: each precision the target declares among fp32, fp16, bf16 and int8 (int8 only with ``--calib``),
   each built into a scratch folder (``pipeline.build``) and verified against the source on the user's data
   (``pipeline.verify_built``) -- exactly what ``edgeconv convert -p <precision>`` would report.
3. **Sensitive-layer fallback** ("mixed"): when int8 misses the accuracy budget and the target takes
   ``keep_float``, the ONNX nodes the target receives are ranked by their INT8 error and the smallest set that, kept
   in float, meets the budget is searched (``edgeconv.sensitivity.search``); every trial is a real int8 build on the
   target. The ranking: first the *trace ranking* where the int8 artifact's runtime exposes its tensors (the built
   artifact traced layer by layer against the float model: ``edgeconv.debug.ranking``, handed in by the API since
   the strategies do not import each other), with at most ``TRACE_TRIALS`` builds; then, when that finds no set
   (or no tracer exists), the simulated ranking (``edgeconv.sensitivity.rank``: one node at a time in fake-quant).
   The report's ``sensitivity.ranking`` says which ranking the result came from.
4. **Runtime settings**: for each candidate that meets the accuracy, fidelity and size budgets, the runner settings
   its runner offers for tuning (``RunnerSpec.tuning``: backend knowledge stays in the backend) are timed, all
   candidates and settings interleaved in rounds so that load on the machine hits them alike.
5. **Winner**: the fastest (median latency) candidate + settings; then the latency budget. The output folder holds
   the winner only; its manifest carries the winning runner settings (so ``edgeconv bench``/``verify`` run it the
   same way) and its report (``auto``) lists every candidate with its measurements and why the winner won.

Accuracy budget: ``--max-accuracy-drop`` when given, else ``DEFAULT_MAX_ACCURACY_DROP`` (1 pp) -- measured against
labels, else as top-1 disagreement for classifier outputs; for other outputs only the fidelity thresholds of each
candidate's precision apply (docs/fidelity.md).
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from . import manifest, output, pipeline, sensitivity
from .stages import routing
from .data import load_dataset
from .errors import BadInput, EdgeconvError
from .plugins import registry
from .records import Result, load_ref
from .report import Budgets, dumps
from .request import ConversionRequest
from .verification import tuning
from .verification.bench import peak_memory
from .verification.fidelity import adapt_inputs
from .verification.runners import make_runner

DEFAULT_MAX_ACCURACY_DROP = 1.0  # percentage points, when --precision auto is given no --max-accuracy-drop
AUTO_PRECISIONS = ("fp32", "fp16", "bf16", "int8")
MAX_FALLBACK_TRIALS = 8  # int8 builds the sensitive-layer search may make
TRACE_TRIALS = 4  # of those, the builds the search over the trace ranking may make
SENSITIVITY_SAMPLES = 16  # evaluation samples for ranking the layers (calibration: 2x)


def _quiet(msg: str) -> None:
    pass


def runtime_variants(form: str, threads: int | None = None) -> list[dict[str, Any]]:
    """Runner settings tried for an artifact of ``form``: its runner's ``tuning(threads)`` (the first is the
    artifact's own settings), or only those when the runner offers none. A ``--threads`` given by the user is kept
    (thread counts are then not searched)."""
    spec = registry().runners.get(form)
    if spec is None or spec.tuning is None:
        return [{}]
    variants = list(load_ref(spec.tuning)(threads)) or [{}]
    return variants if variants[0] == {} else [{}, *variants]


# -- the run ----------------------------------------------------------------------------------------------------------
@dataclass
class Session:
    """One auto run: the request, the preparation every candidate shares, and the candidates built so far."""

    req: ConversionRequest
    prepared: pipeline.Prepared
    scratch: Path
    say: Callable[[str], None]
    gate: Budgets
    defaulted: bool
    candidates: list[dict[str, Any]] = field(default_factory=list)
    errors: list[EdgeconvError] = field(default_factory=list)
    trace_ranking: Callable[..., Any] | None = None  # edgeconv.debug.ranking.rank_by_trace, from the API

    def build(self, precision: str, keep: list[str] | None = None) -> dict[str, Any]:
        """Build and verify one candidate (``keep``: ONNX nodes kept in float) into its own scratch folder."""
        name = precision if not keep else f"{precision}+float[{len(keep)}]"
        folder = self.scratch / f"c{len(self.candidates):02d}-{precision}"
        folder.mkdir()
        entry: dict[str, Any] = {"name": name, "precision": precision, "keep_float": list(keep or []),
                                 "folder": folder}
        say = lambda m: self.say(f"candidate {name}: {m}")  # noqa: E731
        say("building")
        t0 = time.perf_counter()
        timings: dict[str, float] = {}
        try:
            p = pipeline.plan(self.req.replace(keep_float=tuple(keep or ())), precision)
            built = pipeline.build(self.prepared, p, folder, timings, say)
            runnable = built.artifact.runnable
            ver = pipeline.verify_built(self.prepared, built, self.scratch, timings, say, memory=False,
                                        runs=max(10, self.req.runs // 2)) if runnable else None
            report = pipeline.report_of(self.prepared, built, folder, ver, timings)
            pipeline.write_manifest(folder, self.prepared, built, report)
        except EdgeconvError as exc:
            self.errors.append(exc)
            entry.update(status="error", error=exc.one_line(), qualifies=False, failures=[f"build failed: {exc}"],
                         seconds=round(time.perf_counter() - t0, 3))
            self.candidates.append(entry)
            return entry
        entry.update(report=report, built=built, verification=ver, timings=timings,
                     seconds=round(time.perf_counter() - t0, 3), **_judge(report, self.gate, self.defaulted))
        self.candidates.append(entry)
        say("meets the budgets" if entry["qualifies"] else "misses the budgets")
        return entry


def _check(req: ConversionRequest) -> None:
    if req.prepare_only:
        raise BadInput("--precision auto verifies and times every candidate: it cannot run with --prepare-only",
                       stage="options")
    if not req.verify:
        raise BadInput("--precision auto chooses by verifying and timing every candidate: it cannot run with "
                       "--no-verify", stage="options")
    if req.keep_float or "keep_float" in req.options:
        raise BadInput("--precision auto finds the layers to keep in float itself: give keep_float with -p int8 "
                       "instead", stage="options")


def _precisions(tgt: Any, precisions: tuple[str, ...] | None) -> list[str]:
    wanted = tuple(precisions or AUTO_PRECISIONS)
    unknown = [p for p in wanted if p not in tgt.precisions]
    if precisions and unknown:
        raise BadInput(f"target {tgt.name!r} does not support precision {unknown[0]!r} "
                       f"(it supports: {', '.join(tgt.precisions)})", stage="options")
    chosen = [p for p in wanted if p in tgt.precisions]
    if not chosen:
        raise BadInput(f"target {tgt.name!r} offers none of {', '.join(wanted)} for --precision auto",
                       stage="options")
    return chosen


def convert_auto(req: ConversionRequest, *, status: Callable[[str], None] | None = None,
                 precisions: tuple[str, ...] | None = None, fallback: bool = True,
                 search_runtime: bool = True, tune: str = "quick", trace_ranking: Callable[..., Any] | None = None
                 ) -> Result:
    """``convert(..., precision="auto")``; ``precisions`` narrows the candidates, ``fallback=False`` skips the
    sensitive-layer search; ``tune`` (``off``, ``quick``, ``full``) is how hard the runner settings are searched
    (``search_runtime=False`` is ``tune="off"``). ``trace_ranking``: ``edgeconv.debug.ranking.rank_by_trace`` (the
    API passes it), tried before the simulated ranking."""
    if tune not in tuning.TUNE_LEVELS:
        raise BadInput(f"--tune {tune!r} must be one of {', '.join(tuning.TUNE_LEVELS)}", stage="options")
    say = status or _quiet
    started = time.perf_counter()
    _check(req)
    tgt = registry().target(req.target)
    chosen = _precisions(tgt, precisions)
    base = pipeline.plan(req, chosen[0])  # options and requirements checked before any build
    out = req.default_output(tgt.name, "auto")
    output.check_output(out, req.force, req.inputs())
    defaulted = req.budgets.max_accuracy_drop is None
    drop = DEFAULT_MAX_ACCURACY_DROP if defaulted else req.budgets.max_accuracy_drop
    gate = Budgets(max_size=req.budgets.max_size, max_latency=None, max_accuracy_drop=drop)
    notes: list[str] = []
    timings: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="edgeconv-auto-") as tmp:
        scratch = Path(tmp)
        (scratch / "prepare").mkdir()
        prepared = pipeline.prepare(base, scratch / "prepare", timings, say)
        if req.calibration is not None and "int8" in chosen:
            prepared.job.calibration()  # loaded once for every int8 build
        s = Session(req, prepared, scratch, say, gate, defaulted, trace_ranking=trace_ranking)
        _build_candidates(s, chosen, notes, timings)
        sensitivity_info = _maybe_fallback(s, tgt, fallback, notes, timings) if fallback else None
        t0 = time.perf_counter()
        finalists = [c for c in s.candidates if c.get("qualifies")]
        pool = finalists or [c for c in s.candidates if "report" in c and c.get("status") == "built"]
        timed, tuning_record = _tournament(pool, req, tune if search_runtime else "off", say)
        timings["runtime_search"] = round(time.perf_counter() - t0, 3)
        best = _best(timed, finalists)
        winner = best["candidate"] if best else next(c for c in s.candidates if "report" in c)
        settings = best["settings"] if best else {}
        say(f"winner: {winner['name']}")
        report = _final_report(s, winner, best, settings, timed, out, drop=drop, notes=notes,
                               why=_why(winner, settings, timed, finalists, req.budgets),
                               sensitivity=sensitivity_info, timings=timings, started=started)
        _note_tuning(report, tuning_record, best)
        _write_winner(s, winner, settings, report, out)
    return Result(report=report, artifact=out, exit_code=report["verdict"]["exit_code"])


def _note_tuning(report: dict[str, Any], record: dict[str, Any], best: dict[str, Any] | None) -> None:
    report["auto"]["tuning"] = {**record, "winner": best.get("tuning") if best else None}
    load = record["load"]
    if load["busy"]:
        report["warnings"].append(f"the machine was busy while tuning ({tuning.load_text(load)}): thread-reducing "
                                  "settings were not tried; re-run on a quiet machine for settings that hold")


def _build_candidates(s: Session, chosen: list[str], notes: list[str], timings: dict[str, float]) -> None:
    t0 = time.perf_counter()
    for precision in chosen:
        if precision == "int8" and s.req.calibration is None:
            notes.append("int8 was not tried: it needs calibration data (--calib)")
            continue
        s.build(precision)
    timings["candidates"] = round(time.perf_counter() - t0, 3)
    if not any("report" in c for c in s.candidates):
        raise s.errors[0] if s.errors else BadInput("--precision auto built no candidate", stage="export")


def _best(timed: list[dict[str, Any]], finalists: list[dict[str, Any]]) -> dict[str, Any] | None:
    if finalists:
        return min(timed, key=lambda t: t["latency_ms"]["p50"]) if timed else None
    if timed:  # nothing meets the budgets: the one with the fewest failures, then the fastest
        return min(timed, key=lambda t: (len(t["candidate"]["failures"]), t["latency_ms"]["p50"]))
    return None


# -- judging ------------------------------------------------------------------------------
def _judge(report: dict[str, Any], gate: Budgets, defaulted: bool) -> dict[str, Any]:
    """Does a candidate meet the fidelity thresholds and the size/accuracy budgets (latency comes later)?"""
    if report["verdict"]["status"] == "not-run":
        return {"status": "not-run", "qualifies": False, "budgets": {},
                "failures": [f"not verified here: {report['verdict']['reason']}"]}
    verdicts = gate.evaluate(report)
    acc = verdicts.get("accuracy_drop_pp")
    if defaulted and acc is not None and acc["value"] is None:
        verdicts.pop("accuracy_drop_pp")  # no labels, no classifier output: the fidelity thresholds decide
    from . import reporting

    # every check of the candidate's own verdict (task, outputs, the labelled accuracy's default gate, precision
    # share), then the budgets auto holds it to
    fails = [f"{check}: {why}" for check, why in reporting.failures(report) if not check.startswith("budget ")]
    fails += [f"{k} {b['value']} > {b['limit']}" if b["value"] is not None else f"{k}: {b.get('reason')}"
              for k, b in verdicts.items() if not b["pass"]]
    return {"status": "built", "qualifies": not fails, "budgets": verdicts, "failures": fails}


def _runnable(c: dict[str, Any]) -> bool:
    return c.get("status") == "built"


# -- the sensitive-layer fallback -------------------------------------------------------------------------------------
def _fallback_blocker(tgt: Any, int8: dict[str, Any], prepared: pipeline.Prepared) -> str | None:
    if not pipeline.supports_keep_float(tgt):
        return f"target {tgt.name!r} has no keep_float option"
    if prepared.model.form != "onnx" and routing.route_to(prepared.model.form, "onnx") is None:
        return (f"the target receives a {prepared.model.form!r} model and no route makes it ONNX (keep_float names "
                "ONNX nodes)")
    if int8["status"] != "built":
        return "int8 could not be verified on this host"
    return None


def _maybe_fallback(s: Session, tgt: Any, fallback: bool, notes: list[str],
                    timings: dict[str, float]) -> dict[str, Any] | None:
    int8 = next((c for c in s.candidates if c["precision"] == "int8" and not c["keep_float"]), None)
    if not fallback or int8 is None or "report" not in int8 or int8["qualifies"]:
        return None
    t0 = time.perf_counter()
    why_not = _fallback_blocker(tgt, int8, s.prepared)
    info = None
    if why_not:
        notes.append(f"no sensitive-layer fallback: {why_not}")
    else:
        info = _fallback(s)
    timings["fallback"] = round(time.perf_counter() - t0, 3)
    return info


class _Stop(Exception):
    pass


def _fallback(s: Session) -> dict[str, Any]:
    """Rank the layers of the ONNX model the target receives (the trace ranking first, where the int8 artifact's
    runtime exposes its tensors; then the simulated one), and search the smallest float set that meets the budget
    (real int8 builds)."""
    model = s.prepared.model
    if model.form != "onnx":  # a target that takes torch models: rank the nodes of the model's ONNX export
        s.say(f"fallback: the target receives a {model.form} model; ranking the nodes of its ONNX export")
        model = pipeline.onnx_twin(s.prepared)
    calib = [feed for feed, _ in s.prepared.job.calibration().feeds(model.io, limit=2 * SENSITIVITY_SAMPLES)]
    ds = load_dataset(s.req.data, model.io, what="--data", seed=s.req.seed, limit=SENSITIVITY_SAMPLES)
    evals = [feed for feed, _ in ds.feeds(model.io, limit=SENSITIVITY_SAMPLES)] or calib
    int8 = next(c for c in s.candidates if c["precision"] == "int8" and not c["keep_float"])
    refused: list[str] = []
    tried: dict[tuple[str, ...], bool] = {}

    def meets(keep: list[str]) -> bool:
        key = tuple(sorted(keep))
        if key not in tried:  # the same set from the other ranking is not built twice
            entry = s.build("int8", keep)
            if entry.get("status") == "error":  # the target cannot build it at all: no point in more trials
                refused.append(entry["error"])
                raise _Stop
            tried[key] = bool(entry.get("qualifies"))
        return tried[key]

    info: dict[str, Any] = {"samples": {"calibration": len(calib), "evaluation": len(evals)}}
    traced = _trace_rank(s, int8, evals)
    info["trace"] = {k: v for k, v in traced.items() if k != "ranked"}
    result, trials = sensitivity.SearchResult([], False), []
    try:
        if traced.get("ranked"):
            result = _search(s, "trace", traced["ranked"], meets, TRACE_TRIALS, info)
            trials += result.trials
        if not result.found:
            s.say("fallback: ranking layers by their INT8 error (fake-quant, one node at a time)")
            t0 = time.perf_counter()
            ranked = sensitivity.rank(model.obj, evals, calib, threads=s.req.threads, status=s.say)
            info["rank_seconds"] = round(time.perf_counter() - t0, 3)
            result = _search(s, "fake-quant", ranked, meets, MAX_FALLBACK_TRIALS - len(trials), info)
            trials += result.trials
    except _Stop:
        result = sensitivity.SearchResult([], False)
    return {**({"stopped": refused[0]} if refused else {}), **info, **result.to_dict(), "trials": trials}


def _trace_rank(s: Session, int8: dict[str, Any], evals: list[dict[str, Any]]) -> dict[str, Any]:
    """The trace ranking of the plain int8 candidate, or why there is none."""
    if s.trace_ranking is None:
        return {"ranked": None, "why_not": "no trace ranking was given (edgeconv.auto called without the API)"}
    t0 = time.perf_counter()
    model = s.prepared.model
    if model.form != "onnx":
        return {"ranked": None, "why_not": f"the target receives a {model.form} model: its artifact's tensors are not "
                                          "named after ONNX nodes"}
    out = s.trace_ranking(model.obj, model.io, int8["built"].artifact, evals, threads=s.req.threads, status=s.say)
    return {**out, "seconds": round(time.perf_counter() - t0, 3)}


def _search(s: Session, ranking: str, ranked: list[dict[str, Any]], meets: Callable[[list[str]], bool],
            max_trials: int, info: dict[str, Any]) -> sensitivity.SearchResult:
    """The search over one ranking; ``info`` records it as the ranking used (the last one searched)."""
    names = [r["node"] for r in ranked if r["score"] > 0 or r.get("misses_gates")]
    trace = info.get("trace") or {}
    info.update(ranking=ranking, ranked=ranked[:30], candidates_ranked=len(ranked),
                ranked_by=trace.get("ranked_by") if ranking == "trace" else
                "output SQNR with each layer alone in int8 (fake-quant on onnxruntime)",
                method=f"{ranking} ranking, then exponential search + bisection over the ranked prefix, greedy "
                       "pruning; every trial a real int8 build on the target")
    return sensitivity.search(names, meets, max_trials=max(0, max_trials), status=s.say)


# -- timing ------------------------------------------------------------------------------------------------------------
def _feed(c: dict[str, Any], req: ConversionRequest) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    model, record = manifest.load_artifact(c["folder"])
    src_io = c["built"].job.source_io
    ds = load_dataset(req.data, src_io, what="--data", seed=req.seed, random_samples=1)
    return model, record or {}, adapt_inputs(next(iter(ds.feeds(src_io)))[0], src_io, model.io)


def _tournament(pool: list[dict[str, Any]], req: ConversionRequest, tune: str,
                say: Callable[[str], None]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Time every candidate with its runner's defaults, the defaults again (the A/A pair) and each tuning variant,
    all interleaved in the same rounds; keep a variant only when it beats the defaults by more than the noise
    (``edgeconv.verification.tuning``). Returns one timing per candidate (its chosen settings) and the tuning record."""
    load = tuning.machine_load()
    rounds, per_round = tuning.TUNE_LEVELS.get(tune) or (3, max(5, req.runs // 3))
    if rounds == 0:
        rounds, per_round = 3, max(5, req.runs // 3)  # off: the candidates are still timed, with their defaults
    groups: list[dict[str, Any]] = []
    skipped: list[str] = []
    try:
        for c in pool:
            group = _contenders(c, req, tune, load, skipped, say)
            if group is not None:
                groups.append(group)
        everyone = [x for g in groups for x in g["contenders"]]
        tuning.interleaved_rounds(everyone, rounds, per_round, warmup=req.warmup, status=say)
        return [_chosen(g, req.warmup, rounds) for g in groups], {
            "level": tune, "rounds": rounds, "per_round": per_round, "load": load, "skipped": skipped,
            "rule": "a setting other than the defaults is kept only when it wins paired, interleaved rounds "
                    "against them by more than the A/A noise + 3 %"}
    finally:
        for g in groups:
            for r in g["runners"]:
                r.close()


def _contenders(c: dict[str, Any], req: ConversionRequest, tune: str, load: dict[str, Any], skipped: list[str],
                say: Callable[[str], None]) -> dict[str, Any] | None:
    model, record, feed = _feed(c, req)
    base = dict(record.get("runner_options") or {})
    variants = runtime_variants(model.form, req.threads)[1:] if tune != "off" else []
    if load["busy"]:
        kept = [v for v in variants if not tuning.takes_threads_away(v)]
        skipped += [f"{c['name']} {_label(v)}: the machine is busy ({tuning.load_text(load)}): "
                    "fewer threads would win against the contention, not on the device" for v in variants
                    if v not in kept]
        variants = kept
    group: dict[str, Any] = {"candidate": c, "runners": [], "contenders": [], "variants": {}, "feed": feed}
    for key, settings in [("defaults", {}), ("defaults (A/A)", {}), *((_label(v), v) for v in variants)]:
        runner = make_runner(model, threads=req.threads, **{**base, **settings})
        try:
            runner.open()
        except EdgeconvError as exc:
            say(f"{c['name']} {key}: cannot run ({exc})")
            if not settings:
                for r in group["runners"]:
                    r.close()
                return None
            continue
        group["runners"].append(runner)
        contender = tuning.Contender(f"{c['name']}: {key}", lambda r=runner: r.run(feed))
        group["contenders"].append(contender)
        if key == "defaults":
            group["default"], group["info"] = contender, runner.info
        elif key == "defaults (A/A)":
            group["aa"] = contender
        else:
            group["variants"][key] = (settings, contender, runner.info)
    return group


def _chosen(g: dict[str, Any], warmup: int, rounds: int) -> dict[str, Any]:
    decision = tuning.decide(g["default"].samples, {k: v[1].samples for k, v in g["variants"].items()},
                             g["aa"].samples)
    if decision["choice"] is None:
        settings, contender, info = {}, g["default"], g["info"]
    else:
        settings, contender, info = g["variants"][decision["choice"]]
    batch = max((a.shape[0] if a.ndim else 1) for a in g["feed"].values()) if g["feed"] else 1
    return {"candidate": g["candidate"], "settings": settings, "runtime": dict(info), "tuning": decision,
            "latency_ms": tuning.latency_record(contender, batch, warmup, rounds)}


# -- the report ---------------------------------------------------------------------------
def _label(settings: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in settings.items()) or "artifact defaults"


def _why(winner: dict[str, Any], settings: dict[str, Any], timed: list[dict[str, Any]],
         finalists: list[dict[str, Any]], budgets: Budgets) -> str:
    if not finalists:
        return (f"no candidate met the accuracy, fidelity and size budgets; kept {winner['name']} (fewest failures, "
                f"then fastest): {'; '.join(winner.get('failures') or []) or 'see the candidates'}")
    mine = [t for t in timed if t["candidate"] is winner and t["settings"] == settings]
    p50 = mine[0]["latency_ms"]["p50"] if mine else None
    others = {}
    for t in timed:
        if t["candidate"] is not winner:
            name = t["candidate"]["name"]
            others[name] = min(others.get(name, float("inf")), t["latency_ms"]["p50"])
    text = f"{winner['name']} ({_label(settings)}) is the fastest of the {len(finalists)} candidate(s) that meet " \
           f"the accuracy, fidelity and size budgets"
    if p50 is not None:
        text += f": p50 {p50:.3f} ms"
        if others:
            nxt = min(others.items(), key=lambda kv: kv[1])
            text += f", next {nxt[0]} {nxt[1]:.3f} ms ({nxt[1] / p50:.2f}x)"
    if budgets.max_latency is not None and p50 is not None and p50 > budgets.max_latency:
        text += f"; it still misses the latency budget ({p50:.3f} > {budgets.max_latency} ms)"
    return text


def _summary(c: dict[str, Any], timed: list[dict[str, Any]]) -> dict[str, Any]:
    rep = c.get("report") or {}
    fid = rep.get("fidelity") or []
    runs = [t for t in timed if t["candidate"] is c]
    best = min(runs, key=lambda t: t["latency_ms"]["p50"]) if runs else None
    return {
        "name": c["name"],
        "precision": c["precision"],
        "keep_float": c["keep_float"],
        "status": c.get("status"),
        "error": c.get("error"),
        "size_bytes": (rep.get("artifact") or {}).get("size_bytes"),
        "accuracy": rep.get("accuracy"),
        "fidelity": {"cosine": min((f.get("cosine") for f in fid if f.get("cosine") is not None), default=None),
                     "sqnr_db": min((f.get("sqnr_db") for f in fid if f.get("sqnr_db") is not None), default=None),
                     "top1": min(((f.get("topk_agreement") or {}).get("top1") for f in fid
                                  if (f.get("topk_agreement") or {}).get("top1") is not None), default=None),
                     "pass": all(f.get("pass") for f in fid) if fid else None},
        "latency_ms_p50": best["latency_ms"]["p50"] if best else (rep.get("latency_ms") or {}).get("p50"),
        "latency_measured": "tournament" if best else ("verification" if rep.get("latency_ms") else None),
        "best_settings": best["settings"] if best else None,
        "settings_tried": (best or {}).get("tuning", {}).get("variants", []),
        "tuning_noise": (best or {}).get("tuning", {}).get("noise"),
        "budgets": c.get("budgets") or {},
        "qualifies": bool(c.get("qualifies")),
        "failures": c.get("failures") or [],
        "seconds": c.get("seconds"),
    }


def _final_report(s: Session, winner: dict[str, Any], best: dict[str, Any] | None, settings: dict[str, Any],
                  timed: list[dict[str, Any]], out: Path, *, drop: float, notes: list[str], why: str,
                  sensitivity: dict[str, Any] | None, timings: dict[str, float], started: float) -> dict[str, Any]:
    """The winner's report, written for its final folder, with the candidates and why the winner won."""
    req = s.req
    built = winner["built"]
    budgets = Budgets(max_size=req.budgets.max_size, max_latency=req.budgets.max_latency, max_accuracy_drop=drop)
    report = pipeline.report_of(s.prepared, built, out, dict(winner["verification"] or {}), dict(winner["timings"]))
    report["precision_requested"] = "auto"
    if best is not None:
        report["latency_ms"] = best["latency_ms"]
        report["runtime"] = {**(report.get("runtime") or {}), "artifact": best["runtime"], "settings": settings}
        if req.memory:
            report.update(_memory(winner, settings, req))
    if s.defaulted and not report.get("accuracy") and not any(
            (f.get("topk_agreement") or {}).get("top1") is not None for f in report.get("fidelity") or []):
        budgets = replace(budgets, max_accuracy_drop=None)
    report["auto"] = {
        "winner": winner["name"], "why": why, "runner_settings": settings, "accuracy_budget_pp": drop,
        "accuracy_budget_source": "default (docs/auto.md)" if s.defaulted else "--max-accuracy-drop",
        "candidates": [_summary(c, timed) for c in s.candidates], "sensitivity": sensitivity, "notes": notes,
    }
    warnings = list(report.get("warnings") or [])
    if s.defaulted:
        warnings.append(f"--precision auto: no --max-accuracy-drop given; candidates were held to "
                        f"{DEFAULT_MAX_ACCURACY_DROP} pp (the default, docs/auto.md)")
    from . import reporting

    reporting.finish(report, budgets, {**timings, "total": round(time.perf_counter() - started, 3)},
                     warnings + notes, built.artifact.tools)
    return report


def _memory(winner: dict[str, Any], settings: dict[str, Any], req: ConversionRequest) -> dict[str, Any]:
    import numpy as np

    model, record, feed = _feed(winner, req)
    with tempfile.TemporaryDirectory(prefix="edgeconv-") as tmp:
        f = Path(tmp) / "_feed.npz"
        np.savez(f, **feed)
        opts = {**(record.get("runner_options") or {}), **settings, **({"threads": req.threads} if req.threads else {})}
        mem = peak_memory(model.form, model.path, opts, f)
    return {"peak_rss_bytes": mem.get("peak_rss_bytes"), "memory": mem}


def _write_winner(s: Session, winner: dict[str, Any], settings: dict[str, Any], report: dict[str, Any],
                  out: Path) -> None:
    """The output folder: the winner's files, its manifest with the winning runner settings, the auto report."""
    built = winner["built"]
    art = built.artifact
    with output.staged(out, s.req.force, s.req.inputs()) as staging:
        # the candidate's whole folder: besides the artifact's files an exporter may keep what its runner needs
        # (rknn's build recipe); the manifest and the report are written again for the winner
        shutil.copytree(winner["folder"], staging, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns(manifest.FILE, "report.json"))
        art.runner_options = {**(art.runner_options or {}), **settings}
        pipeline.write_manifest(staging, s.prepared, built, report)
        record = json.loads((staging / manifest.FILE).read_text())
        record["auto"] = {"winner": winner["name"], "precision": winner["precision"],
                          "keep_float": winner["keep_float"], "runner_settings": settings,
                          "candidates": [c["name"] for c in s.candidates]}
        (staging / manifest.FILE).write_text(dumps(record, indent=2))
        pipeline.write_report(staging, report)
