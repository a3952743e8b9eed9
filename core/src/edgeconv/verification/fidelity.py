"""The fidelity contract: the same inputs through the source's runner and the artifact's, every output compared
whole and per slice, the task check when one is chosen (docs/fidelity.md), then latency and peak memory of the
artifact."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..data import (
    Dataset,
    check_class_labels,
    load_dataset,
    state_pairs,
    verification_from_calibration,
    zero_state,
)
from ..errors import BadInput, EdgeconvError
from ..model import IOContract, Model

# Verification inputs drawn from the calibration set when no --data is given (noise: 8, as before).
CALIBRATION_SAMPLES = 64
# A verification running longer than this shows progress (samples done, rate, ETA) every PROGRESS_EVERY seconds.
PROGRESS_AFTER = 3.0
PROGRESS_EVERY = 5.0


def adapt_inputs(feed: dict[str, Any], src: IOContract, art: IOContract) -> dict[str, Any]:
    """Feed the artifact what the source got, in the artifact's layout and dtype."""
    import numpy as np

    out = {}
    for spec in art.inputs:
        x = feed[spec.name]
        src_spec = next((t for t in src.inputs if t.name == spec.name), None)
        if src_spec is not None:
            x = _relayout(x, src_spec.layout, spec.layout)
        if spec.scale is not None:
            info = np.iinfo(np.dtype(spec.dtype))
            scale, zero = _per_channel(spec, x.ndim)
            x = np.clip(np.round(x / scale + zero), info.min, info.max)
        out[spec.name] = x.astype(spec.dtype)
    return out


def adapt_outputs(outs: dict[str, Any], src: IOContract, art: IOContract) -> dict[str, Any]:
    """The artifact's outputs, back in the source's layout and dtype, for comparison."""
    import numpy as np

    res = {}
    by_name = {t.name: t for t in art.outputs}
    for s in src.outputs:
        if s.name not in outs:
            continue
        y = outs[s.name]
        spec = by_name.get(s.name)
        if spec is not None and spec.scale is not None:
            scale, zero = _per_channel(spec, y.ndim)
            y = (y.astype(np.float32) - zero) * scale
        if spec is not None:
            y = _relayout(y, spec.layout, s.layout)
        if y.dtype != np.dtype(s.dtype) and y.dtype.kind == "f":
            y = y.astype(s.dtype)
        res[s.name] = y
    return res


def _per_channel(spec: Any, ndim: int) -> tuple[Any, Any]:
    """Scale and zero point shaped to broadcast: per tensor, or per channel on the layout's C axis."""
    import numpy as np

    scale = np.asarray(spec.scale, dtype=np.float32)
    zero = np.asarray(spec.zero_point if spec.zero_point is not None else 0, dtype=np.float32)
    if scale.ndim == 0 and zero.ndim == 0:
        return scale, zero
    axis = spec.layout.index("C") if spec.layout and "C" in spec.layout else ndim - 1
    shape = [1] * ndim
    shape[axis] = -1
    return scale.reshape(shape), zero.reshape(shape) if zero.ndim else zero


_PERM = {("NCHW", "NHWC"): (0, 2, 3, 1), ("NHWC", "NCHW"): (0, 3, 1, 2), ("NCW", "NWC"): (0, 2, 1), ("NWC", "NCW"): (0, 2, 1)}


def _relayout(x: Any, frm: str | None, to: str | None) -> Any:
    if not frm or not to or frm == to:
        return x
    perm = _PERM.get((frm, to))
    if perm is None or x.ndim != len(perm):
        raise BadInput(f"cannot convert layout {frm} to {to} for an array of rank {x.ndim}", stage="verify")
    return x.transpose(perm)


class Progress:
    """``verify: 120/540 samples, 35.2/s, ETA 12 s`` through the status callback, once a run has taken longer than
    ``PROGRESS_AFTER`` seconds, then every ``PROGRESS_EVERY`` seconds."""

    def __init__(self, say: Callable[[str], None], total: int, what: str = "verify", unit: str = "samples") -> None:
        self.say, self.total, self.what, self.unit = say, total, what, unit
        self.start = self.last = time.perf_counter()
        self.shown = False

    def update(self, done: int) -> None:
        now = time.perf_counter()
        if now - self.start < PROGRESS_AFTER or (self.shown and now - self.last < PROGRESS_EVERY):
            return
        rate = done / (now - self.start)
        eta = (self.total - done) / rate if rate > 0 else float("inf")
        self.say(f"{self.what}: {done}/{self.total} {self.unit}, {rate:.3g}/s, ETA {_seconds(eta)}")
        self.shown, self.last = True, now


