"""The ``onnxruntime`` target: export, operator pre-check, and the deep environment check."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

from edgeconv.plugin import Model, Unsupported, iter_nodes
from edgeconv.plugin import save_onnx as save

PRECISION_SHARE = "onnx.precision_share"  # job.state key the ONNX precision passes fill (onnx_passes)


def export(model: Model, job: Any):
    """Write the optimised/quantized ONNX model: the artifact is the model itself."""
    import onnx
    import onnxruntime

    from edgeconv.plugin import Artifact

    path = Path(job.workdir) / f"{job.stem}.onnx"
    files = save(model.obj, path)
    return Artifact(
        path=path,
        form="onnx",
        io=model.io,
        files=files,
        tools={"onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__},
        runner_options={"graph_optimization": job.options.get("graph_optimization", "all")},
        details=_details(job),
    )


def _details(job: Any) -> dict[str, Any]:
    """What the artifact computes at which precision: the share its precision pass measured (``onnx_passes``)."""
    share = (getattr(job, "state", None) or {}).get(PRECISION_SHARE)
    return {"precision_share": share} if share else {}


# Ops onnxruntime resolves while loading the graph, without a kernel (folded into initializers).
_GRAPH_LEVEL = {("", "Constant")}


@lru_cache(maxsize=1)
def _kernels() -> dict[tuple[str, str], list[tuple[int, int]]]:
    from onnxruntime.capi import _pybind_state as C

    table: dict[tuple[str, str], list[tuple[int, int]]] = {}
    for k in C.get_all_opkernel_def():
        if k.provider != "CPUExecutionProvider":
            continue
        domain = "" if k.domain in ("", "ai.onnx") else k.domain
        table.setdefault((domain, k.op_name), []).append(tuple(k.version_range))
    return table


def _attr(node: Any, name: str, default: Any = None) -> Any:
    import onnx

    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def _constant(graph: Any, name: str) -> Any:
    """The value of a tensor that is an initializer (or a Constant node's output) of ``graph``, else None."""
    from onnx import numpy_helper

    for init in graph.initializer:
        if init.name == name:
            return numpy_helper.to_array(init)
    for node in graph.node:
        if node.op_type == "Constant" and node.output and node.output[0] == name:
            value = _attr(node, "value")
            return numpy_helper.to_array(value) if value is not None else None
    return None


def _given(node: Any, i: int) -> bool:
    return len(node.input) > i and bool(node.input[i])


def known_wrong(node: Any, graph: Any) -> str | None:
    """Why this onnxruntime computes ``node`` differently from the ONNX specification, or None.

    Measured by the operator coverage (docs/gen/operator_coverage.py): ONNX backend node tests whose
    expected outputs onnxruntime 1.32 misses. Verification compares the artifact with the source *run
    by onnxruntime*, so on this target such a node is never noticed: the pre-check refuses it instead.
    """
    op = node.op_type
    if node.domain not in ("", "ai.onnx"):
        return None
    if op == "Attention" and _attr(node, "is_causal", 0) and len(node.output) > 3 and node.output[3]:
        return ("fills the causally masked positions of qk_matmul_output with -3.4e38 where ONNX specifies -inf "
                "(test_attention_4d_with_past_and_present_qk_matmul_bias_*_mask_causal)")
    if op == "DFT" and not _attr(node, "inverse", 0):
        return "its forward DFT misses the ONNX reference by up to 3.4e-4 in float32 (test_dft, test_dft_axis, test_dft_rfft)"
    if op == "MaxUnpool" and _given(node, 2):
        return "MaxUnpool with an output_shape input places the values wrongly (test_maxunpool_export_with_output_shape)"
    if op == "Dropout" and _given(node, 2):
        mode = _constant(graph, node.input[2])
        if mode is None or bool(mode):
            return ("Dropout in training mode is random: its output depends on the runtime's random draws and no "
                    "artifact can be verified against it (test_training_dropout*)")
    if op == "Resize" and _resize_downsamples_align_corners(node, graph):
        return ("Resize with align_corners and linear/cubic interpolation gives other values than ONNX's when it "
                "downsamples (test_resize_downsample_scales_*_align_corners)")
    return None


def _resize_downsamples_align_corners(node: Any, graph: Any) -> bool:
    if _attr(node, "coordinate_transformation_mode", b"half_pixel") != b"align_corners":
        return False
    if _attr(node, "mode", b"nearest") not in (b"linear", b"cubic"):
        return False
    inputs = {vi.name for vi in graph.input}
    if _given(node, 2):
        scales = _constant(graph, node.input[2])
        if scales is not None:
            return bool((scales < 1).any())
        return node.input[2] in inputs  # the caller's scales: may downsample
    return _given(node, 3) and node.input[3] in inputs  # the caller's sizes: may downsample


def precheck(model: Model, job: Any = None) -> list[Unsupported]:
    """Nodes with no CPU kernel in this onnxruntime for the model's opset, and nodes this onnxruntime
    is known to compute differently from the ONNX specification (``known_wrong``).

    An op with no kernel that ONNX defines as a function (expanded by ORT) counts as
    supported, as do calls to the model's own local functions.
    """
    import onnx

    proto = model.obj
    opsets = {("" if o.domain in ("", "ai.onnx") else o.domain): o.version for o in proto.opset_import}
    local = {(f.domain, f.name) for f in proto.functions}
    table = _kernels()
    out = []
    import onnxruntime

    for graph in _graphs(proto.graph):
        for node in graph.node:
            why = known_wrong(node, graph)
            if why:
                out.append(Unsupported(node.name or f"<{node.op_type}>", node.op_type,
                                       f"onnxruntime {onnxruntime.__version__} {why}"))
    for node in iter_nodes(proto.graph):
        domain = "" if node.domain in ("", "ai.onnx") else node.domain
        if (domain, node.op_type) in local or (domain, node.op_type) in _GRAPH_LEVEL:
            continue
        version = opsets.get(domain, 1)
        since = version
        schema = None
        try:
            schema = onnx.defs.get_schema(node.op_type, version, domain)
            since = schema.since_version
        except Exception:
            pass
        ranges = table.get((domain, node.op_type), [])
        if any(lo <= since <= hi for lo, hi in ranges):
            continue
        if schema is not None and (schema.has_function or schema.has_context_dependent_function):
            continue
        reason = (
            f"no CPU kernel for {domain or 'ai.onnx'}::{node.op_type} version {since}"
            if ranges
            else f"onnxruntime has no kernel for {domain or 'ai.onnx'}::{node.op_type}"
        )
        out.append(Unsupported(node.name or f"<{node.op_type}>", node.op_type, reason))
    return out



def _graphs(graph: Any):
    """``graph`` and every subgraph (If/Loop/Scan bodies)."""
    yield graph
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == 5:  # AttributeProto.GRAPH
                yield from _graphs(attr.g)
            for g in attr.graphs:
                yield from _graphs(g)


def doctor() -> dict[str, Any]:
    import onnx
    import onnxruntime

    return {
        "onnxruntime": onnxruntime.__version__,
        "onnx": onnx.__version__,
        "providers": onnxruntime.get_available_providers(),
        "device": onnxruntime.get_device(),
    }
