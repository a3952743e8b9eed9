"""A plan's record (TensorRT version, GPU, compute capability, CUDA, platform, profiles) and
the checks made against the host *before* TensorRT deserializes it.

Without them a mismatch surfaces as TensorRT's "Serialization assertion ... Version tag does not
match" or a bare ``None`` engine. The rules follow NVIDIA's documentation:

- a plan loads only on the TensorRT version that built it, unless built version-compatible
  (8.6+), which loads on the same or a newer TensorRT ("Version Compatibility");
- a plan is specific to the GPU architecture that built it, unless built with hardware
  compatibility ``ampere+``, which loads on compute capability 8.0 and newer ("Hardware
  Compatibility"; not on Jetson);
- "Serialized engines are not portable across platforms" (support matrix): same CPU architecture.

Build numbers (the 4th field of ``10.3.0.30``) and CUDA versions that differ only warn.
"""

from __future__ import annotations

import platform
from typing import Any

from edgeconv.plugin import ToolchainMissing

from .versions import parse_version


def host_info(device: int = 0) -> dict[str, Any]:
    """TensorRT, GPU, CUDA and platform of this host (imports tensorrt when present)."""
    from .doctor import _probe, cuda_runtime_version, gpu_info, jetson, python_tensorrt

    py = python_tensorrt()
    gpu = gpu_info(device)
    return {
        "tensorrt": py.get("version") if py["found"] else None,
        "gpu": gpu["name"] if gpu else None,
        "compute_capability": gpu["compute_capability"] if gpu else None,
        "device": device,
        "cuda_driver": _probe().get("driver"),
        "cuda_runtime": cuda_runtime_version(),
        "machine": platform.machine(),
        "jetson": jetson(),
    }


def engine_record(settings, host: dict[str, Any], built_with: str | None, builder: str) -> dict[str, Any]:
    """What the manifest (and the runner's options) record about a plan."""
    return {
        "tensorrt": built_with or host.get("tensorrt"),
        "gpu": host.get("gpu"),
        "compute_capability": host.get("compute_capability"),
        "cuda_driver": host.get("cuda_driver"),
        "cuda_runtime": host.get("cuda_runtime"),
        "machine": host.get("machine"),
        "jetson": host.get("jetson"),
        "precision": settings.precision,
        "builder": builder,
        "version_compatible": settings.version_compatible,
        "exclude_lean_runtime": settings.exclude_lean_runtime,
        "hardware_compatibility": settings.hardware_compatibility,
        "strongly_typed": settings.strongly_typed,
        "profiles": {k: p.to_dict() for k, p in settings.profiles.items()},
    }


def _cc(text: str | None) -> tuple[int, int] | None:
    try:
        major, minor = str(text).split(".")[:2]
        return int(major), int(minor)
    except (ValueError, AttributeError):
        return None


def problems(record: dict[str, Any], host: dict[str, Any]) -> tuple[list[str], list[str]]:
    """(reasons the plan cannot load here, warnings)."""
    errors: list[str] = []
    warns: list[str] = []
    built, here = parse_version(record.get("tensorrt")), parse_version(host.get("tensorrt"))
    if here is None:
        errors.append("this host has no TensorRT Python runtime")
    elif built is not None:
        if record.get("version_compatible"):
            if (here.major, here.minor, here.patch) < (built.major, built.minor, built.patch):
                errors.append(f"TensorRT {here} is older than {built}, which built this version-compatible plan "
                              "(it loads on the same or a newer TensorRT)")
            elif record.get("exclude_lean_runtime") and (here.major, here.minor) != (built.major, built.minor):
                warns.append("the plan was built without its lean runtime (-O exclude_lean_runtime): TensorRT "
                             f"{here} must be given a lean runtime of {built}")
        elif (here.major, here.minor, here.patch) != (built.major, built.minor, built.patch):
            errors.append(f"TensorRT {here} is not {built}, which built this plan (a plan loads only on the TensorRT "
                          "that built it, unless built with -O version_compatible=true)")
        elif built.build is not None and here.build is not None and built.build != here.build:
            warns.append(f"TensorRT build {here} differs from {built}, which built this plan")
    if record.get("machine") and host.get("machine") and record["machine"] != host["machine"]:
        errors.append(f"the plan was built on {record['machine']}, this host is {host['machine']} (serialized "
                      "engines are not portable across platforms)")
    rec_cc, host_cc = _cc(record.get("compute_capability")), _cc(host.get("compute_capability"))
    if host.get("compute_capability") is None:
        errors.append("this host has no usable NVIDIA GPU")
    elif rec_cc is not None and host_cc is not None:
        if record.get("hardware_compatibility") == "ampere+":
            if host_cc < (8, 0):
                errors.append(f"the GPU's compute capability {host['compute_capability']} is older than Ampere (8.0), "
                              "the plan was built hardware-compatible for ampere+")
        elif rec_cc != host_cc:
            errors.append(f"the GPU's compute capability {host['compute_capability']} is not "
                          f"{record['compute_capability']}, which the plan was built for (a plan is specific to the "
                          "GPU architecture, unless built with -O hardware_compatibility=ampere+)")
        elif record.get("gpu") and host.get("gpu") and record["gpu"] != host["gpu"]:
            warns.append(f"the plan was built on {record['gpu']}, this GPU is {host['gpu']} (same compute capability: "
                         "it loads, the kernels were timed on the other GPU)")
    rc, hc = record.get("cuda_runtime"), host.get("cuda_runtime")
    if rc and hc and rc.split(".")[0] != hc.split(".")[0]:
        warns.append(f"CUDA runtime {hc} here, {rc} where the plan was built")
    return errors, warns


def describe(info: dict[str, Any]) -> str:
    gpu = info.get("gpu") or "no GPU"
    cc = info.get("compute_capability")
    return (f"TensorRT {info.get('tensorrt') or 'absent'}, {gpu}"
            f"{f' (compute capability {cc})' if cc else ''}, {info.get('machine') or '?'}")


def ensure_compatible(record: dict[str, Any], host: dict[str, Any], plan: str) -> list[str]:
    """Refuse, with the reasons and the fix, a plan this host cannot load; return warnings."""
    errors, warns = problems(record, host)
    if errors:
        raise ToolchainMissing(
            f"{plan} cannot run on this host: built with {describe(record)}; this host has {describe(host)}: "
            + "; ".join(errors),
            stage="verify",
            hint="rebuild the plan on this host from its output folder (bash trtexec.sh, or python -m "
                 "edgeconv_tensorrt.build build.json), or convert again here with --to tensorrt",
        )
    return warns
