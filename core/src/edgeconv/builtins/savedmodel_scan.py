"""A TensorFlow SavedModel checked before ``tf.saved_model.load``: every op of every graph must be allowed.

``tf.saved_model.load`` runs graph code while loading: the resource creators and initializers of the
object graph (a ``TrackableResource._initialize`` with ``tf.io.write_file`` wrote a file on a plain
``edgeconv inspect``), and for a TF1 SavedModel the saver's restore op and the init op; converting and
verifying then run the serving signature. Each of them is a function of ``saved_model.pb``'s function
library or a node of its graph, so the file itself says every op that can run. This module parses the
protobuf (nothing is loaded) and checks every node of every meta graph's ``graph_def`` and of every function
in its library (initializers included), each against :func:`op_refusal`:

- the infrastructure a model needs (:data:`INFRA`: constants, placeholders, identities, function calls,
  functional control flow, resource variables, TF1 variables, tensor lists and arrays, random ops,
  ``Assert``), and direct calls of the library's functions;
- any other op registered in this TensorFlow that is *stateless*, has no ``string``, ``resource`` or
  ``variant`` input or output and no ``string``/``func`` attribute beyond :data:`SAFE_STRING_ATTRS`
  (padding, data_format, ...). An op that reads or writes a file needs a path (a string input or attribute)
  or a handle (a resource): ``ReadFile``, ``WriteFile``, ``MatchingFiles``, ``PrintV2``, ``ImmutableConst``,
  ``DebugIdentity``, ``PyFunc``/``EagerPyFunc``, datasets, readers, lookup tables from files, summaries are
  all refused by this rule rather than by name. An op missing from the registry (a custom library's) is refused.
- the checkpoint ops (:data:`PATH_OPS`: ``SaveV2``, ``RestoreV2``, ``MergeV2Checkpoints`` and the TF1
  ``Save``/``Restore`` ops), which every SavedModel carries in its saver functions, only when their path is
  the prefix the loader supplies: traced back through identities, ``StringJoin`` (first part),
  ``ShardedFilename``, ``Select`` and ``Pack``, it must come from a function argument or the graph's
  ``Placeholder`` (the TF1 saver's ``filename_tensor_name``, which the loader feeds with the model's own
  ``variables/`` prefix), never from a constant; suffix constants (``_temp/part``) may not contain ``..`` or
  start with ``/``. Across functions, a call must pass such a prefix to every parameter that reaches a path;
  a function with such a parameter may not be one the loader calls by itself (the object graph's functions).

Everything refused names the op and the function (or ``the graph``); ``--trust-code`` loads without the check.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .pickle_scan import Refused

INFRA = frozenset({
    "Const", "HostConst", "Placeholder", "PlaceholderWithDefault", "NoOp", "Identity", "IdentityN", "Snapshot",
    "StopGradient", "PreventGradient", "EnsureShape", "CheckNumerics", "CheckNumericsV2", "Assert",
    "StatefulPartitionedCall", "PartitionedCall", "If", "StatelessIf", "While", "StatelessWhile", "Case",
    "StatelessCase",
    # resource variables (TF2) and reference variables (TF1)
    "VarHandleOp", "ReadVariableOp", "AssignVariableOp", "AssignAddVariableOp", "AssignSubVariableOp",
    "VarIsInitializedOp", "DestroyResourceOp", "DisableCopyOnRead", "ResourceGather", "ResourceGatherNd",
    "VariableShape", "VariableV2", "Variable", "Assign", "AssignAdd", "AssignSub", "IsVariableInitialized",
    "RefIdentity",
    # TF1 control flow
    "Switch", "Merge", "Enter", "Exit", "NextIteration", "LoopCond", "ControlTrigger", "RefSwitch", "RefMerge",
    "RefEnter", "RefExit", "RefNextIteration",
    # in-memory tensor lists and arrays (Keras RNNs, tf.while_loop)
    "TensorListReserve", "TensorListSetItem", "TensorListGetItem", "TensorListStack", "TensorListFromTensor",
    "TensorListLength", "TensorListElementShape", "TensorListPushBack", "TensorListPopBack", "TensorListResize",
    "TensorListConcatV2", "TensorListSplit", "TensorListGather", "TensorListScatterV2", "TensorListScatterIntoExistingList",
    "EmptyTensorList", "TensorArrayV3", "TensorArrayReadV3", "TensorArrayWriteV3", "TensorArrayGatherV3",
    "TensorArrayScatterV3", "TensorArraySizeV3", "TensorArrayCloseV3", "TensorArrayConcatV3", "TensorArraySplitV3",
    "OptionalFromValue", "OptionalGetValue", "OptionalHasValue", "OptionalNone",
    # random numbers (stateful, no I/O)
    "RandomUniform", "RandomUniformInt", "RandomStandardNormal", "TruncatedNormal", "Multinomial",
    # string ops of the saver functions (no I/O; their outputs reach files only through PATH_OPS)
    "StringJoin", "StaticRegexFullMatch", "ShardedFilename",
})
PATH_OPS = {"SaveV2": (0,), "RestoreV2": (0,), "MergeV2Checkpoints": (0, 1), "Save": (0,), "SaveSlices": (0,),
            "Restore": (0,), "RestoreSlice": (0,)}
SAFE_STRING_ATTRS = frozenset({
    "padding", "data_format", "mode", "direction", "rnn_mode", "input_mode", "activation_mode", "round_mode",
    "method", "equation", "align", "interpolation", "fill_mode", "src_format", "dst_format", "filter_format",
    "fused_ops", "input_quant_mode", "output_quant_mode", "bad_indices_policy", "set_operation", "combiner",
    "pooling_type", "kernel_type", "layout", "input_layout", "output_layout", "reduction", "approximate",
    "rounding_mode", "T", "dtype", "_class",
})
CALL_OPS = frozenset({"StatefulPartitionedCall", "PartitionedCall"})
_PASS_FIRST = frozenset({"Identity", "Snapshot", "ShardedFilename", "RefIdentity"})


def check_saved_model(folder: Path) -> None:
    """Raise :class:`Refused` naming the first op (and its function) that is not allowed."""
    from google.protobuf.message import DecodeError
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    try:
        proto.ParseFromString((folder / "saved_model.pb").read_bytes())
    except (DecodeError, RuntimeWarning, ValueError) as exc:
        raise Refused(f"saved_model.pb is not a readable SavedModel ({exc})") from None
    for meta in proto.meta_graphs:
        _check_meta_graph(meta)


def _check_meta_graph(meta: Any) -> None:
    lib = {f.signature.name: f for f in meta.graph_def.library.function}
    top = _Scope(None, meta.graph_def.node, (), saver_feed=meta.saver_def.filename_tensor_name.split(":")[0])
    scopes = [top, *(_Scope(name, f.node_def, [a.name for a in f.signature.input_arg]) for name, f in lib.items())]
    for scope in scopes:
        for node in scope.nodes.values():
            why = op_refusal(node, lib)
            if why:
                raise Refused(f"{scope.where}: op {node.op} (node {node.name!r}) {why}; give --trust-code if you "
                              "trust the model")
    _check_paths(meta, lib, scopes)


class _Scope:
    """A graph to trace inputs in: the meta graph's ``graph_def`` (``name`` None) or a library function."""

    def __init__(self, name: str | None, nodes: Any, args: Any, saver_feed: str = "") -> None:
        self.name = name
        self.where = f"function {name}" if name else "the graph"
        self.nodes = {n.name: n for n in nodes}
        self.args = {a: i for i, a in enumerate(args)}
        self.saver_feed = saver_feed

    def resolve(self, ref: str) -> tuple[Any, int]:
        """(node or arg index, output index) of a data input: ``node:out:0`` / ``arg`` (functions), ``node:0``."""
        if ref in self.args:
            return self.args[ref], 0
        head, _, rest = ref.partition(":")
        index = int(rest.rsplit(":", 1)[-1]) if rest and rest.rsplit(":", 1)[-1].isdigit() else 0
        node = self.nodes.get(head)
        if node is None:
            raise Refused(f"{self.where}: input {ref!r} names no node or argument")
        return node, index


