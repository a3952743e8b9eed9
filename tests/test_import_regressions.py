"""Regressions found by the real models of the corpus (docs/real-models.md), each on a small in-code model.

- paddle2onnx's "dynamic" dims: ``dim_value: -1`` and a ``?`` name shared by H and W (rapidocr cls);
- a declared output shape the graph does not produce (ddddocr common.onnx: [1,seqlen] for [T,1,C]),
  which onnxslim trusted and "simplified" into a wrong Reshape;
- weights held in Constant nodes rather than initializers (rapidocr det), through INT8;
- per-channel INT8 of an opset < 13 model (rapidocr det/cls are opset 12/11).
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgeconv.builtins import onnx_import
from edgeconv.errors import BadInput
from edgeconv import convert, load


def _model(nodes, inputs, outputs, inits=(), opset=13):
    g = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(inits))
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], producer_name="edgeconv-tests")
    m.ir_version = 8
    return m


def _conv_net(input_shape, opset=13, constant_weights=False):
    """Conv 3->4 (3x3, pad 1) -> Relu -> Conv 4->2 (1x1): output [N,2,H,W]."""
    rng = np.random.default_rng(0)
    w1 = rng.standard_normal((4, 3, 3, 3)).astype(np.float32) * 0.3
    w2 = rng.standard_normal((2, 4, 1, 1)).astype(np.float32) * 0.5
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu"),
        helper.make_node("Conv", ["r1", "w2"], ["y"], name="conv2"),
    ]
    inits = []
    if constant_weights:  # as paddle2onnx writes them: no initializers at all
        nodes[:0] = [helper.make_node("Constant", [], ["w1"], value=numpy_helper.from_array(w1, "w1"), name="cw1"),
                     helper.make_node("Constant", [], ["w2"], value=numpy_helper.from_array(w2, "w2"), name="cw2")]
    else:
        inits = [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2, "w2")]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, input_shape)
    s = list(input_shape)
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [s[0], 2, s[2], s[3]])
    return _model(nodes, [x], [y], inits, opset=opset)


def _save(model, tmp_path, name="m.onnx"):
    p = tmp_path / name
    onnx.save(model, str(p))
    return p


# -- "-1" and "?" dims ---------------------------------------------------------------------------
def test_minus_one_and_shared_question_mark_dims_become_distinct_dynamic_axes(tmp_path):
    m = _conv_net([-1, 3, "?", "?"])
    model = load(_save(m, tmp_path))
    assert model.io.inputs[0].shape == ("in0_dim0", 3, "in0_dim2", "in0_dim3")
    dims = model.obj.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param for d in dims] == ["in0_dim0", "", "in0_dim2", "in0_dim3"]
    assert all(d.dim_value >= 0 for d in dims)
    fixed = {(f["tensor"], f["axis"], str(f["declared"])) for f in model.meta["io_fixes"]}
    assert {(a, d) for t, a, d in fixed if t == "x"} == {(0, "-1"), (2, "?"), (3, "?")}
    assert model.io.outputs[0].shape == ("out0_dim0", 2, "out0_dim2", "out0_dim3")


def test_minus_one_dims_convert_and_verify_at_a_non_square_shape(tmp_path):
    # H != W: the two "?" axes must not be taken for one axis
    res = convert(_save(_conv_net([-1, 3, "?", "?"]), tmp_path), "onnxruntime", input_shapes={"x": (1, 3, 8, 24)},
                  output=tmp_path / "out", runs=2, warmup=1, memory=False)
    assert res.ok, res.report["verdict"]
    f = res.report["fidelity"][0]
    assert f["shape"][1:] == [2, 8, 24] and f["cosine"] > 0.9999


def test_other_negative_dims_are_still_refused(tmp_path):
    with pytest.raises(BadInput, match="negative"):
        load(_save(_conv_net([1, 3, -2, 16]), tmp_path))


def test_named_dims_are_kept(tmp_path):
    model = load(_save(_conv_net(["batch", 3, "height", "width"]), tmp_path))
    assert model.io.inputs[0].shape == ("batch", 3, "height", "width")
    assert "io_fixes" not in model.meta


# -- wrong declared output shapes ------------------------------------------------------------------
def _seq_model():
    """x [1,4,W] -> y [W,1,4] through a Reshape to a computed shape; the output is declared [1,seqlen] (wrong)."""
    nodes = [
        helper.make_node("Shape", ["x"], ["sh"], name="shape"),
        helper.make_node("Gather", ["sh", "i2"], ["w"], name="gather", axis=0),
        helper.make_node("Concat", ["w", "one", "four"], ["target"], name="concat", axis=0),
        helper.make_node("Transpose", ["x"], ["xt"], name="transpose", perm=[2, 0, 1]),
        helper.make_node("Mul", ["xt", "scale"], ["xs"], name="mul"),
        helper.make_node("Reshape", ["xs", "target"], ["y"], name="reshape"),
    ]
    inits = [numpy_helper.from_array(np.array([2], np.int64), "i2"),
             numpy_helper.from_array(np.array([1], np.int64), "one"),
             numpy_helper.from_array(np.array([4], np.int64), "four"),
             numpy_helper.from_array(np.array([0.5, 1.0, 1.5, 2.0], np.float32), "scale")]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, "w"])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, "seqlen"])
    return _model(nodes, [x], [y], inits)


def _seq_model_unknown_rank():
    """As ``_seq_model``, but the Reshape's target comes from a Slice with a computed end: no ONNX shape
    inference finds the output's rank (as in ddddocr common.onnx), and onnxslim then trusted the declared
    [1,seqlen] and rewrote the Reshape to [1,-1] (checked: the simplified model gave [1,48] for [12,1,4])."""
    nodes = [
        helper.make_node("Transpose", ["x"], ["xt"], name="transpose", perm=[2, 0, 1]),
        helper.make_node("Mul", ["xt", "scale"], ["xs"], name="mul"),
        helper.make_node("Shape", ["xs"], ["shs"], name="shape_xs"),
        helper.make_node("Shape", ["x"], ["shx"], name="shape_x"),
        helper.make_node("Gather", ["shx", "i0"], ["b"], name="gather", axis=0),
        helper.make_node("Add", ["b", "two"], ["end"], name="add"),
        helper.make_node("Slice", ["shs", "zero", "end"], ["target"], name="slice"),
        helper.make_node("Reshape", ["xs", "target"], ["y"], name="reshape"),
    ]
    inits = [numpy_helper.from_array(np.array([0], np.int64), "i0"),
             numpy_helper.from_array(np.array([2], np.int64), "two"),
             numpy_helper.from_array(np.array([0], np.int64), "zero"),
             numpy_helper.from_array(np.array([0.5, 1.0, 1.5, 2.0], np.float32), "scale")]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4, "w"])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, "seqlen"])
    return _model(nodes, [x], [y], inits)


def test_contradicted_output_shape_is_replaced(tmp_path):
    model = load(_save(_seq_model(), tmp_path))
    out = model.io.outputs[0]
    assert len(out.shape) == 3 and out.shape[1:] == (1, 4)
    declared = model.obj.graph.output[0].type.tensor_type.shape.dim
    assert len(declared) == 3
    fix = next(f for f in model.meta["io_fixes"] if f["tensor"] == "y")
    assert fix["declared"] == [1, "seqlen"] and fix["now"][1:] == [1, 4]


def test_wrong_declared_output_shape_converts_and_verifies(tmp_path):
    """The simplifier must not be handed the wrong declaration: the artifact keeps the graph's [W,1,4]."""
    data = {"x": np.random.default_rng(0).standard_normal((3, 1, 4, 12)).astype(np.float32)}
    res = convert(_save(_seq_model_unknown_rank(), tmp_path), "onnxruntime", data=data,
                  output=tmp_path / "out", runs=2, warmup=1, memory=False)
    assert res.ok, res.report["verdict"]
    assert res.report["fidelity"][0]["shape"] == [36, 1, 4]  # 3 samples of [12,1,4]


