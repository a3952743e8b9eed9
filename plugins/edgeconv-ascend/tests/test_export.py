"""``edgeconv convert --to ascend`` as a user meets it: without CANN, prepare-only, and the full path against
fake_atc -- a stand-in for ATC written by the test (ascend_testutil.FAKE_ATC) that records its arguments and writes
a placeholder file. fake_atc converts nothing; these tests check edgeconv's side of the process boundary (the
command line, no shell, logs, error codes, the output folder and the report), never ATC."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from ascend_testutil import fake_atc_calls, rgb_model  # noqa: E402
from edgeconv_ascend import cann  # noqa: E402

import edgeconv  # noqa: E402

SOC = ("-O", "soc_version=Ascend310B4")


def test_registered_through_the_entry_point_with_its_options(cli, ascend_plugin):
    rows = {r["name"]: r for r in json.loads(cli("targets", "--json").stdout)["targets"]}
    row = rows["ascend"]
    assert row["provider"] == "edgeconv-ascend" and row["precisions"] == ["fp16", "fp32", "int8"]
    assert row["status"] == "missing" and 'pip install "edgeconv[ascend]"' in row["hint"] and "set_env.sh" in row["hint"]
    assert {"soc_version", "prepare_only", "aipp", "dynamic_batch", "precision_flag", "extra_args", "device",
            "out_nodes", "log"} <= {o["name"] for o in row["options"]}


def test_hooks_import_nothing_heavy():
    code = ("import sys, edgeconv_ascend.hooks; "
            "print(','.join(m for m in ('onnx', 'onnxruntime', 'numpy', 'ais_bench', 'amct_onnx') if m in sys.modules))")
    src = str(Path(__file__).resolve().parents[1] / "src")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env).stdout
    assert out.strip() == ""


def test_no_cann_is_exit_3_with_the_hint_and_nothing_written(digits, tmp_path, cli, ascend_plugin):
    out = tmp_path / "o"
    res = cli("convert", str(digits["model"]), "--to", "ascend", "-p", "fp16", *SOC, "-o", str(out))
    assert res.exit_code == 3
    line = res.stderr.strip()
    assert len(line.splitlines()) == 1
    assert "needs Huawei CANN toolkit (atc)" in line and "set_env.sh" in line and "--prepare-only" in line
    assert not out.exists()


def test_a_cann_installed_but_not_sourced_is_named(tmp_path, monkeypatch):
    root = tmp_path / "Ascend"
    (root / "ascend-toolkit" / "latest" / "x86_64-linux").mkdir(parents=True)
    (root / "ascend-toolkit" / "set_env.sh").write_text("export ASCEND_TOOLKIT_HOME=...\n")
    monkeypatch.setattr(cann, "INSTALL_ROOTS", (str(root),))
    from edgeconv_ascend.atc import no_atc

    err = no_atc({})
    assert f"not set up in this shell: source {root}/ascend-toolkit/set_env.sh" in err.one_line()


def test_prepare_only_writes_the_kit_and_exits_3(digits, tmp_path, cli, ascend_plugin):
    out = tmp_path / "digits-ascend"
    res = cli("convert", str(digits["model"]), "--to", "ascend", "-p", "fp16", *SOC, "-o", str(out), "--json",
              "--prepare-only", "--input-shape", "input:1x1x8x8,8x1x8x8,32x1x8x8")
    assert res.exit_code == 3, res.output
    report = json.loads(res.stdout)
    assert sorted(p.name for p in out.iterdir()) == ["atc.json", "atc.sh", "digits_cnn.onnx", "manifest.json",
                                                     "report.json"]
    verdict = report["verdict"]
    assert verdict["status"] == "not-run" and verdict["exit_code"] == 3
    assert "prepare-only was asked; this host has no atc anyway" in verdict["reason"]
    assert f"cd {out} && sh atc.sh" in verdict["reason"]
    kit = json.loads((out / "atc.json").read_text())
    assert kit["atc"]["argv"] == [
        "atc", "--framework=5", "--model=digits_cnn.onnx", "--output=digits_cnn", "--soc_version=Ascend310B4",
        "--input_shape=input:-1,1,8,8", "--input_format=NCHW", "--dynamic_batch_size=1,8,32",
        "--precision_mode=force_fp16", "--log=error"]
    assert (out / "atc.sh").read_text().splitlines()[-1] == '"$ATC" ' + kit["atc"]["command"].split(" ", 1)[1]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["form"] == "om" and manifest["artifact"][0] == "atc.json"
    assert manifest["details"]["shapes"]["cpu_check"] == {"checked": True, "runtime": "onnxruntime (CPU)", "gears": 3}
    # the ONNX for ATC takes every gear (the core pinned 8; the plugin made the batch dynamic again)
    model = onnx.load(str(out / "digits_cnn.onnx"))
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "input_d0"
    res = cli("verify", str(digits["model"]), str(out))
    assert res.exit_code == 3 and "ais_bench on an Ascend host" in res.stderr


def test_the_soc_is_required(digits, tmp_path, cli, ascend_plugin):
    res = cli("convert", str(digits["model"]), "--to", "ascend", "--prepare-only", "-o", str(tmp_path / "o"))
    assert res.exit_code == 2 and "-O soc_version=Ascend<Name>" in res.stderr and "npu-smi info" in res.stderr


def test_the_full_path_against_fake_atc(digits, tmp_path, cli, ascend_plugin, fake_atc):
    out = tmp_path / "o"
    res = cli("convert", str(digits["model"]), "--to", "ascend", "-p", "fp16", *SOC, "-o", str(out), "--json",
              "-O", "atc_precheck=false", "-O", "log=info")
    assert res.exit_code == 3, res.output  # built, but this host cannot run an .om
    report = json.loads(res.stdout)
    calls = fake_atc_calls(fake_atc)
    assert len(calls) == 1
    staging = Path(calls[0][2].split("=", 1)[1]).parent  # the output's staging folder, renamed into place after
    assert calls[0] == ["--framework=5", f"--model={staging}/digits_cnn.onnx", f"--output={staging}/digits_cnn",
                        "--soc_version=Ascend310B4", "--input_shape=input:1,1,8,8", "--input_format=NCHW",
                        "--precision_mode=force_fp16", "--log=info"]
    assert sorted(p.name for p in out.iterdir()) == [
        "atc.json", "atc.log", "atc.sh", "digits_cnn.fake_atc.json", "digits_cnn.om", "digits_cnn.onnx",
        "manifest.json", "report.json"]
    verdict = report["verdict"]
    assert verdict["status"] == "not-run" and verdict["exit_code"] == 3
    assert "this host has no Ascend NPU" in verdict["reason"] and "the .om cannot run here" in verdict["reason"]
    assert f"edgeconv verify <source model> {out}" in verdict["reason"]
    assert report["runtime"] == {"artifact": "not run", "reason": verdict["reason"]}
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["form"] == "om" and manifest["artifact"][0] == "digits_cnn.om" and "atc.log" in manifest["artifact"]
    assert manifest["io"]["inputs"][0]["shape"] == [1, 1, 8, 8]  # the dynamic batch was built for 1
    assert manifest["details"]["build"]["built"] is True and manifest["tools"]["soc_version"] == "Ascend310B4"
    assert manifest["runner_options"]["output_names"] == ["logits"]
    assert "ATC run success" in (out / "atc.log").read_text()
    assert (out / "atc.log").read_text().startswith("# " + str(fake_atc))


def test_arguments_pass_literally_without_a_shell(digits, tmp_path, ascend_plugin, fake_atc):
    """Issue #12: spaces, quotes and ';' in paths, input names and extra arguments reach atc as they are."""
    odd = tmp_path / 'dir with "quotes"; and spaces'
    odd.mkdir()
    model = rgb_model()
    model.graph.input[0].name = 'the "image" input'
    model.graph.node[0].input[0] = 'the "image" input'
    onnx.save(model, str(odd / "m; rm -rf x.onnx"))
    out = odd / "out; echo pwned"
    extra = json.dumps(['--fusion_switch_file=/a b/"c";d.cfg', "--op_select_implmode=high_performance"])
    r = edgeconv.convert(odd / "m; rm -rf x.onnx", "ascend", precision="fp16", output=out, memory=False,
                         options={"soc_version": "Ascend910B3", "atc_precheck": False, "extra_args": extra})
    assert r.exit_code == 3
    (call,) = fake_atc_calls(fake_atc)
    staging = Path(call[1].split("=", 1)[1]).parent
    assert staging.parent == odd
    assert call == ["--framework=5", f"--model={staging}/m; rm -rf x.onnx", f"--output={staging}/m; rm -rf x",
                    "--soc_version=Ascend910B3", '--input_shape=the "image" input:1,3,8,8', "--input_format=NCHW",
                    "--precision_mode=force_fp16", "--log=error", '--fusion_switch_file=/a b/"c";d.cfg',
                    "--op_select_implmode=high_performance"]
    assert (out / "m; rm -rf x.om").is_file() and not (tmp_path / "pwned").exists()


