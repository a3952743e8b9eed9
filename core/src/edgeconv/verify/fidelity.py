"""The fidelity contract: the same inputs through the source's runner and the artifact's, every output compared
(docs/fidelity.md), then latency and peak memory of the artifact."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..data import load_dataset
from ..errors import BadInput
from ..model import IOContract, Model


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
    """The fidelity contract: the same inputs through both runners, every output compared.

    ``task``: a registered task check (``--task``) that also decides; ``state``: input -> output names of a
    streaming model's carried state (``--state``); ``verify_samples``: at most this many samples; ``calibration``:
    the calibration set, drawn from when no ``data`` is given; ``place``: run the artifact on this board.
    """
    import numpy as np

    from .bench import latency, peak_memory
    from .metrics import accuracy, compare, thresholds_for
    from .runners import make_runner

    say = status or (lambda msg: None)
    warnings: list[str] = []
    limits = thresholds_for(precision, thresholds)
    ds = load_dataset(data, source.io, what="--data", seed=seed)
    if not ds.meaningful:
        warnings.append(
            f"verification data was generated at random (seed {seed}): fidelity compares the models on noise; "
            "give --data for meaningful accuracy numbers"
        )
    src_runner = make_runner(source, threads=threads)
    art_runner = make_runner(artifact, place=place, threads=threads, **(runner_options or {}))
    src_runner.activate()
    art_runner.activate()
    try:
        refs: dict[str, list[Any]] = {}
        outs: dict[str, list[Any]] = {}
        dtypes: dict[str, Any] = {}
        used = 0
        say(f"verify on {len(ds)} samples")
        first_feed = None
        for feed, sl in ds.feeds(source.io):
            first_feed = first_feed or feed
            ref = src_runner.infer(feed)
            raw = art_runner.infer(adapt_inputs(feed, source.io, artifact.io))
            for k, v in raw.items():
                dtypes.setdefault(k, v.dtype)
            got = adapt_outputs(raw, source.io, artifact.io)
            for spec in source.io.outputs:
                refs.setdefault(spec.name, []).append(np.asarray(ref[spec.name]))
                if spec.name in got:
                    outs.setdefault(spec.name, []).append(np.asarray(got[spec.name]))
            used = sl.stop
        fidelity = []
        art_dtypes = {t.name: t.dtype for t in artifact.io.outputs}
        cat = lambda xs: np.concatenate([np.atleast_1d(x) for x in xs])  # noqa: E731
        for spec in source.io.outputs:
            if spec.name not in outs:
                fidelity.append({"name": spec.name, "shape": [], "shape_ok": False, "dtype_ok": False, "pass": False,
                                 "failures": ["the artifact has no output of this name"]})
                continue
            res = compare(spec.name, cat(refs[spec.name]), cat(outs[spec.name]), limits)
            declared = art_dtypes.get(spec.name)
            res["dtype_ok"] = declared is None or str(dtypes.get(spec.name)) == declared
            if not res["dtype_ok"]:
                res["failures"].append(f"runtime dtype {dtypes.get(spec.name)} != declared {declared}")
                res["pass"] = False
            fidelity.append(res)
        acc = None
        if ds.labels is not None:
            name = label_output or source.io.outputs[0].name
            if name in outs:
                a_src = accuracy(cat(refs[name]), ds.labels[:used])
                a_art = accuracy(cat(outs[name]), ds.labels[:used])
                acc = {"output": name, "samples": used, "source": a_src, "artifact": a_art,
                       "drop_pp": round((a_src - a_art) * 100, 4)}
        say("latency")
        art_feed = adapt_inputs(first_feed, source.io, artifact.io)
        lat = latency(art_runner, art_feed, runs=runs, warmup=warmup)
        src_lat = latency(src_runner, first_feed, runs=runs, warmup=warmup)
        runtime = {"source": src_runner.info, "artifact": art_runner.info}
    finally:
        src_runner.deactivate()
        art_runner.deactivate()
    mem: dict[str, Any] = {}
    if memory and artifact.path is not None and scratch is not None:
        say("memory")
        feed_file = scratch / "_feed.npz"
        np.savez(feed_file, **art_feed)
        opts = {**(runner_options or {}), **({"threads": threads} if threads else {})}
        mem = peak_memory(artifact.form, artifact.path, opts, feed_file)
        if "error" in mem:
            warnings.append(f"peak memory not measured: {mem['error']}")
    return {
        "data": ds.describe(),
        "thresholds": limits,
        "fidelity": fidelity,
        "accuracy": acc,
        "latency_ms": lat,
        "source_latency_ms": src_lat,
        "peak_rss_bytes": mem.get("peak_rss_bytes"),
        "memory": mem or None,
        "runtime": runtime,
        "_warnings": warnings,
    }


def check_models(reference: Model, candidate: Model, *, data: Any = None, precision: str = "int8",
                 thresholds: dict[str, float] | None = None, runner_options: dict[str, Any] | None = None,
                 label_output: str | None = None, seed: int = 0) -> dict[str, Any]:
    """The fidelity contract between two models of one form on this host, without latency or memory: a plugin's
    self-check of an intermediate model (a QDQ or fake-quant ONNX against its float original on onnxruntime)
    before the vendor compiler runs. Returns the verification record (``fidelity``, ``accuracy``, ``data``,
    ``thresholds``, ``runtime``) and ``pass``."""
    res = verify_models(reference, candidate, data=data, precision=precision, thresholds=thresholds, runs=1,
                        warmup=0, memory=False, runner_options=runner_options, label_output=label_output, seed=seed)
    res["pass"] = all(f["pass"] for f in res["fidelity"])
    res["warnings"] = res.pop("_warnings", [])
    return res