def _seconds(s: float) -> str:
    if s == float("inf"):
        return "?"
    return f"{s:.0f} s" if s < 120 else f"{s / 60:.0f} min"


@dataclass
class Collected:
    """Both models' outputs over the verification samples (per output name, one array per feed)."""

    refs: dict[str, list[Any]] = field(default_factory=dict)
    outs: dict[str, list[Any]] = field(default_factory=dict)
    dtypes: dict[str, Any] = field(default_factory=dict)
    used: int = 0
    first_feed: dict[str, Any] | None = None

    def add(self, ref: dict[str, Any], raw: dict[str, Any], got: dict[str, Any], io: IOContract) -> None:
        import numpy as np

        for k, v in raw.items():
            self.dtypes.setdefault(k, v.dtype)
        for spec in io.outputs:
            self.refs.setdefault(spec.name, []).append(np.asarray(ref[spec.name]))
            if spec.name in got:
                self.outs.setdefault(spec.name, []).append(np.asarray(got[spec.name]))

    def stacked(self) -> tuple[dict[str, Any], dict[str, Any]]:
        import numpy as np

        cat = lambda xs: np.concatenate([np.atleast_1d(x) for x in xs])  # noqa: E731
        return {k: cat(v) for k, v in self.refs.items()}, {k: cat(v) for k, v in self.outs.items()}


def verify_models(
    source: Model,
    artifact: Model,
    *,
    data: Any = None,
    precision: str = "fp32",
    thresholds: dict[str, float] | None = None,
    runs: int = 50,
    warmup: int = 5,
    threads: int | None = None,
    seed: int = 0,
    memory: bool = True,
    scratch: Path | None = None,
    runner_options: dict[str, Any] | None = None,
    label_output: str | None = None,
    status: Callable[[str], None] | None = None,
    task: str | None = None,
    task_options: dict[str, Any] | None = None,
    state: dict[str, str] | None = None,
    verify_samples: int | None = None,
    calibration: Any = None,
    place: str | None = None,
) -> dict[str, Any]:
    """The fidelity contract: the same inputs through both runners, every output compared whole and per slice.

    ``task``: a registered task check (``--task``) that also decides, with ``task_options`` (its options, and
    ``axis``: the slice axis); ``state``: input -> output names of a streaming model's carried state
    (``--state``): the data are then sequences; ``verify_samples``: at most this many samples (sequences);
    ``calibration``: the calibration set (a ``Dataset`` or a source), drawn on when no ``data`` is given;
    ``place``: run the artifact on this board.
    """
    from .bench import latency, peak_memory
    from .comparators import resolve
    from .runners import runner_for

    say = status or (lambda msg: None)
    warnings: list[str] = []
    limits = thresholds_for_precision(precision, thresholds)
    comp, options = resolve(task, task_options)
    state = check_state(state, source.io)
    ds = verification_data(data, calibration, source.io, seed=seed, cap=verify_samples, state=state,
                           warnings=warnings)
    class_labels = None
    if ds.labels is not None and comp is None and not state:
        class_labels = check_class_labels(ds.labels, "--data", ds.source)
    src_runner = runner_for(source, threads=threads)
    art_runner = runner_for(artifact, place=place, threads=threads, **(runner_options or {}))
    try:  # the Runner template: open/run/close (a runtime's exception -> one line, its traceback kept for --debug)
        src_runner.open()
        art_runner.open()
    except EdgeconvError as exc:
        src_runner.close()
        art_runner.close()
        raise _shape_cause(exc, source, state, None) from exc.__cause__
    try:
        got = collect(src_runner, art_runner, ds, source, artifact, state=state, cap=verify_samples, say=say)
        judged = judge(got, ds, source, artifact, limits, comp, options, class_labels, label_output, warnings)
        say("latency")
        art_feed = adapt_inputs(got.first_feed, source.io, artifact.io)
        lat = latency(art_runner, art_feed, runs=runs, warmup=warmup)
        src_lat = latency(src_runner, got.first_feed, runs=runs, warmup=warmup)
        runtime = {"source": src_runner.info, "artifact": art_runner.info}
    finally:
        src_runner.close()
        art_runner.close()
    mem = _memory(artifact, art_feed, scratch, runner_options, threads, warnings, say, peak_memory) if memory else {}
    return {
        "data": {**ds.describe(), "verified": got.used, "cap": verify_samples},
        "thresholds": limits,
        **judged,
        "latency_ms": lat,
        "source_latency_ms": src_lat,
        "peak_rss_bytes": mem.get("peak_rss_bytes"),
        "memory": mem or None,
        "runtime": runtime,
        "_warnings": warnings,
    }


