"""``edgeconv debug layers SOURCE ARTIFACT_DIR``: where an artifact parts from its source, layer by layer.

1. The artifact folder is opened through its checked manifest (``edgeconv.manifest``), and the source must be the one
   it was made from (same sha256).
2. The **reference** is the ONNX model the target received, rebuilt from the source with the manifest's target,
   precision, options and input shapes (``pipeline.plan`` + ``pipeline.prepare``: import, route, generic passes):
   the graph whose node names ``-O keep_float`` takes. It runs in float on onnxruntime with every tensor exposed.
3. The artifact's **tracer** (one per artifact form, from the target's plugin: ``tracers.py``) runs the artifact with
   every tensor its runtime can expose and maps each back to a reference tensor: **accumulated** (the artifact fed
   its own tensors), and **isolated** where the runtime can (each layer fed the reference's tensors).
4. Each matched tensor is compared with the metric table's cosine, SQNR and max-abs (``compare.py``), in graph
   order, and the first layer missing the gates of the artifact's precision is named.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import BadInput, ToolchainMissing
from . import compare, tracers
from .trace import Trace, normalize, reference_trace

SCHEMA = "edgeconv.layers/1"
DEFAULT_SAMPLES = 8  # samples traced: every tensor of each is held in memory (reference, accumulated, isolated)


def _quiet(msg: str) -> None:
    pass


def reference_request(source: Any, record: dict[str, Any], *, input_shapes: Any = None,
                      source_options: dict[str, Any] | None = None) -> Any:
    """The conversion request that rebuilds the model the target received: the manifest's target, precision,
    options (``keep_float`` included) and pinned input shapes; the generic passes it did not run are skipped."""
    from ..model import IOContract
    from ..request import ConversionRequest
    from ..stages import optimizing

    shapes = input_shapes
    if not shapes and record.get("source_io"):
        io = IOContract.from_dict(record["source_io"])
        shapes = {t.name: tuple(t.shape) for t in io.inputs if t.shape and all(isinstance(d, int) for d in t.shape)}
    ran = {p.get("name") for p in record.get("passes") or []}
    skip = tuple(p.name for form in record.get("route") or [] for p in optimizing.generic_passes(form)
                 if p.name not in ran)
    options = {k: v for k, v in (record.get("options") or {}).items() if v is not None}
    return ConversionRequest.build(source, str(record.get("target")), precision=record.get("precision"),
                                   input_shapes=shapes or None, options=options, skip_passes=skip,
                                   source_options=dict(source_options or {}), verify=False)


def prepare_reference(req: Any, status: Callable[[str], None] = _quiet) -> Any:
    """``pipeline.prepare`` of ``req``: the model the target receives (must be ONNX: the reference is an ONNX graph)."""
    from .. import pipeline

    p = pipeline.plan(req)
    with tempfile.TemporaryDirectory(prefix="edgeconv-debug-") as tmp:
        prepared = pipeline.prepare(p, Path(tmp), {}, status)
    if prepared.model.form != "onnx" or prepared.model.obj is None:
        raise BadInput(f"the target received a {prepared.model.form!r} model, not ONNX: layer tracing maps tensors "
                       "to an ONNX graph (convert through ONNX: --via onnx)", stage="debug")
    return prepared


def feeds_for(io: Any, data: Any, samples: int, seed: int, warnings: list[str]) -> list[dict[str, Any]]:
    from ..data import load_dataset

    ds = load_dataset(data, io, what="--data", seed=seed, limit=samples, random_samples=samples)
    if not ds.meaningful:
        warnings.append(f"the layers were traced on random inputs (seed {seed}): give --data for inputs like the "
                        "deployment's")
    feeds = [feed for feed, _ in ds.feeds(io, limit=samples)]
    if not feeds:
        raise BadInput("no sample of --data fits the model's batch size", file=ds.source, stage="debug")
    return feeds


def find_tracer(artifact: Any, options: dict[str, Any]) -> Any:
    """The artifact form's tracer, or ``ToolchainMissing`` (exit 3) saying plainly why its tensors cannot be seen."""
    tracer, why = tracers.find(artifact.form)
    if tracer is not None:
        why = tracer.unavailable(artifact, options)
    if tracer is None or why:
        raise ToolchainMissing(f"cannot trace the layers of this {artifact.form} artifact: {why}", stage="debug")
    return tracer


def trace_artifact(tracer: Any, reference: Trace, proto: Any, ref_io: Any, artifact: Any, options: dict[str, Any],
                   feeds: list[dict[str, Any]], *, isolated: bool = True, threads: int | None = None,
                   status: Callable[[str], None] = _quiet) -> tuple[Trace, Trace | None]:
    """The artifact's accumulated trace and, where its tracer can, the isolated one (both in the common format)."""
    from ..verification.fidelity import adapt_inputs

    art_feeds = [adapt_inputs(f, ref_io, artifact.io) for f in feeds]
    status(f"{tracer.name}: accumulated trace")
    raw = tracer.trace(artifact, proto, art_feeds, options=options, threads=threads)
    acc = normalize(raw, reference, "accumulated", str(raw.get("runtime") or tracer.name))
    iso = None
    if isolated and getattr(tracer, "isolated", False):
        status(f"{tracer.name}: isolated trace")
        golden = [reference.per_sample(i) for i in range(len(feeds))]
        raw_iso = tracer.trace(artifact, proto, art_feeds, options=options, threads=threads, golden=golden)
        iso = normalize(raw_iso, reference, "isolated", str(raw_iso.get("runtime") or tracer.name))
    return acc, iso