def test_atc_errors_reach_the_one_line_error_with_the_log(digits, tmp_path, cli, ascend_plugin, fake_atc,
                                                          monkeypatch):
    monkeypatch.setenv("FAKE_ATC_FAIL", "E19010")
    out = tmp_path / "o"
    res = cli("convert", str(digits["model"]), "--to", "ascend", *SOC, "-o", str(out), "-O", "atc_precheck=false")
    assert res.exit_code == 4, res.output
    line = res.stderr.strip()
    assert len(line.splitlines()) == 1 and "export" in line
    log = tmp_path / "o.atc.log"
    assert "ATC failed (exit 1; E19010 -- E19010: no ONNX parser is registered for an operator at this opset)" in line
    assert "E19010: No parser is registered for Op [Conv_52, optype [ai.onnx::11::Convx]]" in line
    assert f"(log: {log})" in line and "an operator this CANN / SoC does not support" in line
    assert "ATC run failed" in log.read_text()
    assert not out.exists()


def test_gears_and_aipp_reach_atc(tmp_path, ascend_plugin, fake_atc):
    onnx.save(rgb_model(batch="n"), str(tmp_path / "rgb.onnx"))
    out = tmp_path / "o"
    pixels = np.random.default_rng(0).integers(0, 256, (8, 8, 8, 3))
    data = tmp_path / "val.npz"
    np.savez(data, image=((pixels / 255 - 0.5) / 0.25).astype(np.float32).transpose(0, 3, 1, 2))
    from edgeconv.data import Preprocess

    r = edgeconv.convert(tmp_path / "rgb.onnx", "ascend", precision="fp16", output=out, memory=False, data=str(data),
                         preprocess=Preprocess(mean=(0.5,), std=(0.25,)),
                         options={"soc_version": "Ascend310P3", "atc_precheck": False, "aipp": True,
                                  "aipp_input": "bgr", "dynamic_batch": "1,2,4"})
    assert r.exit_code == 3
    (call,) = fake_atc_calls(fake_atc)
    staging = Path(call[1].split("=", 1)[1]).parent
    assert call[4:9] == ["--input_shape=image:-1,3,8,8", "--input_format=NCHW", "--dynamic_batch_size=1,2,4",
                         "--precision_mode=force_fp16", f"--insert_op_conf={staging}/aipp.cfg"]
    assert "rbuv_swap_switch : true" in (out / "aipp.cfg").read_text()
    manifest = json.loads((out / "manifest.json").read_text())
    pix = manifest["io"]["inputs"][0]
    assert (pix["dtype"], pix["layout"], pix["shape"]) == ("uint8", "NHWC", ["n", 8, 8, 3])
    assert pix["scale"] == pytest.approx(1 / 63.75) and pix["zero_point"] == pytest.approx(127.5)
    assert manifest["io"]["preprocessing"]["aipp"]["fed"] == "bgr"
    assert manifest["source_io"]["inputs"][0]["dtype"] == "float32"
    kit = json.loads((out / "atc.json").read_text())
    assert "--insert_op_conf=aipp.cfg" in kit["atc"]["argv"]


