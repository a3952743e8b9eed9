"""The board half of the OpenVINO runner (docs/boards.md): runs an OpenVINO IR (``.xml`` + ``.bin``) on a board.

SELF-CONTAINED: shipped to the board by edgeconv's board agent and imported there from the board's cache; needs
only Python >= 3.8, numpy and openvino (``pip install openvino``; 2022.1 or newer). No edgeconv import, no
annotations newer than 3.8. It takes the same runner settings as ``edgeconv_openvino.runner.OVRunner``:
``device`` (CPU, GPU, NPU, ...), ``precision_hint`` (``INFERENCE_PRECISION_HINT``, f32 unless set: an "FP32" IR is
otherwise computed in bf16 on CPUs with AVX512-BF16/AMX and in f16 on GPUs), ``performance_hint``,
``num_streams``, ``inference_num_threads`` (``threads``, a run's ``--threads``, wins over it) and ``plain`` (a
plain ``compile_model`` with no properties), so a manifest's ``runner_options`` mean on the board what they mean
on the host. ``output_names`` (optional) keys the outputs in the IR's order; without it an output is keyed by its
tensor name, as on the host.

The IR's weights: the agent links the ``.bin`` beside the ``.xml`` under the artifact's own names; the half reads
it by that path explicitly (the cache's files are symlinks to content-addressed blobs). A folder holding one
``.xml`` is accepted too.

The board-half contract (``edgeconv.places.agent``): ``MODULES``, ``load(path, options) -> session`` with
``session.info``, ``session.infer(feed)`` and ``session.close()``.
"""

# ruff: noqa: UP004, UP031, UP036, B905  (runs on the board's Python >= 3.8: no f-string-only idioms, no zip(strict=))

import os
import sys

# ``import openvino`` imports its model converter, which sends a usage event through openvino_telemetry from a forked
# process (multiprocessing). On a board that fork copies the agent's reader thread's lock on standard input: the child
# hangs closing stdin and, holding the SSH channel's pipes, keeps the run from ending. A board run needs no
# converter and sends nothing: the half, imported before the runtime, turns the telemetry module off for this process
# (openvino then uses its own stub, as where openvino_telemetry is not installed).
if "openvino" not in sys.modules:
    sys.modules.setdefault("openvino_telemetry", None)

MODULES = ("openvino",)
SETTINGS = ("device", "precision_hint", "performance_hint", "num_streams", "inference_num_threads", "threads",
            "plain", "output_names")
# Layers whose runtime precision says nothing about the arithmetic (as in the host's runner).
PLUMBING = frozenset(("Const", "Input", "Output", "Parameter", "Result", "Reshape", "Reorder", "Convert"))


def _openvino():
    """(module with Core and Tensor, version): ``openvino`` (2023.1+) or ``openvino.runtime`` (2022.x)."""
    import openvino

    ov = openvino if hasattr(openvino, "Core") else __import__("openvino.runtime", fromlist=["Core"])
    ver = getattr(openvino, "__version__", None) or getattr(ov, "get_version", lambda: "unknown")()
    return ov, str(ver).split("-")[0]


def family(device):
    """``GPU.1`` -> ``GPU``; ``HETERO:GPU,CPU`` -> ``HETERO``."""
    return device.split(":")[0].split(".")[0].upper()


def available(core, device):
    have = list(core.available_devices)
    fams = set(family(h) for h in have)
    if family(device) in ("AUTO", "HETERO", "MULTI", "BATCH"):
        listed = device.split(":", 1)[1].split(",") if ":" in device else []
        return bool(have) and all(d in have or family(d) in fams for d in listed)
    return device in have or (device == family(device) and device in fams)


def compile_config(device, precision_hint, performance_hint, num_streams, threads):
    """The properties passed to ``compile_model``: those of the host's ``edgeconv_openvino.runner.compile_config``."""
    config = {"INFERENCE_PRECISION_HINT": precision_hint, "PERFORMANCE_HINT": str(performance_hint).upper()}
    if num_streams not in (None, ""):
        config["NUM_STREAMS"] = str(num_streams).upper()
    if threads and family(device) == "CPU":
        config["INFERENCE_NUM_THREADS"] = int(threads)
    return config


