"""Run ``.tflite`` models with the LiteRT interpreter (``ai_edge_litert``), for verification and bench.

Inputs and outputs are found through the model's serving signature and keyed by the source's
names (``tensor_names`` maps a source name to its signature key when the two differ), so a feed
built from the artifact's IO contract runs as is. An input of another shape than the one
allocated (a dynamic batch) resizes the interpreter first.
"""

from __future__ import annotations

import os
import re
from typing import Any

from edgeconv.plugin import BadInput, Runner, ToolchainFailed

from .quiet import native_output


class LiteRTRunner(Runner):
    name = "litert"
    modules = ("ai_edge_litert",)

    def __init__(self, model, threads: int | None = None, num_threads: int | None = None, xnnpack: bool = True,
                 tensor_names: dict[str, str] | None = None, **options: Any) -> None:
        super().__init__(model, **options)
        self.threads = int(threads or num_threads or os.cpu_count() or 1)
        self.xnnpack = bool(xnnpack)
        self.to_key = dict(tensor_names or {})
        self.interp = None

    def activate(self) -> None:
        from importlib.metadata import version

        import numpy as np
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

        self._np = np

        resolver = OpResolverType.AUTO if self.xnnpack else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        try:
            with native_output(stdout=False):  # "INFO: Created TensorFlow Lite XNNPACK delegate for CPU."
                interp = Interpreter(model_path=str(self.model.path), num_threads=self.threads,
                                     experimental_op_resolver_type=resolver)
                interp.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            text = " ".join(str(exc).split())[:300]
            raise BadInput(f"LiteRT cannot load the model: {text}", file=self.model.path, stage="verify") from None
        sigs = interp.get_signature_list()
        if sigs:
            key = "serving_default" if "serving_default" in sigs else next(iter(sigs))
            sr = interp.get_signature_runner(key)
            ins = {k: d["index"] for k, d in sr.get_input_details().items()}
            outs = {k: d["index"] for k, d in sr.get_output_details().items()}
            out_order = [k for k in sigs[key]["outputs"] if k in outs]
        else:  # no signature: the tensors' own names, in the model's order
            ins = {d["name"]: d["index"] for d in interp.get_input_details()}
            outs = {d["name"]: d["index"] for d in interp.get_output_details()}
            out_order = list(outs)
        from_key = {k: n for n, k in self.to_key.items()}
        self.inputs = {from_key.get(k, k): idx for k, idx in ins.items()}
        self.outputs = [(from_key.get(k, k), outs[k]) for k in out_order]
        # the allocated shapes from the tensor details: get_tensor() on an input not yet set crashes LiteRT
        # for a string tensor (a segfault; found by the operator coverage on test_equal_string)
        allocated = {d["index"]: tuple(int(x) for x in d["shape"]) for d in interp.get_tensor_details()
                     if d["index"] in set(self.inputs.values())}
        self.shapes = {idx: allocated[idx] for idx in self.inputs.values()}
        self.interp = interp
        self.info = {
            "runtime": f"ai_edge_litert {version('ai-edge-litert')} (LiteRT interpreter)",
            "device": "cpu",
            "threads": self.threads,
            "delegate": "XNNPACK (default)" if self.xnnpack else "none (builtin kernels)",
            "host": "local",
        }

    def infer(self, feed):
        interp = self.interp
        try:
            arrays = [(idx, feed[name]) for name, idx in self.inputs.items()]
        except KeyError as exc:
            raise BadInput(f"no input {exc.args[0]!r} in the feed (it has: {', '.join(feed)})", stage="verify") from None
        resized = False
        for idx, x in arrays:
            if x.shape != self.shapes[idx]:
                interp.resize_tensor_input(idx, x.shape)
                self.shapes[idx] = x.shape
                resized = True
        if resized:
            interp.allocate_tensors()
        for idx, x in arrays:
            interp.set_tensor(idx, x if x.flags.c_contiguous else self._np.ascontiguousarray(x))
        try:
            interp.invoke()
        except RuntimeError as exc:
            raise kernel_failure(exc, self.model.path) from exc
        return {name: interp.get_tensor(idx) for name, idx in self.outputs}

    def deactivate(self) -> None:
        self.interp = None


_NODE = re.compile(r"Node number (\d+) \((\w+)\) failed to (?:invoke|prepare)")
_KERNEL = re.compile(r"([\w/.-]+\.cc):\d+ ([^\n]+?) was not true")


def kernel_failure(exc: BaseException, path: Any) -> ToolchainFailed:
    """A LiteRT kernel that fails on these inputs, as a one-line error naming the .tflite op, the ONNX node it came
    from (the ``.onnx_nodes.json`` the exporter writes beside the model) and the float fallback that avoids it: the
    node and the element-wise nodes that feed it (a float op fed int8-rounded values keeps the rounding).

    Found on int8 models: ``div.cc ... data[i] != zero_point was not true ... Node number 22 (DIV) failed to invoke``:
    the int8 DIV kernel refuses a divisor that quantizes to zero."""
    text = " ".join(str(exc).split())
    m = _NODE.search(text)
    if m is None:
        return ToolchainFailed(f"LiteRT failed running the model: {text[:300]}", stage="verify")
    index, op = int(m.group(1)), m.group(2)
    check = _KERNEL.search(text)
    why = f" ({check.group(1)}: {check.group(2).strip()})" if check else ""
    nodes, feeders = _onnx_nodes(path, index)
    where = f", from ONNX node(s) {', '.join(repr(n) for n in nodes)}" if nodes else ""
    cause = f"LiteRT's {op} kernel failed on op {index} of the .tflite{where}{why}"
    if op == "DIV" and "zero_point" in text:
        cause += ": the int8 divisor rounds to zero"
    keep = list(dict.fromkeys([*nodes, *feeders]))
    hint = (f"keep it in float with what feeds it: -O keep_float={','.join(keep)} (or --precision auto searches the "
            "layers itself)" if keep else "-O int8_fallback=true, or -p int8-dynamic / fp16")
    return ToolchainFailed(cause, stage="verify", hint=hint)


def _onnx_nodes(path: Any, index: int, subgraph: int = 0) -> tuple[list[str], list[str]]:
    """The ONNX nodes an op of the .tflite computes, and the element-wise nodes producing their inputs, from the map
    the exporter wrote beside it (none: [], [])."""
    import json
    from pathlib import Path

    if path is None:
        return [], []
    from .tflite_file import NODE_MAP_SUFFIX

    sidecar = Path(path).with_name(Path(path).stem + NODE_MAP_SUFFIX)
    try:
        data = json.loads(sidecar.read_text())
        nodes = [str(n) for n in (data["ops"].get(f"{subgraph}:{index}") or [])][:4]
        feeders = [str(p) for n in nodes for p in (data.get("input_producers") or {}).get(n, [])]
        return nodes, feeders[:6]
    except (OSError, ValueError, KeyError, AttributeError, TypeError):
        return [], []


def tuning(threads: int | None = None) -> list[dict[str, Any]]:
    """The runner settings ``--precision auto`` may time for a .tflite (the first: the artifact's own): LiteRT's
    default XNNPACK delegate or its reference kernels; thread counts only when the user gave none and there is more
    than one core."""
    out: list[dict[str, Any]] = [{}, {"xnnpack": False}]
    if threads is None and (os.cpu_count() or 1) > 1:
        out.append({"num_threads": 1})
    return out
