"""Run a TensorRT plan: the ``tensorrt`` runner for verify and bench.

TensorRT 8.5+ name-based I/O API: ``Runtime.deserialize_cuda_engine``, ``engine.num_io_tensors`` /
``get_tensor_name`` / ``get_tensor_mode`` / ``get_tensor_dtype``, ``create_execution_context``,
``context.set_input_shape`` / ``get_tensor_shape`` / ``set_tensor_address`` and
``execute_async_v3(stream)`` (the pattern of NVIDIA's ``samples/python/common_runtime.py``), with
device memory and the stream from ``libcudart`` through ctypes (``cuda.py``).

Before deserializing, the plan's record (TensorRT version, GPU, compute capability, platform) is
checked against the host (``compat.py``), so a mismatch is refused with the reason and the fix.
Latency measured through this runner includes the host<->device copies of inputs and outputs.

What a manifest may set (``RunnerSpec.options``, checked by the core before this runner is made): ``engine`` (the
plan's record, compared with the host), ``device`` (the CUDA device), ``prepared_only`` and ``command`` (a build kit:
the command is only shown, never run). Nothing from a manifest is executed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgeconv.plugin import BadInput, Runner, ToolchainFailed, ToolchainMissing

from .compat import ensure_compatible, host_info


class TRTRunner(Runner):
    name = "tensorrt"
    modules = ("tensorrt",)

    def __init__(self, model, threads: int | None = None, engine: dict[str, Any] | None = None, device: int = 0,
                 prepared_only: bool = False, command: str = "", **options: Any) -> None:
        super().__init__(model, **options)
        self.record = dict(engine or {})
        self.device = int(device or 0)
        self.prepared_only = prepared_only
        self.command = str(command or "")  # shown to the user, never run
        self._buffers: dict[str, tuple[int, int]] = {}
        self.cuda = self.trt = self.runtime = self.engine = self.context = None
        self.stream = 0
        self.warnings: list[str] = []

    # -- activate -------------------------------------------------------------------------
    def activate(self) -> None:
        path = Path(self.model.path)
        if self.prepared_only or path.suffix == ".json":
            command = self.command or "bash trtexec.sh"
            raise ToolchainMissing(
                f"{path.parent} holds a TensorRT build kit (the prepared ONNX and build.json), not an engine: "
                "nothing to run until the plan is built", file=path, stage="verify",
                hint=f"on the device, in that folder: {command} (or python -m edgeconv_tensorrt.build build.json)")
        if not path.is_file():
            raise BadInput("no such TensorRT plan", file=path, stage="verify")
        host = host_info(self.device)
        self.warnings = ensure_compatible(self.record, host, path.name) if self.record else []
        import numpy as np
        import tensorrt as trt

        from .cuda import CudaError, CudaRuntime

        self.trt, self.np = trt, np
        try:
            self.cuda = CudaRuntime()
            self.cuda.set_device(self.device)
            self.stream = self.cuda.stream_create()
        except CudaError as exc:
            raise ToolchainMissing(str(exc), file=path, stage="verify",
                                   hint="the runner needs the CUDA runtime (libcudart) and a GPU") from None
        logger = trt.Logger(trt.Logger.WARNING)
        self.runtime = trt.Runtime(logger)
        if self.record.get("version_compatible"):
            # A version-compatible plan embeds its lean runtime: host code TensorRT must be allowed to load
            # ("Version Compatibility": runtime.engine_host_code_allowed = True). Only load trusted plans.
            self.runtime.engine_host_code_allowed = True
        self.engine = self.runtime.deserialize_cuda_engine(path.read_bytes())
        if self.engine is None:
            raise ToolchainFailed("TensorRT could not deserialize the plan (see the TensorRT log above)",
                                  file=path, stage="verify")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.outputs = [n for n in names if n not in self.inputs]
        self.dtypes = {n: np.dtype(trt.nptype(self.engine.get_tensor_dtype(n))) for n in names}
        self.contract = {t.name: t.dtype for t in (self.model.io.outputs if self.model.io else ())}
        self.info = {
            "runtime": f"tensorrt {trt.__version__}",
            "device": f"cuda:{self.device} {host.get('gpu')} (compute capability {host.get('compute_capability')})",
            "precision": self.record.get("precision"),
            "host": "local",
            "includes_copies": True,
            **({"warnings": self.warnings} if self.warnings else {}),
        }

    # -- infer ----------------------------------------------------------------------------
    def _buffer(self, name: str, nbytes: int) -> int:
        ptr, size = self._buffers.get(name, (0, 0))
        if nbytes > size:
            self.cuda.free(ptr)
            ptr, size = self.cuda.malloc(nbytes), nbytes
            self._buffers[name] = (ptr, size)
        return ptr

    def infer(self, feed: dict[str, Any]) -> dict[str, Any]:
        np = self.np
        profiles = self.record.get("profiles") or {}
        staged = {}
        for name in self.inputs:
            if name not in feed:
                raise BadInput(f"the plan needs input {name!r}", stage="verify")
            arr = np.ascontiguousarray(feed[name], dtype=self.dtypes[name])
            prof = profiles.get(name)
            if prof and not all(lo <= s <= hi for s, lo, hi in zip(arr.shape, prof["min"], prof["max"])):
                raise BadInput(f"input {name!r} of shape {list(arr.shape)} is outside the plan's profile "
                               f"min {prof['min']} .. max {prof['max']}", stage="verify")
            if not self.context.set_input_shape(name, tuple(arr.shape)):
                raise BadInput(f"TensorRT refused shape {list(arr.shape)} for input {name!r}", stage="verify")
            ptr = self._buffer(name, arr.nbytes)
            self.cuda.copy_to_device(ptr, arr, self.stream)
            self.context.set_tensor_address(name, ptr)
            staged[name] = arr  # keep the host array alive until the stream is synchronised
        results = {}
        for name in self.outputs:
            shape = tuple(self.context.get_tensor_shape(name))
            if any(d < 0 for d in shape):
                raise ToolchainFailed(f"output {name!r} has a data-dependent shape {list(shape)}: this runner does "
                                      "not support output allocators yet", stage="verify")
            host = np.empty(shape, dtype=self.dtypes[name])
            ptr = self._buffer(name, host.nbytes)
            self.context.set_tensor_address(name, ptr)
            results[name] = (host, ptr)
        if not self.context.execute_async_v3(self.stream):
            raise ToolchainFailed("TensorRT execute_async_v3 failed (see the TensorRT log)", stage="verify")
        for host, ptr in results.values():
            self.cuda.copy_to_host(host, ptr, self.stream)
        self.cuda.stream_synchronize(self.stream)
        out = {}
        for name, (host, _) in results.items():
            want = self.contract.get(name)
            # TensorRT 8.x computes INT64 tensors as INT32: hand back the dtype the contract declares.
            out[name] = host.astype(want) if want and host.dtype != np.dtype(want) and host.dtype.kind == np.dtype(want).kind else host
        del staged
        return out

    def deactivate(self) -> None:
        if self.cuda is not None:
            for ptr, _ in self._buffers.values():
                try:
                    self.cuda.free(ptr)
                except Exception:
                    pass
            self._buffers.clear()
            try:
                self.cuda.stream_destroy(self.stream)
            except Exception:
                pass
            self.stream = 0
        self.context = self.engine = self.runtime = None
