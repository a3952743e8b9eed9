"""The ``tensorrt`` exporter: prepare -> (INT8: QDQ + CPU verification) -> build kit -> engine.

Everything up to the build kit runs on any machine; the engine build needs TensorRT and an
NVIDIA GPU. On a host without them, ``--prepare-only`` writes the prepared (or QDQ) ONNX, ``build.json`` and ``trtexec.sh`` and returns
an artifact that cannot run here: the core then writes the output folder and exits 3. Without it,
a missing toolchain is exit 3 with the install hint and nothing written.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from edgeconv.plugin import BadInput, ToolchainFailed, ToolchainMissing, UnsupportedOperators

from . import doctor as probes
from .build import BuildSettings, build_with_python, build_with_trtexec, write_build_kit
from .prepare import check_profiles_on_cpu, prepare, target_version
from .versions import TrtVersion, parse_version


def prepare_only_requested(options: dict[str, Any]) -> bool:
    return bool(options.get("prepare_only"))


def toolchain(options: dict[str, Any]) -> dict[str, Any]:
    """Which builder can run here: ``{"builder": "python"|"trtexec"|None, "reason", ...}``."""
    wanted = options.get("builder") or "auto"
    device = int(options.get("device") or 0)
    py = probes.python_tensorrt()
    trtexec = probes.find_trtexec(options.get("trtexec") or None)
    gpu = probes.gpu_info(device)
    out: dict[str, Any] = {"python": py, "trtexec": trtexec, "gpu": gpu, "builder": None}
    if gpu is None:
        err = probes._probe().get("error") or f"no CUDA device {device}"
        out["reason"] = f"no NVIDIA GPU to build on ({err})"
        out["fix"] = probes.FIX_GPU
        return out
    if wanted in ("auto", "python") and py["found"]:
        out["builder"] = "python"
    elif wanted in ("auto", "trtexec") and trtexec:
        out["builder"] = "trtexec"
    else:
        if wanted == "python":
            out["reason"] = f"-O builder=python, but {py.get('error') or 'the tensorrt module is missing'}"
        elif wanted == "trtexec":
            out["reason"] = "-O builder=trtexec, but trtexec is neither on PATH nor at " + probes.JETPACK_TRTEXEC
        else:
            out["reason"] = "TensorRT is not installed (neither the tensorrt Python module nor trtexec)"
        out["fix"] = probes.FIX_TENSORRT
    return out


def export(model, job) -> Any:
    import onnx

    from edgeconv.plugin import Artifact

    from . import quantize
    from .precheck import check_proto, graph_restrictions

    opts = job.options
    prepare_only = prepare_only_requested(opts)
    tc = toolchain(opts)
    builder = None if prepare_only else tc["builder"]
    if not prepare_only and builder is None:
        raise ToolchainMissing(f"target 'tensorrt' cannot build an engine here: {tc['reason']}", stage="export",
                               hint=f"{tc['fix']}; or prepare the ONNX and build.json here without building: "
                                    "-O prepare_only=true")
    version = _version_for(opts, tc, builder)
    workdir, scratch, stem = Path(job.workdir), Path(job.scratch), job.stem

    job.status("prepare for TensorRT")
    prepared = prepare(model, job, version, opset=int(opts.get("opset") or 0) or None)
    float_path = scratch / "_trt_float.onnx"
    onnx.save(prepared.proto, str(float_path))
    details: dict[str, Any] = {"target_tensorrt": version.short, "prepare": prepared.info}
    profile_check = check_profiles_on_cpu(float_path, prepared.profiles, prepared.io, seed=job.seed)
    if profile_check.get("checked"):
        details["prepare"]["profile_check"] = {"runtime": "onnxruntime (CPU)", **profile_check}

    jetson_here = bool(builder and probes.jetson())
    settings = BuildSettings.from_options(job.precision, opts, version, prepared.profiles, jetson=jetson_here)
    cache_opt = str(opts.get("timing_cache") or "")
    settings.timing_cache = None if cache_opt.lower() == "none" else (cache_opt or str(workdir / "timing.cache"))

    files: list[Path] = []
    if job.precision == "int8":
        onnx_path = workdir / f"{stem}.qdq.onnx"
        details.update(_int8(prepared, float_path, onnx_path, job, quantize))
    elif job.precision == "fp16" and settings.strongly_typed:
        onnx_path = workdir / f"{stem}.fp16.onnx"
        details["fp16_onnx"] = _to_fp16(prepared.proto, onnx_path)
    else:
        onnx_path = workdir / f"{stem}.onnx"
        onnx.save(prepared.proto, str(onnx_path))
    files.append(onnx_path)
    final = _fit_to_parser(onnx_path, version)
    hard = check_proto(final, version)
    if hard:
        raise UnsupportedOperators("tensorrt", [(u.node, f"{u.op_type}: {u.reason}") for u in hard], stage="export")
    details["restrictions"] = graph_restrictions(final, version)

    # The artifact's contract declares the inputs at the profile's opt shape (the shape TensorRT tunes
    # for, and the one the core verifies at), so `edgeconv bench` feeds a shape inside the profile;
    # the whole profile is in details.prepare.profiles and the engine record.
    art_io = replace(prepared.io, inputs=tuple(replace(t, shape=prepared.profiles[t.name].opt)
                                               if t.name in prepared.profiles else t for t in prepared.io.inputs))
    plan_path = workdir / f"{stem}.plan"
    kit = write_build_kit(workdir, onnx_path.name, plan_path.name, settings,
                          extra={"precision": job.precision, "io": prepared.io.to_dict()})
    files += [kit["build.json"], kit["trtexec.sh"]]
    details["build_settings"] = {**settings.to_dict(), "timing_cache": _relative(settings.timing_cache, workdir)}
    command = f"cd {final_folder(workdir)} && bash trtexec.sh"

    if builder is None:
        why = "prepare-only was asked"
        if tc.get("reason"):
            why += f"; this host could not build anyway: {tc['reason']}"
        kind = "QDQ" if job.precision == "int8" else "prepared"
        reason = (f"TensorRT engine not built ({why}). The output holds the {kind} ONNX, build.json and trtexec.sh; "
                  f"build on the device with: {command}")
        if "qdq_verification" in details:
            reason += f". {_qdq_line(details['qdq_verification'])}"
        details["build"] = {"built": False, "reason": reason, "command": command}
        files = [kit["build.json"], *(f for f in files if f != kit["build.json"])]  # the main file first
        return Artifact(path=kit["build.json"], form="tensorrt", io=art_io, files=files,
                        tools={"tensorrt_target": version.short}, details=details,
                        runner_options={"prepared_only": True, "build_kit": {"command": command}},
                        runnable=False, not_runnable_reason=reason)

    from .compat import engine_record, host_info

    job.status(f"build TensorRT engine ({builder})")
    host = host_info(settings.device)
    log_path = workdir / "build.log"
    if builder == "python":
        info = build_with_python(onnx_path, plan_path, settings, log_path)
    else:
        info = build_with_trtexec(tc["trtexec"], onnx_path, plan_path, settings, log_path)
    built_with = info.get("tensorrt") or str(version)
    record = engine_record(settings, host, built_with, builder)
    details["build"] = {"built": True, **info}
    details["engine"] = record
    files = [plan_path, *files, log_path]
    if settings.timing_cache and Path(settings.timing_cache).is_file() and Path(settings.timing_cache).parent == workdir:
        files.append(Path(settings.timing_cache))
    runnable = bool(tc["python"]["found"]) and host.get("cuda_runtime") is not None
    reason = "" if runnable else ("the engine was built with trtexec; running it (verify, bench) needs the tensorrt "
                                  "Python module and the CUDA runtime: " + probes.FIX_TENSORRT)
    tools = {"tensorrt": built_with, "cuda_runtime": host.get("cuda_runtime") or "?",
             "gpu": f"{host.get('gpu')} (compute capability {host.get('compute_capability')})"}
    return Artifact(path=plan_path, form="tensorrt", io=art_io, files=files, tools=tools, details=details,
                    runner_options={"engine": record, "device": settings.device}, runnable=runnable,
                    not_runnable_reason=reason)


def final_folder(workdir: Path) -> str:
    """The output folder the core will rename ``workdir`` to (``.NAME.tmp-XXXX`` -> ``NAME``)."""
    import re

    m = re.match(r"^\.(.+)\.tmp-[^/]+$", workdir.name)
    return str(workdir.parent / m.group(1)) if m else str(workdir)


def _relative(path: str | None, folder: Path) -> str | None:
    if path and Path(path).parent == folder:
        return Path(path).name
    return path


def _version_for(opts: dict[str, Any], tc: dict[str, Any], builder: str | None) -> TrtVersion:
    """The version to prepare for: the builder's when building here, else ``-O target_trt``."""
    explicit = str(opts.get("target_trt") or "auto").lower() != "auto"
    if builder is None:
        return target_version(opts.get("target_trt"))
    here = parse_version(tc["python"].get("version")) if builder == "python" else None
    if here is None and builder == "trtexec":
        here = probes.trtexec_version(tc["trtexec"])
    here = here or target_version("auto")
    if explicit:
        wanted = target_version(opts.get("target_trt"))
        if (wanted.major, wanted.minor) != (here.major, here.minor):
            raise BadInput(f"-O target_trt={opts.get('target_trt')}, but this host builds with TensorRT {here}: a plan "
                           "is tied to the TensorRT that builds it; add -O prepare_only=true to prepare for "
                           f"{wanted.short} and build on the device", stage="options")
    return here


