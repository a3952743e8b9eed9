"""PyTorch and TensorFlow/Keras sources: every route to ONNX, verified against the framework
itself (eager PyTorch, the TF signature / Keras model), and safe loading."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import edgeconv
from edgeconv.testing import refnets

R18_SHAPE = ["--input-shape", "input:1,3,224,224"]


@pytest.fixture(scope="module")
def resnet(tmp_path_factory):
    """ResNet-18 (seeded random weights) saved in every PyTorch form the CLI takes."""
    d = tmp_path_factory.mktemp("resnet")
    model, x = refnets.build("resnet18")
    torch.jit.save(torch.jit.trace(model, x), d / "r18.jit")
    torch.export.save(torch.export.export(model, (x,)), d / "r18.pt2")
    from safetensors.torch import save_file

    save_file(model.state_dict(), d / "r18.safetensors")
    (d / "net.py").write_text("from edgeconv.testing.refnets import resnet18\n\ndef make():\n    return resnet18()\n")
    rng = np.random.default_rng(1)
    np.savez(d / "data.npz", input=rng.standard_normal((3, 3, 224, 224), dtype=np.float32))
    with torch.inference_mode():
        eager = model(torch.from_numpy(np.load(d / "data.npz")["input"])).numpy()
    return d, eager


@pytest.mark.slow
@pytest.mark.parametrize(
    ("source", "extra", "exporter"),
    [
        ("r18.pt2", [], "dynamo"),
        ("r18.jit", R18_SHAPE, "torchscript"),
        ("net.py:make", [*R18_SHAPE, "--weights", "r18.safetensors"], "torchscript"),
    ],
    ids=["exported-program", "torchscript", "factory+safetensors"],
)
def test_resnet18_sources_to_onnxruntime_match_eager(resnet, cli, monkeypatch, source, extra, exporter):
    d, eager = resnet
    monkeypatch.chdir(d)
    res = cli("convert", source, "-o", f"out-{exporter}-{source[:3]}", "--data", "data.npz", "--runs", "3",
              "--no-memory", "--json", *extra)
    assert res.exit_code == 0, res.output
    rep = json.loads(res.stdout)
    assert rep["route"] == ["torch", "onnx"]
    step = rep["passes"][0]
    assert step["name"] == "torch.to_onnx" and step["exporter"] == exporter and step["torch"] == torch.__version__
    assert step["opset"] == (20 if exporter == "dynamo" else 17)
    assert rep["runtime"]["source"]["runtime"].startswith("torch")  # compared against eager PyTorch
    assert rep["fidelity"][0]["max_abs"] <= 1e-4
    import onnxruntime as ort

    art = ort.InferenceSession(rep["artifact"]["path"]).run(None, {"input": np.load("data.npz")["input"][:1]})[0]
    assert np.abs(art - eager[:1]).max() <= 1e-4
    manifest = json.loads(Path(rep["artifact"]["manifest"]).read_text())
    assert manifest["passes"][0]["name"] == "torch.to_onnx" and manifest["route"] == ["torch", "onnx"]


def test_transformer_dynamic_batch_verified_at_two_batch_sizes(tmp_path):
    model, x = refnets.build("transformer")
    rng = np.random.default_rng(0)
    for batch in (1, 3):
        data = tmp_path / f"data{batch}.npz"
        np.savez(data, input=rng.standard_normal((2 * batch, 128, 256), dtype=np.float32))
        r = edgeconv.convert(model, output=tmp_path / f"out{batch}", data=data, runs=3, memory=False,
                             input_shapes=[f"input:{batch},128,256"],
                             source_options={"example_inputs": (x,), "dynamic": ["batch"]})
        assert r.exit_code == 0, r.report["verdict"]
        inp = r.report["artifact"]["io"]["inputs"][0]
        assert inp["shape"][0] == "batch", "the artifact keeps its dynamic batch axis"
        f = r.report["fidelity"][0]
        assert f["shape"] == [2 * batch, 10] and f["max_abs"] <= 1e-4


def test_module_in_the_api_with_example_inputs(tmp_path):
    model, x = refnets.build("digits")
    r = edgeconv.convert((model, (x,)), output=tmp_path / "o", runs=3, memory=False)
    assert r.exit_code == 0 and r.report["route"] == ["torch", "onnx"]
    assert r.report["source"]["path"] == "<tuple>" and r.report["fidelity"][0]["max_abs"] <= 1e-5


def test_pickled_model_never_runs_its_code(tmp_path, cli):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (Path.write_text, (marker, "code ran"))

    evil = tmp_path / "evil.pt"
    torch.save({"model": Payload()}, evil)
    res = cli("convert", str(evil), "-o", str(tmp_path / "o"), *R18_SHAPE)
    assert res.exit_code == 2
    assert "pickled Python object" in res.stderr and "--trust-pickle" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and not marker.exists()
    # a pickled weights file given with --weights is refused the same way
    (tmp_path / "net.py").write_text("from edgeconv.testing.refnets import DigitsCNN\n\ndef make():\n    return DigitsCNN()\n")
    res = cli("convert", f"{tmp_path / 'net.py'}:make", "--weights", str(evil), "--input-shape", "input:1,1,8,8",
              "-o", str(tmp_path / "o"))
    assert res.exit_code == 2 and "weights_only" in res.stderr and not marker.exists()


def test_state_dict_points_to_factory_and_weights(tmp_path, cli):
    model, _ = refnets.build("digits")
    torch.save(model.state_dict(), tmp_path / "w.pth")
    res = cli("convert", str(tmp_path / "w.pth"), "--input-shape", "input:1,1,8,8", "-o", str(tmp_path / "o"))
    assert res.exit_code == 2 and "file.py:factory --weights w.pth" in res.stderr


def test_inspect_prints_torch_io_contract(resnet, cli, monkeypatch):
    d, _ = resnet
    monkeypatch.chdir(d)
    info = json.loads(cli("inspect", "r18.jit", *R18_SHAPE, "--dynamic", "batch", "--json").stdout)
    assert info["form"] == "torch"
    assert info["io"]["inputs"][0] == {"name": "input", "shape": ["batch", 3, 224, 224], "dtype": "float32",
                                       "layout": "NCHW"}
    assert info["io"]["outputs"][0]["shape"] == ["batch", 1000]


# -- TensorFlow / Keras ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def keras_cnn(tmp_path_factory):
    import keras

    d = tmp_path_factory.mktemp("keras")
    keras.utils.set_random_seed(0)
    inp = keras.Input((16, 16, 3), name="image")
    x = keras.layers.Conv2D(8, 3, activation="relu")(inp)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    out = keras.layers.Dense(5, name="scores")(x)
    model = keras.Model(inp, out)
    model.save(d / "cnn.keras")
    model.export(str(d / "saved"), verbose=False)
    lam_in = keras.Input((4,), name="v")
    keras.Model(lam_in, keras.layers.Lambda(lambda z: z * 2)(lam_in)).save(d / "lambda.keras")
    np.savez(d / "data.npz", image=np.random.default_rng(0).random((6, 16, 16, 3), dtype=np.float32))
    return d, model


@pytest.mark.parametrize(("source", "output"), [("saved", "output_0"), ("cnn.keras", "scores")])
def test_keras_cnn_to_onnxruntime_verified_against_tf(keras_cnn, tmp_path, source, output):
    d, model = keras_cnn
    r = edgeconv.convert(d / source, output=tmp_path / "o", data=d / "data.npz", runs=3, memory=False)
    rep = r.report
    assert r.exit_code == 0, rep["verdict"]
    assert rep["route"] == ["tf", "onnx"] and rep["passes"][0]["exporter"] == "tf2onnx.from_function"
    assert rep["runtime"]["source"]["runtime"].startswith("tensorflow")
    f = rep["fidelity"][0]
    assert f["name"] == output and f["shape"] == [6, 5] and f["max_abs"] <= 1e-5
    assert rep["source"]["io"]["inputs"][0]["layout"] == "NHWC"
    import onnxruntime as ort

    x = np.load(d / "data.npz")["image"]
    art = ort.InferenceSession(rep["artifact"]["path"]).run([output], {"image": x})[0]
    assert np.abs(art - model(x, training=False).numpy()).max() <= 1e-5


def test_keras_lambda_needs_trust_code(keras_cnn, tmp_path, cli):
    d, _ = keras_cnn
    res = cli("convert", str(d / "lambda.keras"), "-o", str(tmp_path / "o"))
    assert res.exit_code == 2 and "Lambda layer" in res.stderr and "--trust-code" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    res = cli("convert", str(d / "lambda.keras"), "-o", str(tmp_path / "o"), "--trust-code", "--runs", "3",
              "--no-memory")
    assert res.exit_code == 0, res.output


def test_inspect_prints_keras_io_contract(keras_cnn, cli):
    d, _ = keras_cnn
    info = json.loads(cli("inspect", str(d / "saved"), "--json").stdout)
    assert info["form"] == "tf"
    assert info["io"]["inputs"][0] == {"name": "image", "shape": ["batch", 16, 16, 3], "dtype": "float32",
                                       "layout": "NHWC"}
    assert info["io"]["outputs"][0]["name"] == "output_0"
