"""The real thing: rknn-toolkit2 in its toolchain environment, .rknn files verified in the toolkit's simulator.

Marked ``toolchain``. Skipped when the rknn environment is not installed and EDGECONV_TEST_TOOLCHAINS is unset;
with EDGECONV_TEST_TOOLCHAINS=1 the first test builds it (``edgeconv toolchain install rknn``: 1.4 GiB, ~1 min).
Run it alone:

    EDGECONV_TEST_TOOLCHAINS=1 .venv/bin/python -m pytest -m toolchain plugins/edgeconv-rknn
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.toolchain

CLS = "rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx"


def _ready() -> bool:
    from edgeconv import plugins
    from edgeconv.toolchain import status

    tc = plugins.registry().toolchains.get("rknn")
    return tc is not None and status(tc)["state"] == "ready"


@pytest.fixture(scope="module")
def rknn_env():
    """The rknn environment: used when ready; built when EDGECONV_TEST_TOOLCHAINS=1; else the test is skipped."""
    if _ready():
        return "ready"
    if not os.environ.get("EDGECONV_TEST_TOOLCHAINS"):
        pytest.skip("the rknn toolchain environment (1.4 GiB, Python 3.11) is not built on this machine: it is a "
                    "separate test command, not CI (issue #21; docs/targets/rknn.md): "
                    "EDGECONV_TEST_TOOLCHAINS=1 .venv/bin/python -m pytest -m toolchain plugins/edgeconv-rknn")
    from typer.testing import CliRunner

    from edgeconv.cli import make_app

    res = CliRunner().invoke(make_app(), ["toolchain", "install", "rknn"])
    assert res.exit_code == 0, res.output
    assert _ready()
    return "built"


def _convert(cli, model, out, *args):
    res = cli("convert", str(model), "--to", "rknn", "-o", str(out), "--json", "--runs", "3", "--no-memory", *args)
    report = json.loads(res.stdout) if res.stdout.strip().startswith("{") else None
    return res, report


def _check_simulated(report):
    rt = report["runtime"]["artifact"]
    assert rt["where"] == "simulated" and "not on a device" in rt["device"]
    rebuilt = rt["rebuilt_from_recipe"]
    assert rebuilt["same_size"] and rebuilt["recipe"] == "rknn_build/recipe.json"
    # the compiler writes host addresses into the file: two builds differ in a few bytes, never in size
    assert rebuilt["differing_bytes"] < 0.05 * rebuilt["size"]


@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_digits_cnn_in_the_simulator_keeps_accuracy(rknn_env, cli, digits, tmp_path, precision):
    out = tmp_path / precision
    res, report = _convert(cli, digits["model"], out, "-p", precision, "--calib", str(digits["calib"]),
                           "--data", str(digits["test"]), "-O", "platform=rk3588")
    assert res.exit_code == 0, res.stderr
    assert report["verdict"]["status"] == "pass"
    assert report["fidelity"][0]["cosine"] >= 0.999
    assert report["accuracy"]["samples"] == 540 and report["accuracy"]["drop_pp"] <= 1.0
    _check_simulated(report)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["form"] == "rknn" and manifest["tools"]["rknn_toolkit2"] == "2.5.0"
    assert manifest["tools"]["platform"] == "rk3588" and manifest["runner_options"]["precision"] == precision
    rknn = out / manifest["artifact"][0]
    assert rknn.suffix == ".rknn" and rknn.read_bytes()[:4] == b"RKNN"
    recipe = json.loads((out / "rknn_build" / "recipe.json").read_text())
    assert recipe["quantize"] == (precision == "int8")
    if precision == "int8":  # the dataset list the toolkit read: one .npy per calibration sample
        lines = (out / "rknn_build" / "dataset.txt").read_text().split()
        assert len(lines) == 100 and all((out / "rknn_build" / ln).is_file() for ln in lines)
        assert recipe["config"]["quantized_dtype"] == "w8a8"
    # the toolkit's per-layer accuracy analysis is kept with the report
    analysis = manifest["details"]["accuracy_analysis"]
    assert analysis["ran"] and analysis["layers"] >= 5 and (out / "accuracy_analysis.txt").is_file()
    assert any(r["single_cos"] is not None for r in analysis["rows"])
    steps = [s["step"] for s in json.loads((out / "rknn_toolkit.json").read_text())["steps"]]
    assert steps == ["config", "load_onnx", "build", "export_rknn", "accuracy_analysis"]
    if precision == "int8":  # verified again later, from the output folder alone (the recipe rebuilds)
        again = cli("verify", str(digits["model"]), str(out), "--data", str(digits["test"]), "--runs", "3", "--json")
        assert again.exit_code == 0, again.stderr
        rep = json.loads(again.stdout)
        assert rep["verdict"]["status"] == "pass" and rep["runtime"]["artifact"]["where"] == "simulated"


def test_int8_with_a_float16_layer_goes_through_hybrid_quantization(rknn_env, cli, digits, tmp_path):
    """Node names to the toolkit's tensors: relu2 has its own; conv3 was fused into its Relu (kept through it)."""
    out = tmp_path / "hybrid"
    res, report = _convert(cli, digits["model"], out, "-p", "int8", "--calib", str(digits["calib"]),
                           "--data", str(digits["test"]), "-O", "keep_float=relu2,conv3")
    assert res.exit_code == 0, res.stderr
    assert report["verdict"]["status"] == "pass" and report["accuracy"]["drop_pp"] <= 1.0
    kept = report["artifact"]["details"]["keep_float"]
    assert kept["kept"]["relu2"] == ["relu2"] and "conv3" in kept["kept"]
    cfg = (out / "quantization.cfg").read_text()
    assert '"relu2": float16' in cfg
    steps = [s["step"] for s in json.loads((out / "rknn_toolkit.json").read_text())["steps"]]
    assert "hybrid_quantization_step1" in steps and "hybrid_quantization_step2" in steps and "build" not in steps
    _check_simulated(report)


