"""The command line with PyTorch sources: `edgeconv convert` from a .pt2 and from file.py:factory --weights, and
`edgeconv demo`, which gives this torch-only target the digits CNN's PyTorch twin (same trained weights)."""

from __future__ import annotations

import json

import pytest
import torch

from edgeconv import plugins
from edgeconv.testing.refnets import digits_trained

DIGITS_ACCURACY = 535 / 540  # the shipped digits CNN on its test split (99.07 %)


@pytest.fixture
def only_executorch(monkeypatch):
    """The built-ins plus this plugin (the other ready targets would make the demo slow)."""
    monkeypatch.setenv("EDGECONV_LOAD_PLUGINS", "executorch")
    plugins.reset()
    yield
    plugins.reset()


def test_the_demo_converts_the_digits_twin_to_executorch(cli, only_executorch, tmp_path):
    res = cli("demo", "--json", "-o", str(tmp_path), "--runs", "5")
    assert res.exit_code == 0, res.output
    by = {(r["target"], r["precision"]): r for r in json.loads(res.stdout)["results"]}
    assert set(by) == {("executorch", "fp32"), ("executorch", "int8"), ("onnxruntime", "fp32"),
                       ("onnxruntime", "int8")}
    for precision in ("fp32", "int8"):
        rep = by[("executorch", precision)]
        assert rep["verdict"]["status"] == "pass", rep["verdict"]
        assert rep["route"] == ["torch", "pte"]
        assert rep["accuracy"]["source"] == pytest.approx(DIGITS_ACCURACY) and rep["accuracy"]["drop_pp"] <= 0.5
        assert (tmp_path / f"digits-executorch-{precision}" / "model.pte").is_file()
    assert by[("onnxruntime", "fp32")]["route"][0] == "onnx"  # the ONNX targets keep the shipped ONNX model
    sizes = {p: by[("executorch", p)]["artifact"]["size_bytes"] for p in ("fp32", "int8")}
    assert sizes["int8"] < sizes["fp32"] / 2.5, sizes


def test_convert_from_a_pt2_and_from_a_factory_with_weights(cli, digits, tmp_path):
    from safetensors.torch import save_file

    model = digits_trained()
    torch.export.save(torch.export.export(model, (torch.zeros(1, 1, 8, 8),)), str(tmp_path / "digits.pt2"))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp_path / "digits.safetensors"))
    (tmp_path / "net.py").write_text("from edgeconv.testing.refnets import DigitsCNN\n\n\n"
                                     "def build():\n    return DigitsCNN()\n")
    common = ["--to", "executorch", "--calib", str(digits["calib"]), "--data", str(digits["test"]), "--runs", "5",
              "--no-memory", "--json"]
    runs = {
        "pt2-int8": cli("convert", str(tmp_path / "digits.pt2"), "-p", "int8", "-o", str(tmp_path / "a"), *common),
        "factory-fp32": cli("convert", f"{tmp_path / 'net.py'}:build", "--weights", str(tmp_path / "digits.safetensors"),
                            "--input-shape", "input:1,1,8,8", "-p", "fp32", "-o", str(tmp_path / "b"), *common),
    }
    for name, res in runs.items():
        assert res.exit_code == 0, (name, res.output)
        rep = json.loads(res.stdout)
        assert rep["verdict"]["status"] == "pass" and rep["route"] == ["torch", "pte"], (name, rep["verdict"])
        assert rep["accuracy"]["artifact"] == pytest.approx(DIGITS_ACCURACY, abs=0.005), name
        assert rep["artifact"]["details"]["delegation"]["delegated_share"] == 1.0, name
    assert (tmp_path / "a" / "digits.pte").is_file() and (tmp_path / "b" / "net.pte").is_file()
