"""The ``sophon`` exporter: ONNX -> (IR 9) -> model_transform -> model_deploy -> .bmodel.

Every tpu-mlir step runs in the sophon toolchain environment (``edgeconv toolchain install sophon``, or the setting
``EDGECONV_TOOLCHAIN_SOPHON``) as a subprocess through the core's worker (``ToolchainEnv.run``: isolated, no shell, a
timeout); files cross the boundary: the ONNX, the test input and calibration samples as ``.npz``, the MLIR, the tables
and the bmodel. Without the environment nothing runs and the conversion stops before any work with the one-line error
naming ``edgeconv toolchain install sophon`` (exit 3).

INT8 calibration is the ``sophon.calibrate`` pass (``passes.py``): it needs the top MLIR, so it runs model_transform
(``transform``) and run_calibration, and hands both on in ``job.state`` -- the transform (``"sophon.transform"``),
which the exporter reuses instead of running model_transform again, and the calibration table
(``"sophon.calibration_table"``), which model_deploy consumes. Precision that is a flag of model_deploy
(``--quantize F32/F16/BF16``, the quantize table of ``-O keep_float``) is the exporter's.

The output folder holds ``<stem>.bmodel``, ``tpu_mlir.json`` (the tool versions, every command line, tpu-mlir's own
comparisons), the calibration table (INT8) and the quantize table (``-O keep_float``), and ``bmrt_context/`` (the
reference input and output ``bmrt_test --context_dir`` checks on a device, and ``final.mlir`` and
``tensor_location.json``, which say where each tensor of the bmodel lives: what tpu-mlir's debugger needs to dump them,
``edgeconv debug layers``, ``trace.py``). Verification runs the bmodel in the cmodel simulator (``runner.py``): the
report says "simulated".
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import shlex
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeconv.plugin import BadInput, ToolchainFailed

from . import tpumlir
from .hooks import CHIPS, QUANTIZE
from .toolchain import TPU_MLIR_VERSION

# onnx 1.14 / onnxruntime 1.16 in the environment read IR <= 9; IR 9 covers default-domain opsets <= 19 (onnx 1.14).
MAX_IR = 9
MAX_OPSET = 19

# model_deploy's context files that map the bmodel's tensors (tpu-mlir's debugger, tdb): kept for `debug layers`
CONTEXT_DEBUG = ("final.mlir", "tensor_location.json")
TRANSFORM = "sophon.transform"  # job.state key: the Transform model_transform made (pass -> exporter)
CALIBRATION = "sophon.calibration_table"  # job.state key: the table run_calibration wrote, its sha256 and figures


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def prepare_ir(proto: Any, warn=lambda msg: None) -> dict[str, Any]:
    """Lower ``ir_version`` to 9 in place when the opsets allow (what onnxruntime 1.16 loads); else refuse."""
    ir = int(proto.ir_version)
    opset = max((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), default=0)
    info = {"ir_version": ir, "opset": opset}
    if opset > MAX_OPSET:
        raise BadInput(f"the model uses ONNX opset {opset}; tpu-mlir {TPU_MLIR_VERSION} (onnx 1.14, onnxruntime 1.16) "
                       f"reads opset <= {MAX_OPSET}: export it again at opset {MAX_OPSET} or lower", stage="export")
    if ir > MAX_IR:
        proto.ir_version = MAX_IR
        info["ir_version_for_tpu_mlir"] = MAX_IR
        warn(f"ONNX IR version {ir} lowered to {MAX_IR} for tpu-mlir (onnxruntime 1.16 cannot load IR {ir}; opset "
             f"{opset} is valid in IR {MAX_IR})")
    return info


def static_shapes(io, warn=lambda msg: None) -> list[list[int]]:
    """One static shape per input: a dynamic batch axis becomes 1; any other dynamic axis needs --input-shape."""
    shapes = []
    for t in io.inputs:
        dims = []
        for i, d in enumerate(t.shape):
            if isinstance(d, int) and d > 0:
                dims.append(d)
            elif i == 0:
                dims.append(1)
                warn(f"input {t.name}: dynamic batch axis {d!r} built as 1 (a bmodel has static shapes; give "
                     f"--input-shape {t.name}:N,... for another batch)")
            else:
                raise BadInput(f"input {t.name} has the dynamic axis {d!r} at position {i}; a bmodel has static "
                               f"shapes: give --input-shape {t.name}:" + ",".join(
                                   str(x) if isinstance(x, int) else "N" for x in t.shape), stage="export")
        shapes.append(dims)
    return shapes


def artifact_contract(io, shapes: list[list[int]]):
    from dataclasses import replace

    from edgeconv.plugin import IOContract

    batch = shapes[0][0] if shapes and shapes[0] else 1
    outs = tuple(replace(t, shape=tuple(d if isinstance(d, int) else (batch if i == 0 else 1)
                                        for i, d in enumerate(t.shape)), dtype="float32")
                 for t in io.outputs)
    ins = tuple(replace(t, shape=tuple(s)) for t, s in zip(io.inputs, shapes, strict=True))
    return IOContract(ins, outs, dict(io.preprocessing))


def _test_input(job, io, shapes: list[list[int]], path: Path) -> dict[str, Any]:
    """The sample tpu-mlir's own comparisons run on: the first of --data, else one generated from the contract."""
    import numpy as np

    from edgeconv.plugin import load_dataset

    ds = load_dataset(job.data, io, what="--data", seed=job.seed, random_samples=1)
    feed = next(iter(ds.feeds(io)), (None, None))[0]
    if feed is None:
        raise BadInput("no sample to test with in --data", stage="export")
    arrays = {}
    for t, shape in zip(io.inputs, shapes, strict=True):
        x = np.asarray(feed[t.name])
        if list(x.shape) != list(shape):
            raise BadInput(f"input {t.name}: a sample of --data has the shape {list(x.shape)}, the bmodel is built "
                           f"for {shape}", stage="export")
        arrays[t.name] = x
    np.savez(path, **arrays)
    return {"kind": ds.kind, "source": ds.source}


