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

SIGNATURE = "serving_default"


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
