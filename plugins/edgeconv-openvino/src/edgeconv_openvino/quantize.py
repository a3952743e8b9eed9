"""INT8 with NNCF post-training quantization, on the OpenVINO model.

``nncf.quantize`` on the calibration set (``job.calibration()``, at most ``subset_size``
samples), with:

- ``model_type``: ``auto`` picks ``TRANSFORMER`` when the graph has attention (a
  ``ScaledDotProductAttention`` op, or a ``MatMul`` of two activations such as Q·Kᵀ);
- ``preset``: ``auto`` leaves NNCF's choice (performance; mixed for transformers);
- ``bias_correction``: ``auto`` is NNCF's full bias correction for models below 1M
  parameters (seconds there; on the digits CNN it brought the INT8 accuracy drop from
  0.56 pp to 0) and its fast one above (on ResNet-18 full costs +20-40 % quantization time);
- an ignored scope by node names and/or op types (validated: a name that matches nothing
  is an error naming it);
- ``keep_float`` (ONNX node names, what ``--precision auto``'s layer search finds): mapped to the
  OpenVINO ops each node became (``onnx_to_ov_names``) and added to the ignored scope.

``nncf.quantize_with_accuracy_control`` replaces it when the job carries labelled
validation data and an accuracy budget (``job.data`` and ``job.budgets.max_accuracy_drop``,
read with ``getattr``: see docs/targets/openvino.md for the core fields this needs).
NNCF's progress bars and log lines are kept off stdout (which carries ``--json``).
"""

from __future__ import annotations

import contextlib
import io
import logging
import re
import time
from typing import Any

from edgeconv.plugin import BadInput, IOContract, ToolchainFailed, ToolchainMissing

from .convert import brief
from .precision import has_subgraphs
from .runner import device_family

NNCF_HINT = 'pip install "edgeconv[openvino]" (NNCF comes with the edgeconv-openvino plugin)'
SMALL_MODEL = 1_000_000  # parameters: below, bias_correction=auto uses NNCF's full bias correction
_PASS_THROUGH = {"Convert", "Reshape", "Transpose", "Squeeze", "Unsqueeze", "FakeQuantize", "FakeConvert"}


def parameters(ov_model: Any) -> int:
    """Floating-point constant elements: the model's parameter count."""
    n = 0
    for op in ov_model.get_ordered_ops():
        if op.get_type_name() == "Constant" and op.get_output_element_type(0).is_real():
            size = 1
            for d in op.get_output_shape(0):
                size *= d
            n += size
    return n


def _is_constant(value: Any) -> bool:
    node = value.get_node()
    while node.get_type_name() in _PASS_THROUGH and node.get_input_size() > 0:
        node = node.input_value(0).get_node()
    return node.get_type_name() == "Constant"


def has_attention(ov_model: Any) -> bool:
    """A ScaledDotProductAttention op, or a MatMul whose both operands are activations."""
    for op in ov_model.get_ordered_ops():
        kind = op.get_type_name()
        if kind == "ScaledDotProductAttention":
            return True
        if kind == "MatMul" and not any(_is_constant(op.input_value(i)) for i in range(2)):
            return True
    return False


def _target_device(nncf: Any, device: str) -> Any:
    return {"CPU": nncf.TargetDevice.CPU, "GPU": nncf.TargetDevice.GPU, "NPU": nncf.TargetDevice.NPU}.get(
        device_family(device), nncf.TargetDevice.ANY)


# NNCF's INFO lines worth keeping from an accuracy-controlled run (the rest is progress)
_CONTROL_LINES = ("Metric of", "Accuracy drop", "Algorithm completed", "The algorithm could not", "Maximum number",
                  "Reverted", "All layers have been checked")


@contextlib.contextmanager
def quiet_nncf(collected: list[str], keep_info: tuple[str, ...] = ()):
    """NNCF prints progress bars (rich, on stdout) and INFO lines (a stdout handler): keep
    stdout clean for ``--json``; warnings (and the INFO lines starting with ``keep_info``)
    are collected for the report instead."""
    logger = logging.getLogger("nncf")
    saved = (logger.level, [(h, h.level) for h in logger.handlers])

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            text = record.getMessage().strip()
            if record.levelno >= logging.WARNING or text.startswith(keep_info or ("\0",)):
                collected.append(" ".join(text.splitlines()[0].split())[:300] if text else "")

    collector = Collect(logging.INFO)
    for h in logger.handlers:
        h.setLevel(logging.CRITICAL + 1)
    logger.setLevel(logging.INFO if keep_info else logging.WARNING)
    logger.addHandler(collector)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        logger.removeHandler(collector)
        logger.setLevel(saved[0])
        for h, level in saved[1]:
            h.setLevel(level)


