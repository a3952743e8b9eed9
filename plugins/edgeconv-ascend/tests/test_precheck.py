"""Operator pre-check against ATC's documented ONNX support: unsupported ops, opset problems, the fixes as hints,
and ATC's own pre-check (atc --mode=3) when an atc is on PATH (here: fake_atc, a stand-in that records its call)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, str(Path(__file__).parent))
from ascend_testutil import fake_atc_calls  # noqa: E402
from edgeconv_ascend.precheck import check_proto, supported, table  # noqa: E402


def resize_model(opset=13, mode="linear", nearest_mode=None, computed_sizes=False, extra=(), extra_opsets=None):
    inits = [numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales")]
    nodes = []
    if computed_sizes:  # sizes from Shape -> Mul: not a constant until folded
        inits.append(numpy_helper.from_array(np.array([1, 1, 2, 2], np.int64), "two"))
        nodes += [helper.make_node("Shape", ["x"], ["shape"], name="shape"),
                  helper.make_node("Mul", ["shape", "two"], ["sizes"], name="mul")]
        inputs = ["x", "", "", "sizes"]
    else:
        inputs = ["x", "", "scales"]
    attrs = {"mode": mode, **({"nearest_mode": nearest_mode} if nearest_mode else {})}
    nodes.append(helper.make_node("Resize", inputs, ["y"], name="resize_1", **attrs))
    nodes += list(extra)
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 16, 16])], inits)
    imports = [helper.make_opsetid("", opset)] + [helper.make_opsetid(d, v) for d, v in (extra_opsets or {}).items()]
    model = helper.make_model(graph, opset_imports=imports)
    model.ir_version = 8
    return model


def test_the_table_names_its_cann_version_and_sources():
    t = table()
    assert t["schema"] == "edgeconv.ascend.operators/1" and t["opset_range"] == [8, 18]
    assert "CANN 9.0.0" in t["cann"]["documented"] and "v9~v18" in t["cann"]["opset_range"]
    sources = {s["id"]: s for s in t["sources"]}
    assert sources["registry"]["path"].endswith("op_map/onnx.yaml") and sources["registry"]["commit"]
    assert "atlasoxol_09_0131" in sources["resize"]["url"]
    assert t["operators"]["Resize"]["documented"] == "10-12,14-18"
    assert len(t["operators"]) > 150


@pytest.mark.parametrize("op,opset,ok,fix", [
    ("Conv", 11, True, ""), ("Conv", 18, True, ""), ("Resize", 11, True, ""),
    ("Resize", 13, False, "re-export at opset 11"),
    ("HardSwish", 13, False, "re-export at opset 17"),
    ("GridSample", 13, False, "registered opsets are 11,16-18"),
    ("LayerNormalization", 17, True, ""),
    ("QuantizeLinear", 13, False, "AMCT"), ("Loop", 13, False, "torch.jit.trace"),
    ("Unique", 11, False, "not in ATC's ONNX operator list"), ("MadeUpOp", 11, False, "no parser is registered"),
])
def test_support_per_op_and_opset(op, opset, ok, fix):
    got, reason = supported(op, opset)
    assert got is ok and fix in reason


def test_unsupported_ops_are_flagged_with_their_fixes():
    model = resize_model(opset=13, extra=[
        helper.make_node("Unique", ["y"], ["u"], name="uniq_1"),
        helper.make_node("FusedGemm", ["y", "y"], ["g"], name="ms_1", domain="com.microsoft")],
        extra_opsets={"com.microsoft": 1})
    found = {u.node: u for u in check_proto(model)}
    assert set(found) == {"resize_1", "uniq_1", "ms_1"}
    assert "documented opsets are 10-12,14-18" in found["resize_1"].reason
    assert "re-export at opset 11" in found["resize_1"].reason
    assert "ai.onnx ops only" in found["ms_1"].reason and found["ms_1"].op_type == "com.microsoft::FusedGemm"
    assert not any(u.fallback for u in found.values())


def test_an_opset_outside_the_parser_range_is_one_problem_for_the_model():
    found = check_proto(resize_model(opset=19))
    assert [(u.node, u.op_type) for u in found] == [("<model>", "opset 19")]
    assert "opsets 8..18" in found[0].reason and "opset_version=17" in found[0].reason


def test_resize_constraints():
    found = check_proto(resize_model(opset=11, mode="cubic"))
    assert found[0].reason.startswith("mode 'cubic'") and not found[0].fallback
    found = check_proto(resize_model(opset=11, mode="nearest", nearest_mode="floor"))
    assert found[0].fallback and "round_prefer_ceil" in found[0].reason
    computed = resize_model(opset=11, computed_sizes=True)
    assert check_proto(computed) == []  # before the passes: onnx.simplify usually folds it
    assert "computed in the graph" in check_proto(computed, final=True)[0].reason


def _save(model, path):
    onnx.save(model, str(path))
    return path


def test_cli_refuses_with_the_reasons_before_the_long_work(tmp_path, cli, ascend_plugin):
    src = _save(resize_model(opset=13), tmp_path / "m.onnx")
    res = cli("convert", str(src), "--to", "ascend", "-O", "soc_version=Ascend310B4", "--prepare-only",
              "-o", str(tmp_path / "o"))
    assert res.exit_code == 4, res.output
    line = res.stderr.strip()
    assert len(line.splitlines()) == 1 and "precheck" in line
    assert "resize_1 (Resize: Resize at opset 13" in line and "re-export at opset 11" in line
    assert not (tmp_path / "o").exists()
    res = cli("convert", str(src), "--to", "ascend", "-O", "soc_version=Ascend310B4", "--prepare-only",
              "-o", str(tmp_path / "o"), "-O", "precheck=warn", "--json")
    assert res.exit_code == 3, res.output
    assert any("resize_1" in w and "precheck=warn" in w for w in json.loads(res.stdout)["warnings"])


def test_atc_mode3_runs_when_atc_is_installed(tmp_path, digits, ascend_plugin, fake_atc, monkeypatch):
    import edgeconv

    monkeypatch.setenv("FAKE_ATC_PRECHECK_FAIL", "/fc/Gemm:Gemm")
    out = tmp_path / "o"
    with pytest.raises(edgeconv.errors.UnsupportedOperators, match="/fc/Gemm .Gemm: ATC's pre-check: not supported"):
        edgeconv.convert(digits["model"], "ascend", precision="fp16", output=out,
                         options={"soc_version": "Ascend310P3"})
    calls = fake_atc_calls(fake_atc)
    assert len(calls) == 1 and calls[0][0] == "--mode=3"
    assert calls[0][1] == "--framework=5" and calls[0][2].startswith("--model=") and calls[0][2].endswith("_precheck.onnx")
    assert calls[0][4] == "--soc_version=Ascend310P3"
    assert calls[0][-1].startswith("--check_report=") and calls[0][-1].endswith("atc_precheck.json")
    assert not out.exists()
