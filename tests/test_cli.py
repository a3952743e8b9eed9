"""The CLI as a user meets it: demo, inspect, bench, doctor, plugins, and error lines."""

from __future__ import annotations

import json

import numpy as np
import onnx
from onnx import TensorProto, helper

from edgeconv.verification.metrics import compare, thresholds_for


def test_demo_json_meets_the_anchors(cli, tmp_path):
    res = cli("demo", "--json", "-o", str(tmp_path), "--runs", "10")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["schema"] == "edgeconv.demo/1"
    by = {(r["target"], r["precision"]): r for r in doc["results"]}
    fp32, int8 = by[("onnxruntime", "fp32")], by[("onnxruntime", "int8")]
    assert fp32["accuracy"]["artifact"] >= 0.98
    assert int8["accuracy"]["drop_pp"] <= 0.5
    assert int8["artifact"]["size_bytes"] <= 0.3 * fp32["artifact"]["size_bytes"]
    assert all(r["schema"] == "edgeconv.report/1" and r["verdict"]["status"] == "pass" for r in doc["results"])


def test_demo_table(cli, tmp_path):
    res = cli("demo", "-o", str(tmp_path), "--runs", "5")
    assert res.exit_code == 0
    assert "onnxruntime" in res.stdout and "int8" in res.stdout and "%" in res.stdout


def test_inspect_shows_contract_ops_and_target_support(cli, digits):
    res = cli("inspect", str(digits["model"]), "--json")
    assert res.exit_code == 0, res.output
    info = json.loads(res.stdout)
    assert info["io"]["inputs"][0] == {"name": "input", "shape": ["batch", 1, 8, 8], "dtype": "float32", "layout": "NCHW"}
    assert info["io"]["outputs"][0]["name"] == "logits"
    assert info["ops"]["Conv"] == 3 and info["parameters"] > 50_000
    assert info["targets"]["onnxruntime"]["status"] == "supported"
    text = cli("inspect", str(digits["model"])).stdout
    assert "IO contract" in text and "Conv x3" in text


def _unknown_op_model(path):
    node = helper.make_node("FancyOp", ["x"], ["y"], domain="com.example", name="fancy_1")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)])
    onnx.save(model, path)


def test_precheck_lists_unsupported_nodes(cli, tmp_path):
    path = tmp_path / "fancy.onnx"
    _unknown_op_model(path)
    info = json.loads(cli("inspect", str(path), "--json").stdout)
    assert info["targets"]["onnxruntime"]["status"] == "unsupported"
    assert info["targets"]["onnxruntime"]["unsupported"][0]["node"] == "fancy_1"
    res = cli("convert", str(path), "-o", str(tmp_path / "o"))
    assert res.exit_code == 4
    assert "fancy_1 (FancyOp)" in res.stderr and "precheck" in res.stderr
    assert not (tmp_path / "o").exists()


def test_bench_reports_percentiles_and_memory(cli, digits):
    res = cli("bench", str(digits["model"]), "--runs", "20", "--json")
    assert res.exit_code == 0, res.output
    b = json.loads(res.stdout)
    lat = b["latency_ms"]
    assert 0 < lat["p10"] <= lat["p50"] <= lat["p90"] <= lat["p99"]
    assert b["peak_rss_bytes"] > b["memory"]["model_rss_bytes"] > 0
    assert b["runtime"]["runtime"].startswith("onnxruntime")


def test_doctor_and_plugins(cli):
    doc = json.loads(cli("doctor", "--json").stdout)
    assert doc["targets"]["onnxruntime"]["status"] == "ready"
    assert "CPUExecutionProvider" in doc["targets"]["onnxruntime"]["details"]["providers"]
    plugs = json.loads(cli("plugins", "--all", "--json").stdout)
    assert {"edgeconv.builtins.onnx", "edgeconv.builtins.onnxruntime"} <= {p["name"] for p in plugs}


def test_target_option_validation(cli, digits, tmp_path):
    res = cli("convert", str(digits["model"]), "-O", "per_chanel=false", "-o", str(tmp_path / "o"))
    assert res.exit_code == 2 and "did you mean 'per_channel'" in res.stderr
    res = cli("convert", str(digits["model"]), "-O", "activation_type=int4", "-o", str(tmp_path / "o"))
    assert res.exit_code == 2 and "must be one of" in res.stderr
    res = cli("convert", str(digits["model"]), "-p", "int4", "-o", str(tmp_path / "o"))
    assert res.exit_code == 2 and "does not support precision 'int4'" in res.stderr


def test_metrics_catch_nan_shape_and_drift():
    ref = np.random.default_rng(0).standard_normal((8, 10)).astype(np.float32)
    t = thresholds_for("fp32")
    assert compare("y", ref, ref.copy(), t)["pass"]
    bad = ref.copy()
    bad[0, 0] = np.nan
    r = compare("y", ref, bad, t)
    assert not r["pass"] and r["nan_or_inf"] == 1
    assert not compare("y", ref, ref[:4], t)["shape_ok"]
    noisy = ref + 0.05 * np.random.default_rng(1).standard_normal(ref.shape).astype(np.float32)
    r = compare("y", ref, noisy, t)
    assert not r["pass"] and 20 < r["sqnr_db"] < 40  # fine for int8, not for fp32
    assert compare("y", ref, noisy, thresholds_for("int8"))["pass"]
    flipped = ref[:, ::-1].copy()
    assert compare("y", ref, flipped, thresholds_for("int8"))["topk_agreement"]["top1"] < 0.5
