"""The TFLite tracer (``edgeconv debug layers`` on a ``.tflite``; docs/debug.md).

The names come from the exporter's own mapping (``<stem>.onnx_nodes.json`` beside the ``.tflite``, written by
``export._write_node_map`` from onnx2tf's Keras layers; the same map keep_float and the kernel-failure messages use):
each op of the main subgraph lists the ONNX nodes it computes. A group of ONNX nodes fused into one op is matched to
the output of its last node (graph order); when several ops compute the same last node (a PAD before a CONV_2D, a
TRANSPOSE that restores the layout) the last op whose output fits the ONNX tensor's shape is read.

The interpreter runs with ``experimental_preserve_all_tensors`` and LiteRT's builtin kernels: the XNNPACK delegate
computes its part of the graph as one node and keeps its tensors to itself (the notes say so). onnx2tf's tensors are
channels-last (NHWC) where the ONNX ones are NCHW: the map says so and the core transposes them back; int8 tensors
are dequantized with their own scale and zero point. LiteRT cannot feed an op the reference's inputs: no isolated
trace.

Imports only ``edgeconv.plugin`` from edgeconv, and this plugin's own flatbuffer reader.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

_CHANNELS_LAST = {3: (0, 2, 1), 4: (0, 3, 1, 2), 5: (0, 4, 1, 2, 3)}


def node_map(path: Path) -> dict[str, Any]:
    """The exporter's op -> ONNX nodes map beside the .tflite (``BadInput`` when there is none)."""
    from edgeconv.plugin import BadInput

    from .tflite_file import NODE_MAP_SUFFIX

    sidecar = path.with_name(path.stem + NODE_MAP_SUFFIX)
    try:
        data = json.loads(sidecar.read_text())
        ops = data["ops"]
        if not isinstance(ops, dict):
            raise TypeError("ops is not an object")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise BadInput(f"the .tflite has no readable ONNX node map ({sidecar.name}: {type(exc).__name__}): it was "
                       "made from a TF/Keras source or by an older edgeconv, and its ops cannot be named",
                       file=path, stage="debug") from None
    return ops


def _shapes(reference: Any) -> dict[str, list[int]]:
    """Static shapes of the reference's tensors (shape inference on a copy; unknown ones left out)."""
    import onnx

    try:
        inferred = onnx.shape_inference.infer_shapes(reference)
    except Exception:  # noqa: BLE001 - shapes are a help for the layout, never a reason to fail
        return {}
    out = {}
    for vi in (*inferred.graph.value_info, *inferred.graph.output):
        dims = vi.type.tensor_type.shape.dim
        if dims and all(d.HasField("dim_value") for d in dims):
            out[vi.name] = [int(d.dim_value) for d in dims]
    return out


def points(ops: list[dict[str, Any]], mapping: dict[str, list[str]], reference: Any
           ) -> dict[str, tuple[int, dict[str, Any]]]:
    """Reference tensor -> (tensor index in the main subgraph, map entry): each op's last ONNX node's output."""
    order = {n.name: i for i, n in enumerate(reference.graph.node) if n.name}
    first_out = {n.name: n.output[0] for n in reference.graph.node if n.name and n.output}
    shapes = _shapes(reference)
    found: dict[str, tuple[int, dict[str, Any]]] = {}
    for op in ops:
        if op["subgraph"] != 0 or not op["outputs"] or op["outputs"][0] is None:
            continue
        nodes = [n for n in mapping.get(f"0:{op['index']}") or [] if n in order]
        if not nodes:
            continue
        last = max(nodes, key=order.__getitem__)
        ref, out = first_out[last], op["outputs"][0]
        want = shapes.get(ref)
        have = list(out["shape"])
        layout = None
        perm = _CHANNELS_LAST.get(len(have))
        if want is not None:
            fits_last = perm is not None and [have[p] for p in perm] == want
            if have != want and not fits_last and len(have) == len(want):
                continue  # not this tensor's shape (an op inside the group)
            layout = "channels_last" if fits_last else None
        elif len(have) in (4, 5):
            layout = "channels_last"  # onnx2tf's convention for images
        found[ref] = (out["index"], {"name": out["name"], "op": f"{op['op']} (op {op['index']})",
                                      "fused": [n for n in nodes if n != last], "layout": layout})
    return found