def _qdq_line(v: dict[str, Any]) -> str:
    """One line for the terminal: what the INT8 recipe costs, measured on CPU."""
    f = v["fidelity"][0] if v["fidelity"] else {}
    acc = v.get("accuracy")
    parts = []
    if acc:
        parts.append(f"top-1 {acc['source'] * 100:.2f}% -> {acc['artifact'] * 100:.2f}% (drop {acc['drop_pp']:.2f} pp, "
                     f"{acc['samples']} samples)")
    if "cosine" in f:
        parts.append(f"cosine {f['cosine']:.5f}, SQNR {f['sqnr_db']:.1f} dB")
    verdict = "within" if v["pass"] else "OUTSIDE"
    return f"INT8 QDQ model on CPU vs float: {'; '.join(parts)} ({verdict} the int8 thresholds)"


def _fit_to_parser(path: Path, version: TrtVersion):
    """The ONNX written for TensorRT (a quantizer may have raised its IR version or opset)."""
    import onnx

    proto = onnx.load(str(path))
    lo, hi = version.opset_range
    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), hi)
    if not lo <= opset <= hi:
        raise ToolchainFailed(f"{path.name} has opset {opset}; TensorRT {version.short}'s parser takes {lo}..{hi}",
                              stage="export")
    min_ir = onnx.helper.find_min_ir_version_for(list(proto.opset_import), ignore_unknown=True)
    ir = max(min_ir, min(proto.ir_version, version.max_ir_version))
    if ir != proto.ir_version:
        proto.ir_version = ir
        onnx.save(proto, str(path))
    return proto


