"""The little CUDA this plugin needs, through ctypes (no pycuda / cuda-python dependency).

- ``probe_gpus()`` uses the *driver* API (``libcuda.so.1``, present wherever the NVIDIA driver
  is, Jetson included): driver version, and per device its name and compute capability.
- ``CudaRuntime`` wraps the *runtime* API (``libcudart``) for the runner: device memory,
  copies and a stream, the way Polygraphy's ``polygraphy/cuda/cuda.py`` does.

Signatures and enum values are the CUDA headers' (``cudaDevAttrComputeCapabilityMajor = 75``,
``cudaMemcpyHostToDevice = 1``); none of this can run without an NVIDIA driver.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import glob
import os
import sys
from typing import Any

ATTR_CC_MAJOR = 75  # CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR / cudaDevAttrComputeCapabilityMajor
ATTR_CC_MINOR = 76
H2D, D2H = 1, 2  # cudaMemcpyKind


class CudaError(RuntimeError):
    pass


def _version(number: int) -> str:
    """CUDA encodes 12.6 as 12060."""
    return f"{number // 1000}.{(number % 1000) // 10}"


def _lib_dirs() -> list[str]:
    dirs = [d for d in os.environ.get("LD_LIBRARY_PATH", "").split(os.pathsep) if d]
    for env in ("CUDA_HOME", "CUDA_PATH"):
        if os.environ.get(env):
            dirs.append(os.path.join(os.environ[env], "lib64"))
    dirs += ["/usr/local/cuda/lib64", "/usr/local/cuda/targets/aarch64-linux/lib", "/usr/lib/aarch64-linux-gnu",
             "/usr/lib/x86_64-linux-gnu", "/usr/lib64", "/usr/lib"]
    # pip wheels (nvidia-cuda-runtime-cu12, which the tensorrt wheels pull in)
    for entry in sys.path:
        dirs += glob.glob(os.path.join(entry, "nvidia", "cuda_runtime", "lib"))
    return dirs


def find_library(stem: str, sonames: tuple[str, ...]) -> str | None:
    """A loadable path for ``libcudart``/``libcuda``, or None."""
    for name in sonames:
        for d in _lib_dirs():
            path = os.path.join(d, name)
            if os.path.exists(path):
                return path
    found = ctypes.util.find_library(stem)
    return found


CUDART_NAMES = ("libcudart.so", "libcudart.so.13", "libcudart.so.12", "libcudart.so.11.0")
CUDA_DRIVER_NAMES = ("libcuda.so.1", "libcuda.so")


def probe_gpus() -> dict[str, Any]:
    """``{"driver": "12.6", "gpus": [{"index", "name", "compute_capability"}]}`` or ``{"error": ...}``."""
    path = find_library("cuda", CUDA_DRIVER_NAMES)
    try:
        lib = ctypes.CDLL(path or "libcuda.so.1")
    except OSError:
        return {"error": "the NVIDIA driver library libcuda.so.1 is not installed", "library": None}
    status = lib.cuInit(0)
    if status != 0:
        return {"error": f"cuInit failed with CUDA error {status} (no usable NVIDIA GPU, or the driver is not loaded)",
                "library": path}
    version = ctypes.c_int()
    lib.cuDriverGetVersion(ctypes.byref(version))
    count = ctypes.c_int()
    if lib.cuDeviceGetCount(ctypes.byref(count)) != 0 or count.value == 0:
        return {"error": "the NVIDIA driver sees no GPU", "driver": _version(version.value), "library": path}
    gpus = []
    for index in range(count.value):
        dev = ctypes.c_int()
        lib.cuDeviceGet(ctypes.byref(dev), index)
        name = ctypes.create_string_buffer(256)
        lib.cuDeviceGetName(name, 256, dev)
        major, minor = ctypes.c_int(), ctypes.c_int()
        lib.cuDeviceGetAttribute(ctypes.byref(major), ATTR_CC_MAJOR, dev)
        lib.cuDeviceGetAttribute(ctypes.byref(minor), ATTR_CC_MINOR, dev)
        gpus.append({"index": index, "name": name.value.decode(errors="replace"),
                     "compute_capability": f"{major.value}.{minor.value}"})
    return {"driver": _version(version.value), "gpus": gpus, "library": path}


class CudaRuntime:
    """Device memory, copies and one stream through ``libcudart`` (runner only)."""

    def __init__(self, path: str | None = None) -> None:
        path = path or find_library("cudart", CUDART_NAMES)
        try:
            self.lib = ctypes.CDLL(path or "libcudart.so")
        except OSError as exc:
            raise CudaError(f"the CUDA runtime library libcudart is not installed ({exc})") from None
        self.path = path
        self.lib.cudaGetErrorString.restype = ctypes.c_char_p

    def check(self, status: int, what: str) -> None:
        if status != 0:
            text = self.lib.cudaGetErrorString(status)
            raise CudaError(f"{what} failed: CUDA error {status} ({text.decode() if text else '?'})")

    def runtime_version(self) -> str:
        v = ctypes.c_int()
        self.check(self.lib.cudaRuntimeGetVersion(ctypes.byref(v)), "cudaRuntimeGetVersion")
        return _version(v.value)

    def set_device(self, index: int) -> None:
        self.check(self.lib.cudaSetDevice(ctypes.c_int(index)), f"cudaSetDevice({index})")

    def malloc(self, nbytes: int) -> int:
        ptr = ctypes.c_void_p()
        self.check(self.lib.cudaMalloc(ctypes.byref(ptr), ctypes.c_size_t(max(1, nbytes))), f"cudaMalloc({nbytes})")
        return int(ptr.value or 0)

    def free(self, ptr: int) -> None:
        if ptr:
            self.check(self.lib.cudaFree(ctypes.c_void_p(ptr)), "cudaFree")

    def stream_create(self) -> int:
        ptr = ctypes.c_void_p()
        self.check(self.lib.cudaStreamCreate(ctypes.byref(ptr)), "cudaStreamCreate")
        return int(ptr.value or 0)

    def stream_synchronize(self, stream: int) -> None:
        self.check(self.lib.cudaStreamSynchronize(ctypes.c_void_p(stream)), "cudaStreamSynchronize")

    def stream_destroy(self, stream: int) -> None:
        if stream:
            self.check(self.lib.cudaStreamDestroy(ctypes.c_void_p(stream)), "cudaStreamDestroy")

    def copy_to_device(self, dst: int, array: Any, stream: int) -> None:
        self.check(self.lib.cudaMemcpyAsync(ctypes.c_void_p(dst), ctypes.c_void_p(array.ctypes.data),
                                            ctypes.c_size_t(array.nbytes), H2D, ctypes.c_void_p(stream)),
                   "cudaMemcpyAsync(host to device)")

    def copy_to_host(self, array: Any, src: int, stream: int) -> None:
        self.check(self.lib.cudaMemcpyAsync(ctypes.c_void_p(array.ctypes.data), ctypes.c_void_p(src),
                                            ctypes.c_size_t(array.nbytes), D2H, ctypes.c_void_p(stream)),
                   "cudaMemcpyAsync(device to host)")
