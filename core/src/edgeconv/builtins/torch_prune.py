"""Structured channel pruning of PyTorch models (torch-pruning), with an optional fine-tune.

::

    from edgeconv.prune import prune
    res = prune(model, 0.3, example_inputs, finetune=train_a_few_epochs, data=(x_test, y_test))
    res.module            # the pruned nn.Module (the input module is left untouched)
    res.report            # parameters, weight bytes, latency and accuracy before/after

``ratio`` is the fraction of channels removed from every prunable layer (torch-pruning's
``pruning_ratio``); a conv between two pruned layers loses ~1-(1-ratio)^2 of its weights,
so ``0.3`` removes about half of a CNN's parameters. Coupled channels (residual additions,
depthwise convs, BatchNorm) are pruned together by torch-pruning's dependency graph; the
layers that produce the model's outputs are never pruned, so the IO contract stays.

In a conversion the same step runs as a source option:
``convert(module, ..., source_options={"prune": 0.3, "finetune": fn, "prune_data": "test.npz"})``
(``edgeconv convert model.py:factory --prune 0.3 --data test.npz`` on the command line).
The pruned model is a different model from the source: the conversion's fidelity metrics
compare the artifact with the *pruned* torch model, and the pruning's own effect (accuracy
before/after on labelled data, parameters, weight bytes, eager latency) is reported in
``report["source"]["meta"]["prune"]``.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from edgeconv.plugin import BadInput, Model, ToolchainFailed, ToolchainMissing, check_ratio

HINT = 'pip install "edgeconv[torch]" (or: pip install torch-pruning==1.6.1)'

__all__ = ["PruneResult", "parse_ratio", "prune"]


@dataclass
class PruneResult:
    """The pruned module and what changed (``report``: JSON-ready)."""

    module: Any
    report: dict[str, Any] = field(default_factory=dict)


parse_ratio = check_ratio  # the core checks --prune before any work (edgeconv.request)


def prune(
    module: Any,
    ratio: float | str,
    example_inputs: Any,
    *,
    finetune: Callable[[Any], Any] | None = None,
    data: Any = None,
    ignored_layers: Sequence[Any] = (),
    round_to: int | None = None,
    runs: int = 20,
) -> PruneResult:
    """Prune ``ratio`` of the channels of every prunable layer of a copy of ``module``.

    ``example_inputs``: a tensor or a tuple of tensors the model runs on (traced once).
    ``finetune``: called as ``finetune(pruned_module)`` after pruning; it trains in place (or
    returns the trained module). Its wall time is reported. ``data``: labelled data for the
    accuracy before/after: ``(inputs, labels)`` (arrays or tensors; ``inputs`` may be a tuple
    for several inputs) or a ``edgeconv.data.Dataset`` with labels. ``ignored_layers``:
    modules (or their names) never to prune, in addition to the output layers.
    ``round_to``: keep channel counts multiples of this (e.g. 8 for NPUs that like it).
    ``runs``: eager latency runs (after 3 warm-up runs) before and after, batch of the example.
    """
    torch = _torch()
    tp = _torch_pruning()
    ratio = parse_ratio(ratio)
    if not isinstance(module, torch.nn.Module) or isinstance(module, torch.jit.ScriptModule):
        raise BadInput(f"pruning needs an nn.Module, not a {type(module).__name__} (TorchScript and "
                       "ExportedProgram sources cannot be pruned: give the model's factory)", stage="prune")
    example = tuple(example_inputs) if isinstance(example_inputs, (tuple, list)) else (example_inputs,)
    evaluate = _evaluator(data)

    if finetune is not None and not callable(finetune):
        raise BadInput(f"finetune must be callable (called as finetune(module)), not a {type(finetune).__name__}",
                       stage="prune")
    original = module.eval()
    keep = _ignored_names(original, ignored_layers)
    with torch.inference_mode():
        ref_out = _flat(original(*example))
    ref_shapes = [tuple(t.shape) for t in ref_out]
    before = _measure(original, example, evaluate, runs)

    started = time.perf_counter()
    # The layers that produce the outputs keep their channels. A head behind a non-parametric op (e.g.
    # softmax) is not found that way: when the output shape changed, retry keeping the last layer too.
    for keep_last in (False, True):
        pruned, ignored = _prune_copy(tp, original, example, ratio, keep, round_to, keep_last)
        with torch.inference_mode():
            shapes = [tuple(t.shape) for t in _flat(pruned(*example))]
        if shapes == ref_shapes:
            break
    else:
        raise ToolchainFailed(f"pruning changed the output shapes {ref_shapes} -> {shapes}; name the layers that "
                              "produce the outputs in ignored_layers (source option prune_ignore)", stage="prune")
    prune_s = time.perf_counter() - started
    ignored_names = [n for n, m in pruned.named_modules() if any(m is i for i in ignored)]

    pruned, tuned = _finetune(torch, pruned, finetune)
    after = _measure(pruned, example, evaluate, runs)

    report: dict[str, Any] = {
        "method": "torch-pruning MetaPruner, GroupMagnitudeImportance(p=2), structured channels",
        "ratio": ratio,
        "torch_pruning": _version(),
        "ignored_layers": ignored_names,
        "seconds": round(prune_s, 3),
        "finetune": tuned,
        "parameters": _pair(before["parameters"], after["parameters"]),
        "weights_bytes": _pair(before["weights_bytes"], after["weights_bytes"]),
        "latency_ms": {"before_p50": before["latency_p50"], "after_p50": after["latency_p50"],
                       "ratio": _ratio(after["latency_p50"], before["latency_p50"]), "runs": runs,
                       "runtime": f"torch {torch.__version__} eager, cpu, {torch.get_num_threads()} threads",
                       "input_shapes": [list(x.shape) for x in example]},
        "accuracy": None,
        "compared": ("parameters, weights and eager latency: unpruned vs pruned torch model; accuracy: both on the "
                     "labelled data. The conversion's fidelity metrics compare the artifact with the pruned model."),
    }
    if evaluate is not None:
        report["accuracy"] = {"before": before["accuracy"], "after": after["accuracy"],
                              "drop_pp": round((before["accuracy"] - after["accuracy"]) * 100, 4),
                              "samples": evaluate.samples}
    return PruneResult(pruned, report)


def _ignored_names(module: Any, ignored_layers: Sequence[Any]) -> list[str]:
    """``ignored_layers`` (modules or dotted names) as the model's module names; anything else is bad input."""
    names = {id(m): n for n, m in module.named_modules()}
    keep = [i if isinstance(i, str) else names.get(id(i)) for i in ignored_layers]
    known = set(names.values())
    if any(n is None or n not in known for n in keep):
        raise BadInput("ignored_layers must name modules of the model (a module or its dotted name)", stage="prune")
    return keep