def op_refusal(node: Any, lib: dict[str, Any]) -> str | None:
    """Why ``node``'s op may not run while loading or serving the model, or None."""
    op = node.op
    if op in lib or op in INFRA or op in PATH_OPS:
        return None
    from tensorflow.core.framework import types_pb2
    from tensorflow.python.framework import op_def_registry  # the op registry of the TF that would run it

    op_def = op_def_registry.get(op)
    if op_def is None:
        return "is not a registered TensorFlow op (a custom library's op)"
    if op_def.is_stateful:
        return "has side effects (a stateful op outside the allowed infrastructure)"
    bad_types = {types_pb2.DT_STRING, types_pb2.DT_RESOURCE, types_pb2.DT_VARIANT}
    for arg in (*op_def.input_arg, *op_def.output_arg):
        if arg.type in bad_types or arg.is_ref:
            kind = "reference" if arg.is_ref else types_pb2.DataType.Name(arg.type)[3:].lower()
            return f"has a {kind} input or output ({arg.name!r}), which can be a path or a handle to one"
    for attr in op_def.attr:
        if attr.type in ("func", "list(func)"):
            return f"calls a function through its attribute {attr.name!r}"
        if attr.type in ("string", "list(string)") and attr.name not in SAFE_STRING_ATTRS:
            return f"has a string attribute {attr.name!r} (a path, URL or name outside the model)"
    return None