def _int8(prepared, float_path: Path, qdq_path: Path, job, quantize) -> dict[str, Any]:
    import onnx

    opts = job.options
    calib = job.calibration()
    if len(calib) == 0:
        raise BadInput("the calibration set holds no samples", file=calib.source, stage="optimize")
    job.status("INT8: QDQ model (symmetric, per-channel)")
    which = opts.get("quantizer") or "ort"
    fn = quantize.quantize_modelopt if which == "modelopt" else quantize.quantize_ort
    settings = fn(float_path, qdq_path, calib, prepared.io, opts, Path(job.scratch))
    proto = onnx.load(str(qdq_path))
    summary = quantize.summary(proto)
    job.status("INT8: verify the QDQ model on onnxruntime (CPU)")
    data, described = _qdq_data(job, prepared.io, calib)
    verification = quantize.verify(float_path, qdq_path, prepared.io, data, None, seed=job.seed)
    verification["data_note"] = described
    if not verification["pass"]:
        first = next(f for f in verification["fidelity"] if not f["pass"])
        job.warn(f"the INT8 QDQ model fails the int8 thresholds on CPU before any engine is built (output "
                 f"{first['name']}: {'; '.join(first['failures'])}); the engine will not do better: try "
                 "-O calibrate_method=entropy or keep sensitive nodes in float with -O nodes_to_exclude=...")
    if described.startswith("the calibration set"):
        job.warn("the INT8 QDQ model was verified on the calibration set (in-sample): give -O qdq_data=val.npz "
                 "for held-out numbers")
    return {"qdq": settings, "qdq_summary": summary, "qdq_verification": verification}


def _qdq_data(job, io, calib) -> tuple[Any, str]:
    """Data for the QDQ check: -O qdq_data, else the run's --data (when the core passes it), else calibration."""
    from edgeconv.plugin import load_dataset

    limit = int(job.options.get("qdq_limit") or 500)
    source = job.options.get("qdq_data") or getattr(job, "data", None)
    if source:
        ds = load_dataset(source, io, what="-O qdq_data", limit=limit, preprocess=job.preprocess)
        where = str(source)
    else:
        ds, where = calib, "the calibration set (in-sample)"
    arrays = {k: v[:limit] for k, v in ds.arrays.items()}
    if ds.labels is not None:
        arrays["labels"] = ds.labels[:limit]
    return arrays, where


def _to_fp16(proto, path: Path) -> dict[str, Any]:
    """FP16 weights and compute for strongly typed networks (TensorRT 11 removed BuilderFlag.FP16).

    NVIDIA recommends ModelOpt AutoCast for this; here onnxruntime's float16 converter does it,
    inputs and outputs kept float32.
    """
    import warnings

    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16
    from onnxruntime.transformers.onnx_model import OnnxModel

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        half = convert_float_to_float16(proto, keep_io_types=True)
        sorter = OnnxModel(half)
        sorter.topological_sort()
    onnx.save(sorter.model, str(path))
    return {"converter": "onnxruntime.transformers.float16", "io_float32": True}
