"""TensorFlow / Keras sources: load safely, convert to ONNX with tf2onnx, run for verification.

Sources: a SavedModel folder (its ``serving_default`` signature), a Keras ``.keras`` / ``.h5``
file (Keras 3, ``safe_mode=True``; a ``Lambda`` layer, i.e. Python code in the file, is
refused unless ``--trust-code``), or a Keras model / ``tf.Module`` object in the Python API.

A SavedModel's graphs run while it loads (resource initializers) and converts (the signature), so
``saved_model.pb`` is parsed first and every op of every graph and function is checked against an
allow-list (:mod:`.savedmodel_scan`: no file, print, Python or custom ops; checkpoint ops only at the
loader's own ``variables/`` prefix); anything else is refused unless ``--trust-code``. TensorFlow's,
absl's, Keras' and tf2onnx's log records and warnings go to the debug log (``edgeconv.plugin.to_debug_log``).

Routes to ONNX (``tf.to_onnx``), as they work with tf2onnx 1.17 / TF 2.21 / Keras 3:

- SavedModel: ``tf2onnx.convert.from_function`` on a ``tf.function`` that calls the
  ``serving_default`` signature: output names are the signature's keys.
- Keras 3 model: ``from_function`` on a ``tf.function`` calling the model with the input
  signature of its IO contract (``tf2onnx.convert.from_keras`` fails on Keras 3 models:
  ``KeyError: 'keras_tensor_...'``, an open upstream issue). ONNX outputs are renamed to the
  model's output names.

Layout is kept as the source has it (NHWC for Keras images): the IO contract says so.
"""

from __future__ import annotations

import json
import os
import sys
import zipfile
from pathlib import Path
from typing import Any

from edgeconv.plugin import (
    BadInput,
    IOContract,
    Model,
    Runner,
    TensorSpec,
    ToolchainFailed,
    guess_layout,
    quiet_tensorflow,
)

from .pickle_scan import Refused
from edgeconv.plugin import to_debug_log
from .savedmodel_scan import check_saved_model

SIGNATURE = "serving_default"
_NOISY = ("tensorflow", "absl", "tf2onnx", "keras")  # their log records and warnings go to the debug log


def matches(source: Any) -> bool:
    if isinstance(source, (str, Path)):
        p = Path(source)
        return p.is_dir() and (p / "saved_model.pb").is_file()
    tf = sys.modules.get("tensorflow")
    keras = sys.modules.get("keras")
    return (keras is not None and isinstance(source, keras.Model)) or (tf is not None and isinstance(source, tf.Module))


def load(source: Any, *, input_shapes: dict[str, tuple[int, ...]] | None = None, options: dict | None = None) -> Model:
    opts = dict(options or {})
    path = Path(source) if isinstance(source, (str, Path)) else None
    if path is not None and not path.is_dir():
        _check_keras_file(path, trust_code=bool(opts.get("trust_code")))  # before TF runs anything
    quiet_tensorflow()
    import tensorflow as tf

    if path is not None and path.is_dir():
        kind, obj, io = "savedmodel", *_saved_model(path, trust_code=bool(opts.get("trust_code")))
    elif path is not None:
        obj = _keras_file(path, trust_code=bool(opts.get("trust_code")))
        kind, io = "keras", _keras_io(obj)
    else:
        import keras

        if isinstance(source, keras.Model):
            kind, obj, io = "keras", source, _keras_io(source)
        else:
            if SIGNATURE not in getattr(source, "signatures", {}):
                raise BadInput(f"the tf.Module has no {SIGNATURE!r} signature", stage="import")
            kind, obj = "savedmodel", source
            io = _signature_io(source.signatures[SIGNATURE])
    where = str(path) if path else f"<{type(source).__name__}>"
    if input_shapes:
        io = io.pinned(input_shapes, file=where)
    io = IOContract(tuple(TensorSpec(t.name, t.shape, t.dtype, guess_layout(t.shape)) for t in io.inputs), io.outputs)
    meta = {"kind": kind, "tensorflow": tf.__version__}
    return Model(form="tf", io=io, path=path, obj={"kind": kind, "model": obj}, meta=meta)


