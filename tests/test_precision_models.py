"""Models built in code for the precision tests (issue #17 sections 1, 2 and 6), shared with the OpenVINO and
TFLite plugin tests (``sys.path.insert(0, <repo>/tests)``; ``from test_precision_models import ...``).

- ``head_model``: a YOLO-style head: conv backbone -> box branch (sigmoid * 320: pixels 0..320) and score branch
  (sigmoid: 0..1) -> Concat into one output ``[1, 4 + C, N]``. One int8 scale for that output (~1.25) rounds every
  score to 0 or 1.25.
- ``if_model`` / ``loop_model``: the whole network inside an ``If`` branch (the branch taken depends on the input's
  brightness) or a ``Loop`` body (one trip): onnxruntime's quantizer does not enter either.
- ``gemm_bias_model``: Gemm biases of shape [rows, N] (tf2onnx writes [1, N]), on which onnxruntime's per-channel
  quantizer crashes ("The truth value of an array ... is ambiguous").
- ``same_names_if_model``: ``if_model`` whose two branches name their weights alike (what crashed the FP16
  converter with a bare ``AssertionError``).
- ``rankless_if_model``: the branches' Conv reads a tensor of unknown rank (a Squeeze of the input).
- ``div_model``: ``y = GAP((a * exp(d)) / exp(d))``: the divisor spans 0.0002..3000, so in int8 its small values
  round to the zero point and LiteRT's int8 DIV kernel refuses it ("data[i] != zero_point").
- ``bf16_sensitive_model``: ``(x @ A) @ inv(A)`` with A ill-conditioned: exact in f32, wrong in bf16 (a device's
  default precision for an f32 model on CPUs with AVX512-BF16/AMX).

The tests in this file check the builders themselves (valid models, the properties the other tests rely on).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
CLASSES = 6
BOX_SCALE = 320.0


def _model(graph: onnx.GraphProto, check: bool = True) -> onnx.ModelProto:
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="edgeconv-tests")
    m.ir_version = 8
    if check:
        onnx.checker.check_model(m, full_check=True)
    return m


def head_model(classes: int = CLASSES, seed: int = 0, hw: int = 16) -> onnx.ModelProto:
    """images [1,3,2hw,2hw] -> output0 [1, 4+classes, hw*hw]: boxes in 0..320, then per-class scores in 0..1."""
    rng = np.random.default_rng(seed)

    def w(*shape: int, k: float = 0.3) -> np.ndarray:
        return (rng.standard_normal(shape) * k).astype(np.float32)

    inits = [numpy_helper.from_array(a, n) for a, n in (
        (w(8, 3, 3, 3), "c1.w"), (w(8, k=0.1), "c1.b"), (w(16, 8, 3, 3, k=0.2), "c2.w"), (w(16, k=0.1), "c2.b"),
        (w(4, 16, 1, 1), "box.w"), (w(4, k=0.1), "box.b"), (w(classes, 16, 1, 1, k=0.5), "cls.w"),
        (w(classes, k=0.5), "cls.b"), (np.array(BOX_SCALE, np.float32), "scale"),
        (np.array([1, 4, hw * hw], np.int64), "box.shape"), (np.array([1, classes, hw * hw], np.int64), "cls.shape"))]
    nodes = [
        helper.make_node("Conv", ["images", "c1.w", "c1.b"], ["c1"], name="conv1", pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "c2.w", "c2.b"], ["c2"], name="conv2", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
        helper.make_node("Conv", ["r2", "box.w", "box.b"], ["bx"], name="box_conv"),
        helper.make_node("Sigmoid", ["bx"], ["bs"], name="box_sigmoid"),
        helper.make_node("Mul", ["bs", "scale"], ["bp"], name="box_scale"),
        helper.make_node("Reshape", ["bp", "box.shape"], ["boxes"], name="box_reshape"),
        helper.make_node("Conv", ["r2", "cls.w", "cls.b"], ["cx"], name="cls_conv"),
        helper.make_node("Sigmoid", ["cx"], ["cs"], name="cls_sigmoid"),
        helper.make_node("Reshape", ["cs", "cls.shape"], ["scores"], name="cls_reshape"),
        helper.make_node("Concat", ["boxes", "scores"], ["output0"], name="head_concat", axis=1),
    ]
    graph = helper.make_graph(
        nodes, "head", [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 2 * hw, 2 * hw])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, [1, 4 + classes, hw * hw])], inits)
    return _model(graph)


def head_files(folder: Path, classes: int = CLASSES) -> dict[str, Path]:
    """The head model, 32 calibration and 16 verification images (uniform noise in [0, 1])."""
    paths = {"model": folder / "head.onnx", "calib": folder / "head_calib.npz", "data": folder / "head_data.npz"}
    onnx.save(head_model(classes), str(paths["model"]))
    rng = np.random.default_rng(1)
    np.savez(paths["calib"], images=rng.random((32, 3, 32, 32), dtype=np.float32))
    np.savez(paths["data"], images=rng.random((16, 3, 32, 32), dtype=np.float32))
    return paths


def score_errors(ref: np.ndarray, got: np.ndarray) -> tuple[float, float]:
    """(largest box error in px, largest score error) between two ``[N, 4+C, A]`` head outputs."""
    err = np.abs(ref.astype(np.float64) - got.astype(np.float64))
    return float(err[:, :4].max()), float(err[:, 4:].max())


def _branch(name: str, rng: np.random.Generator, classes: int = 10, source: str = "input") -> onnx.GraphProto:
    def w(*shape: int, k: float = 0.3):
        return numpy_helper.from_array((rng.standard_normal(shape) * k).astype(np.float32), f"{name}.w{len(shape)}.{shape[0]}")

    w1, b1, w2, b2, fc = w(16, 3, 3, 3), w(16, k=0.1), w(32, 16, 3, 3, k=0.1), w(32, k=0.1), w(classes, 32, k=0.3)
    nodes = [
        helper.make_node("Conv", [source, w1.name, b1.name], [f"{name}_c1"], name=f"{name}_conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", [f"{name}_c1"], [f"{name}_r1"], name=f"{name}_relu1"),
        helper.make_node("Conv", [f"{name}_r1", w2.name, b2.name], [f"{name}_c2"], name=f"{name}_conv2", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", [f"{name}_c2"], [f"{name}_r2"], name=f"{name}_relu2"),
        helper.make_node("GlobalAveragePool", [f"{name}_r2"], [f"{name}_p"], name=f"{name}_gap"),
        helper.make_node("Flatten", [f"{name}_p"], [f"{name}_f"], name=f"{name}_flatten"),
        helper.make_node("Gemm", [f"{name}_f", fc.name], [f"{name}_out"], name=f"{name}_fc", transB=1),
    ]
    out = helper.make_tensor_value_info(f"{name}_out", TensorProto.FLOAT, ["batch", classes])
    return helper.make_graph(nodes, name, [], [out], [w1, b1, w2, b2, fc])


def if_model(seed: int = 0, source: str = "input") -> onnx.ModelProto:
    """input [batch,3,16,16] -> If(mean(input) > 0.5, bright net, dark net) -> logits [batch,10]."""
    rng = np.random.default_rng(seed)
    then_g, else_g = _branch("bright", rng, source=source), _branch("dark", rng, source=source)
    nodes = [
        helper.make_node("ReduceMean", ["input"], ["mean"], name="mean", keepdims=0),
        helper.make_node("Greater", ["mean", "half"], ["cond"], name="is_bright"),
        helper.make_node("If", ["cond"], ["logits"], name="branch", then_branch=then_g, else_branch=else_g),
    ]
    graph = helper.make_graph(
        nodes, "if_net", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, 16, 16])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 10])],
        [numpy_helper.from_array(np.array(0.5, np.float32), "half")])
    return _model(graph, check=source == "input")


def loop_model(seed: int = 0) -> onnx.ModelProto:
    """The same network inside a Loop body (one trip, its result a scan output) -> Squeeze -> logits."""
    rng = np.random.default_rng(seed)
    body = _branch("net", rng)
    body.input.extend([helper.make_tensor_value_info("iter", TensorProto.INT64, []),
                       helper.make_tensor_value_info("cond_in", TensorProto.BOOL, [])])
    body.node.append(helper.make_node("Identity", ["cond_in"], ["cond_out"], name="keep_going"))
    outs = list(body.output)
    del body.output[:]
    body.output.extend([helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []), *outs])
    nodes = [helper.make_node("Loop", ["trips", "go"], ["stacked"], name="loop", body=body),
             helper.make_node("Squeeze", ["stacked", "axis0"], ["logits"], name="unstack")]
    graph = helper.make_graph(
        nodes, "loop_net", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, 16, 16])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 10])],
        [numpy_helper.from_array(np.array(1, np.int64), "trips"), numpy_helper.from_array(np.array(True), "go"),
         numpy_helper.from_array(np.array([0], np.int64), "axis0")])
    return _model(graph)


def same_names_if_model() -> onnx.ModelProto:
    """``if_model`` whose else branch names its weights as the then branch does (valid ONNX: separate scopes)."""
    m = if_model()
    node = m.graph.node[2]
    then_g = next(a.g for a in node.attribute if a.name == "then_branch")
    else_g = next(a.g for a in node.attribute if a.name == "else_branch")
    rename = {e.name: t.name for e, t in zip(else_g.initializer, then_g.initializer, strict=True)}
    for init in else_g.initializer:
        init.name = rename[init.name]
    for n in else_g.node:
        n.input[:] = [rename.get(x, x) for x in n.input]
    onnx.checker.check_model(m, full_check=True)
    return m


def rankless_if_model() -> onnx.ModelProto:
    """``if_model`` whose branches read ``Squeeze(input)`` (through an Identity): a tensor of unknown rank."""
    m = if_model(source="x_any")
    m.graph.node.insert(0, helper.make_node("Squeeze", ["input"], ["x_sq"], name="squeeze"))
    m.graph.node.insert(1, helper.make_node("Identity", ["x_sq"], ["x_any"], name="passthrough"))
    onnx.checker.check_model(m, full_check=True)
    return m


def if_files(folder: Path, model: onnx.ModelProto | None = None, name: str = "ifnet") -> dict[str, Path]:
    """A control-flow model, 32 calibration and 32 verification inputs, about half of them bright."""
    paths = {"model": folder / f"{name}.onnx", "calib": folder / f"{name}_calib.npz", "data": folder / f"{name}_data.npz"}
    onnx.save(model if model is not None else if_model(), str(paths["model"]))
    rng = np.random.default_rng(3)
    x = rng.random((64, 3, 16, 16), dtype=np.float32) * rng.random((64, 1, 1, 1), dtype=np.float32) * 2
    np.savez(paths["calib"], input=x[:32])
    np.savez(paths["data"], input=x[32:])
    return paths


def gemm_bias_model(rows: int = 1) -> onnx.ModelProto:
    """x [rows, 8] -> Gemm (bias [rows, 16]) -> Relu -> Gemm (bias [rows, 4]) -> y [rows, 4]."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal((16, 8)).astype(np.float32), "fc1.w"),
             numpy_helper.from_array(rng.standard_normal((rows, 16)).astype(np.float32), "fc1.b"),
             numpy_helper.from_array(rng.standard_normal((4, 16)).astype(np.float32), "fc2.w"),
             numpy_helper.from_array(rng.standard_normal((rows, 4)).astype(np.float32), "fc2.b")]
    nodes = [helper.make_node("Gemm", ["x", "fc1.w", "fc1.b"], ["h"], name="fc1", transB=1),
             helper.make_node("Relu", ["h"], ["r"], name="relu"),
             helper.make_node("Gemm", ["r", "fc2.w", "fc2.b"], ["y"], name="fc2", transB=1)]
    graph = helper.make_graph(nodes, "gemm_bias", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [rows, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [rows, 4])], inits)
    return _model(graph)


