"""INT8 by explicit quantization: the QDQ model TensorRT expects, made and verified on CPU.

Checked on the files themselves (not only on what the plugin reports): every Q/DQ zero point
is INT8 0, weights are INT8 with one scale per output channel, biases stay float; then the QDQ
model runs on onnxruntime against the float model: the digits CNN on its real labels (drop
<= 0.5 pp) and ResNet-18 (cosine/SQNR within the int8 thresholds).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, numpy_helper

sys.path.insert(0, str(Path(__file__).parent))
from edgeconv_tensorrt.quantize import modelopt_command  # noqa: E402
from trt_testutil import write_script  # noqa: E402

import edgeconv  # noqa: E402


def qdq_facts(path: Path) -> dict:
    m = onnx.load(str(path))
    inits = {i.name: i for i in m.graph.initializer}
    consumers = {}
    for n in m.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    facts = {"zero_points": [], "weights": [], "activation_scales": [], "float_biases": 0, "int32_dq": 0}
    for n in m.graph.node:
        if n.op_type not in ("QuantizeLinear", "DequantizeLinear"):
            continue
        zp = inits[n.input[2]]
        facts["zero_points"].append((TensorProto.DataType.Name(zp.data_type), numpy_helper.to_array(zp)))
        scale = numpy_helper.to_array(inits[n.input[1]])
        x = inits.get(n.input[0])
        if n.op_type == "DequantizeLinear" and x is not None:
            if x.data_type == TensorProto.INT32:
                facts["int32_dq"] += 1
                continue
            w = numpy_helper.to_array(x)
            axis = next((a.i for a in n.attribute if a.name == "axis"), 1)
            user = consumers[n.output[0]][0]
            facts["weights"].append({"op": user.op_type, "dtype": w.dtype, "shape": w.shape, "axis": axis,
                                     "scales": scale.size, "range": (int(w.min()), int(w.max()))})
        elif n.op_type == "QuantizeLinear":
            facts["activation_scales"].append(scale.size)
    for n in m.graph.node:
        if n.op_type in ("Conv", "Gemm") and len(n.input) > 2 and n.input[2] in inits:
            facts["float_biases"] += inits[n.input[2]].data_type == TensorProto.FLOAT
    return facts


def accuracy(path: Path, x: np.ndarray, labels: np.ndarray) -> float:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    batch = sess.get_inputs()[0].shape[0]
    step = batch if isinstance(batch, int) else len(x)
    preds = np.concatenate([sess.run(None, {name: x[i:i + step]})[0].argmax(-1) for i in range(0, len(x), step)])
    return float((preds == labels).mean())


def test_digits_qdq_is_symmetric_per_channel_and_keeps_accuracy(digits, tmp_path, trt_plugin):
    out = tmp_path / "o"
    r = edgeconv.convert(digits["model"], "tensorrt", precision="int8", calibration=digits["calib"],
                         data=digits["test"], output=out, options={"prepare_only": True, "qdq_data": str(digits["test"]),
                                                                   "qdq_limit": 540}, memory=False)
    assert r.exit_code == 3, r.report["verdict"]
    qdq = out / "digits_cnn.qdq.onnx"
    facts = qdq_facts(qdq)
    assert facts["zero_points"] and all(t == "INT8" and not z.any() for t, z in facts["zero_points"])
    convs = [w for w in facts["weights"] if w["op"] == "Conv"]
    assert len(convs) == 3 and all(w["dtype"] == np.int8 and w["axis"] == 0 and w["scales"] == w["shape"][0] > 1
                                   for w in convs)
    assert all(-127 <= lo and hi <= 127 for w in facts["weights"] for lo, hi in [w["range"]])  # symmetric range
    assert all(size == 1 for size in facts["activation_scales"])  # per-tensor activations
    assert facts["int32_dq"] == 0 and facts["float_biases"] == 4
    # Accuracy on the real labels, computed here from the files with a default onnxruntime session.
    test = np.load(digits["test"])
    src = accuracy(digits["model"], test["input"], test["labels"])
    q = accuracy(qdq, test["input"], test["labels"])
    assert (src - q) * 100 <= 0.5, (src, q)
    # ... and what the tensorrt.qdq pass reports from its own check (graph optimisation off: Q/DQ as written).
    passes = {p["name"]: p for p in r.report["passes"]}
    assert [p["name"] for p in r.report["passes"]][-2:] == ["tensorrt.prepare", "tensorrt.qdq"]
    qdq = passes["tensorrt.qdq"]
    assert qdq["kind"] == "precision" and qdq["form"] == "onnx"
    v = qdq["verification"]
    assert v["pass"] and v["accuracy"]["samples"] == 540 and v["accuracy"]["drop_pp"] <= 0.5
    assert v["fidelity"][0]["cosine"] >= 0.98 and v["fidelity"][0]["sqnr_db"] >= 12
    summary = qdq["summary"]
    assert summary["all_zero_points_zero"] and summary["per_channel_weights"] == 4 and summary["per_tensor_weights"] == 0
    assert qdq["settings"]["extra_options"] == {
        "ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False,
        "OpTypesToExcludeOutputQuantization": ["Conv", "ConvTranspose", "Gemm", "MatMul"]}
    # the exporter built from the pass's model, and the not-built reason carries the pass's CPU figures
    assert "INT8 QDQ model on CPU vs float" in r.report["verdict"]["reason"]
    manifest = __import__("json").loads((out / "manifest.json").read_text())
    assert {p["name"]: p for p in manifest["passes"]}["tensorrt.qdq"]["settings"]["symmetric"] is True


@pytest.mark.slow
def test_resnet18_qdq_fidelity_on_cpu(tmp_path, trt_plugin):
    import torch

    from edgeconv.testing import refnets

    model, x = refnets.build("resnet18")
    path = tmp_path / "resnet18.onnx"
    torch.onnx.export(model, (x,), str(path), dynamo=False, opset_version=17, input_names=["input"],
                      output_names=["output"], dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}})
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "calib.npz", input=rng.standard_normal((8, 3, 224, 224), dtype=np.float32))
    np.savez(tmp_path / "val.npz", input=rng.standard_normal((6, 3, 224, 224), dtype=np.float32))
    r = edgeconv.convert(path, "tensorrt", precision="int8", calibration=tmp_path / "calib.npz", output=tmp_path / "o",
                         options={"prepare_only": True, "qdq_data": str(tmp_path / "val.npz")}, memory=False)
    assert r.exit_code == 3
    v = {p["name"]: p for p in r.report["passes"]}["tensorrt.qdq"]["verification"]
    f = v["fidelity"][0]
    # cosine and SQNR: the int8 thresholds; top-1 on random inputs has near-tied logits (docs/fidelity.md)
    assert f["cosine"] >= 0.98 and f["sqnr_db"] >= 12 and f["topk_agreement"]["top5"] == 1.0
    assert v["data"]["samples"] == 6 and v["thresholds"]["cosine"] == 0.98
    facts = qdq_facts(tmp_path / "o" / "resnet18.qdq.onnx")
    assert sum(w["op"] == "Conv" for w in facts["weights"]) == 20
    assert all(w["scales"] == w["shape"][0] for w in facts["weights"] if w["op"] == "Conv")
    assert all(not z.any() for _, z in facts["zero_points"])


# -- NVIDIA Model Optimizer, through an isolated interpreter ---------------------------------------
def test_modelopt_command_line():
    argv = modelopt_command("/venv/bin/python", Path("m.onnx"), Path("q.onnx"), Path("c.npz"), "entropy", ["fc"])
    assert argv == ["/venv/bin/python", "-I", "-m", "modelopt.onnx.quantization", "--onnx_path=m.onnx", "--quantize_mode=int8",
                    "--calibration_data_path=c.npz", "--calibration_method=entropy", "--calibration_eps", "cpu",
                    "--output_path=q.onnx", "--nodes_to_exclude", "fc"]


FAKE_MODELOPT = """
import argparse, sys
# the arguments of modelopt/onnx/quantization/__main__.py that edgeconv passes
ap = argparse.ArgumentParser()
ap.add_argument("-m")
ap.add_argument("--onnx_path", required=True)
ap.add_argument("--quantize_mode", choices=["fp8", "int8", "int4"])
ap.add_argument("--calibration_method", choices=["max", "entropy", "awq_clip", "rtn_dq"])
ap.add_argument("--calibration_data_path")
ap.add_argument("--calibration_eps", nargs="+")
ap.add_argument("--output_path")
ap.add_argument("--nodes_to_exclude", nargs="+", default=[])
a = ap.parse_args(sys.argv[1:])
import numpy as np
from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
data = np.load(a.calibration_data_path)
feeds = iter([{"input": data["input"][i:i + 1]} for i in range(len(data["input"]))])
class R:
    def get_next(self):
        return next(feeds, None)