def _saved_model(path: Path, *, trust_code: bool) -> tuple[Any, IOContract]:
    import tensorflow as tf

    if not trust_code:
        try:
            check_saved_model(path)  # every op of every graph and function, before TF runs any of them
        except Refused as exc:
            raise BadInput(str(exc), file=path, stage="import") from None
        except (OSError, ValueError, KeyError) as exc:
            raise BadInput(f"saved_model.pb cannot be read: {_brief(exc)}", file=path, stage="import") from None
    try:
        with to_debug_log(*_NOISY):
            loaded = tf.saved_model.load(str(path))
    except Exception as exc:
        raise BadInput(f"is not a loadable SavedModel: {_brief(exc)}", file=path, stage="import") from None
    sigs = getattr(loaded, "signatures", {})
    if SIGNATURE not in sigs:
        raise BadInput(f"has no {SIGNATURE!r} signature (it has: {', '.join(sigs) or 'none'})", file=path, stage="import")
    return loaded, _signature_io(sigs[SIGNATURE])


def _dims(shape: Any, role: str) -> tuple[int | str, ...]:
    dims = list(shape.as_list()) if shape.rank is not None else []
    return tuple(d if d is not None else ("batch" if i == 0 else f"{role}_dim{i}") for i, d in enumerate(dims))


def _signature_io(sig: Any) -> IOContract:
    inputs = sig.structured_input_signature[1]
    outputs = sig.structured_outputs
    return IOContract(
        inputs=tuple(TensorSpec(n, _dims(s.shape, n), s.dtype.name) for n, s in inputs.items()),
        outputs=tuple(TensorSpec(n, _dims(s.shape, n), s.dtype.name) for n, s in outputs.items()),
    )


def _keras_io(model: Any) -> IOContract:
    names = list(getattr(model, "output_names", None) or [f"output_{i}" for i in range(len(model.outputs))])
    return IOContract(
        inputs=tuple(TensorSpec(t.name, _kdims(t.shape, t.name), str(t.dtype)) for t in model.inputs),
        outputs=tuple(TensorSpec(n, _kdims(t.shape, n), str(t.dtype)) for n, t in zip(names, model.outputs)),
    )


def _kdims(shape: Any, role: str) -> tuple[int | str, ...]:
    return tuple(d if d is not None else ("batch" if i == 0 else f"{role}_dim{i}") for i, d in enumerate(shape))


def _keras_config(path: Path) -> Any:
    """The model config of a .keras (zip) or .h5 file, read without deserialising anything."""
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as z:
                return json.loads(z.read("config.json"))
        import h5py

        with h5py.File(path, "r") as f:
            raw = f.attrs.get("model_config")
            if raw is None:
                return None
            return json.loads(raw.decode() if isinstance(raw, bytes) else raw)
    except (OSError, KeyError, ValueError) as exc:
        raise BadInput(f"is not a readable Keras file ({_brief(exc)})", file=path, stage="import") from None


def _find_lambda(config: Any) -> str | None:
    if isinstance(config, dict):
        if config.get("class_name") == "Lambda":
            return str((config.get("config") or {}).get("name", "lambda"))
        for v in config.values():
            found = _find_lambda(v)
            if found:
                return found
    elif isinstance(config, list):
        for v in config:
            found = _find_lambda(v)
            if found:
                return found
    return None


def _check_keras_file(path: Path, *, trust_code: bool) -> None:
    if not path.exists():
        raise BadInput("no such file", file=path, stage="import")
    if path.stat().st_size == 0:
        raise BadInput("is empty (0 bytes)", file=path, stage="import")
    config = _keras_config(path)
    layer = _find_lambda(config) if config is not None else None
    if layer and not trust_code:
        raise BadInput(f"contains a Lambda layer ({layer!r}): Python code that loading would run; "
                       "give --trust-code if you trust the file", file=path, stage="import")


def _keras_file(path: Path, *, trust_code: bool) -> Any:
    import keras

    try:
        with to_debug_log(*_NOISY):
            return keras.saving.load_model(str(path), compile=False, safe_mode=not trust_code)
    except Exception as exc:
        raise BadInput(f"Keras cannot load it: {_brief(exc)}", file=path, stage="import") from None


