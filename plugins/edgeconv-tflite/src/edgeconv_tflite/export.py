"""The ``tflite`` exporter: two routes to one ``.tflite``, and the artifact's IO contract.

- ``tf`` (a Keras model or a SavedModel): ``tf.lite.TFLiteConverter`` in this process, on a
  SavedModel (in ``job.scratch``) whose serving signature uses the source's names. The layout stays as the source has
  it (NHWC for Keras images).
- ``onnx`` (and so PyTorch, via the core's torch -> onnx pass): onnx2tf in a worker process
  (``worker.py``: offline, isolated, with a timeout), then TFLiteConverter there.
  Inputs the source declares NCHW (NCW) become NHWC (NWC) -- onnx2tf's native layout, with no
  transpose left at the model's edge; ``-O input_layout=source`` keeps every input as it is.
  Outputs always keep the source's layout (a transpose is added where onnx2tf made one
  channels-last): see docs/targets/tflite.md for why.

Precision is done here, not by passes: fp32, fp16 (float16 weights), int8-dynamic (int8
weights, float activations), int8 (weights and activations, calibrated with a representative
dataset from ``job.calibration()``; float IO by default, ``-O io_type=int8|uint8`` for
quantized IO).

The artifact's ``IOContract`` says exactly what the ``.tflite`` takes and gives: the source's
names, its layout after the change (``NHWC``) with the source's dynamic axis names carried to
their new positions, the dtype, and ``scale``/``zero_point`` for quantized IO. The core's
``adapt_inputs``/``adapt_outputs`` transpose and (de)quantize from it during verification.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

from edgeconv.plugin import BadInput, IOContract, Model, TensorSpec, ToolchainFailed, ToolchainMissing

from .hooks import HINT
from .quiet import native_output

CHANNELS_LAST_LAYOUT = {"NCHW": "NHWC", "NCW": "NWC"}


KEEP_FLOAT_TF_ROUTE = (
    "keep_float names ONNX nodes, and a TF/Keras source reaches TFLite without an ONNX graph: convert it through "
    "ONNX (--via onnx), or use -O int8_fallback=true / -p int8-dynamic")


def export(model: Model, job: Any):
    from edgeconv.plugin import keep_float_option

    if model.form == "tf":
        if keep_float_option(job.options):
            raise BadInput(KEEP_FLOAT_TF_ROUTE, stage="export")
        return _tf_route(model, job)
    if model.form == "onnx":
        return _onnx_route(model, job)
    raise BadInput(f"the tflite target takes tf or onnx models, not {model.form!r}", stage="export")


def _keep_float(model: Model, job: Any, feeds: list[dict[str, Any]] | None) -> tuple[list[str], list[dict[str, Any]]]:
    """The ONNX nodes kept in float in the int8 model: ``-O keep_float`` (checked against the graph) and the
    mixed-range recipe (an output Concat of ranges > 10x apart and the data movement around it;
    ``-O mixed_range_float=false``: not)."""
    from edgeconv.plugin import did_you_mean, iter_nodes, keep_float_option

    keep = keep_float_option(job.options)
    if keep and job.precision != "int8":
        job.warn(f"keep_float applies to int8; {job.precision} keeps every layer in float already")
        return [], []
    have = {n.name for n in iter_nodes(model.obj.graph) if n.name}
    for name in keep:
        if name not in have:
            raise BadInput(f"keep_float: the model has no node {name!r}{did_you_mean(name, have)}", stage="export")
    recipe: list[dict[str, Any]] = []
    if job.precision == "int8" and feeds and job.options.get("mixed_range_float", True):
        from edgeconv.plugin import mixed_range_concats

        recipe = mixed_range_concats(model.obj, feeds[:MIXED_RANGE_SAMPLES])
        for r in recipe:
            job.warn(f"output {r['output']!r} concatenates ranges {r['ratio']:.0f}x apart: its Concat {r['concat']!r} "
                     "and the data movement around it stay float (TFLite's quantizer denylist), each part at its own "
                     "int8 scale (-O mixed_range_float=false quantizes it with one scale)")
    return list(dict.fromkeys([*keep, *(n for r in recipe for n in r["keep_float"])])), recipe


MIXED_RANGE_SAMPLES = 32


# -- ONNX route ------------------------------------------------------------------------------
def _onnx_route(model: Model, job: Any):
    import numpy as np

    from edgeconv.plugin import save_onnx as save

    from .convert import signature_keys

    for module, what in (("onnx2tf", "onnx2tf"), ("tf_keras", "tf_keras (onnx2tf builds Keras-2 models)")):
        if importlib.util.find_spec(module) is None:
            raise ToolchainMissing(f"the ONNX route of target 'tflite' needs {what}, which is not installed",
                                   stage="export", hint=HINT)
    work = Path(job.scratch) / "tflite"
    work.mkdir(parents=True, exist_ok=True)
    onnx_path = work / "model.onnx"
    safe, renamed = _scope_safe_names(model.obj)
    save(safe, onnx_path)
    io = model.io
    src_layouts = {t.name: t.layout for t in job.source_io.inputs}
    keep = [t.name for t in io.inputs if len(t.shape) in (3, 4, 5)  # onnx2tf transposes only these ranks
            and (job.options.get("input_layout") == "source" or src_layouts.get(t.name, t.layout) not in CHANNELS_LAST_LAYOUT)]
    in_keys = signature_keys([t.name for t in io.inputs])
    out_keys = signature_keys([t.name for t in io.outputs])

    calib_file = None
    feeds = None
    if job.precision == "int8":
        for node in _padded_maxpools_on_signed_inputs(model.obj.graph):
            job.warn(f"MaxPool {node} pads with 0 in the int8 model (onnx2tf's rule for int8): exact only "
                     "when its input is never negative, as after a ReLU")
        feeds = _calibration_feeds(job)
        calib_file = work / "calib.npz"
        np.savez(calib_file, **{t.name: np.stack([f[t.name] for f in feeds]) for t in io.inputs})
    keep_float, recipe = _keep_float(model, job, feeds)
    tflite = Path(job.workdir) / f"{job.stem}.tflite"
    spec = {
        "onnx": str(onnx_path),
        "tflite": str(tflite),
        "precision": job.precision,
        "options": _jsonable(job.options),
        "keep": keep,
        "in_keys": in_keys,
        "out_keys": out_keys,
        "in_dtypes": {t.name: t.dtype for t in io.inputs},
        "has_erf": any(n.op_type == "Erf" for n in _all_nodes(model.obj.graph)),
        "calib": str(calib_file) if calib_file else None,
        "keep_float": keep_float,
        "renamed": renamed,
        "output_producers": {o: p.name for p in model.obj.graph.node for o in p.output
                             if o in {t.name for t in io.outputs} and p.name},
        "workdir": str(work),
        "result": str(work / "result.json"),
    }
    job_file = work / "job.json"
    job_file.write_text(json.dumps(spec, indent=1))
    job.status("onnx2tf -> TFLite (worker process)")
    res = _run_worker(job_file, work, int(job.options.get("timeout") or 1800))
    for w in res.get("warnings", []):
        job.warn(w)
    in_perms = {k: tuple(v) for k, v in res["in_perms"].items()}
    onnx_ops = Counter(n.op_type for n in _all_nodes(model.obj.graph))
    details = {
        "route": "onnx2tf",
        "onnx2tf": {**res["onnx2tf"], "layout_check": res.get("layout_check"),
                    "numpy_scalar_compat": res.get("numpy_scalar_compat"),
                    "network_attempts": res.get("network_attempts", [])},
        "onnx_ops": dict(sorted(onnx_ops.items())),
        "worker_timings": res["timings"],
    }
    if "calibration_samples" in res:
        details["calibration_samples"] = res["calibration_samples"]
    if res.get("keep_float"):
        details["keep_float"] = res["keep_float"]
        for name in res["keep_float"].get("not_found") or []:
            job.warn(f"keep_float: ONNX node {name!r} has no op of its own in the .tflite (folded or fused at "
                     "conversion): nothing to keep in float")
    if recipe:
        details["mixed_range_float"] = recipe
    nodes = _write_node_map(tflite, res.get("op_nodes") or {}, model.obj.graph)
    art = _artifact(tflite, io, job, in_perms, in_keys, out_keys, res["converter"], res["versions"], details)
    if nodes is not None:
        art.files.append(nodes)
    kept = res.get("keep_float") or {}
    _share(art, job, set(kept.get("tflite_tensors") or ()) | set(kept.get("input_writers") or ()))
    return art


def _write_node_map(tflite: Path, op_nodes: dict[str, Any], graph: Any) -> Path | None:
    """Beside the .tflite: which ONNX node each of its ops computes (``"subgraph:op index": [nodes]``) and, per ONNX
    node, the element-wise nodes that produce its inputs -- for the runner to name the source node when a LiteRT kernel
    fails ("Node number 22 (DIV) failed to invoke") and the float island that avoids it."""
    if not op_nodes.get("ops"):
        return None
    from .tflite_file import NODE_MAP_SUFFIX

    heavy = {"Conv", "ConvTranspose", "MatMul", "Gemm"}
    producers = {o: n for n in graph.node for o in n.output if n.name}
    inputs = {n.name: sorted({producers[x].name for x in n.input if x in producers and producers[x].op_type not in heavy})
              for n in graph.node if n.name}
    path = tflite.with_name(tflite.stem + NODE_MAP_SUFFIX)
    path.write_text(json.dumps({"schema": "edgeconv.tflite-onnx-nodes/1", **op_nodes,
                                "input_producers": {k: v for k, v in inputs.items() if v}}, indent=0))
    return path


def _share(art: Any, job: Any, kept: set[str]) -> None:
    """The share of the .tflite's compute at the precision asked for, judged by the rule every target shares."""
    if job.precision not in ("int8", "int8-dynamic", "fp16"):
        return
    from . import tflite_file

    share = tflite_file.precision_share(art.path, job.precision, kept)
    if job.precision == "fp16":
        share["note"] = "float16 weights, widened to float32 when LiteRT loads them (XNNPACK computes in float32)"
    from edgeconv.plugin import share_failure

    why = share_failure(share)
    share.update({"pass": why is None, "reason": why})
    art.details["precision_share"] = share
    if why:
        job.warn(f"not {job.precision}: {why}")


