"""The openvino target with the real OpenVINO and NNCF: every precision on the digits CNN (real
labels) and ResNet-18 (random weights), routes, pre-check, options, runner, registration."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import edgeconv
import openvino

PRECISIONS = ("fp32", "fp16", "bf16", "int8")


def bin_size(report: dict) -> int:
    return Path(report["artifact"]["path"]).with_suffix(".bin").stat().st_size


# -- digits: the shipped CNN with its labelled test split ---------------------------------------
@pytest.fixture(scope="module")
def digits_results(tmp_path_factory, digits):
    out = tmp_path_factory.mktemp("ov-digits")
    return {
        p: edgeconv.convert(digits["model"], "openvino", precision=p, calibration=digits["calib"], data=digits["test"],
                            output=out / p, runs=5, memory=p == "int8")
        for p in PRECISIONS
    }


def test_digits_fp32_is_exact_and_says_how_it_ran(digits_results):
    r = digits_results["fp32"]
    rep = r.report
    assert r.exit_code == 0, rep["verdict"]
    assert rep["route"] == ["onnx", "openvino"] and rep["target_provider"] == "edgeconv-openvino"
    f = rep["fidelity"][0]
    assert f["name"] == "logits" and f["shape_ok"] and f["dtype_ok"] and f["max_abs"] < 1e-4 and f["cosine"] > 0.99999
    assert rep["accuracy"]["source"] > 0.98 and rep["accuracy"]["drop_pp"] == 0
    run = rep["runtime"]["artifact"]
    assert run["runtime"].startswith("openvino ") and run["device"] == "CPU"
    # the hint is explicit and read back from the compiled model: fp32 really computed in f32
    assert run["precision_hint_requested"] == "f32" and run["precision_hint"] == "f32"
    assert run["performance_hint"] == "LATENCY" and run["streams"] >= 1 and run["threads"] >= 1
    assert set(run["layer_precisions"]) == {"f32"}
    files = [Path(p).name for p in rep["artifact"]["files"]]
    assert files == ["digits_cnn.xml", "digits_cnn.bin"]


def test_digits_manifest_records_versions_device_and_hint(digits_results):
    rep = digits_results["int8"].report
    manifest = json.loads(Path(rep["artifact"]["manifest"]).read_text())
    assert manifest["form"] == "openvino" and manifest["artifact"] == ["digits_cnn.xml", "digits_cnn.bin"]
    assert manifest["tools"]["openvino"] == openvino.__version__.split("-")[0]
    import importlib.metadata

    assert manifest["tools"]["nncf"] == importlib.metadata.version("nncf")
    assert manifest["details"]["device"] == "CPU" and manifest["details"]["precision_hint"] == "f32"
    assert manifest["runner_options"] == {"device": "CPU", "precision_hint": "f32", "performance_hint": "latency"}
    assert manifest["io"]["inputs"][0]["name"] == "input" and manifest["io"]["outputs"][0]["name"] == "logits"
    assert manifest["io"]["inputs"][0]["shape"][0] == "batch"  # the dynamic batch axis is kept


def test_digits_int8_keeps_accuracy_and_runs_int8_kernels(digits_results):
    r = digits_results["int8"]
    rep = r.report
    assert r.exit_code == 0, rep["verdict"]
    assert rep["accuracy"]["drop_pp"] <= 0.5, rep["accuracy"]
    q = rep["artifact"]["details"]["quantization"]
    assert q["method"] == "nncf.quantize" and q["model_type"] == "none" and q["calibration_samples"] == 200
    assert q["bias_correction"] == "full" and q["parameters"] < 100_000  # auto: a small model
    assert q["fake_quantize_nodes"] >= 4
    precisions = rep["runtime"]["artifact"]["layer_precisions"]
    assert precisions.get("u8", 0) + precisions.get("i8", 0) >= 4, precisions  # int8 kernels, not f32
    assert rep["calibration"]["samples"] == 200
    assert rep["peak_rss_bytes"] and rep["memory"]["model_rss_bytes"] > 0  # the probe ran OVRunner


def test_digits_fp16_stores_half_weights_and_computes_f32_on_cpu(digits_results):
    f32, f16 = digits_results["fp32"].report, digits_results["fp16"].report
    assert digits_results["fp16"].exit_code == 0
    assert bin_size(f16) < 0.55 * bin_size(f32)
    assert f16["artifact"]["details"]["compress_to_fp16"] is True
    assert f16["runtime"]["artifact"]["precision_hint"] == "f32"  # the documented CPU rule
    assert abs(f16["accuracy"]["drop_pp"]) <= 0.5 and f16["fidelity"][0]["cosine"] >= 0.999


def test_digits_bf16_runs_in_bf16_with_its_thresholds(digits_results):
    r = digits_results["bf16"]
    rep = r.report
    assert r.exit_code == 0, rep["verdict"]
    assert rep["runtime"]["artifact"]["precision_hint"] == "bf16"
    assert rep["thresholds"]["cosine"] == 0.995
    assert bin_size(rep) == bin_size(digits_results["fp32"].report)  # float32 weights, bf16 compute
    f = rep["fidelity"][0]
    assert 0 < f["max_abs"] and f["cosine"] > 0.999  # bf16 rounding is visible, and small
    caps = rep["artifact"]["details"]["device_capabilities"]
    if "BF16" not in caps:
        assert any("no native bf16" in w for w in rep["warnings"])


def test_digits_int8_through_the_cli_keeps_stdout_json(cli, digits, tmp_path):
    """NNCF's progress bars must not leak into --json; options show up in the report."""
    res = cli("convert", str(digits["model"]), "--to", "openvino", "-p", "int8", "--calib", str(digits["calib"]),
              "--data", str(digits["test"]), "-O", "subset_size=64", "-O", "preset=mixed", "-O", "threads=1",
              "-O", "streams=1", "-O", "performance_hint=throughput", "--runs", "5", "--no-memory",
              "-o", str(tmp_path / "out"), "--json")
    assert res.exit_code == 0, res.output
    rep = json.loads(res.stdout)
    q = rep["artifact"]["details"]["quantization"]
    assert q["calibration_samples"] == 64 and q["preset"] == "mixed"
    run = rep["runtime"]["artifact"]
    assert run["threads"] == 1 and run["streams"] == 1 and run["performance_hint"] == "THROUGHPUT"
    assert rep["accuracy"]["drop_pp"] <= 1.0

    # the manifest's runner options come back for `verify` and `bench`
    res = cli("verify", str(digits["model"]), str(tmp_path / "out"), "--data", str(digits["test"]), "--json",
              "--runs", "3")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["runtime"]["artifact"]["threads"] == 1
    res = cli("bench", str(tmp_path / "out" / "digits_cnn.xml"), "--runs", "5", "--json")  # an IR file as it is
    assert res.exit_code == 0, res.output
    bench = json.loads(res.stdout)
    assert bench["form"] == "openvino" and bench["latency_ms"]["p50"] > 0