@pytest.mark.corpus
def test_rapidocr_direction_classifier_at_fp16(rknn_env, cli, tmp_path):
    from edgeconv.testing.corpus import path

    model = path("rapidocr", CLS)
    res, report = _convert(cli, model, tmp_path / "cls", "-p", "fp16", "--input-shape", "x:1,3,48,192")
    assert res.exit_code == 0, res.stderr
    assert report["verdict"]["status"] == "pass"
    assert [f["name"] for f in report["fidelity"]] == ["save_infer_model/scale_0.tmp_1"]
    assert report["fidelity"][0]["cosine"] >= 0.999 and report["fidelity"][0]["topk_agreement"]["top1"] == 1.0
    _check_simulated(report)


def _model(path: Path, nodes, inputs, outputs, inits=()) -> Path:
    import onnx
    from onnx import helper

    m = helper.make_model(helper.make_graph(nodes, "g", inputs, outputs, list(inits)),
                          opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    onnx.save(m, str(path))
    return path


def test_an_unsupported_operator_is_refused_by_the_precheck_before_the_toolkit_runs(rknn_env, cli, tmp_path):
    from edgeconv_rknn.precheck import operator_list
    from onnx import TensorProto, helper

    ops = operator_list()["ops"]
    assert not ops["NonZero"]["supported"]  # the document and the probe agree
    model = _model(tmp_path / "nz.onnx", [helper.make_node("Relu", ["x"], ["r"], name="relu"),
                                           helper.make_node("NonZero", ["r"], ["y"], name="where_nonzero")],
                   [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                   [helper.make_tensor_value_info("y", TensorProto.INT64, [2, "n"])])
    res = cli("convert", str(model), "--to", "rknn", "-p", "fp16", "-o", str(tmp_path / "out"))
    assert res.exit_code == 4, res.output
    assert "where_nonzero" in res.stderr and "NonZero" in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.rknn_build.log").exists()  # no toolkit step ran


def _range_model(tmp_path: Path) -> tuple[Path, Path]:
    """y = relu(x * [1, 1000]) and its calibration set: per-tensor int8 activations give channel 0 (range 1) a step
    of ~4, so it reads 0, while the whole output's cosine stays ~1 (channel 1 dominates)."""
    from onnx import TensorProto, helper, numpy_helper

    k = np.ones((1, 2, 1, 1), np.float32)
    k[0, 1] = 1000.0
    model = _model(tmp_path / "range.onnx", [helper.make_node("Mul", ["x", "k"], ["t"], name="scale"),
                                              helper.make_node("Relu", ["t"], ["y"], name="relu")],
                   [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 4, 4])],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 4, 4])],
                   [numpy_helper.from_array(k, "k")])
    calib = tmp_path / "calib.npz"
    np.savez(calib, x=np.random.default_rng(0).random((16, 2, 4, 4), dtype=np.float32))
    return model, calib


def test_int8_that_destroys_a_channel_fails_verification(rknn_env, cli, tmp_path):
    """The per-channel check fails it (exit 1) where the aggregate would not; at fp16 it passes."""
    model, calib = _range_model(tmp_path)
    ok, rep16 = _convert(cli, model, tmp_path / "fp16", "-p", "fp16")
    assert ok.exit_code == 0, ok.stderr
    res, report = _convert(cli, model, tmp_path / "int8", "-p", "int8", "--calib", str(calib))
    assert res.exit_code == 1, res.stderr
    assert report["verdict"]["status"] == "fail"
    f = report["fidelity"][0]
    assert f["pass"] is False and f["cosine"] > 0.99  # the aggregate alone would have hidden it
    assert any("slice 0 of 2" in x for x in f["failures"])


