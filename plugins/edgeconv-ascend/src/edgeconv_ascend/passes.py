"""The ascend target's precision pass: ``ascend.amct``, INT8 through AMCT on the ONNX form (the rule: every
transformation of a model is a registered pass; the exporter only compiles what it is given with ATC).

The target names it for ``-p int8`` (``Target.precision_passes``). It calibrates the model with AMCT
(``amct.py``: in-process when ``amct_onnx`` imports here, else in the interpreter ``-O amct_python`` names, run as
an isolated child), checks AMCT's fake-quant model against the float model on onnxruntime (CPU) -- the INT8 recipe's
cost before ATC -- and returns AMCT's *deploy* model (its AscendQuant/AscendDequant ops are what ATC compiles to
INT8). ``keep_float`` (and ``-O amct_skip_layers``) nodes stay float (AMCT ``skip_layers``). What the exporter needs
of it goes through ``job.state["ascend.amct"]``: the float model (for the gear check on onnxruntime, which cannot
load AMCT's ops) and AMCT's version (the artifact's ``tools``). Precision that is only a flag of ATC
(``--precision_mode``: fp16, fp32, mixed) stays the exporter's.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path
from typing import Any

from edgeconv.plugin import BadInput, ToolchainFailed, ToolchainMissing, keep_float_option

from . import cann

AMCT = "ascend.amct"  # job.state key: {"float_model": path, "amct_version": ..., "deploy_model": path}


def amct_python(opts: dict[str, Any]) -> str:
    """The interpreter that runs AMCT when it does not import here: ``-O amct_python`` (the user's command line),
    else ``$EDGECONV_AMCT_PYTHON`` (this host's environment); "" = in-process."""
    return str(opts.get("amct_python") or os.environ.get("EDGECONV_AMCT_PYTHON") or "")


def amct(model, job) -> tuple[Any, dict[str, Any]]:
    """INT8 with AMCT: the deploy model for ATC, and the fake-quant model's fidelity on CPU in the info."""
    import numpy as np
    import onnx

    from edgeconv.plugin import Model

    opts, scratch = job.options, Path(job.scratch)
    python = amct_python(opts)
    in_process = importlib.util.find_spec("amct_onnx") is not None if not python else False
    if not python and not in_process:
        raise ToolchainMissing("INT8 for Ascend is not available here: it needs AMCT (amct_onnx), which is not "
                               "installed", stage="optimize", hint=cann.FIX_AMCT)
    calib = job.calibration()
    feeds = [feed for feed, _ in calib.feeds(model.io, int(opts.get("calib_limit") or 300))]
    if not feeds:
        raise BadInput("the calibration set holds no full batch for the model", stage="optimize")
    names = [t.name for t in model.io.inputs]
    calib_npz = scratch / "_amct_calib.npz"
    np.savez(calib_npz, **{n: np.concatenate([f[n] for f in feeds]) for n in names})
    float_path = scratch / f"{job.stem}.float.onnx"
    onnx.save(model.obj, str(float_path))
    work = scratch / "amct"
    settings = {
        # keep_float (ONNX node names) stays float in AMCT too, not only in ATC's --keep_dtype
        "skip_layers": list(dict.fromkeys([*(opts.get("amct_skip_layers") or ()), *keep_float_option(opts)])),
        "activation_offset": bool(opts.get("amct_activation_offset", True)),
        "batch_size": int(feeds[0][names[0]].shape[0]) if feeds[0][names[0]].ndim else 1,
    }
    args = {"model_file": str(float_path), "calib_npz": str(calib_npz), "save_prefix": str(work / job.stem),
            "work": str(work), **settings}
    job.status("INT8: AMCT calibration")
    result = _in_process(args) if in_process else _in_child(python, args, timeout=int(opts.get("timeout") or 0) or None)
    deploy = scratch / f"{job.stem}.deploy.onnx"
    shutil.copyfile(result["deploy_model"], deploy)
    verification = _verify_fake_quant(job, float_path, result.get("fake_quant_model"), model, calib)
    job.state[AMCT] = {"float_model": str(float_path), "amct_version": result.get("amct_version"),
                       "deploy_model": str(deploy)}
    proto = onnx.load(str(deploy))
    info = {"settings": {**settings, "batches": result.get("batches")}, "where": result["where"],
            "amct_version": result.get("amct_version"), "samples": result.get("samples"),
            "batch_size": result.get("batch_size"), "calls": result.get("calls"), "verification": verification}
    return Model(form="onnx", io=model.io, path=deploy, obj=proto, meta=dict(model.meta)), info


def _in_process(args: dict[str, Any]) -> dict[str, Any]:
    from . import amct as flow

    try:
        result = flow.quantize(**args)
    except Exception as exc:  # noqa: BLE001 - AMCT's own failure, one line
        raise ToolchainFailed(f"AMCT failed: {type(exc).__name__}: {' '.join(str(exc).split())[:300]}",
                              stage="optimize") from None
    return {**result, "where": "in-process"}


def _in_child(python: str, args: dict[str, Any], *, timeout: float | None) -> dict[str, Any]:
    """AMCT's flow in another interpreter: ``python -I amct.py '<json>'`` through the core's worker (isolated, a
    scratch working folder, an explicit environment, the target's timeout)."""
    import json

    from . import amct as flow
    from .children import python_argv, run_child

    argv = python_argv(os.path.expanduser(python), script=flow.__file__, args=[json.dumps(args)])
    try:
        done = run_child(argv, timeout=timeout, what=f"AMCT ({python})")
    except ToolchainMissing as exc:
        raise ToolchainMissing(f"-O amct_python={python} cannot run: {exc.cause}", stage="optimize",
                               hint=cann.FIX_AMCT) from None
    except ToolchainFailed as exc:
        raise ToolchainFailed(exc.cause, stage="optimize") from None
    line = next((ln for ln in reversed(done.stdout.splitlines()) if ln.startswith("EDGECONV-AMCT-RESULT ")), None)
    if done.returncode != 0 or line is None:
        raise ToolchainFailed(f"AMCT ({python}) failed (exit {done.returncode}): {done.tail(4, 400)}",
                              stage="optimize")
    return {**json.loads(line.split(" ", 1)[1]), "where": python}


def _verify_fake_quant(job, float_path: Path, fake: str | None, model, calib) -> dict[str, Any]:
    """AMCT's fake-quant model against the float model on onnxruntime (CPU): the INT8 recipe's cost, before ATC."""
    if not fake:
        return {"checked": False, "reason": "AMCT wrote no fake-quant model"}
    from edgeconv.plugin import Model, check_models

    data = job.data
    if data is None:
        data = {k: v for k, v in calib.arrays.items()}
        if calib.labels is not None:
            data["labels"] = calib.labels
        note = "the calibration set (in-sample)"
    else:
        note = str(data)
    try:
        ver = check_models(Model("onnx", model.io, path=float_path), Model("onnx", model.io, path=Path(fake)),
                           data=data, precision="int8", seed=job.seed)
    except Exception as exc:  # noqa: BLE001 - e.g. AMCT custom ops plain onnxruntime cannot load
        return {"checked": False, "reason": f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}"}
    ok = ver["pass"]
    if not ok:
        job.warn("the AMCT fake-quant model fails the int8 thresholds on CPU before ATC: the .om will not do better; "
                 "keep sensitive layers in float with -O keep_float=... (or -O amct_skip_layers=...)")
    return {"checked": True, "runtime": "onnxruntime (CPU)", "data": note, "pass": ok,
            "fidelity": ver["fidelity"], "accuracy": ver["accuracy"]}
