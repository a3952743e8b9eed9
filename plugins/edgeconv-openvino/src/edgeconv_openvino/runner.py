"""Run an OpenVINO IR, compiled with an explicit ``INFERENCE_PRECISION_HINT``.

Why explicit: each OpenVINO device picks its own compute precision for an "FP32" IR when
no hint is given -- bf16 on CPUs with AMX/AVX512-BF16, f16 on GPUs and NPUs -- so the
same artifact would be verified at a different precision on another host. edgeconv
verifies what the user asked for (``resolve_hint``) and reports the hint the compiled
model actually uses (read back from it), next to the one requested.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from edgeconv.plugin import BadInput, IOContract, Model, Runner, TensorSpec, ToolchainMissing

# Layers whose runtime precision says nothing about the arithmetic.
_PLUMBING = {"Const", "Input", "Output", "Parameter", "Result", "Reshape", "Reorder", "Convert"}


def device_family(device: str) -> str:
    """``GPU.1`` -> ``GPU``; ``HETERO:GPU,CPU`` -> ``HETERO``."""
    return device.split(":")[0].split(".")[0].upper()


def resolve_hint(precision: str, device: str, requested: str = "auto") -> str:
    """The compute precision the runner asks the device for (the rule in docs/targets/openvino.md).

    ``auto``: fp32 and int8 compute in f32 (int8 kernels run where NNCF quantized, f32 in
    between); fp16 in f32 on CPU (the fp16 weights are decompressed at load time) and in
    f16 on GPU/NPU, whose native float precision it is; bf16 in bf16. NPUs compute in f16.
    """
    if requested and requested != "auto":
        return requested
    family = device_family(device)
    if family == "NPU":
        return "f16"
    if precision == "bf16":
        return "bf16"
    if precision == "fp16" and family == "GPU":
        return "f16"
    return "f32"


def native_hints(capabilities: list[str]) -> set[str]:
    """Hints a device computes natively, from its OPTIMIZATION_CAPABILITIES."""
    caps = {c.upper() for c in capabilities}
    return {h for h, cap in (("f32", "FP32"), ("bf16", "BF16"), ("f16", "FP16")) if cap in caps}


def available(core: Any, device: str) -> bool:
    """Whether ``device`` (or every device a HETERO/MULTI/AUTO list names) is present."""
    have = set(core.available_devices)
    family = device_family(device)
    if family in ("AUTO", "HETERO", "MULTI", "BATCH"):
        listed = device.split(":", 1)[1].split(",") if ":" in device else []
        return all(d in have or device_family(d) in {device_family(h) for h in have} for d in listed) and bool(have)
    return device in have or (device == family and any(device_family(h) == family for h in have))


def compile_config(device: str, precision_hint: str, performance_hint: str = "latency",
                   num_streams: Any = None, threads: int | None = None) -> dict[str, Any]:
    """The properties passed to ``Core.compile_model`` (strings: stable across releases)."""
    config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": precision_hint,
                              "PERFORMANCE_HINT": str(performance_hint).upper()}
    if num_streams not in (None, ""):
        config["NUM_STREAMS"] = str(num_streams).upper()
    if threads and device_family(device) == "CPU":
        config["INFERENCE_NUM_THREADS"] = int(threads)
    return config


class OVRunner(Runner):
    """An IR on an OpenVINO device; ``info`` says what the compiled model really uses."""

    name = "openvino"
    modules = ("openvino",)

    def __init__(self, model: Model, threads: int | None = None, device: str = "CPU", precision_hint: str = "f32",
                 performance_hint: str = "latency", num_streams: Any = None, inference_num_threads: int | None = None,
                 plain: bool = False, **options: Any) -> None:
        super().__init__(model, **options)
        # plain: compile as a deployment's plain ``core.compile_model(xml, device)`` does, with no properties at all
        # (the device's own defaults: bf16 on a CPU with AVX512-BF16 or AMX unless the IR says otherwise)
        self.plain = bool(plain)
        self.device = device
        self.precision_hint = precision_hint
        self.performance_hint = performance_hint
        self.num_streams = num_streams
        # --threads of this run wins over the threads stored with the artifact
        self.threads = threads or inference_num_threads
        self.compiled = None
        self.request = None

    def activate(self) -> None:
        import openvino as ov

        core = ov.Core()
        if not available(core, self.device):
            raise ToolchainMissing(f"OpenVINO device {self.device} is not available on this host "
                                   f"(available: {', '.join(core.available_devices) or 'none'})",
                                   file=self.model.path, stage="verify")
        config = ({} if self.plain else
                  compile_config(self.device, self.precision_hint, self.performance_hint, self.num_streams, self.threads))
        try:
            self.compiled = core.compile_model(str(self.model.path), self.device, config)
        except Exception as exc:
            text = " ".join(str(exc).split())[:300]
            raise BadInput(f"OpenVINO cannot compile the model for {self.device}: {text}", file=self.model.path,
                           stage="verify") from None
        self.request = self.compiled.create_infer_request()
        wanted = [t.name for t in self.model.io.outputs]
        self._outputs = []
        for i, port in enumerate(self.compiled.outputs):
            names = port.get_names()
            name = next((n for n in wanted if n in names), None) or port.get_any_name()
            self._outputs.append((name, i))
        self._tensor = ov.Tensor
        self.info = self._describe(core)

    def _describe(self, core: Any) -> dict[str, Any]:
        import openvino as ov

        c = self.compiled

        def prop(name: str) -> Any:
            try:
                return c.get_property(name)
            except Exception:
                return None

        hint = prop("INFERENCE_PRECISION_HINT")
        hint = hint.to_string() if hasattr(hint, "to_string") else (str(hint) if hint is not None else None)
        perf = prop("PERFORMANCE_HINT")
        info: dict[str, Any] = {
            "runtime": f"openvino {ov.__version__.split('-')[0]}",
            "device": self.device,
            "device_name": _device_name(core, self.device),
            "execution_devices": list(prop("EXECUTION_DEVICES") or []),
            "precision_hint": hint,
            "precision_hint_requested": None if self.plain else self.precision_hint,
            **({"plain_load": True} if self.plain else {}),
            "performance_hint": str(perf) if perf is not None else None,
            "streams": _int(prop("NUM_STREAMS")),
            "threads": _int(prop("INFERENCE_NUM_THREADS")) or (os.cpu_count() if device_family(self.device) == "CPU" else None),
            "host": "local",
        }
        try:  # which precision each compute layer runs in: proof that int8 kernels are used
            counts = Counter(
                str(op.get_rt_info()["runtimePrecision"].astype(str))
                for op in c.get_runtime_model().get_ordered_ops()
                if str(op.get_rt_info()["layerType"].astype(str)) not in _PLUMBING
            )
            info["layer_precisions"] = dict(sorted(counts.items()))
        except Exception:
            pass
        return info

    def infer(self, feed):
        # Zero-copy inputs and one copy out: the cheapest call path (on the digits CNN it
        # takes ~0.22 ms where request.infer(dict) takes ~0.30 ms).
        req = self.request
        # The tensors share the arrays' memory: keep every array (a copy made here included) alive until
        # infer() has run. Without this, a copied input could be freed first and the model read garbage
        # (seen as a flaky OCR check on the PP-OCR models, tests/test_real_models.py).
        keep = []
        for name, arr in feed.items():
            # np.asarray(order="C") keeps a 0-d input 0-d (np.ascontiguousarray makes it [1] and OpenVINO
            # refuses the shape: found by the operator coverage on BlackmanWindow / BitCast scalars).
            a = np.asarray(arr, order="C")
            keep.append(a)
            req.set_tensor(name, self._tensor(a, shared_memory=True))
        req.infer()
        del keep
        return {name: req.get_output_tensor(i).data.copy() for name, i in self._outputs}

    def deactivate(self) -> None:
        self.request = None
        self.compiled = None


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _device_name(core: Any, device: str) -> str | None:
    try:
        return str(core.get_property(device, "FULL_DEVICE_NAME"))
    except Exception:
        return None


# -- an IR file as a source (``edgeconv bench model.xml``, ``edgeconv inspect model.xml``) --
def load_ir(source: Any, *, input_shapes: dict[str, tuple[int, ...]] | None = None,
            options: dict | None = None) -> Model:
    """An OpenVINO IR on disk as a ``Model`` of form ``openvino``, its IO contract read from it."""
    import openvino as ov

    path = Path(source)
    if not path.is_file():
        raise BadInput("no such file", file=path, stage="import")
    try:
        m = ov.Core().read_model(str(path))
    except Exception as exc:
        raise BadInput(f"is not a readable OpenVINO IR: {' '.join(str(exc).split())[:200]}", file=path,
                       stage="import") from None

    def spec(port: Any, role: str) -> TensorSpec:
        ps = port.get_partial_shape()
        dims = tuple(d.get_length() if d.is_static else ("batch" if i == 0 else f"{role}_dim{i}")
                     for i, d in enumerate(ps)) if ps.rank.is_static else ()
        dtype = port.get_element_type().to_dtype().name
        return TensorSpec(port.get_any_name(), dims, dtype)

    io = IOContract(tuple(spec(p, "input") for p in m.inputs), tuple(spec(p, "output") for p in m.outputs))
    if input_shapes:
        io = io.pinned(input_shapes, file=str(path))
    return Model(form="openvino", io=io, path=path, meta={"openvino": ov.__version__.split("-")[0]})


def tuning(threads: int | None = None) -> list[dict[str, Any]]:
    """The runner settings ``--precision auto`` may time for an IR (the first: the artifact's own). Only settings
    that change speed, not numbers: the precision hint changes the arithmetic and is a candidate of its own. Thread
    counts are searched only when the user gave none and there is more than one core."""
    out: list[dict[str, Any]] = [{}, {"performance_hint": "throughput"}]
    if threads is None and (os.cpu_count() or 1) > 1:
        out.append({"inference_num_threads": 1})
    return out
