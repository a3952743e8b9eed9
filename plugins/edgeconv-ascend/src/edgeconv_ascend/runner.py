"""Run a .om: the ``om`` runner for verify and bench, through Huawei's ais_bench.

Two ways, as ais_bench offers them (Ascend/tools ais-bench_workload/tool/ais_bench):

- in-process (``runner=python``, the default when ``ais_bench`` imports here):
  ``ais_bench.infer.interface.InferSession(device_id, model_path)``, ``get_inputs()`` / ``get_outputs()``,
  ``infer(feeds, mode='static')`` -> numpy arrays in output order, ``set_dynamic_batchsize`` / ``set_dynamic_hw`` /
  ``set_dynamic_dims`` for models built with gears, ``free_resource()`` / ``finalize()``;
- a process per inference (``runner=cli``): ``python3 -m ais_bench --model m.om --input a.npy,b.npy --output DIR
  --output_dirname run --outfmt NPY --device N --loop 1 --warmup_count 0`` (+ ``--dymBatch N`` / ``--dymHW h,w`` /
  ``--dymDims "name:shape;..."``); outputs are ``<first input file stem>_<index>.npy`` in ``DIR/run``. Its latency
  includes starting Python and loading the model on every call: the report says so.

Outputs come back in the .om's order and are named from the artifact's contract (ATC renames them internally).
With AIPP the core feeds uint8 pixels in the model's channel order; the runner builds the buffer the .om takes
(camera order, crop canvas, YUV420SP) from the AIPP record (``aipp.om_input``). Without an NPU nothing runs: the
runner says so (exit 3) instead of failing inside ACL.

A manifest is untrusted input: its ``runner_options`` may hold only the settings declared in ``hooks.RUNNER_OPTIONS``
(device, mode, names, layouts, AIPP record, gears; the core refuses anything else). The interpreter that runs
``-m ais_bench`` is never taken from a manifest: it is ``$EDGECONV_AIS_BENCH_PYTHON`` on this host, else
``python3`` on PATH, run isolated (``-I``: ais_bench and aclruntime must be installed in it, not on PYTHONPATH)
through the core's worker with a timeout. A build kit's ``command`` is only shown.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from edgeconv.plugin import BadInput, Runner, ToolchainFailed, ToolchainMissing

from . import aipp as aipp_mod
from . import cann


class AisBenchRunner(Runner):
    name = "ais_bench"
    modules = ()

    MODES = ("auto", "python", "cli")
    CALL_TIMEOUT = 600.0  # seconds one `python -m ais_bench` inference may take (it loads the model every time)

    def __init__(self, model, threads: int | None = None, device: int = 0, runner: str = "auto",
                 input_names: list[str] | None = None,
                 output_names: list[str] | None = None, aipp: dict[str, Any] | None = None,
                 dynamic: dict[str, str] | None = None, input_layouts: list[str | None] | None = None,
                 prepared_only: bool = False, command: str = "",
                 soc_version: str = "", **options: Any) -> None:
        super().__init__(model, **options)
        self.device = int(device or 0)
        self.mode = runner or "auto"
        if self.mode not in self.MODES:
            raise BadInput(f"runner {self.mode!r} is not one of {', '.join(self.MODES)}", file=model.path,
                           stage="verify")
        self.python = ais_bench_python()
        io = getattr(model, "io", None)
        self.input_names = list(input_names or [t.name for t in (io.inputs if io else ())])
        self.output_names = list(output_names or [t.name for t in (io.outputs if io else ())])
        self.aipp = aipp or ((io.preprocessing or {}).get("aipp") if io else None)
        self.dynamic = dict(dynamic or {})
        self.layouts = list(input_layouts or [])
        self.prepared_only = prepared_only
        self.command = command
        self.soc_version = soc_version
        self.session = None
        self._tmp: tempfile.TemporaryDirectory | None = None
        self._calls = 0

    # -- activate -------------------------------------------------------------------------------------------------
    def activate(self) -> None:
        path = Path(self.model.path)
        if self.prepared_only or path.suffix == ".json":
            raise ToolchainMissing(f"{path.parent} holds an ATC kit (the ONNX for ATC and atc.json), not an .om: "
                                   "nothing to run until it is built", file=path, stage="verify",
                                   hint=f"on a host with CANN: {self.command or 'sh atc.sh'}")
        if not path.is_file():
            raise BadInput("no such .om file", file=path, stage="verify")
        here, why = cann.can_run_here({"cli": self.mode == "cli"})
        if not here:
            raise ToolchainMissing(why.split(": the .om")[0] + ": the .om cannot run here", file=path, stage="verify",
                                   hint=cann.FIX_NPU)
        use_python = self.mode == "python" or (self.mode == "auto" and cann.ais_bench()["module"])
        if use_python:
            try:
                from ais_bench.infer.interface import InferSession
            except Exception as exc:  # noqa: BLE001 - a broken aclruntime, missing CANN libraries...
                raise ToolchainMissing(f"ais_bench does not import here ({type(exc).__name__}: {exc})", file=path,
                                       stage="verify", hint=cann.FIX_AIS_BENCH) from None
            self.session = InferSession(self.device, str(path))
            self.mode = "python"
            self._set_dynamic_names()
        else:
            self.mode = "cli"
            self._tmp = tempfile.TemporaryDirectory(prefix="edgeconv-ais-")
        self.info = {
            "runtime": "ais_bench InferSession (in-process)" if self.mode == "python" else
                       f"ais_bench CLI ({self.python} -I -m ais_bench, a process per inference)",
            "device": f"npu:{self.device}" + (f" {self.soc_version}" if self.soc_version else ""),
            "host": "local",
            **({"latency_includes": "process start and model load on every call"} if self.mode == "cli" else {}),
            **({"aipp": self.aipp.get("input_format")} if self.aipp else {}),
        }

    def _set_dynamic_names(self) -> None:
        try:
            names = [i.name for i in self.session.get_inputs()]
        except Exception:  # noqa: BLE001
            return
        # The .om may carry extra inputs (ascend_mbatch_shape_data for gears); feeds follow the contract's names.
        self.om_inputs = names

    # -- infer ------------------------------------------------------------------------------------------------------
    def _arrays(self, feed: dict[str, Any]) -> list[Any]:
        import numpy as np

        arrays = []
        for i, name in enumerate(self.input_names):
            if name not in feed:
                raise BadInput(f"the .om needs input {name!r}", stage="verify")
            x = np.ascontiguousarray(feed[name])
            if i == 0 and self.aipp:
                x = aipp_mod.om_input(x, self.aipp)
            arrays.append(x)
        return arrays

    def _gear_args(self, feed: dict[str, Any]) -> tuple[str, str] | None:
        if not self.dynamic:
            return None
        kind, _ = next(iter(self.dynamic.items()))
        first = feed[self.input_names[0]]
        if kind == "dynamic_batch_size":
            return ("batch", str(int(first.shape[0])))
        if kind == "dynamic_image_size":
            nhwc = bool(self.aipp) or (self.layouts[:1] == ["NHWC"])
            h, w = (first.shape[1], first.shape[2]) if nhwc else (first.shape[2], first.shape[3])
            return ("hw", f"{int(h)},{int(w)}")
        return ("dims", ";".join(f"{n}:{','.join(str(d) for d in feed[n].shape)}" for n in self.input_names))

    def infer(self, feed: dict[str, Any]) -> dict[str, Any]:
        arrays = self._arrays(feed)
        gear = self._gear_args(feed)
        outs = self._infer_python(arrays, gear) if self.mode == "python" else self._infer_cli(arrays, gear)
        if len(outs) < len(self.output_names):
            raise ToolchainFailed(f"the .om returned {len(outs)} output(s); the contract names "
                                  f"{len(self.output_names)}", stage="verify")
        return {name: outs[i] for i, name in enumerate(self.output_names)}

    def _infer_python(self, arrays: list[Any], gear: tuple[str, str] | None) -> list[Any]:
        mode = "static"
        if gear is not None:
            kind, value = gear
            if kind == "batch":
                self.session.set_dynamic_batchsize(value)
            elif kind == "hw":
                h, w = (int(v) for v in value.split(","))
                self.session.set_dynamic_hw(w, h)
            else:
                mode = "dymdims"
        return list(self.session.infer(arrays, mode=mode))

    def _infer_cli(self, arrays: list[Any], gear: tuple[str, str] | None) -> list[Any]:
        import numpy as np

        self._calls += 1
        base = Path(self._tmp.name)
        run = f"run{self._calls}"
        files = []
        for i, x in enumerate(arrays):
            f = base / f"in{self._calls}_{i}.npy"
            np.save(f, x)
            files.append(str(f))
        from .children import python_argv, run_child

        args = ["--model", str(self.model.path), "--input", ",".join(files), "--output", str(base),
                "--output_dirname", run, "--outfmt", "NPY", "--device", str(self.device), "--loop", "1",
                "--warmup_count", "0"]
        if gear is not None:
            kind, value = gear
            args += {"batch": ["--dymBatch", value], "hw": ["--dymHW", value], "dims": ["--dymDims", value]}[kind]
        done = run_child(python_argv(self.python, module="ais_bench", args=args), timeout=self.CALL_TIMEOUT,
                         what="ais_bench")
        if done.returncode != 0:
            raise ToolchainFailed(f"ais_bench failed (exit {done.returncode}): {done.tail(4, 400)}", stage="verify")
        stem = Path(files[0]).stem
        out_dir = base / run
        outs = []
        i = 0
        while (out_dir / f"{stem}_{i}.npy").is_file():
            outs.append(np.load(out_dir / f"{stem}_{i}.npy"))
            i += 1
        if not outs:
            raise ToolchainFailed(f"ais_bench wrote no outputs in {out_dir}", stage="verify")
        return outs

    def deactivate(self) -> None:
        if self.session is not None:
            for name in ("free_resource", "finalize"):
                fn = getattr(self.session, name, None)
                if fn is not None:
                    try:
                        fn()
                    except Exception:  # noqa: BLE001
                        pass
                    break
            self.session = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None


def ais_bench_python() -> str:
    """The interpreter for ``runner=cli``, from this host only: ``$EDGECONV_AIS_BENCH_PYTHON``, else ``python3``."""
    return os.environ.get(cann.AIS_BENCH_ENV) or shutil.which("python3") or "python3"
