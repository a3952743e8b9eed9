"""keep_float on Ascend: ONNX node names -> ATC's --keep_dtype file (one operator name per line), in the
command edgeconv runs and in the kit (atc.json, atc.sh, keep_dtype.cfg) that rebuilds the .om."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from edgeconv_ascend import atc, shapes

from edgeconv.errors import BadInput
from edgeconv.model import IOContract, TensorSpec

CONTRACT = IOContract((TensorSpec("input", (1, 3, 16, 16), "float32", "NCHW"),), (TensorSpec("logits", (1, 10), "float32"),))
PROTO = SimpleNamespace(graph=SimpleNamespace(node=[SimpleNamespace(name=n) for n in ("conv1", "relu1", "conv2", "fc")]))


def _settings(tmp_path, precision="int8", **options):
    opts = {"soc_version": "Ascend310B4", "input_format": "auto", "precision_flag": "v1", "fp32_mode": "origin",
            "log": "error", **options}
    job = SimpleNamespace(options=opts, precision=precision, workdir=tmp_path)
    return atc.settings_from(job, shapes.resolve(CONTRACT, {}, opts), PROTO, aipp_conf=None)


def test_keep_float_becomes_a_keep_dtype_file(tmp_path):
    s = _settings(tmp_path, keep_float="conv2,fc")
    run_argv = s.argv("m.onnx", "m")
    assert f"--keep_dtype={tmp_path / 'keep_dtype.cfg'}" in run_argv
    assert run_argv.index("--precision_mode=force_fp16") < run_argv.index(f"--keep_dtype={tmp_path / 'keep_dtype.cfg'}")
    kit = atc.write_kit(tmp_path, "m.deploy.onnx", "m", s)
    assert (tmp_path / "keep_dtype.cfg").read_text() == "conv2\nfc\n"
    assert kit["keep_dtype.cfg"] == tmp_path / "keep_dtype.cfg"
    doc = json.loads(kit["atc.json"].read_text())
    assert "--keep_dtype=keep_dtype.cfg" in doc["atc"]["argv"]  # the kit runs from its own folder
    assert doc["settings"]["keep_float"] == ["conv2", "fc"]
    assert "--keep_dtype=keep_dtype.cfg" in kit["atc.sh"].read_text()


def test_no_keep_float_no_file(tmp_path):
    s = _settings(tmp_path)
    assert not any(a.startswith("--keep_dtype") for a in s.argv("m.onnx", "m"))
    kit = atc.write_kit(tmp_path, "m.onnx", "m", s)
    assert "keep_dtype.cfg" not in kit and not (tmp_path / "keep_dtype.cfg").exists()


def test_keep_float_errors(tmp_path):
    with pytest.raises(BadInput, match=r"no node 'conv3'; did you mean 'conv\d'"):
        _settings(tmp_path, keep_float="conv3")
    with pytest.raises(BadInput, match="do not also pass --keep_dtype"):
        _settings(tmp_path, keep_float="conv2", extra_args="--keep_dtype=mine.cfg")


def test_target_declares_the_option():
    from edgeconv_ascend.hooks import OPTIONS

    assert any(o.name == "keep_float" and o.type is list for o in OPTIONS)