quantize_static(a.onnx_path, a.output_path, R(), quant_format=QuantFormat.QDQ, per_channel=True,
                activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                extra_options={"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False})
print("fake modelopt wrote", a.output_path)
"""


def _convert_with(python, digits, tmp_path, cli):
    return cli("convert", str(digits["model"]), "--to", "tensorrt", "-p", "int8", "--calib", str(digits["calib"]),
               "-o", str(tmp_path / "o"), "--json", "--no-memory", "-O", "prepare_only=true", "-O", "quantizer=modelopt",
               "-O", "calib_limit=40", "-O", f"qdq_data={digits['test']}", "-O", "qdq_limit=100",
               *(["-O", f"modelopt_python={python}"] if python else []))


def test_modelopt_missing_interpreter_is_exit_3_with_the_recipe(digits, tmp_path, cli, trt_plugin):
    res = _convert_with(None, digits, tmp_path, cli)
    assert res.exit_code == 3 and "nvidia-modelopt" in res.stderr and "modelopt_python" in res.stderr
    assert not (tmp_path / "o").exists()


def test_modelopt_failure_is_exit_4_naming_the_cause(digits, tmp_path, cli, trt_plugin):
    py = write_script(tmp_path / "python", 'echo "ModuleNotFoundError: No module named modelopt" >&2; exit 1\n')
    res = _convert_with(py, digits, tmp_path, cli)
    assert res.exit_code == 4 and "ModelOpt ONNX PTQ failed (exit 1)" in res.stderr and "No module named" in res.stderr


def test_modelopt_output_is_verified_like_any_qdq_model(digits, tmp_path, cli, trt_plugin):
    fake = tmp_path / "modelopt.py"
    fake.write_text(FAKE_MODELOPT)
    # an isolated child: `python -I -m modelopt...` (anything else is refused by this stand-in interpreter)
    py = write_script(tmp_path / "python", '[ "$1 $2" = "-I -m" ] || { echo "not isolated: $*" >&2; exit 9; }\n'
                                           f'shift 3; exec "{sys.executable}" "{fake}" -m x "$@"\n')
    res = _convert_with(py, digits, tmp_path, cli)
    assert res.exit_code == 3, res.output
    import json

    qdq = {p["name"]: p for p in json.loads(res.stdout)["passes"]}["tensorrt.qdq"]
    assert qdq["settings"]["quantizer"] == "modelopt" and qdq["settings"]["calibration_samples"] == 40
    assert qdq["settings"]["argv"][1:4] == ["-I", "-m", "modelopt.onnx.quantization"]
    assert qdq["summary"]["all_zero_points_zero"] and qdq["verification"]["pass"]
    assert qdq["verification"]["accuracy"]["drop_pp"] <= 1.0
