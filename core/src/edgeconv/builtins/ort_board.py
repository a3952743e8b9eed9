"""The board half of the onnxruntime runner (docs/boards.md): runs an ``.onnx`` artifact on a board.

SELF-CONTAINED: shipped to the board by edgeconv's board agent and imported there from the board's cache; needs
only Python >= 3.8, numpy and onnxruntime (any wheel: CPU, GPU, OpenVINO, QNN). No edgeconv import, no
annotations newer than 3.8. It takes the same runner settings as ``edgeconv.builtins.ort_runner.OrtRunner``
(``threads`` / ``intra_op_threads``, ``graph_optimization``, ``execution_mode``, ``providers``), so a manifest's ``runner_options``
mean on the board what they mean on the host.

The board-half contract (``edgeconv.places.agent``): ``MODULES`` (imported before the baseline memory is taken),
``load(path, options) -> session`` with ``session.info`` (a JSON-able dict), ``session.infer(feed) -> {name:
array}`` and ``session.close()``.
"""

# ruff: noqa: UP004, UP031, UP036, B905  (runs on the board's Python >= 3.8: no f-string-only idioms, no zip(strict=))

import os

MODULES = ("onnxruntime",)
LEVELS = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC", "extended": "ORT_ENABLE_EXTENDED",
          "all": "ORT_ENABLE_ALL"}
SETTINGS = ("threads", "intra_op_threads", "graph_optimization", "providers", "execution_mode")


class Session(object):
    def __init__(self, path, options):
        import onnxruntime as ort

        level = options.get("graph_optimization") or "all"
        if level not in LEVELS:
            raise ValueError("graph_optimization must be one of %s, not %r" % (", ".join(LEVELS), level))
        mode = options.get("execution_mode") or "sequential"
        if mode not in ("sequential", "parallel"):
            raise ValueError("execution_mode must be sequential or parallel, not %r" % (mode,))
        threads = options.get("threads") or options.get("intra_op_threads")
        providers = [str(p) for p in (options.get("providers") or ["CPUExecutionProvider"])]
        so = ort.SessionOptions()
        so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, LEVELS[level])
        so.execution_mode = ort.ExecutionMode.ORT_PARALLEL if mode == "parallel" else ort.ExecutionMode.ORT_SEQUENTIAL
        if threads:
            so.intra_op_num_threads = int(threads)
        so.log_severity_level = 3
        self.session = ort.InferenceSession(path, so, providers=providers)
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.info = {
            "runtime": "onnxruntime %s" % ort.__version__,
            "device": "cpu" if providers == ["CPUExecutionProvider"] else ",".join(providers),
            "providers": self.session.get_providers(),
            "threads": int(threads) if threads else os.cpu_count(),
            "graph_optimization": level,
            "execution_mode": mode,
            "ignored_options": sorted(k for k in options if k not in SETTINGS),
        }

    def infer(self, feed):
        return dict(zip(self.output_names, self.session.run(None, feed)))

    def close(self):
        self.session = None


def load(path, options):
    return Session(path, options)
