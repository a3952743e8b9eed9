"""The common trace format, the reference trace, and how an artifact's raw tensors become comparable.

A **trace** is what one model computed on the same samples, tensor by tensor, keyed by the *reference* graph's tensor
names (the ONNX model the target received: ``pipeline.prepare``'s model, the graph whose node names ``keep_float``
takes). On disk it is two files (docs/debug.md#the-trace-format)::

    <stem>.npz    one array per traced tensor, key "t00000", "t00001", ... (in graph order), the samples stacked
                  on a new first axis, float32, in the reference's layout (NCHW where the reference is NCHW)
    <stem>.json   {"schema": "edgeconv.trace/1", "mode": "reference" | "accumulated" | "isolated", "runtime": ...,
                   "samples": N, "order": [tensor names in graph order],
                   "tensors": [{"key", "name", "node", "op_type", "shape", "artifact": {how the artifact's tensor
                                was found: its name there, layout, quantization, fused nodes}}, ...],
                   "notes": [...]}

A tracer (one per artifact form, registered by the target's plugin: ``tracers.py``) returns *raw* tensors: its own
layout and dtype, with a name map that says, per reference tensor, where it came from (``artifact``), its layout
when it is not the reference's (``layout``: ``"channels_last"``) and how to dequantize it (``scale``,
``zero_point``, ``axis``). ``normalize`` turns them into a trace of the common format.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import BadInput
from ..onnx_tools import with_outputs
from ..report import dumps

if TYPE_CHECKING:
    import numpy as np

SCHEMA = "edgeconv.trace/1"
MODES = ("reference", "accumulated", "isolated")
# Ops whose outputs are not worth a row: constants and what only moves shapes around.
SKIP_OPS = frozenset({"Constant", "ConstantOfShape", "Shape", "Size"})
# Every tensor of every traced sample is held in memory, by the reference and by each artifact trace (and briefly
# copied while normalized): the reference stops taking samples past this many bytes (a PP-OCRv4 recogniser at
# 48x640 holds ~0.3 GB per sample), so that a large model is traced on fewer samples instead of exhausting memory.
REFERENCE_BYTES = 1 << 30


@dataclass
class Trace:
    """One model's tensors on the samples, keyed by reference tensor name (see the module's doc)."""

    mode: str
    runtime: str
    order: list[str]
    tensors: dict[str, list[Any]]  # name -> one array per sample (reference layout, float32 or the source's dtype)
    info: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> node, op_type, artifact, ...
    notes: list[str] = field(default_factory=list)

    @property
    def samples(self) -> int:
        return max((len(v) for v in self.tensors.values()), default=0)

    def stacked(self, name: str) -> Any:
        import numpy as np

        return np.stack([np.asarray(a) for a in self.tensors[name]])

    def per_sample(self, index: int) -> dict[str, Any]:
        """Every tensor of sample ``index`` (the golden feed of an isolated run)."""
        return {k: v[index] for k, v in self.tensors.items() if index < len(v)}

    def save(self, folder: Path, stem: str) -> tuple[Path, Path]:
        """Write ``<stem>.npz`` and ``<stem>.json`` into ``folder`` (the format of the module's doc)."""
        import numpy as np

        folder.mkdir(parents=True, exist_ok=True)
        names = [n for n in self.order if n in self.tensors]
        keys = {n: f"t{i:05d}" for i, n in enumerate(names)}
        npz, doc = folder / f"{stem}.npz", folder / f"{stem}.json"
        np.savez(npz, **{keys[n]: self.stacked(n) for n in names})
        entries = [{"key": keys[n], "name": n, "shape": list(self.stacked(n).shape[1:]), **self.info.get(n, {})}
                   for n in names]
        doc.write_text(dumps({"schema": SCHEMA, "mode": self.mode, "runtime": self.runtime,
                              "samples": self.samples, "order": names, "tensors": entries,
                              "notes": self.notes}, indent=1), encoding="utf-8")
        return npz, doc


def load(folder: Path, stem: str) -> Trace:
    """Read a trace written by ``Trace.save`` (checked: schema, keys present)."""
    import numpy as np

    doc_file, npz_file = Path(folder) / f"{stem}.json", Path(folder) / f"{stem}.npz"
    try:
        doc = json.loads(doc_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise BadInput(f"unreadable trace ({' '.join(str(exc).split())[:160]})", file=doc_file, stage="debug") from None
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA or doc.get("mode") not in MODES:
        raise BadInput(f"not an edgeconv trace (schema {SCHEMA!r})", file=doc_file, stage="debug")
    tensors, info = {}, {}
    with np.load(npz_file, allow_pickle=False) as data:
        for e in doc.get("tensors") or []:
            if e.get("key") not in data.files:
                raise BadInput(f"trace tensor {e.get('name')!r} has no array {e.get('key')!r}", file=npz_file,
                               stage="debug")
            arr = data[e["key"]]
            tensors[e["name"]] = list(arr)
            info[e["name"]] = {k: v for k, v in e.items() if k not in ("key", "name", "shape")}
    return Trace(doc["mode"], str(doc.get("runtime") or ""), [n for n in doc.get("order") or [] if n in tensors],
                 tensors, info, list(doc.get("notes") or []))


# -- the reference: the ONNX model the target received, every tensor exposed, on onnxruntime ---------------------------
def graph_order(proto: Any) -> list[tuple[str, Any]]:
    """``(tensor, node)`` of every output of the main graph's nodes, in graph (topological) order."""
    out = []
    for node in proto.graph.node:
        if node.op_type in SKIP_OPS:
            continue
        out += [(t, node) for t in node.output if t]
    return out


def ort_session(proto: Any, threads: int | None = None, level: str = "all") -> Any:
    import onnxruntime as ort

    from ..quiet import quiet_onnxruntime

    quiet_onnxruntime()
    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.graph_optimization_level = {"disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
                                   "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
                                   "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
                                   }.get(level, ort.GraphOptimizationLevel.ORT_ENABLE_ALL)
    if threads:
        so.intra_op_num_threads = int(threads)
    try:
        return ort.InferenceSession(proto.SerializeToString(), so, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own types
        raise BadInput(f"onnxruntime cannot load the reference model with every tensor exposed: "
                       f"{' '.join(str(exc).split())[:240]}", stage="debug") from None


def reference_trace(proto: Any, feeds: list[dict[str, Any]], *, threads: int | None = None,
                    status: Callable[[str], None] | None = None, max_bytes: int | None = None) -> Trace:
    """Run the reference ONNX model in float on onnxruntime with every node output exposed: the golden tensors. The
    samples stop once they hold ``max_bytes`` (at least one is traced; a note says so): trace the artifact on
    ``feeds[:trace.samples]``."""
    import numpy as np
    import onnxruntime as ort

    say = status or (lambda msg: None)
    max_bytes = REFERENCE_BYTES if max_bytes is None else max_bytes
    order = graph_order(proto)
    names = list(dict.fromkeys(t for t, _ in order))
    say(f"reference: {len(names)} tensors on {len(feeds)} sample(s)")
    sess = ort_session(with_outputs(proto, names), threads)
    wanted = [o.name for o in sess.get_outputs() if o.name in set(names)]
    tensors: dict[str, list[Any]] = {}
    held, notes = 0, []
    for n, feed in enumerate(feeds):
        got = [np.asarray(v) for v in sess.run(wanted, feed)]
        size = sum(a.size * 4 for a in got if a.dtype.kind == "f")
        if n and held + size > max_bytes:
            notes.append(f"traced on {n} of {len(feeds)} samples: every tensor of one sample takes "
                         f"{size / 2**20:.0f} MB, and the traces hold at most {max_bytes / 2**20:.0f} MB per trace")
            break
        held += size
        for name, arr in zip(wanted, got, strict=True):
            if arr.dtype.kind == "f":  # integer tensors (shapes, indices) are not layers worth comparing
                tensors.setdefault(name, []).append(arr.astype(np.float32, copy=False))
    nodes = {t: n for t, n in order}
    info = {t: {"node": nodes[t].name, "op_type": nodes[t].op_type} for t in tensors}
    return Trace("reference", f"onnxruntime {ort.__version__} (float, every tensor exposed)",
                 [t for t in names if t in tensors], tensors, info, notes)


# -- an artifact's raw tensors -> the common format ---------------------------------------------------------------------
CHANNELS_LAST = {3: (0, 2, 1), 4: (0, 3, 1, 2), 5: (0, 4, 1, 2, 3)}  # channels-last -> channels-first


def dequantize(arr: Any, entry: dict[str, Any]) -> Any:
    """``(q - zero_point) * scale``, per tensor or per channel along ``axis`` (in the artifact's layout)."""
    import numpy as np

    scale = entry.get("scale")
    if scale is None or np.asarray(arr).dtype.kind not in "iu":
        return np.asarray(arr).astype(np.float32)
    s = np.asarray(scale, dtype=np.float32)
    z = np.asarray(entry.get("zero_point") or 0, dtype=np.float32)
    if s.ndim and s.size > 1:
        axis = int(entry.get("axis", 1)) % arr.ndim
        shape = [1] * arr.ndim
        shape[axis] = -1
        s = s.reshape(shape)
        z = z.reshape(shape) if z.ndim and z.size > 1 else z
    return ((np.asarray(arr).astype(np.float32) - z) * s).astype(np.float32)


def fit(arr: Any, shape: tuple[int, ...], layout: str | None) -> Any | None:
    """``arr`` in the reference's ``shape``: as is, from channels-last (the layout hint first), or by another
    transpose or a reshape that keeps every value; None when nothing fits."""
    import itertools
    import math

    shape = tuple(shape)
    perm = CHANNELS_LAST.get(arr.ndim)
    if layout == "channels_last" and perm is not None and arr.transpose(perm).shape == shape:
        return arr.transpose(perm)
    if arr.shape == shape:
        return arr
    if perm is not None and arr.transpose(perm).shape == shape:
        return arr.transpose(perm)
    if arr.ndim == len(shape) and arr.ndim <= 5:
        for p in itertools.permutations(range(arr.ndim)):
            if arr.transpose(p).shape == shape:
                return arr.transpose(p)
    if arr.size == math.prod(shape):
        return arr.reshape(shape)
    return None


def normalize(raw: dict[str, Any], reference: Trace, mode: str, runtime: str) -> Trace:
    """A tracer's raw result (``{"tensors": [per sample {ref name: array}], "map": {ref name: entry}, "notes"}``) as a
    trace of the common format: dequantized, in the reference's layout; a tensor that fits no way is dropped with a
    note."""
    import numpy as np

    mapping: dict[str, dict[str, Any]] = dict(raw.get("map") or {})
    notes = list(raw.get("notes") or [])
    tensors: dict[str, list[Any]] = {}
    dropped: list[str] = []
    for sample, got in enumerate(raw.get("tensors") or []):
        for name, arr in got.items():
            if name not in reference.tensors or sample >= len(reference.tensors[name]):
                continue
            entry = mapping.get(name, {})
            want = reference.tensors[name][sample].shape
            value = fit(dequantize(np.asarray(arr), entry), want, entry.get("layout"))
            if value is None:
                if name not in dropped:
                    dropped.append(name)
                continue
            tensors.setdefault(name, []).append(np.ascontiguousarray(value, dtype=np.float32))
    if dropped:
        notes.append(f"{len(dropped)} artifact tensor(s) fit the reference's shape in no layout and were not "
                     f"compared (e.g. {dropped[0]!r})")
    info = {n: {**reference.info.get(n, {}), "artifact": mapping.get(n, {})} for n in tensors}
    return Trace(mode, runtime, [n for n in reference.order if n in tensors], tensors, info, notes)
