"""INT8 through AMCT, against a stand-in ``amct_onnx`` (written by the test; it records the documented calls and
copies the model where AMCT would write its quantised ones -- it quantises nothing). Without AMCT, INT8 is a clear
"not available" (exit 3)."""

from __future__ import annotations

import json
import os
import sys

import pytest

import edgeconv

STANDIN = r'''
"""Stand-in for amct_onnx (edgeconv tests). Records the calls; copies the model; quantises nothing."""
import json, os, shutil
__version__ = "stand-in"

def _log(entry):
    with open(os.environ["AMCT_STANDIN_LOG"], "a", encoding="utf-8") as f:
        f.write(json.dumps(entry) + "\n")

def create_quant_config(config_file, model_file, skip_layers=None, batch_num=1, activation_offset=True,
                        config_defination=None):
    _log({"call": "create_quant_config", "batch_num": batch_num, "skip_layers": skip_layers,
          "activation_offset": activation_offset, "config_defination": config_defination})
    with open(config_file, "w") as f:
        json.dump({"batch_num": batch_num}, f)

def quantize_model(config_file, model_file, modified_onnx_file, record_file):
    _log({"call": "quantize_model", "config_exists": os.path.exists(config_file)})
    shutil.copyfile(model_file, modified_onnx_file)
    open(record_file, "w").write("stand-in record\n")

def save_model(modified_onnx_file, record_file, save_path):
    _log({"call": "save_model", "save_path_is_prefix": not save_path.endswith(".onnx")})
    shutil.copyfile(modified_onnx_file, save_path + "_deploy_model.onnx")
    shutil.copyfile(modified_onnx_file, save_path + "_fake_quant_model.onnx")
'''


@pytest.fixture
def standin_amct(tmp_path, monkeypatch):
    root = tmp_path / "standin-amct"
    (root / "amct_onnx").mkdir(parents=True)
    (root / "amct_onnx" / "__init__.py").write_text(STANDIN)
    log = tmp_path / "amct_calls.jsonl"
    monkeypatch.setenv("AMCT_STANDIN_LOG", str(log))
    return root, log


def calls(log):
    return [json.loads(x) for x in log.read_text().splitlines()]


def test_int8_without_amct_is_not_available(digits, tmp_path, cli, ascend_plugin):
    res = cli("convert", str(digits["model"]), "--to", "ascend", "-p", "int8", "--calib", str(digits["calib"]),
              "-O", "soc_version=Ascend310P3", "--prepare-only", "-o", str(tmp_path / "o"))
    assert res.exit_code == 3
    assert "INT8 for Ascend is not available here: it needs AMCT (amct_onnx)" in res.stderr
    assert "amct_python" in res.stderr and not (tmp_path / "o").exists()


def test_the_documented_amct_flow_in_process(digits, tmp_path, ascend_plugin, standin_amct, monkeypatch):
    root, log = standin_amct
    monkeypatch.syspath_prepend(str(root))
    out = tmp_path / "o"
    r = edgeconv.convert(digits["model"], "ascend", precision="int8", calibration=digits["calib"], output=out,
                         data=digits["test"], memory=False,
                         options={"soc_version": "Ascend310P3", "prepare_only": True, "calib_limit": 40,
                                  "amct_skip_layers": "/fc/Gemm"})
    assert r.exit_code == 3
    assert [c["call"] for c in calls(log)] == ["create_quant_config", "quantize_model", "save_model"]
    first = calls(log)[0]
    assert first == {"call": "create_quant_config", "batch_num": 40, "skip_layers": ["/fc/Gemm"],
                     "activation_offset": True, "config_defination": None}
    assert calls(log)[2]["save_path_is_prefix"]
    kit = json.loads((out / "atc.json").read_text())
    assert kit["onnx"] == "digits_cnn.deploy.onnx" and "--model=digits_cnn.deploy.onnx" in kit["atc"]["argv"]
    assert "--precision_mode=force_fp16" in kit["atc"]["argv"]
    details = json.loads((out / "manifest.json").read_text())["details"]["amct"]
    assert details["where"] == "in-process" and details["samples"] == 40 and details["batch_size"] == 1
    ver = details["verification"]
    assert ver["checked"] and ver["runtime"] == "onnxruntime (CPU)" and ver["data"] == str(digits["test"])


def test_amct_in_another_interpreter(digits, tmp_path, ascend_plugin, standin_amct, monkeypatch):
    root, log = standin_amct
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]))
    r = edgeconv.convert(digits["model"], "ascend", precision="int8", calibration=digits["calib"],
                         output=tmp_path / "o", memory=False, verify=False,
                         options={"soc_version": "Ascend310P3", "prepare_only": True, "calib_limit": 8,
                                  "amct_python": sys.executable})
    assert r.exit_code == 3
    assert [c["call"] for c in calls(log)] == ["create_quant_config", "quantize_model", "save_model"]
    details = json.loads((tmp_path / "o" / "manifest.json").read_text())["details"]["amct"]
    assert details["where"] == sys.executable and details["amct_version"] == "stand-in"
