"""A model of form ``onnx``, ``torch`` or ``tf`` as an ``openvino.Model``, IO names kept.

``openvino.convert_model`` takes each form directly (the route the core picks when the
source is torch or tf is therefore one step shorter than through ONNX):

- ``onnx``: the ``ModelProto`` is written to the job's scratch folder (convert_model takes
  a path, not a proto) and converted from there.
- ``torch``: ``convert_model(module, example_input=..., input=[shapes])``; an
  ExportedProgram is converted as it is (its shapes are its own).
- ``tf``: a SavedModel folder from its path, an in-memory ``tf.Module`` from its serving
  signature, a Keras model through a ``tf.function`` with the IO contract's input signature
  (explicit shapes: what Keras 3 needs).

Inputs and outputs then get the IO contract's names (by name when the converter kept
them, else by position), and dynamic axes stay dynamic (``-1``) unless ``--input-shape``
pinned them. A failed conversion's "unconverted operations" summary is parsed into
``Unsupported`` records for the pre-check.
"""

from __future__ import annotations

import contextlib
import io
import re
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

from edgeconv.plugin import BadInput, IOContract, Model, ToolchainFailed, Unsupported

# The pre-check converts torch/tf sources (there is no other way to ask OpenVINO about
# them); the exporter reuses that conversion when it gets the same object. One entry.
_CACHE: dict[str, Any] = {}
_SAVED: dict[str, Any] = {}  # the last ONNX proto written by onnx_file, and where


def partial_shape(dims: tuple[Any, ...]) -> list[int]:
    """A contract shape as convert_model wants it: named (dynamic) axes become -1."""
    return [d if isinstance(d, int) and d > 0 else -1 for d in dims]


def to_ov(model: Model, job: Any = None, *, use_cache: bool = True) -> tuple[Any, dict[str, Any]]:
    """Convert ``model`` to an ``openvino.Model`` whose IO names are the contract's."""
    if use_cache and _CACHE.get("obj") is model.obj and model.obj is not None:
        ov_model, info = _CACHE.pop("model"), _CACHE.pop("info")
        _CACHE.clear()
        return ov_model, {**info, "reused_from_precheck": True}
    started = time.perf_counter()
    if model.form == "onnx":
        ov_model, how = _from_onnx(model, job), "convert_model(onnx file)"
    elif model.form == "torch":
        ov_model, how = _from_torch(model)
    elif model.form == "tf":
        ov_model, how = _from_tf(model)
    else:
        raise BadInput(f"the openvino target cannot take a {model.form!r} model", stage="export")
    name_io(ov_model, model.io)
    return ov_model, {"from": model.form, "how": how, "seconds": round(time.perf_counter() - started, 3)}


def remember(model: Model, ov_model: Any, info: dict[str, Any]) -> None:
    _CACHE.clear()
    _CACHE.update({"obj": model.obj, "model": ov_model, "info": info})


def forget() -> None:
    """Drop what the pre-check kept for the exporter (when no export follows)."""
    _CACHE.clear()
    _SAVED.clear()


def onnx_file(model: Model, folder: Path) -> Path:
    """The ONNX model on disk in ``folder`` (external data beside it when > 2 GB)."""
    from edgeconv.plugin import save_onnx as save

    path = Path(folder) / "_openvino_input.onnx"
    # Written once per proto: the pre-check's file serves the exporter when no pass changed the
    # model (and saving a > 1.8 GB proto with external data twice would not work: onnx.save
    # moves the tensors out of the proto).
    if _SAVED.get("obj") is model.obj and _SAVED.get("path") == path and path.exists():
        return path
    save(model.obj, path)
    _SAVED.update(obj=model.obj, path=path)
    return path


def _from_onnx(model: Model, job: Any) -> Any:
    import openvino as ov

    shapes = {t.name: partial_shape(t.shape) for t in model.io.inputs}
    try:
        if job is not None:
            return ov.convert_model(str(onnx_file(model, job.scratch)), input=shapes or None)
        with tempfile.TemporaryDirectory(prefix="edgeconv-ov-") as tmp:
            return ov.convert_model(str(onnx_file(model, Path(tmp))), input=shapes or None)
    finally:
        _SAVED.clear()