def _only_ascend(plugins, monkeypatch):
    monkeypatch.setenv("EDGECONV_LOAD_PLUGINS", "ascend")
    plugins.reset()
    if "ascend" not in plugins.registry().targets:  # not installed: the checkout's hooks, in-process
        from edgeconv_ascend import hooks

        plugins.register_plugin(hooks, "ascend", dist="edgeconv-ascend")


def test_doctor_finds_cann_and_says_what_is_missing(tmp_path, monkeypatch, fake_atc, cli, ascend_plugin):
    home = tmp_path / "Ascend" / "ascend-toolkit" / "latest"
    (home / "x86_64-linux").mkdir(parents=True)
    (home / "x86_64-linux" / "ascend_toolkit_install.info").write_text(
        "package_name=Ascend-cann-toolkit\nversion=8.0.RC2\narch=x86_64\nos=linux\n")
    (home.parent / "set_env.sh").write_text("# stand-in\n")
    monkeypatch.setattr(cann, "INSTALL_ROOTS", (str(tmp_path / "Ascend"),))
    monkeypatch.setenv("ASCEND_TOOLKIT_HOME", str(home))
    info = cann.doctor()
    assert info["cann"]["atc"] == str(fake_atc) and info["cann"]["version"] == "8.0.RC2"
    assert info["cann"]["home_from"] == "$ASCEND_TOOLKIT_HOME" and info["can_convert"] and not info["can_run"]
    missing = {m["what"]: m for m in info["missing"]}
    assert "/dev/davinci" in missing["an Ascend NPU (only needed to run the .om: verify, bench)"]["why"]
    assert "ais_bench" in " ".join(missing) and "amct_onnx" in " ".join(missing)
    _only_ascend(ascend_plugin, monkeypatch)  # the other plugins' deep checks are slow and not ours
    doc = json.loads(cli("doctor", "--json").stdout)["targets"]["ascend"]
    assert doc["status"] == "ready" and doc["details"]["cann"]["version"] == "8.0.RC2"


