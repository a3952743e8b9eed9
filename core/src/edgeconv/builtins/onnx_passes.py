"""ONNX passes: simplification (onnxslim), FP16, and INT8 with onnxruntime.quantization.

Each pass is ``run(model, job) -> (model, info)``; ``info`` goes into the report
(node counts before and after, the settings used).
"""

from __future__ import annotations

import contextlib
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

from edgeconv.plugin import (
    BadInput,
    Model,
    ToolchainFailed,
    did_you_mean,
    float_inputs,
    from_proto,
    import_ort_tools,
    iter_nodes,
    keep_float_option,
    mixed_range_concats,
    onnx_graphs,
    ort_tool_cwd,
    precision_share,
    share_failure,
)
from edgeconv.plugin import brief as _brief
from edgeconv.plugin import save_onnx as save


def _counts(proto) -> dict[str, Any]:
    return {"nodes": len(proto.graph.node), "initializers": len(proto.graph.initializer)}


def simplify(model: Model, job: Any) -> tuple[Model, dict[str, Any]]:
    """Constant folding, dead-node elimination and fusion (Conv+BN, Gemm, GELU...) with onnxslim."""
    import onnxslim

    before = _counts(model.obj)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            slim = onnxslim.slim(model.obj)
    except Exception as exc:
        job.warn(f"simplification failed ({_brief(exc)}); continuing with the graph as given")
        return model, {"before": before, "after": before, "skipped": _brief(exc)}
    if slim is None:
        job.warn("simplification returned no model; continuing with the graph as given")
        return model, {"before": before, "after": before, "skipped": "no result"}
    try:
        out = _result(slim, model, "onnxslim")
    except ToolchainFailed as exc:
        # onnxslim sometimes returns a graph the checker refuses (a required field dropped, nodes out of
        # order: 12 ONNX node tests that run as given). Simplification is an optimisation: keep the graph.
        job.warn(f"simplification produced an invalid model ({exc.cause}); continuing with the graph as given")
        return model, {"before": before, "after": before, "skipped": exc.cause}
    return out, {"before": before, "after": _counts(slim), "tool": f"onnxslim {onnxslim.__version__}"}


def _result(proto, src: Model, what: str) -> Model:
    """Wrap a pass's output as a Model (checked): an invalid result is the pass's failure."""
    try:
        out = from_proto(proto, None)
    except BadInput as exc:
        raise ToolchainFailed(f"{what} produced an invalid model: {exc.cause}", stage="optimize") from None
    out.io = _keep_io_names(src, out)
    return out


def _keep_io_names(src: Model, out: Model):
    """The contract of ``out``, with the source's layout/preprocessing notes kept."""
    from dataclasses import replace

    layouts = {t.name: t.layout for t in src.io.inputs}
    inputs = tuple(replace(t, layout=layouts.get(t.name, t.layout)) for t in out.io.inputs)
    return replace(out.io, inputs=inputs, preprocessing=dict(src.io.preprocessing))


# Ops of a model that is already quantized: onnxruntime's converters do not take it again (fp16 wrote an
# invalid graph, int8 raised a bare KeyError '140_scale' on ddddocr's common_old.onnx).
QUANTIZED_OPS = frozenset({
    "QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "MatMulInteger", "ConvInteger",
    "QLinearConv", "QLinearMatMul", "DynamicQuantizeMatMul", "DynamicQuantizeLSTM", "QGemm", "QAttention",
    "MatMulIntegerToFloat", "QLinearAdd", "QLinearMul", "QLinearSigmoid", "QLinearGlobalAveragePool",
})


def refuse_quantized(model: Model, what: str) -> None:
    """A clean refusal for a model that already holds quantized ops."""
    from edgeconv.plugin import iter_nodes

    found = sorted({n.op_type for n in iter_nodes(model.obj.graph) if n.op_type in QUANTIZED_OPS})
    if found:
        raise BadInput(
            f"the model is already quantized ({', '.join(found[:3])}{', ...' if len(found) > 3 else ''}): "
            f"{what} applies to float models; convert it at fp32, which keeps its quantization",
            file=model.path, stage="optimize",
        )


