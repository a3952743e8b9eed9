"""Regressions found by the operator coverage (docs/gen/operator_coverage.py over the ONNX node tests).

Each test rebuilds, in code, the smallest model that showed the bug, and checks edgeconv's answer.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import edgeconv
from edgeconv.errors import EdgeconvError, ToolchainFailed


def _model(nodes, inputs, outputs, inits=(), opset: int = 17) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(inits))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="edgeconv-tests")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def _save(model: onnx.ModelProto, tmp_path) -> str:
    path = tmp_path / "model.onnx"
    onnx.save(model, str(path))
    return str(path)


def test_a_runtime_that_raises_while_running_is_a_clean_error(tmp_path):
    """onnxruntime loads the model but raises on these inputs (a Reshape that cannot apply): the
    conversion ends with an EdgeconvError naming the runner and the stage, not a traceback."""
    model = _model(
        [helper.make_node("Reshape", ["x", "shape"], ["y"])],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, None])],
        [helper.make_tensor("shape", TensorProto.INT64, [2], [2, -1])],
    )
    with pytest.raises(EdgeconvError) as info:
        edgeconv.convert(_save(model, tmp_path), "onnxruntime", data={"x": np.zeros((1, 3), np.float32)},
                         output=tmp_path / "out", runs=1, warmup=0, memory=False)
    assert isinstance(info.value, ToolchainFailed)
    assert info.value.stage == "verify"
    assert "onnxruntime failed running the onnx model" in info.value.cause
    assert not (tmp_path / "out").exists()  # nothing half-written


def test_the_runner_guard_keeps_results_and_edgeconv_errors(tmp_path):
    from edgeconv.verification.runners import Runner, guard

    class Fails(Runner):
        name = "fake"

        def infer(self, feed):
            if "boom" in feed:
                raise RuntimeError("kernel exploded\n  at line 3")
            return {"y": feed["x"]}

    from edgeconv.model import IOContract, Model

    r = guard(Fails(Model("onnx", IOContract((), ()), path=tmp_path / "m.onnx")))
    assert guard(r) is r  # idempotent
    assert r.infer({"x": 1}) == {"y": 1}
    with pytest.raises(ToolchainFailed, match="fake failed running the onnx model: kernel exploded at line 3"):
        r.infer({"boom": 1})


def test_a_scalar_input_verifies(tmp_path):
    """A rank-0 input (BlackmanWindow's size, a scalar BitCast): its sample reached onnxruntime as a numpy
    scalar, not an array, and the verification raised "Unable to handle object of type numpy.int32"."""
    model = _model(
        [helper.make_node("Mul", ["x", "x"], ["y"])],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [])],
    )
    res = edgeconv.convert(_save(model, tmp_path), "onnxruntime", data={"x": np.array([3.0], np.float32)},
                           output=tmp_path / "out", runs=1, warmup=0, memory=False)
    assert res.exit_code == 0, res.report["verdict"]
    assert res.report["fidelity"][0]["pass"] and res.report["fidelity"][0]["max_abs"] == 0.0


def test_an_infinity_the_source_gives_too_is_not_a_failure():
    """Attention's qk_matmul_output holds -inf where the mask hides a key: an artifact that gives the same
    -inf is exact, and verification compares the finite values (it failed with "N NaN/Inf values")."""
    from edgeconv.verification.metrics import compare, thresholds_for

    t = thresholds_for("fp32")
    ref = np.array([[1.0, -np.inf, 2.0], [0.5, -np.inf, -1.0]], np.float32)
    res = compare("y", ref, ref.copy(), t)
    assert res["pass"] and res["matching_inf"] == 2 and res["cosine"] == pytest.approx(1.0)
    off = ref.copy()
    off[0, 0] = 3.0  # the finite values still count
    assert not compare("y", ref, off, t)["pass"]
    flipped = ref.copy()
    flipped[0, 1] = np.inf  # +inf where the source has -inf
    assert "NaN/Inf values where the source differs" in compare("y", ref, flipped, t)["failures"][0]
    nan = ref.copy()
    nan[1, 0] = np.nan  # NaN always fails
    assert not compare("y", ref, nan, t)["pass"]


def test_a_source_infinity_the_artifact_does_not_reproduce_fails():
    """The source gives inf, the artifact a finite value: the cosine of arrays holding inf is NaN, and a NaN
    compared with a threshold is never below it: this passed."""
    from edgeconv.verification.metrics import compare, thresholds_for

    ref = np.array([1.0, np.inf, 2.0], np.float32)
    out = np.array([1.0, 3.0e38, 2.0], np.float32)
    res = compare("y", ref, out, thresholds_for("fp32"))
    assert not res["pass"] and res["failures"] == ["1 NaN/Inf values where the source differs"]
    nan_ref = np.array([np.nan, 1.0], np.float32)
    assert not compare("y", nan_ref, np.array([0.0, 1.0], np.float32), thresholds_for("fp32"))["pass"]


def test_masked_attention_scores_verify_end_to_end(tmp_path):
    """The model behind the case: log(x) gives -inf where x is 0; the onnxruntime artifact is exact."""
    model = _model(
        [helper.make_node("Log", ["x"], ["y"])],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
    )
    x = np.array([[[1.0, 0.0, 2.0, 0.0]]], np.float32)
    res = edgeconv.convert(_save(model, tmp_path), "onnxruntime", data={"x": x}, output=tmp_path / "out",
                           runs=1, warmup=0, memory=False)
    assert res.exit_code == 0, res.report["verdict"]
    assert res.report["fidelity"][0]["matching_inf"] == 2


def test_string_outputs_are_compared_for_equality():
    """StringConcat / StringSplit: the comparison converted strings to float and raised (a crash)."""
    from edgeconv.verification.metrics import compare, thresholds_for

    ref = np.array(["abc.com", "x"], dtype=object)
    res = compare("y", ref, ref.copy(), thresholds_for("fp32"))
    assert res["pass"] and res["values_differ"] == 0
    res = compare("y", ref, np.array(["abc.com", "y"], dtype=object), thresholds_for("fp32"))
    assert not res["pass"] and res["failures"] == ["1 of 2 string values differ"]


def test_a_string_model_converts_and_verifies(tmp_path):
    model = _model(
        [helper.make_node("StringConcat", ["a", "b"], ["y"])],
        [helper.make_tensor_value_info("a", TensorProto.STRING, [2]),
         helper.make_tensor_value_info("b", TensorProto.STRING, [2])],
        [helper.make_tensor_value_info("y", TensorProto.STRING, [2])],
        opset=20,
    )
    data = {"a": np.array([["abc", "d"]], dtype=object), "b": np.array([[".com", "e"]], dtype=object)}
    res = edgeconv.convert(_save(model, tmp_path), "onnxruntime", data=data, output=tmp_path / "out",
                           runs=1, warmup=0, memory=False)
    assert res.exit_code == 0, res.report["verdict"]
    assert res.report["fidelity"][0]["values_differ"] == 0


def test_integer_outputs_must_be_exact_at_fp32():
    """OpenVINO's DynamicQuantizeLinear rounded one of six uint8 values differently (ONNX backend test
    test_dynamicquantizelinear): cosine 0.99999, SQNR > 40 dB, so the fp32 contract passed it."""
    from edgeconv.verification.metrics import compare, thresholds_for

    ref = np.array([153, 255, 0, 26, 221, 179], np.uint8)
    out = ref.copy()
    out[3] = 25
    fp32 = compare("y", ref, out, thresholds_for("fp32"))
    assert fp32["cosine"] > 0.9999 and fp32["sqnr_db"] > 40  # what let it through
    assert not fp32["pass"] and fp32["failures"] == ["1 of 6 integer values differ"]
    assert compare("y", ref, ref.copy(), thresholds_for("fp32"))["pass"]
    assert compare("y", ref, out, thresholds_for("int8"))["pass"]  # int8 keeps its own tolerance
    mask = np.array([True, False, True])
    assert not compare("m", mask, ~mask, thresholds_for("fp32"))["pass"]


# -- nodes onnxruntime computes differently from ONNX: the onnxruntime target's pre-check refuses them ---------
def _precheck(model: onnx.ModelProto):
    from edgeconv.builtins.ort_target import precheck
    from edgeconv.onnx_tools import from_proto

    return [(u.op_type, u.reason) for u in precheck(from_proto(model, None))]


def _f(name, shape):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def _resize(scales: list[float], mode: str = "linear", ctm: str = "align_corners", as_input: bool = False):
    scale = helper.make_tensor("scales", TensorProto.FLOAT, [4], scales)
    return _model([helper.make_node("Resize", ["x", "", "scales"], ["y"], mode=mode, coordinate_transformation_mode=ctm)],
                  [_f("x", [1, 1, 4, 4])] + ([helper.make_tensor_value_info("scales", TensorProto.FLOAT, [4])] if as_input else []),
                  [_f("y", list("nchw"))], [] if as_input else [scale], opset=19)


def test_resize_align_corners_downsampling_is_refused_by_the_onnxruntime_target():
    """test_resize_downsample_scales_{linear,cubic}_align_corners: onnxruntime 1.32 misses ONNX's values by up
    to 1.05, and edgeconv's verification (against onnxruntime) passed the artifact."""
    found = _precheck(_resize([1, 1, 0.6, 0.6]))
    assert [op for op, _ in found] == ["Resize"] and "downsamples" in found[0][1]
    assert _precheck(_resize([1, 1, 0.6, 0.6], mode="cubic"))
    assert _precheck(_resize([1, 1, 0.6, 0.6], as_input=True))  # the caller's scales
    assert not _precheck(_resize([1, 1, 2, 2]))  # upsampling is right
    assert not _precheck(_resize([1, 1, 0.6, 0.6], mode="nearest"))
    assert not _precheck(_resize([1, 1, 0.6, 0.6], ctm="half_pixel"))


