"""The ``onnxruntime`` target: export, operator pre-check, and the deep environment check."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

from ..model import Model
from ..targets import Unsupported
from .onnx_import import iter_nodes, save


def export(model: Model, job: Any):
    """Write the optimised/quantized ONNX model: the artifact is the model itself."""
    import onnx
    import onnxruntime

    from ..pipeline import Artifact

    path = Path(job.workdir) / f"{job.stem}.onnx"
    files = save(model.obj, path)
    return Artifact(
        path=path,
        form="onnx",
        io=model.io,
        files=files,
        tools={"onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__},
        runner_options={"graph_optimization": job.options.get("graph_optimization", "all")},
    )


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


def precheck(model: Model, job: Any = None) -> list[Unsupported]:
    """Nodes with no CPU kernel in this onnxruntime for the model's opset.

    An op with no kernel that ONNX defines as a function (expanded by ORT) counts as
    supported, as do calls to the model's own local functions.
    """
    import onnx

    proto = model.obj
    opsets = {("" if o.domain in ("", "ai.onnx") else o.domain): o.version for o in proto.opset_import}
    local = {(f.domain, f.name) for f in proto.functions}
    table = _kernels()
    out = []
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



def doctor() -> dict[str, Any]:
    import onnx
    import onnxruntime

    return {
        "onnxruntime": onnxruntime.__version__,
        "onnx": onnx.__version__,
        "providers": onnxruntime.get_available_providers(),
        "device": onnxruntime.get_device(),
    }
