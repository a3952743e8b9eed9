"""Operator pre-check against ATC's documented ONNX support (``data/onnx_operators.json``), and ATC's own
pre-check (``atc --mode=3``) when ATC is installed.

ATC parses a node with the parser registered for ``ai.onnx::<the model's opset>::<op type>`` (its error E19010
"No parser is registered for Op [name, optype [ai.onnx::11::Convx]]" names exactly that key). The table holds, per
op, the opsets of the parser registry (a dump from an installed CANN) and, where read, the opsets of the op's page
in the CANN 9.0 ONNX operator list, which win. Checked per node, subgraphs included:

- an ai.onnx op with no parser at the model's opset, or one its documented list leaves out (Resize at opset 13),
  is refused with the fix (re-export at another opset, AMCT instead of Q/DQ, ...);
- a model opset outside 8..18 is one problem for the whole graph (re-export at opset 11..17);
- ops of any other domain (com.microsoft, ai.onnx.ml, custom) are refused: ATC parses ai.onnx only;
- Resize's documented constraints: mode cubic is refused; scales/sizes that are not constants are refused after
  the optimize passes (the constant folding of onnx.simplify usually fixes them first); mode nearest with another
  nearest_mode than round_prefer_ceil is a warning (ATC implements round_prefer_ceil only).

``-O precheck=warn`` turns every refusal into a warning (ATC then decides), ``off`` skips the table.
"""

from __future__ import annotations

import functools
import json
import re
from importlib.resources import files
from pathlib import Path
from typing import Any

from edgeconv.plugin import ToolchainFailed, Unsupported, UnsupportedOperators, iter_nodes

TABLE = "onnx_operators.json"
# The ops of AMCT's deploy model (what the ascend.amct pass hands the exporter): ATC registers parsers for them under
# ai.onnx (the registry snapshot: ai.onnx::<opset>::AscendQuant ...), and the table leaves them out, so they are
# accepted only in a model the amct pass made.
AMCT_OPS = frozenset({"AscendQuant", "AscendDequant", "AscendDequantS16", "AscendRequant", "AscendRequantS16",
                      "AscendAntiQuant"})
REEXPORT = "re-export the model at an opset ATC parses, e.g. torch.onnx.export(..., opset_version=17), or convert " \
           "it with onnx.version_converter"


@functools.lru_cache(maxsize=1)
def table() -> dict[str, Any]:
    return json.loads((files("edgeconv_ascend") / "data" / TABLE).read_text(encoding="utf-8"))


def parse_ranges(text: str) -> set[int]:
    """``'8-9,11-16'`` -> {8, 9, 11, ..., 16}."""
    out: set[int] = set()
    for part in str(text or "").split(","):
        part = part.strip()
        if not part:
            continue
        lo, _, hi = part.partition("-")
        out.update(range(int(lo), int(hi or lo) + 1))
    return out


def _fmt(opsets: set[int]) -> str:
    if not opsets:
        return "none"
    values = sorted(opsets)
    runs, start, prev = [], values[0], values[0]
    for v in values[1:] + [None]:
        if v is not None and v == prev + 1:
            prev = v
            continue
        runs.append(f"{start}" if start == prev else f"{start}-{prev}")
        if v is not None:
            start = prev = v
    return ",".join(runs)


def supported(op_type: str, opset: int) -> tuple[bool, str]:
    """(supported, reason with the fix) for an ai.onnx op at the model's opset."""
    entry = table()["operators"].get(op_type)
    if entry is None:
        return False, f"{op_type} is not in ATC's ONNX operator list (no parser is registered for it)"
    hint = entry.get("hint")
    documented = entry.get("documented")
    opsets = parse_ranges(documented) if documented is not None else parse_ranges(entry.get("registered", ""))
    if opset in opsets:
        return True, ""
    if not opsets:
        return False, f"{op_type} is not in ATC's ONNX operator list" + (f"; fix: {hint}" if hint else "")
    where = "documented" if documented is not None else "registered"
    fix = hint or (f"re-export at opset {max(o for o in opsets if o <= 17) if any(o <= 17 for o in opsets) else max(opsets)}")
    return False, f"{op_type} at opset {opset}: ATC's {where} opsets are {_fmt(opsets)}; fix: {fix}"


def model_opset(proto) -> int | None:
    return next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)



def _attr(node, name: str, default: Any = None) -> Any:
    for a in node.attribute:
        if a.name == name:
            from onnx import helper

            value = helper.get_attribute_value(a)
            return value.decode() if isinstance(value, bytes) else value
    return default


