"""Honest precision on the onnxruntime target (issue #17 sections 1, 2, 6): the share of the compute actually at
int8/fp16 (control-flow bodies included), If branches quantized, a mixed-range output Concat kept float, and errors
that say what to do. Models: tests/test_precision_models.py.

On the previous main (8fc35da) the If and Loop models both came back "int8, pass" with 0 quantized nodes and the
head model's scores were rounded to 0 or 1.25 (max score error 0.58) under a pass.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

sys.path.insert(0, str(Path(__file__).parent))
import edgeconv  # noqa: E402
from edgeconv import sensitivity  # noqa: E402
from edgeconv.errors import ToolchainFailed  # noqa: E402
from test_precision_models import (  # noqa: E402
    gemm_bias_model,
    head_files,
    if_files,
    loop_model,
    same_names_if_model,
    score_errors,
)

COMMON = dict(runs=2, warmup=1, memory=False)


def _pass(report: dict, name: str) -> dict:
    return next(p for p in report["passes"] if p["name"] == name)


def _outputs(model: Path, artifact: Path, data: Path, name: str) -> tuple[np.ndarray, np.ndarray]:
    import onnxruntime as ort

    x = np.load(data)
    feed_name = x.files[0]
    so = ort.SessionOptions()
    so.log_severity_level = 3
    a = ort.InferenceSession(str(model), so, providers=["CPUExecutionProvider"])
    b = ort.InferenceSession(str(artifact), so, providers=["CPUExecutionProvider"])
    refs, outs = [], []
    for i in range(len(x[feed_name])):
        feed = {feed_name: x[feed_name][i:i + 1]}
        refs.append(a.run([name], feed)[0])
        outs.append(b.run([name], feed)[0])
    return np.concatenate(refs), np.concatenate(outs)


def test_if_branches_are_quantized_and_the_share_says_so(tmp_path):
    f = if_files(tmp_path)
    res = edgeconv.convert(str(f["model"]), "onnxruntime", precision="int8", calibration=str(f["calib"]),
                           data=str(f["data"]), output=tmp_path / "o", thresholds={"top1": 0.9}, **COMMON)
    info = _pass(res.report, "ort.quantize_static")
    share = info["precision_share"]
    assert share["requested"] == "int8" and share["basis"] == "macs"
    assert share["macs"]["in_subgraphs"] == share["macs"]["total"] > 0  # all the compute sits in the branches ...
    assert share["share"] == 1.0  # ... and all of it is int8 now (was 0 of N)
    assert {b["branch"] for b in info["if_branches"]} == {"branch.then_branch", "branch.else_branch"}
    assert all(0 < b["samples_taking_it"] < 32 for b in info["if_branches"])  # each calibrated on its own samples
    assert res.report["artifact"]["details"]["precision_share"] == share
    q = onnx.load(str(tmp_path / "o" / "ifnet.onnx"))
    branch = next(n for n in q.graph.node if n.op_type == "If")
    for attr in branch.attribute:
        assert sum(n.op_type == "DequantizeLinear" for n in attr.g.node) >= 6
    assert res.report["artifact"]["size_bytes"] < 0.7 * f["model"].stat().st_size
    assert min(x["cosine"] for x in res.report["fidelity"]) > 0.999
    assert res.exit_code == 0, res.report["verdict"]


def _loop_int8(tmp_path: Path):
    f = if_files(tmp_path, loop_model(), "loopnet")
    return edgeconv.convert(str(f["model"]), "onnxruntime", precision="int8", calibration=str(f["calib"]),
                            data=str(f["data"]), output=tmp_path / "o", thresholds={"top1": 0.9}, **COMMON)


def test_a_network_in_a_loop_body_is_reported_as_not_int8(tmp_path):
    res = _loop_int8(tmp_path)
    share = res.report["artifact"]["details"]["precision_share"]
    assert share["pass"] is False and share["share"] == 0.0
    assert share["reason"].startswith("0 of ") and "MACs are int8" in share["reason"]
    assert "subgraphs of Loop node 'loop'" in share["reason"]
    assert _pass(res.report, "ort.quantize_static")["precision_share"] == share
    assert any(w.startswith("not int8: 0 of ") for w in res.report["warnings"])


def test_a_network_in_a_loop_body_fails_the_verdict(tmp_path):
    res = _loop_int8(tmp_path)
    assert res.exit_code == 1 and res.report["verdict"]["decided_by"] == "precision"


def test_share_of_a_float_model_and_its_rule():
    share = sensitivity.precision_share(loop_model(), "int8")
    assert share["share"] == 0.0 and share["macs"]["total"] == share["macs"]["in_subgraphs"] > 0
    assert "subgraphs of Loop node 'loop'" in sensitivity.share_failure(share)
    assert sensitivity.share_failure(sensitivity.precision_share(loop_model(), "fp32")) is None
    # nodes kept in float on purpose do not count against the model
    kept = sensitivity.precision_share(loop_model(), "int8", ["net_conv1", "net_conv2", "net_fc"])
    assert kept["macs"]["kept_float"] == kept["macs"]["total"] and sensitivity.share_failure(kept) is None


def test_fp16_inside_branches_with_same_weight_names(tmp_path):
    """onnxruntime's float16 converter asserted unique initializer names across subgraphs (a bare AssertionError)."""
    f = if_files(tmp_path, same_names_if_model(), "samenames")
    res = edgeconv.convert(str(f["model"]), "onnxruntime", precision="fp16", data=str(f["data"]),
                           output=tmp_path / "o", **COMMON)
    info = _pass(res.report, "onnx.fp16")
    assert info["subgraph_initializers_renamed"]
    assert info["precision_share"]["share"] == 1.0 and info["precision_share"]["macs"]["in_subgraphs"] > 0
    assert res.exit_code == 0, res.report["verdict"]


