"""Run ONNX models with ONNX Runtime (CPU execution provider unless told otherwise)."""

from __future__ import annotations

import os
from typing import Any

from edgeconv.plugin import BadInput, Runner, quiet_onnxruntime

LEVELS = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC", "extended": "ORT_ENABLE_EXTENDED", "all": "ORT_ENABLE_ALL"}


class OrtRunner(Runner):
    name = "onnxruntime"
    modules = ("onnxruntime",)

    def __init__(self, model, threads: int | None = None, graph_optimization: str = "all",
                 providers: list[str] | None = None, intra_op_threads: int | None = None,
                 execution_mode: str = "sequential", **options: Any) -> None:
        super().__init__(model, **options)
        if execution_mode not in ("sequential", "parallel"):
            raise BadInput(f"execution_mode {execution_mode!r} must be sequential or parallel", stage="verify")
        self.execution_mode = execution_mode
        # --threads of this run wins over the threads stored with the artifact (--precision auto's choice)
        self.threads = threads or intra_op_threads
        self.level = graph_optimization or "all"
        self.providers = providers or ["CPUExecutionProvider"]
        self.session = None

    def activate(self) -> None:
        import onnxruntime as ort

        quiet_onnxruntime()
        so = ort.SessionOptions()
        if self.level not in LEVELS:
            raise BadInput(f"graph_optimization {self.level!r} must be one of {', '.join(LEVELS)}", stage="verify")
        so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, LEVELS[self.level])
        so.execution_mode = (ort.ExecutionMode.ORT_PARALLEL if self.execution_mode == "parallel"
                             else ort.ExecutionMode.ORT_SEQUENTIAL)
        if self.threads:
            so.intra_op_num_threads = int(self.threads)
        so.log_severity_level = 3
        src = self.model.path if self.model.path is not None else self.model.obj.SerializeToString()
        try:
            self.session = ort.InferenceSession(str(src) if isinstance(src, os.PathLike) else src, so, providers=self.providers)
        except Exception as exc:
            text = " ".join(str(exc).split())[:300]
            raise BadInput(f"onnxruntime cannot load the model: {text}", file=self.model.path, stage="verify") from None
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.info = {
            "runtime": f"onnxruntime {ort.__version__}",
            "device": "cpu" if self.providers == ["CPUExecutionProvider"] else ",".join(self.providers),
            "providers": self.session.get_providers(),
            "threads": self.threads or os.cpu_count(),
            "graph_optimization": self.level,
            "execution_mode": self.execution_mode,
            "host": "local",
        }

    def infer(self, feed):
        out = self.session.run(None, feed)
        return dict(zip(self.output_names, out))

    def deactivate(self) -> None:
        self.session = None


def tuning(threads: int | None = None) -> list[dict[str, Any]]:
    """The settings ``--precision auto`` may time for an onnxruntime artifact (the first: its own). Thread counts
    are searched only when the user gave none and there is more than one core."""
    out: list[dict[str, Any]] = [{}, {"graph_optimization": "extended"}, {"graph_optimization": "basic"}]
    if threads is None and (os.cpu_count() or 1) > 1:
        out.append({"intra_op_threads": 1})
    return out