def _calibration(job, io, folder: Path) -> dict[str, Any]:
    """One ``.npz`` per calibration sample (run_calibration --dataset reads a folder of them)."""
    import numpy as np

    ds = job.calibration()
    folder.mkdir(parents=True, exist_ok=True)
    n = 0
    for feed, _sl in ds.feeds(io, limit=int(job.options.get("calib_limit") or 100)):
        np.savez(folder / f"{n:05d}.npz", **{k: np.asarray(v, dtype=np.float32) if np.asarray(v).dtype.kind == "f"
                                             else np.asarray(v) for k, v in feed.items()})
        n += 1
    if n == 0:
        raise BadInput("the calibration set has no sample of the model's batch size", stage="optimize")
    return {**ds.describe(), "samples_used": n}


def _keep_log_at(job, name: str) -> Path | None:
    out = getattr(job, "output", None)
    return None if out is None else Path(out).parent / f"{Path(out).name}.{name}.log"


def sophon_device() -> dict[str, Any]:
    """A Sophon PCIe card or SoC here? (libsophon's device nodes and bmrt_test)."""
    nodes = sorted(glob.glob("/dev/bm-sophon*")) + sorted(glob.glob("/dev/bmdev-ctl"))
    bmrt = shutil.which("bmrt_test") or next((p for p in glob.glob("/opt/sophon/libsophon-*/bin/bmrt_test")), None)
    return {"device_nodes": nodes, "bmrt_test": bmrt, "present": bool(nodes and bmrt)}