def test_accuracy_control_with_labelled_data_and_a_budget(digits, tmp_path):
    """nncf.quantize_with_accuracy_control, driven by job.data / job.budgets (core fields to come:
    docs/targets/openvino.md); set on the Job here the way the pipeline will."""
    from edgeconv_openvino.export import export

    from edgeconv.plugin import Job
    from edgeconv.plugins import registry
    from edgeconv.report import Budgets

    model = edgeconv.load(digits["model"])
    tgt = registry().target("openvino")
    (tmp_path / "work").mkdir()
    job = Job(tgt, "int8", tgt.validate_options({"bias_correction": "fast"}), tmp_path / "work", tmp_path, "digits",
              model.io, calibration_source=digits["calib"])
    job.data, job.budgets = digits["test"], Budgets(max_accuracy_drop=0.5)
    art = export(model, job)
    q = art.details["quantization"]
    assert q["method"] == "nncf.quantize_with_accuracy_control"
    ac = q["accuracy_control"]
    assert ac["max_drop_pp"] == 0.5 and ac["validation_samples"] == 540 and ac["output"] == "logits"
    assert ac["initial_accuracy"] > 0.98 and ac["reached"]
    assert ac["initial_accuracy"] - ac["quantized_accuracy"] > 0.005  # before the restoration
    # fast bias correction alone loses 0.56 pp here (3 of 540 samples): NNCF reverts layers to float
    assert any(line.startswith("Reverted") for line in ac["log"]), ac["log"]
    test = np.load(digits["test"])
    compiled = openvino.Core().compile_model(str(art.path), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    scores = np.concatenate([compiled(test["input"][i : i + 1])[0] for i in range(len(test["labels"]))])
    assert ac["initial_accuracy"] - (scores.argmax(1) == test["labels"]).mean() <= 0.005 + 1e-9  # restored


# -- ResNet-18, random weights ------------------------------------------------------------------
@pytest.fixture(scope="module")
def resnet(tmp_path_factory):
    import torch

    from edgeconv.testing.refnets import build

    work = tmp_path_factory.mktemp("ov-resnet")
    model, example = build("resnet18")
    path = work / "resnet18.onnx"
    torch.onnx.export(model, (example,), str(path), dynamo=False, opset_version=17, input_names=["input"],
                      output_names=["output"], dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}})
    rng = np.random.default_rng(0)
    np.savez(work / "calib.npz", input=rng.standard_normal((8, 3, 224, 224), np.float32))
    np.savez(work / "data.npz", input=rng.standard_normal((4, 3, 224, 224), np.float32))
    # the exported graph is clean already: skip onnxslim (the digits conversions run it)
    results = {
        p: edgeconv.convert(path, "openvino", precision=p, calibration=work / "calib.npz", data=work / "data.npz",
                            output=work / p, runs=3, warmup=1, memory=False, skip_passes=("onnx.simplify",))
        for p in ("fp32", "fp16", "int8")
    }
    return results