def to_onnx(model: Model, job: Any) -> tuple[Model, dict[str, Any]]:
    """tf -> onnx with tf2onnx.convert.from_function (see the module docstring)."""
    import time

    quiet_tensorflow()
    import tensorflow as tf
    import tf2onnx

    from edgeconv.plugin import from_proto

    opts = getattr(job, "source_options", {}) or {}
    opset = int(opts.get("opset") or 17)
    kind, obj = model.obj["kind"], model.obj["model"]
    names = [t.name for t in model.io.inputs]
    spec = [tf.TensorSpec([d if isinstance(d, int) else None for d in t.shape], t.dtype, name=t.name)
            for t in model.io.inputs]
    if kind == "savedmodel":
        sig = obj.signatures[SIGNATURE]

        @tf.autograph.experimental.do_not_convert
        def call(*args):
            return sig(**dict(zip(names, args)))
    else:

        @tf.autograph.experimental.do_not_convert
        def call(*args):
            return obj(list(args) if len(args) > 1 else args[0], training=False)

    started = time.perf_counter()
    try:
        with to_debug_log(*_NOISY):
            proto, _ = tf2onnx.convert.from_function(tf.function(call, input_signature=spec), input_signature=spec,
                                                     opset=opset)
    except Exception as exc:
        raise ToolchainFailed(f"tf2onnx failed: {_brief(exc)}", stage="convert") from None
    _rename(proto, names, [t.name for t in model.io.outputs])
    out = from_proto(proto, None)
    layouts = {t.name: t.layout for t in model.io.inputs}
    out.io = IOContract(tuple(TensorSpec(t.name, t.shape, t.dtype, layouts.get(t.name)) for t in out.io.inputs),
                        out.io.outputs, model.io.preprocessing)
    return out, {"exporter": "tf2onnx.from_function", "tf2onnx": tf2onnx.__version__, "tensorflow": tf.__version__,
                 "opset": opset, "seconds": round(time.perf_counter() - started, 3),
                 "after": {"nodes": len(proto.graph.node)}}


def _rename(proto: Any, inputs: list[str], outputs: list[str]) -> None:
    """Give the ONNX graph's inputs/outputs the source's names (by position)."""
    mapping = {}
    graph_inputs = [i for i in proto.graph.input if i.name not in {t.name for t in proto.graph.initializer}]
    for vi, name in zip(graph_inputs, inputs):
        mapping[vi.name] = name
    for vi, name in zip(proto.graph.output, outputs):
        mapping[vi.name] = name
    mapping = {k: v for k, v in mapping.items() if k != v}
    if not mapping:
        return
    for vi in (*proto.graph.input, *proto.graph.output, *proto.graph.value_info):
        vi.name = mapping.get(vi.name, vi.name)
    for node in proto.graph.node:
        node.input[:] = [mapping.get(n, n) for n in node.input]
        node.output[:] = [mapping.get(n, n) for n in node.output]


def _brief(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return (text[:300] + "...") if len(text) > 300 else (text or type(exc).__name__)


class TFRunner(Runner):
    """The source TensorFlow model: the serving signature, or the Keras model itself."""

    name = "tensorflow"
    modules = ("tensorflow",)

    def __init__(self, model: Model, threads: int | None = None, **options: Any) -> None:
        super().__init__(model, **options)
        self.threads = threads

    def activate(self) -> None:
        quiet_tensorflow()
        import tensorflow as tf

        if self.threads:
            try:
                tf.config.threading.set_intra_op_parallelism_threads(int(self.threads))
            except RuntimeError:
                pass  # TF already initialised its pools; the report says what it uses
        obj = self.model.obj or load(self.model.path).obj
        self.kind, self.tf_model = obj["kind"], obj["model"]
        self.names = [t.name for t in self.model.io.inputs]
        self.out_names = [t.name for t in self.model.io.outputs]
        self.info = {"runtime": f"tensorflow {tf.__version__}", "device": "cpu",
                     "threads": tf.config.threading.get_intra_op_parallelism_threads() or os.cpu_count(),
                     "host": "local"}

    def infer(self, feed):
        import tensorflow as tf

        if self.kind == "savedmodel":
            out = self.tf_model.signatures[SIGNATURE](**{n: tf.constant(feed[n]) for n in self.names})
            return {n: out[n].numpy() for n in self.out_names}
        args = [feed[n] for n in self.names]
        out = self.tf_model(args if len(args) > 1 else args[0], training=False)
        outs = out if isinstance(out, (list, tuple)) else [out]
        return {n: y.numpy() for n, y in zip(self.out_names, outs)}