def check_proto(proto, *, final: bool = False, amct: bool = False) -> list[Unsupported]:
    """Every node ATC cannot take per the table; ``final`` adds the checks that need folded constants; ``amct``: the
    model is AMCT's deploy model (its quantization ops are ATC's own)."""
    out: list[Unsupported] = []
    lo, hi = table()["opset_range"]
    opset = model_opset(proto)
    if opset is not None and not lo <= opset <= hi:
        out.append(Unsupported("<model>", f"opset {opset}",
                               f"the model's ai.onnx opset is {opset}; ATC's ONNX parser registers opsets {lo}..{hi} "
                               f"(CANN 7.0 guide: v9~v18); fix: {REEXPORT}"))
        opset_ok = False
    else:
        opset_ok = True
    local = {(f.domain, f.name) for f in proto.functions}
    consts = {i.name for i in proto.graph.initializer}
    consts |= {o for n in iter_nodes(proto.graph) if n.op_type == "Constant" for o in n.output}
    for node in iter_nodes(proto.graph):
        name = node.name or f"<{node.op_type}>"
        domain = "" if node.domain in ("", "ai.onnx") else node.domain
        if (node.domain, node.op_type) in local:
            out.append(Unsupported(name, f"{node.domain or 'ai.onnx'}::{node.op_type}",
                                   "a model-local ONNX function: ATC parses ai.onnx ops only; inline the function "
                                   "(onnx.inliner.inline_local_functions) before converting"))
            continue
        if domain:
            out.append(Unsupported(name, f"{domain}::{node.op_type}",
                                   f"custom-domain op {domain}::{node.op_type}: ATC parses ai.onnx ops only; export "
                                   "without runtime-specific contrib ops (e.g. skip onnxruntime graph optimisations)"))
            continue
        if amct and node.op_type in AMCT_OPS:
            continue
        if opset_ok:
            ok, reason = supported(node.op_type, opset)
            if not ok:
                out.append(Unsupported(name, node.op_type, reason))
                continue
        if node.op_type == "Resize":
            out += _resize(node, name, consts, final)
    return out


def _resize(node, name: str, consts: set[str], final: bool) -> list[Unsupported]:
    out = []
    mode = _attr(node, "mode", "nearest")
    if mode not in ("nearest", "linear"):
        out.append(Unsupported(name, "Resize", f"mode {mode!r}: ATC documents nearest and linear only; fix: export "
                                               "with mode='bilinear' (linear) or 'nearest'"))
    if mode == "nearest":
        nearest = _attr(node, "nearest_mode", "round_prefer_floor")
        if nearest != "round_prefer_ceil":
            out.append(Unsupported(name, "Resize", f"nearest_mode {nearest!r}: ATC implements nearest Resize as "
                                                   "round_prefer_ceil only (CANN 9.0 operator list); outputs may "
                                                   "differ from the source -- verification measures it",
                                   fallback=True))
    if final:
        sizes = [i for i in list(node.input)[2:4] if i]
        dynamic = [i for i in sizes if i not in consts]
        if dynamic:
            out.append(Unsupported(name, "Resize", f"its scales/sizes ({', '.join(dynamic)}) are computed in the "
                                                   "graph; ATC needs constants; fix: fold them (onnxsim, or keep "
                                                   "edgeconv's onnx.simplify pass on) or export with fixed sizes"))
    return out


def apply_mode(found: list[Unsupported], mode: str) -> list[Unsupported]:
    if mode == "off":
        return []
    if mode == "warn":
        for u in found:
            if not u.fallback:
                u.reason += " (-O precheck=warn: left to ATC)"
                u.fallback = True
    return found


def refuse(found: list[Unsupported], *, file: str | None, stage: str) -> None:
    """Raise the one-line refusal naming every node with its reason and fix (exit 4)."""
    hard = [u for u in found if not u.fallback]
    if hard:
        raise UnsupportedOperators("ascend", [(u.node, f"{u.op_type}: {u.reason}") for u in hard], file=file,
                                   stage=stage, hint="ATC's ONNX operator support and the fixes: docs/targets/ascend.md; "
                                                     "-O precheck=warn leaves the decision to ATC")