def _run_worker(job_file: Path, work: Path, timeout: int) -> dict[str, Any]:
    log = work / "worker.log"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONUNBUFFERED="1")
    started = time.perf_counter()
    try:
        with open(log, "wb") as out:
            proc = subprocess.run([sys.executable, "-m", "edgeconv_tflite.worker", str(job_file)], cwd=work,
                                  stdout=out, stderr=subprocess.STDOUT, env=env, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise ToolchainFailed(f"onnx2tf did not finish within {timeout} s", stage="export",
                              hint="raise it with -O timeout=SECONDS") from None
    result_file = work / "result.json"
    res = json.loads(result_file.read_text()) if result_file.is_file() else None
    if proc.returncode != 0 or res is None or "error" in res:
        raise worker_failure(res, proc.returncode, log)
    res["timings"]["worker_total"] = round(time.perf_counter() - started, 3)
    return res


def worker_failure(res: dict[str, Any] | None, returncode: int, log: Path) -> ToolchainFailed:
    """The worker's failure as one line with its cause: the ONNX node onnx2tf was converting and where inside
    onnx2tf it broke (an ``UnboundLocalError: cannot access local variable ...`` of its op converter is onnx2tf's
    bug on that node, not the model's), a TF op with no TFLite kernel, an int8 kernel missing."""
    if res is None:
        return ToolchainFailed(f"onnx2tf -> TFLite failed: the worker died (exit {returncode}): {_tail(log)}",
                               stage="export")
    cause = _ANSI.sub("", res.get("brief") or res.get("error") or _tail(log))
    node, internal = res.get("converting"), res.get("internal")
    hint = None
    if node and internal:
        error = " ".join(str(res.get("error") or cause).split())[:200]
        cause = (f"onnx2tf broke inside its converter while converting node {node[0]!r} ({node[1]}), at {internal}: "
                 f"{error}")
        hint = (f"an error of onnx2tf's {node[1]} converter on this node's attributes or shapes, not of the model: "
                "pin the input shapes (--input-shape), re-export the model with another opset, or use another target")
    elif node:
        cause = f"{cause} (while onnx2tf converted node {node[0]!r}, {node[1]})"
    if hint is None:
        if re.search(r"neither a custom op nor a flex op|Select TensorFlow op|custom ops", cause):
            hint = "TFLite has no builtin kernel for these ops: -O select_tf_ops=true lets them run as TF (Flex) ops"
        elif "not yet implemented" in _tail(log, 4000):
            hint = "onnx2tf has no converter for an operator of this graph (see the pre-check)"
        elif re.search(r"quantiz|int8", cause, re.I):
            hint = "-O int8_fallback=true keeps ops without an int8 kernel in float"
    return ToolchainFailed(f"onnx2tf -> TFLite failed: {cause}", stage="export", hint=hint)


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _tail(log: Path, chars: int = 300) -> str:
    try:
        text = _ANSI.sub("", log.read_text(errors="replace"))
    except OSError:
        return "no output"
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith(("W0000", "I0000", "WARNING: All"))]
    errors = [ln for ln in lines if "ERROR" in ln or "Error" in ln]
    picked = errors[-3:] if errors else lines[-3:]
    return " | ".join(picked)[-chars:] or "no output"


