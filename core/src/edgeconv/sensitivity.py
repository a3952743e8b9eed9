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
from .onnx_tools import with_outputs
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
# Ops whose output the int8 quantizers give one scale for inputs of different ranges: ranked with it quantized too
OUTPUT_QUANTIZED = frozenset({"Concat"})


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


def _ranges(sess: Any, feeds: list[dict[str, np.ndarray]], names: Sequence[str]) -> dict[str, tuple[float, float]]:
    """min/max of each float tensor over the feeds, reduced sample by sample: the activations of every layer of
    every calibration sample held at once took 12.8 GB on the PP-OCR recogniser (killed by the OOM killer).
    A tensor with a non-finite value has no range."""
    import numpy as np

    lo: dict[str, float] = {}
    hi: dict[str, float] = {}
    bad: set[str] = set()
    names = list(names)
    for feed in feeds:
        for name, value in zip(names, sess.run(names, feed), strict=True):
            v = np.asarray(value)
            if v.dtype.kind != "f" or not v.size or name in bad:
                continue
            if not np.isfinite(v).all():
                bad.add(name)
                continue
            lo[name] = min(lo.get(name, np.inf), float(v.min()))
            hi[name] = max(hi.get(name, -np.inf), float(v.max()))
    return {k: (lo[k], hi[k]) for k in lo if k not in bad}


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
    after = []
    if node.op_type in OUTPUT_QUANTIZED and node.output and node.output[0] in ranges:
        # the quantizers give a Concat's output one scale for all its inputs: that scale is its cost
        y = node.output[0]
        scale, zero = _uint8_params(*ranges[y])
        s, z, q, pre = (f"{y}__edgeconv_out_{k}" for k in ("s", "z", "q", "pre"))
        g.initializer.append(numpy_helper.from_array(np.array(scale, np.float32), s))
        g.initializer.append(helper.make_tensor(z, TensorProto.UINT8, [], [zero]))
        node.output[0] = pre
        after = [helper.make_node("QuantizeLinear", [pre, s, z], [q], name=f"{y}__edgeconv_out_Q"),
                 helper.make_node("DequantizeLinear", [q, s, z], [y], name=f"{y}__edgeconv_out_DQ")]
    # Q/DQ go right before the node (and after it): the graph stays topologically sorted.
    nodes = list(g.node)
    del g.node[:]
    g.node.extend(nodes[:node_index] + new_nodes + [nodes[node_index]] + after + nodes[node_index + 1:])
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

    say = status or (lambda msg: None)
    if not eval_feeds or not calib_feeds:
        raise BadInput("the sensitivity search needs calibration and evaluation samples", stage="optimize")
    cands = candidates(proto)[:max_candidates]
    if not cands:
        return []
    inits = {i.name: i for i in proto.graph.initializer}
    tensors = list(dict.fromkeys([*(x for n in cands for x in n.input if x and x not in inits),
                                  *(n.output[0] for n in cands if n.op_type in OUTPUT_QUANTIZED and n.output)]))
    graph_outputs = [o.name for o in proto.graph.output]
    index = {id(n): i for i, n in enumerate(proto.graph.node)}
    positions = [index[id(n)] for n in cands]
    out = []
    with tempfile.TemporaryDirectory(prefix="edgeconv-sensitivity-") as tmp:
        folder = Path(tmp)
        light = _light(proto, folder)
        say(f"sensitivity: activation ranges of {len(tensors)} tensors")
        probe = _session(with_outputs(light, tensors), threads, folder)
        ranges = _ranges(probe, calib_feeds, tensors)
        del probe
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


# -- precision share: how much of the compute runs at the requested precision ------------------
# A QDQ or fp16 ONNX model can come back with most of its arithmetic still in float32 (onnxruntime's
# quantizer does not enter If/Loop/Scan bodies: "int8, pass" with 0 quantized nodes, issue #17). These
# count, over every graph and subgraph, the compute nodes and their multiply-accumulates at each precision.
MAC_OPS = {  # op -> (weight input, kind)
    "Conv": (1, "conv"), "ConvTranspose": (1, "convT"), "MatMul": (1, "matmul"), "Gemm": (1, "gemm"),
    "ConvInteger": (1, "conv"), "QLinearConv": (3, "conv"), "MatMulInteger": (1, "matmul"),
    "QLinearMatMul": (3, "matmul"), "DynamicQuantizeMatMul": (1, "matmul"), "MatMulIntegerToFloat": (1, "matmul"),
    "QGemm": (3, "gemm"),
}
# Ops that compute in integers whatever their neighbours (QOperator format, dynamic quantization).
INTEGER_OPS = frozenset({"ConvInteger", "QLinearConv", "MatMulInteger", "QLinearMatMul", "DynamicQuantizeMatMul",
                         "MatMulIntegerToFloat", "QGemm", "QLinearAdd", "QLinearMul", "QLinearSigmoid",
                         "QLinearGlobalAveragePool", "QLinearConcat", "QLinearAveragePool", "QLinearLeakyRelu",
                         "QLinearSoftmax", "QAttention", "DynamicQuantizeLSTM"})
