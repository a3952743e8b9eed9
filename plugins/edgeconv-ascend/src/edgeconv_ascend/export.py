"""The ``ascend`` exporter: final operator check -> shapes and gears -> AIPP -> the ATC kit -> ATC.

It compiles what it is given: the ONNX after the optimize passes, and for ``-p int8`` the deploy model of the
``ascend.amct`` pass (``passes.py``; the exporter never quantizes). Precision that is an ATC flag
(``--precision_mode``: fp16, fp32, mixed; ``--keep_dtype`` for ``keep_float``) is set here.

Everything up to ATC runs on any machine. Without ``atc`` a conversion exits 3 with the install hint and writes
nothing (the pre-check says so before any work); ``--prepare-only`` writes the ONNX for ATC, ``aipp.cfg``,
``atc.json`` and ``atc.sh`` and exits 3 (not built). With ATC the .om is built; it runs only on an Ascend host (an NPU
and ais_bench), so elsewhere the output folder is written and verification says, in the report, that the .om cannot
run here (exit 3).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgeconv.plugin import BadInput, ToolchainFailed

from . import aipp as aipp_mod
from . import atc, cann, precheck, shapes
from .passes import AMCT


def export(model, job) -> Any:
    import onnx

    opts = job.options
    prepare_only = bool(opts.get("prepare_only"))
    if not opts.get("soc_version"):
        raise atc.soc_required()
    atc_path = cann.find_atc(opts.get("atc") or None)
    if atc_path is None and not prepare_only:
        raise atc.no_atc(opts)
    proto = model.obj if model.obj is not None else onnx.load(str(model.path))
    source = model.meta.get("source_path")
    workdir, stem = Path(job.workdir), job.stem
    amct = job.state.get(AMCT)  # the ascend.amct pass ran: this is AMCT's deploy model

    # The graph ATC gets, after the optimize passes: the table again, and the checks that need folded constants.
    mode = str(opts.get("precheck") or "strict")
    found = precheck.apply_mode(precheck.check_proto(proto, final=True, amct=amct is not None), mode)
    precheck.refuse(found, file=source, stage="export")
    seen = {(u.node, u.reason) for u in precheck.apply_mode(precheck.check_proto(proto, amct=amct is not None), mode)}
    for u in found:
        if (u.node, u.reason) not in seen:  # the pre-check stage already warned about the others
            job.warn(f"node {u.node} ({u.op_type}) falls back: {u.reason}")

    spec = aipp_mod.from_options(model.io, job.preprocess, opts) if opts.get("aipp") else None
    sh = shapes.resolve(model.io, job.input_profiles, opts, warn=job.warn, aipp=spec is not None)
    prepared = _dynamize(proto, sh)
    details: dict[str, Any] = {"soc_version": opts["soc_version"], "shapes": sh.to_dict(),
                               "precheck": precheck.summary(found)}
    if sh.gears:  # on the float model: onnxruntime cannot load AMCT's deploy ops
        float_model = _dynamize(onnx.load(amct["float_model"]), sh) if amct else prepared
        details["shapes"]["cpu_check"] = _check_gears_on_cpu(float_model, model.io, sh)
    if atc_path is not None and not prepare_only and opts.get("atc_precheck", True):
        by_atc = precheck.atc_mode3(prepared, sh, job, atc_path)
        precheck.refuse(by_atc, file=source, stage="precheck")
        details["atc_precheck"] = {"ran": True, "report": "atc_precheck.json",
                                   "warnings": [u.reason for u in by_atc if u.fallback]}
    _precision_warnings(job)

    onnx_path = workdir / (f"{stem}.deploy.onnx" if amct else f"{stem}.onnx")
    onnx.save(prepared, str(onnx_path))
    files: list[Path] = [onnx_path]
    if amct:
        details["int8"] = {"by": "ascend.amct (AMCT deploy model; its figures are the pass's info in the report)",
                           "onnx": onnx_path.name}

    art_io = _built_contract(model.io, sh)
    if spec is not None:
        cfg = workdir / "aipp.cfg"
        cfg.write_text(aipp_mod.config_text(spec))
        files.append(cfg)
        art_io = aipp_mod.om_contract(art_io, spec)
        details["aipp"] = art_io.preprocessing["aipp"]
        if job.data is None:
            job.warn("AIPP: the .om takes uint8 pixels; verification on generated (random) data de-normalises noise "
                     "outside 0..255 -- give --data (images, or .npz of normalised pixels) for meaningful numbers")
    settings = atc.settings_from(job, sh, proto, aipp_conf="aipp.cfg" if spec is not None else None)
    if settings.out_nodes:
        job.warn("-O out_nodes: the .om's outputs are the named nodes, not the source's outputs; verification "
                 "compares outputs by name and cannot match them")
    kit = atc.write_kit(workdir, onnx_path.name, stem, settings,
                        extra={"precision": job.precision, "io": art_io.to_dict(), "shapes": sh.to_dict()})
    files += [kit["atc.json"], kit["atc.sh"]]
    for name in ("atc_precheck.json", "atc_precheck.log"):
        if (workdir / name).is_file():
            files.append(workdir / name)
    folder = atc.final_folder(workdir)
    command = f"cd {folder} && sh atc.sh"
    details["atc"] = {"argv": settings.argv(onnx_path.name, stem), **settings.to_dict()}
    info = cann.find_cann(opts.get("atc") or None)
    tools = {"soc_version": str(opts["soc_version"]), "cann": info.get("version") or "unknown",
             **({"amct": str(amct.get("amct_version") or "unknown")} if amct else {})}

    if prepare_only:
        return _kit_only(atc_path, spec, kit, files, art_io, tools, details, command)
    return _build(job, atc_path, settings, spec, onnx_path, files, art_io, tools, details, info, sh, folder)


def _kit_only(atc_path, spec, kit, files, art_io, tools, details, command) -> Any:
    from edgeconv.plugin import Artifact

    why = "prepare-only was asked"
    if atc_path is None:
        why += "; this host has no atc anyway"
    reason = (f"ATC not run ({why}). The output holds the ONNX for ATC{', aipp.cfg' if spec else ''}, atc.json "
              f"and atc.sh; build the .om on a host with CANN: {command}")
    details["build"] = {"built": False, "reason": reason, "command": command}
    files = [kit["atc.json"], *(f for f in files if f != kit["atc.json"])]
    return Artifact(path=kit["atc.json"], form="om", io=art_io, files=files, tools=tools, details=details,
                    runner_options={"prepared_only": True, "command": command}, runnable=False,
                    not_runnable_reason=reason)


def _build(job, atc_path, settings, spec, onnx_path, files, art_io, tools, details, info, sh, folder) -> Any:
    from edgeconv.plugin import Artifact

    opts, workdir, stem = job.options, Path(job.workdir), job.stem
    job.status(f"ATC -> .om for {opts['soc_version']}")
    run_settings = atc.AtcSettings(**{**settings.__dict__,
                                      "insert_op_conf": str(workdir / "aipp.cfg") if spec is not None else None})
    argv = run_settings.argv(str(onnx_path), str(workdir / stem), atc=atc_path)
    timeout = int(opts.get("timeout") or 0) or None
    result = atc.run(argv, workdir / "atc.log", cwd=Path(job.scratch), timeout=timeout,
                     keep_log_at=atc.failed_log_path(job))
    if not result["ok"]:
        raise ToolchainFailed(atc.failure_message("ATC", result), stage="export", hint=atc.code_hint(result["codes"]))
    om = atc.find_om(workdir / stem)
    if om is None:
        raise ToolchainFailed(f"ATC reported success but wrote no {stem}.om (log: {result['log']})", stage="export")
    details["build"] = {"built": True, "atc": atc_path, "seconds": result["seconds"], "log": "atc.log",
                        "cann": info.get("version"), "cann_home": info.get("home")}
    files = [om, *files, workdir / "atc.log"]
    tools["atc"] = atc_path
    runnable, why = cann.can_run_here(opts)
    reason = "" if runnable else (f"{why}. The .om was built for {opts['soc_version']}; verify it on the device: "
                                  f"edgeconv verify <source model> {folder}")
    # Exactly the settings the ais_bench runner declares (hooks.RUNNER_OPTIONS): data, never a path to run.
    runner_options = {
        "device": int(opts.get("device") or 0), "runner": str(opts.get("runner") or "auto"),
        "soc_version": str(opts["soc_version"]),
        "input_names": [t.name for t in art_io.inputs], "output_names": [t.name for t in art_io.outputs],
        "input_layouts": [shapes.layout_of(t) for t in art_io.inputs],
        "aipp": art_io.preprocessing.get("aipp"), "dynamic": dict([sh.dynamic]) if sh.dynamic else None,
    }
    return Artifact(path=om, form="om", io=art_io, files=files, tools=tools, details=details,
                    runner_options=runner_options, runnable=runnable, not_runnable_reason=reason)


def _built_contract(io, sh: shapes.Shapes):
    """The contract at the shapes the .om is built for: fixed axes as given to ATC (a dynamic batch built for 1
    becomes 1); axes with gears keep the pinned (opt) size the core verifies at."""
    from dataclasses import replace

    dims = dict(sh.inputs)
    inputs = []
    for t in io.inputs:
        built = dims.get(t.name)
        if built is None:
            inputs.append(t)
            continue
        inputs.append(replace(t, shape=tuple(d if b == -1 else b for d, b in zip(t.shape, built, strict=True))))
    return replace(io, inputs=tuple(inputs))


def _precision_warnings(job) -> None:
    opts = job.options
    if job.precision == "fp32" and not opts.get("precision_mode"):
        mode = str(opts.get("fp32_mode") or "origin")
        if mode == "origin":
            job.warn("-p fp32 keeps float32 where the NPU has fp32 kernels (--precision_mode=must_keep_origin_dtype); "
                     "ATC fails where a kernel is fp16-only (the CANN 6.0 guide names Conv2D on Ascend 310): -p fp16 is "
                     "the NPU's native precision, -O fp32_mode=mixed a middle way")
        elif mode in ("mixed", "fp32_to_fp16", "cube_fp16in_fp32out"):
            job.warn(f"-O fp32_mode={mode} lets ATC compute parts of the model in fp16 while the thresholds are "
                     "fp32's: compare with --threshold cosine=0.999 (fp16's) if that is the intent")


def _dynamize(proto, sh: shapes.Shapes):
    """A copy whose graph inputs carry the -1 axes of --input_shape as symbolic dims (the core pinned them)."""
    import onnx

    dynamic = {name: [i for i, d in enumerate(dims) if d == -1] for name, dims in sh.inputs}
    if not any(dynamic.values()):
        return proto
    out = onnx.ModelProto()
    out.CopyFrom(proto)
    for value in out.graph.input:
        axes = dynamic.get(value.name) or []
        dims = value.type.tensor_type.shape.dim
        for axis in axes:
            if axis < len(dims):
                dims[axis].Clear()
                dims[axis].dim_param = f"{value.name}_d{axis}"
    return out


def _check_gears_on_cpu(proto, io, sh: shapes.Shapes) -> dict[str, Any]:
    """Run the prepared ONNX on onnxruntime at every gear: a graph a pass specialised to one shape fails here."""
    import numpy as np
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    try:
        sess = ort.InferenceSession(proto.SerializeToString(), so, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - reported, not fatal: ATC is the judge
        return {"checked": False, "reason": f"onnxruntime could not load the prepared model: {exc}"[:300]}
    dtypes = {t.name: t.dtype for t in io.inputs}
    for gear in sh.gears:
        feed = {name: np.zeros(shape, dtype=np.dtype(dtypes.get(name, "float32"))) for name, shape in gear.items()}
        try:
            sess.run(None, feed)
        except Exception as exc:  # noqa: BLE001
            shown = ", ".join(f"{k}{list(v)}" for k, v in gear.items())
            raise BadInput(f"the prepared model does not run at gear {shown} on onnxruntime ({' '.join(str(exc).split())[:200]}): "
                           "a pass specialised the graph to one shape; try --skip-pass onnx.simplify",
                           stage="export") from None
    return {"checked": True, "runtime": "onnxruntime (CPU)", "gears": len(sh.gears)}


__all__ = ["export"]