def judge(got: Collected, ds: Dataset, source: Model, artifact: Model, limits: dict[str, float], comp: Any,
          options: dict[str, Any], class_labels: Any, label_output: str | None, warnings: list[str]) -> dict[str, Any]:
    """``fidelity`` (every output, whole and per slice), ``task`` (the chosen check) and ``accuracy`` (labelled:
    the task's, else top-1 on ``label_output``, with its default gate)."""
    refs, outs = got.stacked()
    fidelity = compare_outputs(refs, outs, got.dtypes, source, artifact, limits, options)
    task = run_task(comp, options, refs, outs, source.io, ds, got.used, limits, warnings)
    if task is not None:
        acc = task.get("accuracy")
    else:
        acc = class_accuracy(refs, outs, class_labels, label_output or source.io.outputs[0].name, got.used)
        _suggest(source.io, warnings)
    gate_accuracy(acc, limits)
    return {"fidelity": fidelity, "task": task, "accuracy": acc}


def thresholds_for_precision(precision: str, overrides: dict[str, float] | None) -> dict[str, float]:
    from .metrics import thresholds_for

    return thresholds_for(precision, overrides)


def _memory(artifact: Model, art_feed: dict[str, Any], scratch: Path | None, runner_options: dict[str, Any] | None,
            threads: int | None, warnings: list[str], say: Callable[[str], None], peak_memory: Any) -> dict[str, Any]:
    import numpy as np

    if artifact.path is None or scratch is None:
        return {}
    say("memory")
    feed_file = scratch / "_feed.npz"
    np.savez(feed_file, **art_feed)
    opts = {**(runner_options or {}), **({"threads": threads} if threads else {})}
    mem = peak_memory(artifact.form, artifact.path, opts, feed_file)
    if "error" in mem:
        warnings.append(f"peak memory not measured: {mem['error']}")
    return mem


# -- the verification inputs -----------------------------------------------------------------------------------
def verification_data(data: Any, calibration: Any, io: IOContract, *, seed: int, cap: int | None,
                      state: dict[str, str], warnings: list[str]) -> Dataset:
    """The user's ``--data``; else inputs distributed like the calibration set; else noise (with a warning)."""
    if cap is not None and (not isinstance(cap, int) or isinstance(cap, bool) or cap < 1):
        raise BadInput(f"--verify-samples must be a whole number of at least 1 (got {cap!r})", stage="verify")
    states = tuple(state)
    if data is None and not states:
        n = CALIBRATION_SAMPLES if cap is None else min(cap, CALIBRATION_SAMPLES)
        ds = verification_from_calibration(calibration, io, n, seed=seed)
        if ds is not None:
            return ds
    ds = load_dataset(data, io, what="--data", seed=seed, states=states)
    if not ds.meaningful:
        warnings.append(
            f"verification data was generated at random (seed {seed}): fidelity compares the models on noise; "
            "give --data for meaningful accuracy numbers"
            + ("" if calibration is None or states else " (the calibration set was random too)")
        )
    return ds


def check_state(state: dict[str, str] | None, io: IOContract) -> dict[str, str]:
    """``--state IN:OUT`` pairs: IN an input, OUT an output of the source."""
    state = dict(state or {})
    inputs, outputs = [t.name for t in io.inputs], [t.name for t in io.outputs]
    for k, v in state.items():
        if k not in inputs:
            raise BadInput(f"--state {k}:{v}: the model has no input {k!r} (inputs: {', '.join(inputs)})",
                           stage="verify")
        if v not in outputs:
            raise BadInput(f"--state {k}:{v}: the model has no output {v!r} (outputs: {', '.join(outputs)})",
                           stage="verify")
    if state and len(state) == len(inputs):
        raise BadInput("--state names every input as a state: a streaming model needs at least one streamed input",
                       stage="verify")
    return state


