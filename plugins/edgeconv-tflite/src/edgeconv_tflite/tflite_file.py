"""Read a ``.tflite`` flatbuffer without running it: operator histogram, Flex ops, signature IO.

The operator table comes from LiteRT's flatbuffer schema (``ai_edge_litert.schema_py_generated``),
so a model with Flex ops (which no interpreter here can load) can still be described. The
signature IO (names, shapes, dtypes, quantization) comes from the LiteRT interpreter, which
reads it without allocating tensors.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from edgeconv.plugin import share_record

SIGNATURE = "serving_default"
NODE_MAP_SUFFIX = ".onnx_nodes.json"  # beside the .tflite: which ONNX node each op computes (export.py)


def _builtin_names() -> dict[int, str]:
    from ai_edge_litert import schema_py_generated as schema

    ops = schema.BuiltinOperator
    return {v: k for k, v in vars(ops).items() if k.isupper() and isinstance(v, int)}


def operators(path: str | Path) -> Counter[str]:
    """How many times each operator occurs (all subgraphs). Custom ops by their custom code
    (Flex ops are custom ops named ``Flex<TFOp>``)."""
    from ai_edge_litert import schema_py_generated as schema

    buf = Path(path).read_bytes()
    model = schema.Model.GetRootAs(buf, 0)
    names = _builtin_names()
    codes = []
    for i in range(model.OperatorCodesLength()):
        oc = model.OperatorCodes(i)
        code = max(oc.BuiltinCode(), oc.DeprecatedBuiltinCode())
        custom = oc.CustomCode()
        if custom:
            codes.append(custom.decode(errors="replace"))
        else:
            codes.append(names.get(code, f"BUILTIN_{code}"))
    hist: Counter[str] = Counter()
    for s in range(model.SubgraphsLength()):
        sub = model.Subgraphs(s)
        for o in range(sub.OperatorsLength()):
            hist[codes[sub.Operators(o).OpcodeIndex()]] += 1
    return hist


def flex_ops(hist: Counter[str]) -> list[str]:
    return sorted(op for op in hist if op.startswith("Flex"))


def signature_io(path: str | Path) -> dict[str, Any]:
    """``{"inputs": {key: detail}, "outputs": {key: detail}, "signature": name}`` of the model's
    serving signature (else its only one); each detail holds ``index``, ``shape`` (the signature's,
    -1 for a dynamic axis), ``dtype`` (numpy name), and ``scale``/``zero_point`` when quantized."""
    from ai_edge_litert.interpreter import Interpreter

    from .quiet import native_output

    with native_output(stdout=False):
        interp = Interpreter(model_path=str(path))
    sigs = interp.get_signature_list()
    if not sigs:
        ins = {d["name"]: _detail(d) for d in interp.get_input_details()}
        outs = {d["name"]: _detail(d) for d in interp.get_output_details()}
        return {"signature": None, "inputs": ins, "outputs": outs}
    key = SIGNATURE if SIGNATURE in sigs else next(iter(sigs))
    runner = interp.get_signature_runner(key)
    ins = {k: _detail(d) for k, d in runner.get_input_details().items()}
    outs = {k: _detail(d) for k, d in runner.get_output_details().items()}
    # keep the signature's declared order (the details dicts may be sorted)
    ins = {k: ins[k] for k in sigs[key]["inputs"] if k in ins}
    outs = {k: outs[k] for k in sigs[key]["outputs"] if k in outs}
    return {"signature": key, "inputs": ins, "outputs": outs}


def _detail(d: dict[str, Any]) -> dict[str, Any]:
    import numpy as np

    sig = d.get("shape_signature")
    shape = [int(x) for x in (sig if sig is not None and len(sig) else d["shape"])]
    out = {"index": int(d["index"]), "tensor": d["name"], "shape": shape, "dtype": np.dtype(d["dtype"]).name}
    scale, zero = d.get("quantization") or (0.0, 0)
    if scale and np.dtype(d["dtype"]).kind in "iu":
        out["scale"] = float(scale)
        out["zero_point"] = int(zero)
    return out


# -- every operator with its tensors (for the precision share and the ONNX node mapping) -------------------------------
# TensorType numbers of LiteRT's schema
FLOAT_TYPES = {0: "float32", 1: "float16", 11: "float64", 16: "bfloat16"}
INT8_TYPES = {9: "int8", 3: "uint8", 7: "int16"}
_TYPE_NAMES = {0: "float32", 1: "float16", 2: "int32", 3: "uint8", 4: "int64", 6: "bool", 7: "int16", 9: "int8",
               10: "float64", 16: "bfloat16"}


def _model(source: str | Path | bytes) -> Any:
    from ai_edge_litert import schema_py_generated as schema

    buf = source if isinstance(source, (bytes, bytearray)) else Path(source).read_bytes()
    return schema.Model.GetRootAs(buf, 0)


def op_table(source: str | Path | bytes) -> list[dict[str, Any]]:
    """Every operator of every subgraph: ``{"subgraph", "index", "op", "inputs": [tensor], "outputs": [tensor],
    "calls": [subgraph indices an IF/WHILE/CALL op runs]}``, each tensor ``{"name", "type", "shape", "constant"}``."""
    from ai_edge_litert import schema_py_generated as schema

    model = _model(source)
    names = _builtin_names()
    codes = []
    for i in range(model.OperatorCodesLength()):
        oc = model.OperatorCodes(i)
        custom = oc.CustomCode()
        codes.append(custom.decode(errors="replace") if custom else
                     names.get(max(oc.BuiltinCode(), oc.DeprecatedBuiltinCode()), "BUILTIN"))
    out = []
    for s in range(model.SubgraphsLength()):
        sub = model.Subgraphs(s)

        def tensor(i: int, sub: Any = sub) -> dict[str, Any] | None:
            if i < 0:
                return None
            t = sub.Tensors(i)
            buf = model.Buffers(t.Buffer()) if t.Buffer() > 0 else None
            return {"index": i, "name": (t.Name() or b"").decode(errors="replace"), "type": t.Type(),
                    "shape": [int(d) for d in t.ShapeAsNumpy()] if t.ShapeLength() else [],
                    "constant": bool(buf is not None and (buf.DataLength() > 0 or buf.Size() > 0))}

        for o in range(sub.OperatorsLength()):
            op = sub.Operators(o)
            calls = []
            kind = codes[op.OpcodeIndex()]
            options = op.BuiltinOptions()
            if kind in ("IF", "WHILE", "CALL_ONCE") and options is not None:
                cls = {"IF": schema.IfOptions, "WHILE": schema.WhileOptions, "CALL_ONCE": schema.CallOnceOptions}[kind]
                opt = cls()
                opt.Init(options.Bytes, options.Pos)
                for attr in ("ThenSubgraphIndex", "ElseSubgraphIndex", "CondSubgraphIndex", "BodySubgraphIndex",
                             "InitSubgraphIndex"):
                    if hasattr(opt, attr):
                        calls.append(int(getattr(opt, attr)()))
            out.append({"subgraph": s, "index": o, "op": kind,
                        "inputs": [tensor(int(i)) for i in (op.InputsAsNumpy() if op.InputsLength() else [])],
                        "outputs": [tensor(int(i)) for i in (op.OutputsAsNumpy() if op.OutputsLength() else [])],
                        "calls": calls})
    return out


def signature_outputs(source: str | Path | bytes) -> dict[str, tuple[int, int]]:
    """Signature output key -> (subgraph, tensor index)."""
    model = _model(source)
    out = {}
    for i in range(model.SignatureDefsLength()):
        sig = model.SignatureDefs(i)
        for j in range(sig.OutputsLength()):
            o = sig.Outputs(j)
            out[(o.Name() or b"").decode()] = (int(sig.SubgraphIndex()), int(o.TensorIndex()))
    return out


def op_macs(op: dict[str, Any]) -> int:
    """Multiply-accumulates of a CONV_2D / DEPTHWISE_CONV_2D / TRANSPOSE_CONV / FULLY_CONNECTED / BATCH_MATMUL /
    CONV_3D from its tensor shapes (a dynamic axis counts as 1)."""
    def prod(dims: list[int]) -> int:
        n = 1
        for d in dims:
            n *= max(int(d), 1)
        return n

    kind, ins, outs = op["op"], op["inputs"], op["outputs"]
    if not outs or outs[0] is None or len(ins) < 2:
        return 0
    out = prod(outs[0]["shape"])
    if kind == "TRANSPOSE_CONV":  # inputs: output shape, weights [O, kh, kw, I], data
        w, x = ins[1], ins[2] if len(ins) > 2 else None
        return prod(w["shape"][:3]) * prod(x["shape"]) if w and x else 0
    w = ins[1]
    if w is None or not w["shape"]:
        return 0
    if kind in ("CONV_2D", "CONV_3D"):  # [O, kh, kw, I] / [kd, kh, kw, I, O]
        per = prod(w["shape"][1:]) if kind == "CONV_2D" else prod(w["shape"][:-1])
        return out * per
    if kind == "DEPTHWISE_CONV_2D":  # [1, kh, kw, C*M]
        return out * prod(w["shape"][1:3])
    if kind == "FULLY_CONNECTED":  # [O, I]
        return out * int(w["shape"][-1])
    if kind == "BATCH_MATMUL":
        a = ins[0]
        return out * (int(a["shape"][-1]) if a and a["shape"] else 1)
    return 0


_NOT_COMPUTE = {"QUANTIZE", "DEQUANTIZE", "RESHAPE", "TRANSPOSE", "SQUEEZE", "EXPAND_DIMS", "CONCATENATION", "PAD",
                "PADV2", "GATHER", "GATHER_ND", "SLICE", "STRIDED_SLICE", "SPLIT", "SPLIT_V", "PACK", "UNPACK", "SHAPE",
                "CAST", "TILE", "BROADCAST_TO", "IF", "WHILE", "CALL_ONCE", "DEPTH_TO_SPACE", "SPACE_TO_DEPTH"}
_MAC_OPS = {"CONV_2D", "CONV_3D", "DEPTHWISE_CONV_2D", "TRANSPOSE_CONV", "FULLY_CONNECTED", "BATCH_MATMUL"}


def _at_precision(op: dict[str, Any], requested: str, producers: dict[tuple[int, int], dict[str, Any]]) -> bool:
    """int8: the op's activation inputs are int8/uint8/int16 tensors; int8-dynamic: its weights are int8; fp16: its
    weights are stored float16 (a DEQUANTIZE of a float16 constant: TFLite widens them to float32 at load, so this is
    storage, not arithmetic -- the report says so)."""
    if requested == "int8":
        acts = [t for t in op["inputs"] if t is not None and not t["constant"]
                and (t["type"] in INT8_TYPES or t["type"] in FLOAT_TYPES)]
        return bool(acts) and all(t["type"] in INT8_TYPES for t in acts)
    w = op["inputs"][1] if len(op["inputs"]) > 1 else None
    if op["op"] == "TRANSPOSE_CONV":
        w = op["inputs"][1]
    if requested == "int8-dynamic":
        return w is not None and w["type"] in INT8_TYPES
    if requested == "fp16":
        if op["op"] not in _MAC_OPS:
            return True
        if w is None:
            return False
        if w["type"] == 1:
            return True
        src = producers.get((op["subgraph"], w["index"]))
        return bool(src and src["op"] == "DEQUANTIZE" and src["inputs"] and src["inputs"][0]
                    and src["inputs"][0]["type"] == 1)
    return True


def precision_share(source: str | Path | bytes, requested: str, kept_tensors: set[str] | frozenset[str] = frozenset()
                    ) -> dict[str, Any]:
    """The share of a .tflite's compute at ``requested`` (``int8``: integer activations; ``int8-dynamic``: int8
    weights), every subgraph walked (an IF's branches, a WHILE's body: counted once), in the format of
    ``edgeconv.sensitivity.precision_share``. ``kept_tensors``: output tensor names of ops kept float on purpose."""
    ops = op_table(source)
    producers = {(op["subgraph"], t["index"]): op for op in ops for t in op["outputs"] if t is not None}
    holder = {}
    for op in ops:
        for s in op["calls"]:
            holder.setdefault(s, f"{op['op']} op {op['index']} of subgraph {op['subgraph']}")
    count = {k: {"total": 0, "at_precision": 0, "kept_float": 0, "in_subgraphs": 0, "in_subgraphs_at_precision": 0}
             for k in ("nodes", "macs")}
    floats, holders = [], {}
    for op in ops:
        if op["op"] in _NOT_COMPUTE:
            continue
        name = next((t["name"] for t in op["outputs"] if t is not None), "")
        macs = op_macs(op)
        ok = _at_precision(op, requested, producers)
        kept = name in kept_tensors
        inside = op["subgraph"] > 0
        for key, value in (("nodes", 1), ("macs", macs)):
            c = count[key]
            c["total"] += value
            c["at_precision"] += value if ok else 0
            c["kept_float"] += value if (kept and not ok) else 0
            c["in_subgraphs"] += value if inside else 0
            c["in_subgraphs_at_precision"] += value if (inside and ok) else 0
        if not ok and not kept:
            owner = holder.get(op["subgraph"], "")
            floats.append((macs, name or f"op {op['index']}", op["op"], owner))
            if inside and macs:
                holders[owner] = holders.get(owner, 0) + macs
    return share_record(requested, count, floats, holders, counted_in=".tflite flatbuffer")


def onnx_nodes_of(ops: list[dict[str, Any]], layer_nodes: dict[str, str], output_nodes: dict[tuple[int, int], str]
                  ) -> dict[tuple[int, int], list[str]]:
    """(subgraph, op index) -> the ONNX nodes it computes: through the Keras layer names in its output tensors' names
    (onnx2tf's layers, ``model_N/<layer>/<op>``, fused ones joined with ``;``), or, for an op that writes a signature
    output (named after the signature, not a layer), the ONNX node that produces that output."""
    out: dict[tuple[int, int], list[str]] = {}
    for op in ops:
        found: list[str] = []
        for t in op["outputs"]:
            if t is None:
                continue
            for part in t["name"].split(";"):
                for piece in part.split("/"):
                    node = layer_nodes.get(piece)
                    if node and node not in found:
                        found.append(node)
            node = output_nodes.get((op["subgraph"], t["index"]))
            if node and node not in found:
                found.append(node)
        if found:
            out[(op["subgraph"], op["index"])] = found
    return out


def type_name(number: int) -> str:
    return _TYPE_NAMES.get(number, f"type{number}")
