"""Operator pre-check: which nodes OpenVINO cannot convert, or the device cannot run.

Two questions, before any long work (quantization):

1. Can OpenVINO's frontend convert every node? ONNX: ``FrontEnd.convert_partially``
   leaves an ``ONNXFrameworkNode`` for each node it has no rule for; those are listed
   with the ONNX node's own name and op type. torch / tf: the conversion is attempted
   (and kept for the exporter when it succeeds); a failure's summary names the ops.
2. Can the device run every operation? ``Core.query_model(model, device)`` maps each
   supported node to a device; a node missing from the map is unsupported on it. With a
   HETERO/AUTO/MULTI device, a node that runs on a later device of the list is a
   fallback (a warning), not a refusal.

If the device is not on this host, (2) is skipped with a warning: the IR can still be
built, but not verified here.
"""

from __future__ import annotations

import contextlib
import re
import tempfile
from pathlib import Path
from typing import Any

from edgeconv.plugin import Model, ToolchainFailed, Unsupported, UnsupportedOperators

from . import convert
from .runner import available, device_family

_NOT_COMPUTE = {"Parameter", "Result", "Constant"}
# The frontend must outlive every model it produced: a framework node's type lives in the
# frontend's library, and touching one after the frontend is gone crashes the process.
_FRONTENDS: dict[str, Any] = {}


def _onnx_frontend() -> Any:
    if "onnx" not in _FRONTENDS:
        from openvino.frontend import FrontEndManager

        manager = FrontEndManager()
        _FRONTENDS["manager"] = manager
        _FRONTENDS["onnx"] = manager.load_by_framework("onnx")
    return _FRONTENDS["onnx"]


def precheck(model: Model, job: Any = None) -> list[Unsupported]:
    """``job`` is None when ``edgeconv inspect`` asks: a temporary folder stands in for its scratch."""
    with contextlib.ExitStack() as stack:
        scratch = Path(job.scratch) if job is not None else Path(
            stack.enter_context(tempfile.TemporaryDirectory(prefix="edgeconv-ov-")))
        found: list[Unsupported] = []
        try:
            found = _precheck(model, job, scratch)
            _refuse(found, job)
            return found
        finally:  # the partial model is gone by now: its ONNX input model may go too (before the folder)
            _FRONTENDS.pop("input_model", None)
            if job is None or any(not u.fallback for u in found):
                convert.forget()  # no exporter will reuse the file written for the check


def _refuse(found: list[Unsupported], job: Any) -> None:
    """Called by a conversion, hard refusals are raised here with their reasons as the hint (the core's message
    names the nodes only; the reason -- a rank to pin, an op with no rule -- is what the user acts on)."""
    hard = [u for u in found if not u.fallback]
    if hard and job is not None:
        reasons = list(dict.fromkeys(f"{u.node} ({u.op_type}): {u.reason}" for u in hard))
        raise UnsupportedOperators("openvino", [(u.node, u.op_type) for u in hard], stage="precheck",
                                   hint="; ".join(reasons[:3]))


def _precheck(model: Model, job: Any, scratch: Path) -> list[Unsupported]:
    import openvino as ov

    device = ((job.options if job is not None else {}) or {}).get("device") or "CPU"
    if model.form == "onnx":
        wrong = known_wrong(model.obj.graph)
        ov_model, missing = _onnx_partial(model, scratch)
        if missing or wrong:
            return missing + wrong
    else:
        try:
            ov_model, info = convert.to_ov(model, job, use_cache=False)
        except Exception as exc:
            found = convert.unsupported_from_error(str(exc))
            if found:
                return found
            raise ToolchainFailed(f"openvino.convert_model failed on the {model.form} model: {convert.brief(exc)}",
                                  stage="precheck") from None
        if job is not None:
            convert.remember(model, ov_model, info)
    core = ov.Core()
    if not available(core, device):
        if job is not None:
            job.warn(f"OpenVINO device {device} is not on this host (available: {', '.join(core.available_devices)}): "
                     "operator support on it was not checked, and the IR cannot be verified here")
        return []
    found = query(core, ov_model, device)
    if model.form == "onnx" and any(not u.fallback for u in found):
        # ops every device runs (Identity, Squeeze, If) refused: a node inside failed to convert (a Conv of unknown
        # rank in an If branch); the full conversion names it
        found = _real_causes(convert.onnx_file(model, scratch), model.obj, found)
    return found


def known_wrong(graph: Any) -> list[Unsupported]:
    """ONNX nodes this OpenVINO computes differently from the ONNX specification while agreeing with
    onnxruntime, the verification's reference -- so verification cannot notice: refused here.

    Measured by the operator coverage (docs/gen/operator_coverage.py, ONNX backend node tests).
    """
    import onnx
    from onnx import numpy_helper

    def attr(node: Any, name: str, default: Any) -> Any:
        return next((onnx.helper.get_attribute_value(a) for a in node.attribute if a.name == name), default)

    inits = {i.name: i for i in graph.initializer}
    inputs = {vi.name for vi in graph.input} - set(inits)
    out = []
    for node in graph.node:
        if node.op_type != "Resize" or node.domain not in ("", "ai.onnx"):
            continue
        if attr(node, "coordinate_transformation_mode", b"half_pixel") != b"align_corners":
            continue
        if attr(node, "mode", b"nearest") not in (b"linear", b"cubic"):
            continue
        scales = node.input[2] if len(node.input) > 2 and node.input[2] else None
        sizes = node.input[3] if len(node.input) > 3 and node.input[3] else None
        if scales in inits:
            down = bool((numpy_helper.to_array(inits[scales]) < 1).any())
        else:
            down = (scales or sizes) in inputs  # the caller's scales or sizes: may downsample
        if down:
            import openvino as ov

            out.append(Unsupported(node.name or f"<{node.op_type}>", node.op_type,
                                   f"OpenVINO {ov.__version__.split('-')[0]}'s Resize with align_corners and "
                                   "linear/cubic interpolation gives other values than ONNX's when it downsamples "
                                   "(test_resize_downsample_scales_*_align_corners), as onnxruntime does: "
                                   "verification could not notice"))
    return out