def settings(ov_model: Any, job: Any) -> dict[str, Any]:
    """The NNCF settings this job resolves to (``auto`` choices made), for the report."""
    opts = job.options
    model_type = opts.get("model_type", "auto")
    if model_type == "auto":
        model_type = "transformer" if has_attention(ov_model) else "none"
    bias = opts.get("bias_correction", "auto")
    n_params = parameters(ov_model)
    if bias == "auto":
        bias = "full" if n_params < SMALL_MODEL else "fast"
    control_flow = has_subgraphs(ov_model)
    if control_flow and bias != "none":
        # NNCF quantizes inside If bodies, but refuses to: "The BiasCorrection algorithm is not supported for
        # OpenVINO models with If operation" (nncf 3.4)
        job.warn(f"bias correction is off: NNCF does not run it on a model with {control_flow[0]}")
        bias = "none"
    keep, mapped = keep_float_names(ov_model, job)
    recipe, recipe_ops = mixed_range_names(ov_model, job)
    return {
        "model_type": model_type,
        "preset": opts.get("preset", "auto"),
        "bias_correction": bias,
        "subset_size": int(opts.get("subset_size") or 300),
        "ignored_names": list(dict.fromkeys([*(opts.get("ignored_names") or ()), *mapped, *recipe_ops])),
        **({"keep_float": keep, "keep_float_ov_names": mapped} if keep else {}),
        **({"mixed_range_float": recipe, "mixed_range_ov_names": recipe_ops} if recipe else {}),
        "ignored_types": list(opts.get("ignored_types") or ()),
        "target_device": device_family(opts.get("device") or "CPU"),
        "parameters": n_params,
    }


def quantize(ov_model: Any, io_contract: IOContract, job: Any) -> tuple[Any, dict[str, Any]]:
    """INT8 with NNCF; returns the quantized model and what was done (for the report)."""
    try:
        import nncf
    except ImportError:
        raise ToolchainMissing("INT8 for openvino needs NNCF, which is not installed", stage="export",
                               hint=NNCF_HINT) from None
    chosen = settings(ov_model, job)
    calib = job.calibration()
    items = [feed for feed, _ in calib.feeds(io_contract, limit=chosen["subset_size"])]
    if not items:
        raise BadInput("the calibration set yields no sample at the model's batch size", stage="export")
    kwargs: dict[str, Any] = {
        "subset_size": len(items),
        "target_device": _target_device(nncf, job.options.get("device") or "CPU"),
        "fast_bias_correction": chosen["bias_correction"] != "full",
    }
    if chosen["model_type"] == "transformer":
        kwargs["model_type"] = nncf.ModelType.TRANSFORMER
    if chosen["preset"] != "auto":
        kwargs["preset"] = {"performance": nncf.QuantizationPreset.PERFORMANCE,
                            "mixed": nncf.QuantizationPreset.MIXED}[chosen["preset"]]
    if chosen["ignored_names"] or chosen["ignored_types"]:
        kwargs["ignored_scope"] = nncf.IgnoredScope(names=chosen["ignored_names"], types=chosen["ignored_types"],
                                                    validate=True)
    if chosen["bias_correction"] == "none":
        from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters

        kwargs["advanced_parameters"] = AdvancedQuantizationParameters(disable_bias_correction=True)

    control = _accuracy_control(io_contract, job)
    messages: list[str] = []
    started = time.perf_counter()
    try:
        with quiet_nncf(messages, _CONTROL_LINES if control is not None else ()):
            if control is None:
                quantized = nncf.quantize(ov_model, nncf.Dataset(items), **kwargs)
            else:
                advanced = kwargs.pop("advanced_parameters", None)
                if advanced is not None:
                    kwargs["advanced_quantization_parameters"] = advanced
                quantized = nncf.quantize_with_accuracy_control(
                    ov_model, nncf.Dataset(items), nncf.Dataset(control["items"]), control["validate"],
                    max_drop=control["max_drop_pp"] / 100.0, drop_type=nncf.DropType.ABSOLUTE, **kwargs)
    except nncf.ValidationError as exc:  # e.g. an ignored name that matches no node
        raise BadInput(f"NNCF refused the settings: {brief(exc)}", stage="export") from None
    except Exception as exc:
        raise ToolchainFailed(f"NNCF quantization failed: {brief(exc)}", stage="export") from None
    fq = sum(op.get_type_name() == "FakeQuantize" for op in quantized.get_ordered_ops())
    if fq == 0:
        job.warn("NNCF inserted no quantizer: the INT8 model computes in float (nothing quantizable, or all ignored)")
    info: dict[str, Any] = {
        "tool": f"nncf {nncf.__version__}",
        "method": "nncf.quantize" if control is None else "nncf.quantize_with_accuracy_control",
        **chosen,
        "calibration_samples": len(items),
        "fake_quantize_nodes": fq,
        "seconds": round(time.perf_counter() - started, 3),
    }
    if control is not None:
        log = [m for m in messages if m.startswith(_CONTROL_LINES)]
        messages = [m for m in messages if m not in log]
        metrics = dict(re.findall(r"Metric of (\w+) model: ([0-9.eE+-]+)", " | ".join(log)))
        info["accuracy_control"] = {
            "max_drop_pp": control["max_drop_pp"], "validation_samples": control["samples"],
            "output": control["output"],
            "initial_accuracy": float(metrics["initial"]) if "initial" in metrics else None,
            "quantized_accuracy": float(metrics["quantized"]) if "quantized" in metrics else None,
            "reached": not any(m.startswith(("The algorithm could not", "All layers have been checked")) for m in log),
            "log": log,
        }
        if not info["accuracy_control"]["reached"]:
            job.warn(f"NNCF accuracy control could not keep the drop within {control['max_drop_pp']} pp")
    if messages:
        info["nncf_warnings"] = messages[:20]
    return quantized, info


