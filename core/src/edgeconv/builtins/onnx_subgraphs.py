"""INT8 inside ``If`` bodies: what onnxruntime's QDQ quantizer does not do.

``onnxruntime.quantization.quantize_static`` quantizes the main graph only: a network inside an ``If``
came back as "int8" with 0 quantized nodes (issue #17). Each ``If`` branch is quantized here as a model of
its own:

1. the branch becomes a model whose inputs are the outer-scope tensors it reads (outer initializers it reads,
   weights shared with the main graph, go in as its initializers);
2. its calibration feeds are those tensors' values on the calibration set, computed by the float model, on the
   samples whose condition took this branch (every sample when none did);
3. ``quantize_static`` runs on it with the job's settings (nested ``If`` s recursively), the names it made are
   prefixed so that they cannot meet a name of the outer scope, and the quantized nodes replace the branch.

A constant condition never gets here: the simplify pass (onnxslim) inlines the branch taken. ``Loop`` and
``Scan`` bodies read values that change from one iteration to the next, which no outer calibration run
gives: they stay float, and the precision share (``edgeconv.sensitivity.precision_share``) says so.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

Quantize = Callable[[Path, Path, list[dict[str, Any]]], None]  # (float model, quantized model, feeds)


def _body_refs(graph: Any) -> tuple[set[str], set[str]]:
    """Names a graph (its nested subgraphs included) reads, and names it defines."""
    used: set[str] = set()
    defined = {i.name for i in graph.initializer} | {i.name for i in graph.input}
    for node in graph.node:
        used.update(x for x in node.input if x)
        defined.update(o for o in node.output if o)
        for attr in node.attribute:
            for g in ([attr.g] if attr.type == 5 else []) + list(attr.graphs):
                u, d = _body_refs(g)
                used |= u - d
    used.update(o.name for o in graph.output)
    return used, defined


def outer_names(graph: Any) -> list[str]:
    """The outer-scope tensors a subgraph reads (in first-use order)."""
    used, defined = _body_refs(graph)
    order: list[str] = []
    for node in graph.node:
        order += [x for x in node.input if x]
    order += [o.name for o in graph.output]
    return [x for x in dict.fromkeys(order) if x in used and x not in defined] + sorted(used - defined - set(order))


def has_compute(graph: Any) -> bool:
    from edgeconv.plugin import iter_nodes

    return any(n.op_type in ("Conv", "ConvTranspose", "MatMul", "Gemm") for n in iter_nodes(graph))


def _value_infos(proto: Any, names: Iterable[str]) -> dict[str, Any]:
    import onnx

    try:
        inferred = onnx.shape_inference.infer_shapes(proto, strict_mode=False)
    except Exception:
        inferred = proto
    have = {vi.name: vi for vi in (*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output)}
    return {n: have.get(n) for n in names}


def _capture(proto: Any, names: list[str], feeds: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per feed, the values of ``names`` in the float model."""
    import onnx
    import onnxruntime as ort

    m = onnx.ModelProto()
    m.CopyFrom(proto)
    have = {o.name for o in m.graph.output}
    for n in names:
        if n not in have:
            m.graph.output.append(onnx.ValueInfoProto(name=n))
    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # keep every named tensor
    sess = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return [dict(zip(names, sess.run(names, feed), strict=True)) for feed in feeds]


def _submodel(proto: Any, branch: Any, outer: list[str], infos: dict[str, Any]) -> Any:
    import onnx
    from onnx import helper

    inits = {i.name: i for i in proto.graph.initializer}
    inputs, weights = [], []
    for name in outer:
        if name in inits:
            weights.append(inits[name])
            continue
        vi = infos.get(name)
        if vi is None or not vi.type.HasField("tensor_type"):
            raise ValueError(f"no type for the outer tensor {name!r} the branch reads")
        inputs.append(vi)
    graph = helper.make_graph(list(branch.node), branch.name or "branch", inputs, list(branch.output),
                              [*branch.initializer, *weights], value_info=list(branch.value_info))
    sub = helper.make_model(graph, opset_imports=list(proto.opset_import), producer_name="edgeconv-branch")
    sub.ir_version = proto.ir_version
    sub.functions.extend(proto.functions)
    onnx.checker.check_model(sub)
    return sub


def _splice(branch: Any, quantized: Any, outer: list[str], prefix: str) -> int:
    """Replace ``branch``'s nodes with the quantized submodel's, the names the quantizer made prefixed.
    Returns the number of QuantizeLinear nodes it holds."""
    original = set(outer) | {o.name for o in branch.output} | {i.name for i in branch.initializer}
    for node in branch.node:
        original.update(node.output)
    q = quantized.graph
    made = ({n for node in q.node for n in node.output} | {i.name for i in q.initializer}) - original
    rename = {n: f"{prefix}{n}" for n in made}
    names = {n.name for n in branch.node}
    for node in q.node:
        node.input[:] = [rename.get(x, x) for x in node.input]
        node.output[:] = [rename.get(x, x) for x in node.output]
        if node.name and node.name not in names:
            node.name = f"{prefix}{node.name}"
    own = {i.name for i in branch.initializer}
    inits = [i for i in q.initializer if i.name in made or i.name in own]  # outer weights stay outside
    for init in inits:
        init.name = rename.get(init.name, init.name)
    del branch.node[:]
    branch.node.extend(q.node)
    del branch.initializer[:]
    branch.initializer.extend(inits)
    del branch.value_info[:]
    return sum(n.op_type == "QuantizeLinear" for n in q.node)


