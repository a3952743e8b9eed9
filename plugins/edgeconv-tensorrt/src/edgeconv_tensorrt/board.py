"""The board half of the tensorrt runner (docs/boards.md): runs a TensorRT plan on a Jetson (or any CUDA board).

SELF-CONTAINED: shipped to the board by edgeconv's board agent and imported there from the board's cache; needs only
Python >= 3.8, numpy, TensorRT's Python API (JetPack: ``sudo apt install python3-libnvinfer``; desktop: ``pip install
tensorrt``) and cuda-python for the device buffers (``pip install cuda-python``, matching the board's CUDA major). No
edgeconv import. Written from TensorRT 8.5+'s name-based I/O API as NVIDIA's ``samples/python/common_runtime.py``
uses it (``Runtime.deserialize_cuda_engine``, ``num_io_tensors`` / ``get_tensor_name`` / ``get_tensor_mode`` /
``get_tensor_dtype``, ``create_execution_context``, ``set_input_shape`` / ``get_tensor_shape`` /
``set_tensor_address``, ``execute_async_v3``) and cuda-python's ``cudart`` (``cudaMalloc``, ``cudaMemcpyAsync``,
``cudaStreamCreate`` / ``Synchronize`` / ``Destroy``, ``cudaFree``; each returns ``(err, *values)``); never run on a
Jetson here.

Settings (the manifest's ``runner_options``, those of ``edgeconv_tensorrt.runner.TRTRunner``): ``engine`` (the plan's
record: its TensorRT version is compared with the board's, ``version_compatible`` lets the plan's lean runtime load),
``device`` (the CUDA device), ``prepared_only`` / ``command`` (a build kit: nothing to run, the command is only shown).
Outputs keep the plan's tensor names (the ONNX names). Latency includes the host<->device copies, as on the host.

The board-half contract (``edgeconv.places.agent``): ``MODULES``, ``load(path, options) -> session`` with
``session.info``, ``session.infer(feed)`` and ``session.close()``.
"""

# ruff: noqa: UP004, UP031, UP036, B905  (runs on the board's Python >= 3.8: no f-string-only idioms, no zip(strict=))

MODULES = ("tensorrt",)
SETTINGS = ("engine", "device", "prepared_only", "command")
NEEDS = {
    "tensorrt": "TensorRT's Python API (JetPack: sudo apt install python3-libnvinfer; else pip install tensorrt)",
    "cuda": "cuda-python for the device buffers (pip install cuda-python, for the board's CUDA major version)",
}


def _missing(module, exc):
    error = ImportError("the board has no %r module: %s (%s: %s)" % (module, NEEDS[module], type(exc).__name__, exc))
    error.name = module
    return error


def _cudart():
    try:
        from cuda.bindings import runtime as cudart  # cuda-python >= 12.6
    except ImportError:
        try:
            from cuda import cudart  # older cuda-python
        except ImportError as exc:
            raise _missing("cuda", exc) from None
    return cudart


def _major_minor(text):
    parts = str(text or "").split(".")
    try:
        return int(parts[0]), int(parts[1])
    except (IndexError, ValueError):
        return None


