"""``--precision auto``'s layer fallback ranks by the trace of the built int8 artifact first (``edgeconv.debug.ranking``)
and by the fake-quant simulation (``edgeconv.sensitivity.rank``) when no tracer can run or the trace ranking finds no
set; the report says which ranking the result came from."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from edgeconv import auto, convert  # noqa: E402
from edgeconv.debug import ranking, tracers  # noqa: E402
from edgeconv.report import Budgets  # noqa: E402
from edgeconv.request import ConversionRequest  # noqa: E402
from test_sensitivity import outlier_files  # noqa: E402

COMMON = {"budgets": Budgets(max_accuracy_drop=1.0), "runs": 5, "memory": False, "precisions": ("int8",),
          "tune": "off"}


def test_the_trace_ranking_decides_where_a_tracer_exists(tmp_path):
    f = outlier_files(tmp_path)
    res = convert(str(f["model"]), "onnxruntime", precision="auto", calibration=str(f["calib"]), data=str(f["test"]),
                  output=tmp_path / "o", **COMMON)
    assert res.exit_code == 0, res.report["verdict"]
    sens = res.report["auto"]["sensitivity"]
    assert sens["ranking"] == "trace" and sens["ranked_by"].startswith("trace (onnxruntime, isolated)")
    assert sens["trace"]["mode"] == "isolated" and sens["trace"]["samples"] == ranking.SAMPLES
    assert sens["ranked"][0]["node"] == "conv2" and sens["ranked"][0]["misses_gates"]
    assert sens["keep_float"] == ["conv2"] and len(sens["trials"]) == 1
    assert "rank_seconds" not in sens  # the simulation never ran


def test_without_a_tracer_the_simulation_ranks(tmp_path, monkeypatch):
    f = outlier_files(tmp_path)
    monkeypatch.setattr(tracers, "find", lambda form: (None, "no tracer in this test"))
    res = convert(str(f["model"]), "onnxruntime", precision="auto", calibration=str(f["calib"]), data=str(f["test"]),
                  output=tmp_path / "o", **COMMON)
    sens = res.report["auto"]["sensitivity"]
    assert sens["ranking"] == "fake-quant" and sens["trace"]["why_not"] == "no tracer in this test"
    assert sens["keep_float"] == ["conv2"] and sens["rank_seconds"] > 0


def test_the_simulation_takes_over_when_the_trace_ranking_finds_nothing(tmp_path):
    """A trace ranking that names only fc (kept float, int8 still fails): the search over it gives up, the simulated
    ranking finds conv2 within the trials left."""
    f = outlier_files(tmp_path)
    seen = []

    def wrong(proto, ref_io, artifact, feeds, **kw):
        seen.append(artifact.form)
        return {"ranked": [{"node": "fc", "op_type": "Gemm", "score": 1.0, "sqnr_db": 0.0}], "ranked_by": "test"}

    steer = {k: v for k, v in COMMON.items() if k in ("precisions", "tune")}
    req = ConversionRequest.build(str(f["model"]), "onnxruntime", precision="auto", calibration=str(f["calib"]),
                                  data=str(f["test"]), output=tmp_path / "o",
                                  **{k: v for k, v in COMMON.items() if k not in steer})
    res = auto.convert_auto(req, trace_ranking=wrong, **steer)
    sens = res.report["auto"]["sensitivity"]
    assert seen == ["onnx"]  # given the built int8 artifact
    assert sens["ranking"] == "fake-quant" and sens["found"] and sens["keep_float"] == ["conv2"]
    assert sens["trials"][0] == {"keep_float": ["fc"], "pass": False, "step": "top 1"}
    assert res.exit_code == 0


def test_accumulated_trace_ranking_on_openvino(tmp_path):
    """OpenVINO cannot feed a layer the source's tensors: the ranking reads the accumulated trace, where each layer is
    charged the error it adds to its inputs'."""
    from edgeconv import manifest
    from edgeconv.debug import layers

    f = outlier_files(tmp_path)
    res = convert(str(f["model"]), "openvino", precision="int8", calibration=str(f["calib"]), output=tmp_path / "ov",
                  verify=False, memory=False)
    artifact, record = manifest.load_artifact(res.artifact)
    artifact.runner_options = record["runner_options"]
    req = layers.reference_request(str(f["model"]), record)
    prepared = layers.prepare_reference(req)
    feeds = layers.feeds_for(prepared.model.io, str(f["test"]), 8, 0, [])
    out = ranking.rank_by_trace(prepared.model.obj, prepared.model.io, artifact, feeds)
    assert out["mode"] == "accumulated" and out["ranked_by"].startswith("trace (openvino, accumulated)")
    first = out["ranked"][0]
    assert first["node"] == "conv2" and first["misses_gates"] and first["tensor"] == "c2"
    assert {r["node"] for r in out["ranked"]} <= {"conv1", "conv2", "gap", "fc"}  # keep_float's candidates only


def test_no_trace_ranking_when_the_trace_does_not_show_the_failure(tmp_path):
    """An int8 artifact whose outputs meet the per-layer gates (a verdict that failed would have failed on a slice or
    a task check): the layers' own errors cannot say which one matters, so the simulation ranks."""
    from edgeconv import manifest
    from edgeconv.debug import layers
    from test_debug_layers import chain

    src = tmp_path / "chain.onnx"
    import numpy as np
    import onnx

    onnx.save(chain(), str(src))
    np.savez(tmp_path / "calib.npz", input=np.random.default_rng(2).random((16, 3, 16, 16), dtype=np.float32))
    res = convert(str(src), "onnxruntime", precision="int8", calibration=str(tmp_path / "calib.npz"),
                  output=tmp_path / "o", verify=False, memory=False)
    artifact, record = manifest.load_artifact(res.artifact)
    prepared = layers.prepare_reference(layers.reference_request(str(src), record))
    feeds = layers.feeds_for(prepared.model.io, str(tmp_path / "calib.npz"), 8, 0, [])
    out = ranking.rank_by_trace(prepared.model.obj, prepared.model.io, artifact, feeds)
    assert out["ranked"] is None and out["why_not"].startswith("the trace does not show the failure")
