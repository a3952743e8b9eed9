"""ONNX passes: simplification (onnxslim), FP16, and INT8 with onnxruntime.quantization.

Each pass is ``run(model, job) -> (model, info)``; ``info`` goes into the report
(node counts before and after, the settings used).
"""

from __future__ import annotations

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
    keep_float_option,
    ort_tool_cwd,
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
    from onnxruntime.transformers.float16 import convert_float_to_float16

    refuse_quantized(model, "fp16")

    keep_io = not job.options.get("fp16_io", False)
    keep = keep_float_names(model.obj, job)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            half = convert_float_to_float16(model.obj, keep_io_types=keep_io, node_block_list=keep or None)
            # The converter appends its Cast nodes at the end: sort the graph again.
            from onnxruntime.transformers.onnx_model import OnnxModel

            sorter = OnnxModel(half)
            sorter.topological_sort()
            half = sorter.model
    except Exception as exc:
        raise ToolchainFailed(f"FP16 conversion failed: {_brief(exc)}", stage="optimize") from None
    out = _result(half, model, "FP16 conversion")
    types = Counter(i.data_type for i in half.graph.initializer)
    return out, {
        "before": _counts(model.obj),
        "after": _counts(half),
        "io_float32": keep_io,
        "float16_initializers": types.get(10, 0),
        **({"keep_float": keep} if keep else {}),
    }


class _Reader:
    """onnxruntime's CalibrationDataReader over a Dataset."""

    def __init__(self, dataset, io, limit: int) -> None:
        self._it = iter(dataset.feeds(io, limit=limit))

    def get_next(self):
        item = next(self._it, None)
        return None if item is None else item[0]


def _prepare(model: Model, job: Any, name: str) -> Path:
    """Write the model for the quantizer, through quant_pre_process when asked."""
    import_ort_tools()
    from onnxruntime.quantization.shape_inference import quant_pre_process

    work = Path(job.scratch)
    raw = work / f"_{name}_input.onnx"
    proto = model.obj
    if job.options.get("per_channel", True):
        proto = _opset_for_per_channel(proto, job)
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
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat
    from onnxruntime.quantization import quantize_static as ort_quantize_static

    refuse_quantized(model, "int8")
    calib = job.calibration()
    limit = int(job.options.get("calib_limit") or 300)
    if len(calib) == 0:
        raise BadInput("the calibration set holds no samples", file=calib.source, stage="optimize")
    src = _prepare(model, job, "int8")
    dst = Path(job.scratch) / "_int8.onnx"
    method = {
        "minmax": CalibrationMethod.MinMax,
        "entropy": CalibrationMethod.Entropy,
        "percentile": CalibrationMethod.Percentile,
    }[job.options.get("calibrate_method", "minmax")]
    keep = keep_float_names(model.obj, job)
    excluded = list(dict.fromkeys([*(job.options.get("nodes_to_exclude") or ()), *_with_fused_activations(model.obj, keep)]))
    settings = {
        "quant_format": "QDQ",
        "per_channel": bool(job.options.get("per_channel", True)),
        "activation_type": job.options.get("activation_type", "uint8"),
        "weight_type": job.options.get("weight_type", "int8"),
        "calibrate_method": job.options.get("calibrate_method", "minmax"),
        "calibration_samples": min(limit, len(calib)),
        "nodes_to_exclude": excluded,
        "op_types": list(job.options.get("op_types") or ()),
        **({"keep_float": keep} if keep else {}),
    }
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ort_quantize_static(
                str(src),
                str(dst),
                _Reader(calib, model.io, limit),
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
        raise ToolchainFailed(f"onnxruntime quantize_static failed: {_brief(exc)}", stage="optimize") from None
    if keep:
        import onnx

        proto = onnx.load(str(dst))
        settings["float_inputs_restored"] = float_inputs(proto, _with_fused_activations(model.obj, keep))
        onnx.save(proto, str(dst))
    out = _load_quantized(dst, model)
    ops = Counter(n.op_type for n in out.obj.graph.node)
    return out, {
        "before": _counts(model.obj),
        "after": _counts(out.obj),
        "quantized_nodes": ops.get("DequantizeLinear", 0),
        "settings": settings,
    }


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
        raise ToolchainFailed(f"onnxruntime quantize_dynamic failed: {_brief(exc)}", stage="optimize") from None
    out = _load_quantized(dst, model)
    return out, {"before": _counts(model.obj), "after": _counts(out.obj), "settings": settings}


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