class TFLiteTracer:
    name = "litert"
    isolated = False

    def unavailable(self, model: Any, options: dict[str, Any] | None = None) -> str | None:
        import importlib.util

        if importlib.util.find_spec("ai_edge_litert") is None:
            return "LiteRT (ai-edge-litert) is not installed"
        from .tflite_file import NODE_MAP_SUFFIX

        path = Path(model.path)
        if not path.with_name(path.stem + NODE_MAP_SUFFIX).is_file():
            return ("the .tflite has no ONNX node map beside it (made from a TF/Keras source, or by an older "
                    "edgeconv): its ops cannot be named after the source's nodes")
        return None

    def trace(self, model: Any, reference: Any, feeds: list[dict[str, Any]], *, options: dict[str, Any] | None = None,
              threads: int | None = None, golden: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        import numpy as np
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

        from edgeconv.plugin import BadInput

        from . import tflite_file
        from .quiet import native_output

        if golden is not None:
            raise BadInput("LiteRT cannot run an op on the reference's inputs (no isolated trace)", stage="debug")
        path = Path(model.path)
        found = points(tflite_file.op_table(path), node_map(path), reference)
        with native_output(stdout=False):
            interp = Interpreter(model_path=str(path), num_threads=threads or 1,
                                 experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
                                 experimental_preserve_all_tensors=True)
            interp.allocate_tensors()
        details = {d["index"]: d for d in interp.get_tensor_details()}
        inputs = _inputs(interp, dict((options or {}).get("tensor_names") or {}))
        runs = []
        for feed in feeds:
            for name, idx in inputs.items():
                interp.set_tensor(idx, np.ascontiguousarray(feed[name]))
            interp.invoke()
            runs.append({ref: np.array(interp.get_tensor(idx)) for ref, (idx, _) in found.items()})
        mapping = {ref: {**entry, **_quantization(details.get(idx))} for ref, (idx, entry) in found.items()}
        from importlib.metadata import version

        return {"runtime": f"ai_edge_litert {version('ai-edge-litert')} (builtin kernels, every tensor kept)",
                "tensors": runs, "map": mapping,
                "notes": [f"{len(found)} .tflite tensors named through the exporter's ONNX node map",
                          "traced with LiteRT's builtin kernels: the XNNPACK delegate the runner uses by default keeps "
                          "its tensors to itself"]}


def _inputs(interp: Any, to_key: dict[str, str]) -> dict[str, int]:
    """Source input name -> tensor index, through the serving signature (``tensor_names``: source name -> key)."""
    sigs = interp.get_signature_list()
    if sigs:
        key = "serving_default" if "serving_default" in sigs else next(iter(sigs))
        ins = {k: d["index"] for k, d in interp.get_signature_runner(key).get_input_details().items()}
    else:
        ins = {d["name"]: d["index"] for d in interp.get_input_details()}
    back = {k: n for n, k in to_key.items()}
    return {back.get(k, k): idx for k, idx in ins.items()}


def _quantization(detail: dict[str, Any] | None) -> dict[str, Any]:
    """Dequantization of an integer tensor: its scales and zero points (per channel along ``axis``)."""
    if not detail:
        return {}
    import numpy as np

    q = detail.get("quantization_parameters") or {}
    scales = np.asarray(q.get("scales", []), dtype=np.float64)
    if not scales.size or np.dtype(detail["dtype"]).kind not in "iu":
        return {}
    zeros = np.asarray(q.get("zero_points", [0]), dtype=np.float64)
    return {"scale": scales.tolist() if scales.size > 1 else float(scales[0]),
            "zero_point": zeros.tolist() if zeros.size > 1 else float(zeros[0]),
            "axis": int(q.get("quantized_dimension", 0))}


TRACER = TFLiteTracer()
