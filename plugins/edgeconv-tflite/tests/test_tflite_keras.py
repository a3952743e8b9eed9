"""TF/Keras sources: the direct route (tf.lite.TFLiteConverter, no ONNX) at every precision,
checked against the Keras model itself, and through the CLI with clean --json output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

keras = pytest.importorskip("keras")
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


@pytest.fixture(scope="module")
def keras_cnn(tmp_path_factory):
    """A small Keras CNN (NHWC, 16x16x3 -> 10) whose conv and dense kernels are large enough
    (>= 1024 weights) for the quantizers to take them; calibration and verification data."""
    d = tmp_path_factory.mktemp("keras_tflite")
    keras.utils.set_random_seed(0)
    inp = keras.Input((16, 16, 3), name="image")
    x = keras.layers.Conv2D(16, 3, activation="relu")(inp)
    x = keras.layers.Conv2D(32, 3, activation="relu")(x)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dense(64, activation="relu")(x)
    out = keras.layers.Dense(10, name="scores")(x)
    model = keras.Model(inp, out)
    model.save(d / "cnn.keras")
    rng = np.random.default_rng(0)
    np.savez(d / "calib.npz", image=rng.random((48, 16, 16, 3), dtype=np.float32))
    np.savez(d / "data.npz", image=rng.random((12, 16, 16, 3), dtype=np.float32))
    return d, model


def _run_tflite(path: str, x: np.ndarray) -> np.ndarray:
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=path)
    runner = it.get_signature_runner("serving_default")
    return runner(image=x)["scores"]


PRECISIONS = [
    # precision, options, cosine >=, max |err| <=, size vs fp32 <=
    ("fp32", {}, 0.999999, 1e-5, 1.0),
    ("fp16", {}, 0.99999, 5e-3, 0.6),
    ("int8-dynamic", {}, 0.999, 0.1, 0.5),  # the small first conv and last dense stay float (< 1024 weights)
    # int8: weights a quarter of fp32's plus the flatbuffer's fixed overhead and per-channel scales, which weigh on
    # a 34 KB model (13,648 of 34,108 bytes, 0.4001 of fp32, once in a CI dry run under load)
    ("int8", {}, 0.99, 0.2, 0.42),
    ("int8", {"io_type": "uint8"}, 0.99, 0.2, 0.42),
]


@pytest.fixture(scope="module")
def fp32_size(keras_cnn, tmp_path_factory):
    import edgeconv

    d, model = keras_cnn
    r = edgeconv.convert(model, "tflite", output=tmp_path_factory.mktemp("k32") / "o", verify=False)
    return r.report["artifact"]["size_bytes"]


@pytest.mark.parametrize(("precision", "options", "cos", "err", "size"), PRECISIONS,
                         ids=[p[0] + ("-" + "-".join(p[1].values()) if p[1] else "") for p in PRECISIONS])
def test_keras_cnn_direct_route(keras_cnn, fp32_size, tmp_path, precision, options, cos, err, size):
    import edgeconv

    d, model = keras_cnn
    r = edgeconv.convert(d / "cnn.keras", "tflite", precision=precision, options=options,
                         calibration=d / "calib.npz", data=d / "data.npz", output=tmp_path / "o", runs=5, memory=False)
    rep = r.report
    assert r.exit_code == 0, rep["verdict"]
    assert rep["route"] == ["tf", "tflite"] and rep["passes"] == []  # no ONNX on the way
    det = rep["artifact"]["details"]
    assert det["route"] == "tf-direct" and det["converter"]["converter"].endswith("from_saved_model")
    assert rep["runtime"]["source"]["runtime"].startswith("tensorflow")
    assert rep["runtime"]["artifact"]["runtime"].startswith("ai_edge_litert")
    f = rep["fidelity"][0]
    assert f["name"] == "scores" and f["shape"] == [12, 10]
    assert f["cosine"] >= cos and f["max_abs"] <= err, f
    assert rep["artifact"]["size_bytes"] <= size * fp32_size
    io = rep["artifact"]["io"]
    art_in, art_out = io["inputs"][0], io["outputs"][0]
    assert art_in["name"] == "image" and art_in["shape"] == ["batch", 16, 16, 3] and art_in["layout"] == "NHWC"
    ops = det["tflite_ops"]
    io_type = options.get("io_type", "float32")
    if precision == "fp16":
        assert ops.get("DEQUANTIZE", 0) >= 4  # float16 weights, dequantized at load
    if precision == "int8":
        assert det["converter"]["integer_only"] and det["calibration_samples"] == 48
        assert rep["calibration"]["samples"] == 48
    if io_type != "float32":
        assert art_in["dtype"] == art_out["dtype"] == "uint8"
        assert art_in["scale"] > 0 and art_out["scale"] > 0 and {c["change"] for c in det["io_changes"]} == {"quantized"}
    else:
        assert art_in["dtype"] == art_out["dtype"] == "float32" and "scale" not in art_in
        assert det["io_changes"] == []
    # the .tflite run directly, against the Keras model itself
    x = np.load(d / "data.npz")["image"][:1]
    ref = model(x, training=False).numpy()
    if io_type == "float32":
        got = _run_tflite(rep["artifact"]["path"], x)
    else:
        q = np.clip(np.round(x / art_in["scale"] + art_in["zero_point"]), 0, 255).astype(np.uint8)
        got = (_run_tflite(rep["artifact"]["path"], q).astype(np.float32) - art_out["zero_point"]) * art_out["scale"]
    assert np.abs(got - ref).max() <= err


def test_cli_json_stays_clean_while_the_converter_talks(keras_cnn, tmp_path):
    """TFLite's calibrator prints to the process's stdout from C++; --json must still parse."""
    d, _ = keras_cnn
    exe = Path(sys.executable).parent / "edgeconv"
    proc = subprocess.run([str(exe), "convert", str(d / "cnn.keras"), "--to", "tflite", "-p", "int8",
                           "--calib", str(d / "calib.npz"), "--data", str(d / "data.npz"), "-o", str(tmp_path / "o"),
                           "--runs", "3", "--no-memory", "--json"],
                          capture_output=True, text=True, env={**os.environ, "EDGECONV_DEBUG": ""})
    assert proc.returncode == 0, proc.stderr[-2000:]
    rep = json.loads(proc.stdout)
    assert rep["verdict"]["status"] == "pass" and rep["target"] == "tflite"
    assert "fully_quantize" not in proc.stdout + proc.stderr and "XNNPACK" not in proc.stderr
    manifest = json.loads((tmp_path / "o" / "manifest.json").read_text())
    assert manifest["tools"]["tensorflow"] and manifest["tools"]["ai_edge_litert"]
    assert manifest["details"]["route"] == "tf-direct"
