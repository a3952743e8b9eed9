"""Honest precision on OpenVINO (issue #17 sections 1, 2, 3, 6): the IR's share of MACs at int8/fp16 (If bodies
included), NNCF inside If bodies, the runtime settings stored in the IR and a plain ``compile_model`` checked, the
mixed-range recipe, and a pre-check that names the node that fails to convert. Models: tests/test_precision_models.py.

On the previous main (8fc35da): int8 of the If model failed inside NNCF ("The BiasCorrection algorithm is not
supported for OpenVINO models with If operation", exit 4); the pre-check of the rankless model blamed "squeeze
(Squeeze), passthrough (Identity), logits (If)"; the IR carried no runtime settings and a plain load was never run.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

sys.path.insert(0, str(Path(__file__).parents[3] / "tests"))
import edgeconv  # noqa: E402
from edgeconv.errors import UnsupportedOperators  # noqa: E402
from test_precision_models import (  # noqa: E402
    bf16_sensitive_model,
    head_files,
    head_model,
    if_files,
    rankless_if_model,
    score_errors,
)

pytest.importorskip("nncf")
COMMON = dict(runs=2, warmup=1, memory=False)


def test_int8_inside_if_bodies(tmp_path):
    f = if_files(tmp_path)
    res = edgeconv.convert(str(f["model"]), "openvino", precision="int8", calibration=str(f["calib"]),
                           data=str(f["data"]), output=tmp_path / "o", thresholds={"top1": 0.9}, **COMMON)
    details = res.report["artifact"]["details"]
    share = details["precision_share"]
    assert share["counted_in"] == "OpenVINO IR" and share["pass"] is True
    assert share["macs"]["in_subgraphs"] == share["macs"]["total"] > 0 and share["share"] == 1.0
    assert details["quantization"]["bias_correction"] == "none"
    assert any("bias correction is off" in w for w in res.report["warnings"])
    assert min(x["cosine"] for x in res.report["fidelity"]) > 0.98
    assert res.exit_code == 0, res.report["verdict"]


def test_ir_share_of_float_and_fp16_irs(tmp_path):
    from edgeconv_openvino.precision import ir_share

    import openvino as ov
    from edgeconv.sensitivity import share_failure

    path = tmp_path / "head.onnx"
    onnx.save(head_model(), str(path))
    ov.save_model(ov.convert_model(str(path)), str(tmp_path / "f16.xml"), compress_to_fp16=True)
    ov.save_model(ov.convert_model(str(path)), str(tmp_path / "f32.xml"), compress_to_fp16=False)
    core = ov.Core()
    half = ir_share(core.read_model(str(tmp_path / "f16.xml")), "fp16")
    assert half["share"] == 1.0 and half["macs"]["total"] == 391168  # the 4 convolutions of the head
    fp32_as_int8 = ir_share(core.read_model(str(tmp_path / "f32.xml")), "int8")
    assert fp32_as_int8["share"] == 0.0
    assert share_failure(fp32_as_int8).startswith("0 of 391,168 MACs are int8")
    assert ir_share(core.read_model(str(tmp_path / "f32.xml")), "fp16")["share"] == 0.0


def test_runtime_settings_in_the_ir_and_the_plain_load_checked(tmp_path):
    """fp32 is verified with INFERENCE_PRECISION_HINT=f32; a plain compile_model on a CPU with AVX512-BF16/AMX
    computes in bf16, which this model cannot take: the check says so and names the settings to deploy with."""
    import openvino as ov

    path = tmp_path / "bf16.onnx"
    onnx.save(bf16_sensitive_model(), str(path))
    x = np.random.default_rng(0).random((16, 1, 32), dtype=np.float32)
    np.savez(tmp_path / "data.npz", x=x)
    res = edgeconv.convert(str(path), "openvino", precision="fp32", data=str(tmp_path / "data.npz"),
                           output=tmp_path / "o", **COMMON)
    assert res.report["runtime"]["artifact"]["precision_hint"] == "f32"
    assert all(f["pass"] for f in res.report["fidelity"]), res.report["fidelity"]  # what was verified passes
    xml = tmp_path / "o" / "bf16.xml"
    model = ov.Core().read_model(str(xml))
    assert model.get_rt_info(["runtime_options", "INFERENCE_PRECISION_HINT"]).astype(str) == "f32"
    details = res.report["artifact"]["details"]
    assert details["ir"]["rt_info_runtime_options"]["INFERENCE_PRECISION_HINT"] == "f32"
    plain = details["plain_load"]
    measured = ov.Core().compile_model(str(xml), "CPU").get_property("INFERENCE_PRECISION_HINT")
    assert plain["precision_hint"] == measured.to_string()  # what a plain load really picks, read back
    assert plain["deploy_config"]["INFERENCE_PRECISION_HINT"] == "f32"
    if plain["precision_hint"] == "f32":  # a CPU without bf16: the plain load is what was verified
        assert plain["same_as_verified"] and plain["pass"] and res.exit_code == 0
    else:  # a host with avx512_bf16 or AMX: bf16 breaks the model even at bf16's gates, and the verdict says so
        assert plain["pass"] is False and plain["fidelity"][0]["cosine"] < 0.99
        assert res.exit_code == 1 and res.report["verdict"]["decided_by"] == "deployment"
        # a deployment that passes the printed properties says so: the plain load then only warns
        warned = edgeconv.convert(str(path), "openvino", precision="fp32", data=str(tmp_path / "data.npz"),
                                  output=tmp_path / "w", options={"plain_load": "warn"}, **COMMON)
        assert warned.exit_code == 0 and "deployment" not in warned.report["artifact"]["details"]
        assert any("INFERENCE_PRECISION_HINT" in w for w in warned.report["warnings"])
        assert "compile_model(xml, 'CPU', {'INFERENCE_PRECISION_HINT': 'f32'" in plain["reason"]
        assert any("INFERENCE_PRECISION_HINT" in w for w in res.report["warnings"])


def _cpu_has_bf16() -> bool:
    import openvino as ov

    return "BF16" in [str(c) for c in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")]


def test_a_plain_load_that_fails_fails_the_verdict(tmp_path):
    path = tmp_path / "bf16.onnx"
    onnx.save(bf16_sensitive_model(), str(path))
    np.savez(tmp_path / "data.npz", x=np.random.default_rng(0).random((16, 1, 32), dtype=np.float32))
    res = edgeconv.convert(str(path), "openvino", data=str(tmp_path / "data.npz"), output=tmp_path / "o", **COMMON)
    if res.report["artifact"]["details"]["plain_load"]["same_as_verified"]:
        assert res.exit_code == 0  # a CPU without bf16: nothing else to check
    else:  # a CPU with bf16: the plain load computes in bf16 and is held to bf16's gates; the verdict reads it
        plain = res.report["artifact"]["details"]["plain_load"]
        assert plain["gates"] == "bf16" and _cpu_has_bf16()
        assert res.report["artifact"]["details"]["deployment"]["pass"] is plain["pass"]
        if plain["pass"]:
            assert res.exit_code == 0
        else:
            assert res.exit_code == 1 and res.report["verdict"]["decided_by"] == "deployment"
            assert "plain compile_model" in res.report["verdict"]["reason"]


def test_mixed_range_head_keeps_its_scores(tmp_path):
    f = head_files(tmp_path)
    res = edgeconv.convert(str(f["model"]), "openvino", precision="int8", calibration=str(f["calib"]),
                           data=str(f["data"]), output=tmp_path / "o", **COMMON)
    q = res.report["artifact"]["details"]["quantization"]
    (recipe,) = q["mixed_range_float"]
    assert recipe["concat"] == "head_concat"
    assert {"output0", "box_reshape", "cls_reshape"} <= set(q["mixed_range_ov_names"])  # the Concat is named after its output
    assert res.report["artifact"]["details"]["precision_share"]["share"] == 1.0
    from edgeconv.artifacts import open_artifact
    from edgeconv.verification.runners import make_runner

    art, manifest = open_artifact(tmp_path / "o")
    x = np.load(f["data"])["images"]
    src = edgeconv.load(str(f["model"]))
    with make_runner(src) as a, make_runner(art, **manifest["runner_options"]) as b:
        ref = np.concatenate([a.infer({"images": x[i:i + 1]})["output0"] for i in range(len(x))])
        got = np.concatenate([b.infer({"images": x[i:i + 1]})["output0"] for i in range(len(x))])
    _, scores = score_errors(ref, got)
    assert scores < 0.05


def test_precheck_names_the_conv_of_unknown_rank_in_the_branch(tmp_path):
    path = tmp_path / "rankless.onnx"
    onnx.save(rankless_if_model(), str(path))
    with pytest.raises(UnsupportedOperators) as err:
        edgeconv.convert(str(path), "openvino", output=tmp_path / "o", verify=False)
    text = err.value.one_line()
    assert "_conv1 (Conv)" in text and "rank" in text and "inside the subgraph of If 'branch'" in text, text
    assert "Identity" not in text and "Squeeze" not in text, text
