"""``edgeconv convert --to tensorrt`` as a user meets it on a host without TensorRT or a GPU, and the
build path with a stand-in trtexec (what reaches the manifest); plus doctor and registration."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from edgeconv_tensorrt import doctor as probes  # noqa: E402
from trt_testutil import args_of  # noqa: E402

import edgeconv  # noqa: E402


def test_registered_through_the_entry_point_with_its_options(cli, trt_plugin):
    rows = {r["name"]: r for r in json.loads(cli("targets", "--json").stdout)["targets"]}
    row = rows["tensorrt"]
    assert row["provider"] == "edgeconv-tensorrt" and row["precisions"] == ["fp32", "fp16", "int8"]
    assert row["status"] == "missing" and 'pip install "edgeconv[jetson]"' in row["hint"]
    assert {"prepare_only", "target_trt", "workspace_mib", "version_compatible", "hardware_compatibility",
            "timing_cache", "quantizer", "qdq_data"} <= {o["name"] for o in row["options"]}


def test_hooks_import_nothing_heavy():
    code = ("import sys, edgeconv_tensorrt.hooks; "
            "print(','.join(m for m in ('tensorrt', 'onnx', 'onnxruntime', 'numpy') if m in sys.modules))")
    src = str(Path(__file__).resolve().parents[1] / "src")  # also when the plugin is not installed
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env).stdout.strip()
    assert out == ""


def test_no_tensorrt_is_exit_3_with_the_hint_and_nothing_written(digits, tmp_path, cli, trt_plugin):
    out = tmp_path / "o"
    res = cli("convert", str(digits["model"]), "--to", "tensorrt", "-p", "fp16", "-o", str(out))
    assert res.exit_code == 3
    assert 'pip install "edgeconv[jetson]"' in res.stderr and "--prepare-only" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    assert not out.exists()


def test_prepare_only_writes_the_build_kit_and_exits_3(digits, tmp_path, cli, trt_plugin):
    out = tmp_path / "digits-trt"
    res = cli("convert", str(digits["model"]), "--to", "tensorrt", "-p", "fp16", "-o", str(out), "--json",
              "--input-shape", "input:1x1x8x8,16x1x8x8,64x1x8x8", "--prepare-only", "-O", "workspace_mib=512")
    assert res.exit_code == 3, res.output
    report = json.loads(res.stdout)
    assert sorted(p.name for p in out.iterdir()) == ["build.json", "digits_cnn.onnx", "manifest.json", "report.json",
                                                     "trtexec.sh"]
    assert report["verdict"]["status"] == "not-run" and report["verdict"]["exit_code"] == 3
    reason = report["verdict"]["reason"]
    assert "prepare-only" in reason and f"cd {out} && bash trtexec.sh" in reason
    build = json.loads((out / "build.json").read_text())
    assert build["trtexec"]["argv"] == [
        "trtexec", "--onnx=digits_cnn.onnx", "--saveEngine=digits_cnn.plan", "--skipInference", "--fp16", "--noTF32",
        "--minShapes=input:1x1x8x8", "--optShapes=input:16x1x8x8", "--maxShapes=input:64x1x8x8",
        "--memPoolSize=workspace:512", "--timingCacheFile=timing.cache"]
    assert build["settings"]["tensorrt"] == "10.3"  # no TensorRT here: JetPack 6's version is the target
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["form"] == "tensorrt" and manifest["artifact"] == ["build.json", "digits_cnn.onnx", "trtexec.sh"]
    # the preparation is a pass (tensorrt.prepare): its info in the report, its settings in the manifest
    prepare = {p["name"]: p for p in report["passes"]}["tensorrt.prepare"]
    assert prepare["kind"] == "precision" and prepare["form"] == "onnx" and prepare["target_tensorrt"] == "10.3"
    assert prepare["profiles"]["input"]["max"] == [64, 1, 8, 8] and prepare["profile_check"]["batch_consistent"]
    fp16 = report["passes"][-1]  # fp16 on TensorRT 10.3: the builder's flag, not a change of the ONNX
    assert fp16["name"] == "tensorrt.fp16" and fp16["applied"] is False
    recorded = {p["name"]: p for p in manifest["passes"]}["tensorrt.prepare"]["settings"]
    assert recorded["profiles"]["input"]["max"] == [64, 1, 8, 8] and recorded["opset"] == 17
    assert manifest["runner_options"] == {"prepared_only": True, "command": f"cd {out} && bash trtexec.sh"}
    # the prepared ONNX really takes the whole profile
    sess = ort.InferenceSession(str(out / "digits_cnn.onnx"), providers=["CPUExecutionProvider"])
    x = np.load(digits["test"])["input"]
    assert sess.run(None, {"input": x[:64]})[0].shape == (64, 10)
    # and `edgeconv verify` on the kit says what is missing instead of crashing
    res = cli("verify", str(digits["model"]), str(out))
    assert res.exit_code == 3 and "TensorRT" in res.stderr


def test_trtexec_without_a_gpu_is_exit_3_naming_the_gpu(digits, tmp_path, cli, trt_plugin, fake_trtexec):
    res = cli("convert", str(digits["model"]), "--to", "tensorrt", "-o", str(tmp_path / "o"))
    assert res.exit_code == 3, res.output
    assert "no NVIDIA GPU to build on" in res.stderr and "--gpus all" in res.stderr
    res = cli("convert", str(digits["model"]), "--to", "tensorrt", "-o", str(tmp_path / "o"), "-O", "prepare_only=true",
              "--json")
    assert res.exit_code == 3 and "this host could not build anyway: no NVIDIA GPU" in json.loads(res.stdout)["verdict"]["reason"]


def test_a_build_with_trtexec_records_the_engine_in_the_manifest(digits, tmp_path, trt_plugin, fake_trtexec,
                                                                 monkeypatch):
    gpu = {"index": 0, "name": "Orin", "compute_capability": "8.7"}
    monkeypatch.setattr(probes, "_probe", lambda: {"driver": "12.6", "gpus": [gpu]})
    monkeypatch.setattr(probes, "cuda_runtime_version", lambda: "12.6")
    out = tmp_path / "o"
    r = edgeconv.convert(digits["model"], "tensorrt", precision="int8", calibration=digits["calib"], output=out,
                         input_shapes=["input:1x1x8x8,8x1x8x8,32x1x8x8"], memory=False,
                         options={"calib_limit": 50, "qdq_data": str(digits["test"]), "qdq_limit": 100})
    # built by (fake) trtexec; running it needs the tensorrt module, which this host lacks: exit 3, said so
    assert r.exit_code == 3 and "needs the tensorrt Python module" in r.report["verdict"]["reason"]
    assert (out / "digits_cnn.plan").read_text() == "fake-plan"
    sent = args_of(fake_trtexec)
    assert sent[0].startswith("--onnx=") and sent[0].endswith("/digits_cnn.qdq.onnx")
    assert sent[2:4] == ["--skipInference", "--int8"] and "--maxShapes=input:32x1x8x8" in sent
    manifest = json.loads((out / "manifest.json").read_text())
    engine = manifest["details"]["engine"]
    assert engine["tensorrt"] == "10.3.0" and engine["gpu"] == "Orin" and engine["compute_capability"] == "8.7"
    assert engine["cuda_runtime"] == "12.6" and engine["builder"] == "trtexec"
    assert engine["profiles"]["input"] == {"min": [1, 1, 8, 8], "opt": [8, 1, 8, 8], "max": [32, 1, 8, 8]}
    assert manifest["runner_options"]["engine"] == engine
    assert manifest["artifact"][0] == "digits_cnn.plan" and "build.log" in manifest["artifact"]
    assert manifest["tools"]["tensorrt"] == "10.3.0" and "Orin" in manifest["tools"]["gpu"]


def test_target_version_must_match_the_builder_unless_prepare_only(digits, tmp_path, trt_plugin, fake_trtexec,
                                                                  monkeypatch):
    monkeypatch.setattr(probes, "_probe", lambda: {"driver": "12.6", "gpus": [{"index": 0, "name": "Orin",
                                                                                "compute_capability": "8.7"}]})
    with pytest.raises(edgeconv.errors.BadInput, match="target_trt=8.6, but this host builds with TensorRT 10.3.0"):
        edgeconv.convert(digits["model"], "tensorrt", output=tmp_path / "o", options={"target_trt": "8.6"},
                         verify=False)
    r = edgeconv.convert(digits["model"], "tensorrt", output=tmp_path / "o", verify=False,
                         options={"target_trt": "8.6", "prepare_only": True})
    assert json.loads((tmp_path / "o" / "build.json").read_text())["settings"]["tensorrt"] == "8.6"
    assert r.exit_code == 3


def test_doctor_reports_what_is_missing_with_the_fix(fake_trtexec):
    info = probes.doctor()
    assert info["trtexec"] == {"path": str(fake_trtexec), "version": "10.3.0"}
    missing = {m["what"]: m for m in info["missing"]}
    assert any("tensorrt Python module" in w for w in missing)
    gpu = missing["an NVIDIA GPU"]
    assert "libcuda" in gpu["why"] and "--gpus all" in gpu["fix"]
    assert info["can_build"] is False and info["can_run"] is False


def test_doctor_without_anything(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(probes, "JETPACK_TRTEXEC", str(tmp_path / "nope"))
    info = probes.doctor()
    first = info["missing"][0]
    assert first["what"].startswith("TensorRT") and "nvidia-jetpack" in first["fix"] and "pip install tensorrt" in first["fix"]


def test_strongly_typed_fp16_is_an_fp16_onnx(digits, tmp_path, cli, trt_plugin):
    """TensorRT 11 has no FP16 builder flag: the precision must be in the ONNX (IO kept float32)."""
    import onnx

    out = tmp_path / "o"
    res = cli("convert", str(digits["model"]), "--to", "tensorrt", "-p", "fp16", "-o", str(out), "--json",
              "-O", "prepare_only=true", "-O", "target_trt=11.0")
    assert res.exit_code == 3, res.output
    argv = json.loads((out / "build.json").read_text())["trtexec"]["argv"]
    assert argv[1] == "--onnx=digits_cnn.fp16.onnx" and not {"--fp16", "--stronglyTyped", "--noTF32"} & set(argv)
    fp16 = {p["name"]: p for p in json.loads(res.stdout)["passes"]}["tensorrt.fp16"]
    assert fp16["applied"] and fp16["settings"]["io_float32"]
    model = onnx.load(str(out / "digits_cnn.fp16.onnx"))
    assert sum(i.data_type == onnx.TensorProto.FLOAT16 for i in model.graph.initializer) >= 4
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    x = np.load(digits["test"])["input"][:1]
    half = ort.InferenceSession(str(out / "digits_cnn.fp16.onnx"), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    ref = ort.InferenceSession(str(digits["model"]), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    assert half.dtype == np.float32 and np.abs(half - ref).max() < 1e-2 * np.abs(ref).max()
