"""The tensorrt target's passes on the ONNX form (the rule: every transformation of a model is a registered pass;
the exporter only writes the build kit and builds the engine from what it is given).

The target names them per precision (``Target.precision_passes``)::

    fp32: tensorrt.prepare
    fp16: tensorrt.prepare, tensorrt.fp16
    int8: tensorrt.prepare, tensorrt.qdq

- ``tensorrt.prepare``: which builder runs here and the TensorRT version to prepare for, then the ONNX that version
  parses (opset and IR version in range, shapes set or made dynamic again for a profile, checked on onnxruntime at
  the profile's min and max), and the build settings (checked before any long work). It hands the plan on in
  ``job.state["tensorrt.plan"]``.
- ``tensorrt.fp16``: for a strongly typed network (TensorRT 11, or ``-O strongly_typed``), which takes each layer's
  type from the ONNX, the model in float16 (inputs and outputs kept float32, ``keep_float`` nodes kept float32);
  for a weakly typed network nothing: FP16 is the builder's flag (``--fp16``), set by the exporter.
- ``tensorrt.qdq``: INT8 by explicit quantization, the QDQ ONNX TensorRT expects (``quantize.py``: onnxruntime or
  NVIDIA ModelOpt), verified against the float model on onnxruntime (CPU) before any engine is built; its settings,
  Q/DQ summary and verification are the pass's info (the report's ``passes``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeconv.plugin import BadInput, IOContract, ToolchainFailed, ToolchainMissing, keep_float_option

from .build import BuildSettings
from .prepare import Profile
from .versions import TrtVersion

PLAN = "tensorrt.plan"  # job.state key: the Plan of this build (prepare -> fp16/qdq -> exporter)
QDQ = "tensorrt.qdq"  # job.state key: the QDQ pass's verification (for the exporter's not-built reason)
FP16 = "tensorrt.fp16"  # job.state key: True when the model was converted to float16


@dataclass
class Plan:
    """What ``tensorrt.prepare`` decided, for the passes after it and the exporter."""

    toolchain: dict[str, Any]  # which builder can run here (``toolchain()``)
    builder: str | None  # "python" | "trtexec" | None (prepare-only)
    version: TrtVersion  # the TensorRT the ONNX is prepared for
    profiles: dict[str, Profile]
    io: IOContract  # the prepared contract (profile axes dynamic)
    settings: BuildSettings
    info: dict[str, Any] = field(default_factory=dict)


def plan_of(job) -> Plan:
    """The plan ``tensorrt.prepare`` left in ``job.state`` (the target names it first for every precision)."""
    plan = job.state.get(PLAN)
    if not isinstance(plan, Plan):
        raise ToolchainFailed("the tensorrt.prepare pass did not run before this step (the target names it first for "
                              "every precision); the plugin is broken", stage="optimize")
    return plan


# -- which builder, which version ------------------------------------------------------------------------------------
def toolchain(options: dict[str, Any]) -> dict[str, Any]:
    """Which builder can run here: ``{"builder": "python"|"trtexec"|None, "reason", ...}``."""
    from . import doctor as probes

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


def version_for(opts: dict[str, Any], tc: dict[str, Any], builder: str | None) -> TrtVersion:
    """The version to prepare for: the builder's when building here, else ``-O target_trt``."""
    from . import doctor as probes
    from .prepare import target_version
    from .versions import parse_version

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


# -- tensorrt.prepare ------------------------------------------------------------------------------------------------
def prepare_for_tensorrt(model, job) -> tuple[Any, dict[str, Any]]:
    """The ONNX TensorRT parses, and the plan of the build (``job.state["tensorrt.plan"]``)."""
    import onnx

    from edgeconv.plugin import Model

    from . import doctor as probes
    from .prepare import check_profiles_on_cpu, prepare

    opts = job.options
    prepare_only = bool(opts.get("prepare_only"))
    tc = toolchain(opts)
    builder = None if prepare_only else tc["builder"]
    if not prepare_only and builder is None:  # before any work: exit 3 with the fix
        raise ToolchainMissing(f"target 'tensorrt' cannot build an engine here: {tc['reason']}", stage="export",
                               hint=f"{tc['fix']}; or prepare the ONNX and build.json here without building: "
                                    "-O prepare_only=true")
    version = version_for(opts, tc, builder)
    job.status("prepare for TensorRT")
    prepared = prepare(model, job, version, opset=int(opts.get("opset") or 0) or None)
    settings = BuildSettings.from_options(job.precision, opts, version, prepared.profiles,
                                          jetson=bool(builder and probes.jetson()))
    path = Path(job.scratch) / f"_trt_{job.precision}.prepared.onnx"
    onnx.save(prepared.proto, str(path))
    info = dict(prepared.info)
    check = check_profiles_on_cpu(path, prepared.profiles, prepared.io, seed=job.seed)
    if check.get("checked"):
        info["profile_check"] = {"runtime": "onnxruntime (CPU)", **check}
    info["settings"] = {"target_tensorrt": version.short, "opset": prepared.opset, "ir_version": info["ir_version"],
                        "profiles": info["profiles"], "builder": builder or "none (prepare-only)"}
    job.state[PLAN] = Plan(tc, builder, version, prepared.profiles, prepared.io, settings, info)
    return Model(form="onnx", io=prepared.io, path=path, obj=prepared.proto, meta=dict(model.meta)), info