def device_check(context: Path, bmodel: Path, timeout: float) -> dict[str, Any]:
    """``bmrt_test --context_dir DIR`` on a Sophon host: runs ``DIR/compilation.bmodel`` on the device with
    ``input_ref_data.dat`` and compares with ``output_ref_data.dat`` (tpu-mlir's reference). Written from libsophon's
    documentation; never run on a device by edgeconv's tests (no device here). Through the core's worker: no shell,
    a scratch working folder, an explicit environment, a timeout."""
    from edgeconv.plugin import EdgeconvError

    from .children import run_child

    dev = sophon_device()
    command = ["bmrt_test", "--context_dir", context.name]
    if not dev["present"]:
        return {"ran": False, "command": shlex.join(command), "reason": "no Sophon device here (no /dev/bm-sophon* "
                "or no bmrt_test): the bmodel was checked in the cmodel simulator only"}
    shutil.copyfile(bmodel, context / "compilation.bmodel")
    try:
        done = run_child([dev["bmrt_test"], "--context_dir", str(context)], timeout=timeout, what="bmrt_test")
    except EdgeconvError as exc:
        return {"ran": False, "command": shlex.join(command), "reason": f"bmrt_test could not run: {exc.cause}"}
    finally:
        (context / "compilation.bmodel").unlink(missing_ok=True)
    # bmrt_test compares with output_ref_data.dat by default when it is in the folder (accuracy_f 0.01) and exits
    # non-zero on a mismatch (libsophon docs, "bmrt_test Use and bmodel Verification").
    return {"ran": True, "command": shlex.join(command), "returncode": done.returncode,
            "passed": done.returncode == 0, "tail": done.tail(3, 400)}


# -- model_transform, shared by the sophon.calibrate pass and the exporter ---------------------------------------
@dataclass
class Transform:
    """What model_transform made in ``folder``: the top MLIR and its reference outputs on the test input."""

    source: Any  # the ONNX proto it was made from (the exporter reuses a Transform of the model it is given)
    env: Any  # the ToolchainEnv
    folder: Path
    name: str
    proto: Any  # the copy given to tpu-mlir (IR lowered)
    shapes: list[list[int]]
    test_input: Path
    top: str  # the top MLIR's outputs on the test input (model_deploy's reference)
    version: str
    details: dict[str, Any] = field(default_factory=dict)
    steps: list[dict[str, Any]] = field(default_factory=list)

    @property
    def mlir(self) -> str:
        return f"{self.name}.mlir"

    def step(self, job, tool: str, args: list[str]) -> dict[str, Any]:
        """Run one tpu-mlir tool in ``folder`` and record it (the record goes into tpu_mlir.json)."""
        job.status(f"tpu-mlir {tool}")
        res = tpumlir.run_tool(self.env, tool, args, workdir=self.folder, log=self.folder / f"{tool}.log",
                               timeout=_timeout(job), keep_log_at=_keep_log_at(job, tool), warn=job.warn)
        self.steps.append({"tool": tool, "args": res["args"],
                           "seconds": round(res["seconds"] + res.get("first_seconds", 0), 3),
                           "compares": res["compares"], "compare_failed": bool(res.get("compare_failed"))})
        return res


def _timeout(job) -> float | None:
    return float(job.options.get("timeout") or 0) or None


def transform(model, job) -> Transform:
    """``model_transform`` of ``model`` (ONNX -> top MLIR, compared with onnxruntime on the test input), in a scratch
    folder of this build."""
    import onnx

    from edgeconv.plugin import resolve_toolchain

    from .toolchain import SOPHON

    env = resolve_toolchain(SOPHON)  # before any work: missing -> exit 3 naming `edgeconv toolchain install sophon`
    opts = job.options
    folder = Path(job.scratch) / f"tpu_mlir_{job.precision}"
    folder.mkdir(parents=True, exist_ok=True)
    name = "".join(c if c.isalnum() or c in "_-" else "_" for c in job.stem) or "model"
    source = model.obj if model.obj is not None else onnx.load(str(model.path))
    proto = onnx.ModelProto.FromString(source.SerializeToString())  # a copy: never change the source
    details: dict[str, Any] = {"onnx": prepare_ir(proto, job.warn)}
    shapes = static_shapes(model.io, job.warn)
    onnx_path = folder / f"{name}.onnx"
    onnx.save(proto, str(onnx_path))
    test_in = folder / f"{name}_in.npz"
    details["test_input"] = _test_input(job, model.io, shapes, test_in)
    t = Transform(source, env, folder, name, proto, shapes, test_in, f"{name}_top_outputs.npz", "", details)
    res = t.step(job, "model_transform", tpumlir.model_transform_args(
        name=name, onnx=onnx_path.name, mlir=t.mlir, shapes=shapes, test_input=test_in.name, test_result=t.top,
        mean=str(opts.get("mean") or ""), scale=str(opts.get("scale") or ""),
        pixel_format=str(opts.get("pixel_format") or ""), channel_format=str(opts.get("channel_format") or "")))
    t.version = tpumlir.version_in(res["output"]) or _env_version(env)
    return t


