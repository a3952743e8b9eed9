"""Operator pre-check against TensorRT's documented ONNX support, per target version."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from onnx import helper, numpy_helper

sys.path.insert(0, str(Path(__file__).parent))
from edgeconv_tensorrt.precheck import check_proto, supported, table  # noqa: E402
from edgeconv_tensorrt.versions import TrtVersion  # noqa: E402
from trt_testutil import conv_model, save  # noqa: E402


def v(text):
    return TrtVersion.parse(text)


def test_the_table_names_its_sources_and_covers_both_releases():
    t = table()
    assert t["schema"] == "edgeconv.tensorrt.operators/1"
    sources = {s["id"]: s for s in t["sources"]}
    assert sources["operators-8.5"]["repo"] == "onnx/onnx-tensorrt" and sources["operators-8.5"]["path"] == "docs/operators.md"
    assert "TensorRT 10.15" in sources["operators-10.15"]["version"] and "Changelog" in sources["changelog"]["path"]
    ops = t["operators"]
    assert len(ops) > 180 and all(e["trt8"] in "YN-" and e["trt10"] in "YN-" for e in ops.values())
    assert ops["Conv"]["trt8"] == ops["Conv"]["trt10"] == "Y" and ops["Unique"]["trt10"] == "N"
    assert ops["DequantizeLinear"]["restrictions_trt10"] == "`x_zero_point` must be zero"


@pytest.mark.parametrize("op,version,ok", [
    ("Conv", "8.5", True), ("Unique", "10.15", False), ("NonZero", "8.5", True),
    ("LayerNormalization", "8.5", False), ("LayerNormalization", "8.6", True), ("LayerNormalization", "10.3", True),
    ("Hardmax", "8.6", False), ("Hardmax", "10.0", True),
    ("HannWindow", "10.3", False), ("HannWindow", "10.4", True),
    ("Attention", "10.3", False), ("Attention", "10.14", True),
    ("RMSNormalization", "10.14", False), ("RMSNormalization", "10.15", True),
    ("NotAnOnnxOp", "10.15", False),
])
def test_support_depends_on_the_target_version(op, version, ok):
    assert supported(op, v(version))[0] is ok


def _with(nodes, opsets=None, inits=()):
    return conv_model(extra_nodes=nodes, extra_opsets=opsets, extra_inits=list(inits))


def test_unsupported_ops_are_listed_with_node_names_and_reasons():
    model = _with([helper.make_node("Unique", ["logits"], ["u"], name="uniq_1"),
                   helper.make_node("FancyOp", ["logits"], ["y"], name="fancy_1", domain="com.example"),
                   helper.make_node("LayerNormalization", ["logits", "fc_b", "fc_b"], ["ln"], name="ln_1")],
                  {"com.example": 1})
    found = {u.node: u for u in check_proto(model, v("8.5"))}
    assert set(found) == {"uniq_1", "fancy_1", "ln_1"}
    assert "documented as not supported by TensorRT 8.5" in found["uniq_1"].reason
    assert "plugin" in found["fancy_1"].reason and found["fancy_1"].op_type == "com.example::FancyOp"
    assert "from 8.6 on" in found["ln_1"].reason
    assert {u.node for u in check_proto(model, v("10.3"))} == {"uniq_1", "fancy_1"}


def test_qdq_nodes_must_be_symmetric_int8():
    zp_u8 = numpy_helper.from_array(np.array(128, np.uint8), "zp_u8")
    zp_i8 = numpy_helper.from_array(np.array(3, np.int8), "zp_i8")
    scale = numpy_helper.from_array(np.array(0.1, np.float32), "s")
    bias_q = numpy_helper.from_array(np.zeros(10, np.int32), "bias_q")
    model = _with([
        helper.make_node("QuantizeLinear", ["logits", "s", "zp_u8"], ["q1"], name="q_uint8"),
        helper.make_node("QuantizeLinear", ["logits", "s", "zp_i8"], ["q2"], name="q_nonzero"),
        helper.make_node("DequantizeLinear", ["bias_q", "s"], ["d3"], name="dq_int32"),
    ], inits=[zp_u8, zp_i8, scale, bias_q])
    found = {u.node: u.reason for u in check_proto(model, v("10.3"))}
    assert "zero point must be 0" in found["q_uint8"] and "zero point must be 0" in found["q_nonzero"]
    assert "INT32" in found["dq_int32"] and "keep biases in float" in found["dq_int32"]


def test_cli_refuses_unsupported_nodes_before_the_long_work(tmp_path, cli, trt_plugin):
    src = save(_with([helper.make_node("Unique", ["logits"], ["u"], name="uniq_1")]), tmp_path / "m.onnx")
    res = cli("convert", str(src), "--to", "tensorrt", "-o", str(tmp_path / "o"), "-O", "prepare_only=true")
    assert res.exit_code == 4, res.output
    assert "uniq_1 (Unique)" in res.stderr and "precheck" in res.stderr
    assert not (tmp_path / "o").exists()
