"""Run a .bmodel in tpu-mlir's cmodel simulator: the ``bmodel`` runner for verify and bench.

The simulator runs in the sophon toolchain environment, not in edgeconv's Python: ``activate`` copies the bmodel and
``bridge.py`` into a temporary folder and starts the bridge there (a long-lived ``model_runner`` that loads the bmodel
once; ``per_call=True`` calls ``model_runner.model_inference`` for every feed instead), ``infer`` writes the feed as
``.npz``, the bridge runs the bmodel on it and writes the outputs as ``.npz``. The bmodel's outputs come back in its order and are named from the artifact's
contract (tpu-mlir renames them, e.g. ``logits`` -> ``logits_Gemm`` or ``logits_Gemm_f32``).

Everything this runner measures is *simulated*: the numbers are the cmodel's (bit-accurate to the chip, per Sophgo),
the latency is the simulator's on this host's CPU and says nothing about the device's.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import tempfile
import time
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
        self.proc = None
        self._tmp: tempfile.TemporaryDirectory | None = None
        self._log = None
        self._calls = 0
        self.bmodel_names: list[str] = []

    def activate(self) -> None:
        from edgeconv.plugin import resolve_toolchain

        from .toolchain import SOPHON

        path = Path(self.model.path)
        if not path.is_file():
            raise BadInput("no such .bmodel file", file=path, stage="verify")
        env = resolve_toolchain(SOPHON)
        self._tmp = tempfile.TemporaryDirectory(prefix="edgeconv-sophon-")
        work = Path(self._tmp.name)
        bridge = work / "bridge.py"
        shutil.copyfile(Path(__file__).with_name("bridge.py"), bridge)
        local = work / "model.bmodel"  # model_runner writes a context folder beside the bmodel: not in the output
        shutil.copyfile(path, local)
        self._log = open(work / "bridge.log", "w+b")
        import subprocess

        self.proc = env.popen([str(bridge), str(local), *(["--per-call"] if self.per_call else [])],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log, cwd=str(work))
        hello = self._reply(self.start_timeout, "start")
        if not hello.get("ready"):
            self._fail(f"the simulator did not start: {hello.get('error')}")
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

    def _reply(self, timeout: float, what: str) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        buf = b""
        while not buf.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0:
                self._fail(f"the simulator gave no answer to {what} within {timeout:g} s")
            ready, _, _ = select.select([fd], [], [], min(left, 1.0))
            if not ready:
                if self.proc.poll() is not None:
                    self._fail(f"the simulator process ended (exit {self.proc.returncode}) during {what}")
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                self._fail(f"the simulator process ended (exit {self.proc.wait()}) during {what}")
            buf += chunk
        try:
            return json.loads(buf.decode().strip().splitlines()[-1])
        except ValueError:
            self._fail(f"the simulator answered something else than JSON during {what}: {buf[:200]!r}")
        return {}

    def _tail(self) -> str:
        if self._log is None:
            return ""
        self._log.flush()
        self._log.seek(0)
        lines = [ln.strip() for ln in self._log.read().decode(errors="replace").splitlines() if ln.strip()]
        return " | ".join(lines[-2:])[:300]

    def _fail(self, why: str) -> None:
        tail = self._tail()
        raise ToolchainFailed(f"{why}{': ' + tail if tail else ''}", file=self.model.path, stage="verify")

    def infer(self, feed):
        import numpy as np

        assert self.proc is not None and self.proc.stdin is not None and self._tmp is not None
        self._calls += 1
        work = Path(self._tmp.name)
        src, dst = work / f"in{self._calls % 2}.npz", work / f"out{self._calls % 2}.npz"
        np.savez(src, **{k: np.ascontiguousarray(v) for k, v in feed.items()})
        self.proc.stdin.write((json.dumps({"input": str(src), "output": str(dst)}) + "\n").encode())
        self.proc.stdin.flush()
        reply = self._reply(self.call_timeout, "an inference")
        if not reply.get("ok"):
            self._fail(f"the simulator failed on an inference: {reply.get('error')}")
        names = reply.get("names") or []
        self.bmodel_names = names
        with np.load(dst) as data:
            arrays = [data[f"o{i}"] for i in range(len(names))]
        if len(arrays) != len(self.output_names):
            self._fail(f"the bmodel has {len(arrays)} outputs ({', '.join(names)}), the model {len(self.output_names)}")
        return dict(zip(self.output_names, arrays, strict=True))

    def deactivate(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None:
            try:
                if proc.stdin:
                    proc.stdin.write(b'{"op": "quit"}\n')
                    proc.stdin.close()
                proc.wait(timeout=30)
            except Exception:  # noqa: BLE001 - it is going away either way
                proc.kill()
                proc.wait()
            if proc.stdout:
                proc.stdout.close()
        if self._log is not None:
            self._log.close()
            self._log = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None
