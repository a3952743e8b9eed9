"""ONNX -> onnxruntime at each precision, with the fidelity numbers asserted."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

import edgeconv
from edgeconv.data import sha256_path as sha256


@pytest.fixture(scope="module")
def digits_results(tmp_path_factory, digits):
    """The digits CNN converted once per precision (shared by the assertions below)."""
    out = tmp_path_factory.mktemp("digits")
    results = {}
    for precision in ("fp32", "fp16", "int8", "int8-dynamic"):
        results[precision] = edgeconv.convert(
            digits["model"], "onnxruntime", precision=precision, calibration=digits["calib"],
            data=digits["test"], output=out / precision, runs=10, memory=precision == "int8",
        )
    return results


def test_fp32_is_exact_and_accurate(digits_results, digits):
    r = digits_results["fp32"]
    rep = r.report
    assert r.exit_code == 0 and rep["verdict"]["status"] == "pass"
    f = rep["fidelity"][0]
    assert f["name"] == "logits" and f["shape"] == [540, 10] and f["shape_ok"] and f["dtype_ok"]
    assert f["max_abs"] <= 1e-5 and f["cosine"] > 0.99999
    assert rep["accuracy"]["source"] >= 0.98 and rep["accuracy"]["drop_pp"] == 0
    assert rep["passes"][0]["name"] == "onnx.simplify"
    assert rep["passes"][0]["after"]["nodes"] <= rep["passes"][0]["before"]["nodes"]
    assert rep["source"]["sha256"] == sha256(digits["model"])
    for key in ("p50", "p90", "p99", "runs"):
        assert rep["latency_ms"][key] > 0


def test_fp16_halves_the_weights_keeps_float32_io(digits_results):
    rep = digits_results["fp16"].report
    assert digits_results["fp16"].exit_code == 0
    f = rep["fidelity"][0]
    assert f["cosine"] >= 0.999 and f["sqnr_db"] >= 30 and f["dtype"] == "float32"
    assert rep["artifact"]["size_bytes"] < 0.6 * digits_results["fp32"].report["artifact"]["size_bytes"]
    proto = onnx.load(rep["artifact"]["path"])
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert any(i.data_type == onnx.TensorProto.FLOAT16 for i in proto.graph.initializer)
    assert abs(rep["accuracy"]["drop_pp"]) <= 0.5


def test_int8_static_meets_the_edge_budgets(digits_results):
    r = digits_results["int8"]
    rep = r.report
    assert r.exit_code == 0
    fp32 = digits_results["fp32"].report
    assert rep["accuracy"]["drop_pp"] <= 0.5
    assert rep["artifact"]["size_bytes"] <= 0.3 * fp32["artifact"]["size_bytes"]
    proto = onnx.load(rep["artifact"]["path"])
    ops = {n.op_type for n in proto.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    settings = rep["passes"][-1]["settings"]
    assert settings["per_channel"] and settings["activation_type"] == "uint8" and settings["weight_type"] == "int8"
    assert rep["calibration"]["kind"] == "npz" and rep["calibration"]["samples"] == 200
    assert rep["peak_rss_bytes"] > rep["memory"]["model_rss_bytes"] > 0


def test_int8_dynamic_quantizes_weights_without_calibration(digits_results):
    rep = digits_results["int8-dynamic"].report
    assert rep["fidelity"][0]["cosine"] >= 0.98
    assert abs(rep["accuracy"]["drop_pp"]) <= 1.0
    assert rep["calibration"] is None


def test_manifest_records_the_contract(digits_results, digits):
    rep = digits_results["int8"].report
    manifest = json.loads(Path(rep["artifact"]["manifest"]).read_text())
    assert manifest["schema"] == "edgeconv.manifest/1"
    assert manifest["source"]["sha256"] == sha256(digits["model"])
    assert manifest["io"]["inputs"][0]["name"] == "input"
    assert manifest["io"]["inputs"][0]["shape"] == ["batch", 1, 8, 8]
    assert manifest["calibration"]["sha256"] == sha256(digits["calib"])
    assert manifest["tools"]["onnxruntime"] and manifest["tools"]["onnxslim"]
    assert manifest["verification"]["verdict"]["status"] == "pass"
    assert sorted(p.name for p in Path(rep["artifact"]["path"]).parent.iterdir()) == [
        "digits_cnn.onnx", "manifest.json", "report.json"]


def test_verify_command_rechecks_an_artifact(digits_results, digits, cli):
    folder = Path(digits_results["int8"].report["artifact"]["path"]).parent
    res = cli("verify", str(digits["model"]), str(folder), "--data", str(digits["test"]), "--json", "--runs", "5")
    assert res.exit_code == 0, res.output
    rep = json.loads(res.stdout)
    assert rep["precision"] == "int8" and rep["accuracy"]["drop_pp"] <= 0.5


def test_int8_without_calibration_is_a_clear_error(digits, tmp_path, cli):
    res = cli("convert", str(digits["model"]), "-p", "int8", "-o", str(tmp_path / "o"))
    assert res.exit_code == 2 and "--calib" in res.stderr
    assert not (tmp_path / "o").exists()


def test_random_calibration_is_flagged(digits, tmp_path):
    r = edgeconv.convert(digits["model"], precision="int8", calibration="random", output=tmp_path / "o",
                         runs=3, memory=False)
    assert any("random" in w for w in r.report["warnings"])
    assert r.report["calibration"]["meaningful"] is False
    assert any("generated at random" in w for w in r.report["warnings"])  # --data not given either


def test_dynamic_batch_is_verified_at_a_pinned_batch(digits, tmp_path):
    r = edgeconv.convert(digits["model"], input_shapes=["input:4,1,8,8"], data=digits["test"],
                         output=tmp_path / "o", runs=3, memory=False)
    assert r.exit_code == 0
    assert r.report["source"]["io"]["inputs"][0]["shape"] == [4, 1, 8, 8]
    assert r.report["accuracy"]["samples"] == 540  # 135 batches of 4


@pytest.mark.slow
def test_resnet18_int8_fidelity(tmp_path):
    import torch

    from edgeconv.testing import refnets

    model, x = refnets.build("resnet18")
    path = tmp_path / "resnet18.onnx"
    torch.onnx.export(model, (x,), str(path), dynamo=False, opset_version=17, input_names=["input"],
                      output_names=["output"], dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}})
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "calib.npz", input=rng.standard_normal((16, 3, 224, 224), dtype=np.float32))
    np.savez(tmp_path / "data.npz", input=rng.standard_normal((8, 3, 224, 224), dtype=np.float32))
    fp32 = edgeconv.convert(path, data=tmp_path / "data.npz", output=tmp_path / "fp32", runs=5, memory=False)
    with torch.inference_mode():
        eager = model(torch.from_numpy(np.load(tmp_path / "data.npz")["input"][:1])).numpy()
    assert fp32.report["fidelity"][0]["max_abs"] <= 1e-4
    r = edgeconv.convert(path, precision="int8", calibration=tmp_path / "calib.npz", data=tmp_path / "data.npz",
                         output=tmp_path / "int8", runs=5, memory=False)
    f = r.report["fidelity"][0]
    assert r.exit_code == 0, r.report["verdict"]
    assert f["cosine"] >= 0.98 and f["sqnr_db"] >= 12
    assert r.report["artifact"]["size_bytes"] <= 0.27 * fp32.report["artifact"]["size_bytes"]
    import onnxruntime as ort

    art = ort.InferenceSession(fp32.report["artifact"]["path"]).run(None, {"input": np.load(tmp_path / "data.npz")["input"][:1]})[0]
    assert np.abs(art - eager).max() <= 1e-4
