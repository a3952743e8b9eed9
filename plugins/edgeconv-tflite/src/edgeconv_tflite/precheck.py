"""Before the long conversion: which ONNX operators of the graph the onnx2tf route cannot take.

onnx2tf converts a node by importing ``onnx2tf.ops.<OpType>``: the operators it supports are
the modules in that folder, read here from disk (``find_spec``, no import: importing onnx2tf
takes seconds and changes the process). Some operators convert only to TensorFlow ops that
TFLite's builtin runtime has no kernel for: they need ``-O select_tf_ops=true`` (and the Flex
delegate at run time). A TF/Keras source is checked by the TFLite converter itself.
"""

from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path
from typing import Any

from edgeconv.plugin import Unsupported, UnsupportedOperators, iter_nodes

# Converted by onnx2tf 1.28.8, but to TF ops with no TFLite builtin kernel (checked here with
# TF 2.21: TFLiteConverter fails without SELECT_TF_OPS, succeeds with it). Erf is not listed:
# without SELECT_TF_OPS the worker has onnx2tf build it from builtin ops (worker.py).
NEEDS_FLEX = {
    "Det": "MatrixDeterminant",
    # measured by the operator coverage (docs/gen/operator_coverage.py, ONNX node tests): TFLiteConverter
    # fails on every test of these ops with "'tf.X' op is neither a custom op nor a flex op"
    "Acos": "Acos", "Acosh": "Acosh", "Asin": "Asin", "Asinh": "Asinh", "Atan": "Atan", "Atanh": "Atanh",
    "Cosh": "Cosh", "Sinh": "Sinh", "Tan": "Tan", "Unique": "UniqueWithCountsV2",
}


# ONNX op -> input element types (TensorProto numbers) whose converted model makes LiteRT abort (SIGABRT,
# not an error) in invoke(): the verification would kill the user's process. Found by the operator coverage.
ABORTS = {"Equal": {2}}  # uint8


def _elem_types(graph: Any) -> dict[str, int]:
    return {vi.name: vi.type.tensor_type.elem_type for vi in (*graph.input, *graph.value_info, *graph.output)
            if vi.type.HasField("tensor_type")}


@lru_cache(maxsize=1)
def supported_ops() -> frozenset[str] | None:
    """The ONNX op types onnx2tf has a converter for (None: onnx2tf is not installed)."""
    spec = importlib.util.find_spec("onnx2tf")
    if spec is None or not spec.submodule_search_locations:
        return None
    ops = Path(next(iter(spec.submodule_search_locations))) / "ops"
    return frozenset(p.stem for p in ops.glob("*.py") if not p.stem.startswith("_") and p.stem != "Input")


def find(model: Any, select_tf_ops: bool = False) -> list[Unsupported]:
    """Every node the route cannot convert (hard) or converts to Flex ops (hard unless allowed)."""
    from importlib.metadata import version

    ops = supported_ops()
    if ops is None:
        return []  # the exporter says onnx2tf is missing, with the install hint
    tool = f"onnx2tf {version('onnx2tf')}"
    out = []
    types = _elem_types(model.obj.graph)
    for node in iter_nodes(model.obj.graph):
        name = node.name or f"<{node.op_type}>"
        if node.op_type in ABORTS and any(types.get(i) in ABORTS[node.op_type] for i in node.input):
            out.append(Unsupported(name, node.op_type, f"LiteRT's kernel for {node.op_type} on these types aborts the "
                                   "process when the model runs (ONNX node test test_equal_uint8)"))
        elif node.op_type not in ops:
            out.append(Unsupported(name, node.op_type, f"{tool} has no converter for {node.op_type}"))
        elif node.op_type in NEEDS_FLEX:
            tf_op = NEEDS_FLEX[node.op_type]
            reason = (f"converts to the TF op {tf_op}, which runs as a Flex op: the runtime needs the Flex delegate"
                      if select_tf_ops else
                      f"converts to the TF op {tf_op}, which TFLite has no builtin kernel for: give "
                      "-O select_tf_ops=true (the runtime then needs the Flex delegate)")
            out.append(Unsupported(name, node.op_type, reason, fallback=select_tf_ops))
    return out


def precheck(model: Any, job: Any = None) -> list[Unsupported]:
    """The target's pre-check: every node the route cannot take (``fallback`` ones run, with a warning).

    Called by a conversion (``job`` given), refusals are raised here as ``UnsupportedOperators`` with
    their reasons as the hint -- the core's own message names the nodes only, and "give
    -O select_tf_ops=true" is the part a user needs. Called without a job (``edgeconv inspect``,
    the operator-coverage page), the list is returned as the hook's contract says.
    """
    if model.form != "onnx":
        return []
    found = find(model, bool((getattr(job, "options", None) or {}).get("select_tf_ops")))
    hard = [u for u in found if not u.fallback]
    if hard and job is not None:
        reasons = list(dict.fromkeys(f"{u.op_type}: {u.reason}" for u in hard))
        raise UnsupportedOperators("tflite", [(u.node, u.op_type) for u in hard], stage="precheck",
                                   hint="; ".join(reasons[:4]))
    if job is not None and hasattr(job, "status"):
        from collections import Counter

        hist = Counter(n.op_type for n in iter_nodes(model.obj.graph))
        job.status(f"pre-check: {sum(hist.values())} nodes, {len(hist)} op types, all converted by onnx2tf")
    return found

