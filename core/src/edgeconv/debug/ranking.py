"""The trace ranking for ``--precision auto``'s layer fallback: which ONNX nodes the *built* INT8 artifact loses its
precision in, measured on the artifact itself (its tracer) rather than simulated (``edgeconv.sensitivity.rank``, one
node at a time in fake-quant on onnxruntime).

The INT8 artifact is traced against the float reference (``trace.py``): **isolated** where its runtime can (each layer
fed the reference's tensors: the row's error is that layer's own), else **accumulated**, where a layer's own error is
what it adds to the error already in its inputs (the relative error energy ``10^(-SQNR/10)`` at its tensor minus the
largest at the traced tensors it reads). The order: first the layers that miss the int8 gates (``compare.py``) in
graph order -- the first diverging layer leads, since its error reaches every later layer, and a layer's own SQNR is
not its effect on the outputs (a last Gemm on centred logits shows a low SQNR that costs no accuracy) -- then the
others by their own error, highest first. A row names the nodes ``keep_float`` can take: its node, or the nodes fused
with it (the Conv of a Conv+Relu group); data movement and element-wise activations are left out, as in
``sensitivity.candidates``. When the traced outputs meet the gates as whole tensors (the verdict failed on a slice or
a task check, which per-layer metrics do not see), the trace does not show the failure and no ranking is returned.
The result has the shape ``sensitivity.rank`` returns (``node``, ``op_type``, ``score``:
the own error, ``sqnr_db``), so the same search runs over either.

``--precision auto`` is given this function by the API (``edgeconv.api``): the strategies do not import each other.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from ..errors import EdgeconvError

SAMPLES = 8  # evaluation samples traced (every tensor of each held in memory)


def rank_by_trace(proto: Any, ref_io: Any, artifact: Any, feeds: list[dict[str, Any]], *, threads: int | None = None,
                  status: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Rank the candidate nodes of ``proto`` (the float ONNX model the target received) by their error in the INT8
    ``artifact`` (an ``Artifact`` or ``Model`` of its form, with ``runner_options``) on ``feeds``. Returns
    ``{"ranked": [...], "ranked_by": what, "runtime": ...}``, or ``{"ranked": None, "why_not": reason}`` when the
    artifact's runtime cannot expose its tensors here (the caller then simulates)."""
    from ..sensitivity import candidates
    from . import compare, layers, tracers
    from .trace import reference_trace

    say = status or (lambda msg: None)
    tracer, why = tracers.find(artifact.form)
    options = dict(getattr(artifact, "runner_options", None) or {})
    if tracer is not None:
        why = tracer.unavailable(artifact, options)
    if tracer is None or why:
        return {"ranked": None, "why_not": why}
    feeds = feeds[:SAMPLES]
    say(f"fallback: tracing the int8 artifact's layers ({tracer.name}, {len(feeds)} samples)")
    try:
        reference = reference_trace(proto, feeds, threads=threads)
        feeds = feeds[:reference.samples]
        acc, iso = layers.trace_artifact(tracer, reference, proto, ref_io, artifact, options, feeds, threads=threads)
    except EdgeconvError as exc:  # the trace is a shortcut: when it cannot be made, the simulation ranks
        return {"ranked": None, "why_not": f"the trace failed: {exc.one_line()[:200]}"}
    trace, mode = (iso, "isolated") if iso is not None else (acc, "accumulated")
    every = compare.compare(reference, acc, iso, compare.gates("int8"))
    outputs = [r for r in every if r["tensor"] in {o.name for o in proto.graph.output} and "accumulated" in r]
    if outputs and all(r["accumulated"]["pass"] for r in outputs):
        return {"ranked": None, "why_not": "the trace does not show the failure: the artifact's outputs meet the "
                "per-layer gates as whole tensors (the verdict failed on a slice or a task check), so the layers' "
                "own errors do not say which one matters", "runtime": acc.runtime, "samples": len(feeds)}
    rows = [r for r in every if mode in r]
    errors = {r["tensor"]: _energy(r[mode].get("sqnr_db")) for r in rows}
    own = _own_errors(proto, errors, mode)
    failing = [r["tensor"] for r in rows if not r[mode]["pass"]]  # graph order
    order = failing + sorted((t for t in own if t not in failing), key=lambda t: -own[t])
    wanted = {n.name: n for n in candidates(proto)}
    groups = layers.fused_groups(proto, set(trace.tensors))
    ranked: dict[str, dict[str, Any]] = {}
    for tensor in order:
        node, score = reference.info.get(tensor, {}).get("node"), own[tensor]
        for name in [node, *reversed(groups.get(tensor, []))]:
            if name in wanted and name not in ranked:
                ranked[name] = {"node": name, "op_type": wanted[name].op_type, "score": score,
                                "sqnr_db": _db(score), "tensor": tensor, "misses_gates": tensor in failing}
    what = ("each layer's own error in the built int8 artifact, fed the source's tensors" if mode == "isolated" else
            "the error each layer of the built int8 artifact adds to its inputs'")
    return {"ranked": list(ranked.values()), "ranked_by": f"trace ({tracer.name}, {mode}): layers missing the int8 "
            f"gates first, in graph order, then by {what}", "runtime": trace.runtime, "mode": mode,
            "samples": len(feeds), "notes": reference.notes}


def _energy(sqnr_db: float | None) -> float:
    """Relative error energy of an SQNR (inf when unknown)."""
    return 10 ** (-sqnr_db / 10) if sqnr_db is not None and math.isfinite(sqnr_db) else math.inf


def _db(energy: float) -> float:
    return 200.0 if energy <= 0 else (-10 * math.log10(energy) if math.isfinite(energy) else -200.0)


def _own_errors(proto: Any, errors: dict[str, float], mode: str) -> dict[str, float]:
    """Per traced tensor, the error of its own layer: as measured (isolated), or minus the largest error among the
    traced tensors it reads, directly or through untraced nodes (accumulated)."""
    if mode == "isolated":
        return dict(errors)
    producers = {t: n for n in proto.graph.node for t in n.output if t}
    own = {}
    for tensor, err in errors.items():
        upstream, stack, seen = [], list(producers[tensor].input) if tensor in producers else [], set()
        while stack:
            x = stack.pop()
            if x in seen:
                continue
            seen.add(x)
            if x in errors:
                upstream.append(errors[x])
            elif x in producers:
                stack.extend(producers[x].input)
        before = max(upstream, default=0.0)
        own[tensor] = max(0.0, err - before) if math.isfinite(err) else math.inf
    return own