class Session(object):
    def __init__(self, path, options):
        if options.get("prepared_only") or path.endswith(".json"):
            raise RuntimeError("%s is a TensorRT build kit, not a plan: build it on the board first (%s)"
                               % (path, options.get("command") or "bash trtexec.sh"))
        try:
            import tensorrt as trt
        except ImportError as exc:
            raise _missing("tensorrt", exc) from None
        import numpy as np

        self.np, self.trt = np, trt
        self.cudart = _cudart()
        self.record = dict(options.get("engine") or {})
        self._check_version(trt.__version__)
        self.device = int(options.get("device") or 0)
        self.buffers = {}
        self.stream = None
        self.context = self.engine = self.runtime = None
        self._call(self.cudart.cudaSetDevice(self.device), "cudaSetDevice(%d)" % self.device)
        self.stream = self._call(self.cudart.cudaStreamCreate(), "cudaStreamCreate")
        self.runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        if self.record.get("version_compatible"):
            self.runtime.engine_host_code_allowed = True  # the plan embeds its lean runtime (trusted plans only)
        with open(path, "rb") as f:
            self.engine = self.runtime.deserialize_cuda_engine(f.read())
        if self.engine is None:
            raise RuntimeError("TensorRT could not deserialize %s (see the TensorRT log above)" % path)
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.outputs = [n for n in names if n not in self.inputs]
        self.dtypes = dict((n, np.dtype(trt.nptype(self.engine.get_tensor_dtype(n)))) for n in names)
        self.info = {
            "runtime": "tensorrt %s" % trt.__version__,
            "device": "cuda:%d" % self.device,
            "precision": self.record.get("precision"),
            "includes_copies": True,
            "ignored_options": sorted(k for k in options if k not in SETTINGS),
        }

    def _check_version(self, here):
        built, mine = _major_minor(self.record.get("tensorrt")), _major_minor(here)
        if built and mine and built != mine and not self.record.get("version_compatible"):
            raise RuntimeError("the plan was built with TensorRT %s, the board has %s: a plan runs only on the "
                               "TensorRT it was built with (rebuild it on the board, or build it version-compatible)"
                               % (self.record.get("tensorrt"), here))

    def _call(self, result, what):
        err, values = result[0], result[1:]
        if err != self.cudart.cudaError_t.cudaSuccess:
            raise RuntimeError("CUDA %s failed: %s" % (what, err))
        return values[0] if len(values) == 1 else (values or None)

    def _buffer(self, name, nbytes):
        ptr, size = self.buffers.get(name, (None, 0))
        if nbytes > size:
            if ptr is not None:
                self._call(self.cudart.cudaFree(ptr), "cudaFree")
            ptr, size = self._call(self.cudart.cudaMalloc(max(nbytes, 1)), "cudaMalloc"), nbytes
            self.buffers[name] = (ptr, size)
        return ptr

    def infer(self, feed):
        np, cudart = self.np, self.cudart
        staged = []
        for name in self.inputs:
            if name not in feed:
                raise KeyError("the plan needs input %r; the feed has %s" % (name, ", ".join(feed) or "nothing"))
            arr = np.ascontiguousarray(feed[name], dtype=self.dtypes[name])
            if not self.context.set_input_shape(name, tuple(arr.shape)):
                raise ValueError("TensorRT refused shape %s for input %r" % (list(arr.shape), name))
            ptr = self._buffer(name, arr.nbytes)
            self._call(cudart.cudaMemcpyAsync(ptr, arr.ctypes.data, arr.nbytes,
                                              cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, self.stream), "HtoD copy")
            self.context.set_tensor_address(name, int(ptr))
            staged.append(arr)  # alive until the stream is synchronised
        results = []
        for name in self.outputs:
            shape = tuple(self.context.get_tensor_shape(name))
            if any(d < 0 for d in shape):
                raise RuntimeError("output %r has a data-dependent shape %s: not supported" % (name, list(shape)))
            host = np.empty(shape, dtype=self.dtypes[name])
            ptr = self._buffer(name, host.nbytes)
            self.context.set_tensor_address(name, int(ptr))
            results.append((name, host, ptr))
        if not self.context.execute_async_v3(int(self.stream)):
            raise RuntimeError("TensorRT execute_async_v3 failed (see the TensorRT log)")
        for _name, host, ptr in results:
            self._call(cudart.cudaMemcpyAsync(host.ctypes.data, ptr, host.nbytes,
                                              cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost, self.stream), "DtoH copy")
        self._call(cudart.cudaStreamSynchronize(self.stream), "cudaStreamSynchronize")
        del staged
        return dict((name, host) for name, host, _ptr in results)

    def close(self):
        for ptr, _size in self.buffers.values():
            try:
                self.cudart.cudaFree(ptr)
            except Exception:  # noqa: BLE001 - closing: free what can be freed
                pass
        self.buffers = {}
        if self.stream is not None:
            try:
                self.cudart.cudaStreamDestroy(self.stream)
            except Exception:  # noqa: BLE001
                pass
            self.stream = None
        self.context = self.engine = self.runtime = None


def load(path, options):
    return Session(path, options)
