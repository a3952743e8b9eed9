"""Run a .rknn in rknn-toolkit2's simulator: the ``rknn`` runner for verify and bench.

The simulator runs in the rknn toolchain environment, not in edgeconv's Python. It cannot run a .rknn read back
from disk (``init_runtime(target=None)`` refuses a model from ``load_rknn``), so ``activate`` starts ``bridge.py
serve`` on the build recipe the exporter kept beside the artifact (``rknn_build/recipe.json``: the same ONNX,
configuration, dataset and float16 layers, with the same toolkit version): it rebuilds the model, compares the
rebuilt file with the artifact (same size; the bytes differ only where the compiler writes host addresses) and
serves ``.npz`` requests. ``info`` records that comparison.

Everything this runner measures is *simulated*: the numbers are the toolkit simulator's, the latency is the
simulator's on this host's CPU and says nothing about the NPU's.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from edgeconv.plugin import BadInput, Runner, ToolchainFailed


def recipe_path(artifact: Path, recipe: str | None) -> Path:
    """The recipe beside the artifact; a manifest is untrusted input: the path must stay inside its folder."""
    base = artifact.parent.resolve()
    path = (base / (recipe or "rknn_build/recipe.json")).resolve()
    if base not in path.parents:
        raise BadInput(f"runner option recipe={recipe!r} points outside the artifact's folder", file=artifact,
                       stage="verify")
    if not path.is_file():
        raise BadInput("the .rknn has no build recipe beside it (rknn_build/recipe.json): the toolkit's simulator "
                       "can only run a model it builds, so this .rknn cannot be verified here (convert it again)",
                       file=artifact, stage="verify")
    return path


class SimulatorRunner(Runner):
    name = "rknn-toolkit2 simulator"

    def __init__(self, model, threads: int | None = None, platform: str = "", precision: str = "", toolkit: str = "",
                 output_names: list[str] | None = None, recipe: str | None = None,
                 input_formats: list[str] | None = None, core_mask: str = "auto", start_timeout: float = 900,
                 call_timeout: float = 600, **options: Any) -> None:
        super().__init__(model, **options)
        io = getattr(model, "io", None)
        self.output_names = list(output_names or [t.name for t in (io.outputs if io else ())])
        self.input_names = [t.name for t in (io.inputs if io else ())]
        self.platform = platform
        self.precision = precision
        self.toolkit = toolkit
        self.recipe = recipe
        self.start_timeout = start_timeout
        self.call_timeout = call_timeout
        self.worker = None

    def activate(self) -> None:
        from edgeconv.plugin import resolve_toolchain

        from .toolchain import RKNN

        path = Path(self.model.path)
        if not path.is_file():
            raise BadInput("no such .rknn file", file=path, stage="verify")
        recipe = recipe_path(path, self.recipe)
        env = resolve_toolchain(RKNN)
        work = Path(tempfile.mkdtemp(prefix="edgeconv-rknn-"))
        self.worker = env.worker(["bridge.py", "serve", str(recipe), str(path.resolve())],
                                 what="the rknn-toolkit2 simulator", cwd=work, owns_cwd=True)
        shutil.copyfile(Path(__file__).with_name("bridge.py"), work / "bridge.py")
        try:
            hello = self.worker.start(self.start_timeout)
        except ToolchainFailed as exc:
            self.deactivate()
            raise ToolchainFailed(f"the simulator did not start: {exc.cause}", file=path, stage="verify") from None
        rebuilt = hello.get("rebuilt") or {}
        why = None
        if not hello.get("ready"):
            why = f"the simulator did not start: {hello.get('error')}"
        elif not rebuilt.get("same_size"):
            why = (f"the model rebuilt from the recipe ({rebuilt.get('size')} bytes) is not the artifact "
                   f"({rebuilt.get('artifact_size')} bytes): another toolkit, or a changed recipe")
        if why:
            self.deactivate()
            raise ToolchainFailed(why, file=path, stage="verify")
        self.toolkit = hello.get("toolkit") or self.toolkit
        self.info = {
            "runtime": f"rknn-toolkit2 {self.toolkit or '?'} simulator (init_runtime(target=None))",
            "where": "simulated",
            "device": f"{self.platform or 'Rockchip NPU'} simulated on this host's CPU (not on a device)",
            "simulated": True,
            "precision": self.precision or None,
            "rebuilt_from_recipe": {**rebuilt, "recipe": str(recipe.relative_to(path.parent.resolve())),
                                    "why": "the toolkit's simulator runs only a model built in its own process"},
            "toolchain": env.describe(),
            "latency_note": "the simulator's time per call (process round trip included), not the NPU's",
            "host": "local",
        }

    def infer(self, feed):
        import numpy as np

        assert self.worker is not None and self.worker.folder is not None
        n = self.worker.calls % 2
        work = self.worker.folder
        src, dst = work / f"in{n}.npz", work / f"out{n}.npz"
        names = self.input_names or list(feed)
        np.savez(src, **{f"i{i}": np.ascontiguousarray(feed[k]) for i, k in enumerate(names)})
        try:
            reply = self.worker.request({"input": src.name, "output": dst.name}, self.call_timeout)
        except ToolchainFailed as exc:
            raise ToolchainFailed(exc.cause, file=self.model.path, stage="verify") from None
        if not reply.get("ok"):
            raise ToolchainFailed(f"the simulator failed on an inference: {reply.get('error')}", file=self.model.path,
                                  stage="verify")
        with np.load(dst) as data:
            arrays = [data[f"o{i}"] for i in range(int(reply.get("n", 0)))]
        if len(arrays) != len(self.output_names):
            raise ToolchainFailed(f"the .rknn gave {len(arrays)} outputs, the model has {len(self.output_names)}",
                                  file=self.model.path, stage="verify")
        return dict(zip(self.output_names, arrays, strict=True))

    def deactivate(self) -> None:
        w, self.worker = self.worker, None
        if w is not None:
            w.close()
