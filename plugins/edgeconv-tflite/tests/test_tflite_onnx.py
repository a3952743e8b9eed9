"""ONNX sources through onnx2tf: the digits CNN at every precision (real labels), ResNet-18 at fp32
and int8, and the NCHW -> NHWC / int8-IO contract checked with numbers computed outside edgeconv."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest


def _ort(model: Path, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


def _litert(path: str, feed: np.ndarray, key: str = "input", out: str = "logits") -> np.ndarray:
    """Run the .tflite by hand, one sample at a time (the signature takes batch 1 unless resized)."""
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_path=path).get_signature_runner("serving_default")
    return np.concatenate([runner(**{key: feed[i : i + 1]})[out] for i in range(len(feed))])


@pytest.fixture(scope="module")
def digits_runs(digits, tmp_path_factory):
    """The digits CNN converted at every precision (int8 with int8 IO), verified on the labelled split."""
    import edgeconv

    out = tmp_path_factory.mktemp("digits_tflite")
    runs = {}
    for precision, options in (("fp32", {"threads": 1}), ("fp16", {}), ("int8-dynamic", {}), ("int8", {"io_type": "int8"})):
        r = edgeconv.convert(digits["model"], "tflite", precision=precision, options=options,
                             calibration=digits["calib"], data=digits["test"], output=out / precision, runs=5,
                             memory=precision == "fp32")
        runs[precision] = r
    return runs


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8-dynamic", "int8"])
def test_digits_every_precision_keeps_accuracy(digits_runs, precision):
    r = digits_runs[precision]
    rep = r.report
    assert r.exit_code == 0, rep["verdict"]
    assert rep["route"] == ["onnx", "tflite"] and [p["name"] for p in rep["passes"]] == ["onnx.simplify"]
    acc = rep["accuracy"]
    assert acc["samples"] == 540 and acc["source"] > 0.98
    assert acc["drop_pp"] <= (0.5 if precision == "int8" else 0.2), acc
    f = rep["fidelity"][0]
    assert f["name"] == "logits" and f["shape"] == [540, 10] and f["dtype_ok"]
    assert f["cosine"] >= {"fp32": 0.999999, "fp16": 0.9999, "int8-dynamic": 0.999, "int8": 0.99}[precision]
    man = json.loads(Path(rep["artifact"]["manifest"]).read_text())
    assert man["tools"]["onnx2tf"] == "1.28.8" and man["tools"]["tensorflow"] and man["tools"]["ai_edge_litert"]
    assert man["tools"]["tf_keras"]
    det = man["details"]
    assert det["route"] == "onnx2tf" and det["onnx2tf"]["settings"]["disable_model_save"]
    assert det["onnx_ops"] == {"Conv": 3, "Flatten": 1, "Gemm": 1, "GlobalAveragePool": 1, "MaxPool": 1, "Relu": 3}
    assert det["flex_ops"] == [] and not det["select_tf_ops"]
    # the IO contract: NCHW [batch,1,8,8] became NHWC [batch,8,8,1]; names and dynamic axis kept
    assert man["source_io"]["inputs"][0]["layout"] == "NCHW"
    art_in = man["io"]["inputs"][0]
    assert (art_in["name"], art_in["shape"], art_in["layout"]) == ("input", ["batch", 8, 8, 1], "NHWC")
    change = next(c for c in det["io_changes"] if c["change"] == "layout")
    assert change["transpose"] == [0, 2, 3, 1] and change["from"] == "NCHW" and change["to"] == "NHWC"
    assert any("NHWC" in w and "transpose(0, 2, 3, 1)" in w for w in rep["warnings"])


def test_digits_sizes_and_threads(digits_runs):
    size = {p: r.report["artifact"]["size_bytes"] for p, r in digits_runs.items()}
    assert size["fp16"] <= 0.55 * size["fp32"]
    assert size["int8"] <= 0.3 * size["fp32"] and size["int8-dynamic"] <= 0.3 * size["fp32"]
    rt = digits_runs["fp32"].report["runtime"]["artifact"]
    assert rt["threads"] == 1 and rt["delegate"].startswith("XNNPACK")
    assert digits_runs["fp32"].report["peak_rss_bytes"] > 0  # the runner also works in the fresh memory process
    ops = digits_runs["int8"].report["artifact"]["details"]["tflite_ops"]
    assert "QUANTIZE" not in ops and "DEQUANTIZE" not in ops  # int8 in, int8 out: integer only


def test_int8_io_contract_gives_the_right_numbers_by_hand(digits_runs, digits):
    """Feed the int8 NHWC model as its manifest says, outside edgeconv, and compare with the float
    NCHW source on real labels."""
    rep = digits_runs["int8"].report
    io = rep["artifact"]["io"]
    i, o = io["inputs"][0], io["outputs"][0]
    assert i["dtype"] == o["dtype"] == "int8" and i["scale"] > 0 and o["scale"] > 0
    test = np.load(digits["test"])
    x, labels = test["input"], test["labels"]
    ref = _ort(digits["model"], x)

    def quantize(a):
        return np.clip(np.round(a / i["scale"] + i["zero_point"]), -128, 127).astype(np.int8)

    raw = _litert(rep["artifact"]["path"], quantize(x.transpose(0, 2, 3, 1)))
    assert raw.dtype == np.int8
    got = (raw.astype(np.float32) - o["zero_point"]) * o["scale"]
    src_acc, art_acc = (ref.argmax(1) == labels).mean(), (got.argmax(1) == labels).mean()
    assert src_acc - art_acc <= 0.005 and (got.argmax(1) == ref.argmax(1)).mean() >= 0.98
    cos = float((got * ref).sum() / np.linalg.norm(got) / np.linalg.norm(ref))
    assert cos >= 0.99
    assert rep["accuracy"]["artifact"] == pytest.approx(art_acc, abs=0.002)  # edgeconv's verify saw the same
    # negative control: without dequantisation the numbers are far off (the digits input has one
    # channel, so NCHW and NHWC bytes coincide: the layout's control is in test_tflite_offline.py)
    assert np.abs(raw.astype(np.float32) - ref).max() > 10 * np.abs(got - ref).max()


def test_nhwc_float_artifact_matches_the_nchw_source_by_hand(digits_runs, digits):
    rep = digits_runs["fp32"].report
    x = np.load(digits["test"])["input"][:64]
    got = _litert(rep["artifact"]["path"], np.ascontiguousarray(x.transpose(0, 2, 3, 1)))
    assert np.abs(got - _ort(digits["model"], x)).max() <= 1e-4


def test_runner_resizes_for_another_batch(digits_runs, digits):
    from edgeconv_tflite.runner import LiteRTRunner

    from edgeconv.model import IOContract, Model

    rep = digits_runs["fp32"].report
    x = np.ascontiguousarray(np.load(digits["test"])["input"][:5].transpose(0, 2, 3, 1))
    with LiteRTRunner(Model("tflite", IOContract((), ()), Path(rep["artifact"]["path"])), threads=2) as runner:
        one = np.concatenate([runner.infer({"input": x[k : k + 1]})["logits"] for k in range(5)])
        five = runner.infer({"input": x})["logits"]
        assert runner.info["threads"] == 2
    assert five.shape == (5, 10) and np.abs(five - one).max() <= 1e-5


# -- ResNet-18 ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def resnet18(tmp_path_factory):
    import torch

    from edgeconv.testing import refnets

    d = tmp_path_factory.mktemp("r18_tflite")
    model, x = refnets.build("resnet18")
    torch.onnx.export(model, (x,), str(d / "r18.onnx"), dynamo=False, opset_version=17, input_names=["input"],
                      output_names=["output"], dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}})
    rng = np.random.default_rng(0)
    np.savez(d / "calib.npz", input=rng.standard_normal((16, 3, 224, 224), dtype=np.float32))
    np.savez(d / "data.npz", input=rng.standard_normal((4, 3, 224, 224), dtype=np.float32))
    import edgeconv

    runs = {p: edgeconv.convert(d / "r18.onnx", "tflite", precision=p, calibration=d / "calib.npz",
                                data=d / "data.npz", output=d / p, runs=3, memory=False) for p in ("fp32", "int8")}
    return d, runs


@pytest.mark.slow
def test_resnet18_fp32_and_int8(resnet18):
    d, runs = resnet18
    f32, i8 = runs["fp32"].report, runs["int8"].report
    assert runs["fp32"].exit_code == 0, f32["verdict"]
    assert runs["int8"].exit_code == 0, i8["verdict"]
    f = f32["fidelity"][0]
    assert f["shape"] == [4, 1000] and f["max_abs"] <= 1e-3 and f["cosine"] >= 0.999999
    g = i8["fidelity"][0]
    assert g["cosine"] >= 0.98 and g["topk_agreement"]["top5"] >= 0.75
    assert i8["artifact"]["size_bytes"] <= 0.26 * f32["artifact"]["size_bytes"]
    for rep in (f32, i8):
        art_in = rep["artifact"]["io"]["inputs"][0]
        assert art_in["shape"] == ["batch", 224, 224, 3] and art_in["layout"] == "NHWC"
        assert art_in["dtype"] == "float32"  # the default: float IO, quantize/dequantize inside
    det = i8["artifact"]["details"]
    assert det["calibration_samples"] == 16 and det["converter"]["integer_only"]
    assert {"CONV_2D", "QUANTIZE", "DEQUANTIZE"} <= set(det["tflite_ops"])
    # the int8 model's first activation has a sane scale (onnx2tf's MaxPool pad would make it ~1e36)
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=i8["artifact"]["path"])
    scales = [d_["quantization"][0] for d_ in it.get_tensor_details() if d_["dtype"] == np.int8]
    assert max(scales) < 1e3
    # by hand: NCHW source vs the NHWC artifact on one sample
    x = np.load(d / "data.npz")["input"][:1]
    got = _litert(f32["artifact"]["path"], np.ascontiguousarray(x.transpose(0, 2, 3, 1)), out="output")
    assert np.abs(got - _ort(d / "r18.onnx", x)).max() <= 1e-3


def test_pytorch_module_goes_through_onnx_to_tflite(tmp_path):
    import edgeconv
    from edgeconv.testing import refnets

    model, x = refnets.build("digits")
    r = edgeconv.convert((model, (x,)), "tflite", output=tmp_path / "o", runs=3, memory=False,
                         source_options={"dynamic": ["batch"]})
    rep = r.report
    assert r.exit_code == 0, rep["verdict"]
    assert rep["route"] == ["torch", "onnx", "tflite"] and rep["passes"][0]["name"] == "torch.to_onnx"
    assert rep["runtime"]["source"]["runtime"].startswith("torch")  # compared against eager PyTorch
    assert rep["fidelity"][0]["max_abs"] <= 1e-4
    assert rep["artifact"]["io"]["inputs"][0]["shape"] == ["batch", 8, 8, 1]
