"""The precision passes (form ``torch`` -> form ``torch``): each returns the torch form whose ``obj["module"]`` is
the ExportedProgram to lower (``kind="exported"``, as the core's torch importer names an ExportedProgram), with
``obj["precision"]`` saying what it holds. The exporter only lowers and serializes.

- ``executorch.fp16``: the module in float16, its float32 inputs cast to float16 at the entry and its float16
  outputs cast back to float32 at the exit, so the artifact keeps the source's IO contract. XNNPACK runs the
  float16 operators it supports (the two casts run on the portable kernels: the delegation report shows them).
- ``executorch.quantize_pt2e``: PT2E post-training quantization for XNNPACK: ``prepare_pt2e`` with
  ``XNNPACKQuantizer`` (symmetric int8, per-channel weights by default: ``get_symmetric_quantization_config``),
  calibrated on ``--calib`` through ``job.calibration()``, ``convert_pt2e``, exported again. Modules named by
  ``keep_float`` are left unannotated (keep.py).
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from edgeconv.plugin import BadInput, Model, ToolchainFailed, brief, keep_float_option, share_failure, share_record, to_debug_log

from . import capture

_WEIGHTED = ("conv1d", "conv2d", "conv3d", "convolution", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d",
             "linear", "addmm", "mm", "bmm", "matmul")


def to_fp16(model: Model, job: Any) -> tuple[Model, dict[str, Any]]:
    import copy

    import torch

    started = time.perf_counter()
    capture.exported(model, job)  # a TorchScript source is refused here, as in the pre-check
    example = capture.example_of(model)
    inner = copy.deepcopy(model.obj["runnable"]).to(torch.float16)  # a copy: the source is verified against
    try:
        ep = capture.export_program(torch, _float16_class()(inner), example)
    except Exception as exc:
        raise ToolchainFailed(f"torch.export cannot capture the float16 model: {brief(exc)}",
                              stage="optimize") from None
    out = _model(model, ep, inner, "fp16")
    return out, {"weights": "float16", "io": "float32 (cast at the edges)", "seconds": _since(started)}


def quantize_pt2e(model: Model, job: Any) -> tuple[Model, dict[str, Any]]:
    import numpy as np
    import torch

    with to_debug_log("torch"):  # torchao logs on torch's loggers when it is imported
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    from .keep import quantizer as make_quantizer

    started = time.perf_counter()
    ep = capture.exported(model, job)
    keep = job.state.get(capture.KEEP)
    if keep is None and keep_float_option(job.options):
        from .keep import resolve

        keep = resolve(keep_float_option(job.options), ep, job)
    modules = sorted(set((keep or {}).values()))
    per_channel = bool(job.options.get("per_channel", True))
    quantizer, record = make_quantizer(modules, per_channel)
    example = capture.example_of(model)
    prepared = prepare_pt2e(ep.module(), quantizer)
    data = job.calibration()
    limit = job.options.get("calib_limit")
    samples = 0
    t0 = time.perf_counter()
    with torch.no_grad():
        for feed, _ in data.feeds(model.io, limit=limit):
            prepared(*[torch.from_numpy(np.ascontiguousarray(feed[t.name])) for t in model.io.inputs])
            samples += 1
    if not samples:
        raise BadInput("the calibration set has no sample at the model's batch size", stage="optimize")
    calib_seconds = _since(t0)
    converted = convert_pt2e(prepared)
    try:
        qep = capture.export_program(torch, converted, example)
    except Exception as exc:
        raise ToolchainFailed(f"torch.export cannot capture the quantized model: {brief(exc)}",
                              stage="optimize") from None
    census = weighted_ops(qep)
    info: dict[str, Any] = {
        "quantizer": "XNNPACKQuantizer (PT2E)",
        "scheme": f"symmetric int8, {'per-channel' if per_channel else 'per-tensor'} weights, per-tensor activations",
        "calibration_samples": samples,
        "calibration_seconds": calib_seconds,
        "quantized_ops": census["quantized"],
        "float_ops": census["float"],
        "seconds": _since(started),
    }
    if keep:
        info["keep_float"] = list(keep)
        info["keep_float_modules"] = modules
        info["float_producers"] = record["float_producers"]
    if not census["quantized"]:
        job.warn("the quantizer annotated no weighted operator: the int8 program computes in float")
    share = weighted_share(census, modules, record.get("float_producers") or [] if keep else [])
    why = share_failure(share)
    share.update({"pass": why is None, "reason": why})
    job.state[SHARE] = share  # the exporter puts it in the artifact's details, which the verdict reads
    if why:
        job.warn(f"not int8: {why}")
    return _model(model, qep, converted, "int8"), info


SHARE = "executorch.precision_share"  # job.state key: the int8 pass's share, for the exporter


def weighted_share(census: dict[str, Any], kept_modules: list[str], producers: list[str]) -> dict[str, Any]:
    """The share of the weighted operators (conv, linear, matmul: where the MACs are) that read int8 weights, in
    the format of ``edgeconv.plugin.precision_share`` (basis: those operators, counted in the converted program).
    Operators of modules kept float on purpose (keep_float and the producers of their inputs) are counted apart."""
    floats = list(census["float"])
    on_purpose = {m for m in kept_modules} | {p.rsplit(" (", 1)[0] for p in producers}
    kept = [f for f in floats if f.rsplit(" (", 1)[0] in on_purpose]
    at = sum(census["quantized"].values())
    nodes = {"total": at + len(floats), "at_precision": at, "kept_float": len(kept), "in_subgraphs": 0,
             "in_subgraphs_at_precision": 0}
    count = {"nodes": nodes, "macs": dict.fromkeys(nodes, 0)}  # no MAC count here: the basis is the operators
    rest = [(0, f.rsplit(" (", 1)[0], f.rsplit(" (", 1)[-1].rstrip(")"), "") for f in floats if f not in kept]
    return share_record("int8", count, rest, {}, counted_in="the quantized ExportedProgram (PT2E), weighted ops")


def _float16_class() -> Any:
    import torch
    from torch.utils._pytree import tree_map

    class _Float16(torch.nn.Module):
        """float32 in, float16 inside, float32 out."""

        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, *args: Any) -> Any:
            args = tuple(a.to(torch.float16) if a.is_floating_point() else a for a in args)
            out = self.inner(*args)
            return tree_map(lambda y: y.to(torch.float32) if isinstance(y, torch.Tensor)
                            and y.dtype == torch.float16 else y, out)

    return _Float16


def weighted_ops(ep: Any) -> dict[str, Any]:
    """Weighted operators (conv, linear, matmul) of a converted program: how many read a dequantized int8
    weight, and which stay float (with their module path)."""
    quantized: Counter[str] = Counter()
    floating: list[str] = []
    for node in ep.graph.nodes:
        if node.op != "call_function":
            continue
        op = str(getattr(node.target, "__name__", node.target)).split(".")[0]
        if op not in _WEIGHTED or len(node.args) < 2:
            continue
        weight = node.args[1]
        producer = str(getattr(getattr(weight, "target", None), "__name__", getattr(weight, "target", "")))
        if "dequantize" in producer:
            quantized[op] += 1
        else:
            stack = list((node.meta.get("nn_module_stack") or {}).values())
            floating.append(f"{stack[-1][0] if stack else '(top level)'} ({op})")
    return {"quantized": dict(sorted(quantized.items())), "float": floating}


def _model(model: Model, ep: Any, runnable: Any, precision: str) -> Model:
    obj = {"module": ep, "runnable": runnable, "example": capture.example_of(model), "kind": "exported",
           "precision": precision}
    return Model(form="torch", io=model.io, path=model.path, obj=obj, meta=dict(model.meta))


def _since(t0: float) -> float:
    return round(time.perf_counter() - t0, 3)