def _finetune(torch: Any, pruned: Any, finetune: Callable[[Any], Any] | None) -> tuple[Any, dict[str, Any] | None]:
    """Run the user's fine-tuning callback on the pruned module (in place, or the module it returns), timed."""
    if finetune is None:
        return pruned, None
    started = time.perf_counter()
    returned = finetune(pruned)
    if isinstance(returned, torch.nn.Module):
        pruned = returned
    pruned.eval()
    return pruned, {"callback": getattr(finetune, "__qualname__", type(finetune).__name__),
                    "seconds": round(time.perf_counter() - started, 3)}


def _torch() -> Any:
    try:
        import torch
    except ImportError:
        raise ToolchainMissing("pruning needs PyTorch", stage="prune", hint=HINT) from None
    return torch


def _torch_pruning() -> Any:
    try:
        import torch_pruning
    except ImportError:
        raise ToolchainMissing("pruning needs torch-pruning, which is not installed", stage="prune", hint=HINT) from None
    return torch_pruning


def _pair(before: int, after: int) -> dict[str, Any]:
    return {"before": before, "after": after, "ratio": _ratio(after, before),
            "reduction": round(1 - after / before, 4) if before else None}


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 4) if a is not None and b else None


def _flat(out: Any) -> list[Any]:
    if isinstance(out, dict):
        return [y for v in out.values() for y in _flat(v)]
    if isinstance(out, (list, tuple)):
        return [y for x in out for y in _flat(x)]
    return [out]


