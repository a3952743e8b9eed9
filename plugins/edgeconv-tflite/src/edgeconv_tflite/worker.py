"""The ONNX route's worker process: ONNX -> onnx2tf (a tf_keras model) -> TFLiteConverter -> .tflite.

    python -m edgeconv_tflite.worker JOB.json

Why a separate process: importing onnx2tf changes the whole interpreter (it sets the recursion
limit to 2**31-1, ``TF_USE_LEGACY_KERAS=1``, ignores every warning, seeds the global RNGs and
turns on TensorFlow's op determinism) and it calls ``sys.exit(1)`` on errors. In a worker none
of that reaches the caller, a stuck conversion can be timed out, and the network can be cut.

Offline, always: onnx2tf fetches a sample of MS-COCO images from GitHub (``requests.get``) when
every input is a 4-D 3-channel tensor with a static batch -- to run its own checks, even when
calibration data is given -- and again for its own INT8 calibration. Here its
``download_test_image_data`` is replaced by a function that returns the job's own data (the
calibration samples in NHWC, else seeded noise); edgeconv never asks onnx2tf to quantize (the
TFLite converter runs here with the job's representative dataset); and every outbound connection
and DNS lookup in this process raises, so anything else that tries fails loudly instead of
downloading.

onnx2tf is asked for its Keras model only (``disable_model_save``): no SavedModel, no .h5, none of
its seven .tflite variants. The one variant asked for is converted here from a concrete function
whose signature uses the source's names and gives every output in the source's layout.

The job (JSON) names: ``onnx`` (the model file), ``tflite`` (where to write), ``precision``,
``options`` (the target's), ``keep`` (input names onnx2tf must leave in their shape),
``in_keys``/``out_keys`` (source name -> signature key), ``calib`` (an .npz: per input name an
array [samples, *feed shape] in the source layout, or null), ``workdir`` and ``result`` (JSON).
"""

from __future__ import annotations

import itertools
import json
import os
import socket
import sys
import time
import traceback
from pathlib import Path
from typing import Any

CHANNELS_LAST = {3: (0, 2, 1), 4: (0, 2, 3, 1), 5: (0, 2, 3, 4, 1)}
_attempts: list[str] = []
# onnx2tf's work, recorded as it converts (_record_layers): the node being converted, and the Keras layers each ONNX
# node became (onnx2tf names its layers tf.math.multiply_2 & co., not after the node; the .tflite's tensor names
# carry the layer names, which is how a .tflite op is traced back to its ONNX node)
_layers: dict[str, Any] = {"current": None, "nodes": {}, "owner": {}}


# -- offline ---------------------------------------------------------------------------------
class OfflineError(ConnectionRefusedError):
    pass


def block_network() -> None:
    """Make every outbound connection and DNS lookup of this process raise (AF_UNIX stays)."""

    def refuse(what: str) -> None:
        _attempts.append(what)
        raise OfflineError(f"edgeconv-tflite converts offline: refused {what}")

    connect = socket.socket.connect
    connect_ex = socket.socket.connect_ex

    def guarded_connect(self, address):  # noqa: ANN001
        if self.family == getattr(socket, "AF_UNIX", None):
            return connect(self, address)
        refuse(f"a connection to {address!r}")

    def guarded_connect_ex(self, address):  # noqa: ANN001
        if self.family == getattr(socket, "AF_UNIX", None):
            return connect_ex(self, address)
        refuse(f"a connection to {address!r}")

    def guarded_getaddrinfo(host, *args, **kwargs):  # noqa: ANN001
        refuse(f"a DNS lookup of {host!r}")

    def guarded_create_connection(address, *args, **kwargs):  # noqa: ANN001
        refuse(f"a connection to {address!r}")

    socket.socket.connect = guarded_connect
    socket.socket.connect_ex = guarded_connect_ex
    socket.getaddrinfo = guarded_getaddrinfo
    socket.create_connection = guarded_create_connection