def transform_of(model, job) -> Transform:
    """The Transform ``sophon.calibrate`` left in ``job.state`` for this very model, else a new one."""
    t = job.state.get(TRANSFORM)
    if isinstance(t, Transform) and model.obj is not None and t.source is model.obj:
        return t
    t = transform(model, job)
    job.state[TRANSFORM] = t
    return t


def export(model, job) -> Any:
    from edgeconv.plugin import Artifact

    opts = job.options
    chip = str(opts.get("chip") or "bm1684x")
    if chip not in CHIPS:
        raise BadInput(f"-O chip={chip}: one of {', '.join(CHIPS)}", stage="options")
    quantize = QUANTIZE[job.precision]
    t = transform_of(model, job)  # model_transform: run by sophon.calibrate already for INT8, reused here
    workdir, stem = Path(job.workdir), job.stem
    details: dict[str, Any] = {"chip": chip, "quantize": quantize, **t.details}

    files: list[Path] = []
    cali_table = None
    if quantize == "INT8":
        cal = job.state.get(CALIBRATION)
        if not cal:
            raise ToolchainFailed("INT8 needs the calibration table of the sophon.calibrate pass, which did not run "
                                  "(the target names it for int8); the plugin is broken", stage="export")
        cali_table = workdir / "calibration_table"
        shutil.copyfile(cal["path"], cali_table)
        files.append(cali_table)
        details["calibration"] = {**cal["calibration"], "table": cali_table.name, "table_sha256": cal["sha256"]}

    qtable = _quantize_table(job, t, quantize, workdir, details)
    if qtable is not None:
        files.append(qtable)
    bmodel_name = f"{t.name}_{chip}_{quantize.lower()}.bmodel"
    have_top = (t.folder / t.top).is_file()
    t.step(job, "model_deploy", tpumlir.model_deploy_args(
        mlir=t.mlir, quantize=quantize, chip=chip, bmodel=bmodel_name,
        calibration_table=str(cali_table) if cali_table else None, quantize_table=str(qtable) if qtable else None,
        asymmetric=bool(opts.get("asymmetric")) and quantize == "INT8", test_input=t.test_input.name,
        test_reference=t.top if have_top else None, opt=int(opts.get("opt") or 0)))
    built = t.folder / bmodel_name
    if not built.is_file():
        raise ToolchainFailed(f"model_deploy reported success but wrote no {bmodel_name}", stage="export")
    bmodel = workdir / f"{stem}.bmodel"
    shutil.copyfile(built, bmodel)
    files.insert(0, bmodel)
    files += _context(job, t, bmodel, bmodel_name, workdir, details)

    details["tpu_mlir"] = {"version": t.version, "toolchain": t.env.describe(), "steps": t.steps}
    record = workdir / "tpu_mlir.json"
    record.write_text(json.dumps({
        "schema": "edgeconv.sophon.tpu_mlir/1", "tpu_mlir": t.version, "toolchain": t.env.describe(), "chip": chip,
        "quantize": quantize, "steps": t.steps,
        "commands": [shlex.join([s["tool"] + ".py", *s["args"]]) for s in t.steps],
        **{k: v for k, v in details.items() if k not in ("tpu_mlir", "chip", "quantize")},
    }, indent=2, default=str) + "\n")
    files.append(record)
    details["tpu_mlir_compare"] = [c for s in t.steps for c in s["compares"]]
    job.warn("sophon: fidelity, latency and memory were measured in tpu-mlir's cmodel simulator on this host "
             "(simulated), not on a Sophon device")
    tools = {"tpu_mlir": t.version, "chip": chip, "quantize": quantize}
    if cali_table is not None:
        tools["calibration_table_sha256"] = details["calibration"]["table_sha256"]
    return Artifact(
        path=bmodel, form="bmodel", io=artifact_contract(model.io, t.shapes), files=files, tools=tools,
        details=details,
        # exactly the settings the runner declares (hooks.RUNNER_OPTIONS): data, nothing to execute
        runner_options={"chip": chip, "quantize": quantize, "tpu_mlir": t.version,
                        "output_names": [t_.name for t_ in model.io.outputs]},
    )