def _data_inputs(node: Any) -> list[str]:
    return [i for i in node.input if not i.startswith("^")]


def _check_paths(meta: Any, lib: dict[str, Any], scopes: list[_Scope]) -> None:
    """Every checkpoint op's path is the prefix the loader supplies (see the module docstring)."""
    params: dict[str, set[int]] = {s.name: set() for s in scopes if s.name}
    feed_users: set[str] = set()  # graph nodes that write or read the checkpoint at the saver's fed path
    changed = True
    while changed:  # a caller's argument that reaches a callee's path parameter is a path parameter too
        changed = False
        for scope in scopes:
            found: set[int] = set()
            for node in scope.nodes.values():
                inputs = _data_inputs(node)
                callee = node.op if node.op in lib else (node.attr["f"].func.name if node.op in CALL_OPS else None)
                wanted = PATH_OPS.get(node.op, ()) if callee is None else sorted(params.get(callee, ()))
                if wanted and scope.name is None:
                    feed_users.add(node.name)
                for i in wanted:
                    if i >= len(inputs):
                        raise Refused(f"{scope.where}: op {node.op} (node {node.name!r}) has no input {i}")
                    found |= _prefix_args(scope, inputs[i], node)
            if scope.name and not found <= params[scope.name]:
                params[scope.name] |= found
                changed = True
    _check_path_functions_not_entry_points(meta, lib, params)
    _check_saver_not_run_unfed(meta, scopes[0], feed_users)


def _check_saver_not_run_unfed(meta: Any, top: _Scope, feed_users: set[str]) -> None:
    """The loader feeds the saver's filename only when it restores; a signature or an init op (a collection's node
    list) that depends on a checkpoint op would run it with the file's default path (TF1: ``model`` in the cwd)."""
    roots = [t.name for sig in meta.signature_def.values() for t in (*sig.inputs.values(), *sig.outputs.values())]
    roots += [n for c in meta.collection_def.values() if c.WhichOneof("kind") == "node_list" for n in c.node_list.value]
    seen: set[str] = set()
    todo = [r.lstrip("^").split(":")[0] for r in roots]
    while todo:
        name = todo.pop()
        if name in seen or name not in top.nodes:
            continue
        seen.add(name)
        if name in feed_users:
            raise Refused(f"the graph: a signature or init op depends on node {name!r}, which writes or reads a "
                          "checkpoint at the saver's default path; give --trust-code if you trust the model")
        todo.extend(i.lstrip("^").split(":")[0] for i in top.nodes[name].input)