def _sample_images(calib: dict[str, Any] | None, onnx_inputs: list[tuple[str, list[Any]]], used: dict[str, str]):
    """What onnx2tf's ``download_test_image_data`` returns instead: [N, H, W, 3] float32."""
    import numpy as np

    def provide():
        if calib:
            for name, shape in onnx_inputs:
                arr = calib.get(name)
                if arr is not None and arr.ndim == len(shape) + 1 and len(shape) == 4 and arr.shape[2] == 3:
                    x = arr.reshape(-1, *arr.shape[2:])[:20].transpose(0, 2, 3, 1)  # N,C,H,W -> N,H,W,C
                    used["sample_data"] = "calibration"
                    return np.ascontiguousarray(x, dtype=np.float32)
        used["sample_data"] = "generated"
        h, w = 128, 128
        for _, shape in onnx_inputs:
            if len(shape) == 4 and all(isinstance(d, int) and d > 0 for d in shape[2:]):
                h, w = shape[2], shape[3]
                break
        return np.random.default_rng(0).random((20, h, w, 3), dtype=np.float32)

    return provide


# -- the conversion --------------------------------------------------------------------------
def run(job: dict[str, Any]) -> dict[str, Any]:
    import numpy as np

    timings: dict[str, float] = {}
    result: dict[str, Any] = {"timings": timings, "warnings": []}
    t0 = time.perf_counter()
    import onnx

    model_proto = onnx.load(job["onnx"])
    inits = {i.name for i in model_proto.graph.initializer}
    onnx_inputs = [(vi.name, [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?")
                              for d in vi.type.tensor_type.shape.dim])
                   for vi in model_proto.graph.input if vi.name not in inits]
    onnx_outputs = [vi.name for vi in model_proto.graph.output]
    del model_proto
    calib = None
    if job.get("calib"):
        with np.load(job["calib"], allow_pickle=False) as z:
            calib = {k: z[k] for k in z.files}

    from .convert import quiet_tensorflow

    tf = quiet_tensorflow()
    import onnx2tf

    o2t = sys.modules["onnx2tf.onnx2tf"]
    common = sys.modules["onnx2tf.utils.common_functions"]
    sys.setrecursionlimit(10_000)  # onnx2tf set 2**31-1: a runaway recursion would crash, not raise
    used: dict[str, str] = {"sample_data": "not needed"}
    provide = _sample_images(calib, onnx_inputs, used)
    o2t.download_test_image_data = provide
    common.download_test_image_data = provide
    if job["precision"] == "int8":
        _maxpool_pads_zero()
    result["numpy_scalar_compat"] = _numpy_scalar_compat()
    _record_layers(_layers)
    timings["import"] = round(time.perf_counter() - t0, 3)

    t0 = time.perf_counter()
    out_dir = Path(job["workdir"]) / "onnx2tf"
    keep = list(job.get("keep") or [])
    kwargs = dict(
        input_onnx_file_path=job["onnx"],
        output_folder_path=str(out_dir),
        disable_model_save=True,  # the Keras model only: edgeconv converts the one .tflite asked for
        not_use_onnxsim=True,  # the core's onnx.simplify pass (onnxslim) already ran
        non_verbose=True,
        keep_ncw_or_nchw_or_ncdhw_input_names=keep or None,
    )
    if not job["options"].get("select_tf_ops") and job.get("has_erf"):
        # A standalone Erf becomes tf.math.erf, a Flex op; onnx2tf's builtin-op version (Abramowitz-Stegun
        # 7.1.26, |error| <= 1.5e-7) keeps the model on the builtin runtime. Erf inside a GELU becomes GELU.
        kwargs["replace_to_pseudo_operators"] = ["erf"]  # lower case: onnx2tf's API does not lower it
        result["warnings"].append("Erf nodes outside a GELU are computed from builtin ops (polynomial approximation, "
                                  "|error| <= 1.5e-7); -O select_tf_ops=true keeps TF's erf as a Flex op")
    try:
        model = onnx2tf.convert(**kwargs)
    except SystemExit as exc:  # onnx2tf reports some failures by exiting
        raise RuntimeError(f"onnx2tf gave up (exit {exc.code}); see its messages above") from None
    _layers["current"] = None  # converted: a later failure is not a node's
    timings["onnx2tf"] = round(time.perf_counter() - t0, 3)
    result["onnx2tf"] = {"version": onnx2tf.__version__, "seconds": timings["onnx2tf"], "sample_data": used["sample_data"],
                         "settings": {k: v for k, v in kwargs.items() if k not in ("input_onnx_file_path", "output_folder_path")}}

    # Which inputs onnx2tf made channels-last, checked against the shapes it built.
    in_perms: dict[str, list[int]] = {}
    tf_inputs = list(model.inputs)
    if len(tf_inputs) != len(onnx_inputs):
        raise RuntimeError(f"onnx2tf built {len(tf_inputs)} inputs for the ONNX graph's {len(onnx_inputs)}")
    for (name, shape), t in zip(onnx_inputs, tf_inputs):
        perm = list(range(len(shape))) if name in keep or len(shape) not in CHANNELS_LAST else list(CHANNELS_LAST[len(shape)])
        want = [shape[p] for p in perm]
        got = list(t.shape)
        if any(isinstance(w, int) and w > 0 and g is not None and w != g for w, g in zip(want, got)) or len(got) != len(want):
            raise RuntimeError(f"onnx2tf built input {name!r} as {got}, expected {want} (ONNX {shape})")
        in_perms[name] = perm

    # Which permutation each output came out in: run ONNX (onnxruntime) and the TF model on one sample.
    t0 = time.perf_counter()
    ranks = [len(t.shape) for t in model.outputs]
    if any(r in CHANNELS_LAST for r in ranks):
        feed = _sample_feed(calib, onnx_inputs, job)
        out_perms, check = _output_layouts(job["onnx"], model, feed, in_perms, onnx_inputs, onnx_outputs)
    else:  # rank 0-2 outputs: onnx2tf never transposes them
        out_perms = {name: list(range(r)) for name, r in zip(onnx_outputs, ranks)}
        check = {}
    result["layout_check"] = check
    for name, c in check.items():
        if c["rel_err"] > 1e-3:
            result["warnings"].append(f"onnx2tf's TF model differs from the ONNX model on output {name!r} "
                                      f"(max abs error {c['max_abs']:.3g} on one sample)")
    timings["layout_check"] = round(time.perf_counter() - t0, 3)

    # One function whose signature speaks the source's names and output layouts; converted as a
    # concrete function over the model's variables (a SavedModel round trip adds seconds, no value).
    from .convert import representative_dataset, to_tflite

    in_keys, out_keys = job["in_keys"], job["out_keys"]
    specs = [tf.TensorSpec(t.shape, t.dtype, name=in_keys[name]) for (name, _), t in zip(onnx_inputs, tf_inputs)]
    inverse = {name: [p.index(i) for i in range(len(p))] for name, p in out_perms.items()}

    def serve(*args):
        ys = model(list(args) if len(args) > 1 else args[0], training=False)
        ys = list(ys) if isinstance(ys, (list, tuple)) else [ys]
        out = {}
        for name, y in zip(onnx_outputs, ys):
            inv = inverse[name]
            out[out_keys[name]] = tf.transpose(y, inv) if inv != sorted(inv) else y
        return out

    module = tf.Module()
    module.tracked = list(model.variables)
    module.serve = tf.function(serve, input_signature=specs, autograph=False)
    concrete = module.serve.get_concrete_function()
    # Track every variable the function captures: onnx2tf creates some outside the Keras model (the
    # depthwise kernels of paddle2onnx models: model.variables is empty for PP-OCR cls). An untracked one
    # makes TFLiteConverter's SavedModel step fail silently, and the .tflite then has no signature.
    module.captured = list(concrete.variables)

    rep = None
    if job["precision"] == "int8":
        if calib is None:
            raise RuntimeError("full int8 needs calibration data")
        n = min(len(a) for a in calib.values())
        feeds = [{name: np.ascontiguousarray(calib[name][i].transpose(in_perms[name])) for name, _ in onnx_inputs}
                 for i in range(n)]
        rep = representative_dataset(feeds, order=[name for name, _ in onnx_inputs])
        result["calibration_samples"] = n
    t0 = time.perf_counter()
    keep = list(job.get("keep_float") or [])
    names = _node_names(job)
    deny = None
    if keep and job["precision"] == "int8":
        result["keep_float"] = {}
        deny = _denylist(job, keep, names, onnx_outputs, result["keep_float"])
    flatbuffer, settings = to_tflite((concrete, module), job["precision"], job["options"], rep, denylist=deny)
    Path(job["tflite"]).write_bytes(flatbuffer)
    timings["tflite_convert"] = round(time.perf_counter() - t0, 3)
    result["op_nodes"] = _op_nodes(flatbuffer, names, onnx_outputs, job)
    import tf_keras

    result.update(
        converter=settings,
        in_perms=in_perms,
        out_perms=out_perms,
        versions={"tensorflow": tf.__version__, "onnx2tf": onnx2tf.__version__, "tf_keras": tf_keras.__version__},
        network_attempts=list(_attempts),
    )
    return result