def to_fp16(model: Model, job: Any) -> tuple[Model, dict[str, Any]]:
    """Float16 weights and compute; inputs/outputs stay float32 unless ``fp16_io``."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    from .onnx_subgraphs import unique_initializer_names

    refuse_quantized(model, "fp16")

    keep_io = not job.options.get("fp16_io", False)
    keep = keep_float_names(model.obj, job)
    proto = onnx.ModelProto()
    proto.CopyFrom(model.obj)
    renamed = unique_initializer_names(proto)  # the converter asserts unique initializer names across subgraphs
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            half = convert_float_to_float16(proto, keep_io_types=keep_io, node_block_list=keep or None)
            # The converter appends its Cast nodes at the end: sort the graph again.
            from onnxruntime.transformers.onnx_model import OnnxModel

            sorter = OnnxModel(half)
            sorter.topological_sort()
            half = sorter.model
    except Exception as exc:
        raise ToolchainFailed(f"FP16 conversion failed: {_cause(exc)}", stage="optimize",
                              hint="run with --debug for the converter's traceback") from exc
    out = _result(half, model, "FP16 conversion")
    share = precision_share(out.obj, "fp16", keep)
    _check_share(share, job)
    types = Counter(i.data_type for g in onnx_graphs(half.graph) for i in g.initializer)
    return out, {
        "before": _counts(model.obj),
        "after": _counts(half),
        "io_float32": keep_io,
        "float16_initializers": types.get(10, 0),
        **({"keep_float": keep} if keep else {}),
        **({"subgraph_initializers_renamed": renamed} if renamed else {}),
        "precision_share": share,
    }


def _cause(exc: BaseException) -> str:
    """An exception as one line; one with no message (a bare ``assert``) says where it was raised and what failed."""
    text = _brief(exc)
    if str(exc).strip():
        return text
    import traceback

    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return text
    last = frames[-1]
    where = f"{Path(last.filename).parent.name}/{Path(last.filename).name}:{last.lineno}"
    return f"{type(exc).__name__} in {where}: {(last.line or '').strip()[:160]}"


class _Reader:
    """onnxruntime's CalibrationDataReader over a list of feeds."""

    def __init__(self, feeds: list[dict[str, Any]]) -> None:
        self._it = iter(feeds)

    def get_next(self):
        return next(self._it, None)


def _prepare(model: Model, job: Any, name: str) -> Path:
    """Write the model for the quantizer, through quant_pre_process when asked."""
    import_ort_tools()
    from onnxruntime.quantization.shape_inference import quant_pre_process

    work = Path(job.scratch)
    raw = work / f"_{name}_input.onnx"
    proto = model.obj
    if job.options.get("per_channel", True):
        proto = _opset_for_per_channel(proto, job)
        proto = _vector_gemm_biases(proto, job)
    save(proto, raw)
    if not job.options.get("pre_process", True):
        return raw
    pre = work / f"_{name}_pre.onnx"
    try:
        with warnings.catch_warnings(), ort_tool_cwd():
            warnings.simplefilter("ignore")
            quant_pre_process(str(raw.resolve()), str(pre.resolve()), skip_symbolic_shape=False)
    except Exception as exc:
        job.warn(f"quant_pre_process failed ({_brief(exc)}); quantizing without it")
        return raw
    return pre


def _vector_gemm_biases(proto, job: Any):
    """A copy whose Gemm biases of shape [1, N] are [N] (the same broadcast): onnxruntime's per-channel int32-bias
    check indexes the bias once per output channel and crashes on a 2-D one ("The truth value of an array ... is
    ambiguous"; tf2onnx and Keras exports write [1, N])."""
    from onnx import numpy_helper

    inits = {i.name: i for i in proto.graph.initializer}
    bad = [n for n in proto.graph.node if n.op_type == "Gemm" and len(n.input) > 2 and n.input[2] in inits
           and len(inits[n.input[2]].dims) == 2 and inits[n.input[2]].dims[0] == 1 and inits[n.input[2]].dims[1] > 1]
    if not bad:
        return proto
    import onnx

    out = onnx.ModelProto()
    out.CopyFrom(proto)
    inits = {i.name: i for i in out.graph.initializer}
    made: dict[str, str] = {}
    for node in out.graph.node:
        c = node.input[2] if node.op_type == "Gemm" and len(node.input) > 2 else None
        if c is None or c not in inits or list(inits[c].dims[:1]) != [1] or len(inits[c].dims) != 2:
            continue
        if c not in made:
            made[c] = f"{c}_vector"
            out.graph.initializer.append(numpy_helper.from_array(numpy_helper.to_array(inits[c]).reshape(-1), made[c]))
        node.input[2] = made[c]
    job.warn(f"{len(made)} Gemm bias(es) of shape [1, N] were given as [N] for per-channel int8 (onnxruntime's "
             "quantizer crashes on the 2-D form)")
    return out