def _check_path_functions_not_entry_points(meta: Any, lib: dict[str, Any], params: dict[str, set[int]]) -> None:
    with_paths = {name for name, p in params.items() if p}
    entry = set(meta.object_graph_def.concrete_functions)
    for fn in lib.values():  # functional control flow and other function attributes pass no checked prefix
        for node in fn.node_def:
            for key, value in node.attr.items():
                names = [value.func.name] if value.HasField("func") else [f.name for f in value.list.func]
                if node.op in CALL_OPS and key == "f":
                    continue
                entry.update(names)
    for node in meta.graph_def.node:
        for key, value in node.attr.items():
            if value.HasField("func") and not (node.op in CALL_OPS and key == "f"):
                entry.add(value.func.name)
    bad = sorted(with_paths & entry)
    if bad:
        raise Refused(f"function {bad[0]} writes or reads a checkpoint at a path its caller chooses, and the loader "
                      "or control flow calls it directly; give --trust-code if you trust the model")


def _prefix_args(scope: _Scope, ref: str, user: Any, depth: int = 0) -> set[int]:
    """The argument indices a checkpoint path comes from; refuse any other source (a constant, a computed path)."""
    src, out = scope.resolve(ref)
    if isinstance(src, int):
        return {src}
    refuse = Refused(f"{scope.where}: op {user.op} (node {user.name!r}) takes its path from {src.op} node "
                     f"{src.name!r}, not from the prefix the loader supplies; give --trust-code if you trust the model")
    if depth > 50:
        raise refuse
    inputs = _data_inputs(src)
    if scope.name is None and src.name == scope.saver_feed:
        return set()  # the saver's filename tensor, fed by the loader with the model's variables/ prefix
    if src.op in _PASS_FIRST and inputs:
        return _prefix_args(scope, inputs[0], user, depth + 1)
    if src.op == "IdentityN" and out < len(inputs):
        return _prefix_args(scope, inputs[out], user, depth + 1)
    if src.op == "StringJoin" and inputs:
        for ref_ in inputs[1:]:
            _check_suffix(scope, ref_, user, depth + 1)
        if ".." in src.attr["separator"].s.decode("utf-8", "replace"):
            raise refuse
        return _prefix_args(scope, inputs[0], user, depth + 1)
    if src.op in ("Select", "SelectV2") and len(inputs) == 3:
        return _prefix_args(scope, inputs[1], user, depth + 1) | _prefix_args(scope, inputs[2], user, depth + 1)
    if src.op == "Pack":
        return set().union(*(_prefix_args(scope, r, user, depth + 1) for r in inputs))
    raise refuse


def _check_suffix(scope: _Scope, ref: str, user: Any, depth: int) -> None:
    """A constant appended to a checkpoint prefix (``_temp/part``): no ``..``, not absolute."""
    src, _ = scope.resolve(ref)
    if not isinstance(src, int):
        inputs = _data_inputs(src)
        if src.op == "Const":
            values = [v.decode("utf-8", "replace") for v in src.attr["value"].tensor.string_val]
            if values and all(".." not in v and not v.startswith("/") for v in values):
                return
        elif src.op in ("Identity", "Snapshot") and inputs and depth < 50:
            return _check_suffix(scope, inputs[0], user, depth + 1)
        elif src.op in ("Select", "SelectV2") and len(inputs) == 3 and depth < 50:
            _check_suffix(scope, inputs[1], user, depth + 1)
            return _check_suffix(scope, inputs[2], user, depth + 1)
    raise Refused(f"{scope.where}: op {user.op} (node {user.name!r}) appends {ref!r} to its path, which is not a "
                  "plain relative suffix; give --trust-code if you trust the model")