def test_keep_float_through_hybrid_quantization_rescues_the_destroyed_channel(rknn_env, cli, tmp_path):
    """The --precision auto fallback's mechanism: both nodes in float16 (hybrid quantization) -> passes; only the
    last one is not enough (its input t is still int8)."""
    model, calib = _range_model(tmp_path)
    res, report = _convert(cli, model, tmp_path / "last", "-p", "int8", "--calib", str(calib),
                           "-O", "keep_float=relu")
    assert res.exit_code == 1, res.stderr
    res, report = _convert(cli, model, tmp_path / "both", "-p", "int8", "--calib", str(calib),
                           "-O", "keep_float=scale,relu")
    assert res.exit_code == 0, res.stderr
    assert report["fidelity"][0]["pass"] and report["fidelity"][0]["cosine"] > 0.9999
    assert report["artifact"]["details"]["keep_float"]["kept"] == {"scale": ["t"], "relu": ["y"]}
    cfg = (tmp_path / "both" / "quantization.cfg").read_text()
    assert '"t": float16' in cfg and '"y": float16' in cfg


def test_mean_and_std_folded_in_take_uint8_pixels(rknn_env, cli, digits, tmp_path):
    out = tmp_path / "norm"
    res, report = _convert(cli, digits["model"], out, "-p", "int8", "--calib", str(digits["calib"]),
                           "--data", str(digits["test"]), "-O", "mean_values=0", "-O", "std_values=255")
    assert res.exit_code == 0, res.stderr
    spec = report["artifact"]["io"]["inputs"][0]
    assert spec["dtype"] == "uint8" and spec["scale"] == [pytest.approx(1 / 255)] and spec["zero_point"] == [0.0]
    assert report["accuracy"]["drop_pp"] <= 1.0
    recipe = json.loads((out / "rknn_build" / "recipe.json").read_text())
    assert recipe["config"]["mean_values"] == [[0.0]] and recipe["config"]["std_values"] == [[255.0]]
    first = (out / "rknn_build" / "dataset.txt").read_text().split()[0]
    assert np.load(out / "rknn_build" / first).max() > 1.5  # calibration written in pixels, as the .rknn takes


def test_shape_sets_run_every_set_in_the_simulator(rknn_env, digits, tmp_path):
    """-O shape_sets builds rknn.config dynamic_input; the runner answers at each set's batch like onnxruntime."""
    import onnxruntime as ort
    from edgeconv_rknn.runner import SimulatorRunner

    import edgeconv
    from edgeconv.model import IOContract, Model

    res = edgeconv.convert(str(digits["model"]), "rknn", precision="fp16", output=tmp_path / "o", verify=False,
                           options={"shape_sets": "1x1x8x8;4x1x8x8"})
    man = json.loads((tmp_path / "o" / "manifest.json").read_text())
    assert man["details"]["shape_sets"] == [[[1, 1, 8, 8]], [[4, 1, 8, 8]]]
    art = Model(form="rknn", io=IOContract.from_dict(res.report["artifact"]["io"]),
                path=Path(res.report["artifact"]["path"]))
    sess = ort.InferenceSession(str(digits["model"]))
    with np.load(digits["test"]) as z:
        x = z["input"][:4]
    with SimulatorRunner(art, **man["runner_options"]) as r:
        for batch in (x[:1], x):
            got = r.infer({"input": batch})["logits"]
            want = sess.run(None, {"input": batch})[0]
            assert got.shape == want.shape
            np.testing.assert_allclose(got, want, atol=0.05)