def fused_groups(proto: Any, matched: set[str]) -> dict[str, list[str]]:
    """Matched tensor -> the reference nodes upstream of it whose outputs the artifact does not expose (folded or
    fused into the op that computes it), stopping at matched tensors and initializers; each node in one group."""
    producers = {t: n for n in proto.graph.node for t in n.output if t}
    inits = {i.name for i in proto.graph.initializer}
    claimed: set[int] = set()
    out: dict[str, list[str]] = {}
    for t in [t for n in proto.graph.node for t in n.output if t in matched]:
        group, stack = [], list(producers[t].input)
        while stack:
            x = stack.pop()
            node = producers.get(x)
            if x in matched or x in inits or node is None or id(node) in claimed or node.op_type == "Constant":
                continue
            claimed.add(id(node))
            group.append(node.name or node.op_type)
            stack.extend(node.input)
        if group:
            out[t] = group[::-1]
    return out


def layers(source: Any, artifact_dir: str | Path, *, data: Any = None, samples: int = DEFAULT_SAMPLES, seed: int = 0,
           threads: int | None = None, isolated: bool = True, input_shapes: Any = None,
           source_options: dict[str, Any] | None = None, thresholds: dict[str, float] | None = None,
           trace_dir: str | Path | None = None, status: Callable[[str], None] | None = None) -> dict[str, Any]:
    """The layer-by-layer comparison of an artifact folder with its source (the module's doc): a document of schema
    ``edgeconv.layers/1``."""
    from .. import manifest
    from ..request import check_int, source_path

    say = status or _quiet
    samples = check_int("--samples", samples, 1, 1024)
    if not Path(artifact_dir).exists():
        raise BadInput("no such folder: debug layers reads an edgeconv output folder (the artifact and its manifest)",
                       file=Path(artifact_dir), stage="debug")
    artifact, record = manifest.load_artifact(artifact_dir)
    if artifact is None:
        raise BadInput("is not an edgeconv output folder (no manifest.json): debug layers reads the artifact "
                       "through its manifest", file=Path(artifact_dir), stage="debug")
    manifest.check_source(record, source_path(source))
    options = dict(record.get("runner_options") or {})
    tracer = find_tracer(artifact, options)
    say("rebuilding the model the target received")
    prepared = prepare_reference(reference_request(source, record, input_shapes=input_shapes,
                                                   source_options=source_options), say)
    proto, ref_io = prepared.model.obj, prepared.model.io
    warnings: list[str] = []
    feeds = feeds_for(ref_io, data, samples, seed, warnings)
    reference = reference_trace(proto, feeds, threads=threads, status=say)
    feeds = feeds[:reference.samples]
    warnings += reference.notes
    acc, iso = trace_artifact(tracer, reference, proto, ref_io, artifact, options, feeds, isolated=isolated,
                              threads=threads, status=say)
    precision = str(record.get("precision") or "fp32")
    doc = document(reference, acc, iso, proto, precision, thresholds)
    doc.update(source=str(source), artifact=str(Path(artifact_dir)), target=record.get("target"), form=artifact.form,
               data={"samples": len(feeds), "source": str(data) if data is not None else "random"},
               warnings=warnings + doc.pop("warnings"))
    if trace_dir is not None:
        doc["traces"] = save_traces(Path(trace_dir), reference, acc, iso)
    return doc


def document(reference: Trace, acc: Trace, iso: Trace | None, proto: Any, precision: str,
             thresholds: dict[str, float] | None) -> dict[str, Any]:
    """The comparison as a document (rows in graph order, first diverging layers, what was not matched)."""
    limits = compare.gates(precision, thresholds)
    rows = compare.compare(reference, acc, iso, limits)
    groups = fused_groups(proto, set(acc.tensors))
    for r in rows:
        if r["tensor"] in groups:
            r["fused"] = groups[r["tensor"]]
    grouped = {n for g in groups.values() for n in g}
    unmatched = [n for n in reference.order if n not in acc.tensors
                 and reference.info.get(n, {}).get("node") not in grouped]
    first = {m: compare.first_diverging(rows, m) for m in ("accumulated", "isolated")}
    return {
        "schema": SCHEMA, "precision": precision, "gates": limits,
        "runtime": {"reference": reference.runtime, "accumulated": acc.runtime,
                    "isolated": iso.runtime if iso is not None else None},
        "isolated": iso is not None,
        "reference": {"tensors": len(reference.order), "nodes": len(proto.graph.node)},
        "matched": len(rows), "unmatched": unmatched,
        "first_diverging": {m: _brief(r, m) if r else None for m, r in first.items()},
        "worst_isolated": [_brief(r, "isolated") for r in compare.worst(rows, "isolated")] if iso is not None else [],
        "layers": rows, "notes": list(dict.fromkeys(acc.notes + (iso.notes if iso is not None else []))),
        "warnings": [] if rows else ["no tensor of the artifact could be matched to the reference"],
    }


def exit_code(doc: dict[str, Any]) -> int:
    """1 when a layer misses its gates (accumulated or isolated), else 0 (the CLI's exit code)."""
    from ..errors import EXIT_FAILED

    return EXIT_FAILED if any((doc.get("first_diverging") or {}).values()) else 0


def _brief(row: dict[str, Any], mode: str) -> dict[str, Any]:
    return {"index": row["index"], "tensor": row["tensor"], "node": row["node"], "op_type": row["op_type"],
            **{k: row[mode].get(k) for k in compare.LAYER_METRICS}, "failures": row[mode]["failures"],
            **({"fused": row["fused"]} if row.get("fused") else {})}


def save_traces(folder: Path, reference: Trace, acc: Trace, iso: Trace | None) -> dict[str, str]:
    out = {}
    for stem, t in (("reference", reference), ("accumulated", acc), ("isolated", iso)):
        if t is not None:
            npz, doc = t.save(folder, stem)
            out[stem] = str(doc)
    return out