def _quantize_table(job, t: Transform, quantize: str, workdir: Path, details: dict[str, Any]) -> Path | None:
    """``-O keep_float`` -> tpu-mlir's quantize table (model_deploy --quantize_table): ops kept in F32."""
    keep = tuple(job.options.get("keep_float") or ())
    if not keep:
        return None
    if quantize == "F32":
        job.warn("-O keep_float has no effect at fp32 (every layer is F32 already)")
        return None
    ops = tpumlir.keep_float_ops(keep, t.proto, (t.folder / t.mlir).read_text(errors="replace"), job.warn)
    qtable = workdir / "quantize_table.txt"
    qtable.write_text(tpumlir.qtable_text(ops))
    details["keep_float"] = {"nodes": list(keep), "ops": [op for op, _ in ops], "table": qtable.name}
    return qtable


def _context(job, t: Transform, bmodel: Path, bmodel_name: str, workdir: Path, details: dict[str, Any]) -> list[Path]:
    """model_deploy's context folder, kept as ``bmrt_context/``: bmrt_test's reference data (and, on a Sophon host,
    the device check with it) and the debugger's tensor map (``final.mlir``, ``tensor_location.json``: trace.py)."""
    files = []
    context = workdir / "bmrt_context"
    ctx_src = t.folder / bmodel_name[: -len(".bmodel")]
    for ref in ("input_ref_data.dat", "output_ref_data.dat", *CONTEXT_DEBUG):
        if (ctx_src / ref).is_file():
            context.mkdir(exist_ok=True)
            shutil.copyfile(ctx_src / ref, context / ref)
            files.append(context / ref)
    have_refs = (context / "input_ref_data.dat").is_file()
    if job.options.get("device_check", True) and have_refs:
        details["device_check"] = device_check(context, bmodel, _timeout(job) or 600)
    else:
        details["device_check"] = {"ran": False, "reason": "-O device_check=false" if have_refs
                                   else "model_deploy wrote no bmrt_test reference data"}
    return files


def _env_version(env) -> str:
    pkg = (env.state.get("packages") or {}).get("tpu-mlir", {}).get("version")
    if pkg:
        return pkg
    res = env.run(["-c", tpumlir.VERSION_MAIN], timeout=120)
    return res["output"].strip().splitlines()[-1] if res["ok"] and res["output"].strip() else "unknown"


def doctor() -> dict[str, Any]:
    """Cheap facts for ``edgeconv doctor`` (the core adds the toolchain environment's state and check)."""
    dev = sophon_device()
    return {"chips": list(CHIPS), "tpu_mlir_pinned": TPU_MLIR_VERSION,
            "sophon_device": dev["present"], "bmrt_test": dev["bmrt_test"],
            "verify": "cmodel simulator (simulated)" if not dev["present"] else "cmodel simulator; bmrt_test on device",
            "setting": os.environ.get("EDGECONV_TOOLCHAIN_SOPHON") or None}
