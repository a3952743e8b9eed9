"""The ais_bench runner, against a stand-in ais_bench package (ascend_testutil) on a host given fake NPU device
nodes. The stand-in runs fake_atc's placeholder .om (a copy of the ONNX) with onnxruntime after emulating AIPP from
the documented formulas: these tests exercise the runner's calls, its AIPP buffers, gears and output naming.
Nothing here is an NPU, ais_bench or an .om; the verdicts below are the stand-in's, not Ascend's."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import onnx

sys.path.insert(0, str(Path(__file__).parent))
from ascend_testutil import rgb_model  # noqa: E402

import edgeconv  # noqa: E402
from edgeconv.data import Preprocess  # noqa: E402

OPTS = {"soc_version": "Ascend310B4", "atc_precheck": False}


def calls(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def test_npu_without_ais_bench_says_so(digits, tmp_path, ascend_plugin, fake_atc, fake_npu):
    r = edgeconv.convert(digits["model"], "ascend", precision="fp16", output=tmp_path / "o", memory=False,
                         options=OPTS)
    assert r.exit_code == 3 and "has an Ascend NPU but no ais_bench" in r.report["verdict"]["reason"]


def test_in_process_runner_verifies(digits, tmp_path, cli, ascend_plugin, fake_atc, fake_npu, standin_ais_bench):
    out = tmp_path / "o"
    r = edgeconv.convert(digits["model"], "ascend", precision="fp16", output=out, memory=False, runs=3,
                         data=digits["test"], options={**OPTS, "device": 1})
    assert r.exit_code == 0, r.report["verdict"]
    assert r.report["runtime"]["artifact"]["runtime"] == "ais_bench InferSession (in-process)"
    assert r.report["runtime"]["artifact"]["device"] == "npu:1 Ascend310B4"
    assert r.report["accuracy"]["artifact"] == r.report["accuracy"]["source"]
    log = calls(standin_ais_bench)
    assert log[0]["call"] == "InferSession" and log[0]["device_id"] == 1
    assert log[0]["model_path"].endswith("/digits_cnn.om")
    infers = [c for c in log if c["call"] == "infer"]
    assert infers[0] == {"call": "infer", "mode": "static", "shapes": [[1, 1, 8, 8]], "dtypes": ["float32"]}
    assert log[-1] == {"call": "finalize"}
    # and `edgeconv verify` of the folder, later, the same way (its manifest's runner settings are all declared)
    res = cli("verify", str(digits["model"]), str(out), "--data", str(digits["test"]), "--runs", "2",
              "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["fidelity"][0]["pass"]


def test_aipp_and_gears_through_the_runner(tmp_path, ascend_plugin, fake_atc, fake_npu, standin_ais_bench):
    onnx.save(rgb_model(batch="n"), str(tmp_path / "rgb.onnx"))
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (6, 8, 8, 3))
    data = tmp_path / "val.npz"
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    x = ((pixels / 255 - np.array(mean)) / np.array(std)).astype(np.float32).transpose(0, 3, 1, 2)
    np.savez(data, image=x)
    r = edgeconv.convert(tmp_path / "rgb.onnx", "ascend", precision="fp16", output=tmp_path / "o", memory=False,
                         runs=2, data=str(data), preprocess=Preprocess(mean=mean, std=std),
                         options={**OPTS, "aipp": True, "aipp_input": "bgr", "dynamic_batch": "1,2,4"})
    assert r.exit_code == 0, r.report["verdict"]
    f = r.report["fidelity"][0]
    assert f["cosine"] > 0.99999 and f["max_abs"] < 1e-4  # the uint8 pixels are the images themselves
    log = calls(standin_ais_bench)
    assert {"call": "set_dynamic_batchsize", "value": "1"} in log
    infer = next(c for c in log if c["call"] == "infer")
    assert infer["shapes"] == [[1, 8, 8, 3]] and infer["dtypes"] == ["uint8"]  # BGR frames, HWC, uint8


def standin_python(tmp_path: Path) -> Path:
    """The interpreter EDGECONV_AIS_BENCH_PYTHON names on this 'host': it insists on ``-I -m ais_bench`` with no
    PYTHONPATH, then runs the stand-in ais_bench package (the folder the fixture wrote) as ``-m ais_bench`` would."""
    root = tmp_path / "standin-ais-bench"
    path = tmp_path / "ais-python"
    path.write_text("#!/bin/sh\n"
                    '[ "$1 $2 $3" = "-I -m ais_bench" ] || { echo "not isolated: $*" >&2; exit 9; }\n'
                    '[ -z "${PYTHONPATH:-}" ] || { echo "PYTHONPATH leaked" >&2; exit 9; }\n'
                    "shift 3\n"
                    f'exec "{sys.executable}" -I -c "import runpy, sys; sys.path.insert(0, {str(root)!r}); '
                    "runpy.run_module('ais_bench', run_name='__main__', alter_sys=True)\" \"$@\"\n")
    path.chmod(0o755)
    return path


def test_cli_runner(digits, tmp_path, ascend_plugin, fake_atc, fake_npu, standin_ais_bench, monkeypatch):
    python = standin_python(tmp_path)
    monkeypatch.setenv("EDGECONV_AIS_BENCH_PYTHON", str(python))
    z = np.load(digits["test"])
    data = tmp_path / "few.npz"
    np.savez(data, input=z["input"][:3], labels=z["labels"][:3])
    r = edgeconv.convert(digits["model"], "ascend", precision="fp16", output=tmp_path / "o", memory=False, runs=1,
                         warmup=1, data=str(data), options={**OPTS, "runner": "cli"})
    assert r.exit_code == 0, r.report["verdict"]
    art = r.report["runtime"]["artifact"]
    assert art["runtime"] == f"ais_bench CLI ({python} -I -m ais_bench, a process per inference)"
    assert art["latency_includes"] == "process start and model load on every call"
    cli_calls = [c["argv"] for c in calls(standin_ais_bench) if c["call"] == "cli"]
    assert len(cli_calls) == 3 + 1 + 1  # 3 samples, 1 warm-up, 1 timed run: a process each
    argv = cli_calls[0]
    assert argv[0] == "--model" and argv[1].endswith("/digits_cnn.om")
    assert argv[2] == "--input" and argv[3].endswith("in1_0.npy")
    assert argv[4:] == ["--output", argv[5], "--output_dirname", "run1", "--outfmt", "NPY", "--device", "0",
                        "--loop", "1", "--warmup_count", "0"]