def _ir_files(path):
    """(xml, bin or None): the IR a path names (an ``.xml``, or a folder holding exactly one)."""
    if os.path.isdir(path):
        xmls = sorted(n for n in os.listdir(path) if n.endswith(".xml"))
        if len(xmls) != 1:
            raise ValueError("the artifact folder holds %d .xml files, not one" % len(xmls))
        path = os.path.join(path, xmls[0])
    weights = os.path.splitext(path)[0] + ".bin"
    return path, (weights if os.path.isfile(weights) else None)


def _int(value):
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


class Session(object):
    def __init__(self, path, options):
        import numpy as np

        ov, version = _openvino()
        self._np, self._tensor = np, ov.Tensor
        device = str(options.get("device") or "CPU")
        hint = str(options.get("precision_hint") or "f32")
        perf = options.get("performance_hint") or "latency"
        threads = options.get("threads") or options.get("inference_num_threads")
        plain = bool(options.get("plain"))
        core = ov.Core()
        if not available(core, device):
            raise RuntimeError("OpenVINO device %s is not available on this board (available: %s)"
                               % (device, ", ".join(core.available_devices) or "none"))
        xml, weights = _ir_files(path)
        model = core.read_model(xml, weights) if weights else core.read_model(xml)
        config = {} if plain else compile_config(device, hint, perf, options.get("num_streams"), threads)
        self.compiled = core.compile_model(model, device, config)
        self.request = self.compiled.create_infer_request()
        names = [str(n) for n in (options.get("output_names") or [])]
        ports = list(self.compiled.outputs)
        if names and len(names) != len(ports):
            raise ValueError("output_names has %d names, the IR has %d outputs" % (len(names), len(ports)))
        self.outputs = [(names[i] if names else port.get_any_name(), i) for i, port in enumerate(ports)]
        self.info = self._describe(core, device, version, None if plain else hint, threads, options)

    def _prop(self, name):
        try:
            return self.compiled.get_property(name)
        except Exception:
            return None

    def _describe(self, core, device, version, requested, threads, options):
        hint = self._prop("INFERENCE_PRECISION_HINT")
        hint = hint.to_string() if hasattr(hint, "to_string") else (str(hint) if hint is not None else None)
        perf = self._prop("PERFORMANCE_HINT")
        try:
            device_name = str(core.get_property(device, "FULL_DEVICE_NAME"))
        except Exception:
            device_name = None
        info = {
            "runtime": "openvino %s" % version,
            "device": device,
            "device_name": device_name,
            "execution_devices": [str(d) for d in (self._prop("EXECUTION_DEVICES") or [])],
            "precision_hint": hint,
            "precision_hint_requested": requested,
            "performance_hint": str(perf) if perf is not None else None,
            "streams": _int(self._prop("NUM_STREAMS")),
            "threads": _int(self._prop("INFERENCE_NUM_THREADS")) or (
                os.cpu_count() if family(device) == "CPU" else None),
            "ignored_options": sorted(k for k in options if k not in SETTINGS),
        }
        if requested is None:
            info["plain_load"] = True
        try:  # which precision each compute layer runs in (as the host's runner reports it)
            counts = {}
            for op in self.compiled.get_runtime_model().get_ordered_ops():
                rt = op.get_rt_info()
                if str(rt["layerType"].astype(str)) not in PLUMBING:
                    key = str(rt["runtimePrecision"].astype(str))
                    counts[key] = counts.get(key, 0) + 1
            info["layer_precisions"] = dict(sorted(counts.items()))
        except Exception:
            pass
        return info

    def infer(self, feed):
        # zero-copy inputs (the arrays kept alive until infer() has run) and one copy out, as on the host
        req, np = self.request, self._np
        keep = []
        for name, arr in feed.items():
            a = np.asarray(arr, order="C")  # keeps a 0-d input 0-d
            if not a.flags.writeable:  # the agent's arrays are views of its read-only payload
                a = a.copy()
            keep.append(a)
            req.set_tensor(name, self._tensor(a, shared_memory=True))
        req.infer()
        del keep
        return dict((name, req.get_output_tensor(i).data.copy()) for name, i in self.outputs)

    def close(self):
        self.request = None
        self.compiled = None


def load(path, options):
    return Session(path, options)
