"""Sensitive-layer search: which ONNX nodes to keep in float so that an INT8 model meets its budget.

One algorithm for every backend; its result is a list of ONNX node names, which each target
translates into its own format through the target option ``keep_float`` (onnxruntime
``nodes_to_exclude``, NNCF ``IgnoredScope``, TensorRT layer precisions, ATC ``--keep_dtype``...;
docs/auto.md).

1. **Rank** (``rank``): for every candidate node (a named node with a float activation input that
   is neither data movement nor an element-wise activation), quantize-dequantize that node *alone* -- its float activation inputs
   to uint8 with the min/max of the calibration set, its weights to int8 per output channel,
   symmetric -- and run the otherwise float model with onnxruntime on the evaluation samples. The
   node's score is the relative error energy of the model's outputs against the float reference,
   ``sum ||y_q - y||^2 / sum ||y||^2``: what that layer alone costs in INT8. Nodes are ranked by it.
2. **Search** (``search``): with a caller's ``meets(keep) -> bool`` (build the INT8 model with
   ``keep`` in float on the real backend, verify it against the budget), try the top 1, 2, 4, 8...
   ranked nodes until one set meets the budget, bisect between the last failing and the first
   passing size, then drop (greedily, lowest score first) every kept node the budget does not need,
   within a trial limit. Each trial is a real conversion, so the result holds for that backend.

The ranking is a simulation (one node at a time, onnxruntime arithmetic); the search is not.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import BadInput
from .records import keep_float_option  # noqa: F401  (kept importable here for older callers)

if TYPE_CHECKING:
    import numpy as np

# Ops that move or reshape data without arithmetic: keeping them in float changes nothing.
PLUMBING = frozenset({
    "Reshape", "Flatten", "Transpose", "Squeeze", "Unsqueeze", "Shape", "Size", "Gather", "GatherElements",
    "Slice", "Identity", "Cast", "CastLike", "Constant", "ConstantOfShape", "Expand", "Split", "Tile", "Range",
    "QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "If", "Loop", "Scan", "NonZero", "TopK",
    "ArgMax", "ArgMin", "Dropout", "DepthToSpace", "SpaceToDepth",
})
# Element-wise activations: their output is the next layer's input, whose quantization that layer's
# score measures (and a backend fuses them: onnxruntime folds Relu/Clip into the uint8 range, OpenVINO
# quantizes after them).
ACTIVATIONS = frozenset({"Relu", "Clip", "LeakyRelu", "Sigmoid", "Tanh", "HardSigmoid", "HardSwish", "Softplus",
                         "Elu", "Selu", "Gelu", "Mish", "Erf", "Not"})
# Weighted ops: which input holds the weights, and its output-channel axis (for per-channel int8).
WEIGHTS = {"Conv": (1, 0), "ConvTranspose": (1, 1), "MatMul": (1, -1), "Gemm": (1, None)}
MAX_CANDIDATES = 400  # ranking costs one onnxruntime session per candidate


@dataclass
class SearchResult:
    keep: list[str]  # the node names to keep in float ([] when int8 alone met the budget)
    found: bool  # False: even every ranked node in float did not meet the budget
    trials: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"keep_float": list(self.keep), "found": self.found, "trials": list(self.trials)}


# -- ranking ------------------------------------------------------------------------------
def candidates(proto: Any) -> list[Any]:
    """Nodes worth keeping in float: named, not data movement, in the main graph (in order)."""
    inits = {i.name for i in proto.graph.initializer}
    out = []
    seen: set[str] = set()
    for node in proto.graph.node:
        if (not node.name or node.name in seen or node.op_type in PLUMBING or node.op_type in ACTIVATIONS
                or node.domain not in ("", "ai.onnx")):
            continue
        seen.add(node.name)
        if any(x and x not in inits for x in node.input):
            out.append(node)
    return out


def _with_outputs(proto: Any, names: Sequence[str]) -> Any:
    """A copy of ``proto`` that also outputs the tensors ``names`` (types left to onnxruntime)."""
    import onnx

    m = onnx.ModelProto()
    m.CopyFrom(proto)
    have = {o.name for o in m.graph.output}
    for name in names:
        if name not in have:
            m.graph.output.append(onnx.ValueInfoProto(name=name))
            have.add(name)
    return m


def _session(proto: Any, threads: int | None, folder: Path | None = None) -> Any:
    """An onnxruntime CPU session; with ``folder``, the (small) graph is written there, beside the
    external weights file every variant shares, instead of serialising the weights once per variant."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    if threads:
        so.intra_op_num_threads = int(threads)
    if folder is None:
        return ort.InferenceSession(proto.SerializeToString(), so, providers=["CPUExecutionProvider"])
    path = folder / "variant.onnx"
    path.write_bytes(proto.SerializeToString())
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def _light(proto: Any, folder: Path) -> Any:
    """``proto`` with its large initializers moved to ``folder/weights.bin`` (external data): a copy
    per candidate then costs the graph, not the weights."""
    import onnx

    m = onnx.ModelProto()
    m.CopyFrom(proto)
    onnx.save(m, str(folder / "base.onnx"), save_as_external_data=True, all_tensors_to_one_file=True,
              location="weights.bin", size_threshold=4096)
    return onnx.load(str(folder / "base.onnx"), load_external_data=False)


