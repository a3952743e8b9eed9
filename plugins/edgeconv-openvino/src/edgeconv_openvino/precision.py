"""What an OpenVINO IR computes at which precision: the share of its compute at the precision asked for.

int8: a compute op (Convolution, GroupConvolution, ConvolutionBackpropData, MatMul, ...) is int8 when its data input
comes from a FakeQuantize and its weights are int8 (NNCF stores them as an i8/u8 Constant -> Convert -> Multiply,
or a FakeQuantize on a constant); any other op counts int8 when one of its inputs comes from a FakeQuantize. fp16: a
compute op whose weights are stored float16 (``compress_to_fp16``: an f16 Constant -> Convert). The bodies of If,
Loop and TensorIterator ops are walked too (a Loop body counted once). MACs come from the ops' static shapes (a
dynamic axis counts as 1: per sample).

The result has the format of ``edgeconv.sensitivity.precision_share`` (the ONNX side), so one rule
(``share_failure``) judges every target.
"""

from __future__ import annotations

from typing import Any

from edgeconv.plugin import share_record

COMPUTE = {"Convolution": "conv", "GroupConvolution": "gconv", "ConvolutionBackpropData": "convT",
           "GroupConvolutionBackpropData": "gconvT", "MatMul": "matmul", "DeformableConvolution": "conv"}
_NOT_COMPUTE = {"Constant", "Parameter", "Result", "Convert", "Reshape", "Transpose", "Squeeze", "Unsqueeze",
                "FakeQuantize", "FakeConvert", "ShapeOf", "Gather", "Concat", "StridedSlice", "Slice", "Split",
                "VariadicSplit", "Broadcast", "Tile", "Identity", "If", "Loop", "TensorIterator"}
_WEIGHT_PATH = {"Convert", "Subtract", "Multiply", "Reshape", "Transpose", "Unsqueeze", "Squeeze", "FakeQuantize",
                "FakeConvert"}
_DATA_PATH = {"Reshape", "Transpose", "Squeeze", "Unsqueeze", "Convert", "Concat", "StridedSlice", "Gather"}
SUBGRAPH_OPS = {"If": 2, "Loop": 1, "TensorIterator": 1}


def _dims(port: Any) -> list[int]:
    ps = port.get_partial_shape()
    if ps.rank.is_dynamic:
        return []
    return [d.get_length() if d.is_static else 1 for d in ps]


def _prod(dims: list[int]) -> int:
    out = 1
    for d in dims:
        out *= max(int(d), 1)
    return out


def _weight_origin(value: Any) -> tuple[str | None, Any]:
    """(element type of the constant the weights come from, the node) through the decompression subgraph."""
    node = value.get_node()
    for _ in range(8):
        kind = node.get_type_name()
        if kind == "Constant":
            return node.get_output_element_type(0).get_type_name(), node
        if kind not in _WEIGHT_PATH or node.get_input_size() == 0:
            return None, node
        if kind == "FakeQuantize" and node.input_value(0).get_node().get_type_name() in ("Constant", "Convert"):
            return "fq", node
        node = node.input_value(0).get_node()
    return None, node


def _from_fake_quantize(value: Any) -> bool:
    node = value.get_node()
    for _ in range(6):
        kind = node.get_type_name()
        if kind == "FakeQuantize":
            return True
        if kind not in _DATA_PATH or node.get_input_size() == 0:
            return False
        node = node.input_value(0).get_node()
    return False


def op_macs(op: Any) -> int:
    kind = COMPUTE.get(op.get_type_name())
    if kind is None or op.get_input_size() < 2:
        return 0
    w = _dims(op.input(1))
    if kind in ("conv", "convT"):
        per = _prod(w[1:]) if len(w) > 1 else 0
        return per * (_prod(_dims(op.input(0))) if kind == "convT" else _prod(_dims(op.output(0))))
    if kind in ("gconv", "gconvT"):  # weights [G, O/G, I/G, k...]
        per = _prod(w[2:]) if len(w) > 2 else 0
        return per * (_prod(_dims(op.input(0))) if kind == "gconvT" else _prod(_dims(op.output(0))))
    a = _dims(op.input(0))
    transpose_a = bool(op.get_attributes().get("transpose_a", False))
    k = (a[-2] if transpose_a and len(a) >= 2 else a[-1]) if a else 0
    return _prod(_dims(op.output(0))) * k