def _padded_maxpools_on_signed_inputs(graph) -> list[str]:
    """MaxPool nodes with explicit padding whose input does not come from a ReLU."""
    producers = {o: n for n in graph.node for o in n.output}
    out = []
    for node in graph.node:
        if node.op_type != "MaxPool":
            continue
        attrs = {a.name: a for a in node.attribute}
        pads = list(attrs["pads"].ints) if "pads" in attrs else []
        auto = attrs["auto_pad"].s.decode() if "auto_pad" in attrs else "NOTSET"
        if not any(pads) and auto in ("NOTSET", "VALID"):
            continue
        src = producers.get(node.input[0])
        if src is None or src.op_type != "Relu":
            out.append(f"{node.name or '<MaxPool>'} (input from {src.op_type if src is not None else 'a graph input'})")
    return out


_SCOPE_BAD = re.compile(r"[^A-Za-z0-9_.\\/>-]")


def _scope_safe_names(proto):
    """A copy with node names TF accepts as name scopes (onnx2tf names its layers after the nodes), and the renames
    (original -> new).

    paddle2onnx names nodes ``Conv@0``, ``Softmax@0``: TF refuses ``@`` in a scope and onnx2tf fails
    ("'Softmax@0' is not a valid scope name"). Node names carry no meaning in ONNX; tensor names are kept.
    """
    if not any(_SCOPE_BAD.search(n.name) for n in _all_nodes(proto.graph)):
        return proto, {}
    import onnx

    out = onnx.ModelProto()
    out.CopyFrom(proto)
    used = {n.name for n in _all_nodes(out.graph)}
    renamed = {}
    for node in _all_nodes(out.graph):
        if _SCOPE_BAD.search(node.name):
            base = _SCOPE_BAD.sub("_", node.name)
            name, i = base, 1
            while name in used:
                name, i = f"{base}_{i}", i + 1
            used.add(name)
            renamed[node.name] = name
            node.name = name
    return out, renamed