def quantize_if_branches(float_proto: Any, quantized: Any, feeds: list[dict[str, Any]], quantize: Quantize,
                         work: Path, depth: int = 0) -> list[dict[str, Any]]:
    """Quantize every ``If`` branch of ``quantized``'s main graph (a copy of ``float_proto``'s, quantized by
    onnxruntime) in place. ``feeds``: the calibration feeds of ``float_proto``. Returns what was done per branch."""
    done: list[dict[str, Any]] = []
    ifs = [n for n in quantized.graph.node if n.op_type == "If"
           and any(a.type == 5 and has_compute(a.g) for a in n.attribute)]
    if not ifs or not feeds:
        return done
    float_ifs = {tuple(n.output): n for n in float_proto.graph.node if n.op_type == "If"}
    branches = []
    for node in ifs:
        src = float_ifs.get(tuple(node.output))
        if src is None:
            continue
        for attr, fattr in zip(node.attribute, src.attribute, strict=True):
            if attr.type == 5 and has_compute(attr.g):
                branches.append((node, attr, fattr.g))
    wanted = list(dict.fromkeys([n.input[0] for n, _, _ in branches] +
                                [x for _, _, g in branches for x in outer_names(g)
                                 if x not in {i.name for i in float_proto.graph.initializer}]))
    values = _capture(float_proto, wanted, feeds)
    infos = _value_infos(float_proto, wanted)
    for k, (node, attr, fbody) in enumerate(branches):
        outer = outer_names(fbody)
        taken = [v for v in values if bool(v[node.input[0]].reshape(-1)[0]) == (attr.name == "then_branch")]
        sub_feeds = [{x: v[x] for x in outer if x in v} for v in (taken or values)]
        name = f"{node.name or 'if'}.{attr.name}"
        sub = _submodel(float_proto, fbody, outer, infos)
        src, dst = work / f"_branch{depth}_{k}.onnx", work / f"_branch{depth}_{k}_int8.onnx"
        import onnx

        onnx.save(sub, str(src))
        quantize(src, dst, sub_feeds)
        qsub = onnx.load(str(dst))
        nested = quantize_if_branches(sub, qsub, sub_feeds, quantize, work, depth + 1)
        q_nodes = _splice(attr.g, qsub, outer, prefix=f"{name}/")
        done.append({"branch": name, "samples": len(sub_feeds), "samples_taking_it": len(taken),
                     "quantize_nodes": q_nodes, **({"nested": nested} if nested else {})})
    _drop_unused_initializers(quantized.graph)
    return done


def _drop_unused_initializers(graph: Any) -> None:
    used, _ = _body_refs(graph)
    for node in graph.node:
        used.update(node.input)
    for init in [i for i in graph.initializer if i.name not in used]:
        graph.initializer.remove(init)


def unique_initializer_names(proto: Any) -> list[str]:
    """Rename (in place) the initializers of subgraphs whose name an outer or an earlier graph already uses, and
    their uses in that scope. onnxruntime's float16 converter asserts that initializer names are unique across
    all graphs (a bare ``AssertionError``: two If branches exported with the same weight names). Returns the
    renamed names."""
    seen = {i.name for i in proto.graph.initializer}
    renamed: list[str] = []

    def visit(graph: Any, path: str) -> None:
        for node in graph.node:
            for attr in node.attribute:
                subs = ([attr.g] if attr.type == 5 else []) + list(attr.graphs)
                for k, g in enumerate(subs):
                    where = f"{path}{node.name or node.op_type}.{attr.name}{k if len(subs) > 1 else ''}"
                    mapping = {}
                    for init in g.initializer:
                        if init.name in seen:
                            new, i = f"{where}/{init.name}", 1
                            while new in seen:
                                new, i = f"{where}/{init.name}_{i}", i + 1
                            mapping[init.name] = new
                            renamed.append(init.name)
                            init.name = new
                        seen.add(init.name)
                    if mapping:
                        _rename_uses(g, mapping)
                    visit(g, f"{where}/")

    visit(proto.graph, "")
    return renamed


def _rename_uses(graph: Any, mapping: dict[str, str]) -> None:
    """Rename the uses of ``mapping``'s names in ``graph`` and in the subgraphs that do not define them anew."""
    for node in graph.node:
        node.input[:] = [mapping.get(x, x) for x in node.input]
        for attr in node.attribute:
            for g in ([attr.g] if attr.type == 5 else []) + list(attr.graphs):
                own = {i.name for i in g.initializer} | {i.name for i in g.input} | {o for n in g.node for o in n.output}
                inner = {k: v for k, v in mapping.items() if k not in own}
                if inner:
                    _rename_uses(g, inner)
    for o in graph.output:
        if o.name in mapping:  # a branch that returns the weight itself
            o.name = mapping[o.name]