_NOT_COMPUTE = PLUMBING | {"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "Concat", "Pad"}
SHARE_MIN = 0.5  # below this share of the (not deliberately float) MACs, the precision asked for is not delivered
_HALF = (10, 16)  # TensorProto FLOAT16, BFLOAT16


def _tensor_info(proto: Any) -> tuple[dict[str, int], dict[str, list[int | None]]]:
    """Element types and shapes of every named tensor, subgraphs included (shape inference on a copy)."""
    import onnx

    try:
        inferred = onnx.shape_inference.infer_shapes(proto, strict_mode=False) if proto.ByteSize() < 2_000_000_000 else proto
    except Exception:
        inferred = proto
    types: dict[str, int] = {}
    shapes: dict[str, list[int | None]] = {}
    for g in _all_graphs(inferred.graph):
        for vi in (*g.input, *g.output, *g.value_info):
            t = vi.type.tensor_type
            if not vi.type.HasField("tensor_type"):
                continue
            types[vi.name] = t.elem_type
            if t.HasField("shape"):
                # a named or unknown axis (batch, sequence) counts as 1: MACs per sample
                shapes[vi.name] = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else 1 for d in t.shape.dim]
        for init in g.initializer:
            types[init.name] = init.data_type
            shapes[init.name] = list(init.dims)
        for node in g.node:
            if node.op_type == "Constant" and node.output:
                value = next((a.t for a in node.attribute if a.name == "value"), None)
                if value is not None:
                    types[node.output[0]] = value.data_type
                    shapes[node.output[0]] = list(value.dims)
    return types, shapes


def _all_graphs(graph: Any, depth: int = 0):
    yield graph
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == 5:  # GRAPH
                yield from _all_graphs(attr.g, depth + 1)
            for g in attr.graphs:
                yield from _all_graphs(g, depth + 1)


def _nodes_with_depth(graph: Any, depth: int = 0, owner: str = ""):
    """(node, depth, the control-flow node that holds it) for every node, subgraphs included."""
    for node in graph.node:
        yield node, depth, owner
        for attr in node.attribute:
            subs = ([attr.g] if attr.type == 5 else []) + list(attr.graphs)
            for g in subs:
                yield from _nodes_with_depth(g, depth + 1, owner or f"{node.op_type} node {node.name or '<unnamed>'!r}")


def _prod(dims: Sequence[int | None] | None) -> int | None:
    if not dims or any(d is None for d in dims):
        return None
    out = 1
    for d in dims:
        out *= int(d)
    return out


def _weight_shape(name: str, producers: dict[str, Any], shapes: dict[str, Any]) -> list[int | None] | None:
    """The shape of a weight input, through a DequantizeLinear / Cast in front of it."""
    for _ in range(3):
        if name in shapes and shapes[name] and all(d is not None for d in shapes[name]):
            return shapes[name]
        p = producers.get(name)
        if p is None or p.op_type not in ("DequantizeLinear", "Cast", "Transpose", "Identity"):
            break
        name = p.input[0]
    return shapes.get(name)


def node_macs(node: Any, producers: dict[str, Any], shapes: dict[str, Any]) -> int:
    """Multiply-accumulates of one Conv/ConvTranspose/MatMul/Gemm (and their integer forms) from shapes; an
    unknown spatial size counts as 1 position (a lower bound), an unknown weight as 0."""
    spec = MAC_OPS.get(node.op_type)
    if spec is None or len(node.input) <= spec[0]:
        return 0
    w_at, kind = spec
    w = _weight_shape(node.input[w_at], producers, shapes)
    out = shapes.get(node.output[0]) if node.output else None
    if kind in ("conv", "convT"):
        per = _prod(w[1:]) if w and len(w) > 1 else None
        if per is None:
            return 0
        if kind == "convT":
            x = shapes.get(node.input[0])
            n = _prod(x) if x else None
            return per * (n if n else (w[0] or 1))
        n = _prod(out) if out else None
        return per * (n if n else (w[0] or 1))
    # matmul / gemm: prod(output) * K
    a = shapes.get(node.input[0] if kind == "matmul" or w_at == 1 else node.input[0])
    k = None
    if w and len(w) >= 2:
        trans_b = kind == "gemm" and any(at.name == "transB" and at.i for at in node.attribute)
        k = w[-1] if trans_b else w[-2]
    if k is None and a:
        k = a[-1]
    n = _prod(out) if out else None
    if n is None and w and len(w) >= 2:
        n = (w[-2] if kind == "gemm" and any(at.name == "transB" and at.i for at in node.attribute) else w[-1]) or None
    return int((n or 1) * (k or 0))