@pytest.mark.slow
def test_resnet18_each_precision_passes_its_thresholds(resnet):
    for p, r in resnet.items():
        assert r.exit_code == 0, (p, r.report["verdict"])
        f = r.report["fidelity"][0]
        assert f["name"] == "output" and f["shape"] == [4, 1000] and f["shape_ok"] and f["dtype_ok"]
        assert r.report["runtime"]["artifact"]["precision_hint"] == "f32"
    assert resnet["fp32"].report["fidelity"][0]["cosine"] > 0.99999
    assert resnet["int8"].report["fidelity"][0]["cosine"] >= 0.98
    assert resnet["int8"].report["artifact"]["details"]["quantization"]["bias_correction"] == "fast"  # > 1M params


@pytest.mark.slow
def test_resnet18_sizes_and_dynamic_batch(resnet):
    f32, f16, i8 = (bin_size(resnet[p].report) for p in ("fp32", "fp16", "int8"))
    assert 0.45 < f16 / f32 < 0.55
    assert i8 / f32 <= 0.26, i8 / f32
    core = openvino.Core()
    m = core.read_model(resnet["int8"].report["artifact"]["path"])
    assert m.inputs[0].get_names() == {"input"} and m.outputs[0].get_names() == {"output"}
    assert m.inputs[0].get_partial_shape().to_string() == "[?,3,224,224]"