def test_a_bare_assertion_gets_a_one_line_cause(tmp_path, monkeypatch):
    import onnxruntime.transformers.float16 as f16

    def broken(*args, **kwargs):
        raise AssertionError  # what a bare ``assert`` in the converter raises

    monkeypatch.setattr(f16, "convert_float_to_float16", broken)
    f = if_files(tmp_path)
    with pytest.raises(ToolchainFailed) as err:
        edgeconv.convert(str(f["model"]), "onnxruntime", precision="fp16", output=tmp_path / "o", verify=False)
    text = err.value.one_line()
    assert "FP16 conversion failed: AssertionError in " in text and "raise AssertionError" in text, text
    assert isinstance(err.value.__cause__, AssertionError)  # the traceback --debug prints


def test_gemm_bias_of_shape_1xn_quantizes_per_channel(tmp_path):
    path = tmp_path / "gemm.onnx"
    onnx.save(gemm_bias_model(1), str(path))
    res = edgeconv.convert(str(path), "onnxruntime", precision="int8", calibration="random", output=tmp_path / "o",
                           verify=False)
    assert any("Gemm bias" in w for w in res.report["warnings"])
    assert _pass(res.report, "ort.quantize_static")["precision_share"]["share"] == 1.0


def test_the_per_channel_quantizer_crash_names_cause_and_remedy(tmp_path):
    path = tmp_path / "gemm2.onnx"
    onnx.save(gemm_bias_model(2), str(path))  # a [2, N] bias: nothing to flatten, the quantizer still crashes
    with pytest.raises(ToolchainFailed) as err:
        edgeconv.convert(str(path), "onnxruntime", precision="int8", calibration="random", output=tmp_path / "o",
                         verify=False)
    text = err.value.one_line()
    assert "per-channel weight" in text and "-O per_channel=false" in text, text
    assert err.value.__cause__ is not None  # chained: --debug shows the quantizer's traceback
    res = edgeconv.convert(str(path), "onnxruntime", precision="int8", calibration="random", output=tmp_path / "o",
                           verify=False, options={"per_channel": False})  # the remedy works
    assert _pass(res.report, "ort.quantize_static")["precision_share"]["share"] == 1.0


def test_mixed_range_output_keeps_its_scores(tmp_path):
    f = head_files(tmp_path)
    common = dict(calibration=str(f["calib"]), data=str(f["data"]), **COMMON)
    res = edgeconv.convert(str(f["model"]), "onnxruntime", precision="int8", output=tmp_path / "recipe", **common)
    info = _pass(res.report, "ort.quantize_static")
    (recipe,) = info["mixed_range_float"]
    assert recipe["concat"] == "head_concat" and recipe["ratio"] > 100
    assert set(recipe["keep_float"]) == {"head_concat", "box_reshape", "cls_reshape"}
    assert any("concatenates ranges" in w for w in res.report["warnings"])
    assert info["precision_share"]["share"] == 1.0  # every MAC still int8
    _, scores = score_errors(*_outputs(f["model"], tmp_path / "recipe" / "head.onnx", f["data"], "output0"))
    assert scores < 0.05  # probabilities stay probabilities

    # onnxruntime's quantizer as it is (what edgeconv did before): one scale for the whole output
    from onnxruntime.quantization import QuantFormat, quantize_static

    class Reader:
        def __init__(self):
            x = np.load(f["calib"])["images"]
            self.it = iter({"images": x[i:i + 1]} for i in range(len(x)))

        def get_next(self):
            return next(self.it, None)

    quantize_static(str(f["model"]), str(tmp_path / "plain.onnx"), Reader(), quant_format=QuantFormat.QDQ,
                    per_channel=True)
    _, scores = score_errors(*_outputs(f["model"], tmp_path / "plain.onnx", f["data"], "output0"))
    assert scores > 0.3  # one scale for pixels and probabilities: every score is 0 or ~1.25


def test_the_recipe_can_be_turned_off_and_the_contract_then_fails_it(tmp_path):
    """-O mixed_range_float=false (the option the recipe's warning names) is a declared option of the target: the
    output gets one scale, the scores are destroyed, and the per-slice contract fails the conversion."""
    f = head_files(tmp_path)
    res = edgeconv.convert(str(f["model"]), "onnxruntime", precision="int8", output=tmp_path / "plain",
                           calibration=str(f["calib"]), data=str(f["data"]), options={"mixed_range_float": False},
                           **COMMON)
    assert "mixed_range_float" not in _pass(res.report, "ort.quantize_static")
    _, scores = score_errors(*_outputs(f["model"], tmp_path / "plain" / "head.onnx", f["data"], "output0"))
    assert scores > 0.3
    out = res.report["fidelity"][0]
    assert res.exit_code == 1 and not out["slices"]["pass"] and out["slices"]["worst"]["index"] >= 4, out


def test_ranking_puts_the_mixed_range_concat_first():
    """--precision auto's layer ranking quantizes a Concat's output as the quantizers do (one scale for all its
    inputs): the head's final Concat ranks first (it was not a cost before: only its inputs were quantized)."""
    from test_precision_models import head_model

    x = np.random.default_rng(1).random((8, 3, 32, 32), dtype=np.float32)
    feeds = [{"images": x[i:i + 1]} for i in range(len(x))]
    ranked = sensitivity.rank(head_model(), feeds, feeds)
    assert ranked[0]["node"] == "head_concat"
    assert ranked[0]["score"] > 2 * ranked[1]["score"]