def _record_layers(record: dict[str, Any]) -> None:
    """Wrap every ``onnx2tf.ops.<Op>.make_node`` (at its import) to note the node being converted and, after it, the
    Keras layers between the node's input tensors and its outputs (each layer is owned by the first node that made
    it: nodes convert in topological order)."""
    import importlib

    import_module = importlib.import_module

    def layers_of(graph_node: Any, tf_layers_dict: dict[str, Any]) -> list[str]:
        import tensorflow as tf

        stops = {id((tf_layers_dict.get(i.name) or {}).get("tf_node")) for i in graph_node.inputs}
        stack = [(tf_layers_dict.get(o.name) or {}).get("tf_node") for o in graph_node.outputs]
        found: list[str] = []
        while stack:
            t = stack.pop()
            if t is None or id(t) in stops:
                continue
            hist = getattr(t, "_keras_history", None)
            layer = getattr(hist, "layer", None)
            if layer is None or layer.name in record["owner"] or layer.name in found:
                continue
            found.append(layer.name)
            try:
                node = layer._inbound_nodes[hist.node_index]
                stack.extend(tf.nest.flatten(node.keras_inputs))
            except (AttributeError, IndexError):
                continue
        return found

    def patched(name: str, package: Any = None) -> Any:
        mod = import_module(name, package)
        make_node = getattr(mod, "make_node", None)
        if name.startswith("onnx2tf.ops.") and make_node is not None and not getattr(make_node, "_edgeconv", False):
            def recorded(*args: Any, _make_node: Any = make_node, **kwargs: Any) -> Any:
                graph_node = kwargs.get("graph_node")
                if graph_node is not None:
                    record["current"] = (graph_node.name, graph_node.op)
                out = _make_node(*args, **kwargs)
                if graph_node is not None and kwargs.get("tf_layers_dict") is not None:
                    try:
                        layers = layers_of(graph_node, kwargs["tf_layers_dict"])
                    except Exception:  # noqa: BLE001 - the mapping is a help, never a reason to fail
                        layers = []
                    record["nodes"].setdefault(graph_node.name, []).extend(layers)
                    for layer in layers:
                        record["owner"][layer] = graph_node.name
                return out

            recorded._edgeconv = True
            mod.make_node = recorded
        return mod

    importlib.import_module = patched