def _chain(path: Path, perturb: bool) -> Path:
    """conv1 -> relu1 -> conv2 -> relu2 -> conv3 -> relu3 -> gap -> fc on [1,3,16,16], its tensors named as a torch
    export names them (``/conv2/Conv_output_0``: the toolkit's dump files are those names made file names);
    ``perturb`` adds 20 % noise to conv2's weights, nothing else changes."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    chans, inits, nodes, x = (3, 8, 8, 8), [], [], "input"
    for i in range(1, 4):
        w = (rng.standard_normal((chans[i], chans[i - 1], 3, 3)) / np.sqrt(9 * chans[i - 1])).astype(np.float32)
        if perturb and i == 2:
            w = w + (np.random.default_rng(99).standard_normal(w.shape) * 0.2 * w.std()).astype(np.float32)
        inits += [numpy_helper.from_array(w, f"conv{i}.w"),
                  numpy_helper.from_array((rng.standard_normal(chans[i]) * 0.1).astype(np.float32), f"conv{i}.b")]
        nodes += [helper.make_node("Conv", [x, f"conv{i}.w", f"conv{i}.b"], [f"/conv{i}/Conv_output_0"],
                                   name=f"conv{i}", pads=[1, 1, 1, 1]),
                  helper.make_node("Relu", [f"/conv{i}/Conv_output_0"], [f"/relu{i}/Relu_output_0"], name=f"relu{i}")]
        x = f"/relu{i}/Relu_output_0"
    inits += [numpy_helper.from_array((rng.standard_normal((10, 8)) * 0.3).astype(np.float32), "fc.w"),
              numpy_helper.from_array(np.zeros(10, np.float32), "fc.b")]
    nodes += [helper.make_node("GlobalAveragePool", [x], ["/gap/out"], name="gap"),
              helper.make_node("Flatten", ["/gap/out"], ["/flatten/out"], name="flatten", axis=1),
              helper.make_node("Gemm", ["/flatten/out", "fc.w", "fc.b"], ["logits"], name="fc", transB=1)]
    g = helper.make_graph(nodes, "chain", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 16, 16])],
                          [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 10])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(m, str(path))
    return path


@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_debug_layers_trace_names_a_planted_fault(rknn_env, cli, tmp_path, precision):
    """A real conversion of the model with conv2's weights perturbed (what a toolchain that miscompiles one layer
    would give); its manifest then claims the unperturbed source (the ``source`` record only, as
    tests/test_debug_layers.py plants it). ``edgeconv debug layers`` names conv2 as the first diverging layer."""
    import hashlib

    good, bad = _chain(tmp_path / "good" / "chain.onnx", False), _chain(tmp_path / "bad" / "chain.onnx", True)
    data, calib = tmp_path / "data.npz", tmp_path / "calib.npz"
    np.savez(data, input=np.random.default_rng(1).random((8, 3, 16, 16), dtype=np.float32))
    np.savez(calib, input=np.random.default_rng(2).random((32, 3, 16, 16), dtype=np.float32))
    out = tmp_path / precision
    res = cli("convert", str(bad), "--to", "rknn", "-p", precision, "--calib", str(calib), "--data", str(data),
              "-o", str(out), "--no-verify", "--no-memory")
    assert res.exit_code == 0, res.stderr

    # against its own source: every layer within the gates
    res = cli("debug", "layers", str(bad), str(out), "--data", str(data), "--samples", "3", "--json")
    assert res.exit_code == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["first_diverging"]["accumulated"] is None and doc["isolated"] is False
    assert "simulator" in doc["runtime"]["accumulated"] and "simulated" in doc["runtime"]["accumulated"]
    res = cli("debug", "layers", str(good), str(out), "--data", str(data))
    assert res.exit_code == 2 and "not the source this artifact was made from" in res.stderr

    manifest = json.loads((out / "manifest.json").read_text())
    manifest["source"].update(path=str(good), sha256=hashlib.sha256(good.read_bytes()).hexdigest(),
                              size_bytes=good.stat().st_size)
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2))
    res = cli("debug", "layers", str(good), str(out), "--data", str(data), "--json")
    assert res.exit_code == 1, res.stderr
    doc = json.loads(res.stdout)
    first = doc["first_diverging"]["accumulated"]
    rows = doc["layers"]
    at = next(i for i, r in enumerate(rows) if r["tensor"] == first["tensor"])
    assert at >= 1 and all(r["accumulated"]["pass"] for r in rows[:at])
    assert first["sqnr_db"] < 20 and doc["first_diverging"]["isolated"] is None
    by_tensor = {r["tensor"]: r for r in rows}
    if precision == "fp16":  # every tensor of its own: conv2's output is the first to part
        assert first["node"] == "conv2" and first["tensor"] == "/conv2/Conv_output_0"
        assert by_tensor["/conv1/Conv_output_0"]["accumulated"]["sqnr_db"] > 50
    else:  # int8: the toolkit fuses Conv+Relu; the Conv's dump has no figure of its own and is left out
        assert first["node"] == "relu2" and first["fused"] == ["conv2"], first
        assert by_tensor[first["tensor"]]["artifact"] == {"name": "/relu2/Relu_output_0", "op": "Relu",
                                                          "fused": ["conv2"], "layout": None}
        assert "/conv2/Conv_output_0" not in by_tensor
    assert by_tensor["logits"]["artifact"]["name"] == "logits"