def _prune_copy(tp: Any, original: Any, example: tuple, ratio: float, keep: list[str], round_to: int | None,
                keep_last: bool) -> tuple[Any, list[Any]]:
    """Prune a deep copy of ``original``; returns it and the modules left whole."""
    pruned = copy.deepcopy(original).eval()
    by_name = dict(pruned.named_modules())
    outputs, order = _output_layers(pruned, example)
    ignored = [by_name[n] for n in keep]
    for m in outputs + (order[-1:] if keep_last else []):
        if all(m is not i for i in ignored):
            ignored.append(m)
    try:
        pruner = tp.pruner.MetaPruner(
            pruned, example if len(example) > 1 else example[0],
            importance=tp.importance.GroupMagnitudeImportance(p=2), pruning_ratio=ratio,
            ignored_layers=ignored, round_to=round_to,
        )
        pruner.step()
    except Exception as exc:
        raise ToolchainFailed(f"torch-pruning failed on this model: {type(exc).__name__}: "
                              f"{' '.join(str(exc).split())[:240]}", stage="prune") from None
    return pruned.eval(), ignored


def _output_layers(module: Any, example: tuple) -> tuple[list[Any], list[Any]]:
    """Leaf modules with weights whose output *is* a model output (e.g. the classifier), and every
    leaf module with weights in the order the forward pass ran them."""
    torch = _torch()
    produced: list[tuple[Any, Any]] = []  # (tensor, module): holding the tensors keeps their identity unique
    hooks = []
    order: list[Any] = []

    def record(mod: Any, _inp: Any, out: Any) -> None:
        order.append(mod)
        produced.extend((t, mod) for t in _flat(out) if isinstance(t, torch.Tensor))

    for m in module.modules():
        if not list(m.children()) and any(True for _ in m.parameters(recurse=False)):
            hooks.append(m.register_forward_hook(record))
    try:
        with torch.no_grad():
            outs = _flat(module(*example))
    finally:
        for h in hooks:
            h.remove()
    found: list[Any] = []
    for t in outs:
        for tensor, m in produced:
            if tensor is t and all(m is not f for f in found):
                found.append(m)
    return found, order


def _count(module: Any) -> tuple[int, int]:
    params = sum(p.numel() for p in module.parameters())
    size = sum(t.numel() * t.element_size() for t in module.state_dict().values() if hasattr(t, "element_size"))
    return int(params), int(size)


def _measure(module: Any, example: tuple, evaluate: Any, runs: int) -> dict[str, Any]:
    import statistics

    torch = _torch()
    params, size = _count(module)
    times = []
    with torch.inference_mode():
        for i in range(3 + max(1, runs)):
            t0 = time.perf_counter()
            module(*example)
            if i >= 3:
                times.append((time.perf_counter() - t0) * 1e3)
    return {"parameters": params, "weights_bytes": size, "latency_p50": round(statistics.median(times), 4),
            "accuracy": evaluate(module) if evaluate is not None else None}


class _Evaluator:
    """Top-1 accuracy of a module on labelled inputs, in batches of 256."""

    def __init__(self, inputs: list[Any], labels: Any) -> None:
        self.inputs, self.labels = inputs, labels
        self.samples = int(len(labels))

    def __call__(self, module: Any) -> float:
        import numpy as np

        torch = _torch()
        hits = 0
        with torch.inference_mode():
            for s in range(0, self.samples, 256):
                batch = [torch.as_tensor(np.ascontiguousarray(x[s:s + 256])) for x in self.inputs]
                scores = _flat(module(*batch))[0]
                hits += int((scores.reshape(scores.shape[0], -1).argmax(1).numpy() == self.labels[s:s + 256]).sum())
        return round(hits / self.samples, 6) if self.samples else 0.0


