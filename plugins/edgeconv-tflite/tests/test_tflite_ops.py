"""Operators at the edge of the onnx2tf route: SELECT_TF_OPS (Flex) and TopK (numpy 2.4 compatibility)."""

from __future__ import annotations

import json

import numpy as np
import onnx
from onnx import TensorProto, helper


def _save(tmp_path, name, nodes, inputs, outputs, inits=()):
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(inits))
    path = tmp_path / f"{name}.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def test_select_tf_ops_converts_and_says_the_runtime_needs_flex(tmp_path, cli):
    path = _save(tmp_path, "det", [helper.make_node("Det", ["x"], ["y"], name="det")],
                 [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 3])],
                 [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])])
    res = cli("convert", str(path), "--to", "tflite", "-O", "select_tf_ops=true", "-o", str(tmp_path / "o"), "--json")
    assert res.exit_code == 3, res.output  # converted, but no runtime here has the Flex delegate
    rep = json.loads(res.stdout)
    assert rep["verdict"]["status"] == "not-run" and "Flex delegate" in rep["verdict"]["reason"]
    assert rep["artifact"]["details"]["flex_ops"] == ["FlexMatrixDeterminant"]
    assert any("Flex delegate" in w and "FlexMatrixDeterminant" in w for w in rep["warnings"])
    assert any("det (Det) falls back" in w for w in rep["warnings"])  # the pre-check's warning
    assert (tmp_path / "o" / "det.tflite").is_file()


def test_topk_with_a_constant_k_converts_and_verifies(tmp_path):
    """onnx2tf 1.28.8 does int(k) on TopK's 1-element k, which numpy >= 2.4 refuses."""
    import edgeconv

    k = helper.make_tensor("k", TensorProto.INT64, [1], [3])
    path = _save(tmp_path, "topk", [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("TopK", ["r", "k"], ["v", "i"])],
                 [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 8])],
                 [helper.make_tensor_value_info("v", TensorProto.FLOAT, [2, 3]),
                  helper.make_tensor_value_info("i", TensorProto.INT64, [2, 3])], inits=[k])
    r = edgeconv.convert(path, "tflite", output=tmp_path / "o", runs=3, memory=False)
    rep = r.report
    assert r.exit_code == 0, rep["verdict"]
    fid = {f["name"]: f for f in rep["fidelity"]}
    assert fid["v"]["max_abs"] <= 1e-6 and fid["i"]["max_abs"] == 0
    try:
        int(np.array([1]))
    except TypeError:  # this numpy refuses it: the worker's compatibility shim was needed
        assert rep["artifact"]["details"]["onnx2tf"]["numpy_scalar_compat"] is True