def test_doctor_without_anything(monkeypatch, cli, ascend_plugin):
    info = cann.doctor()
    first = info["missing"][0]
    assert first["what"] == "the CANN toolkit (atc)" and "set_env.sh" in first["fix"]
    assert info["can_convert"] is False
    _only_ascend(ascend_plugin, monkeypatch)
    doc = json.loads(cli("doctor", "--json").stdout)["targets"]["ascend"]
    assert doc["status"] == "missing" and doc["details"]["missing"][0]["what"] == "the CANN toolkit (atc)"


def test_atc_precheck_runs_before_the_conversion(digits, tmp_path, ascend_plugin, fake_atc):
    out = tmp_path / "o"
    r = edgeconv.convert(digits["model"], "ascend", precision="fp16", output=out, memory=False,
                         options={"soc_version": "Ascend310B4"})
    assert r.exit_code == 3
    first, second = fake_atc_calls(fake_atc)
    staging = Path(second[1].split("=", 1)[1]).parent
    assert first[0] == "--mode=3" and first[-1] == f"--check_report={staging}/atc_precheck.json"
    assert first[4:-1] == second[3:]  # the same settings (soc, shapes, precision, log)
    assert first[2].endswith("/_precheck.onnx") and not any(a.startswith("--mode=") for a in second)
    manifest = json.loads((out / "manifest.json").read_text())
    assert {"atc_precheck.json", "atc_precheck.log"} <= set(manifest["artifact"])
    assert manifest["details"]["atc_precheck"] == {"ran": True, "report": "atc_precheck.json", "warnings": []}
