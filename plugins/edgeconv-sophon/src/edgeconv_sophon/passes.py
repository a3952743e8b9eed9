"""The sophon target's precision pass: ``sophon.calibrate``, INT8 calibration with tpu-mlir's ``run_calibration`` on
the ONNX form (the rule: every transformation of a model is a pass, and calibration that yields an artifact a vendor
compiler consumes is a precision pass that hands its product on in ``job.state``).

run_calibration reads the top MLIR, so the pass runs model_transform first (``export.transform``: the exporter reuses
it from ``job.state["sophon.transform"]``, never running it again) and then run_calibration on one ``.npz`` per
calibration sample. The table goes to ``job.state["sophon.calibration_table"]`` (its path, sha256 and the calibration
figures) for model_deploy; the pass's info (the report's ``passes``) holds the same figures. The model itself is
returned unchanged: INT8 is then ``model_deploy --quantize INT8 --calibration_table``, the exporter's flag.
"""

from __future__ import annotations

from typing import Any

from .export import CALIBRATION, _calibration, _sha256, transform_of
from .tpumlir import run_calibration_args


def calibrate(model, job) -> tuple[Any, dict[str, Any]]:
    """model_transform, then run_calibration: the INT8 threshold table model_deploy consumes."""
    t = transform_of(model, job)  # kept in job.state["sophon.transform"] for the exporter
    opts = job.options
    chip = str(opts.get("chip") or "bm1684x")
    calib = _calibration(job, model.io, t.folder / "calibration")
    table = f"{t.name}_cali_table"
    method = str(opts.get("cali_method") or "")
    res = t.step(job, "run_calibration", run_calibration_args(
        mlir=t.mlir, dataset="calibration", count=calib["samples_used"], table=table, chip=chip, method=method))
    path = t.folder / table
    sha = _sha256(path)
    job.state[CALIBRATION] = {"path": str(path), "sha256": sha, "calibration": calib}
    settings = {"tool": "run_calibration", "chip": chip, "cali_method": method or "tpu-mlir's default",
                "input_num": calib["samples_used"]}
    return model, {"settings": settings, "calibration": calib, "table_sha256": sha, "tpu_mlir": t.version,
                   "seconds": round(res["seconds"], 3)}