def _at_precision(op: Any, requested: str) -> bool:
    kind = op.get_type_name()
    if requested == "int8":
        if kind in COMPUTE:
            weights, _ = _weight_origin(op.input_value(1))
            weights_int8 = weights in ("i8", "u8", "i4", "u4", "fq") or _from_fake_quantize(op.input_value(1))
            return _from_fake_quantize(op.input_value(0)) and weights_int8
        return any(_from_fake_quantize(op.input_value(i)) for i in range(op.get_input_size()))
    if requested == "fp16":
        if kind in COMPUTE:
            weights, _ = _weight_origin(op.input_value(1))
            return weights == "f16"
        return True  # element-wise ops carry no weights: what they compute in is the runtime's hint
    return True


def _constant_paths(model: Any) -> set[str]:
    """The ops computed from constants only (weight decompression: Convert -> Subtract -> Multiply of an int8
    constant): not the model's compute."""
    const: set[str] = set()  # by the ops' unique names: the Python wrappers are new objects at every call
    for op in model.get_ordered_ops():
        kind = op.get_type_name()
        if kind == "Constant" or (kind not in ("Parameter", "ReadValue") and op.get_input_size() > 0 and all(
                op.input_value(i).get_node().get_name() in const for i in range(op.get_input_size()))):
            const.add(op.get_name())
    return const


def _ops(model: Any, depth: int = 0, owner: str = ""):
    const = _constant_paths(model)
    for op in model.get_ordered_ops():
        if op.get_name() in const:
            continue
        yield op, depth, owner
        bodies = SUBGRAPH_OPS.get(op.get_type_name(), 0)
        for i in range(bodies):
            try:
                body = op.get_function(i)
            except Exception:
                continue
            yield from _ops(body, depth + 1, owner or f"{op.get_type_name()} node {op.get_friendly_name()!r}")


def ir_share(ov_model: Any, requested: str, kept_float: set[str] | frozenset[str] = frozenset()) -> dict[str, Any]:
    """The share of the IR's compute at ``requested`` (int8 or fp16), subgraphs included; ``kept_float``: OpenVINO op
    names kept in float on purpose (NNCF's ignored scope)."""
    count = {k: {"total": 0, "at_precision": 0, "kept_float": 0, "in_subgraphs": 0, "in_subgraphs_at_precision": 0}
             for k in ("nodes", "macs")}
    floats: list[tuple[int, str, str, str]] = []
    holders: dict[str, int] = {}
    for op, depth, owner in _ops(ov_model):
        if op.get_type_name() in _NOT_COMPUTE and op.get_type_name() not in COMPUTE:
            continue
        name = op.get_friendly_name()
        macs = op_macs(op)
        ok = _at_precision(op, requested)
        for key, value in (("nodes", 1), ("macs", macs)):
            c = count[key]
            c["total"] += value
            if ok:
                c["at_precision"] += value
            elif name in kept_float:
                c["kept_float"] += value
            if depth:
                c["in_subgraphs"] += value
                c["in_subgraphs_at_precision"] += value if ok else 0
        if not ok and name not in kept_float:
            floats.append((macs, name, op.get_type_name(), owner))
            if depth and macs:
                holders[owner] = holders.get(owner, 0) + macs
    return share_record(requested, count, floats, holders, counted_in="OpenVINO IR")


def has_subgraphs(ov_model: Any) -> list[str]:
    """The If / Loop / TensorIterator ops of the main graph."""
    return [f"{op.get_type_name()} {op.get_friendly_name()!r}" for op in ov_model.get_ordered_ops()
            if op.get_type_name() in SUBGRAPH_OPS]