# -- routes -------------------------------------------------------------------------------------
def test_torch_source_goes_direct_and_via_onnx_on_request(tmp_path):
    import torch  # noqa: F401  (refnets needs it)

    from edgeconv.testing.refnets import build

    model, example = build("digits")
    direct = edgeconv.convert(model, "openvino", source_options={"example_inputs": example}, output=tmp_path / "a",
                              runs=3, memory=False)
    assert direct.exit_code == 0, direct.report["verdict"]
    assert direct.report["route"] == ["torch", "openvino"] and direct.report["passes"] == []
    conv = direct.report["artifact"]["details"]["conversion"]
    assert conv["from"] == "torch" and conv["reused_from_precheck"]  # converted once, in the pre-check
    assert direct.report["fidelity"][0]["max_abs"] < 1e-4

    via = edgeconv.convert(model, "openvino", via="onnx", source_options={"example_inputs": example},
                           output=tmp_path / "b", runs=3, memory=False)
    assert via.exit_code == 0, via.report["verdict"]
    assert via.report["route"] == ["torch", "onnx", "openvino"]
    assert via.report["artifact"]["details"]["conversion"]["from"] == "onnx"


def test_exported_program_goes_direct(tmp_path):
    import torch

    from edgeconv.testing.refnets import build

    model, example = build("digits")
    exported = tmp_path / "digits.pt2"
    torch.export.save(torch.export.export(model, (example,)), str(exported))
    r = edgeconv.convert(exported, "openvino", output=tmp_path / "o", runs=3, memory=False)
    assert r.exit_code == 0, r.report["verdict"]
    assert r.report["route"] == ["torch", "openvino"]
    assert r.report["artifact"]["details"]["conversion"]["how"] == "convert_model(ExportedProgram)"


@pytest.mark.slow
def test_keras_source_goes_direct(tmp_path):
    import keras
    import tensorflow  # noqa: F401

    inp = keras.Input((8, 8, 1), name="image")
    x = keras.layers.Conv2D(4, 3, activation="relu")(inp)
    out = keras.layers.Dense(10, name="scores")(keras.layers.GlobalAveragePooling2D()(x))
    model = keras.Model(inp, out)
    r = edgeconv.convert(model, "openvino", output=tmp_path / "k", runs=3, memory=False)
    assert r.exit_code == 0, r.report["verdict"]
    assert r.report["route"] == ["tf", "openvino"]
    m = openvino.Core().read_model(r.report["artifact"]["path"])
    assert [p.get_names() for p in m.inputs] == [{"image"}]
    assert [p.get_names() for p in m.outputs] == [{t["name"]} for t in r.report["source"]["io"]["outputs"]]
    assert m.inputs[0].get_partial_shape().to_string() == "[?,8,8,1]"  # NHWC kept, batch dynamic
    assert r.report["fidelity"][0]["max_abs"] < 1e-4


# -- pre-check ----------------------------------------------------------------------------------
def det_model(path: Path) -> Path:
    """A model OpenVINO cannot convert: ai.onnx Det (no conversion rule in its ONNX frontend)."""
    import onnx
    from onnx import TensorProto, helper

    nodes = [helper.make_node("Relu", ["input"], ["r"], name="relu0"),
             helper.make_node("Det", ["r"], ["output"], name="the_determinant")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, 3])],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch"])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def test_precheck_names_the_unsupported_onnx_node(cli, tmp_path):
    model = det_model(tmp_path / "det.onnx")
    res = cli("convert", str(model), "--to", "openvino", "-o", str(tmp_path / "out"))
    assert res.exit_code == 4
    assert "precheck" in res.stderr and "the_determinant (Det)" in res.stderr
    assert not (tmp_path / "out").exists()
    info = json.loads(cli("inspect", str(model), "--json").stdout)["targets"]["openvino"]
    assert info["status"] == "unsupported"
    assert info["unsupported"] == [{"node": "the_determinant", "op_type": "Det",
                                    "reason": "OpenVINO's ONNX frontend has no conversion rule for Det"}]


def test_precheck_names_unconvertible_torch_ops(tmp_path):
    import torch

    from edgeconv.errors import UnsupportedOperators

    class Bessel(torch.nn.Module):
        def forward(self, x):
            return torch.special.bessel_j0(torch.relu(x))

    with pytest.raises(UnsupportedOperators) as err:
        edgeconv.convert(Bessel(), "openvino", source_options={"example_inputs": torch.randn(1, 8)},
                         output=tmp_path / "o")
    assert err.value.nodes == [("aten::special_bessel_j0", "aten::special_bessel_j0")]
    assert err.value.exit_code == 4


