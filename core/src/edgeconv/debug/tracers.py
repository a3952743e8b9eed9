"""Which tracer exposes an artifact's intermediate tensors: one per artifact form, registered by the plugin that owns
the form's runner (``RunnerSpec.tracer``, a ``"module:attr"`` reference, loaded only when ``debug layers`` runs).

A tracer is an object (duck-typed; docs/debug.md#writing-a-tracer) with

- ``name``: the runtime it runs (``"onnxruntime"``);
- ``unavailable(model, options) -> str | None``: why this artifact's tensors cannot be exposed on this host (None:
  they can), said plainly (the runtime is not installed, the device is not here, the artifact lacks its name map);
- ``trace(model, reference, feeds, *, options, threads=None, golden=None) -> dict``: run the artifact (``model``, a
  ``Model`` of its form, the runner settings of its manifest in ``options``) on ``feeds`` (in the artifact's IO
  contract) with every tensor it can expose, and say which reference tensor each one is: ``{"runtime": str,
  "tensors": [per feed {reference tensor name: array}], "map": {reference tensor name: {"name": its name in the
  artifact, "op": the artifact's op, "fused": [reference nodes computed with it], "layout": "channels_last" | None,
  "scale", "zero_point", "axis": dequantization}}, "notes": [...]}``. ``reference`` is the ONNX ``ModelProto`` the
  target received. With ``golden`` (per feed, reference tensor name -> array) the tracer runs *isolated*: each op
  or fused group fed the reference's tensors instead of its own (only when ``isolated`` is True);
- ``isolated``: whether ``trace`` takes ``golden``.
"""

from __future__ import annotations

from typing import Any

# Why some runtimes cannot show their tensors at all, and what the vendor offers instead: added to the plain "the
# <runner> runner registers no tracer" (the reason is the runtime's, so it is said once here for every host).
WHY_NOT: dict[str, str] = {
    "tensorrt": "a TensorRT plan runs only on an NVIDIA GPU and its layers are fused when it is built; on a GPU, "
                "Polygraphy's --trt-outputs mark all rebuilds it with every layer an output",
    "om": "an Ascend .om runs only on an Ascend NPU with CANN; there, msaccucmp compares its dumps",
    "pte": "an ExecuTorch .pte delegates the graph to XNNPACK as one blob whose intermediate tensors the runtime "
           "does not expose",
}


def find(form: str) -> tuple[Any | None, str | None]:
    """``(tracer, None)`` for an artifact form (its runner's ``tracer``), or ``(None, why not)``."""
    from ..plugins import registry
    from ..records import load_ref

    spec = registry().runners.get(form)
    extra = f"; {WHY_NOT[form]}" if form in WHY_NOT else ""
    if spec is None:
        return None, (f"no runner is registered for {form!r} artifacts: the plugin that makes them is not installed "
                      f"(edgeconv plugins){extra}")
    if spec.tracer is None:
        return None, (f"the {spec.name} runner registers no tracer: edgeconv cannot expose the intermediate tensors "
                      f"of {form!r} artifacts{extra}")
    return (load_ref(spec.tracer) if isinstance(spec.tracer, str) else spec.tracer), None


def known() -> dict[str, str]:
    """Every registered artifact form and its tracer reference, or why it has none (for docs and ``--help``)."""
    from ..plugins import registry

    out = {}
    for form, spec in sorted(registry().runners.items()):
        out[form] = spec.tracer if isinstance(spec.tracer, str) else (
            repr(spec.tracer) if spec.tracer is not None else f"none ({find(form)[1]})")
    return out