def bf16_sensitive_model(n: int = 32, seed: int = 0) -> onnx.ModelProto:
    """x [1, n] -> MatMul(A) -> MatMul(inv(A)) -> y == x, with A's singular values from 1 to 1000: bf16's 8-bit
    mantissa on the intermediate loses the answer (cosine ~0.98), f32 keeps it (~1 - 1e-7)."""
    rng = np.random.default_rng(seed)
    u, _ = np.linalg.qr(rng.standard_normal((n, n)))
    v, _ = np.linalg.qr(rng.standard_normal((n, n)))
    a = (u * np.logspace(0, 3, n)) @ v.T
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "A"], ["h"], name="mix"),
         helper.make_node("MatMul", ["h", "B"], ["y"], name="unmix")], "bf16_sensitive",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, n])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, n])],
        [numpy_helper.from_array(a.astype(np.float32), "A"),
         numpy_helper.from_array(np.linalg.inv(a).astype(np.float32), "B")])
    return _model(graph)


def div_model(seed: int = 0) -> onnx.ModelProto:
    """x [1,3,16,16] -> a = Conv(x), den = Exp(Conv(x) * ~3) -> GAP((a * den) / den) == GAP(a) -> y [1,4,1,1]."""
    rng = np.random.default_rng(seed)
    w1 = (rng.standard_normal((4, 3, 3, 3)) * 0.3).astype(np.float32)
    w2 = (rng.standard_normal((4, 3, 1, 1)) * 3).astype(np.float32)
    graph = helper.make_graph([
        helper.make_node("Conv", ["x", "w1"], ["a"], name="num_conv", pads=[1, 1, 1, 1]),
        helper.make_node("Conv", ["x", "w2"], ["d"], name="den_conv"),
        helper.make_node("Exp", ["d"], ["den"], name="den_exp"),
        helper.make_node("Mul", ["a", "den"], ["num"], name="num_scale"),
        helper.make_node("Div", ["num", "den"], ["q"], name="ratio"),
        helper.make_node("GlobalAveragePool", ["q"], ["y"], name="gap")], "div",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 1, 1])],
        [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2, "w2")])
    return _model(graph)