def _at_precision(node: Any, requested: str, producers: dict[str, Any], types: dict[str, int]) -> bool:
    if requested in ("int8", "int8-dynamic"):
        if node.op_type in INTEGER_OPS:
            return True
        if node.domain not in ("", "ai.onnx"):
            return False

        def dequantized(x: str) -> bool:
            p = producers.get(x)
            return p is not None and p.op_type == "DequantizeLinear" and types.get(p.input[0], 2) in (2, 3, 4, 5, 17, 18, 19, 20, 21, 22)

        if node.op_type in MAC_OPS:
            w = MAC_OPS[node.op_type][0]
            return dequantized(node.input[0]) and (len(node.input) <= w or dequantized(node.input[w]))
        return any(dequantized(x) for x in node.input if x)
    if requested in ("fp16", "bf16"):
        wanted = 10 if requested == "fp16" else 16
        floats = [types.get(x) for x in node.input if x and types.get(x) in (1, 10, 11, 16)]
        return bool(floats) and floats[0] == wanted
    return True


def precision_share(proto: Any, requested: str, kept_float: Sequence[str] = ()) -> dict[str, Any]:
    """How much of an ONNX model's compute is at ``requested`` (int8, int8-dynamic, fp16, bf16): compute nodes
    (everything but data movement and Q/DQ) and the multiply-accumulates of Conv/ConvTranspose/MatMul/Gemm, over
    every graph and subgraph (If/Loop/Scan bodies: a Loop body counted once). ``kept_float``: nodes kept in float on
    purpose (keep_float, the mixed-range recipe), reported apart. ``share`` is of all MACs (of all compute nodes when
    the model has no MAC op); ``share_not_kept`` of the MACs not kept in float on purpose, which ``share_failure``
    gates."""
    types, shapes = _tensor_info(proto)
    producers = {o: n for g in _all_graphs(proto.graph) for n in g.node for o in n.output if o}
    kept = set(kept_float)
    count = {"nodes": {"total": 0, "at_precision": 0, "kept_float": 0, "in_subgraphs": 0, "in_subgraphs_at_precision": 0},
             "macs": {"total": 0, "at_precision": 0, "kept_float": 0, "in_subgraphs": 0, "in_subgraphs_at_precision": 0}}
    floats: list[tuple[int, str, str, str]] = []
    holders: dict[str, int] = {}
    for node, depth, owner in _nodes_with_depth(proto.graph):
        if node.op_type in _NOT_COMPUTE and node.op_type not in INTEGER_OPS:
            continue
        macs = node_macs(node, producers, shapes)
        ok = _at_precision(node, requested, producers, types)
        for key, value in (("nodes", 1), ("macs", macs)):
            c = count[key]
            c["total"] += value
            if ok:
                c["at_precision"] += value
            elif node.name in kept:
                c["kept_float"] += value
            if depth:
                c["in_subgraphs"] += value
                c["in_subgraphs_at_precision"] += value if ok else 0
        if not ok and node.name not in kept:
            floats.append((macs, node.name or f"<{node.op_type}>", node.op_type, owner))
            if depth and macs:
                holders[owner] = holders.get(owner, 0) + macs
    return share_record(requested, count, floats, holders)


def share_record(requested: str, count: dict[str, dict[str, int]], floats: list[tuple[int, str, str, str]],
                 holders: dict[str, int], counted_in: str | None = None) -> dict[str, Any]:
    """The precision-share record every backend reports (``share_failure`` reads it), from its counts: ``count``
    ``{"nodes"|"macs": {total, at_precision, kept_float, in_subgraphs, in_subgraphs_at_precision}}``, ``floats``
    ``(macs, node, op type, subgraph owner)`` of the compute not at the precision (nor kept on purpose),
    ``holders`` float MACs per subgraph owner. The basis is MACs, or compute nodes when there are none."""
    basis = "macs" if count["macs"]["total"] else "nodes"
    c = count[basis]
    eligible = c["total"] - c["kept_float"]
    floats = sorted(floats, key=lambda f: -f[0])
    return {
        "requested": requested, "basis": basis, **count, **({"counted_in": counted_in} if counted_in else {}),
        "share": round(c["at_precision"] / c["total"], 4) if c["total"] else 1.0,
        "share_not_kept": round(c["at_precision"] / eligible, 4) if eligible else 1.0,
        "not_at_precision": [{"node": n, "op_type": op, "macs": m, **({"inside": o} if o else {})}
                             for m, n, op, o in floats[:8]],
        "float_subgraph_holders": dict(sorted(holders.items(), key=lambda kv: -kv[1])),
    }