def _all_nodes(graph):
    for node in graph.node:
        yield node
        for attr in node.attribute:
            if attr.type == 5:  # GRAPH
                yield from _all_nodes(attr.g)
            for g in attr.graphs:
                yield from _all_nodes(g)


# -- TF route --------------------------------------------------------------------------------
def _tf_route(model: Model, job: Any):
    from .convert import (
        brief,
        quiet_tensorflow,
        representative_dataset,
        save_function,
        save_keras3,
        signature_keys,
        to_tflite,
    )

    tf = quiet_tensorflow()
    io = model.io
    kind, obj = model.obj["kind"], model.obj["model"]
    in_keys = signature_keys([t.name for t in io.inputs])
    out_keys = signature_keys([t.name for t in io.outputs])
    specs = [tf.TensorSpec([d if isinstance(d, int) else None for d in t.shape], t.dtype, name=in_keys[t.name])
             for t in io.inputs]
    saved = Path(job.scratch) / "tflite_saved_model"
    started = time.perf_counter()
    job.status("SavedModel with the source's signature")
    log = Path(job.scratch) / "tflite_converter.log"
    try:
        with native_output(log):
            if kind == "keras":
                save_keras3(obj, saved, specs, [out_keys[t.name] for t in io.outputs])
            else:
                sig = obj.signatures["serving_default"]
                names = [t.name for t in io.inputs]

                def serve(*args):
                    out = sig(**dict(zip(names, args)))
                    return {out_keys[t.name]: out[t.name] for t in io.outputs}

                save_function(obj, serve, specs, saved)
    except Exception as exc:
        raise ToolchainFailed(f"writing the SavedModel for TFLite failed: {brief(exc)}", stage="export") from None
    saved_seconds = round(time.perf_counter() - started, 3)
    rep, n = None, None
    if job.precision == "int8":
        feeds = _calibration_feeds(job)
        rep, n = representative_dataset(feeds, in_keys), len(feeds)
    tflite = Path(job.workdir) / f"{job.stem}.tflite"
    job.status(f"TFLiteConverter ({job.precision})")
    try:
        with native_output(log):
            flatbuffer, settings = to_tflite(saved, job.precision, job.options, rep)
    except Exception as exc:
        cause = brief(exc)
        hint = None
        if re.search(r"neither a custom op nor a flex op|custom ops|not supported", cause):
            hint = "TFLite has no builtin kernel for these ops: -O select_tf_ops=true lets them run as TF (Flex) ops"
        raise ToolchainFailed(f"TFLiteConverter failed: {cause}", stage="export", hint=hint) from None
    tflite.write_bytes(flatbuffer)
    versions = {"tensorflow": tf.__version__}
    details = {"route": "tf-direct", "source_kind": kind, "saved_model_seconds": saved_seconds}
    if n is not None:
        details["calibration_samples"] = n
    return _artifact(tflite, io, job, {}, in_keys, out_keys, settings, versions, details)