def test_forward_dft_maxunpool_with_shape_and_training_dropout_are_refused():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 1])
    dft = _model([helper.make_node("DFT", ["x"], ["y"])], [x], [_f("y", [1, 8, 2])], opset=17)
    assert [op for op, _ in _precheck(dft)] == ["DFT"]
    inverse = _model([helper.make_node("DFT", ["x"], ["y"], inverse=1)], [x], [_f("y", [1, 8, 2])], opset=17)
    assert not _precheck(inverse)
    unpool = _model([helper.make_node("MaxUnpool", ["x", "i", "s"], ["y"], kernel_shape=[2, 2], strides=[2, 2])],
                    [_f("x", [1, 1, 2, 2]), helper.make_tensor_value_info("i", TensorProto.INT64, [1, 1, 2, 2]),
                     helper.make_tensor_value_info("s", TensorProto.INT64, [4])], [_f("y", list("nchw"))])
    assert [op for op, _ in _precheck(unpool)] == ["MaxUnpool"]

    def dropout(training):
        t = helper.make_tensor("t", TensorProto.BOOL, [], [training])
        r = helper.make_tensor("r", TensorProto.FLOAT, [], [0.5])
        return _model([helper.make_node("Dropout", ["x", "r", "t"], ["y"], seed=0)], [_f("x", [4])], [_f("y", [4])], [r, t])

    assert [op for op, _ in _precheck(dropout(True))] == ["Dropout"]
    assert not _precheck(dropout(False))


