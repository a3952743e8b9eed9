"""The ``tensorrt`` exporter: the build kit and the engine, from the ONNX the target's passes made.

The passes (``passes.py``, named by the target per precision) prepared the ONNX for the TensorRT version
(``tensorrt.prepare``), and for INT8 made and verified the QDQ model (``tensorrt.qdq``), for FP16 on a strongly typed
network the float16 ONNX (``tensorrt.fp16``). The exporter only writes: the ONNX TensorRT builds from (checked once
more against the parser's operator table), ``build.json`` and ``trtexec.sh``, and -- when this host can build -- the
plan, with trtexec or the Python builder.

Everything up to the build kit runs on any machine; the engine build needs TensorRT and an NVIDIA GPU. On a host
without them, ``--prepare-only`` writes the prepared (or QDQ) ONNX, ``build.json`` and ``trtexec.sh`` and returns an
artifact that cannot run here: the core then writes the output folder and exits 3. Without it, a missing toolchain
is exit 3 with the install hint and nothing written (``tensorrt.prepare`` says so before any work).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from edgeconv.plugin import ToolchainFailed, UnsupportedOperators

from . import doctor as probes
from .build import build_with_python, build_with_trtexec, write_build_kit
from .passes import FP16, QDQ, plan_of


def export(model, job) -> Any:
    import onnx

    from edgeconv.plugin import Artifact

    from .precheck import check_proto, graph_restrictions

    plan = plan_of(job)
    version, tc, builder, settings = plan.version, plan.toolchain, plan.builder, plan.settings
    workdir, stem = Path(job.workdir), job.stem
    cache_opt = str(job.options.get("timing_cache") or "")
    settings.timing_cache = None if cache_opt.lower() == "none" else (cache_opt or str(workdir / "timing.cache"))

    kind = "qdq" if QDQ in job.state else "fp16" if job.state.get(FP16) else None
    onnx_path = workdir / (f"{stem}.{kind}.onnx" if kind else f"{stem}.onnx")
    proto = model.obj if model.obj is not None else onnx.load(str(model.path))
    _check_parser_range(proto, version)
    hard = check_proto(proto, version)
    if hard:
        raise UnsupportedOperators("tensorrt", [(u.node, f"{u.op_type}: {u.reason}") for u in hard], stage="export")
    onnx.save(proto, str(onnx_path))
    files: list[Path] = [onnx_path]
    details: dict[str, Any] = {"target_tensorrt": version.short, "onnx": onnx_path.name,
                               "restrictions": graph_restrictions(proto, version)}

    # The artifact's contract declares the inputs at the profile's opt shape (the shape TensorRT tunes for, and the
    # one the core verifies at), so `edgeconv bench` feeds a shape inside the profile; the whole profile is in the
    # build settings and the engine record.
    art_io = replace(model.io, inputs=tuple(replace(t, shape=plan.profiles[t.name].opt)
                                            if t.name in plan.profiles else t for t in model.io.inputs))
    plan_path = workdir / f"{stem}.plan"
    kit = write_build_kit(workdir, onnx_path.name, plan_path.name, settings,
                          extra={"precision": job.precision, "io": model.io.to_dict()})
    files += [kit["build.json"], kit["trtexec.sh"]]
    details["build_settings"] = {**settings.to_dict(), "timing_cache": _relative(settings.timing_cache, workdir)}
    command = f"cd {final_folder(workdir)} && bash trtexec.sh"

    if builder is None:
        return _kit_only(job, tc, kit, files, art_io, details, command, version)

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


def _kit_only(job, tc, kit, files, art_io, details, command, version) -> Any:
    """Prepare-only: the build kit is the artifact; it cannot run until built on the device."""
    from edgeconv.plugin import Artifact

    why = "prepare-only was asked"
    if tc.get("reason"):
        why += f"; this host could not build anyway: {tc['reason']}"
    kind = "QDQ" if job.precision == "int8" else "prepared"
    reason = (f"TensorRT engine not built ({why}). The output holds the {kind} ONNX, build.json and trtexec.sh; "
              f"build on the device with: {command}")
    qdq = job.state.get(QDQ)
    if qdq:
        reason += f". {_qdq_line(qdq['verification'])}"
    details["build"] = {"built": False, "reason": reason, "command": command}
    files = [kit["build.json"], *(f for f in files if f != kit["build.json"])]  # the main file first
    return Artifact(path=kit["build.json"], form="tensorrt", io=art_io, files=files,
                    tools={"tensorrt_target": version.short}, details=details,
                    runner_options={"prepared_only": True, "command": command},
                    runnable=False, not_runnable_reason=reason)


def _check_parser_range(proto, version) -> None:
    lo, hi = version.opset_range
    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), hi)
    if not lo <= opset <= hi:
        raise ToolchainFailed(f"the ONNX for TensorRT has opset {opset}; TensorRT {version.short}'s parser takes "
                              f"{lo}..{hi}", stage="export")


def final_folder(workdir: Path) -> str:
    """The output folder the core will rename ``workdir`` to (``.NAME.tmp-XXXX`` -> ``NAME``)."""
    import re

    m = re.match(r"^\.(.+)\.tmp-[^/]+$", workdir.name)
    return str(workdir.parent / m.group(1)) if m else str(workdir)


def _relative(path: str | None, folder: Path) -> str | None:
    if path and Path(path).parent == folder:
        return Path(path).name
    return path


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
