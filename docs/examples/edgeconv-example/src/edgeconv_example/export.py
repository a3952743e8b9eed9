"""The work behind the ``example`` target: pre-check, the opset pass, export and the deep environment check.

Imported only when a conversion (or ``edgeconv doctor``) runs.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import onnx
from onnx import version_converter

from edgeconv.plugin import Artifact, BadInput, Model, Unsupported

_NO_ADAPTER = re.compile(r"No Adapter (?:From|To) Version \$?(\d+) for (\w+)")
STATE = "example.opset"  # this plugin's key in job.state: what the pass did, for the exporter


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


def to_opset(model: Any, job: Any) -> tuple[Model, dict[str, Any]]:
    """The ``example.opset`` pass: the model at the target's opset, and what it did (the report's ``passes``)."""
    opset, before = target_opset(job), source_opset(model.obj)
    converted = convert(model.obj, opset)
    job.state[STATE] = {"from": before, "to": opset}  # hand-off to the exporter: job.state, never a global
    out = Model(form="onnx", io=model.io, obj=converted, meta=dict(model.meta))  # same contract: names, shapes, dtypes
    return out, {"settings": {"opset": opset}, "from": before, "nodes": len(converted.graph.node)}


def export(model: Any, job: Any) -> Artifact:
    """Write ``<stem>.onnx`` into ``job.workdir``: the model the pass made, as it is."""
    path = Path(job.workdir) / f"{job.stem}.onnx"
    onnx.save(model.obj, str(path))
    return Artifact(
        path=path,
        form="onnx",
        io=model.io,  # the contract does not change
        files=[path],
        tools={"onnx": onnx.__version__},  # the versions your artifact depends on: the report's `versions`
        details={"opset": dict(job.state[STATE]), "converter": "onnx.version_converter.convert_version",
                 "nodes": len(model.obj.graph.node)},
    )


def doctor() -> dict[str, Any]:
    """``edgeconv doctor``: what this host's onnx can write."""
    return {"onnx": onnx.__version__, "opsets": f"7 to {onnx.defs.onnx_opset_version()}"}