def test_unconfirmable_output_shape_is_not_passed_on(tmp_path):
    """A vendor op no shape inference knows: the declaration is kept in the contract, flagged, and its
    fixed sizes are not given to the tools (onnxslim would build a Reshape from them)."""
    nodes = [helper.make_node("Relu", ["x"], ["r"], name="relu"),
             helper.make_node("Mystery", ["r"], ["y"], name="mystery", domain="com.example")]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, "seqlen"])
    g = helper.make_graph(nodes, "g", [x], [y])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid("com.example", 1)])
    m.ir_version = 8
    model = onnx_import.from_proto(m, None)
    assert model.io.outputs[0].shape == (1, "seqlen")
    dims = model.obj.graph.output[0].type.tensor_type.shape.dim
    assert [d.dim_param for d in dims] == ["out0_dim0", "seqlen"] and not any(d.dim_value for d in dims)
    assert any(f.get("unconfirmed") for f in model.meta["io_fixes"])
    # the caller's proto is left alone
    assert len(m.graph.output[0].type.tensor_type.shape.dim) == 2


def test_right_declared_output_shape_is_left_alone(tmp_path):
    m = _conv_net([1, 3, 8, 8])
    m.graph.output[0].CopyFrom(helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 8, 8]))
    model = load(_save(m, tmp_path))
    assert model.io.outputs[0].shape == (1, 2, 8, 8)
    assert "io_fixes" not in model.meta


# -- weights in Constant nodes, opset < 13, through INT8 -------------------------------------------
@pytest.mark.parametrize("opset", [13, 11])
def test_constant_node_weights_quantize_per_channel(tmp_path, opset):
    """rapidocr det holds its weights in Constant nodes and is opset 12 (cls: 11): per-channel INT8 must
    quantize those weights and give a valid model."""
    calib = {"x": np.random.default_rng(1).uniform(-1, 1, (16, 1, 3, 8, 8)).astype(np.float32)}
    res = convert(_save(_conv_net([1, 3, 8, 8], opset=opset, constant_weights=True), tmp_path), "onnxruntime",
                  precision="int8", calibration=calib, data={"x": calib["x"][:4]}, output=tmp_path / "out",
                  runs=2, warmup=1, memory=False)
    art = onnx.load(res.report["artifact"]["path"])
    conv_weights = [n.input[1] for n in art.graph.node if n.op_type == "Conv"]
    producers = {o: n.op_type for n in art.graph.node for o in n.output}
    assert conv_weights and all(producers.get(w) == "DequantizeLinear" for w in conv_weights)
    assert res.report["fidelity"][0]["cosine"] > 0.98


def test_import_writes_nothing_into_the_working_directory(tmp_path, monkeypatch):
    """onnxruntime's symbolic shape inference saves sym_shape_infer_temp.onnx (+ uuid.data) into the working
    directory when it cannot infer everything: the importer runs it in a folder of its own."""
    model_file = _save(_seq_model_unknown_rank(), tmp_path)
    monkeypatch.chdir(tmp_path)
    load(model_file)
    assert sorted(p.name for p in tmp_path.iterdir()) == [model_file.name]
