"""``keep_float`` on ExecuTorch: which modules XNNPACKQuantizer leaves in float.

ONNX node names do not exist on this route. The unit here is the torch module, named by its path in the model
(``layer1.0.conv1``, as ``named_modules()`` and the exported graph's ``nn_module_stack`` name it); a container
(``layer1``) keeps everything inside it. Because ``--precision auto``'s sensitive-layer search ranks the ONNX nodes
of the model's ONNX export, the ONNX node names torch's TorchScript exporter writes are accepted too and mapped
to the module that owns the node: ``/layer1/layer1.0/conv1/Conv`` -> ``layer1.0.conv1`` (the exporter's name is
the module scope path; a component ``layer1.0`` inside ``layer1`` is the child ``0``). A node of the top-level
module (``/Relu_1``, a functional call in ``forward``) belongs to no submodule: nothing can be kept for it, and
the conversion says so in a warning.

How it is applied (``quantizer``): XNNPACKQuantizer's per-module setting ``set_module_name(name, None)`` is
refused by the quantizer itself ("quantization_config == None is not supported yet", executorch 1.5.1), so the
kept operations go through its node filter (``set_filter_function``): a node left out is not annotated, has no
observers and computes in float (a float operator in XNNPACK). The kept nodes are those inside the kept modules
(torchao's ``get_module_name_filter``) *and the producers of their inputs*: XNNPACK's patterns quantize a
pattern's output (conv -> relu: the relu's output), and XNNPACK has no kernel for an int8 convolution with a float
output (the dequantize is left to the portable kernels, which have none: "Missing out variants"), so the only way
for a kept module to read a float input -- what keep_float means on the other targets, where onnxruntime feeds a
kept node its float inputs -- is a float producer. From each input of a kept node the walk goes up through
pass-through operators (relu, clamp, pooling, view, flatten, ...) to the first computing operator, all kept
(``float_producers`` in the report). On a model whose int8 breaks at one convolution's input, keeping that one
convolution fixes it (tests/test_keep_float.py).
"""

from __future__ import annotations

from typing import Any

from edgeconv.plugin import BadInput, did_you_mean


def module_paths(graph_owner: Any) -> list[str]:
    """The module paths that own at least one operation of an exported graph, in graph order."""
    graph = graph_owner.graph
    seen: dict[str, None] = {}
    for node in graph.nodes:
        for path, _ in (node.meta.get("nn_module_stack") or {}).values():
            p = _normalize(str(path))
            if p:
                seen.setdefault(p, None)
    return list(seen)


def _normalize(path: str) -> str:
    # the same normalisation as torchao's get_module_name_filter (older capture APIs prefix "L['self'].")
    return path[len("L['self'].") :] if path.startswith("L['self'].") else path


def onnx_scope_to_module(name: str) -> str:
    """``/layer1/layer1.0/conv1/Conv`` -> ``layer1.0.conv1``; ``/Relu_1`` -> ``""`` (the top-level module)."""
    scopes = [s for s in name.strip("/").split("/")[:-1] if s]
    path: list[str] = []
    previous = None
    for scope in scopes:
        rel = scope[len(previous) + 1 :] if previous and scope.startswith(previous + ".") else scope
        path.extend(p for p in rel.split(".") if p)
        previous = scope
    return ".".join(path)


def resolve(names: list[str], ep: Any, job: Any) -> dict[str, str]:
    """``{given name: module path}`` for the names that own operations; unknown names are an error naming the
    closest module, top-level ONNX nodes a warning."""
    known = module_paths(ep)
    out: dict[str, str] = {}
    for name in names:
        path = onnx_scope_to_module(name) if name.startswith("/") else name
        if name.startswith("/") and not path:
            job.warn(f"keep_float: {name} is an operation of the top-level module, not of a submodule: nothing kept "
                     "in float for it (ExecuTorch's quantizer keeps whole modules in float)")
            continue
        if path not in known:
            via = f" (ONNX node {name})" if path != name else ""
            raise BadInput(f"keep_float: the model has no module {path!r}{via}{did_you_mean(path, known)} "
                           f"(names are module paths, e.g. {', '.join(known[:3])})", stage="optimize")
        out[name] = path
    return out


# Operators that pass a value through without computing a new range: the walk to a kept node's producer continues.
_PASS_THROUGH = {"relu", "relu_", "hardtanh", "hardtanh_", "clamp", "clamp_", "max_pool2d", "max_pool2d_with_indices",
                 "adaptive_avg_pool2d", "avg_pool2d", "mean", "view", "view_copy", "reshape", "flatten", "permute",
                 "transpose", "squeeze", "unsqueeze", "contiguous", "dropout", "clone", "getitem", "alias",
                 "_to_copy", "to"}


def _op(node: Any) -> str:
    target = node.target
    return str(getattr(target, "__name__", target)).split(".")[0]


def kept_nodes(graph: Any, filters: list[Any]) -> tuple[set[Any], list[str]]:
    """The nodes of the kept modules, plus the producers of their inputs (see the module docstring)."""
    kept = {n for n in graph.nodes if n.op == "call_function" and any(f(n) for f in filters)}
    added: list[str] = []
    todo = [p for n in kept for p in n.all_input_nodes]
    while todo:
        node = todo.pop()
        if node.op != "call_function" or node in kept:
            continue
        kept.add(node)
        stack = list((node.meta.get("nn_module_stack") or {}).values())
        added.append(f"{_normalize(str(stack[-1][0])) if stack else '(top level)'} ({_op(node)})")
        if _op(node) in _PASS_THROUGH:
            todo.extend(node.all_input_nodes)
    return kept, added


def quantizer(modules: list[str], per_channel: bool) -> tuple[Any, dict[str, Any]]:
    """XNNPACKQuantizer (symmetric int8) that leaves ``modules`` and their input producers in float. Returns the
    quantizer and a record (``float_producers``), filled when it annotates."""
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )
    from torchao.quantization.pt2e.quantizer import get_module_name_filter

    config = get_symmetric_quantization_config(is_per_channel=per_channel)
    record: dict[str, Any] = {"float_producers": []}
    if not modules:
        return XNNPACKQuantizer().set_global(config), record
    filters = [get_module_name_filter(m) for m in modules]

    class KeepFloat(XNNPACKQuantizer):
        def annotate(self, model: Any) -> Any:
            kept, record["float_producers"] = kept_nodes(model.graph, filters)
            self.set_filter_function(lambda node: node not in kept)
            return super().annotate(model)

    return KeepFloat().set_global(config), record