def _node_names(job: dict[str, Any]) -> dict[str, str]:
    """Keras layer name -> the source's ONNX node name (onnx2tf writes ':' in node names as '__'; the exporter may
    have made names TF-safe: ``job["renamed"]`` maps them back)."""
    back = {v.replace(":", "__"): k for k, v in (job.get("renamed") or {}).items()}
    out = {}
    for node, layers in _layers["nodes"].items():
        source = back.get(node, node)
        for layer in layers:
            out[layer] = source
    return out


def _output_nodes(flatbuffer: bytes, job: dict[str, Any], onnx_outputs: list[str]) -> dict[tuple[int, int], str]:
    """(subgraph, tensor) of each signature output -> the ONNX node that produces that output."""
    from . import tflite_file

    producers = job.get("output_producers") or {}
    keys = {job["out_keys"][name]: name for name in onnx_outputs if name in job["out_keys"]}
    out = {}
    for key, where in tflite_file.signature_outputs(flatbuffer).items():
        node = producers.get(keys.get(key, ""))
        if node:
            out[where] = node
    return out


def _op_nodes(flatbuffer: bytes, names: dict[str, str], onnx_outputs: list[str], job: dict[str, Any]) -> dict[str, Any]:
    """The .tflite's ops traced back to ONNX nodes: ``{"ops": {"subgraph:index": [nodes]}, "mapped", "ops_total"}``."""
    from . import tflite_file

    try:
        ops = tflite_file.op_table(flatbuffer)
        mapping = tflite_file.onnx_nodes_of(ops, names, _output_nodes(flatbuffer, job, onnx_outputs))
    except Exception as exc:  # noqa: BLE001 - a help for error messages, never a reason to fail
        return {"error": f"{type(exc).__name__}: {exc}"[:200]}
    return {"ops": {f"{s}:{i}": nodes for (s, i), nodes in mapping.items()}, "mapped": len(mapping),
            "ops_total": len(ops)}