def _calibration_feeds(job: Any) -> list[dict[str, Any]]:
    """The representative dataset: the calibration set in feeds of the model's batch size."""
    ds = job.calibration()
    feeds = [feed for feed, _ in ds.feeds(job.source_io)]
    if not feeds:
        raise BadInput("the calibration set holds no complete batch", stage="optimize")
    return feeds


# -- the artifact ----------------------------------------------------------------------------
def _artifact(tflite: Path, io: IOContract, job: Any, in_perms: dict[str, tuple[int, ...]], in_keys: dict[str, str],
              out_keys: dict[str, str], settings: dict[str, Any], versions: dict[str, str], details: dict[str, Any]):
    from edgeconv.plugin import Artifact

    from . import tflite_file

    hist = tflite_file.operators(tflite)
    flex = tflite_file.flex_ops(hist)
    sig = tflite_file.signature_io(tflite)
    src = {t.name: t for t in (*job.source_io.inputs, *job.source_io.outputs)}
    inputs, outputs, changes = [], [], []
    for t in io.inputs:
        d = _detail(sig, "inputs", in_keys[t.name], tflite)
        perm = in_perms.get(t.name) or tuple(range(len(t.shape)))
        src_layout = (src.get(t.name) or t).layout
        layout = CHANNELS_LAST_LAYOUT.get(src_layout or "", "NHWC" if len(t.shape) == 4 else None) \
            if list(perm) != sorted(perm) else src_layout
        spec = _spec(t, d, perm, layout, "input")
        inputs.append(spec)
        changes += _changes(t, spec, perm, "input")
    for t in io.outputs:
        d = _detail(sig, "outputs", out_keys[t.name], tflite)
        spec = _spec(t, d, tuple(range(len(t.shape))), t.layout, "output")
        outputs.append(spec)
        changes += _changes(t, spec, None, "output")
    art_io = IOContract(tuple(inputs), tuple(outputs), dict(io.preprocessing))
    for c in changes:
        job.warn(c["note"])
    select = bool(job.options.get("select_tf_ops"))
    if select:
        job.warn(f"SELECT_TF_OPS was allowed: the model uses TF (Flex) ops {', '.join(flex)}; the runtime needs "
                 "the Flex delegate (tensorflow-lite-select-tf-ops), the plain LiteRT interpreter cannot run it"
                 if flex else "SELECT_TF_OPS was allowed but no TF (Flex) op was needed: the model runs on the "
                 "builtin LiteRT runtime")
    from importlib.metadata import version

    tools = {**versions, "ai_edge_litert": version("ai-edge-litert"), "edgeconv_tflite": _own_version()}
    renamed = {n: k for n, k in {**in_keys, **out_keys}.items() if n != k}
    runner_options: dict[str, Any] = {}
    if renamed:
        runner_options["tensor_names"] = renamed
    if job.options.get("threads"):
        runner_options["num_threads"] = int(job.options["threads"])
    if job.options.get("xnnpack") is False:
        runner_options["xnnpack"] = False
    details.update({
        "converter": settings,
        "io_changes": changes,
        "signature": {"name": sig["signature"], "inputs": {t.name: in_keys[t.name] for t in io.inputs},
                      "outputs": {t.name: out_keys[t.name] for t in io.outputs},
                      "tensors": {k: d["tensor"] for part in ("inputs", "outputs") for k, d in sig[part].items()}},
        "tflite_ops": dict(hist.most_common()),
        "flex_ops": flex,
        "select_tf_ops": select,
    })
    return Artifact(
        path=tflite,
        form="tflite",
        io=art_io,
        files=[tflite],
        tools=tools,
        details=details,
        runner_options=runner_options,
        runnable=not flex,
        not_runnable_reason=(f"the model uses TF (Flex) ops {', '.join(flex)}: running it needs the Flex delegate, "
                             "which the LiteRT interpreter installed here does not include") if flex else "",
    )


