"""The OpenVINO tracer (``edgeconv debug layers`` on an IR; docs/debug.md): every IR op output that carries a
reference (ONNX) tensor name, exposed as an extra output of the model and compiled the way the runner compiles it.

OpenVINO's ONNX frontend keeps each ONNX tensor name on the output port of the op that computes it (a fused group --
a Conv and its bias Add, a MatMul and its Add -- carries the name on its last op), and the IR keeps the port names.
Ops with no name of their own (the helper ops of a decomposition) are not traced: their group is matched to its
last, named tensor. In an INT8 IR (NNCF), a named tensor that feeds a ``FakeQuantize`` is read after it: the
fake-quantized values the next layer receives.

Exposing a tensor adds an output to the compiled model, which can keep the CPU plugin from fusing that op with the
next one: the accumulated trace is the IR's arithmetic up to those fusions (the notes say how many tensors were
exposed). OpenVINO offers no way to feed an op the reference's inputs: no isolated trace.

Imports only ``edgeconv.plugin`` from edgeconv (and this plugin's own runner settings); openvino inside functions.
"""

from __future__ import annotations

from typing import Any

_NOT_TRACED = {"Parameter", "Result", "Constant"}


def points(ov_model: Any, reference: Any) -> list[tuple[str, Any, dict[str, Any]]]:
    """``(reference tensor, output port to expose, map entry)`` for every reference node output an op of the IR
    carries as a tensor name (the port after a FakeQuantize when one reads it)."""
    wanted = {t for n in reference.graph.node if n.op_type != "Constant" for t in n.output if t}
    found: dict[str, tuple[Any, dict[str, Any]]] = {}
    for op in ov_model.get_ordered_ops():
        if op.get_type_name() in _NOT_TRACED:
            continue
        for port in op.outputs():
            names = port.get_names() & wanted
            if not names:
                continue
            read, entry = port, {"op": f"{op.get_type_name()} {op.get_friendly_name()}"}
            fq = [t.get_node() for t in port.get_target_inputs() if t.get_node().get_type_name() == "FakeQuantize"]
            if len(fq) == 1:
                read = fq[0].output(0)
                entry["op"] += f" -> FakeQuantize {fq[0].get_friendly_name()}"
            for name in names:
                found[name] = (read, {"name": name, **entry})
    order = [t for n in reference.graph.node for t in n.output if t in found]
    return [(t, found[t][0], found[t][1]) for t in dict.fromkeys(order)]


class OpenVINOTracer:
    name = "openvino"
    isolated = False

    def unavailable(self, model: Any, options: dict[str, Any] | None = None) -> str | None:
        import importlib.util

        if importlib.util.find_spec("openvino") is None:
            return "OpenVINO is not installed"
        import openvino as ov

        from .runner import available

        device = str((options or {}).get("device") or "CPU")
        if not available(ov.Core(), device):
            return f"the IR was built for OpenVINO device {device}, which is not on this host"
        return None

    def trace(self, model: Any, reference: Any, feeds: list[dict[str, Any]], *, options: dict[str, Any] | None = None,
              threads: int | None = None, golden: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        import numpy as np
        import openvino as ov

        from edgeconv.plugin import BadInput

        from .runner import compile_config

        if golden is not None:
            raise BadInput("OpenVINO cannot run an op on the reference's inputs (no isolated trace)", stage="debug")
        opts = dict(options or {})
        core = ov.Core()
        ov_model = core.read_model(str(model.path))
        found = points(ov_model, reference)
        added = ov_model.add_outputs([port for _, port, _ in found])  # an existing output comes back as it is
        where = [next(i for i, o in enumerate(ov_model.outputs)
                      if o.get_node() == a.get_node() and o.get_index() == a.get_index()) for a in added]
        device = str(opts.get("device") or "CPU")
        config = compile_config(device, str(opts.get("precision_hint") or "f32"),
                                str(opts.get("performance_hint") or "latency"), opts.get("num_streams"),
                                threads or opts.get("inference_num_threads"))
        compiled = core.compile_model(ov_model, device, config)
        request = compiled.create_infer_request()
        runs = []
        for feed in feeds:
            request.infer({k: np.ascontiguousarray(v) for k, v in feed.items()})
            runs.append({ref: np.array(request.get_output_tensor(i).data) for i, (ref, _, _) in zip(where, found, strict=True)})
        hint = compiled.get_property("INFERENCE_PRECISION_HINT")
        return {"runtime": f"openvino {ov.__version__.split('-')[0]} on {device} (precision hint "
                           f"{hint.to_string() if hasattr(hint, 'to_string') else hint})",
                "tensors": runs, "map": {ref: entry for ref, _, entry in found},
                "notes": [f"{len(found)} IR tensors exposed as extra outputs (the CPU plugin may not fuse an exposed "
                          "op with the next one)"]}


TRACER = OpenVINOTracer()