def _run(sess: Any, feeds: list[dict[str, np.ndarray]], names: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    import numpy as np

    outs: dict[str, list[np.ndarray]] = {}
    wanted = list(names) if names is not None else [o.name for o in sess.get_outputs()]
    for feed in feeds:
        for name, value in zip(wanted, sess.run(wanted, feed), strict=True):
            outs.setdefault(name, []).append(np.asarray(value))
    return {k: np.concatenate([np.atleast_1d(v) for v in vs]) for k, vs in outs.items()}


def _uint8_params(lo: float, hi: float) -> tuple[float, int]:
    """Asymmetric uint8 scale and zero point for the range [lo, hi] (which always holds 0)."""
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    scale = (hi - lo) / 255.0 or 1.0
    return float(scale), int(round(-lo / scale))


def _fake_quant_weights(w: np.ndarray, axis: int | None) -> np.ndarray:
    """Symmetric int8 quantize-dequantize, per channel along ``axis`` (per tensor when None)."""
    import numpy as np

    w32 = w.astype(np.float32)
    if axis is None or w32.ndim < 2:
        amax = np.abs(w32).max()
    else:
        axis = axis % w32.ndim
        amax = np.abs(w32).max(axis=tuple(i for i in range(w32.ndim) if i != axis), keepdims=True)
    scale = np.where(amax > 0, amax / 127.0, 1.0)
    return (np.clip(np.round(w32 / scale), -127, 127) * scale).astype(w.dtype)


def _quantized_alone(proto: Any, node_index: int, ranges: dict[str, tuple[float, float]],
                     weights: dict[str, Any] | None = None) -> Any:
    """A copy of ``proto`` in which only node ``node_index`` sees int8 inputs and int8 weights
    (``weights``: the initializers with their data, when ``proto``'s are external references)."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    m = onnx.ModelProto()
    m.CopyFrom(proto)
    g = m.graph
    node = g.node[node_index]
    inits = {i.name: i for i in g.initializer}
    new_nodes = []
    for i, x in enumerate(node.input):
        if not x:
            continue
        if x in inits:
            spec = WEIGHTS.get(node.op_type)
            if spec is None or spec[0] != i:
                continue
            w = numpy_helper.to_array((weights or inits)[x])
            if w.dtype.kind != "f":
                continue
            axis = spec[1]
            if node.op_type == "Gemm":
                trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
                axis = 0 if trans_b else 1
            fq = f"{x}__edgeconv_fq"
            g.initializer.append(numpy_helper.from_array(_fake_quant_weights(w, axis), fq))
            node.input[i] = fq
            continue
        if x not in ranges:  # not a float tensor
            continue
        scale, zero = _uint8_params(*ranges[x])
        s, z, q, dq = (f"{x}__edgeconv_{k}" for k in ("s", "z", "q", "dq"))
        g.initializer.append(numpy_helper.from_array(np.array(scale, np.float32), s))
        g.initializer.append(helper.make_tensor(z, TensorProto.UINT8, [], [zero]))
        new_nodes += [helper.make_node("QuantizeLinear", [x, s, z], [q], name=f"{x}__edgeconv_Q"),
                      helper.make_node("DequantizeLinear", [q, s, z], [dq], name=f"{x}__edgeconv_DQ")]
        node.input[i] = dq
    # Q/DQ go right before the node: the graph stays topologically sorted.
    nodes = list(g.node)
    del g.node[:]
    g.node.extend(nodes[:node_index] + new_nodes + nodes[node_index:])
    return m


def relative_error(ref: dict[str, np.ndarray], got: dict[str, np.ndarray]) -> float:
    """``sum ||got - ref||^2 / sum ||ref||^2`` over the float outputs (inf when non-finite)."""
    import numpy as np

    num = den = 0.0
    for name, r in ref.items():
        if r.dtype.kind != "f" or name not in got:
            continue
        g = got[name].astype(np.float64)
        if not np.isfinite(g).all():
            return math.inf
        d = g - r.astype(np.float64)
        num += float((d * d).sum())
        den += float((r.astype(np.float64) ** 2).sum())
    return num / den if den else (0.0 if num == 0 else math.inf)


def rank(proto: Any, eval_feeds: list[dict[str, np.ndarray]], calib_feeds: list[dict[str, np.ndarray]], *,
         threads: int | None = None, status: Callable[[str], None] | None = None,
         max_candidates: int = MAX_CANDIDATES) -> list[dict[str, Any]]:
    """Every candidate node's INT8 error when it alone is quantized, highest first.

    ``proto`` is the float ONNX model the backend quantizes (after the generic passes, so that
    node names match); ``calib_feeds`` give the activation ranges, ``eval_feeds`` the outputs compared.
    Returns ``[{"node", "op_type", "score", "sqnr_db"}, ...]``.
    """
    import numpy as np

    say = status or (lambda msg: None)
    if not eval_feeds or not calib_feeds:
        raise BadInput("the sensitivity search needs calibration and evaluation samples", stage="optimize")
    cands = candidates(proto)[:max_candidates]
    if not cands:
        return []
    inits = {i.name: i for i in proto.graph.initializer}
    tensors = list(dict.fromkeys(x for n in cands for x in n.input if x and x not in inits))
    graph_outputs = [o.name for o in proto.graph.output]
    index = {id(n): i for i, n in enumerate(proto.graph.node)}
    positions = [index[id(n)] for n in cands]
    out = []
    with tempfile.TemporaryDirectory(prefix="edgeconv-sensitivity-") as tmp:
        folder = Path(tmp)
        light = _light(proto, folder)
        say(f"sensitivity: activation ranges of {len(tensors)} tensors")
        probe = _session(_with_outputs(light, tensors), threads, folder)
        acts = _run(probe, calib_feeds, tensors)
        ranges = {k: (float(v.min()), float(v.max())) for k, v in acts.items()
                  if v.dtype.kind == "f" and v.size and np.isfinite(v).all()}
        del acts, probe
        ref = _run(_session(light, threads, folder), eval_feeds, graph_outputs)
        for k, (node, pos) in enumerate(zip(cands, positions, strict=True)):
            if not any(x in ranges for x in node.input):
                continue  # no float activation input (e.g. integer index arithmetic)
            say(f"sensitivity: {k + 1}/{len(cands)} {node.name}")
            model = _quantized_alone(light, pos, ranges, inits)
            got = _run(_session(model, threads, folder), eval_feeds, graph_outputs)
            err = relative_error(ref, got)
            out.append({"node": node.name, "op_type": node.op_type, "score": err,
                        "sqnr_db": (200.0 if err == 0 else (-10 * math.log10(err) if math.isfinite(err) else -200.0))})
    out.sort(key=lambda r: -r["score"])
    return out


# -- search -------------------------------------------------------------------------------
def search(ranked: Sequence[str], meets: Callable[[list[str]], bool], *, max_trials: int = 10,
           status: Callable[[str], None] | None = None) -> SearchResult:
    """The smallest prefix of ``ranked`` (then pruned) whose nodes, kept in float, meet the budget.

    ``meets(keep)`` builds and verifies the model with ``keep`` in float; it is called at most
    ``max_trials`` times. Exponential search over the prefix size (1, 2, 4, ...), bisection between
    the last failing and the first passing size, then greedy removal of kept nodes (lowest rank
    first) while trials remain.
    """
    say = status or (lambda msg: None)
    names = list(dict.fromkeys(ranked))
    trials: list[dict[str, Any]] = []
    cache: dict[tuple[str, ...], bool] = {}

    def trial(keep: list[str], why: str) -> bool | None:
        key = tuple(sorted(keep))
        if key in cache:
            return cache[key]
        if len(trials) >= max_trials:
            return None
        say(f"fallback trial {len(trials) + 1}: {len(keep)} node(s) in float ({why})")
        ok = bool(meets(list(keep)))
        cache[key] = ok
        trials.append({"keep_float": list(keep), "pass": ok, "step": why})
        return ok

    if not names:
        return SearchResult([], False, trials)
    lo, hi = 0, None  # lo: a size known to fail (0 = plain int8), hi: the smallest size known to pass
    k = 1
    while True:
        k = min(k, len(names))
        ok = trial(names[:k], f"top {k}")
        if ok is None:
            break
        if ok:
            hi = k
            break
        lo = k
        if k == len(names):
            break
        k *= 2
    if hi is None:
        return SearchResult([], False, trials)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        ok = trial(names[:mid], f"bisect {mid}")
        if ok is None:
            break
        if ok:
            hi = mid
        else:
            lo = mid
    keep = names[:hi]
    # Greedy pruning: a node the ranking put in front may not be needed once the worse one is float.
    for name in reversed(names[:hi]):
        if len(keep) <= 1:
            break
        smaller = [n for n in keep if n != name]
        ok = trial(smaller, f"without {name}")
        if ok is None:
            break
        if ok:
            keep = smaller
    return SearchResult(keep, True, trials)