def test_query_model_flags_what_the_device_cannot_run(monkeypatch):
    """query_model's answer (mocked: CPU runs everything here) becomes the pre-check's list."""
    import openvino.opset13 as ops
    from edgeconv_openvino.precheck import query

    x = ops.parameter([1, 4], name="x")
    relu = ops.relu(x)
    relu.set_friendly_name("act")
    model = openvino.Model([ops.result(ops.sigmoid(relu))], [x])
    sig = next(op for op in model.get_ordered_ops() if op.get_type_name() == "Sigmoid")
    sig.set_friendly_name("squash")

    class Core:
        def query_model(self, m, device):
            return {"x": "GPU", "act": "GPU"} if device == "GPU" else {"x": "GPU", "act": "GPU", "squash": "CPU"}

    found = query(Core(), model, "GPU")
    assert [(u.node, u.op_type, u.fallback) for u in found] == [("squash", "Sigmoid", False)]
    found = query(Core(), model, "HETERO:GPU,CPU")
    assert [(u.node, u.op_type, u.fallback) for u in found] == [("squash", "Sigmoid", True)]


# -- options and devices ------------------------------------------------------------------------
def test_absent_device_builds_the_ir_but_does_not_verify(digits, tmp_path):
    r = edgeconv.convert(digits["model"], "openvino", options={"device": "NPU"}, output=tmp_path / "npu", runs=3,
                         memory=False)
    if "NPU" in openvino.Core().available_devices:
        pytest.skip("this host has an NPU")
    assert r.exit_code == 3 and r.report["verdict"]["status"] == "not-run"
    assert "NPU is not on this host" in r.report["verdict"]["reason"]
    assert (tmp_path / "npu" / "digits_cnn.xml").is_file()
    assert r.report["artifact"]["details"]["precision_hint"] == "f16"  # NPUs compute in f16


def test_bad_options_are_refused_with_the_cause(cli, digits, tmp_path):
    res = cli("convert", str(digits["model"]), "--to", "openvino", "-O", "precision_hint=fp16")
    assert res.exit_code == 2 and "did you mean 'f16'" in res.stderr
    res = cli("convert", str(digits["model"]), "--to", "openvino", "-p", "int8", "--calib", str(digits["calib"]),
              "-O", "ignored_names=no_such_node", "-o", str(tmp_path / "x"), "--no-verify")
    assert res.exit_code == 2 and "no_such_node" in res.stderr
    res = cli("convert", str(digits["model"]), "--to", "openvino", "-p", "int8", "-o", str(tmp_path / "y"))
    assert res.exit_code == 2 and "--calib" in res.stderr


def test_ignored_types_keep_those_ops_float(digits, tmp_path):
    r = edgeconv.convert(digits["model"], "openvino", precision="int8", calibration=digits["calib"],
                         data=digits["test"], options={"ignored_types": "MatMul", "subset_size": 32}, output=tmp_path / "o", runs=3,
                         memory=False)
    assert r.exit_code == 0, r.report["verdict"]
    m = openvino.Core().read_model(r.report["artifact"]["path"])
    matmul = next(op for op in m.get_ordered_ops() if op.get_type_name() == "MatMul")
    assert all(matmul.input_value(i).get_node().get_type_name() != "FakeQuantize" for i in range(2))
    assert r.report["artifact"]["details"]["quantization"]["ignored_types"] == ["MatMul"]


def test_doctor_lists_versions_and_devices():
    from edgeconv_openvino.export import doctor

    info = doctor()
    assert info["openvino"] == openvino.__version__ and info["nncf"][0].isdigit()
    assert "CPU" in info["devices"] and "FP32" in info["devices"]["CPU"]["capabilities"]


