"""``--precision auto``: build every variant the target offers, verify and time each, keep the fastest
that meets every budget (docs/auto.md).

1. **Candidates**: each precision the target declares among fp32, fp16, bf16 and int8 (int8 only
   with ``--calib``), each built by the ordinary pipeline into a scratch folder and verified against
   the source on the user's data (``--data``; labels give the accuracy drop, else the top-1
   disagreement bounds it) -- exactly what ``edgeconv convert -p <precision>`` would report.
2. **Sensitive-layer fallback** ("mixed"): when int8 misses the accuracy budget and the target takes
   ``keep_float``, ``edgeconv.sensitivity`` ranks the ONNX nodes by their INT8 error and searches the
   smallest set that, kept in float, meets the budget; every trial is a real int8 build on the target.
3. **Runtime settings**: for each candidate that meets the accuracy, fidelity and size budgets, the
   runner settings that change speed (onnxruntime graph optimisation level and threads; OpenVINO
   threads and performance hint -- streams; LiteRT threads and XNNPACK) are timed, all candidates and
   settings interleaved in rounds so that load on the machine hits them alike.
4. **Winner**: the fastest (median latency) candidate + settings; then the latency budget. The output
   folder holds the winner only, its manifest carries the winning runner settings (so ``edgeconv
   bench``/``verify`` run it the same way), and its report (``auto``) lists every candidate with its
   measurements, its verdict per budget, and why the winner won.

Accuracy budget: ``--max-accuracy-drop`` when given, else ``DEFAULT_MAX_ACCURACY_DROP`` (1 pp) --
measured against labels, else as top-1 disagreement for classifier outputs; for other outputs only
the fidelity thresholds of each candidate's precision apply (docs/fidelity.md).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from .errors import BadInput, EdgeconvError
from .records import Job
from .report import Budgets

DEFAULT_MAX_ACCURACY_DROP = 1.0  # percentage points, when --precision auto is given no --max-accuracy-drop
AUTO_PRECISIONS = ("fp32", "fp16", "bf16", "int8")
MAX_FALLBACK_TRIALS = 8  # int8 builds the sensitive-layer search may make
SENSITIVITY_SAMPLES = 16  # evaluation samples for ranking the layers (calibration: 2x)
LATENCY_ROUNDS = 3


# The source options that prune a PyTorch source (builtins/torch_import.py): applied once by auto.
PRUNE_OPTIONS = ("prune", "finetune", "prune_data", "prune_ignore", "prune_round_to")


def runtime_variants(form: str, threads: int | None = None) -> list[dict[str, Any]]:
    """Runner settings tried for an artifact of ``form`` (the first is the artifact's own).

    Only settings that change speed, not numbers: the precision hint of OpenVINO is a candidate of
    its own (bf16, and fp16 on GPU/NPU), because it changes the arithmetic and is verified as such.
    A ``--threads`` given by the user is kept: thread counts are then not searched.
    """
    cores = os.cpu_count() or 1
    search_threads = threads is None and cores > 1
    if form == "onnx":
        out = [{}, {"graph_optimization": "extended"}, {"graph_optimization": "basic"}]
        if search_threads:
            out.append({"intra_op_threads": 1})
        return out
    if form == "openvino":
        out = [{}, {"performance_hint": "throughput"}]
        if search_threads:
            out.append({"inference_num_threads": 1})
        return out
    if form == "tflite":
        out = [{}, {"xnnpack": False}]
        if search_threads:
            out.append({"num_threads": 1})
        return out
    return [{}]


def convert_auto(
    source: Any,
    target: str,
    *,
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
    preprocess: Any = None,
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
    precisions: tuple[str, ...] | None = None,
    fallback: bool = True,
    search_runtime: bool = True,
) -> Any:
    """``convert(..., precision="auto")``; ``precisions`` narrows the candidates (Python API),
    ``fallback=False`` skips the sensitive-layer search, ``search_runtime=False`` the runner settings."""
    from . import pipeline
    from .plugins import registry

    say = status or (lambda msg: None)
    started = time.perf_counter()
    tgt = registry().target(target)
    if prepare_only:
        raise BadInput("--precision auto verifies and times every candidate: it cannot run with --prepare-only",
                       stage="options")
    if not verify:
        raise BadInput("--precision auto chooses by verifying and timing every candidate: it cannot run with "
                       "--no-verify", stage="options")
    if keep_float:
        raise BadInput("--precision auto finds the layers to keep in float itself: give keep_float with "
                       "-p int8 instead", stage="options")
    base_opts = dict(options or {})
    if "keep_float" in base_opts:
        raise BadInput("--precision auto finds the layers to keep in float itself: give -O keep_float with "
                       "-p int8 instead", stage="options")
    tgt.validate_options(base_opts)  # bad options fail before any build
    budgets = budgets or Budgets()
    defaulted = budgets.max_accuracy_drop is None
    drop = DEFAULT_MAX_ACCURACY_DROP if defaulted else budgets.max_accuracy_drop
    gate = Budgets(max_size=budgets.max_size, max_latency=None, max_accuracy_drop=drop)
    wanted = tuple(precisions or AUTO_PRECISIONS)
    unknown = [p for p in wanted if p not in tgt.precisions]
    if precisions and unknown:
        raise BadInput(f"target {tgt.name!r} does not support precision {unknown[0]!r} "
                       f"(it supports: {', '.join(tgt.precisions)})", stage="options")
    chosen = [p for p in wanted if p in tgt.precisions]
    if not chosen:
        raise BadInput(f"target {tgt.name!r} offers none of {', '.join(wanted)} for --precision auto",
                       stage="options")
    stem = _stem(source)
    out = (Path(output) if output else Path.cwd() / f"{stem}-{tgt.name}-auto").absolute()
    pipeline.check_output(out, force)
    pruned = None
    if (source_options or {}).get("prune") is not None:
        # Prune (and fine-tune) once: every candidate, and the layer search, starts from the same pruned
        # module instead of pruning the source again for each build.
        say("pruning the source once for every candidate")
        model = pipeline.load(source, input_shapes=input_shapes, source_form=source_form,
                              options=dict(source_options or {}))
        pruned = model.meta.get("prune")
        source, source_form = (model.obj["module"], tuple(model.obj["example"])), None
        source_options = {k: v for k, v in source_options.items() if k not in PRUNE_OPTIONS}
        source_options.setdefault("input_names", [t.name for t in model.io.inputs])

    notes: list[str] = []
    candidates: list[dict[str, Any]] = []
    errors: list[EdgeconvError] = []
    timings: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="edgeconv-auto-") as tmp:
        scratch = Path(tmp)

        def build(precision: str, keep: list[str] | None = None) -> dict[str, Any]:
            name = precision if not keep else f"{precision}+float[{len(keep)}]"
            folder = scratch / f"c{len(candidates):02d}-{precision}"
            say(f"candidate {name}: building")
            t0 = time.perf_counter()
            entry: dict[str, Any] = {"name": name, "precision": precision, "keep_float": list(keep or []),
                                     "folder": folder}
            try:
                res = pipeline.convert(
                    source, target, precision=precision, calibration=calibration, data=data,
                    input_shapes=input_shapes, output=folder, force=True, options=base_opts, budgets=Budgets(),
                    thresholds=thresholds, verify=True, runs=max(10, runs // 2), warmup=warmup, threads=threads,
                    seed=seed, source_form=source_form, via=via, preprocess=preprocess, skip_passes=skip_passes,
                    memory=False, label_output=label_output, source_options=source_options,
                    status=lambda m: say(f"candidate {name}: {m}"), keep_float=keep or None, task=task,
                    task_options=task_options, state=state, verify_samples=verify_samples, place=place,
                )
            except EdgeconvError as exc:
                errors.append(exc)
                entry.update(status="error", error=exc.one_line(),
                             qualifies=False, failures=[f"build failed: {exc}"])
                entry["seconds"] = round(time.perf_counter() - t0, 3)
                candidates.append(entry)
                return entry
            entry["report"] = res.report
            entry["seconds"] = round(time.perf_counter() - t0, 3)
            entry.update(_judge(res.report, gate, defaulted))
            candidates.append(entry)
            say(f"candidate {name}: {'meets' if entry['qualifies'] else 'misses'} the budgets")
            return entry

        t0 = time.perf_counter()
        for precision in chosen:
            if precision == "int8" and calibration is None:
                notes.append("int8 was not tried: it needs calibration data (--calib)")
                continue
            build(precision)
        timings["candidates"] = round(time.perf_counter() - t0, 3)
        if not any("report" in c for c in candidates):
            raise errors[0] if errors else BadInput("--precision auto built no candidate", stage="export")

        sensitivity_info: dict[str, Any] | None = None
        int8 = next((c for c in candidates if c["precision"] == "int8" and not c["keep_float"]), None)
        if fallback and int8 is not None and "report" in int8 and not int8["qualifies"]:
            t0 = time.perf_counter()
            why_not = _fallback_blocker(tgt, int8)
            if why_not:
                notes.append(f"no sensitive-layer fallback: {why_not}")
            else:
                sensitivity_info = _fallback(
                    build, source, tgt, int8, calibration=calibration, data=data, input_shapes=input_shapes,
                    options=base_opts, seed=seed, source_form=source_form, via=via, preprocess=preprocess,
                    skip_passes=skip_passes, source_options=source_options, threads=threads, scratch=scratch,
                    say=say)
            timings["fallback"] = round(time.perf_counter() - t0, 3)

        t0 = time.perf_counter()
        finalists = [c for c in candidates if c.get("qualifies")]
        pool = finalists or [c for c in candidates if "report" in c and _runnable(c)]
        timed = _tournament(pool, data=data, seed=seed, threads=threads, runs=runs, warmup=warmup,
                            search=search_runtime, say=say)
        timings["runtime_search"] = round(time.perf_counter() - t0, 3)
        if finalists:
            best = min(timed, key=lambda t: t["latency_ms"]["p50"])
        elif timed:  # nothing meets the budgets: the one with the fewest failures, then the fastest
            best = min(timed, key=lambda t: (len(t["candidate"]["failures"]), t["latency_ms"]["p50"]))
        else:
            best = None
        winner = best["candidate"] if best else next(c for c in candidates if "report" in c)
        settings = best["settings"] if best else {}
        why = _why(winner, settings, timed, finalists, budgets)
        say(f"winner: {winner['name']}")
        report = _final_report(
            winner, best, settings, candidates, timed, out, budgets=budgets, drop=drop, defaulted=defaulted,
            notes=notes, why=why, sensitivity=sensitivity_info, timings=timings, started=started,
            memory=memory, threads=threads)
        if device:
            report["device"] = device
        if pruned:
            report.setdefault("source", {}).setdefault("meta", {})["prune"] = pruned
        with pipeline.staged_output(out, force) as staging:
            shutil.copytree(winner["folder"], staging, dirs_exist_ok=True)
            manifest_file = staging / "manifest.json"
            manifest = json.loads(manifest_file.read_text())
            manifest["runner_options"] = {**(manifest.get("runner_options") or {}), **settings}
            manifest["auto"] = {"winner": winner["name"], "precision": winner["precision"],
                                "keep_float": winner["keep_float"], "runner_settings": settings,
                                "candidates": [c["name"] for c in candidates]}
            manifest["verification"] = {k: report.get(k) for k in ("verdict", "fidelity", "accuracy", "latency_ms",
                                                                    "budgets")}
            if device:
                manifest["device"] = device
            manifest_file.write_text(json.dumps(manifest, indent=2, default=str))
            (staging / "report.json").write_text(json.dumps(report, indent=2, default=str))
    return pipeline.Result(report=report, artifact=out, exit_code=report["verdict"]["exit_code"])


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
    fails = [f"output {f['name']}: {'; '.join(f['failures'])}" for f in report.get("fidelity") or [] if not f["pass"]]
    fails += [f"{k} {b['value']} > {b['limit']}" if b["value"] is not None else f"{k}: {b.get('reason')}"
              for k, b in verdicts.items() if not b["pass"]]
    return {"status": "built", "qualifies": not fails, "budgets": verdicts, "failures": fails}


def _runnable(c: dict[str, Any]) -> bool:
    return c.get("status") == "built"


def _fallback_blocker(tgt: Any, int8: dict[str, Any]) -> str | None:
    from .pipeline import supports_keep_float

    if not supports_keep_float(tgt):
        return f"target {tgt.name!r} has no keep_float option"
    route = int8["report"].get("route") or []
    received = route[-2] if len(route) >= 2 and route[-1] != "onnx" else (route[-1] if route else None)
    if "onnx" not in route:
        return "the target never sees an ONNX graph (keep_float names ONNX nodes)"
    if received not in (None, "onnx"):
        return f"the target receives a {received!r} model, not ONNX (keep_float names ONNX nodes)"
    if int8["status"] != "built":
        return "int8 could not be verified on this host"
    return None


def _fallback(build: Callable[..., dict[str, Any]], source: Any, tgt: Any, int8: dict[str, Any], *, calibration: Any,
              data: Any, input_shapes: Any, options: dict[str, Any], seed: int, source_form: str | None,
              via: str | None, preprocess: Any, skip_passes: tuple[str, ...], source_options: Any,
              threads: int | None, scratch: Path, say: Callable[[str], None]) -> dict[str, Any]:
    """Rank the layers, then search the smallest float set that meets the budget (real int8 builds)."""
    from . import sensitivity
    from .data import load_dataset

    say("fallback: ranking layers by their INT8 error")
    model, job = _onnx_for_target(source, tgt, calibration=calibration, input_shapes=input_shapes, options=options,
                                  seed=seed, source_form=source_form, via=via, preprocess=preprocess,
                                  skip_passes=skip_passes, source_options=source_options, scratch=scratch)
    calib = [feed for feed, _ in job.calibration().feeds(model.io, limit=2 * SENSITIVITY_SAMPLES)]
    ds = load_dataset(data, model.io, what="--data", seed=seed, limit=SENSITIVITY_SAMPLES)
    evals = [feed for feed, _ in ds.feeds(model.io, limit=SENSITIVITY_SAMPLES)] or calib
    t0 = time.perf_counter()
    ranked = sensitivity.rank(model.obj, evals, calib, threads=threads, status=say)
    rank_seconds = round(time.perf_counter() - t0, 3)
    names = [r["node"] for r in ranked if r["score"] > 0]
    refused: list[str] = []

    def meets(keep: list[str]) -> bool:
        entry = build("int8", keep)
        if entry.get("status") == "error":  # the target cannot build it at all: no point in more trials
            refused.append(entry["error"])
            raise _Stop
        return bool(entry.get("qualifies"))

    try:
        result = sensitivity.search(names, meets, max_trials=MAX_FALLBACK_TRIALS, status=say)
    except _Stop:
        result = sensitivity.SearchResult([], False)
    return {**({"stopped": refused[0]} if refused else {}),"method": "quantize-dequantize one node at a time (onnxruntime), ranked by relative output error; "
                      "then exponential search + bisection over the ranked prefix, greedy pruning; every trial "
                      "a real int8 build on the target",
            "ranked": ranked[:30], "candidates_ranked": len(ranked), "rank_seconds": rank_seconds,
            "samples": {"calibration": len(calib), "evaluation": len(evals)}, **result.to_dict()}


class _Stop(Exception):
    pass


def _onnx_for_target(source: Any, tgt: Any, *, calibration: Any, input_shapes: Any, options: dict[str, Any],
                     seed: int, source_form: str | None, via: str | None, preprocess: Any,
                     skip_passes: tuple[str, ...], source_options: Any, scratch: Path) -> tuple[Any, Any]:
    """The ONNX model the target's exporter receives (route and generic passes applied), and a job."""
    from . import pipeline
    from .plugins import registry
    from .records import load_ref

    profiles = pipeline._profiles(input_shapes)
    model = pipeline.load(source, input_shapes=profiles, source_form=source_form, options=dict(source_options or {}))
    work = scratch / "sensitivity"
    work.mkdir(exist_ok=True)
    job = Job(tgt, "fp32", tgt.validate_options(options), work, work, "model", model.io,
                       dict(source_options or {}), profiles, calibration, preprocess, seed)
    current = model
    for p in pipeline.find_route(model.form, tgt, via):
        current, _ = load_ref(p.run)(current, job)
    for p in registry().passes.values():
        if p.kind == "generic" and p.form == current.form and p.name not in skip_passes:
            current, _ = load_ref(p.run)(current, job)
    if current.form != "onnx":
        raise BadInput(f"the target receives a {current.form!r} model; keep_float names ONNX nodes", stage="optimize")
    job.source_io = model.io
    return current, job


# -- timing -------------------------------------------------------------------------------
def _tournament(pool: list[dict[str, Any]], *, data: Any, seed: int, threads: int | None, runs: int, warmup: int,
                search: bool, say: Callable[[str], None]) -> list[dict[str, Any]]:
    """Time every (candidate, runner settings) pair in interleaved rounds; pooled percentiles."""
    import numpy as np

    from .data import load_dataset
    from .model import IOContract
    from .pipeline import load_artifact
    from .verify.bench import latency
    from .verify.fidelity import adapt_inputs
    from .verify.runners import make_runner

    entries = []
    for c in pool:
        model, manifest = load_artifact(c["folder"])
        src_io = IOContract.from_dict(manifest["source_io"])
        ds = load_dataset(data, src_io, what="--data", seed=seed, random_samples=1)
        feed = adapt_inputs(next(iter(ds.feeds(src_io)))[0], src_io, model.io)
        base = dict(manifest.get("runner_options") or {})
        for settings in (runtime_variants(model.form, threads) if search else [{}]):
            runner = make_runner(model, threads=threads, **{**base, **settings})
            try:
                runner.activate()
            except EdgeconvError as exc:
                say(f"{c['name']} {settings}: cannot run ({exc})")
                continue
            entries.append({"candidate": c, "settings": settings, "runner": runner, "feed": feed, "samples": []})
    per_round = max(5, runs // LATENCY_ROUNDS)
    try:
        for r in range(LATENCY_ROUNDS):
            say(f"timing {len(entries)} candidate settings, round {r + 1}/{LATENCY_ROUNDS}")
            for e in entries:
                lat = latency(e["runner"], e["feed"], runs=per_round, warmup=warmup if r == 0 else 2)
                e["samples"] += lat["samples_ms"]
        out = []
        for e in entries:
            t = np.array(e["samples"])
            lat = {"p10": float(np.percentile(t, 10)), "p50": float(np.percentile(t, 50)),
                   "p90": float(np.percentile(t, 90)), "p99": float(np.percentile(t, 99)), "mean": float(t.mean()),
                   "runs": len(t), "warmup": warmup, "rounds": LATENCY_ROUNDS,
                   "samples_ms": [round(float(x), 4) for x in t]}
            batch = max((a.shape[0] if a.ndim else 1) for a in e["feed"].values()) if e["feed"] else 1
            lat["throughput_per_s"] = batch * 1000.0 / lat["p50"] if lat["p50"] > 0 else None
            out.append({"candidate": e["candidate"], "settings": e["settings"], "latency_ms": lat,
                        "runtime": dict(e["runner"].info)})
        return out
    finally:
        for e in entries:
            e["runner"].deactivate()


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
        "settings_tried": [{"settings": t["settings"], "p50": t["latency_ms"]["p50"]} for t in runs],
        "budgets": c.get("budgets") or {},
        "qualifies": bool(c.get("qualifies")),
        "failures": c.get("failures") or [],
        "seconds": c.get("seconds"),
    }


def _final_report(winner: dict[str, Any], best: dict[str, Any] | None, settings: dict[str, Any],
                  candidates: list[dict[str, Any]], timed: list[dict[str, Any]], out: Path, *, budgets: Budgets,
                  drop: float, defaulted: bool, notes: list[str], why: str, sensitivity: dict[str, Any] | None,
                  timings: dict[str, float], started: float, memory: bool, threads: int | None) -> dict[str, Any]:
    from .pipeline import finish

    report = json.loads(json.dumps(winner["report"], default=str))
    old = str(Path(winner["folder"]).absolute())

    def moved(p: Any) -> Any:
        return str(p).replace(old, str(out), 1) if isinstance(p, str) else p

    art = report.get("artifact") or {}
    for key in ("path", "manifest"):
        if key in art:
            art[key] = moved(art[key])
    if "files" in art:
        art["files"] = [moved(f) for f in art["files"]]
    report["precision_requested"] = "auto"
    report["precision"] = winner["precision"]
    if best is not None:
        report["latency_ms"] = best["latency_ms"]
        report["runtime"] = {**(report.get("runtime") or {}), "artifact": best["runtime"], "settings": settings}
    if memory and best is not None:
        report.update(_memory(winner, settings, threads))
    effective = Budgets(max_size=budgets.max_size, max_latency=budgets.max_latency, max_accuracy_drop=drop)
    if defaulted and not report.get("accuracy") and not any(
            (f.get("topk_agreement") or {}).get("top1") is not None for f in report.get("fidelity") or []):
        effective = replace(effective, max_accuracy_drop=None)
    report["auto"] = {
        "winner": winner["name"],
        "why": why,
        "runner_settings": settings,
        "accuracy_budget_pp": drop,
        "accuracy_budget_source": "default (docs/auto.md)" if defaulted else "--max-accuracy-drop",
        "candidates": [_summary(c, timed) for c in candidates],
        "sensitivity": sensitivity,
        "notes": notes,
    }
    warnings = list(report.get("warnings") or [])
    if defaulted:
        warnings.append(f"--precision auto: no --max-accuracy-drop given; candidates were held to "
                        f"{DEFAULT_MAX_ACCURACY_DROP} pp (the default, docs/auto.md)")
    timings = {**timings, "total": round(time.perf_counter() - started, 3)}
    finish(report, effective, timings, warnings + notes,
           {k: v for k, v in (report.get("versions") or {}).items() if isinstance(v, str)})
    return report


def _memory(winner: dict[str, Any], settings: dict[str, Any], threads: int | None) -> dict[str, Any]:
    import numpy as np

    from .data import load_dataset
    from .model import IOContract
    from .pipeline import load_artifact
    from .verify.bench import peak_memory
    from .verify.fidelity import adapt_inputs

    model, manifest = load_artifact(winner["folder"])
    src_io = IOContract.from_dict(manifest["source_io"])
    ds = load_dataset(None, src_io, what="--data", random_samples=1)
    feed = adapt_inputs(next(iter(ds.feeds(src_io)))[0], src_io, model.io)
    with tempfile.TemporaryDirectory(prefix="edgeconv-") as tmp:
        f = Path(tmp) / "_feed.npz"
        np.savez(f, **feed)
        opts = {**(manifest.get("runner_options") or {}), **settings, **({"threads": threads} if threads else {})}
        mem = peak_memory(model.form, model.path, opts, f)
    return {"peak_rss_bytes": mem.get("peak_rss_bytes"), "memory": mem}


def _stem(source: Any) -> str:
    if isinstance(source, (str, Path)):
        p = Path(source)
        if isinstance(source, str) and not p.exists() and ":" in source:
            return Path(source.split(":")[0]).stem
        return p.stem
    return "model"
