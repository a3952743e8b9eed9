"""INT8 through AMCT, against a stand-in ``amct_onnx`` (written by the test; it records the documented calls and
copies the model where AMCT would write its quantised ones -- it quantises nothing). Without AMCT, INT8 is a clear
"not available" (exit 3)."""

from __future__ import annotations

import json
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
    # INT8 is the ascend.amct pass: its figures are the pass's info in the report, its settings in the manifest
    passes = {p["name"]: p for p in r.report["passes"]}
    details = passes["ascend.amct"]
    assert details["kind"] == "precision" and details["form"] == "onnx"
    assert details["where"] == "in-process" and details["samples"] == 40 and details["batch_size"] == 1
    ver = details["verification"]
    assert ver["checked"] and ver["runtime"] == "onnxruntime (CPU)" and ver["data"] == str(digits["test"])
    manifest = json.loads((out / "manifest.json").read_text())
    recorded = {p["name"]: p for p in manifest["passes"]}["ascend.amct"]["settings"]
    assert recorded["skip_layers"] == ["/fc/Gemm"] and recorded["activation_offset"] is True
    assert manifest["tools"]["amct"] == "stand-in" and manifest["details"]["int8"]["onnx"] == "digits_cnn.deploy.onnx"


def isolated_interpreter(path, root):
    """A stand-in interpreter for -O amct_python: it insists on being run isolated (``-I``: no PYTHONPATH, no script
    folder on sys.path) and then runs the script with the stand-in amct_onnx importable -- as an environment that
    has AMCT installed would."""
    path.write_text("#!/bin/sh\n"
                    '[ "$1" = "-I" ] || { echo "not isolated: $*" >&2; exit 9; }\n'
                    '[ -z "${PYTHONPATH:-}" ] || { echo "PYTHONPATH leaked: $PYTHONPATH" >&2; exit 9; }\n'
                    "shift\n"
                    f'exec "{sys.executable}" -I -c "import runpy, sys; sys.path.insert(0, {str(root)!r}); '
                    "sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')\" \"$@\"\n")
    path.chmod(0o755)
    return path


def test_amct_in_another_interpreter(digits, tmp_path, ascend_plugin, standin_amct, monkeypatch):
    root, log = standin_amct
    python = isolated_interpreter(tmp_path / "amct-python", root)
    monkeypatch.setenv("PYTHONPATH", str(root))  # the caller's PYTHONPATH never reaches the child
    monkeypatch.chdir(tmp_path)
    r = edgeconv.convert(digits["model"], "ascend", precision="int8", calibration=digits["calib"],
                         output=tmp_path / "o", memory=False, verify=False,
                         options={"soc_version": "Ascend310P3", "prepare_only": True, "calib_limit": 8,
                                  "amct_python": str(python)})
    assert r.exit_code == 3
    assert [c["call"] for c in calls(log)] == ["create_quant_config", "quantize_model", "save_model"]
    details = {p["name"]: p for p in r.report["passes"]}["ascend.amct"]
    assert details["where"] == str(python) and details["amct_version"] == "stand-in"


def test_amct_failing_in_its_interpreter_is_exit_4_naming_it(digits, tmp_path, cli, ascend_plugin):
    python = tmp_path / "python"
    python.write_text('#!/bin/sh\necho "ModuleNotFoundError: No module named amct_onnx" >&2\nexit 1\n')
    python.chmod(0o755)
    res = cli("convert", str(digits["model"]), "--to", "ascend", "-p", "int8", "--calib", str(digits["calib"]),
              "-O", "soc_version=Ascend310P3", "--prepare-only", "-O", f"amct_python={python}", "-o",
              str(tmp_path / "o"))
    assert res.exit_code == 4 and f"AMCT ({python}) failed (exit 1)" in res.stderr and "amct_onnx" in res.stderr
    assert not (tmp_path / "o").exists()


def test_without_atc_int8_stops_before_amct_runs(digits, tmp_path, cli, ascend_plugin, standin_amct, monkeypatch):
    root, log = standin_amct
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.setenv("ASCEND_TOOLKIT_HOME", str(tmp_path / "no-toolkit"))  # the requirement met, atc absent
    res = cli("convert", str(digits["model"]), "--to", "ascend", "-p", "int8", "--calib", str(digits["calib"]),
              "-O", "soc_version=Ascend310P3", "-o", str(tmp_path / "o"))
    assert res.exit_code == 3 and "cannot run ATC here" in res.stderr
    assert not log.exists()  # the pre-check refused before the INT8 pass did any work


def test_int8_through_the_pass_then_fake_atc_then_the_runner(digits, tmp_path, ascend_plugin, standin_amct, fake_atc,
                                                              fake_npu, standin_ais_bench, monkeypatch):
    """The chain on stand-ins: ascend.amct's deploy model is what ATC is given (and ATC's own pre-check too), and the
    .om (fake_atc's placeholder) is verified through the runner. The stand-in AMCT quantises nothing: this checks
    the hand-offs, not INT8."""
    from ascend_testutil import fake_atc_calls

    root, log = standin_amct
    monkeypatch.syspath_prepend(str(root))
    out = tmp_path / "o"
    r = edgeconv.convert(digits["model"], "ascend", precision="int8", calibration=digits["calib"], output=out,
                         data=digits["test"], memory=False, runs=2,
                         options={"soc_version": "Ascend310P3", "calib_limit": 16})
    assert r.exit_code == 0, r.report["verdict"]
    assert [c["call"] for c in calls(log)] == ["create_quant_config", "quantize_model", "save_model"]
    precheck_call, build_call = fake_atc_calls(fake_atc)
    assert precheck_call[0] == "--mode=3" and precheck_call[2].endswith("/_precheck.onnx")
    assert build_call[1].endswith("/digits_cnn.deploy.onnx") and "--precision_mode=force_fp16" in build_call
    assert r.report["passes"][-1]["name"] == "ascend.amct" and r.report["versions"]["amct"] == "stand-in"
    assert (out / "digits_cnn.deploy.onnx").is_file() and r.report["accuracy"]["drop_pp"] == 0
