"""Operator pre-check against TensorRT's documented ONNX support (``data/onnx_operators.json``).

The table comes from onnx-tensorrt ``docs/operators.md`` (TensorRT 8.5 and 10.15) and
``docs/Changelog.md`` (which release added an op); the file names its sources. Checked per node,
subgraphs included, for the *target* TensorRT version (``-O target_trt``, default: the installed
version, else 10.3 = JetPack 6): an op that is not listed, listed N, added after the target
release, or from another domain than ai.onnx (needs a plugin) is a hard refusal naming the node.
Quantize/Dequantize nodes are checked for what TensorRT requires: INT8 data, zero point 0.
"""

from __future__ import annotations

import functools
import json
from importlib.resources import files
from typing import Any

from edgeconv.plugin import Unsupported, iter_nodes

from .versions import TrtVersion

TABLE = "onnx_operators.json"


@functools.lru_cache(maxsize=1)
def table() -> dict[str, Any]:
    return json.loads((files("edgeconv_tensorrt") / "data" / TABLE).read_text())


def supported(op_type: str, version: TrtVersion) -> tuple[bool, str]:
    """(supported, reason if not) for an ai.onnx op on TensorRT ``version``."""
    entry = table()["operators"].get(op_type)
    if entry is None:
        return False, "not in TensorRT's documented ONNX operator list"
    column = "trt8" if version.major < 10 else "trt10"
    added = entry.get("added")
    if added and version < TrtVersion.parse(added):
        return False, f"TensorRT supports it from {added} on (target {version.short})"
    if column == "trt8" and entry["trt8"] != "Y" and added and version >= TrtVersion.parse(added):
        return True, ""  # e.g. LayerNormalization: not in the 8.5 table, added in 8.6
    state = entry[column]
    if state == "Y":
        return True, ""
    return False, ("documented as not supported" if state == "N" else "not in TensorRT's documented operator list") + \
        f" by TensorRT {version.short}"


def restrictions(op_type: str, version: TrtVersion) -> str:
    entry = table()["operators"].get(op_type) or {}
    return entry.get("restrictions_trt8" if version.major < 10 else "restrictions_trt10", "")


def check_proto(proto, version: TrtVersion) -> list[Unsupported]:
    """Every node TensorRT ``version`` cannot parse, with the reason."""
    local = {(f.domain, f.name) for f in proto.functions}
    inits = {i.name: i for i in proto.graph.initializer}
    out: list[Unsupported] = []
    for node in iter_nodes(proto.graph):
        domain = "" if node.domain in ("", "ai.onnx") else node.domain
        name = node.name or f"<{node.op_type}>"
        if (node.domain, node.op_type) in local:
            continue  # a model-local function: the parser expands it (TensorRT 9.0+)
        if domain:
            out.append(Unsupported(name, f"{domain}::{node.op_type}",
                                   f"custom-domain op {domain}::{node.op_type}: TensorRT needs a plugin for it"))
            continue
        ok, reason = supported(node.op_type, version)
        if not ok:
            out.append(Unsupported(name, node.op_type, reason))
            continue
        if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            problem = _qdq_problem(node, inits)
            if problem:
                out.append(Unsupported(name, node.op_type, problem))
    return out


def _qdq_problem(node, inits) -> str:
    """TensorRT's Q/DQ: symmetric (zero point 0), INT8 quantized data (8.x/10.x tables: INT8/FP8/INT4)."""
    from onnx import TensorProto, numpy_helper

    zp_name = node.input[2] if len(node.input) > 2 else ""
    zp = inits.get(zp_name) if zp_name else None
    if zp is not None:
        arr = numpy_helper.to_array(zp)
        if arr.size and (arr != 0).any():
            return "zero point must be 0 (TensorRT quantizes symmetrically); re-quantize with symmetric activations"
        if zp.data_type not in (TensorProto.INT8, TensorProto.FLOAT8E4M3FN, TensorProto.INT4):
            kind = TensorProto.DataType.Name(zp.data_type)
            return f"{kind} quantization: TensorRT takes INT8 (signed, symmetric) Q/DQ"
    if node.op_type == "DequantizeLinear":
        x = inits.get(node.input[0])
        if x is not None and x.data_type in (TensorProto.INT32, TensorProto.UINT8):
            return (f"dequantizes a {TensorProto.DataType.Name(x.data_type)} tensor ({node.input[0]}): TensorRT's "
                    "DequantizeLinear takes INT8 (keep biases in float)")
    return ""


def graph_restrictions(proto, version: TrtVersion) -> dict[str, str]:
    """The documented restrictions of the op types this graph uses (for the report)."""
    ops = sorted({n.op_type for n in iter_nodes(proto.graph) if n.domain in ("", "ai.onnx")})
    return {op: r for op in ops if (r := restrictions(op, version))}



def precheck(model, job: Any = None) -> list[Unsupported]:
    """The target's pre-check hook: nodes TensorRT (the target version) cannot run."""
    from .prepare import target_version

    version = target_version((job.options if job is not None else {}).get("target_trt", "auto"))
    return check_proto(model.obj, version)