def _from_torch(model: Model) -> tuple[Any, str]:
    import openvino as ov

    obj = model.obj
    kind = obj["kind"]
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        if kind == "exported":  # an ExportedProgram carries its own (dynamic) shapes
            return ov.convert_model(obj["module"]), "convert_model(ExportedProgram)"
        shapes = [partial_shape(t.shape) for t in model.io.inputs]
        module = obj["module"] if kind == "torchscript" else obj["runnable"]
        return (ov.convert_model(module, example_input=tuple(obj["example"]), input=shapes or None),
                f"convert_model(nn.Module, example_input){' [TorchScript]' if kind == 'torchscript' else ''}")


def _from_tf(model: Model) -> tuple[Any, str]:
    from edgeconv.plugin import quiet_tensorflow

    quiet_tensorflow()
    import tensorflow as tf

    import openvino as ov

    kind, obj = model.obj["kind"], model.obj["model"]
    if kind == "savedmodel" and model.path is not None:
        return ov.convert_model(str(model.path)), "convert_model(SavedModel folder)"
    if kind == "savedmodel":
        return ov.convert_model(obj.signatures["serving_default"]), "convert_model(serving signature)"
    spec = [tf.TensorSpec([d if isinstance(d, int) else None for d in t.shape], t.dtype, name=t.name)
            for t in model.io.inputs]

    @tf.autograph.experimental.do_not_convert
    def call(*args):
        return obj(list(args) if len(args) > 1 else args[0], training=False)

    return ov.convert_model(tf.function(call, input_signature=spec)), "convert_model(tf.function of the Keras model)"


def name_io(ov_model: Any, contract: IOContract) -> None:
    """Give the model's inputs and outputs exactly the contract's names.

    A port that already carries the contract's name keeps it; the rest are matched by
    position (the converters keep the order of the source's inputs and outputs)."""
    for ports, specs, what in ((ov_model.inputs, contract.inputs, "inputs"), (ov_model.outputs, contract.outputs, "outputs")):
        if len(ports) != len(specs):
            raise ToolchainFailed(f"the converted model has {len(ports)} {what}, the source {len(specs)} "
                                  f"({', '.join(s.name for s in specs)})", stage="export")
        wanted = [s.name for s in specs]
        by_name = {n: i for i, p in enumerate(ports) for n in p.get_names() if n in wanted}
        order = [by_name[n] for n in wanted] if len(by_name) == len(wanted) else list(range(len(ports)))
        for name, i in zip(wanted, order):
            port = ports[i]
            if what == "outputs" and _passes_an_input_through(port):
                port = _own_tensor(ov_model, port)
            if port.get_names() != {name}:
                port.get_tensor().set_names({name})
            if what == "inputs":
                port.get_node().set_friendly_name(name)
    ov_model.validate_nodes_and_infer_types()


def _passes_an_input_through(port: Any) -> bool:
    result = port.get_node()
    return result.get_type_name() == "Result" and result.input_value(0).get_node().get_type_name() == "Parameter"


def _own_tensor(ov_model: Any, port: Any) -> Any:
    """An output that is an input passed through (Dropout or Identity at inference) shares the
    Parameter's tensor: naming it renamed the input, and the IR keeps one name for both. An Identity
    between them gives the output a tensor of its own (found by the operator coverage)."""
    import openvino.opset16 as ops

    result = port.get_node()
    identity = ops.identity(result.input_value(0))
    result.input(0).replace_source_output(identity.output(0))
    return identity.output(0)


_SUMMARY = re.compile(r"--\s*(No conversion rule found for operations|Conversion is failed for):\s*(.+)")
_DETAIL = re.compile(r"--\s*(\S+) with a message:\s*\n(.*?)(?=\n--|\nSummary:|\Z)", re.S)


def unsupported_from_error(text: str) -> list[Unsupported]:
    """The operations a failed convert_model names in its summary, as pre-check records.

    TorchScript and TF graphs carry no stable node names: the op type stands for the node."""
    details = {}
    for op, msg in _DETAIL.findall(text):
        lines = [ln.strip() for ln in msg.strip().splitlines() if ln.strip()]
        useful = [ln for ln in lines if not ln.startswith(("Check ", "Exception happened", "FrontEnd API failed"))]
        details[op] = (useful or lines or ["conversion failed"])[-1][:200]
    out = []
    for kind, ops in _SUMMARY.findall(text):
        for op in (o.strip() for o in ops.split(",")):
            if not op:
                continue
            reason = "OpenVINO has no conversion rule for it" if kind.startswith("No") else details.get(op, "its conversion failed")
            out.append(Unsupported(op, op, reason))
    return out


def brief(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return (text[:300] + "...") if len(text) > 300 else (text or type(exc).__name__)
