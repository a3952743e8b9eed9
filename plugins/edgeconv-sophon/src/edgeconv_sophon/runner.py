"""Run a .bmodel in tpu-mlir's cmodel simulator: the ``bmodel`` runner for verify and bench.

The simulator runs in the sophon toolchain environment, not in edgeconv's Python: ``activate`` copies the bmodel and
``bridge.py`` into a temporary folder and starts the bridge there (a long-lived ``model_runner`` that loads the bmodel
once; ``per_call=True`` calls ``model_runner.model_inference`` for every feed instead), ``infer`` writes the feed as
``.npz``, the bridge runs the bmodel on it and writes the outputs as ``.npz``. The bmodel's outputs come back in its order and are named from the artifact's
contract (tpu-mlir renames them, e.g. ``logits`` -> ``logits_Gemm`` or ``logits_Gemm_f32``).

Everything this runner measures is *simulated*: the numbers are the cmodel's (bit-accurate to the chip, per Sophgo),
the latency is the simulator's on this host's CPU and says nothing about the device's.

A manifest may set only ``chip``, ``quantize``, ``tpu_mlir`` and ``output_names`` (``hooks.RUNNER_OPTIONS``; the core
refuses anything else): the bridge's interpreter is the sophon toolchain environment on this host, never a path from
a manifest; ``per_call`` and the timeouts are for the caller (the toolchain test), not for a manifest.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from edgeconv.plugin import BadInput, Runner, ToolchainFailed


class CmodelRunner(Runner):
    name = "tpu-mlir cmodel"

    def __init__(self, model, threads: int | None = None, chip: str = "", output_names: list[str] | None = None,
                 tpu_mlir: str = "", quantize: str = "", start_timeout: float = 300, call_timeout: float = 600,
                 per_call: bool = False, **options: Any) -> None:
        super().__init__(model, **options)
        io = getattr(model, "io", None)
        self.output_names = list(output_names or [t.name for t in (io.outputs if io else ())])
        self.chip = chip
        self.version = tpu_mlir
        self.quantize = quantize
        self.start_timeout = start_timeout
        self.call_timeout = call_timeout
        self.per_call = per_call
        self.worker = None
        self.bmodel_names: list[str] = []

    def activate(self) -> None:
        from edgeconv.plugin import resolve_toolchain

        from .toolchain import SOPHON

        path = Path(self.model.path)
        if not path.is_file():
            raise BadInput("no such .bmodel file", file=path, stage="verify")
        env = resolve_toolchain(SOPHON)
        work = Path(tempfile.mkdtemp(prefix="edgeconv-sophon-"))
        self.worker = env.worker(["bridge.py", "model.bmodel", *(["--per-call"] if self.per_call else [])],
                                 what="the tpu-mlir cmodel simulator", cwd=work, owns_cwd=True)
        shutil.copyfile(Path(__file__).with_name("bridge.py"), work / "bridge.py")
        # model_runner writes a context folder beside the bmodel: a copy in the scratch folder, not in the output
        shutil.copyfile(path, work / "model.bmodel")
        try:
            hello = self.worker.start(self.start_timeout)
        except ToolchainFailed as exc:
            self.deactivate()
            raise ToolchainFailed(f"the simulator did not start: {exc.cause}", file=path, stage="verify") from None
        if not hello.get("ready"):
            error = hello.get("error")
            self.deactivate()
            raise ToolchainFailed(f"the simulator did not start: {error}", file=path, stage="verify")
        self.version = self.version or (env.state.get("packages", {}).get("tpu-mlir", {}).get("version") or "")
        self.info = {
            "runtime": f"tpu-mlir {self.version or '?'} cmodel simulator (model_runner, "
                       f"{'per call' if self.per_call else 'bmodel loaded once'})",
            "where": "simulated",
            "device": f"{self.chip or 'Sophon'} simulated on this host's CPU (not on a device)",
            "simulated": True,
            "quantize": self.quantize or None,
            "toolchain": env.describe(),
            "latency_note": "the simulator's time per call (process round trip included), not the device's",
            "host": "local",
        }

    def infer(self, feed):
        import numpy as np

        assert self.worker is not None and self.worker.folder is not None
        n = self.worker.calls % 2
        work = self.worker.folder
        src, dst = work / f"in{n}.npz", work / f"out{n}.npz"
        np.savez(src, **{k: np.ascontiguousarray(v) for k, v in feed.items()})
        try:
            reply = self.worker.request({"input": src.name, "output": dst.name}, self.call_timeout)
        except ToolchainFailed as exc:
            raise ToolchainFailed(exc.cause, file=self.model.path, stage="verify") from None
        if not reply.get("ok"):
            raise ToolchainFailed(f"the simulator failed on an inference: {reply.get('error')}", file=self.model.path,
                                  stage="verify")
        names = reply.get("names") or []
        self.bmodel_names = names
        with np.load(dst) as data:
            arrays = [data[f"o{i}"] for i in range(len(names))]
        if len(arrays) != len(self.output_names):
            raise ToolchainFailed(f"the bmodel has {len(arrays)} outputs ({', '.join(names)}), the model "
                                  f"{len(self.output_names)}", file=self.model.path, stage="verify")
        return dict(zip(self.output_names, arrays, strict=True))

    def deactivate(self) -> None:
        w, self.worker = self.worker, None
        if w is not None:
            w.close()
