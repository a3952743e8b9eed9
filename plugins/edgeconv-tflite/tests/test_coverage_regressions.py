"""Regressions found by the operator coverage (docs/gen/operator_coverage.py) in the tflite plugin."""

from __future__ import annotations

import importlib
import sys

from edgeconv_tflite.convert import brief


def test_brief_keeps_a_keras_error_readable():
    """onnx2tf failing inside a Keras layer (And with broadcasting it cannot express): the message was
    "TF ops: Tensor", from the layer's arguments ``x=tf.Tensor(shape=...)``."""
    exc = ValueError(
        'Exception encountered when calling layer "tf.math.logical_and_1" (type TFOpLambda).\n\n'
        "Dimensions must be equal, but are 4 and 5 for '{{node tf.math.logical_and_1/LogicalAnd}}' with input "
        "shapes: [3,5,4], [5].\n\nCall arguments received by layer \"tf.math.logical_and_1\" (type TFOpLambda):\n"
        "  • x=tf.Tensor(shape=(3, 5, 4), dtype=bool)\n  • y=tf.Tensor(shape=(5,), dtype=bool)\n")
    text = brief(exc)
    assert "TF ops" not in text
    assert "Dimensions must be equal, but are 4 and 5" in text


def test_brief_still_names_the_ops_of_a_converter_error():
    exc = RuntimeError("Could not translate MLIR to FlatBuffer.<string>:1:1: error: 'tf.Acos' op is neither a "
                       "custom op nor a flex op\n<unknown>:0: note: called from: %0 = tf.Acos(tensor<3xf32>)")
    text = brief(exc)
    assert text.startswith("'tf.Acos' op is neither a custom op nor a flex op") and "TF ops: Acos" in text


def test_the_numpy_shim_is_installed_once_per_process():
    """The coverage runs many conversions in one worker: each ``run`` used to wrap
    ``importlib.import_module`` once more (a chain as long as the number of jobs)."""
    from edgeconv_tflite import worker

    before = importlib.import_module
    try:
        first = worker._numpy_scalar_compat()
        wrapped = importlib.import_module
        again = worker._numpy_scalar_compat()
        assert importlib.import_module is wrapped
        assert first == again
        assert importlib.import_module("json") is sys.modules["json"]
    finally:
        importlib.import_module = before


def test_ops_tflite_has_no_builtin_kernel_for_are_refused_before_the_conversion():
    """Acos, Tan, Unique...: the conversion ran onnx2tf and the TFLite converter before failing at the end; the
    pre-check names them now (and with select_tf_ops they are a Flex fallback)."""
    import onnx
    from edgeconv_tflite.precheck import find
    from onnx import TensorProto, helper

    from edgeconv.onnx_tools import from_proto

    for op in ("Acos", "Tan", "Sinh"):
        graph = helper.make_graph([helper.make_node(op, ["x"], ["y"])], "g",
                                  [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3])],
                                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3])])
        model = from_proto(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), None)
        (u,) = find(model)
        assert (u.op_type, u.fallback) == (op, False) and "no builtin kernel" in u.reason
        assert find(model, select_tf_ops=True)[0].fallback
    assert onnx  # imported for the model


def test_a_string_input_model_verifies_without_crashing(tmp_path):
    """Equal on two string inputs (test_equal_string): the LiteRT runner read each input's shape with
    get_tensor() before any was set, and LiteRT segfaulted on the string tensor: the process died."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper

    import edgeconv

    graph = helper.make_graph([helper.make_node("Equal", ["a", "b"], ["y"])], "g",
                              [helper.make_tensor_value_info("a", TensorProto.STRING, [3]),
                               helper.make_tensor_value_info("b", TensorProto.STRING, [3])],
                              [helper.make_tensor_value_info("y", TensorProto.BOOL, [3])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)])
    model.ir_version = 9
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    data = {"a": np.array([["x", "y", "z"]], dtype=object), "b": np.array([["x", "q", "z"]], dtype=object)}
    res = edgeconv.convert(path, "tflite", data=data, output=tmp_path / "out", runs=1, warmup=0, memory=False)
    assert res.exit_code == 0, res.report["verdict"]


def test_equal_on_uint8_is_refused_before_litert_aborts():
    """test_equal_uint8: the converted model's EQUAL made LiteRT abort (SIGABRT) in invoke() during
    verification, killing the process; the pre-check refuses it, int32 Equal stays allowed."""
    from edgeconv_tflite.precheck import find
    from onnx import TensorProto, helper

    from edgeconv.onnx_tools import from_proto

    def equal(elem):
        graph = helper.make_graph([helper.make_node("Equal", ["a", "b"], ["y"])], "g",
                                  [helper.make_tensor_value_info("a", elem, [3]), helper.make_tensor_value_info("b", elem, [3])],
                                  [helper.make_tensor_value_info("y", TensorProto.BOOL, [3])])
        return from_proto(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)]), None)

    (u,) = find(equal(TensorProto.UINT8))
    assert u.op_type == "Equal" and "aborts" in u.reason and not u.fallback
    assert not find(equal(TensorProto.INT32))