PER_CHANNEL_OPSET = 13  # DequantizeLinear's ``axis`` (per-channel scales) arrived in opset 13


def _opset_for_per_channel(proto, job: Any):
    """An opset 13 copy of an older model: the quantizer writes per-channel DequantizeLinear nodes with
    ``axis`` whatever the model's opset, and an opset-11/12 model with them fails the checker (found on
    the PP-OCR det/cls models, opset 12/11)."""
    version = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), PER_CHANNEL_OPSET)
    if version >= PER_CHANNEL_OPSET:
        return proto
    from onnx import version_converter

    try:
        up = version_converter.convert_version(proto, PER_CHANNEL_OPSET)
    except Exception as exc:
        raise ToolchainFailed(
            f"per-channel int8 needs opset {PER_CHANNEL_OPSET}, and upgrading this opset-{version} model failed "
            f"({_brief(exc)}); -O per_channel=false quantizes per tensor without it",
            stage="optimize",
        ) from None
    job.warn(f"the model's opset {version} was upgraded to {PER_CHANNEL_OPSET} for per-channel int8 "
             "(DequantizeLinear's axis); -O per_channel=false keeps it")
    return up


def _qtype(name: str):
    from onnxruntime.quantization import QuantType

    return {"uint8": QuantType.QUInt8, "int8": QuantType.QInt8}[name]


def _load_quantized(path: Path, model: Model) -> Model:
    import onnx

    return _result(onnx.load(str(path)), model, "onnxruntime quantization")


def quantize_static(model: Model, job: Any) -> tuple[Model, dict[str, Any]]:
    """Static INT8 in QDQ format with a calibration set (onnxruntime.quantization).

    Defaults: per-channel int8 weights and uint8 activations (U8S8), after quant_pre_process
    (issue #2 reports U8S8 2-3x faster than S8S8 on ResNet-18 here; not re-measured by our benchmarks).
    On top of onnxruntime's quantizer: a final Concat of ranges that differ > 10x stays float with the data
    movement around it (``mixed_range_float``), ``If`` branches are quantized too (``onnx_subgraphs``), and
    the share of the MACs at int8 is measured (``precision_share``): under half is a failure, not "int8".
    """
    import onnx

    refuse_quantized(model, "int8")
    calib = job.calibration()
    limit = int(job.options.get("calib_limit") or 300)
    if len(calib) == 0:
        raise BadInput("the calibration set holds no samples", file=calib.source, stage="optimize")
    feeds = [feed for feed, _ in calib.feeds(model.io, limit=limit)]
    model = _named(model)
    keep = keep_float_names(model.obj, job)
    recipe = _mixed_range_recipe(model, job, feeds)
    floats = list(dict.fromkeys([*keep, *(n for r in recipe for n in r["keep_float"])]))
    src = _prepare(model, job, "int8")
    dst = Path(job.scratch) / "_int8.onnx"
    excluded = list(dict.fromkeys([*(job.options.get("nodes_to_exclude") or ()), *_with_fused_activations(model.obj, floats)]))
    settings = {
        "quant_format": "QDQ",
        "per_channel": bool(job.options.get("per_channel", True)),
        "activation_type": job.options.get("activation_type", "uint8"),
        "weight_type": job.options.get("weight_type", "int8"),
        "calibrate_method": job.options.get("calibrate_method", "minmax"),
        "calibration_samples": len(feeds),
        "nodes_to_exclude": excluded,
        "op_types": list(job.options.get("op_types") or ()),
        **({"keep_float": keep} if keep else {}),
    }

    def run(src_path: Path, dst_path: Path, reader_feeds: list[dict[str, Any]]) -> None:
        _ort_quantize_static(src_path, dst_path, reader_feeds, settings)
        if floats:
            proto = onnx.load(str(dst_path))
            settings["float_inputs_restored"] = settings.get("float_inputs_restored", 0) + float_inputs(
                proto, _with_fused_activations(model.obj, floats))
            onnx.save(proto, str(dst_path))

    run(src, dst, feeds)
    proto = onnx.load(str(dst))
    branches = _quantize_branches(onnx.load(str(src)), proto, feeds, run, job)
    out = _result(proto, model, "onnxruntime quantization")
    share = precision_share(out.obj, "int8", _deliberately_float(out.obj, excluded, settings["op_types"]))
    _check_share(share, job)
    ops = Counter(n.op_type for n in iter_nodes(out.obj.graph))
    return out, {
        "before": _counts(model.obj),
        "after": _counts(out.obj),
        "quantized_nodes": ops.get("DequantizeLinear", 0),
        "settings": settings,
        **({"mixed_range_float": recipe} if recipe else {}),
        **({"if_branches": branches} if branches else {}),
        "precision_share": share,
    }


