"""TensorFlow side of both routes: a signature that speaks the source's names, then TFLiteConverter.

Imported only when a conversion runs (in-process for a TF/Keras source, in the onnx2tf worker
for an ONNX source): it imports TensorFlow.

Every artifact is converted from a ``serving_default`` signature that takes and gives tensors
keyed by the *source's* names (made TF-safe when needed: ``signature_keys``), so LiteRT's
signature names map back to the source by name, never by position: a SavedModel for a TF/Keras
source, a concrete function over the tf_keras model's variables for onnx2tf's. Keras 3 models are
written with ``keras.export.ExportArchive`` (``TFLiteConverter.from_concrete_functions`` on a
Keras 3 model keeps its variables as resource ops that read uninitialised: NaN outputs).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

SIGNATURE = "serving_default"
_BAD = re.compile(r"[^A-Za-z0-9_.\-]")


def signature_keys(names: Iterable[str]) -> dict[str, str]:
    """A TF-safe, unique signature key for each source name (the name itself when it is safe)."""
    out: dict[str, str] = {}
    used: set[str] = set()
    for name in names:
        key = _BAD.sub("_", name) or "tensor"
        if not key[0].isalnum():
            key = "t" + key
        base, i = key, 1
        while key in used:
            key, i = f"{base}_{i}", i + 1
        used.add(key)
        out[name] = key
    return out


def quiet_tensorflow() -> Any:
    """Import TensorFlow with its C++ start-up chatter off (stderr is kept for real errors)."""
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")
    return tf


def save_keras3(model: Any, path: Path, specs: list[Any], out_keys: list[str]) -> None:
    """A Keras 3 model as a SavedModel whose signature returns ``{out_key: tensor}``."""
    import keras

    n = len(specs)

    def serve(*args):
        y = model(list(args) if n > 1 else args[0], training=False)
        ys = list(y) if isinstance(y, (list, tuple)) else list(y.values()) if isinstance(y, dict) else [y]
        return dict(zip(out_keys, ys))

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(name=SIGNATURE, fn=serve, input_signature=specs)
    archive.write_out(str(path), verbose=False)


def save_function(track: Any, fn: Callable[..., Any], specs: list[Any], path: Path) -> None:
    """``fn`` as the serving signature of a SavedModel that tracks ``track`` (what ``fn`` captures).

    For a tf_keras model, pass its variables, not the model: saving the model object makes
    TensorFlow trace and serialise every layer (ResNet-18: 268 s here, against 3 s).
    """
    import tensorflow as tf

    module = tf.Module()
    module.tracked = track
    module.serve = tf.function(fn, input_signature=specs, autograph=False)
    tf.saved_model.save(module, str(path), signatures={SIGNATURE: module.serve.get_concrete_function()})


def to_tflite(source: Path | tuple[Any, Any], precision: str, options: dict[str, Any],
              representative: Callable[[], Iterator[Any]] | None, *,
              denylist: Callable[[bytes], list[str]] | None = None) -> tuple[bytes, dict[str, Any]]:
    """Convert at ``precision``: a SavedModel's serving signature, or ``(concrete function,
    trackable)`` (the function's input TensorSpec names and output keys become the signature's).
    Returns the flatbuffer and the converter settings (for the manifest).

    int8 is TFLite's own post-training quantization in its two steps, with the ranges checked in between
    (``int8_from_calibrated``): ``denylist(calibrated model) -> tensor names`` keeps those ops in float (keep_float)."""
    tf = quiet_tensorflow()

    if isinstance(source, tuple):
        conv = tf.lite.TFLiteConverter.from_concrete_functions([source[0]], source[1])
        how = "from_concrete_functions"
    else:
        conv = tf.lite.TFLiteConverter.from_saved_model(str(source), signature_keys=[SIGNATURE])
        how = "from_saved_model"
    settings: dict[str, Any] = {"converter": f"tf.lite.TFLiteConverter.{how}", "precision": precision}
    ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    per_channel = bool(options.get("per_channel", True))
    if precision == "fp16":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.target_spec.supported_types = [tf.float16]
        settings.update(optimizations="DEFAULT", supported_types=["float16"])
    elif precision == "int8-dynamic":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv._experimental_disable_per_channel = not per_channel
        settings.update(optimizations="DEFAULT", weights="int8", activations="float32 (quantized at run time)",
                        per_channel=per_channel)
    elif precision == "int8":
        if representative is None:
            raise ValueError("full int8 needs a representative dataset")
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = representative
        conv._experimental_disable_per_channel = not per_channel
        conv._experimental_calibrate_only = True  # quantized below, from checked ranges
        io_type = options.get("io_type") or "float32"
        if not options.get("int8_fallback") and denylist is None:
            ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        settings.update(optimizations="DEFAULT", representative_dataset=True, per_channel=per_channel,
                        io_type=io_type, integer_only=not options.get("int8_fallback") and denylist is None)
    elif precision != "fp32":
        raise ValueError(f"precision {precision!r}")
    if options.get("select_tf_ops"):
        ops.append(tf.lite.OpsSet.SELECT_TF_OPS)
    conv.target_spec.supported_ops = ops
    settings["supported_ops"] = [o.name for o in ops]
    started = time.perf_counter()
    flatbuffer = conv.convert()
    if precision == "int8":
        deny = denylist(flatbuffer) if denylist is not None else []
        flatbuffer, info = int8_from_calibrated(flatbuffer, representative, per_channel=per_channel,
                                                io_type=settings["io_type"], denylisted=deny)
        settings.update(info)
    settings["seconds"] = round(time.perf_counter() - started, 3)
    return flatbuffer, settings


def int8_from_calibrated(calibrated: bytes, representative: Callable[[], Iterator[Any]], *, per_channel: bool,
                         io_type: str, denylisted: list[str]) -> tuple[bytes, dict[str, Any]]:
    """TFLite's MLIR quantizer on a calibrated model whose ranges were measured again (``remeasure_ranges``), with
    the ops writing ``denylisted`` tensors kept in float (what ``QuantizationDebugger`` does with
    ``denylisted_nodes``)."""
    from tensorflow.lite.python import convert as tflite_convert

    tf = quiet_tensorflow()
    calibrated, fixed = remeasure_ranges(calibrated, representative)
    quantized = tflite_convert.mlir_quantize(
        calibrated, disable_per_channel=not per_channel, input_data_type=getattr(tf, io_type),
        output_data_type=getattr(tf, io_type), denylisted_nodes=list(dict.fromkeys(denylisted)) or None)
    try:  # what TFLiteConverter does last: one copy of equal read-only buffers
        from tensorflow.lite.python.lite import _deduplicate_readonly_buffers

        quantized = _deduplicate_readonly_buffers(quantized)
    except Exception:  # noqa: BLE001 - an optimisation of the file's size
        pass
    info: dict[str, Any] = {"quantizer": "calibrate, re-measure ranges, mlir_quantize", "ranges_corrected": fixed}
    if denylisted:
        info.update(integer_only=False, float_ops_tensors=list(dict.fromkeys(denylisted)))
    return quantized, info


# Ops that move values without changing them; TFLite's int8 kernels need one scale on their input and output.
SAME_SCALE = {"RESHAPE", "TRANSPOSE", "STRIDED_SLICE", "SLICE", "SQUEEZE", "EXPAND_DIMS", "GATHER", "SPLIT", "SPLIT_V",
              "UNPACK", "DEPTH_TO_SPACE", "SPACE_TO_DEPTH", "BROADCAST_TO", "TILE", "MINIMUM", "MAXIMUM", "PAD", "PADV2",
              "MAX_POOL_2D"}


def _widen_moves(model: Any, sub: Any, lo: dict[int, float], hi: dict[int, float]) -> None:
    """Give the output of every data-movement op (and of the clamps and pads that keep their input's scale) its
    input's range, in graph order, so that it carries along chains.

    The quantizer gives such an op one scale for input and output, and takes it from the output's range: a slice of
    a tensor (a detection head's box logits, sliced from the 4+C channels of one conv output) then gave the whole
    conv output the slice's narrow range, clipping the class logits (measured on the reference detector: scores off
    by 0.29). With the input's range the producer keeps its own, and the slice is quantized at its producer's step."""
    import numpy as np

    from .tflite_file import _builtin_names

    names = _builtin_names()
    for op in sub.operators or []:
        code = model.operatorCodes[op.opcodeIndex]
        kind = names.get(max(code.builtinCode, code.deprecatedBuiltinCode), "")
        if kind not in SAME_SCALE or op.inputs is None or len(op.inputs) == 0 or op.outputs is None:
            continue
        src = int(op.inputs[0])
        if src not in lo or not np.isfinite(lo[src]):
            continue
        for out in op.outputs:
            out = int(out)
            if out in lo:
                lo[out], hi[out] = min(lo[out], lo[src]), max(hi[out], hi[src])


RANGE_TOLERANCE = 1e-3  # relative: a recorded range farther than this from the measured one is replaced


def remeasure_ranges(calibrated: bytes, representative: Callable[[], Iterator[Any]]) -> tuple[bytes, list[str]]:
    """Measure every float tensor's min/max again on the representative data with LiteRT keeping every tensor, and
    write them where TFLite's calibrator recorded another range.

    Why: the calibrator logs a tensor's range after the ops that run *in place* on its buffer (MUL, ADD, DIV of two
    activations, TF 2.21) wrote their result into it, so such an input gets its consumer's range: measured on a
    conv whose output feeds an in-place Mul, recorded [-2290, 1376] for a tensor in [-1.96, 2.92] -- every value of
    it rounds to the zero point in int8. Returns the model and the names of the tensors corrected."""
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter, OpResolverType
    from tensorflow.lite.tools import flatbuffer_utils

    interp = Interpreter(model_content=bytes(calibrated), experimental_preserve_all_tensors=True,
                         experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(calibrated))
    sub = model.subgraphs[0]
    tracked = [i for i, t in enumerate(sub.tensors)
               if t.quantization is not None and t.quantization.min is not None and len(t.quantization.min) == 1]
    if not tracked:
        return calibrated, []
    interp.allocate_tensors()
    sigs = interp.get_signature_list()
    order = [d["index"] for d in interp.get_input_details()]
    lo = {i: np.inf for i in tracked}
    hi = {i: -np.inf for i in tracked}
    runner = None
    for sample in representative():
        if sigs and isinstance(sample, dict):  # keyed by signature input (the TF route)
            runner = runner or interp.get_signature_runner(next(iter(sigs)))
            runner(**sample)
        else:
            for idx, value in zip(order, sample if isinstance(sample, (list, tuple)) else [sample], strict=False):
                interp.set_tensor(idx, np.asarray(value))
            interp.invoke()
        for i in tracked:
            try:
                v = interp.get_tensor(i, 0) if runner is not None else interp.get_tensor(i)
            except (ValueError, TypeError):
                continue
            if v.size and v.dtype.kind == "f":
                finite = v[np.isfinite(v)]
                if finite.size:
                    lo[i] = min(lo[i], float(finite.min()))
                    hi[i] = max(hi[i], float(finite.max()))
            v = finite = None  # no reference into the interpreter may outlive this sample
    _widen_moves(model, sub, lo, hi)
    fixed = []
    for i in tracked:
        if not np.isfinite(lo[i]) or not np.isfinite(hi[i]):
            continue
        q = sub.tensors[i].quantization
        old_lo, old_hi = float(q.min[0]), float(q.max[0])
        span = max(hi[i] - lo[i], abs(hi[i]), abs(lo[i]), 1e-12)
        if abs(old_lo - lo[i]) > RANGE_TOLERANCE * span or abs(old_hi - hi[i]) > RANGE_TOLERANCE * span:
            q.min, q.max = [lo[i]], [hi[i]]
            name = sub.tensors[i].name
            fixed.append(name.decode(errors="replace") if isinstance(name, bytes) else str(name))
    if not fixed:
        return calibrated, []
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model)), fixed


def representative_dataset(feeds: list[dict[str, Any]], keys: dict[str, str] | None = None,
                           order: list[str] | None = None) -> Callable[[], Iterator[Any]]:
    """The calibration feeds (already in the artifact's layout): keyed by signature key (a
    SavedModel), or as a list in the function's argument ``order`` (a concrete function)."""

    def gen() -> Iterator[Any]:
        for feed in feeds:
            if order is not None:
                yield [feed[name] for name in order]
            else:
                yield {keys[name]: arr for name, arr in feed.items()}

    return gen


def brief(exc: BaseException, limit: int = 400) -> str:
    """One line from a converter error: TFLite's MLIR errors run to pages; keep what names the op."""
    text = str(exc)
    m = re.search(r"(Some ops are not supported|Some ops in the model are custom ops|'tf\.\w+' op is neither"
                  r"|failed to legalize operation '[^']+')[^\n]*", text)
    lines = [m.group(0)] if m else []
    # the TF ops a converter error lists ("tf.Acos(tensor<3xf32>)"), not a Keras layer's arguments
    # ("x=tf.Tensor(shape=(3,), ...)", which made "TF ops: Tensor" the whole message)
    ops = [op for op in re.findall(r"tf\.(\w+)\(", text) if op not in ("Tensor", "TensorSpec", "Variable")]
    if ops:
        lines.append("TF ops: " + ", ".join(sorted(set(ops))))
    if not m:  # the exception's own first lines (a Keras layer that failed, a shape mismatch)
        lines.insert(0, " ".join(ln.strip() for ln in text.strip().splitlines()[:4] if ln.strip()))
    out = " ".join(" ".join(lines).split()) or " ".join(text.split())
    return out[:limit] or type(exc).__name__