def query(core: Any, ov_model: Any, device: str) -> list[Unsupported]:
    """Nodes ``device`` cannot run (``Core.query_model``), fallbacks flagged."""
    supported = core.query_model(ov_model, device)
    family = device_family(device)
    first = device.split(":", 1)[1].split(",")[0] if ":" in device else None
    out = []
    for op in ov_model.get_ordered_ops():
        kind = op.get_type_name()
        if kind in _NOT_COMPUTE:
            continue
        name = op.get_friendly_name()
        where = supported.get(name)
        if where is None:
            out.append(Unsupported(name, kind, f"{device} has no implementation of {kind}-{op.get_type_info().version_id}"))
        elif family in ("HETERO", "AUTO", "MULTI") and first and where != first:
            out.append(Unsupported(name, kind, f"not supported on {first}; runs on {where}", fallback=True))
    return out


def _onnx_partial(model: Model, scratch: Path) -> tuple[Any, list[Unsupported]]:
    """The ONNX graph through ``convert_partially``: nodes without a conversion rule."""
    path = convert.onnx_file(model, scratch)
    fe = _onnx_frontend()
    try:
        loaded = fe.load(str(path))
        _FRONTENDS["input_model"] = loaded  # framework nodes point into it: keep it alive too
        partial = fe.convert_partially(loaded)
    except Exception as exc:
        found = convert.unsupported_from_error(str(exc))
        if found:
            return None, found
        raise ToolchainFailed(f"OpenVINO's ONNX frontend cannot read the model: {convert.brief(exc)}",
                              stage="precheck") from None
    # ONNX node names, by the tensors they produce (a framework node is named after its output)
    producer = {out: node for node in model.obj.graph.node for out in node.output}
    missing = []
    for op in partial.get_ordered_ops():
        if "FrameworkNode" not in op.get_type_name():
            continue
        attrs = op.get_attributes()
        op_type = str(attrs.get("ONNX_META_type", op.get_type_name()))
        domain = str(attrs.get("ONNX_META_domain", "") or "")
        tensors = [n for i in range(op.get_output_size()) for n in op.output(i).get_names()]
        node = next((producer[t] for t in tensors if t in producer), None)
        name = (node.name or node.output[0]) if node is not None else op.get_friendly_name()
        qualified = f"{domain}::{op_type}" if domain and domain != "ai.onnx" else op_type
        missing.append(Unsupported(name, qualified, f"OpenVINO's ONNX frontend has no conversion rule for {qualified}"))
    if missing:
        missing = _real_causes(path, model.obj, missing)
    return partial, missing


_NODE = re.compile(r"While validating ONNX node '<Node\((\w+)\): ([^>]*)>'")


def _real_causes(path: Path, proto: Any, missing: list[Unsupported]) -> list[Unsupported]:
    """The nodes whose conversion failed, named with the frontend's reason, in place of the framework nodes that
    merely surround them.

    ``convert_partially`` leaves a framework node for a node it has no rule for, but also for nodes whose
    conversion *failed* and for what depends on them: a ``Conv`` of unknown rank inside an ``If`` branch showed as
    "no conversion rule for Identity / Squeeze / If". A full ``convert`` says which node failed and why; its
    summary also lists the ops with no rule at all, which stay in the list."""
    fe = _onnx_frontend()
    try:
        fe.convert(fe.load(str(path)))
        return missing
    except Exception as exc:
        text = str(exc)
    failed = []
    for _op, msg in convert._DETAIL.findall(text):
        m = _NODE.search(msg)
        if not m:
            continue
        op_type, node = m.groups()
        lines = [ln.strip() for ln in msg.strip().splitlines() if ln.strip()]
        useful = [ln for ln in lines if not ln.startswith(("Check ", "Exception happened", "FrontEnd API failed", "While ",
                                                           "[ONNX Frontend]"))]
        why = (useful or lines or ["its conversion failed"])[-1][:200]
        node, holder = _find(proto.graph, node)
        reason = f"OpenVINO's ONNX frontend cannot convert it: {why}"
        if holder:
            reason += f" (it sits inside the subgraph of {holder})"
        if "rank" in why.lower():
            reason += "; pin the input shapes (--input-shape) so that its rank is known, or simplify the graph"
        failed.append(Unsupported(node, op_type, reason))
    if not failed:
        return missing
    no_rule = {o.strip() for kind, ops in convert._SUMMARY.findall(text) if kind.startswith("No") for o in ops.split(",")}
    kept = [u for u in missing if u.op_type.split("::")[-1] in no_rule or f"{u.op_type}-" in " ".join(no_rule)]
    return failed + kept


def _find(graph: Any, key: str, owner: str | None = None) -> tuple[str, str | None]:
    """The ONNX node OpenVINO calls ``key`` (its name, or its output's: the frontend uses either) and the control-flow
    node whose subgraph holds it (None: the main graph, or not found)."""
    for node in graph.node:
        if node.name == key or key in node.output:
            return node.name or key, owner
        for attr in node.attribute:
            for g in ([attr.g] if attr.type == 5 else []) + list(attr.graphs):
                name, found = _find(g, key, owner or f"{node.op_type} {node.name or node.output[0]!r}")
                if found:
                    return name, found
    return key, None