def _ort_quantize_static(src: Path, dst: Path, feeds: list[dict[str, Any]], settings: dict[str, Any]) -> None:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat
    from onnxruntime.quantization import quantize_static as ort_quantize_static

    method = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
              "percentile": CalibrationMethod.Percentile}[settings["calibrate_method"]]
    try:
        with warnings.catch_warnings(), _quiet_root_logger():
            warnings.simplefilter("ignore")
            ort_quantize_static(
                str(src), str(dst), _Reader(feeds),
                quant_format=QuantFormat.QDQ,
                per_channel=settings["per_channel"],
                activation_type=_qtype(settings["activation_type"]),
                weight_type=_qtype(settings["weight_type"]),
                calibrate_method=method,
                nodes_to_exclude=settings["nodes_to_exclude"] or None,
                op_types_to_quantize=settings["op_types"] or None,
                extra_options={"CalibTensorRangeSymmetric": False},
            )
    except BadInput:
        raise
    except Exception as exc:
        raise _quantizer_error("quantize_static", exc, settings["per_channel"]) from exc


@contextlib.contextmanager
def _quiet_root_logger():
    """onnxruntime's quantizer logs its advice ("Please consider to run pre-processing ...") on the root logger,
    i.e. on the user's stderr; a branch quantized on its own gets it every time."""
    import logging

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def _quantizer_error(what: str, exc: BaseException, per_channel: bool) -> ToolchainFailed:
    """onnxruntime's quantizer crashing inside: the cause and the remedy when known (the traceback stays chained
    to the error, for --debug)."""
    text = _brief(exc)
    if per_channel and "truth value of an array" in text:
        return ToolchainFailed(
            f"onnxruntime {what} crashed on a per-channel weight ({text}): its int32-bias check indexes the bias "
            "once per output channel and breaks on a bias that is not one value per channel",
            stage="optimize",
            hint="-O per_channel=false quantizes the weights per tensor, which avoids it (--precision auto falls "
                 "back to other candidates by itself)")
    return ToolchainFailed(f"onnxruntime {what} failed: {text}", stage="optimize",
                           hint="run with --debug for the quantizer's traceback")


def _named(model: Model) -> Model:
    """Give the main graph's unnamed nodes a name (op type + index): nodes_to_exclude works by name."""
    proto = model.obj
    if all(n.name for n in proto.graph.node):
        return model
    from dataclasses import replace

    import onnx

    copy = onnx.ModelProto()
    copy.CopyFrom(proto)
    used = {n.name for n in iter_nodes(copy.graph) if n.name}
    for i, node in enumerate(copy.graph.node):
        if not node.name:
            name, k = f"{node.op_type}_{i}", 1
            while name in used:
                name, k = f"{node.op_type}_{i}_{k}", k + 1
            node.name = name
            used.add(name)
    return replace(model, obj=copy)


MIXED_RANGE_SAMPLES = 32  # calibration samples that measure the ranges of a final Concat's inputs