def test_causal_attention_scores_output_is_refused_end_to_end(tmp_path):
    """Attention (opset 23) with is_causal and its qk_matmul_output: onnxruntime fills the masked scores with
    -3.4e38 where ONNX says -inf; the conversion is refused with the reason, not passed."""
    from edgeconv.errors import UnsupportedOperators

    q = helper.make_tensor_value_info("q", TensorProto.FLOAT, [1, 2, 3, 4])
    outs = [_f("y", [1, 2, 3, 4]), _f("pk", None), _f("pv", None), _f("qk", [1, 2, 3, 3])]
    node = helper.make_node("Attention", ["q", "q", "q", "", "", ""], ["y", "", "", "qk"], is_causal=1)
    model = _model([node], [q], [outs[0], outs[3]], opset=23)
    with pytest.raises(UnsupportedOperators) as info:
        edgeconv.convert(_save(model, tmp_path), "onnxruntime", output=tmp_path / "out", runs=1, warmup=0, memory=False)
    assert info.value.nodes == [("<Attention>", "Attention")]
    plain = _model([helper.make_node("Attention", ["q", "q", "q"], ["y"], is_causal=1)], [q], [outs[0]], opset=23)
    assert not _precheck(plain)


def test_a_few_values_off_by_one_percent_fail_at_fp32():
    """OpenVINO's cubic Resize with exclude_outside (test_resize_downsample_scales_cubic_A_n0p5_exclude_outside)
    was 0.103 off on values up to 16: cosine 0.99995 and SQNR over 40 dB passed it at fp32."""
    from edgeconv.verification.metrics import compare, thresholds_for

    ref = np.linspace(1, 16, 64, dtype=np.float32).reshape(1, 1, 8, 8)
    out = ref.copy()
    out[0, 0, 3, 3] += 0.103
    res = compare("y", ref, out, thresholds_for("fp32"))
    assert res["cosine"] > 0.9999 and res["sqnr_db"] > 40  # what let it through
    assert not res["pass"] and "of the output's range > 0.001" in res["failures"][0]
    assert compare("y", ref, ref * (1 + 1e-6), thresholds_for("fp32"))["pass"]  # float noise passes
    assert compare("y", ref, out, thresholds_for("fp16"))["pass"]  # lower precisions keep their contract
    zeros = np.zeros(4, np.float32)
    assert compare("y", zeros, zeros.copy(), thresholds_for("fp32"))["pass"]


def test_a_scalar_string_input_verifies(tmp_path):
    """StringConcat on 0-d strings (test_string_concat_zero_dimensional): the sample reached adapt_inputs as a
    Python str and the conversion ended in AttributeError (a crash)."""
    model = _model(
        [helper.make_node("StringConcat", ["a", "b"], ["y"])],
        [helper.make_tensor_value_info("a", TensorProto.STRING, []),
         helper.make_tensor_value_info("b", TensorProto.STRING, [])],
        [helper.make_tensor_value_info("y", TensorProto.STRING, [])],
        opset=20,
    )
    data = {"a": np.array(["abc"], dtype=object), "b": np.array([".com"], dtype=object)}
    res = edgeconv.convert(_save(model, tmp_path), "onnxruntime", data=data, output=tmp_path / "out",
                           runs=1, warmup=0, memory=False)
    assert res.exit_code == 0, res.report["verdict"]


def test_an_empty_output_compares():
    """Slice with a start past the end (test_slice_start_out_of_bounds) gives a [20, 0, 5] output: the top-1
    bookkeeping took the max of an empty array and raised (a crash)."""
    from edgeconv.verification.metrics import compare, thresholds_for

    ref = np.zeros((20, 0, 5), np.float32)
    res = compare("y", ref, ref.copy(), thresholds_for("fp32"))
    assert res["pass"], res["failures"]