def _denylist(job: dict[str, Any], keep: list[str], names: dict[str, str], onnx_outputs: list[str],
              found: dict[str, Any]) -> Any:
    """For ``to_tflite``: the output tensors of the calibrated model's ops that compute the ``keep`` ONNX nodes (their
    ops stay float: the quantizer's denylist); ``found`` gets what was matched, for the report."""
    from . import tflite_file

    def tensors(calibrated: bytes) -> list[str]:
        ops = tflite_file.op_table(calibrated)
        mapping = tflite_file.onnx_nodes_of(ops, names, _output_nodes(calibrated, job, onnx_outputs))
        producers = {(op["subgraph"], t["index"]): op for op in ops for t in op["outputs"] if t is not None}
        wanted, hit, out, feeders = set(keep), set(), [], []
        for op in ops:
            nodes = [n for n in mapping.get((op["subgraph"], op["index"]), []) if n in wanted]
            if not nodes:
                continue
            hit.update(nodes)
            out += [t["name"] for t in op["outputs"] if t is not None]
            # TFLite quantizes a tensor where it is written: a float op reads int8-rounded values unless the op that
            # writes its input is float too (ONNX Runtime's keep_float hands the kept node its float inputs alike)
            for t in op["inputs"]:
                src = producers.get((op["subgraph"], t["index"])) if t is not None and not t["constant"] else None
                if src is not None and t["type"] in tflite_file.FLOAT_TYPES:
                    feeders += [x["name"] for x in src["outputs"] if x is not None]
        found.update(onnx_nodes=keep, tflite_tensors=list(dict.fromkeys(out)),
                     input_writers=[n for n in dict.fromkeys(feeders) if n not in out],
                     not_found=[n for n in keep if n not in hit])
        return list(dict.fromkeys(out + feeders))

    return tensors


def _maxpool_pads_zero() -> None:
    """In a model for full int8, have onnx2tf pad a MaxPool with 0, not with float32's minimum.

    onnx2tf pads a MaxPool whose padding TF cannot express with an explicit Pad of
    ``dtype.min``: exact in float, but the calibrator then records -3.4e38 as the range of the
    padded tensor, and the int8 model comes out with a scale of 1e36 (XNNPACK refuses it, the
    builtin kernels abort). onnx2tf's own INT8 run (-oiqt) pads with 0 instead (its issue #444):
    exact when the MaxPool's input is never negative (after a ReLU) -- the export warns otherwise.
    """
    import importlib

    mod = importlib.import_module("onnx2tf.ops.MaxPool")
    make_node = mod.make_node

    def patched(*args, **kwargs):
        kwargs["output_integer_quantized_tflite"] = True  # the only effect in MaxPool: pad with 0
        return make_node(*args, **kwargs)

    mod.make_node = patched


def _numpy_scalar_compat() -> bool:
    """Give onnx2tf's op converters the ``int()``/``float()`` of a 1-element array they were written for.

    onnx2tf 1.28.8 calls ``int(k)`` on ONNX's 1-element tensors (TopK's ``k``, ...). NumPy 2.4
    turned that long-deprecated conversion into a ``TypeError``, so such models fail to convert in
    an environment whose numpy is shared with newer packages. When this numpy refuses it, each
    ``onnx2tf.ops`` module gets module-level ``int``/``float`` that take the single element, as
    numpy < 2.4 did; everything else is passed to the builtins unchanged.
    """
    import builtins
    import importlib

    import numpy as np

    try:
        int(np.array([1]))
        return False
    except TypeError:
        pass

    def compat(kind):
        """A stand-in for ``int``/``float``: calling it converts a 1-element array; ``isinstance``
        and ``issubclass`` against it answer as against the builtin."""

        class Meta(type):
            def __instancecheck__(cls, obj):
                return isinstance(obj, kind)

            def __subclasscheck__(cls, sub):
                return issubclass(sub, kind)

        def new(cls, *args, **kwargs):
            if len(args) == 1 and not kwargs and isinstance(args[0], np.ndarray) and args[0].size == 1:
                args = (args[0].reshape(()),)
            return kind(*args, **kwargs)

        return Meta(kind.__name__, (), {"__new__": new})

    if getattr(importlib.import_module, "_edgeconv_scalar_compat", False):
        return True  # already installed in this process (a worker that runs several jobs)
    shims = {"int": compat(builtins.int), "float": compat(builtins.float)}
    import_module = importlib.import_module

    def patched(name, package=None):
        mod = import_module(name, package)
        if name.startswith("onnx2tf.ops.") and not getattr(mod, "_edgeconv_scalar_compat", False):
            for k, fn in shims.items():
                setattr(mod, k, fn)
            mod._edgeconv_scalar_compat = True
        return mod

    patched._edgeconv_scalar_compat = True
    importlib.import_module = patched
    return True


