"""INT8 for Ascend through AMCT (Ascend Model Compression Toolkit, ``amct_onnx``), the documented post-training flow
(Ascend/samples python/level1_single_api/9_amct/amct_onnx/resnet-101/src/resnet-101_calibration.py)::

    amct.create_quant_config(config_file=..., model_file=..., skip_layers=[...], batch_num=N,
                             activation_offset=True, config_defination=None)
    amct.quantize_model(config_file=..., model_file=..., modified_onnx_file=..., record_file=...)
    # N forward batches of calibration data through the modified model on onnxruntime (the calibration ops
    # are AMCT custom ops: newer AMCT versions hand their library as amct.AMCT_SO, the session options)
    amct.save_model(modified_onnx_file, record_file, save_path)
    # -> <save_path>_deploy_model.onnx (for ATC) and <save_path>_fake_quant_model.onnx (onnxruntime, for accuracy)

AMCT keeps state between quantize_model and save_model in the process, so the whole flow runs in one process:
in-process when ``amct_onnx`` imports here, else in another interpreter (``-O amct_python=``), running this file
as a script (it imports only numpy, onnxruntime and amct_onnx).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def quantize(model_file: str, calib_npz: str, save_prefix: str, work: str, *, skip_layers: list[str] | None = None,
             activation_offset: bool = True, batch_size: int = 1, amct: Any = None) -> dict[str, Any]:
    import numpy as np
    import onnxruntime as ort

    if amct is None:
        import amct_onnx as amct  # noqa: PLC0415 (the one place AMCT is imported)
    work_dir = Path(work)
    work_dir.mkdir(parents=True, exist_ok=True)
    with np.load(calib_npz, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    count = min(len(a) for a in arrays.values())
    batch_size = max(1, int(batch_size))
    batches = max(1, count // batch_size)
    config = work_dir / "amct_config.json"
    record = work_dir / "amct_record.txt"
    modified = work_dir / "amct_modified.onnx"
    calls = []
    amct.create_quant_config(config_file=str(config), model_file=str(model_file), skip_layers=list(skip_layers or []),
                             batch_num=batches, activation_offset=bool(activation_offset), config_defination=None)
    calls.append(f"create_quant_config(batch_num={batches}, skip_layers={list(skip_layers or [])}, "
                 f"activation_offset={bool(activation_offset)})")
    amct.quantize_model(config_file=str(config), model_file=str(model_file), modified_onnx_file=str(modified),
                        record_file=str(record))
    calls.append("quantize_model(...)")
    options = getattr(amct, "AMCT_SO", None)
    providers = ["CPUExecutionProvider"]
    session = (ort.InferenceSession(str(modified), options, providers=providers) if options is not None
               else ort.InferenceSession(str(modified), providers=providers))
    names = [i.name for i in session.get_inputs()]
    for b in range(batches):
        feed = {}
        for name in names:
            arr = arrays[name] if name in arrays else next(iter(arrays.values()))
            feed[name] = arr[b * batch_size:(b + 1) * batch_size]
        session.run(None, feed)
    calls.append(f"{batches} calibration batch(es) of {batch_size} on onnxruntime")
    amct.save_model(str(modified), str(record), str(save_prefix))
    calls.append("save_model(...)")
    deploy = Path(f"{save_prefix}_deploy_model.onnx")
    fake = Path(f"{save_prefix}_fake_quant_model.onnx")
    if not deploy.is_file():
        raise RuntimeError(f"AMCT wrote no deploy model at {deploy}")
    return {"deploy_model": str(deploy), "fake_quant_model": str(fake) if fake.is_file() else None,
            "record": str(record), "batches": batches, "batch_size": batch_size, "samples": batches * batch_size,
            "calls": calls, "amct_version": str(getattr(amct, "__version__", "?"))}


def main(argv: list[str] | None = None) -> int:
    """``python amct.py '<json>'``: the flow in another interpreter; prints the result as JSON."""
    args = json.loads((argv or sys.argv[1:])[0])
    result = quantize(**args)
    print("EDGECONV-AMCT-RESULT " + json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