def precheck(model, job: Any = None) -> list[Unsupported]:
    """The target's pre-check hook (before the optimize passes).

    Returns the findings (``edgeconv inspect`` lists them). In a conversion (``job`` given) a refusal is raised
    here with each node's reason and fix, because the core's own message keeps only node names and op types.
    ATC's own pre-check (``atc --mode=3``) runs later, in the exporter, on the graph ATC will get.
    """
    opts = job.options if job is not None else {}
    found = apply_mode(check_proto(model.obj), str(opts.get("precheck") or "strict"))
    if job is None:
        return found
    refuse(found, file=model.meta.get("source_path"), stage="precheck")
    if not opts.get("soc_version"):
        from .atc import soc_required

        raise soc_required()
    if not opts.get("prepare_only"):  # before any work (the INT8 pass included): ATC must be here
        from . import cann
        from .atc import no_atc

        if cann.find_atc(opts.get("atc") or None) is None:
            raise no_atc(opts)
    return found


def atc_mode3(proto, sh, job, atc_path: str) -> list[Unsupported]:
    """``atc --mode=3`` (ATC's pre-check only; its result goes to --check_report) on the graph ATC will get."""
    import onnx

    from . import atc as atc_mod

    job.status("ATC pre-check (atc --mode=3)")
    scratch = Path(job.scratch)
    onnx_path = scratch / "_precheck.onnx"
    onnx.save(proto, str(onnx_path))
    settings = atc_mod.settings_from(job, sh, proto, aipp_conf=None)
    report = Path(job.workdir) / "atc_precheck.json"
    argv = settings.argv(str(onnx_path), str(scratch / "_precheck_out"), atc=atc_path, mode=3, check_report=str(report))
    log = Path(job.workdir) / "atc_precheck.log"
    result = atc_mod.run(argv, log, cwd=scratch, timeout=int(job.options.get("timeout") or 0) or None,
                         keep_log_at=atc_mod.failed_log_path(job, "atc-precheck"))
    found = parse_check_report(report)
    if not result["ok"]:
        nodes = parse_unsupported(result["output"])
        found += [Unsupported(n, t, f"ATC's pre-check: {result['codes'][0] if result['codes'] else 'failed'}")
                  for n, t in nodes.items()]
        if not found:
            raise ToolchainFailed(atc_mod.failure_message("ATC's pre-check (atc --mode=3)", result), stage="precheck",
                                  hint=atc_mod.code_hint(result["codes"]))
    return found


def parse_check_report(path: Path) -> list[Unsupported]:
    """Failing entries of ATC's check_result.json, read defensively (its format is not documented here)."""
    try:
        doc = json.loads(path.read_text(errors="replace"))
    except (OSError, ValueError):
        return []
    out: list[Unsupported] = []

    def walk(obj: Any) -> None:
        if isinstance(obj, dict):
            result = str(obj.get("result", obj.get("status", ""))).lower()
            if result and result not in ("success", "succeed", "pass", "passed", "ok") and (
                    "name" in obj or "type" in obj or "op_name" in obj):
                name = str(obj.get("name") or obj.get("op_name") or "<op>")
                kind = str(obj.get("type") or obj.get("op_type") or "?")
                reason = str(obj.get("reason") or obj.get("msg") or obj.get("message") or result)
                out.append(Unsupported(name, kind, f"ATC's pre-check: {' '.join(reason.split())[:200]}"))
            for v in obj.values():
                walk(v)
        elif isinstance(obj, list):
            for v in obj:
                walk(v)

    walk(doc)
    return out


# ATC's messages for operators it cannot take (patterns of Ascend's ait analyze tool, parser/atc.py).
_OP = r"[A-Za-z0-9\-_/.:]{0,100}"
_PATTERNS = (
    re.compile(rf"No parser is registered for Op \[({_OP}), optype \[({_OP})\]\]"),   # E19010
    re.compile(rf"IR for Op \[({_OP}), optype \[({_OP})\]\], is not registered"),    # EZ0501
    re.compile(rf"No supported Ops kernel and engine are found for \[({_OP})\], optype \[({_OP})\]"),  # EZ3003
)
_EZ3002 = re.compile(rf"Optype \[({_OP})\] of Ops kernel \[({_OP})\] is unsupported")


def parse_unsupported(text: str) -> dict[str, str]:
    """{node name: op type} from ATC's output (E19010, EZ0501, EZ3003; EZ3002 names only a type)."""
    nodes: dict[str, str] = {}
    for line in text.splitlines():
        for pattern in _PATTERNS:
            m = pattern.search(line)
            if m:
                nodes.setdefault(m.group(1), m.group(2))
        m = _EZ3002.search(line)
        if m:
            nodes.setdefault(f"<{m.group(1)}>", m.group(1))
    return nodes


def summary(found: list[Unsupported]) -> dict[str, Any]:
    t = table()
    return {"table": TABLE, "cann": t["cann"], "opset_range": t["opset_range"],
            "warnings": [{"node": u.node, "op_type": u.op_type, "reason": u.reason} for u in found if u.fallback]}