def _sample_feed(calib: dict[str, Any] | None, onnx_inputs: list[tuple[str, list[Any]]], job: dict[str, Any]):
    """One feed in the source layout: the first calibration sample, else seeded data."""
    import numpy as np

    if calib:
        return {name: calib[name][0] for name, _ in onnx_inputs}
    rng = np.random.default_rng(0)
    dtypes = job.get("in_dtypes") or {}
    feed = {}
    for name, shape in onnx_inputs:
        dims = [d if isinstance(d, int) and d > 0 else 1 for d in shape]
        dt = np.dtype(dtypes.get(name, "float32"))
        feed[name] = rng.random(dims, dtype=np.float32).astype(dt) if dt.kind == "f" else np.zeros(dims, dt)
    return feed


def _output_layouts(onnx_path, model, feed, in_perms, onnx_inputs, onnx_outputs):
    """For each output, the permutation of the ONNX output the TF model gives (identity when it
    kept the layout): the one whose shape matches with the smallest error."""
    import numpy as np
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    sess = ort.InferenceSession(onnx_path, so, providers=["CPUExecutionProvider"])
    refs = sess.run(onnx_outputs, feed)
    args = [np.ascontiguousarray(feed[name].transpose(in_perms[name])) for name, _ in onnx_inputs]
    ys = model(args if len(args) > 1 else args[0], training=False)
    ys = [np.asarray(y) for y in (ys if isinstance(ys, (list, tuple)) else [ys])]
    perms, check = {}, {}
    for name, ref, got in zip(onnx_outputs, refs, ys):
        ref = np.asarray(ref)
        best = None
        rank = ref.ndim
        candidates = [tuple(range(rank))]
        if rank in CHANNELS_LAST:
            candidates.append(CHANNELS_LAST[rank])
        if rank <= 5:
            candidates += [p for p in itertools.permutations(range(rank)) if p not in candidates]
        for p in candidates:
            r = ref.transpose(p)
            if r.shape != got.shape:
                continue
            err = float(np.abs(r.astype(np.float64) - got).max()) if r.size else 0.0
            if best is None or err < best[1]:
                best = (p, err)
            if err == 0.0:
                break
        if best is None:
            raise RuntimeError(f"onnx2tf's output {name!r} has shape {list(got.shape)}, the ONNX model's "
                               f"{list(ref.shape)}: no transpose maps one to the other")
        scale = float(np.abs(ref).max()) if ref.size else 0.0
        perms[name] = list(best[0])
        check[name] = {"perm": list(best[0]), "max_abs": best[1], "rel_err": best[1] / (scale + 1e-12)}
    return perms, check


def _internal_error(exc: BaseException) -> str | None:
    """Where inside onnx2tf an exception of its own code was raised (``onnx2tf/ops/Resize.py:412``), or None when
    it came from elsewhere (TensorFlow, the converter)."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if "/onnx2tf/" in f.filename.replace("\\", "/")]
    if not frames:
        return None
    last = frames[-1]
    path = last.filename.replace("\\", "/")
    return f"onnx2tf/{path.split('/onnx2tf/', 1)[1]}:{last.lineno}"


def main(argv: list[str]) -> int:
    job = json.loads(Path(argv[1]).read_text())
    block_network()
    try:
        result = run(job)
        code = 0
    except BaseException as exc:  # noqa: BLE001 - every failure becomes a result the caller reads
        result = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc(),
                  "network_attempts": list(_attempts), "converting": _layers["current"],
                  "internal": _internal_error(exc)}
        try:
            from .convert import brief

            result["brief"] = brief(exc)
        except Exception:  # noqa: BLE001
            pass
        code = 1
    Path(job["result"]).write_text(json.dumps(result, indent=1, default=str))
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # skip TF's slow, occasionally crashing interpreter teardown


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