def share_failure(share: dict[str, Any], minimum: float = SHARE_MIN) -> str | None:
    """Why a model is not at the precision asked for (None when it is): under ``minimum`` of its MACs (not kept in
    float on purpose) at the requested precision. The reason names where the float compute sits."""
    if not share or share.get("requested") not in ("int8", "int8-dynamic", "fp16", "bf16"):
        return None
    basis = share["basis"]
    c = share[basis]
    if c["total"] == 0 or share["share_not_kept"] >= minimum:
        return None
    what = "MACs" if basis == "macs" else "compute nodes"
    prec = "int8" if share["requested"].startswith("int8") else share["requested"]
    text = f"{c['at_precision']:,} of {c['total']:,} {what} are {prec} ({share['share_not_kept']:.0%} of those not kept " \
           f"in float on purpose; at least {minimum:.0%} needed)"
    holders = share.get("float_subgraph_holders") or {}
    if holders and c["in_subgraphs"] - c["in_subgraphs_at_precision"] >= 0.5 * (c["total"] - c["at_precision"]):
        owner, macs = next(iter(holders.items()))
        text += f": the network sits inside the subgraphs of {owner} ({macs:,} float {what} there)"
    elif share.get("not_at_precision"):
        top = share["not_at_precision"][0]
        text += f"; the largest float node: {top['node']} ({top['op_type']})"
    return text


# -- outputs that concatenate ranges: the INT8 recipe ---------------------------------------------
# A YOLO head emits Concat([boxes 0..320 px, scores 0..1]) as one output: one int8 scale for both
# (~1.25) rounds every score to 0 or 1.25 while whole-tensor cosine stays 0.999 (issue #17). The recipe:
# the final Concat and the data movement between it, its inputs' producers and the output stay float,
# so each input keeps the int8 scale of its own range.
MIXED_RANGE_RATIO = 10.0
_MOVES = frozenset({"Reshape", "Transpose", "Squeeze", "Unsqueeze", "Flatten", "Identity", "Cast", "Expand",
                    "Slice", "Split", "Gather", "Tile", "DepthToSpace", "SpaceToDepth"})


def final_concats(proto: Any) -> list[dict[str, Any]]:
    """Concat nodes of the main graph whose output reaches a graph output through data movement only, with the
    data-movement nodes after them (to the output) and before each input (to its arithmetic producer)."""
    g = proto.graph
    producers = {o: n for n in g.node for o in n.output if o}
    out = []
    seen: set[int] = set()
    for o in g.output:
        chain_out: list[Any] = []
        node = producers.get(o.name)
        while node is not None and node.op_type in _MOVES and node.input:
            chain_out.append(node)
            node = producers.get(node.input[0])
        if node is None or node.op_type != "Concat" or id(node) in seen or len([x for x in node.input if x]) < 2:
            continue
        seen.add(id(node))
        inputs = {}
        for x in node.input:
            chain = []
            p = producers.get(x)
            while p is not None and p.op_type in _MOVES and p.input:
                chain.append(p)
                p = producers.get(p.input[0])
            inputs[x] = {"chain": chain, "producer": p}
        out.append({"concat": node, "output": o.name, "after": chain_out, "inputs": inputs})
    return out


def mixed_range_concats(proto: Any, feeds: list[dict[str, np.ndarray]], *, ratio: float = MIXED_RANGE_RATIO,
                        threads: int | None = None) -> list[dict[str, Any]]:
    """The final Concats whose inputs' calibrated ranges (largest magnitude) differ by more than ``ratio``, and the
    nodes to keep in float for each (the Concat and the data movement around it). Returns
    ``[{"concat", "output", "ranges": {input: max |x|}, "ratio", "keep_float": [names], "unnamed": n}]``."""
    found = final_concats(proto)
    if not found or not feeds:
        return []
    inits = {i.name for i in proto.graph.initializer}
    names = [x for x in dict.fromkeys(x for f in found for x in f["inputs"]) if x not in inits]
    ranges = _ranges(_session(with_outputs(proto, names), threads), feeds, names)
    out = []
    for f in found:
        mags = {x: max(abs(ranges[x][0]), abs(ranges[x][1])) for x in f["inputs"] if x in ranges}
        live = [m for m in mags.values() if m > 0]
        if len(live) < 2 or max(live) / min(live) <= ratio:
            continue
        nodes = [f["concat"], *f["after"], *(n for i in f["inputs"].values() for n in i["chain"])]
        out.append({"concat": f["concat"].name or "<Concat>", "output": f["output"],
                    "ranges": {k: round(v, 6) for k, v in mags.items()}, "ratio": round(max(live) / min(live), 2),
                    "keep_float": [n.name for n in nodes if n.name],
                    "unnamed": sum(1 for n in nodes if not n.name)})
    return out