def test_hint_rule():
    from edgeconv_openvino.runner import resolve_hint

    assert [resolve_hint(p, "CPU") for p in PRECISIONS] == ["f32", "f32", "bf16", "f32"]
    assert [resolve_hint(p, "GPU.1") for p in PRECISIONS] == ["f32", "f16", "bf16", "f32"]
    assert resolve_hint("fp32", "NPU") == "f16"
    assert resolve_hint("fp32", "CPU", "bf16") == "bf16"


def test_attention_graphs_are_quantized_as_transformers():
    import torch
    from edgeconv_openvino.quantize import has_attention

    from edgeconv.testing.refnets import TransformerEncoderNet

    tiny = TransformerEncoderNet(d_model=32, nhead=2, num_layers=1, dim_ff=64, seq_len=8).eval()
    assert has_attention(openvino.convert_model(tiny, example_input=(torch.randn(1, 8, 32),)))
    # and a CNN is not one: test_digits_int8_keeps_accuracy_and_runs_int8_kernels (model_type "none")


# -- registration -------------------------------------------------------------------------------
PROBE = """
import sys
from edgeconv.cli import main
sys.argv = ["edgeconv", "targets", "--json"]
try:
    main()
except SystemExit as exc:
    print("EXIT=" + str(exc.code))
print("HEAVY=" + ",".join(m for m in ("openvino", "nncf", "numpy", "torch") if m in sys.modules))
"""
HIDDEN = "import sys\nsys.modules['openvino'] = None\n" + PROBE


def _clean_env() -> dict:
    return {k: v for k, v in os.environ.items() if k not in ("EDGECONV_DISABLE_PLUGINS", "EDGECONV_LOAD_PLUGINS")}


def _targets(code: str) -> tuple[dict, str]:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env=_clean_env()).stdout
    body, _, heavy = out.rpartition("HEAVY=")
    body = body.rpartition("EXIT=")[0] or body
    rows = {r["name"]: r for r in json.loads(body)["targets"]}
    return rows, heavy.strip()


def test_targets_lists_openvino_ready_without_importing_it():
    rows, heavy = _targets(PROBE)
    assert rows["openvino"]["status"] == "ready" and rows["openvino"]["provider"] == "edgeconv-openvino"
    assert rows["openvino"]["precisions"] == ["fp32", "fp16", "bf16", "int8"]
    assert rows["openvino"]["accepts"] == ["onnx", "torch", "tf"]
    assert heavy == ""


def test_without_the_plugin_or_openvino_the_install_hint_shows(cli, fresh_plugins, monkeypatch, digits):
    from edgeconv.records import KNOWN_TARGETS

    hint = KNOWN_TARGETS["openvino"][2]
    monkeypatch.setenv("EDGECONV_DISABLE_PLUGINS", "openvino")  # as if the distribution were not installed
    rows = {r["name"]: r for r in json.loads(cli("targets", "--json").stdout)["targets"]}
    assert rows["openvino"]["status"] == "missing" and rows["openvino"]["hint"] == hint
    assert rows["openvino"]["provider"] == "edgeconv-openvino (not installed)"
    res = cli("convert", str(digits["model"]), "--to", "openvino")
    assert res.exit_code == 3 and "edgeconv-openvino plugin, which is not installed" in res.stderr

    # the plugin installed, openvino itself not importable: its own requirement reports the hint
    rows, heavy = _targets(HIDDEN)
    assert rows["openvino"]["status"] == "missing" and rows["openvino"]["hint"] == hint
    assert rows["openvino"]["provider"] == "edgeconv-openvino"
    code = HIDDEN.replace('"targets", "--json"', f'"convert", {str(digits["model"])!r}, "--to", "openvino"')
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_clean_env())
    assert "EXIT=3" in proc.stdout and "needs OpenVINO, which is not installed" in proc.stderr
    assert "edgeconv[openvino]" in proc.stderr