def _detail(sig: dict[str, Any], part: str, key: str, tflite: Path) -> dict[str, Any]:
    try:
        return sig[part][key]
    except KeyError:
        have = ", ".join(sig[part]) or "none"
        raise ToolchainFailed(f"the .tflite has no signature {part[:-1]} {key!r} (it has: {have})", file=tflite,
                              stage="export") from None


def _spec(t: TensorSpec, d: dict[str, Any], perm: tuple[int, ...], layout: str | None, role: str) -> TensorSpec:
    """The artifact's tensor: the source's dims moved by ``perm`` (dynamic names kept), checked
    against what the .tflite declares."""
    want = [t.shape[p] for p in perm]
    have = d["shape"]
    if len(have) != len(want):
        raise ToolchainFailed(f"the .tflite {role} {t.name!r} has rank {len(have)} {have}, the source's is "
                              f"{len(want)} {list(t.shape)}", stage="export")
    shape = []
    for w, h in zip(want, have):
        if h == -1:
            shape.append(w)
        elif isinstance(w, int) and w != h:
            raise ToolchainFailed(f"the .tflite {role} {t.name!r} has shape {have}, expected {want} "
                                  f"(the source's {list(t.shape)})", stage="export")
        else:
            shape.append(h if isinstance(w, int) else w)  # a dynamic source axis the .tflite fixed: keep the name
    return replace(t, shape=tuple(shape), dtype=d["dtype"], layout=layout, scale=d.get("scale"),
                   zero_point=d.get("zero_point"))


def _changes(src: TensorSpec, art: TensorSpec, perm: tuple[int, ...] | None, role: str) -> list[dict[str, Any]]:
    out = []
    if perm is not None and list(perm) != sorted(perm):
        out.append({"tensor": src.name, "role": role, "change": "layout", "from": src.layout, "to": art.layout,
                    "transpose": list(perm), "shape": list(art.shape),
                    "note": f"{role} {src.name!r} is {art.layout} {_fmt(art.shape)} in the .tflite (the source: "
                            f"{src.layout or 'channels-first'} {_fmt(src.shape)}): feed x.transpose{tuple(perm)}"})
    if art.scale is not None and art.dtype != src.dtype:
        how = (f"q = clip(round(x / {art.scale:.6g}) + ({art.zero_point}), {art.dtype} range)" if role == "input"
               else f"x = (q - ({art.zero_point})) * {art.scale:.6g}")
        out.append({"tensor": src.name, "role": role, "change": "quantized", "from": src.dtype, "to": art.dtype,
                    "scale": art.scale, "zero_point": art.zero_point,
                    "note": f"{role} {src.name!r} is {art.dtype} in the .tflite (the source: {src.dtype}): {how}"})
    elif art.dtype != src.dtype:
        out.append({"tensor": src.name, "role": role, "change": "dtype", "from": src.dtype, "to": art.dtype,
                    "note": f"{role} {src.name!r} is {art.dtype} in the .tflite (the source: {src.dtype})"})
    return out


def _fmt(shape: tuple[Any, ...]) -> str:
    return "[" + ",".join(map(str, shape)) + "]"


def _jsonable(opts: dict[str, Any]) -> dict[str, Any]:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in opts.items()}


def _own_version() -> str:
    from . import __version__

    return __version__


def doctor() -> dict[str, Any]:
    """Versions of the toolchain (onnx2tf's read from its metadata: importing it alters the process)."""
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, Any] = {}
    for dist in ("tensorflow", "tf_keras", "onnx2tf", "ai-edge-litert", "onnx", "onnxruntime"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = None
    from .convert import quiet_tensorflow

    out["tensorflow_imported"] = quiet_tensorflow().__version__
    from ai_edge_litert.interpreter import Interpreter  # noqa: F401

    out["onnx_route"] = "ready" if out["onnx2tf"] and out["tf_keras"] else "missing onnx2tf/tf_keras: " + HINT
    return out