def _run(model: onnx.ModelProto, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"]).run(None, feed)


def test_head_concatenates_ranges_two_orders_apart():
    x = np.random.default_rng(1).random((1, 3, 32, 32), dtype=np.float32)
    (y,) = _run(head_model(), {"images": x})
    assert y.shape == (1, 4 + CLASSES, 256)
    assert y[:, :4].max() > 100 and 0 <= y[:, 4:].min() and y[:, 4:].max() <= 1  # pixels, then probabilities


def test_if_model_takes_both_branches_on_its_data(tmp_path):
    f = if_files(tmp_path)
    x = np.load(f["data"])["input"]
    bright = x.mean(axis=(1, 2, 3)) > 0.5
    assert 0.2 < bright.mean() < 0.8
    (a,) = _run(if_model(), {"input": x[bright][:1]})
    (b,) = _run(if_model(), {"input": x[~bright][:1]})
    assert a.shape == b.shape == (1, 10)


def test_loop_and_same_names_models_run():
    x = np.random.default_rng(0).random((2, 3, 16, 16), dtype=np.float32)
    assert _run(loop_model(), {"input": x})[0].shape == (2, 10)
    np.testing.assert_allclose(_run(same_names_if_model(), {"input": x[:1]})[0].shape, (1, 10))


def test_gemm_bias_model_has_a_2d_bias():
    m = gemm_bias_model(2)
    assert [list(i.dims) for i in m.graph.initializer if i.name.endswith(".b")] == [[2, 16], [2, 4]]
    assert _run(m, {"x": np.ones((2, 8), np.float32)})[0].shape == (2, 4)


def test_bf16_sensitive_model_is_the_identity_in_float32():
    x = np.random.default_rng(1).random((1, 32), dtype=np.float32)
    (y,) = _run(bf16_sensitive_model(), {"x": x})
    np.testing.assert_allclose(y, x, atol=1e-3)


def test_div_model_divisor_spans_four_decades():
    x = np.random.default_rng(0).random((16, 3, 16, 16), dtype=np.float32)
    m = div_model()
    m.graph.output.extend([onnx.ValueInfoProto(name="den")])
    outs = [_run(m, {"x": x[i:i + 1]}) for i in range(len(x))]
    den = np.concatenate([o[1].ravel() for o in outs])
    assert den.min() < 1e-2 and den.max() > 100
