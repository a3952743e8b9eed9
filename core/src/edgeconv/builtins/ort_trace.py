"""The onnxruntime tracer (``edgeconv debug layers`` on an ``.onnx`` artifact; docs/debug.md).

An ONNX artifact keeps the reference's tensor names (the generic passes and onnxruntime's quantizer rename nothing
they keep), so the map is by name. What is read for a reference tensor ``T``:

- in a QDQ (int8) model, the output of the ``QuantizeLinear`` that quantizes ``T``: the uint8/int8 tensor the next
  layer really receives, dequantized with that node's scale and zero point. Exposing it keeps onnxruntime's int8
  fusions (DQ -> Conv -> Q becomes one QLinearConv whose output is that tensor): the traced model computes exactly
  what the artifact computes (checked: outputs bit-identical). Exposing the float ``T`` instead would stop the fusion;
- elsewhere ``T`` itself (fp32, and fp16 models, whose tensors are float16).

**Isolated** (``golden``): every consumer of a traced tensor reads a new graph input fed the reference's value (for a
QDQ tensor, the reference's value quantized with the artifact's own scale and zero point), so each node -- or each
group of nodes between two traced tensors (a fused Conv+BN, a Gemm made of MatMul+Add) -- runs alone on the
reference's inputs; one session runs them all.

Only ``edgeconv.plugin`` is imported from edgeconv; numpy, onnx and onnxruntime inside the functions.
"""

from __future__ import annotations

from typing import Any

from edgeconv.plugin import with_outputs

GOLDEN = "__edgeconv_golden"


def _init_values(proto: Any) -> dict[str, Any]:
    from onnx import numpy_helper

    values = {i.name: numpy_helper.to_array(i) for i in proto.graph.initializer}
    for node in proto.graph.node:
        if node.op_type == "Constant" and node.output:
            for a in node.attribute:
                if a.name == "value":
                    values[node.output[0]] = numpy_helper.to_array(a.t)
    return values


def points(proto: Any, reference: Any) -> dict[str, dict[str, Any]]:
    """Reference tensor name -> where the artifact holds it (``name``, ``op``, quantization), for every reference
    node output the artifact also computes."""
    import numpy as np

    produced = {t: n for n in proto.graph.node for t in n.output if t}
    consumers: dict[str, list[Any]] = {}
    for n in proto.graph.node:
        for t in n.input:
            consumers.setdefault(t, []).append(n)
    values = _init_values(proto)
    out: dict[str, dict[str, Any]] = {}
    for node in reference.graph.node:
        for t in node.output:
            if not t or t not in produced or node.op_type == "Constant":
                continue
            src = produced[t]
            entry: dict[str, Any] = {"name": t, "op": f"{src.op_type} {src.name}".strip()}
            q = next((c for c in consumers.get(t, []) if c.op_type == "QuantizeLinear" and c.input[0] == t), None)
            if q is not None and q.input[1] in values:
                scale = np.asarray(values[q.input[1]], dtype=np.float32)
                zero = values.get(q.input[2]) if len(q.input) > 2 and q.input[2] else np.zeros((), np.uint8)
                axis = next((a.i for a in q.attribute if a.name == "axis"), 1)
                entry.update(name=q.output[0], quantized_from=t, scale=scale.tolist(),
                             zero_point=np.asarray(zero).tolist(), zero_dtype=str(np.asarray(zero).dtype),
                             axis=int(axis))
            out[t] = entry
    return out