# -- running both models -----------------------------------------------------------------------------------------
def collect(src: Any, art: Any, ds: Dataset, source: Model, artifact: Model, *, state: dict[str, str],
            cap: int | None, say: Callable[[str], None]) -> Collected:
    """Run every sample (or every step of every sequence, each model carrying its own state) through both."""
    got = Collected()
    try:
        if state:
            _collect_sequences(src, art, ds, source, artifact, state, cap, say, got)
        else:
            total = len(ds) if cap is None else min(cap, len(ds))
            say(f"verify on {total} samples")
            progress = Progress(say, total)
            for feed, sl in ds.feeds(source.io, limit=cap):
                got.first_feed = got.first_feed or feed
                ref = src.run(feed)
                raw = art.run(adapt_inputs(feed, source.io, artifact.io))
                got.add(ref, raw, adapt_outputs(raw, source.io, artifact.io), source.io)
                got.used = sl.stop
                progress.update(got.used)
    except EdgeconvError as exc:
        raise _shape_cause(exc, source, state, got.first_feed) from exc.__cause__
    if got.first_feed is None:
        raise BadInput("no verification sample could be fed (fewer samples than the model's batch size)",
                       file=ds.source, stage="verify")
    return got


def _collect_sequences(src: Any, art: Any, ds: Dataset, source: Model, artifact: Model, state: dict[str, str],
                       cap: int | None, say: Callable[[str], None], got: Collected) -> None:
    total = len(ds) if cap is None else min(cap, len(ds))
    say(f"verify on {total} sequences of {ds.steps} steps")
    progress = Progress(say, total * (ds.steps or 0), unit="steps")
    done = 0
    for init, steps in ds.sequences(source.io, limit=cap):
        start = {k: (v if v is not None else zero_state(source.io.input(k))) for k, v in init.items()}
        s_state, a_state = dict(start), dict(start)  # each model carries its own
        for feed in steps:
            s_feed, a_feed = {**feed, **s_state}, {**feed, **a_state}
            got.first_feed = got.first_feed or s_feed
            ref = src.run(s_feed)
            raw = art.run(adapt_inputs(a_feed, source.io, artifact.io))
            out = adapt_outputs(raw, source.io, artifact.io)
            got.add(ref, raw, out, source.io)
            s_state = {k: ref[v] for k, v in state.items()}
            a_state = {k: out[v] for k, v in state.items() if v in out}
            done += 1
            progress.update(done)
        got.used += 1


# How runtimes say that the shapes they were given do not fit the graph (onnxruntime, OpenVINO, LiteRT).
_SHAPE_REFUSALS = ("invalid rank for input", "invalid dimensions for input", "shapeinferenceerror",
                   "dimension mismatch", "incompatible dimensions", "rank mismatch", "input_rank",
                   "dimensions must be equal", "cannot reshape")


def _shape_cause(exc: EdgeconvError, source: Model, state: dict[str, str], feed: dict[str, Any] | None
                 ) -> EdgeconvError:
    """A runtime that refuses the input shapes (a rank or dimension check) names the real cause: the shapes came
    from ``--input-shape`` (or the data), and a streaming model's state input has its own shape (``--state``)."""
    text = exc.cause.lower()
    if not any(w in text for w in _SHAPE_REFUSALS):
        return exc
    shapes = {k: list(getattr(v, "shape", ())) for k, v in (feed or {}).items()}
    given = ", ".join(f"{t.name} {shapes.get(t.name, list(t.shape))}" for t in source.io.inputs)
    hint = (f"the model's inputs were {'fed' if feed else 'set'} at {given}: shapes pinned with --input-shape must be "
            "what the model's nodes expect")
    looks = [(i, o) for i, o in state_pairs(source.io) if i not in state]
    if looks:
        hint += (f"; {', '.join(repr(i) for i, _ in looks)} look(s) like a streaming model's state: pin the state's "
                 f"own shape and verify with {' '.join(f'--state {i}:{o}' for i, o in looks)} (sequences in --data)")
    return type(exc)(f"{exc.cause} ({hint})", file=exc.file, stage=exc.stage or "verify", hint=exc.hint)


