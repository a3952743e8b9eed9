"""The GPU half: build fp16 and int8 engines for the digits CNN and ResNet-18, verify them against
the source on the TensorRT runtime, benchmark them, and reload them through the manifest check.

These tests skip only when this machine has no NVIDIA GPU or no TensorRT, and say which probe
failed. They have not run on the machines this plugin was written on (no GPU there): see
docs/targets/tensorrt.md, "What ran where".
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from edgeconv_tensorrt import doctor as probes

import edgeconv

pytestmark = pytest.mark.gpu


def _missing() -> list[str]:
    missing = []
    py = probes.python_tensorrt()
    if not py["found"]:
        missing.append(f"tensorrt Python module: {py['error']}")
    probe = probes._probe()
    if "error" in probe:
        missing.append(f"NVIDIA GPU: {probe['error']}")
    if probes.cuda_runtime_version() is None:
        missing.append("CUDA runtime: libcudart not found")
    return missing


@pytest.fixture
def gpu(trt_plugin):
    missing = _missing()
    if missing:
        pytest.skip("needs an NVIDIA GPU and TensorRT: not present on this machine (" + "; ".join(missing) + ")")
    return probes.gpu_info(0)


def _check_engine(result, out, gpu):
    assert result.exit_code == 0, result.report["verdict"]
    assert result.report["runtime"]["artifact"]["runtime"].startswith("tensorrt ")
    plan = next(out.glob("*.plan"))
    assert plan.stat().st_size > 0
    manifest = json.loads((out / "manifest.json").read_text())
    engine = manifest["details"]["engine"]
    assert engine["gpu"] == gpu["name"] and engine["compute_capability"] == gpu["compute_capability"]
    assert engine["tensorrt"] and engine["cuda_runtime"]
    bench = edgeconv.bench(out, runs=20, memory=False)
    assert bench["form"] == "tensorrt" and bench["latency_ms"]["p50"] > 0
    return manifest


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_digits_engine(precision, digits, tmp_path, gpu):
    out = tmp_path / precision
    r = edgeconv.convert(digits["model"], "tensorrt", precision=precision, calibration=digits["calib"],
                         data=digits["test"], output=out, runs=20, memory=False)
    _check_engine(r, out, gpu)
    assert r.report["accuracy"]["drop_pp"] <= 0.5
    assert all(f["pass"] for f in r.report["fidelity"])
    if precision == "int8":
        assert {p["name"]: p for p in r.report["passes"]}["tensorrt.qdq"]["verification"]["pass"]
    again = edgeconv.verify(digits["model"], out, data=digits["test"], runs=5, memory=False)
    assert again.exit_code == 0


@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_resnet18_engine_with_a_profile(precision, tmp_path, gpu):
    torch = pytest.importorskip("torch")
    from edgeconv.testing import refnets

    model, x = refnets.build("resnet18")
    path = tmp_path / "resnet18.onnx"
    torch.onnx.export(model, (x,), str(path), dynamo=False, opset_version=17, input_names=["input"],
                      output_names=["output"], dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}})
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "calib.npz", input=rng.standard_normal((32, 3, 224, 224), dtype=np.float32))
    np.savez(tmp_path / "data.npz", input=rng.standard_normal((8, 3, 224, 224), dtype=np.float32))
    out = tmp_path / precision
    # random weights fed noise: near-tied logits make top-1 agreement meaningless (docs/fidelity.md), so
    # the check is cosine and SQNR at the precision's thresholds
    r = edgeconv.convert(path, "tensorrt", precision=precision, calibration=tmp_path / "calib.npz",
                         data=tmp_path / "data.npz", output=out, runs=20, memory=False, thresholds={"top1": 0.0},
                         input_shapes=["input:1x3x224x224,4x3x224x224,8x3x224x224"])
    manifest = _check_engine(r, out, gpu)
    assert manifest["details"]["engine"]["profiles"]["input"]["max"] == [8, 3, 224, 224]
    f = r.report["fidelity"][0]
    assert f["pass"] and f["cosine"] >= (0.999 if precision == "fp16" else 0.98)


def test_a_plan_recorded_for_another_tensorrt_is_refused_before_loading(digits, tmp_path, gpu):
    out = tmp_path / "o"
    r = edgeconv.convert(digits["model"], "tensorrt", precision="fp16", output=out, verify=False)
    assert r.exit_code == 0
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["runner_options"]["engine"]["tensorrt"] = "8.5.2.2"
    (out / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(edgeconv.errors.ToolchainMissing, match="is not 8.5.2"):
        edgeconv.verify(digits["model"], out, runs=1, memory=False)