def _session(proto: Any, level: str, threads: int | None) -> Any:
    import onnxruntime as ort

    from edgeconv.plugin import BadInput, quiet_onnxruntime

    quiet_onnxruntime()
    so = ort.SessionOptions()
    so.log_severity_level = 3
    levels = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC", "extended": "ORT_ENABLE_EXTENDED"}
    so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, levels.get(level, "ORT_ENABLE_ALL"))
    if threads:
        so.intra_op_num_threads = int(threads)
    try:
        return ort.InferenceSession(proto.SerializeToString(), so, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - onnxruntime's own exception types
        raise BadInput(f"onnxruntime cannot load the artifact with its tensors exposed: "
                       f"{' '.join(str(exc).split())[:240]}", stage="debug") from None


def _to_artifact(value: Any, entry: dict[str, Any], dtype: Any) -> Any:
    """A reference tensor as the artifact holds it at its point: quantized with the artifact's scale, or cast."""
    import numpy as np

    if "scale" not in entry:
        return np.asarray(value).astype(dtype)
    info = np.iinfo(np.dtype(entry.get("zero_dtype") or dtype))
    scale = np.asarray(entry["scale"], dtype=np.float32)
    zero = np.asarray(entry["zero_point"], dtype=np.float32)
    if scale.ndim and scale.size > 1:
        shape = [1] * np.ndim(value)
        shape[int(entry.get("axis", 1)) % np.ndim(value)] = -1
        scale, zero = scale.reshape(shape), (zero.reshape(shape) if zero.ndim and zero.size > 1 else zero)
    return np.clip(np.round(np.asarray(value, np.float32) / scale) + zero, info.min, info.max).astype(dtype)


def _isolate(proto: Any, where: dict[str, dict[str, Any]], dtypes: dict[str, Any], have: set[str]
             ) -> tuple[Any, dict[str, tuple[str, dict[str, Any], Any]]]:
    """A copy in which every consumer of a traced point (and, for a QDQ point, every other consumer of the float
    tensor it quantizes) reads a new graph input instead: the golden feed. Returns it and, per new input, the
    reference tensor it gets, how to put it in the artifact's form and its dtype."""
    import numpy as np
    import onnx
    from onnx import helper

    m = onnx.ModelProto()
    m.CopyFrom(proto)
    inputs = {i.name for i in m.graph.input}
    cut: dict[str, tuple[str, str, dict[str, Any], Any]] = {}  # artifact tensor -> (new input, ref, entry, dtype)
    for ref, e in where.items():
        if e["name"] in inputs or ref not in have:  # a graph input, or no golden value (an integer tensor)
            continue
        cut[e["name"]] = (e["name"] + GOLDEN, ref, e, dtypes.get(e["name"], np.float32))
        if "quantized_from" in e and ref not in inputs:  # the float tensor's other readers (not its quantizer)
            cut.setdefault(ref, (ref + GOLDEN + "_float", ref, {}, np.float32))
    quantizers = {e["name"]: e["quantized_from"] for e in where.values() if "quantized_from" in e}
    for node in m.graph.node:
        for i, t in enumerate(node.input):
            if t not in cut:
                continue
            if node.op_type == "QuantizeLinear" and i == 0 and quantizers.get(node.output[0]) == t:
                continue  # the point's own quantizer keeps reading the artifact's float tensor
            node.input[i] = cut[t][0]
    used = {t for n in m.graph.node for t in n.input}
    feeds = {}
    for new, ref, entry, dtype in cut.values():
        if new in used:
            dt = np.dtype(dtype)
            m.graph.input.append(helper.make_tensor_value_info(new, helper.np_dtype_to_tensor_dtype(dt), None))
            feeds[new] = (ref, entry, dt)
    return m, feeds


class OrtTracer:
    name = "onnxruntime"
    isolated = True

    def unavailable(self, model: Any, options: dict[str, Any] | None = None) -> str | None:
        import importlib.util

        return None if importlib.util.find_spec("onnxruntime") else "onnxruntime is not installed"

    def trace(self, model: Any, reference: Any, feeds: list[dict[str, Any]], *, options: dict[str, Any] | None = None,
              threads: int | None = None, golden: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        import numpy as np
        import onnxruntime as ort

        from edgeconv.plugin import read_onnx

        proto = read_onnx(model.path)
        level = str((options or {}).get("graph_optimization") or "all")
        where = points(proto, reference)
        names = list(dict.fromkeys(e["name"] for e in where.values()))
        sess = _session(with_outputs(proto, names), level, threads)
        notes = [f"{len(where)} reference tensors found in the artifact by name"]
        runs: list[dict[str, Any]] = []
        if golden is None:
            for feed in feeds:
                got = dict(zip(names, sess.run(names, feed), strict=True))
                runs.append({ref: got[e["name"]] for ref, e in where.items()})
        else:
            first = dict(zip(names, sess.run(names, feeds[0]), strict=True))
            cut, golden_of = _isolate(proto, where, {k: np.asarray(v).dtype for k, v in first.items()}, set(golden[0]))
            sess = _session(with_outputs(cut, names), level, threads)
            for feed, gold in zip(feeds, golden, strict=True):
                extra = {new: _to_artifact(gold[ref], entry, dtype) for new, (ref, entry, dtype) in golden_of.items()}
                got = dict(zip(names, sess.run(names, {**feed, **extra}), strict=True))
                runs.append({ref: got[e["name"]] for ref, e in where.items()})
            notes.append(f"isolated: every traced tensor's readers fed the reference's value ({len(golden_of)} cuts)")
        return {"runtime": f"onnxruntime {ort.__version__} (graph optimization {level})", "tensors": runs,
                "map": where, "notes": notes}


TRACER = OrtTracer()