# -- tensorrt.fp16 ---------------------------------------------------------------------------------------------------
def fp16(model, job) -> tuple[Any, dict[str, Any]]:
    """FP16 weights and compute in the ONNX, for a strongly typed network (TensorRT 11 removed
    ``BuilderFlag.FP16``); a weakly typed network is left as it is (the builder's FP16 flag does it)."""
    plan = plan_of(job)
    if not plan.settings.strongly_typed:
        return model, {"applied": False, "reason": "a weakly typed network: FP16 is the builder's flag "
                                                  "(BuilderFlag.FP16 / trtexec --fp16), set by the exporter"}
    import onnx

    from edgeconv.plugin import Model

    from .prepare import fit_to_parser

    keep = keep_float_option(job.options)
    half = to_fp16(model.obj, keep)
    fit_to_parser(half, plan.version)
    path = Path(job.scratch) / "_trt_fp16.onnx"
    onnx.save(half, str(path))
    job.state[FP16] = True
    settings = {"converter": "onnxruntime.transformers.float16", "io_float32": True,
                **({"keep_float": keep} if keep else {})}
    return Model(form="onnx", io=model.io, path=path, obj=half, meta=dict(model.meta)), {"applied": True,
                                                                                        "settings": settings}


def to_fp16(proto, keep: list[str] | tuple[str, ...] = ()):
    """float16 weights and compute, inputs and outputs kept float32, the ``keep`` nodes left in float32.

    NVIDIA recommends ModelOpt AutoCast for this; here onnxruntime's float16 converter does it."""
    import warnings

    from onnxruntime.transformers.float16 import convert_float_to_float16
    from onnxruntime.transformers.onnx_model import OnnxModel

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        half = convert_float_to_float16(proto, keep_io_types=True, node_block_list=list(keep) or None)
        sorter = OnnxModel(half)
        sorter.topological_sort()
    return sorter.model


# -- tensorrt.qdq ----------------------------------------------------------------------------------------------------
def qdq(model, job) -> tuple[Any, dict[str, Any]]:
    """The symmetric INT8 QDQ model TensorRT builds from (explicit quantization), checked on CPU first."""
    import onnx

    from edgeconv.plugin import Model

    from . import quantize
    from .prepare import fit_to_parser

    plan = plan_of(job)
    opts, scratch = job.options, Path(job.scratch)
    calib = job.calibration()
    if len(calib) == 0:
        raise BadInput("the calibration set holds no samples", file=calib.source, stage="optimize")
    src = scratch / "_trt_int8.float.onnx"
    onnx.save(model.obj, str(src))
    dst = scratch / "_trt_int8.qdq.onnx"
    job.status("INT8: QDQ model (symmetric, per-channel)")
    fn = quantize.quantize_modelopt if (opts.get("quantizer") or "ort") == "modelopt" else quantize.quantize_ort
    settings = fn(src, dst, calib, model.io, opts, scratch)
    proto = onnx.load(str(dst))
    if fit_to_parser(proto, plan.version):  # a quantizer may have raised the IR version
        onnx.save(proto, str(dst))
    summary = quantize.summary(proto)
    job.status("INT8: verify the QDQ model on onnxruntime (CPU)")
    data, described = qdq_data(job, model.io, calib)
    verification = quantize.verify(src, dst, model.io, data, None, seed=job.seed)
    verification["data_note"] = described
    if not verification["pass"]:
        first = next(f for f in verification["fidelity"] if not f["pass"])
        job.warn(f"the INT8 QDQ model fails the int8 thresholds on CPU before any engine is built (output "
                 f"{first['name']}: {'; '.join(first['failures'])}); the engine will not do better: try "
                 "-O calibrate_method=entropy or keep sensitive nodes in float with -O keep_float=...")
    if described.startswith("the calibration set"):
        job.warn("the INT8 QDQ model was verified on the calibration set (in-sample): give -O qdq_data=val.npz "
                 "for held-out numbers")
    job.state[QDQ] = {"verification": verification}
    out = Model(form="onnx", io=model.io, path=dst, obj=proto, meta=dict(model.meta))
    return out, {"settings": settings, "summary": summary, "verification": verification}


def qdq_data(job, io, calib) -> tuple[Any, str]:
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