# -- comparing -------------------------------------------------------------------------------------------------
def compare_outputs(refs: dict[str, Any], outs: dict[str, Any], dtypes: dict[str, Any], source: Model,
                    artifact: Model, limits: dict[str, float], options: dict[str, Any]) -> list[dict[str, Any]]:
    """Every output of the source against the artifact's of the same name: whole, per slice, its runtime dtype."""
    from .comparators import declared_axis
    from .metrics import compare

    fidelity = []
    art_dtypes = {t.name: t.dtype for t in artifact.io.outputs}
    for spec in source.io.outputs:
        if spec.name not in outs:
            fidelity.append({"name": spec.name, "shape": [], "shape_ok": False, "dtype_ok": False, "pass": False,
                             "failures": ["the artifact has no output of this name"]})
            continue
        res = compare(spec.name, refs[spec.name], outs[spec.name], limits, axis=declared_axis(options, spec.name),
                      layout=spec.layout)
        declared = art_dtypes.get(spec.name)
        res["dtype_ok"] = declared is None or str(dtypes.get(spec.name)) == declared
        if not res["dtype_ok"]:
            res["failures"].append(f"runtime dtype {dtypes.get(spec.name)} != declared {declared}")
            res["pass"] = False
        fidelity.append(res)
    return fidelity


def run_task(comp: Any, options: dict[str, Any], refs: dict[str, Any], outs: dict[str, Any], io: IOContract,
             ds: Dataset, used: int, limits: dict[str, float], warnings: list[str]) -> dict[str, Any] | None:
    """The chosen task check over every output, gated by the metric table (None without ``--task``)."""
    from .comparators import run

    if comp is None:
        return None
    if len(outs) < len(refs):
        missing = sorted(set(refs) - set(outs))
        return {"name": comp.name, "title": comp.title, "pass": False, "metrics": {},
                "failures": [f"the artifact has no output {missing[0]!r}: nothing to decode"]}
    labels = ds.labels[:used] if ds.labels is not None and not ds.steps else None
    section = run(comp, options, refs, outs, io=io, labels=labels, thresholds=limits)
    warnings.extend(section.pop("warnings", []))
    return section


def class_accuracy(refs: dict[str, Any], outs: dict[str, Any], labels: Any, name: str, used: int
                   ) -> dict[str, Any] | None:
    """Top-1 accuracy of both models against class labels, on ``name`` (``--label-output``)."""
    from .metrics import accuracy

    if labels is None:
        return None
    if name not in refs:
        raise BadInput(f"--label-output {name!r} is not an output of the model (outputs: {', '.join(refs)})",
                       stage="verify")
    if name not in outs:
        return None
    lab = labels[:used]
    a_src, a_art = accuracy(refs[name], lab), accuracy(outs[name], lab)
    return {"metric": "top-1 accuracy", "output": name, "samples": used, "source": a_src, "artifact": a_art,
            "drop_pp": round((a_src - a_art) * 100, 4)}


def gate_accuracy(acc: dict[str, Any] | None, limits: dict[str, float]) -> None:
    """The labelled accuracy drop against the table's default (``accuracy_drop_pp``); ``--max-accuracy-drop``
    (a budget) overrides it where the verdict is made."""
    if acc is None or "accuracy_drop_pp" not in limits:
        return
    acc["limit_pp"] = limits["accuracy_drop_pp"]
    acc["pass"] = bool(acc["drop_pp"] <= acc["limit_pp"])


def _suggest(io: IOContract, warnings: list[str]) -> None:
    from .comparators import suggest

    found = [s for s in suggest(io) if s.get("reason")]
    if found and found[0]["name"] != "classification":
        s = found[0]
        warnings.append(f"no --task: {s['reason']}; --task {s['name']} also checks the decoded answers")


def check_models(reference: Model, candidate: Model, *, data: Any = None, precision: str = "int8",
                 thresholds: dict[str, float] | None = None, runner_options: dict[str, Any] | None = None,
                 label_output: str | None = None, seed: int = 0, task: str | None = None,
                 task_options: dict[str, Any] | None = None) -> dict[str, Any]:
    """The fidelity contract between two models of one form on this host, without latency or memory: a plugin's
    self-check of an intermediate model (a QDQ or fake-quant ONNX against its float original on onnxruntime)
    before the vendor compiler runs. Returns the verification record (``fidelity``, ``task``, ``accuracy``,
    ``data``, ``thresholds``, ``runtime``) and ``pass``."""
    res = verify_models(reference, candidate, data=data, precision=precision, thresholds=thresholds, runs=1,
                        warmup=0, memory=False, runner_options=runner_options, label_output=label_output, seed=seed,
                        task=task, task_options=task_options)
    res["pass"] = all(f["pass"] for f in res["fidelity"]) and (res["task"] or {}).get("pass", True)
    res["warnings"] = res.pop("_warnings", [])
    return res
