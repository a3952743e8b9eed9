"""An already-quantized model is refused cleanly by the fp16 and int8 passes (found on ddddocr common_old.onnx)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgeconv.errors import BadInput
from edgeconv import convert


def _qdq_model(path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    inits = [numpy_helper.from_array(np.array(0.05, np.float32), "s"),
             numpy_helper.from_array(np.array(0, np.uint8), "z"),
             numpy_helper.from_array(np.eye(4, dtype=np.float32), "w")]
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["xq"], name="q"),
             helper.make_node("DequantizeLinear", ["xq", "s", "z"], ["xd"], name="dq"),
             helper.make_node("MatMul", ["xd", "w"], ["y"], name="mm")]
    graph = helper.make_graph(nodes, "qdq", [x], [y], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)
    return path


@pytest.mark.parametrize("precision", ["fp16", "int8", "int8-dynamic"])
def test_a_quantized_model_is_refused_not_requantized(tmp_path, precision):
    src = _qdq_model(tmp_path / "q.onnx")
    before = src.read_bytes()
    with pytest.raises(BadInput, match=r"already quantized \(DequantizeLinear, QuantizeLinear\)"):
        convert(src, "onnxruntime", precision=precision, calibration="random", output=tmp_path / "o", verify=False)
    assert not (tmp_path / "o").exists()
    assert src.read_bytes() == before


def test_the_same_model_converts_at_fp32(tmp_path):
    src = _qdq_model(tmp_path / "q.onnx")
    res = convert(src, "onnxruntime", precision="fp32", output=tmp_path / "o", runs=2, memory=False)
    assert res.exit_code == 0, res.report["verdict"]
