"""What this host has for TensorRT: the Python module, ``trtexec``, the CUDA driver and runtime,
the GPU, and whether it is a Jetson; and for each missing piece, the fix.

``doctor()`` is the target's deep check (``edgeconv doctor``). The exporter and the runner use
the same probes (``python_tensorrt``, ``find_trtexec``, ``gpu_info``) to decide what can run.
"""

from __future__ import annotations

import functools
import os
import platform
import re
import shutil
from typing import Any

from .versions import TrtVersion, parse_version

JETPACK_TRTEXEC = "/usr/src/tensorrt/bin/trtexec"  # where JetPack (and the TensorRT debs) put it
TEGRA_RELEASE = "/etc/nv_tegra_release"

FIX_TENSORRT = (
    "on a Jetson TensorRT comes with JetPack: sudo apt install nvidia-jetpack (or: sudo apt install tensorrt "
    "python3-libnvinfer); on a desktop GPU: pip install tensorrt (its library wheels come from NVIDIA's package "
    "index), or NVIDIA's deb/tar packages"
)
FIX_TRTEXEC = f"trtexec ships with TensorRT's packages at {JETPACK_TRTEXEC}: export PATH=$PATH:/usr/src/tensorrt/bin"
FIX_GPU = (
    "install the NVIDIA driver (on a Jetson: flash JetPack); in a container run it with --gpus all "
    "(or --runtime nvidia on a Jetson)"
)
FIX_CUDART = "install the CUDA runtime: it comes with JetPack / the CUDA toolkit, or pip install nvidia-cuda-runtime-cu12"


def python_tensorrt() -> dict[str, Any]:
    """Import ``tensorrt`` (deep check): ``{"found", "version", "path"}`` or ``{"found": False, "error"}``."""
    import importlib.util

    try:
        spec = importlib.util.find_spec("tensorrt")
    except (ImportError, ValueError):
        spec = None
    if spec is None:
        return {"found": False, "error": "the tensorrt Python module is not installed"}
    try:
        import tensorrt as trt
    except Exception as exc:  # a broken install: libnvinfer missing, CUDA mismatch...
        return {"found": False, "error": f"import tensorrt failed: {type(exc).__name__}: {' '.join(str(exc).split())[:200]}"}
    return {"found": True, "version": str(getattr(trt, "__version__", "?")), "path": os.path.dirname(trt.__file__)}


def find_trtexec(explicit: str | None = None) -> str | None:
    """``trtexec`` on PATH, at an explicit path (``-O trtexec=...``) or where JetPack installs it."""
    if explicit:
        return explicit if os.path.isfile(explicit) and os.access(explicit, os.X_OK) else None
    found = shutil.which("trtexec")
    if found:
        return found
    return JETPACK_TRTEXEC if os.access(JETPACK_TRTEXEC, os.X_OK) else None


_BANNER = re.compile(r"TensorRT\.trtexec \[TensorRT v(\d+)\]")


def trtexec_version(path: str, timeout: float = 30.0) -> TrtVersion | None:
    """The version in trtexec's banner: ``&&&& RUNNING TensorRT.trtexec [TensorRT v100300] ...``."""
    from edgeconv.plugin import EdgeconvError

    from .children import run_child

    try:
        done = run_child([path, "--help"], timeout=timeout, what="trtexec --help")
    except EdgeconvError:  # not found, not executable, or hung
        return None
    m = _BANNER.search(done.output)
    return TrtVersion.from_banner(int(m.group(1))) if m else None


@functools.lru_cache(maxsize=1)
def _probe() -> dict[str, Any]:
    from .cuda import probe_gpus

    return probe_gpus()


def gpu_info(device: int = 0) -> dict[str, Any] | None:
    """``{"index", "name", "compute_capability"}`` of CUDA device ``device``, or None."""
    probe = _probe()
    gpus = probe.get("gpus") or []
    return next((g for g in gpus if g["index"] == device), None)


def cuda_runtime_version() -> str | None:
    from .cuda import CudaError, CudaRuntime

    try:
        return CudaRuntime().runtime_version()
    except (CudaError, OSError, AttributeError):
        return None


def jetson() -> str | None:
    """The L4T release line of a Jetson (``# R36 (release), REVISION: 4.3 ...``), else None."""
    try:
        with open(TEGRA_RELEASE) as f:
            return f.readline().strip() or "Jetson"
    except OSError:
        return None


def doctor() -> dict[str, Any]:
    """The deep environment check for ``edgeconv doctor``."""
    import onnxruntime

    py = python_tensorrt()
    trtexec = find_trtexec()
    probe = _probe()
    out: dict[str, Any] = {
        "tensorrt_python": py,
        "trtexec": {"path": trtexec, "version": str(v) if trtexec and (v := trtexec_version(trtexec)) else None},
        "cuda_driver": probe.get("driver"),
        "cuda_runtime": cuda_runtime_version(),
        "gpus": probe.get("gpus") or [],
        "jetson": jetson(),
        "machine": platform.machine(),
        "onnxruntime": onnxruntime.__version__,
        "modelopt_python": os.environ.get("EDGECONV_MODELOPT_PYTHON") or None,
    }
    missing = []
    if not py["found"] and not trtexec:
        missing.append({"what": "TensorRT (the tensorrt Python module or trtexec)", "why": py.get("error"),
                        "fix": FIX_TENSORRT})
    elif not py["found"]:
        missing.append({"what": "the tensorrt Python module (trtexec builds, but verify/bench need the module)",
                        "why": py.get("error"), "fix": FIX_TENSORRT})
    if not trtexec:
        missing.append({"what": "trtexec (optional: builds without the Python module)", "fix": FIX_TRTEXEC})
    if "error" in probe:
        missing.append({"what": "an NVIDIA GPU", "why": probe["error"], "fix": FIX_GPU})
    if out["cuda_runtime"] is None:
        missing.append({"what": "the CUDA runtime (libcudart, used by the runner)", "fix": FIX_CUDART})
    out["can_build"] = bool((py["found"] or trtexec) and "error" not in probe)
    out["can_run"] = bool(py["found"] and "error" not in probe and out["cuda_runtime"])
    out["missing"] = missing
    return out


def installed_version() -> TrtVersion | None:
    """The TensorRT version of this host (Python module first, then trtexec), or None."""
    py = python_tensorrt()
    if py["found"]:
        return parse_version(py["version"])
    path = find_trtexec()
    return trtexec_version(path) if path else None