def _accuracy_control(io_contract: IOContract, job: Any) -> dict[str, Any] | None:
    """Labelled validation data and the accuracy budget, when the job carries both."""
    data = getattr(job, "data", None)
    budgets = getattr(job, "budgets", None)
    max_drop = getattr(budgets, "max_accuracy_drop", None)
    if not job.options.get("accuracy_control", True) or data is None or max_drop is None:
        return None
    import numpy as np

    from edgeconv.plugin import load_dataset

    ds = load_dataset(data, io_contract, what="--data", seed=getattr(job, "seed", 0))
    if ds.labels is None:
        job.warn("--max-accuracy-drop without labels in --data: plain nncf.quantize was used "
                 "(accuracy control needs a labels array)")
        return None
    name = getattr(job, "label_output", None) or io_contract.outputs[0].name
    items = [(feed, ds.labels[sl]) for feed, sl in ds.feeds(io_contract)]

    def validate(compiled: Any, dataset: Any) -> tuple[float, list[float]]:
        port = next((p for p in compiled.outputs if name in p.get_names()), compiled.outputs[0])
        request = compiled.create_infer_request()
        per_item = []
        for feed, labels in dataset:
            scores = np.asarray(request.infer(feed)[port])
            labels = np.asarray(labels).reshape(-1)
            pred = scores.reshape(len(labels), -1).argmax(axis=1)
            per_item.append(float((pred == labels).mean()))
        return (float(np.mean(per_item)) if per_item else 0.0), per_item

    return {"items": items, "validate": validate, "max_drop_pp": float(max_drop), "samples": len(ds),
            "output": name}


# -- keep_float: ONNX node names -> OpenVINO op names for NNCF's IgnoredScope ---------------------
_NOT_OPS = {"Constant", "Parameter", "Result"}


