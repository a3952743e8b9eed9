"""The work behind the ``example`` target: pre-check, export and the deep environment check.

Imported only when a conversion (or ``edgeconv doctor``) runs.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import onnx
from onnx import version_converter

from edgeconv.plugin import BadInput, Unsupported

_NO_ADAPTER = re.compile(r"No Adapter (?:From|To) Version \$?(\d+) for (\w+)")


def target_opset(job: Any) -> int:
    """The ``opset`` option, checked against what this onnx knows."""
    opset, newest = int(job.options["opset"]), onnx.defs.onnx_opset_version()
    if not 7 <= opset <= newest:
        raise BadInput(f"option opset={opset} for target 'example' must be between 7 and {newest}", stage="options")
    return opset


def source_opset(model: onnx.ModelProto) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 1)


def convert(model: onnx.ModelProto, opset: int) -> onnx.ModelProto:
    """The transformation: ``onnx.version_converter`` to ``opset``, then the full checker."""
    converted = version_converter.convert_version(model, opset)
    onnx.checker.check_model(converted, full_check=True)
    return converted


def precheck(model: Any, job: Any) -> list[Unsupported]:
    """Nodes this target cannot write at the requested opset: an operator that does not exist
    yet at that opset, or one the version converter has no adapter for."""
    opset, proto = target_opset(job), model.obj
    nodes = [n for n in proto.graph.node if n.domain in ("", "ai.onnx")]
    found = []
    for node in nodes:
        try:
            onnx.defs.get_schema(node.op_type, opset, "")
        except onnx.defs.SchemaError:
            found.append(Unsupported(node.name or node.op_type, node.op_type, f"{node.op_type} does not exist at opset {opset}"))
    if found:
        return found
    try:  # a trial run: cheap for the models this is for; a real backend would ask its compiler
        convert(proto, opset)
    except Exception as exc:
        m = _NO_ADAPTER.search(str(exc))
        if m is None:
            raise
        why = f"onnx.version_converter has no adapter from opset {m[1]} for {m[2]}"
        return [Unsupported(n.name or n.op_type, n.op_type, why) for n in nodes if n.op_type == m[2]]
    return []


def export(model: Any, job: Any):
    """Write ``<stem>.onnx`` into ``job.workdir`` at the requested opset."""
    from edgeconv.plugin import Artifact  # an edgeconv type: cheap, but only needed here

    opset = target_opset(job)
    converted = convert(model.obj, opset)
    path = Path(job.workdir) / f"{job.stem}.onnx"
    onnx.save(converted, str(path))
    return Artifact(
        path=path,
        form="onnx",
        io=model.io,  # same names, shapes, dtypes and layout: the contract does not change
        files=[path],
        tools={"onnx": onnx.__version__},
        details={"opset": {"from": source_opset(model.obj), "to": opset},
                 "converter": "onnx.version_converter.convert_version", "nodes": len(converted.graph.node)},
    )


def doctor() -> dict[str, Any]:
    """``edgeconv doctor``: what this host's onnx can write."""
    return {"onnx": onnx.__version__, "opsets": f"7 to {onnx.defs.onnx_opset_version()}"}