def _mixed_range_recipe(model: Model, job: Any, feeds: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The final Concats whose inputs' ranges differ > 10x: kept in float (``-O mixed_range_float=false``: not)."""
    if not job.options.get("mixed_range_float", True):
        return []
    found = mixed_range_concats(model.obj, feeds[:MIXED_RANGE_SAMPLES])
    for r in found:
        ranges = ", ".join(f"{k} up to {v:.3g}" for k, v in r["ranges"].items())
        job.warn(f"output {r['output']!r} concatenates ranges {r['ratio']:.0f}x apart ({ranges}): its Concat "
                 f"{r['concat']!r} and the data movement around it stay float, so that each part keeps its own int8 "
                 "scale (-O mixed_range_float=false quantizes it with one scale)")
    return found


def _quantize_branches(float_proto, proto, feeds, run, job: Any) -> list[dict[str, Any]]:
    """onnxruntime's quantizer leaves If branches float: quantize each one (``onnx_subgraphs``)."""
    from .onnx_subgraphs import quantize_if_branches

    try:
        done = quantize_if_branches(float_proto, proto, feeds, run, Path(job.scratch))
    except ToolchainFailed:
        raise
    except Exception as exc:
        job.warn(f"quantizing the If branches failed ({_brief(exc)}): they stay float")
        return [{"error": _brief(exc)}]
    if done:
        job.status(f"quantized {len(done)} If branch(es)")
    return done


def _deliberately_float(proto, names: list[str], op_types: list[str]) -> list[str]:
    """Nodes left float on request: by name (keep_float, nodes_to_exclude, the recipe), or by an ``op_types`` list
    that does not name their op."""
    out = list(names)
    if op_types:
        out += [n.name for n in iter_nodes(proto.graph) if n.name and n.op_type not in op_types]
    return out


def _check_share(share: dict[str, Any], job: Any) -> None:
    """Judge the share (``pass``/``reason`` in it), hand it to the exporter (the artifact's details, which the
    verdict reads: under half of the MACs at the precision asked for fails it, exit 1) and warn."""
    why = share_failure(share)
    share.update({"pass": why is None, "reason": why})
    if isinstance(getattr(job, "state", None), dict):
        job.state["onnx.precision_share"] = share  # ort_target.PRECISION_SHARE
    if why:
        job.warn(f"not {share['requested']}: {why}")


def quantize_dynamic(model: Model, job: Any) -> tuple[Model, dict[str, Any]]:
    """INT8 weights with activations quantized at run time: no calibration set needed."""
    from onnxruntime.quantization import quantize_dynamic as ort_quantize_dynamic

    refuse_quantized(model, "int8-dynamic")
    src = _prepare(model, job, "int8dyn")
    dst = Path(job.scratch) / "_int8dyn.onnx"
    settings = {
        "per_channel": bool(job.options.get("per_channel", True)),
        "weight_type": job.options.get("weight_type", "int8"),
        "nodes_to_exclude": list(job.options.get("nodes_to_exclude") or ()),
        "op_types": list(job.options.get("op_types") or ()),
    }
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ort_quantize_dynamic(
                str(src),
                str(dst),
                per_channel=settings["per_channel"],
                weight_type=_qtype(settings["weight_type"]),
                nodes_to_exclude=settings["nodes_to_exclude"] or None,
                op_types_to_quantize=settings["op_types"] or None,
            )
    except Exception as exc:
        raise _quantizer_error("quantize_dynamic", exc, settings["per_channel"]) from exc
    out = _load_quantized(dst, model)
    share = precision_share(out.obj, "int8-dynamic", _deliberately_float(out.obj, settings["nodes_to_exclude"],
                                                                        settings["op_types"]))
    _check_share(share, job)
    return out, {"before": _counts(model.obj), "after": _counts(out.obj), "settings": settings,
                 "precision_share": share}


# -- keep_float: nodes that stay in float in an INT8 model (edgeconv.sensitivity finds them) ---------
# onnxruntime's QDQ quantizer drops a Relu/Clip whose output it quantizes (the uint8 range clips
# instead); keeping the node after it in float must keep that activation too.
_FUSED_ACTIVATIONS = ("Relu", "Clip")


def keep_float_names(proto, job: Any) -> list[str]:
    """The ``keep_float`` option, checked against the graph's node names (a name that matches
    no node is an error naming it)."""
    names = keep_float_option(job.options)
    have = {n.name for n in proto.graph.node if n.name}
    for name in names:
        if name not in have:
            raise BadInput(f"keep_float: the model has no node {name!r}{did_you_mean(name, have)}", stage="optimize")
    return list(dict.fromkeys(names))


def _with_fused_activations(proto, keep: list[str]) -> list[str]:
    """``keep`` and the Relu/Clip nodes that produce a kept node's input."""
    if not keep:
        return []
    producers = {o: n for n in proto.graph.node for o in n.output}
    wanted = set(keep)
    out = list(keep)
    for node in proto.graph.node:
        if node.name in wanted:
            for x in node.input:
                p = producers.get(x)
                if p is not None and p.op_type in _FUSED_ACTIVATIONS and p.name and p.name not in out:
                    out.append(p.name)
    return out