def onnx_to_ov_names(onnx_graph: Any, ov_model: Any, nodes: list[str]) -> dict[str, list[str]]:
    """The OpenVINO ops each named ONNX node became, by friendly name.

    OpenVINO's ONNX frontend names an op after its ONNX node (``conv1``; helper ops
    ``conv1/WithoutBiases``) or after the node's output tensor (a Gemm's MatMul carries the output
    name); an op matches when its friendly name, the part before its first ``/``, or one of its
    output tensor names is the node's name or one of the node's outputs. Unnamed helper ops between
    a matched op and the rest of the graph (no tensor name, not matched to another node) belong
    to the same node.
    """
    by_name = {n.name: n for n in onnx_graph.node if n.name}
    keys: dict[str, set[str]] = {}
    owner: dict[str, str] = {}
    for n in onnx_graph.node:
        for k in {n.name, *n.output} - {""}:
            owner.setdefault(k, n.name)
    for name in nodes:
        node = by_name[name]
        keys[name] = {name, *node.output} - {""}
    ops = [op for op in ov_model.get_ordered_ops() if op.get_type_name() not in _NOT_OPS]
    out: dict[str, list[str]] = {name: [] for name in nodes}
    claimed: dict[int, str] = {}
    for op in ops:
        friendly = op.get_friendly_name()
        tensors = {t for port in op.outputs() for t in port.get_names()}
        for name, k in keys.items():
            if friendly in k or friendly.split("/")[0] in k or tensors & (k - {name}):
                out[name].append(friendly)
                claimed[id(op)] = name
                break
    # unnamed helper ops upstream of a matched op (e.g. a bias Add's Convolution, a reshape of the bias)
    for op in ops:
        name = claimed.get(id(op))
        if name is None:
            continue
        stack = [op]
        while stack:
            cur = stack.pop()
            for value in cur.input_values():
                prev = value.get_node()
                if prev.get_type_name() in _NOT_OPS or id(prev) in claimed:
                    continue
                names = {t for port in prev.outputs() for t in port.get_names()}
                friendly = prev.get_friendly_name()
                if names or owner.get(friendly.split("/")[0], name) != name:
                    continue
                claimed[id(prev)] = name
                out[name].append(friendly)
                stack.append(prev)
    return out


def keep_float_names(ov_model: Any, job: Any) -> tuple[list[str], list[str]]:
    """``-O keep_float`` (ONNX node names) and the OpenVINO op names NNCF is told to ignore."""
    from edgeconv.plugin import did_you_mean, keep_float_option

    keep = keep_float_option(job.options)
    if not keep:
        return [], []
    if job.precision != "int8":
        job.warn(f"keep_float applies to int8; {job.precision} computes every layer in float already")
        return keep, []
    model = getattr(job, "model", None)
    if model is None or model.form != "onnx":
        form = getattr(model, "form", "unknown")
        raise BadInput(f"keep_float names ONNX nodes, but this model reached OpenVINO as {form!r}: give OpenVINO "
                       "op names with -O ignored_names instead (or convert through ONNX: --via onnx)", stage="export")
    graph = model.obj.graph
    have = {n.name for n in graph.node if n.name}
    for name in keep:
        if name not in have:
            raise BadInput(f"keep_float: the model has no node {name!r}{did_you_mean(name, have)}", stage="export")
    mapped = onnx_to_ov_names(graph, ov_model, keep)
    for name, ops in mapped.items():
        if not ops:
            job.warn(f"keep_float: ONNX node {name!r} has no OpenVINO op of its own (folded or fused at conversion)")
    return keep, list(dict.fromkeys(op for ops in mapped.values() for op in ops))


# -- outputs that concatenate ranges (issue #17): the final Concat stays float -------------------------------------
MIXED_RANGE_SAMPLES = 32


def mixed_range_names(ov_model: Any, job: Any) -> tuple[list[dict[str, Any]], list[str]]:
    """The final Concats of ranges > 10x apart (``edgeconv.sensitivity.mixed_range_concats`` on the ONNX model,
    calibration samples) and the OpenVINO ops they became, for NNCF's ignored scope. NNCF places no quantizer on a
    Concat that only feeds an output (measured: the head model's scores keep their precision without this), but one
    that feeds a quantized op would get one scale for both ranges: kept float either way (``-O
    mixed_range_float=false``: not). Only for a model that reached OpenVINO as ONNX (the names are ONNX nodes')."""
    model = getattr(job, "model", None)
    if not job.options.get("mixed_range_float", True) or model is None or model.form != "onnx":
        return [], []
    from edgeconv.plugin import mixed_range_concats

    feeds = [feed for feed, _ in job.calibration().feeds(model.io, limit=MIXED_RANGE_SAMPLES)]
    found = mixed_range_concats(model.obj, feeds)
    if not found:
        return [], []
    names = [n for r in found for n in r["keep_float"]]
    mapped = onnx_to_ov_names(model.obj.graph, ov_model, names)
    for r in found:
        job.warn(f"output {r['output']!r} concatenates ranges {r['ratio']:.0f}x apart: its Concat {r['concat']!r} and "
                 "the data movement around it stay float (NNCF ignored scope), each part at its own int8 scale")
    return found, list(dict.fromkeys(op for ops in mapped.values() for op in ops))
