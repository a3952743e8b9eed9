"""The ``rknn`` exporter: ONNX -> rknn-toolkit2 (config, load_onnx, build or hybrid quantization, export_rknn,
accuracy_analysis) -> .rknn.

The toolkit runs in the rknn toolchain environment (``edgeconv toolchain install rknn``, or the setting
``EDGECONV_TOOLCHAIN_RKNN``) as a subprocess (``bridge.py build``); files cross the boundary: the ONNX, the dataset
list with one ``.npy`` per sample and input, the recipe (``rknn.config`` arguments, float16 layers) and the toolkit's
result as JSON. Without the environment nothing runs: the conversion stops before any work with the one-line error
naming ``edgeconv toolchain install rknn`` (exit 3).

The output folder holds ``<stem>.rknn``, ``rknn_toolkit.json`` (toolkit version, every step with its return code and
time, the per-layer accuracy analysis), ``accuracy_analysis.txt`` (the toolkit's own table) and ``rknn_build/`` (the
recipe: the simulator cannot run a .rknn read back from disk, so the runner rebuilds it from this recipe, see
``runner.py``).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

from edgeconv.plugin import BadInput, ToolchainFailed

from .hooks import PLATFORMS
from .toolchain import TOOLKIT_VERSION

RECIPE_SCHEMA = "edgeconv.rknn.recipe/1"
# rknn-toolkit2 2.5.0 load_onnx: "Unsupport onnx opset 22, need <= 19!"
MAX_OPSET = 19
BUILD_DIR = "rknn_build"


# -- options ------------------------------------------------------------------------------------------------------
def channel_values(text: str, what: str) -> list[float]:
    """``-O mean_values=123.7,116.3,103.5`` -> floats (per channel)."""
    parts = [p.strip() for p in str(text or "").split(",") if p.strip()]
    try:
        return [float(p) for p in parts]
    except ValueError:
        raise BadInput(f"-O {what}={text!r}: comma-separated numbers per channel, e.g. 123.675,116.28,103.53",
                       stage="options") from None


def normalisation(opts: dict[str, Any], io, preprocess=None) -> tuple[list[float], list[float]] | None:
    """(mean, std) folded into the model, in the input's own units, or None. From -O mean_values/std_values, or with
    -O fold_preprocess=true from --mean/--std (edgeconv's are after scaling pixels to 0..1: divided by the scale)."""
    mean, std = channel_values(opts.get("mean_values"), "mean_values"), channel_values(opts.get("std_values"),
                                                                                       "std_values")
    if opts.get("fold_preprocess"):
        if mean or std:
            raise BadInput("-O fold_preprocess takes mean and std from --mean/--std: give either, not both",
                           stage="options")
        if preprocess is None:
            raise BadInput("-O fold_preprocess=true needs --mean/--std (the image preprocessing)", stage="options")
        mean = [m / preprocess.scale for m in preprocess.mean]
        std = [s / preprocess.scale for s in preprocess.std]
    if not mean and not std:
        return None
    if len(io.inputs) != 1:
        raise BadInput("-O mean_values/std_values: edgeconv folds a normalisation into single-input models only "
                       f"(this one has {len(io.inputs)} inputs)", stage="options")
    spec = io.inputs[0]
    channels = spec.shape[1] if len(spec.shape) == 4 and isinstance(spec.shape[1], int) else None
    mean = mean or [0.0] * len(std)
    std = std or [1.0] * len(mean)
    if len(mean) != len(std) or (channels is not None and len(mean) not in (1, channels)):
        raise BadInput(f"-O mean_values/std_values: {len(mean)} and {len(std)} values for an input with "
                       f"{channels if channels is not None else 'unknown'} channels", stage="options")
    if any(s == 0 for s in std):
        raise BadInput("-O std_values: a std of 0", stage="options")
    if channels is not None and len(mean) == 1 and channels > 1:
        mean, std = mean * channels, std * channels
    return mean, std


def parse_shape_sets(text: str, io) -> list[list[list[int]]]:
    """``-O shape_sets``: ``1x3x224x224;1x3x320x320`` (one input) or ``a:1x3x8x8,b:1x4;a:...`` -> rknn.config
    dynamic_input: one list of input shapes (in the model's input order) per set."""
    names = [t.name for t in io.inputs]
    sets = []
    for chunk in [c.strip() for c in str(text).split(";") if c.strip()]:
        given: dict[str, list[int]] = {}
        for part in [p.strip() for p in chunk.split(",") if p.strip()]:
            name, sep, dims = part.rpartition(":")
            if not sep:
                if len(names) != 1:
                    raise BadInput(f"-O shape_sets: {part!r} names no input; this model has {len(names)} inputs "
                                   "(write NAME:AxBxC)", stage="options")
                name = names[0]
            try:
                shape = [int(d) for d in dims.split("x")]
            except ValueError:
                raise BadInput(f"-O shape_sets: {part!r} is not [NAME:]AxBxC", stage="options") from None
            if name not in names:
                from edgeconv.plugin import did_you_mean

                raise BadInput(f"-O shape_sets: the model has no input {name!r}{did_you_mean(name, names)}",
                               stage="options")
            if any(d <= 0 for d in shape):
                raise BadInput(f"-O shape_sets: {part!r} has a dimension <= 0", stage="options")
            given[name] = shape
        missing = [n for n in names if n not in given]
        if missing:
            raise BadInput(f"-O shape_sets: the set {chunk!r} gives no shape for input {missing[0]!r}",
                           stage="options")
        sets.append([given[n] for n in names])
    for s in sets:
        for t, shape in zip(io.inputs, s, strict=True):
            if len(shape) != len(t.shape) or any(isinstance(d, int) and d > 0 and d != g
                                                 for d, g in zip(t.shape, shape, strict=True)):
                raise BadInput(f"-O shape_sets: {t.name} {shape} does not fit the model's shape "
                               f"{list(t.shape)}", stage="options")
    return sets


def shape_plan(io, opts: dict[str, Any], profiles: dict[str, list] | None, warn=lambda m: None):
    """(static shapes per input, shape sets or None). Shape sets come from -O shape_sets, else from an
    --input-shape profile (min, opt, max: three sets); otherwise every input is static (a dynamic batch axis is
    built as 1, with a warning; any other dynamic axis is bad input naming --input-shape and -O shape_sets)."""
    if opts.get("shape_sets"):
        sets = parse_shape_sets(opts["shape_sets"], io)
        return None, sets
    profs = {k: v for k, v in (profiles or {}).items() if len(v) == 3}
    if profs:
        sets = []
        for i in range(3):
            sets.append([list(profs[t.name][i]) if t.name in profs else list(t.concrete_shape()) for t in io.inputs])
        unique = [s for k, s in enumerate(sets) if s not in sets[:k]]
        return None, unique
    shapes = []
    for t in io.inputs:
        dims = []
        for i, d in enumerate(t.shape):
            if isinstance(d, int) and d > 0:
                dims.append(d)
            elif i == 0:
                dims.append(1)
                warn(f"input {t.name}: dynamic batch axis {d!r} built as 1 (give --input-shape {t.name}:N,... or "
                     "-O shape_sets for other batches)")
            else:
                raise BadInput(f"input {t.name} has the dynamic axis {d!r} at position {i}: give --input-shape "
                               f"{t.name}:" + ",".join(str(x) if isinstance(x, int) else "N" for x in t.shape)
                               + " or the shapes the .rknn must support, -O shape_sets=...", stage="export")
        shapes.append(dims)
    return shapes, None


def config_args(*, platform: str, precision: str, opts: dict[str, Any], norm, shape_sets) -> dict[str, Any]:
    """The keyword arguments of ``rknn.config``."""
    if platform not in PLATFORMS:
        raise BadInput(f"-O platform={platform}: one of {', '.join(PLATFORMS)}", stage="options")
    cfg: dict[str, Any] = {"target_platform": platform, "optimization_level": int(opts.get("optimization_level", 3)),
                           "float_dtype": "float16"}
    if precision == "int8":
        cfg.update(quantized_dtype="w8a8", quantized_algorithm=str(opts.get("quantized_algorithm") or "normal"),
                   quantized_method=str(opts.get("quantized_method") or "channel"))
    if norm is not None:
        cfg.update(mean_values=[list(norm[0])], std_values=[list(norm[1])])
    if shape_sets:
        cfg["dynamic_input"] = shape_sets
    return cfg


# -- files for the toolkit ----------------------------------------------------------------------------------------
def to_raw(x, norm):
    """A source-domain sample -> what the .rknn takes when a normalisation is folded in: x * std + mean (NCHW)."""
    import numpy as np

    if norm is None:
        return np.asarray(x, dtype=np.float32) if np.asarray(x).dtype.kind == "f" else np.asarray(x)
    mean, std = (np.asarray(v, dtype=np.float32).reshape(1, -1, *([1] * (np.ndim(x) - 2))) for v in norm)
    return np.asarray(x, dtype=np.float32) * std + mean


def write_dataset(feeds, io, folder: Path, prefix: str, norm=None) -> tuple[list[str], int]:
    """One ``.npy`` per sample and input under ``folder/prefix``; the toolkit's dataset list has one line per
    sample, the input files in the model's input order separated by a space, relative to ``folder``."""
    import numpy as np

    (folder / prefix).mkdir(parents=True, exist_ok=True)
    lines = []
    for n, feed in enumerate(feeds):
        files = []
        for i, t in enumerate(io.inputs):
            rel = f"{prefix}/{n:05d}_{i}.npy"
            np.save(folder / rel, to_raw(feed[t.name], norm))
            files.append(rel)
        lines.append(" ".join(files))
    return lines, len(lines)


def keep_float_tensors(nodes, proto) -> dict[str, dict[str, list[str]]]:
    """ONNX node names -> ``{"own": its output tensors, "chain": the outputs of its single-consumer chain up to 3
    nodes on}``: the toolkit's quantization.cfg names tensors, and a node it fused into the next (a Conv into its
    Relu) has none of its own. An unknown node name is bad input. The bridge keeps the node's own tensors the cfg
    lists, else the first chain tensor it lists, and reports a node with neither."""
    from edgeconv.plugin import did_you_mean

    by_name = {n.name: n for n in proto.graph.node if n.name}
    consumers: dict[str, list[Any]] = {}
    for n in proto.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    out: dict[str, dict[str, list[str]]] = {}
    for name in nodes:
        node = by_name.get(name)
        if node is None:
            raise BadInput(f"-O keep_float: the ONNX graph has no node {name!r}{did_you_mean(name, by_name)}",
                           stage="options")
        chain, here = [], node
        for _hop in range(3):
            nxt = consumers.get(here.output[0], []) if here.output else []
            if len(nxt) != 1:
                break
            here = nxt[0]
            chain += list(here.output)
        out[name] = {"own": list(node.output), "chain": chain}
    return out


def prepare_opset(proto, warn=lambda m: None):
    """The toolkit reads default-domain opset <= 19: a newer model is converted down with onnx's version
    converter (a warning says so); when that fails, bad input asking for an export at opset 19 or lower."""
    opset = max((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), default=0)
    if opset <= MAX_OPSET:
        return proto, {"opset": opset}
    from onnx import version_converter

    try:
        lowered = version_converter.convert_version(proto, MAX_OPSET)
    except Exception as exc:  # noqa: BLE001 - onnx raises several kinds
        raise BadInput(f"the model uses ONNX opset {opset}; rknn-toolkit2 {TOOLKIT_VERSION} reads opset <= "
                       f"{MAX_OPSET} and onnx's version converter could not lower it ({' '.join(str(exc).split())[:160]}): "
                       f"export it at opset {MAX_OPSET} or lower", stage="export") from None
    warn(f"ONNX opset {opset} converted to {MAX_OPSET} for rknn-toolkit2 (the newest opset it reads)")
    return lowered, {"opset": opset, "opset_for_toolkit": MAX_OPSET}


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def artifact_contract(io, shapes, shape_sets, norm):
    """The .rknn's IO contract: fixed shapes (or the source's dynamic axes with shape sets); with a folded
    normalisation the input is uint8 with scale 1/std and zero point mean per channel (real = (q - mean) / std)."""
    from edgeconv.plugin import IOContract

    ins = []
    for k, t in enumerate(io.inputs):
        spec = replace(t, shape=tuple(shapes[k])) if shapes else t
        if norm is not None:
            spec = replace(spec, dtype="uint8", layout=spec.layout or "NCHW", scale=[1.0 / s for s in norm[1]],
                           zero_point=list(norm[0]))
        ins.append(spec)
    batch = shapes[0][0] if shapes and shapes[0] else 1
    outs = tuple(replace(t, dtype="float32", shape=tuple(d if isinstance(d, int) or shape_sets else
                                                         (batch if i == 0 else d) for i, d in enumerate(t.shape)))
                 for t in io.outputs)
    return IOContract(tuple(ins), outs, dict(io.preprocessing))


def _test_feed(job, io):
    from edgeconv.plugin import load_dataset

    ds = load_dataset(job.data, io, what="--data", seed=job.seed, random_samples=1)
    return next(iter(ds.feeds(io)), (None, None))[0], ds


# -- the exporter ---------------------------------------------------------------------------------------------------
def export(model, job) -> Any:
    import onnx

    from edgeconv.plugin import keep_float_option, resolve_toolchain

    from .toolchain import RKNN

    opts = job.options
    platform = str(opts.get("platform") or "rk3588")
    norm = normalisation(opts, model.io, job.preprocess)
    shapes, shape_sets = shape_plan(model.io, opts, job.input_profiles, job.warn)
    cfg = config_args(platform=platform, precision=job.precision, opts=opts, norm=norm, shape_sets=shape_sets)
    keep = keep_float_option(opts)
    if keep and job.precision != "int8":
        job.warn("-O keep_float has no effect at fp16 (every layer is float16 already)")
        keep = []
    env = resolve_toolchain(RKNN)  # before any work: missing -> exit 3 naming `edgeconv toolchain install rknn`
    build = Path(job.scratch) / BUILD_DIR
    build.mkdir(parents=True, exist_ok=True)
    proto = model.obj if model.obj is not None else onnx.load(str(model.path))
    proto = onnx.ModelProto.FromString(proto.SerializeToString())  # a copy: never change the source
    proto, onnx_info = prepare_opset(proto, job.warn)
    onnx.save(proto, str(build / "model.onnx"))

    recipe: dict[str, Any] = {
        "schema": RECIPE_SCHEMA, "toolkit": TOOLKIT_VERSION, "onnx": "model.onnx", "config": cfg,
        "inputs": [t.name for t in model.io.inputs], "input_size_list": shapes,
        "quantize": job.precision == "int8", "dataset": None, "hybrid": None,
        "input_formats": ["nchw" if len(t.shape) == 4 else "" for t in model.io.inputs],
        "rknn": "model.rknn", "analysis": None,
    }
    details: dict[str, Any] = {"platform": platform, "precision": job.precision, "config": cfg, "onnx": onnx_info}
    if norm is not None:
        details["normalisation"] = {"mean": norm[0], "std": norm[1], "input_dtype": "uint8"}
    if shape_sets:
        details["shape_sets"] = shape_sets
    if job.precision == "int8":
        ds = job.calibration()
        limit = int(opts.get("calib_limit") or 100)
        lines, n = write_dataset((f for f, _sl in ds.feeds(model.io, limit=limit)), model.io, build, "calibration",
                                 norm)
        if n == 0:
            raise BadInput("the calibration set has no sample of the model's batch size", stage="optimize")
        (build / "dataset.txt").write_text("\n".join(lines) + "\n")
        recipe["dataset"] = "dataset.txt"
        details["calibration"] = {**ds.describe(), "samples_used": n, "dataset_list": f"{BUILD_DIR}/dataset.txt"}
    if keep:
        recipe["hybrid"] = {"nodes": keep_float_tensors(keep, proto)}
    if opts.get("accuracy_analysis", True):
        feed, tds = _test_feed(job, model.io)
        if feed is not None:
            lines, _n = write_dataset([feed], model.io, build, "test", norm)
            recipe["analysis"] = {"inputs": lines[0].split(" "), "output_dir": "accuracy_analysis",
                                  "sample": {"kind": tds.kind, "source": tds.source}}
    (build / "recipe.json").write_text(json.dumps(recipe, indent=2) + "\n")

    job.status("rknn-toolkit2 build")
    result = run_build(env, build, timeout=float(opts.get("timeout") or 0) or None, keep_log_at=_keep_log_at(job))
    return _collect(job, model, build, recipe, result, details, env, shapes, shape_sets, norm, keep)


def run_build(env, build: Path, *, timeout: float | None, keep_log_at: Path | None = None) -> dict[str, Any]:
    """``bridge.py build`` in the environment; a failed step is ToolchainFailed (exit 4) with the toolkit's last
    error line and the kept log."""
    bridge = build / "_bridge.py"
    shutil.copyfile(Path(__file__).with_name("bridge.py"), bridge)
    log = build.parent / "rknn_build.log"
    res = env.run([str(bridge), "build", str(build / "recipe.json"), str(build / "result.json")], cwd=build,
                  timeout=timeout, log=log)
    bridge.unlink(missing_ok=True)
    try:
        result = json.loads((build / "result.json").read_text())
    except (OSError, ValueError):
        result = {"ok": False, "error": "the bridge wrote no result"}
    if not (res["ok"] and result.get("ok")):
        kept = log
        if keep_log_at is not None:
            try:
                keep_log_at.write_text(log.read_text(errors="replace"))
                kept = keep_log_at
            except OSError:
                pass
        raise ToolchainFailed(f"rknn-toolkit2 failed: {result.get('error') or 'exit ' + str(res['returncode'])}: "
                              f"{first_error(res['output'])} (log: {kept})", stage="export")
    result["seconds"] = res["seconds"]
    from .bridge import placement

    result["placement"] = placement(res["output"])
    return result


def first_error(text: str) -> str:
    """The toolkit's last ``E ...`` line (its errors), else the last line; colour codes removed."""
    import re

    plain = re.sub(r"\x1b\[[0-9;]*m", "", text or "")
    lines = [ln.strip() for ln in plain.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("E ") and "Unkown op target" not in ln]
    errors += [ln for ln in lines if ln.startswith(("Traceback", "ModuleNotFoundError", "ImportError"))]
    return (errors[-1] if errors else (lines[-1] if lines else "no output"))[:300]


def _keep_log_at(job) -> Path | None:
    out = getattr(job, "output", None)
    return None if out is None else Path(out).parent / f"{Path(out).name}.rknn_build.log"


def _collect(job, model, build, recipe, result, details, env, shapes, shape_sets, norm, keep) -> Any:
    from edgeconv.plugin import Artifact

    workdir, stem = Path(job.workdir), job.stem
    rknn = workdir / f"{stem}.rknn"
    shutil.copyfile(build / "model.rknn", rknn)
    files = [rknn]
    kept = workdir / BUILD_DIR
    kept.mkdir()
    # The recipe stays in the output folder (the simulator rebuilds from it) but is not part of the artifact's
    # files: it is not deployed, and --max-size measures what is.
    for rel in ["model.onnx", "recipe.json", *(["dataset.txt"] if recipe["dataset"] else [])]:
        shutil.copyfile(build / rel, kept / rel)
    for sub in ("calibration", "test"):
        if (build / sub).is_dir():
            shutil.copytree(build / sub, kept / sub)
    analysis = result.get("analysis")
    table = build / "accuracy_analysis" / "error_analysis.txt"
    if table.is_file():
        shutil.copyfile(table, workdir / "accuracy_analysis.txt")
        files.append(workdir / "accuracy_analysis.txt")
    hybrid = result.get("hybrid")
    if keep:
        details["keep_float"] = {"nodes": list(keep), "kept": (hybrid or {}).get("kept", {}),
                                 "not_found": (hybrid or {}).get("not_found", [])}
        for node in details["keep_float"]["not_found"]:
            job.warn(f"-O keep_float: node {node} has no tensor of its own in the toolkit's quantization.cfg "
                     "(fused away); it is not kept in float16")
        if hybrid and (build / hybrid["cfg"]).is_file():
            shutil.copyfile(build / hybrid["cfg"], workdir / "quantization.cfg")
            files.append(workdir / "quantization.cfg")
    details["accuracy_analysis"] = _analysis_summary(analysis, recipe)
    details["placement"] = placement_summary(result.get("placement") or [])
    cpu = details["placement"]["cpu"]
    if cpu:
        job.warn(f"rknn: {len(cpu)} operator(s) placed on the CPU, not the NPU, by the toolkit: "
                 + ", ".join(cpu[:5]) + (" ..." if len(cpu) > 5 else ""))
    version = result.get("toolkit") or TOOLKIT_VERSION
    details["rknn_toolkit"] = {"version": version, "toolchain": env.describe(), "steps": result.get("steps", []),
                               "seconds": result.get("seconds")}
    record = workdir / "rknn_toolkit.json"
    record.write_text(json.dumps({"schema": "edgeconv.rknn.toolkit/1", "rknn_toolkit2": version,
                                  "toolchain": env.describe(), "recipe": recipe, "steps": result.get("steps", []),
                                  "hybrid": hybrid, "accuracy_analysis": analysis}, indent=2, default=str) + "\n")
    files.append(record)
    job.warn("rknn: fidelity, latency and memory were measured in rknn-toolkit2's simulator on this host (simulated), "
             "not on a Rockchip NPU")
    tools = {"rknn_toolkit2": version, "platform": details["platform"], "rknn_sha256": _sha256(rknn)}
    return Artifact(
        path=rknn, form="rknn", io=artifact_contract(model.io, shapes, shape_sets, norm), files=files, tools=tools,
        details=details,
        runner_options={"platform": details["platform"], "precision": job.precision, "toolkit": version,
                        "output_names": [t.name for t in model.io.outputs], "recipe": f"{BUILD_DIR}/recipe.json",
                        "input_formats": recipe["input_formats"], "core_mask": str(job.options.get("core_mask")
                                                                                   or "auto")},
    )


def placement_summary(rows: list[dict[str, str]]) -> dict[str, Any]:
    """Where the toolkit put each operator (its verbose build's table): the NPU count and the CPU ones by name
    (the model's input and output operators, always on the CPU, left out)."""
    ops = [r for r in rows if r["op"] not in ("InputOperator", "OutputOperator")]
    return {"ops": len(ops), "npu": sum(r["target"] == "NPU" for r in ops),
            "cpu": [r["name"] for r in ops if r["target"] != "NPU"], "table": rows,
            "source": "rknn-toolkit2's verbose build log" if rows else "no placement table in the build log"}


def _analysis_summary(analysis, recipe) -> dict[str, Any]:
    """The per-layer table (kept whole in rknn_toolkit.json and accuracy_analysis.txt) and its worst layers: the
    toolkit's simulator against its float 'golden' run on one test sample, accumulated ('entire') and per layer
    with golden inputs ('single')."""
    if not recipe.get("analysis"):
        return {"ran": False, "reason": "-O accuracy_analysis=false or no test sample"}
    if not analysis or "rows" not in analysis:
        return {"ran": False, "reason": (analysis or {}).get("error", "no result")}
    rows = analysis["rows"]
    scored = [r for r in rows if r.get("single_cos") is not None]
    worst = sorted(scored, key=lambda r: r["single_cos"])[:5]
    return {"ran": True, "table": "accuracy_analysis.txt", "sample": recipe["analysis"].get("sample"),
            "layers": len(rows), "rows": rows, "worst_single": worst,
            "output_entire_cos": rows[-1].get("entire_cos") if rows else None}


def doctor() -> dict[str, Any]:
    """Cheap facts for ``edgeconv doctor`` (the core adds the toolchain environment's state and check)."""
    return {"platforms": list(PLATFORMS), "rknn_toolkit2_pinned": TOOLKIT_VERSION,
            "verify": "rknn-toolkit2 simulator (simulated); a board through the board half (edgeconv_rknn.board)",
            "setting": os.environ.get("EDGECONV_TOOLCHAIN_RKNN") or None}
