"""The exporter: ``openvino.Model`` -> precision -> ``save_model`` (``.xml`` + ``.bin``).

Precision (``--precision``) decides two things (docs/targets/openvino.md has the table):

- what is stored: fp32 and bf16 keep float32 weights (``compress_to_fp16=False``); fp16
  stores them as float16 (``compress_to_fp16=True``); int8 is NNCF's quantized model,
  its remaining float constants kept float32;
- how the runner computes: the explicit ``INFERENCE_PRECISION_HINT`` from
  ``runner.resolve_hint`` (``-O precision_hint=`` overrides it), stored in the manifest's
  ``runner_options`` so that ``edgeconv verify`` / ``bench`` later run it the same way.
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path
from typing import Any

from edgeconv.plugin import BadInput, Model

from . import convert, deploy
from .runner import available, device_family, native_hints, resolve_hint

_FLOAT_PRECISION = {"fp32": "f32", "fp16": "f16", "bf16": "bf16"}


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def export(model: Model, job: Any):
    import openvino as ov
    from edgeconv.plugin import Artifact

    opts = job.options
    device = opts.get("device") or "CPU"
    streams = opts.get("streams")
    if streams not in (None, "") and not (str(streams).isdigit() or str(streams).upper() in ("AUTO", "NUMA")):
        raise BadInput(f"option streams={streams!r} must be a number or auto", stage="options")
    job.status("openvino.convert_model")
    ov_model, conversion = convert.to_ov(model, job)
    quantization = None
    if job.precision == "int8":
        job.status("nncf.quantize")
        from .quantize import quantize

        ov_model, quantization = quantize(ov_model, model.io, job)
    compress = job.precision == "fp16"
    xml = Path(job.workdir) / f"{job.stem}.xml"
    core = ov.Core()
    hint = resolve_hint(job.precision, device, opts.get("precision_hint") or "auto")
    here = available(core, device)
    caps: list[str] = []
    if here:
        try:
            caps = [str(c) for c in core.get_property(device, "OPTIMIZATION_CAPABILITIES")]
        except Exception:
            caps = []
    _hint_warnings(job, hint, device, caps)
    runner_options: dict[str, Any] = {"device": device, "precision_hint": hint,
                                      "performance_hint": opts.get("performance_hint") or "latency"}
    if streams not in (None, ""):
        runner_options["num_streams"] = str(streams).upper()
    if opts.get("threads"):
        runner_options["inference_num_threads"] = int(opts["threads"])
    stored = deploy.store_runtime_options(ov_model, deploy.deploy_config(runner_options))
    job.status("openvino.save_model")
    ov.save_model(ov_model, str(xml), compress_to_fp16=compress)
    files = [xml, xml.with_suffix(".bin")]
    details: dict[str, Any] = {
        "device": device,
        "device_name": _device_name(core, device) if here else None,
        "device_capabilities": caps,
        "precision_hint": hint,
        "weights": {"fp32": "float32", "bf16": "float32", "fp16": "float16 (compress_to_fp16)",
                    "int8": "int8 where NNCF quantized, float32 elsewhere"}[job.precision],
        "compress_to_fp16": compress,
        "conversion": conversion,
        "ir": {"xml": xml.name, "bin": xml.with_suffix(".bin").name,
               "bin_bytes": xml.with_suffix(".bin").stat().st_size, "rt_info_runtime_options": stored},
    }
    share = _share(core, xml, job, quantization)
    if share is not None:
        details["precision_share"] = share
    if here:
        job.status("plain compile_model(xml) check")
        plain = deploy.plain_load_check(model, xml, model.io, job, runner_options)
        details["plain_load"] = plain
        # the verdict reads this (the core's generic deployment check): a plain load that fails the contract fails
        if (opts.get("plain_load") or "verdict") == "verdict":
            details["deployment"] = {"check": f"plain compile_model(xml, {plain['device']!r})",
                                     "pass": plain["pass"], "reason": plain["reason"],
                                     "settings": plain["deploy_config"]}
        _plain_warnings(job, plain, details.get("device_name"))
    if quantization is not None:
        details["quantization"] = quantization
    tools = {"openvino": ov.__version__.split("-")[0]}
    nncf_version = _version("nncf")
    if nncf_version:
        tools["nncf"] = nncf_version
    return Artifact(
        path=xml,
        form="openvino",
        io=model.io,  # the source's names, shapes (dynamic axes kept) and dtypes: convert.name_io made it so
        files=files,
        tools=tools,
        details=details,
        runner_options=runner_options,
        runnable=here,
        not_runnable_reason="" if here else (f"OpenVINO device {device} is not on this host (available: "
                                             f"{', '.join(core.available_devices) or 'none'}); the IR was built "
                                             "but not verified"),
    )


def _share(core: Any, xml: Path, job: Any, quantization: dict[str, Any] | None) -> dict[str, Any] | None:
    """The share of the IR's MACs at int8 / fp16 (``precision.ir_share``), read from the saved IR, judged by the rule
    every target shares (``pass``/``reason``: under half fails the verdict)."""
    if job.precision not in ("int8", "fp16"):
        return None
    from .precision import ir_share

    kept = set((quantization or {}).get("ignored_names") or ())
    share = ir_share(core.read_model(str(xml)), job.precision, kept)
    from edgeconv.plugin import share_failure

    why = share_failure(share)
    share.update({"pass": why is None, "reason": why})
    if why:
        reverted = ((quantization or {}).get("accuracy_control") or {}).get("log") or []
        job.warn(f"not {job.precision}: {why}" + ("; NNCF's accuracy control reverted layers to float to meet the "
                                                  "accuracy budget" if reverted else ""))
    return share


def _plain_warnings(job: Any, plain: dict[str, Any], device_name: str | None) -> None:
    """Say what a plain load does, and the settings deployment code must pass when it is not what was verified."""
    if plain.get("same_as_verified"):
        return
    where = f" ({device_name})" if device_name else ""
    config = plain["deploy_config"]
    if plain.get("pass"):
        job.warn(f"a plain compile_model(xml, {plain['device']!r}) computes in {plain['precision_hint']} on this "
                 f"host{where}, not the verified {plain['verified_hint']}; it passes the fidelity contract too "
                 f"(checked on {plain.get('samples')} samples), but to run what was verified deploy with "
                 f"compile_model(xml, {plain['device']!r}, {config})")
    else:
        job.warn(f"{plain['reason']}{where}")


def _hint_warnings(job: Any, hint: str, device: str, caps: list[str]) -> None:
    asked = _FLOAT_PRECISION.get(job.precision)
    if asked and hint not in (asked, "f32"):
        job.warn(f"precision_hint={hint} computes in {hint}, below the asked {job.precision}: verification still "
                 f"uses the {job.precision} thresholds")
    if not caps:
        return
    native = native_hints(caps)
    if hint == "bf16" and "bf16" not in native:
        job.warn(f"{device} has no native bf16 ({', '.join(caps)}): OpenVINO emulates it, slower than f32 here")
    if hint == "f16" and "f16" not in native and device_family(device) == "CPU":
        job.warn(f"{device} has no native f16: OpenVINO computes in f32 instead (see the report's runtime hint)")


def _device_name(core: Any, device: str) -> str | None:
    try:
        return str(core.get_property(device, "FULL_DEVICE_NAME"))
    except Exception:
        return None


def doctor() -> dict[str, Any]:
    """The deep check: versions, devices and what each computes natively."""
    import openvino as ov

    core = ov.Core()
    devices = {}
    for d in core.available_devices:
        entry: dict[str, Any] = {"name": _device_name(core, d)}
        try:
            entry["capabilities"] = [str(c) for c in core.get_property(d, "OPTIMIZATION_CAPABILITIES")]
        except Exception:
            pass
        devices[d] = entry
    return {"openvino": ov.__version__, "nncf": _version("nncf") or "not installed (INT8 unavailable)",
            "devices": devices}