def _evaluator(data: Any) -> _Evaluator | None:
    import numpy as np

    if data is None:
        return None
    arrays = getattr(data, "arrays", None)
    if arrays is not None:  # an edgeconv.data.Dataset
        if data.labels is None:
            raise BadInput("the accuracy data has no 'labels' array", stage="prune")
        inputs, labels = list(arrays.values()), data.labels
    elif isinstance(data, (tuple, list)) and len(data) == 2:
        x, labels = data
        inputs = list(x) if isinstance(x, (tuple, list)) else [x]
    else:
        raise BadInput("prune data must be (inputs, labels) or a labelled edgeconv Dataset", stage="prune")
    to_np = lambda a: a.detach().cpu().numpy() if hasattr(a, "detach") else np.asarray(a)  # noqa: E731
    inputs = [to_np(x) for x in inputs]
    labels = to_np(labels).reshape(-1)
    if any(len(x) != len(labels) for x in inputs):
        raise BadInput(f"prune data: {len(labels)} labels but inputs of {[len(x) for x in inputs]} samples",
                       stage="prune")
    return _Evaluator(inputs, labels)


def _version() -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("torch-pruning")
    except PackageNotFoundError:
        return None


# -- the pass: --prune on the torch form ---------------------------------------------------------------------------------
def prune_pass(model: Model, job: Any) -> tuple[Model, dict[str, Any] | None]:
    """``torch.prune`` (a generic pass on the torch form, before the model leaves it): with the source option
    ``prune`` (``--prune RATIO``) the module is pruned (and fine-tuned with ``finetune``) once; without it the pass
    does nothing (no report entry). The pruned module is what the artifact is verified against (``reference``)."""
    opts = getattr(job, "source_options", {}) or {}
    if opts.get("prune") is None:
        return model, None
    obj = model.obj
    where = str(model.path or model.meta.get("source_path") or "<nn.Module>")
    module, report = _prune_module(obj["module"], obj["kind"], tuple(obj["example"]),
                                   [t.name for t in model.io.inputs], opts, where)
    module.eval()
    meta = {**model.meta, "prune": report,
            "parameters": int(sum(p.numel() for p in module.parameters()))}
    pruned = Model(form="torch", io=model.io, path=model.path, obj={**obj, "module": module, "runnable": module},
                   meta=meta)
    return pruned, {"ratio": report["ratio"], "parameters": report["parameters"], "weights_bytes": report["weights_bytes"],
                    **({"accuracy": report["accuracy"]} if report.get("accuracy") else {}),
                    "finetuned": bool(report.get("finetune"))}


def _prune_module(module: Any, kind: str, example: tuple, names: list[str], opts: dict, where: str) -> tuple[Any, dict]:
    """Source options ``prune`` (channel ratio), ``finetune`` (callable), ``prune_data`` (labelled
    ``--data`` for accuracy before/after), ``prune_ignore`` (module names), ``prune_round_to``."""
    from edgeconv.plugin import EdgeconvError, IOContract, TensorSpec

    ratio = parse_ratio(opts["prune"])
    if kind not in ("module", "factory"):
        raise BadInput(f"--prune needs an nn.Module (a factory file.py:fn or a module in the Python API); a {kind} "
                       "source has no channels left to edit", file=where, stage="prune")
    data = opts.get("prune_data")
    if data is not None and not isinstance(data, (tuple, list)) and not hasattr(data, "arrays"):
        from edgeconv.plugin import load_dataset

        io = IOContract(tuple(TensorSpec(n, tuple(x.shape), str(x.dtype).replace("torch.", ""))
                              for n, x in zip(names, example, strict=True)), ())
        data = load_dataset(data, io, what="--data")
        if data.labels is None:
            data = None  # fidelity-only data: no accuracy before/after
    try:
        res = prune(module, ratio, example, finetune=opts.get("finetune"), data=data,
                    ignored_layers=tuple(opts.get("prune_ignore") or ()), round_to=opts.get("prune_round_to"))
    except EdgeconvError as exc:
        exc.file = exc.file or where
        raise
    return res.module, res.report
