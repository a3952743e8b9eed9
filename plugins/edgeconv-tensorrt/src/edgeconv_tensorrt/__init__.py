"""edgeconv-tensorrt: the ``tensorrt`` target of edgeconv (TensorRT plans for NVIDIA Jetson and GPUs).

Registration lives in ``hooks`` (cheap); one module per job: ``passes`` (the target's passes:
tensorrt.prepare, tensorrt.fp16, tensorrt.qdq), ``prepare`` (opset, shapes, profiles), ``precheck``
(+ ``data/onnx_operators.json``), ``quantize`` (INT8 QDQ and its CPU verification), ``export`` (the
build kit and the engine), ``build`` (builder settings, the Python builder, trtexec, build.json),
``runner``, ``compat`` (a plan's record vs the host), ``doctor`` (what this host has), ``cuda``
(ctypes), ``children`` (child processes through the core's worker), ``devices.toml`` (device profiles).
"""

__version__ = "0.1.0"
