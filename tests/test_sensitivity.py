"""edgeconv.sensitivity: ranking layers by their INT8 error, the search over the ranking, and
onnxruntime's translation of keep_float -- on a model built so that one layer breaks under INT8.

``outlier_classifier`` is shared with tests/test_auto.py and the OpenVINO plugin's keep_float test.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgeconv import sensitivity
from edgeconv.errors import BadInput

SHAPE = (3, 16, 16)


def outlier_classifier(seed: int = 0, outlier: float = 2000.0, threshold: float = 0.9) -> onnx.ModelProto:
    """conv1 -> relu1 -> conv2 -> gap -> flatten -> fc: a 10-class classifier on [N,3,16,16] noise.

    Inputs are image-like, uniform in [0, 1]. conv1's channel 7 is ``outlier * relu(x[0] - threshold)``:
    zero but on the brightest tenth of the pixels,
    where it reaches thousands. conv2 reads it with tiny weights, so the float model barely
    notices -- but the INT8 range of conv2's input (relu1's output) spans the outlier, and every
    ordinary activation (around 1) rounds to 0: INT8 breaks at conv2's input, and only there.
    The fc bias centres the logits so that the classes are balanced.
    """
    import onnxruntime as ort

    rng = np.random.default_rng(seed)
    w1 = rng.standard_normal((8, 3, 3, 3)).astype(np.float32) * 0.3
    b1 = (rng.standard_normal(8) * 0.1).astype(np.float32)
    w1[7] = 0.0
    w1[7, 0, 1, 1] = outlier
    b1[7] = -threshold * outlier
    w2 = (rng.standard_normal((16, 8, 3, 3)) * 0.2).astype(np.float32)
    w2[:, 7] *= 1e-5
    b2 = np.zeros(16, np.float32)
    fc = rng.standard_normal((10, 16)).astype(np.float32)
    fc_b = np.zeros(10, np.float32)

    def build(bias: np.ndarray) -> onnx.ModelProto:
        inits = [numpy_helper.from_array(a, n) for a, n in
                 ((w1, "conv1.w"), (b1, "conv1.b"), (w2, "conv2.w"), (b2, "conv2.b"), (fc, "fc.w"), (bias, "fc.b"))]
        nodes = [
            helper.make_node("Conv", ["input", "conv1.w", "conv1.b"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
            helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
            helper.make_node("Conv", ["r1", "conv2.w", "conv2.b"], ["c2"], name="conv2", pads=[1, 1, 1, 1]),
            helper.make_node("GlobalAveragePool", ["c2"], ["p"], name="gap"),
            helper.make_node("Flatten", ["p"], ["f"], name="flatten", axis=1),
            helper.make_node("Gemm", ["f", "fc.w", "fc.b"], ["logits"], name="fc", transB=1),
        ]
        graph = helper.make_graph(nodes, "outlier", [helper.make_tensor_value_info("input", TensorProto.FLOAT,
                                                                                  ["batch", *SHAPE])],
                                  [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 10])], inits)
        m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="edgeconv-tests")
        m.ir_version = 8
        onnx.checker.check_model(m)
        return m

    probe = build(fc_b)
    x = np.random.default_rng(seed + 100).random((512, *SHAPE), dtype=np.float32)
    so = ort.SessionOptions()
    so.log_severity_level = 3
    logits = ort.InferenceSession(probe.SerializeToString(), so, providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    return build((-logits.mean(0)).astype(np.float32))


def outlier_files(folder: Path, seed: int = 0) -> dict[str, Path]:
    """The model, a calibration set (64 samples) and a test set labelled by the float model: the 400
    samples (of 2000 drawn) with the clearest top-1 margin, so that ordinary INT8 rounding flips none
    and the accuracy drop measures the broken layer only."""
    import onnxruntime as ort

    model = outlier_classifier(seed)
    paths = {"model": folder / "outlier.onnx", "calib": folder / "outlier_calib.npz", "test": folder / "outlier_test.npz"}
    onnx.save(model, str(paths["model"]))
    rng = np.random.default_rng(seed + 1)
    calib = rng.random((64, *SHAPE), dtype=np.float32)
    pool = rng.random((2000, *SHAPE), dtype=np.float32)
    so = ort.SessionOptions()
    so.log_severity_level = 3
    logits = ort.InferenceSession(str(paths["model"]), so, providers=["CPUExecutionProvider"]).run(None, {"input": pool})[0]
    top2 = np.sort(logits, axis=-1)[:, -2:]
    clear = np.argsort(top2[:, 0] - top2[:, 1])[:400]  # the largest margins
    test, labels = pool[clear], logits[clear].argmax(-1)
    np.savez(paths["calib"], input=calib)
    np.savez(paths["test"], input=test, labels=labels)
    return paths


def _feeds(x: np.ndarray) -> list[dict[str, np.ndarray]]:
    return [{"input": x[i:i + 1]} for i in range(len(x))]


def test_outlier_model_is_balanced_and_float_exact():
    model = outlier_classifier()
    import onnxruntime as ort

    x = np.random.default_rng(5).random((300, *SHAPE), dtype=np.float32)
    logits = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    counts = np.bincount(logits.argmax(-1), minlength=10)
    assert (counts > 0).sum() >= 6, counts  # not a constant classifier: accuracy can fall


def test_rank_puts_the_outlier_layer_first():
    model = outlier_classifier()
    rng = np.random.default_rng(3)
    ranked = sensitivity.rank(model, _feeds(rng.random((16, *SHAPE), dtype=np.float32)),
                              _feeds(rng.random((32, *SHAPE), dtype=np.float32)))
    names = [r["node"] for r in ranked]
    assert set(names) == {"conv1", "conv2", "gap", "fc"}  # flatten is plumbing, relu1 an activation
    # quantizing conv2's input alone destroys the output...
    assert names[0] == "conv2" and ranked[0]["score"] > 0.3
    # ...while each other layer alone costs far less
    assert all(r["score"] < 0.1 for r in ranked[1:]) and ranked[0]["score"] > 20 * ranked[1]["score"]
    assert ranked[0]["sqnr_db"] < 5 < ranked[1]["sqnr_db"]


def test_rank_quantizes_only_the_one_node():
    """The single-node model differs from the float one only around that node."""
    model = outlier_classifier()
    index = [n.name for n in model.graph.node].index("conv2")
    q = sensitivity._quantized_alone(model, index, {"r1": (0.0, 4000.0)})
    ops = [n.op_type for n in q.graph.node]
    assert ops.count("QuantizeLinear") == 1 and ops.count("DequantizeLinear") == 1
    conv2 = next(n for n in q.graph.node if n.name == "conv2")
    assert conv2.input[0].endswith("__edgeconv_dq") and conv2.input[1] == "conv2.w__edgeconv_fq"
    conv1 = next(n for n in q.graph.node if n.name == "conv1")
    assert list(conv1.input) == ["input", "conv1.w", "conv1.b"]
    onnx.checker.check_model(q)


def test_fake_quant_weights_is_per_channel_int8():
    w = np.array([[1.0, -0.5, 0.25], [100.0, 3.0, -7.0]], np.float32)
    fq = sensitivity._fake_quant_weights(w, 0)
    assert np.allclose(fq[0], np.round(w[0] / (1 / 127)) * (1 / 127))
    assert np.abs(fq - w).max(axis=1)[0] <= 0.5 / 127 + 1e-7  # row 0 keeps its own fine scale
    assert len(np.unique(np.round(fq[1] / (100 / 127)))) == 3


def test_search_finds_the_smallest_prefix_then_prunes():
    calls = []

    def meets(keep):  # needs "b" and "d" both float
        calls.append(list(keep))
        return {"b", "d"} <= set(keep)

    res = sensitivity.search(["a", "b", "c", "d", "e", "f"], meets, max_trials=20)
    assert res.found and sorted(res.keep) == ["b", "d"]
    assert calls[:3] == [["a"], ["a", "b"], ["a", "b", "c", "d"]]  # 1, 2, 4
    assert all(t["pass"] == ({"b", "d"} <= set(t["keep_float"])) for t in res.trials)


def test_search_respects_the_trial_limit_and_reports_failure():
    res = sensitivity.search(["a", "b", "c"], lambda keep: False, max_trials=10)
    assert not res.found and res.keep == []
    assert [len(t["keep_float"]) for t in res.trials] == [1, 2, 3]
    calls = []
    res = sensitivity.search([str(i) for i in range(100)], lambda keep: calls.append(1) or len(keep) >= 40, max_trials=5)
    assert len(calls) == 5 and not res.found  # 1, 2, 4, 8, 16: the limit stops it before a passing size
    calls.clear()
    res = sensitivity.search([str(i) for i in range(100)], lambda keep: calls.append(1) or len(keep) >= 40, max_trials=7)
    assert len(calls) == 7 and res.found and len(res.keep) == 64  # found at 64, no trial left to bisect


def test_keep_float_option_parsing():
    assert sensitivity.keep_float_option({"keep_float": "a, b,,a"}) == ["a", "b"]
    assert sensitivity.keep_float_option({"keep_float": ("x", "y")}) == ["x", "y"]
    assert sensitivity.keep_float_option({}) == []


def test_onnxruntime_keep_float_fixes_the_broken_layer(tmp_path):
    """Plain int8 fails; keep_float=conv2 (nodes_to_exclude + its input's Q/DQ removed) passes."""
    from edgeconv import convert
    from edgeconv.report import Budgets

    f = outlier_files(tmp_path)
    common = dict(calibration=str(f["calib"]), data=str(f["test"]), budgets=Budgets(max_accuracy_drop=1.0),
                  memory=False, runs=5)
    plain = convert(str(f["model"]), "onnxruntime", precision="int8", output=tmp_path / "plain", **common)
    assert plain.exit_code == 1 and plain.report["accuracy"]["drop_pp"] > 20
    kept = convert(str(f["model"]), "onnxruntime", precision="int8", output=tmp_path / "kept", keep_float="conv2",
                   **common)
    assert kept.exit_code == 0, kept.report["verdict"]
    assert kept.report["accuracy"]["drop_pp"] <= 1.0
    settings = next(p for p in kept.report["passes"] if p["name"] == "ort.quantize_static")["settings"]
    assert settings["keep_float"] == ["conv2"]
    assert settings["nodes_to_exclude"] == ["conv2", "relu1"]  # the Relu ORT would fold into r1's uint8 range
    assert settings["float_inputs_restored"] >= 1
    q = onnx.load(str(tmp_path / "kept" / "outlier.onnx"))
    conv2 = next(n for n in q.graph.node if n.name == "conv2")
    assert conv2.input[0] == "r1" and conv2.input[1] == "conv2.w"  # float input, float weights
    assert sum(n.op_type == "QuantizeLinear" for n in q.graph.node) >= 2  # the rest is still int8


def test_keep_float_unknown_node_is_one_line_error(tmp_path, digits):
    from edgeconv import convert

    with pytest.raises(BadInput, match=r"no node 'conv9'.*did you mean 'conv\d'"):
        convert(str(digits["model"]), "onnxruntime", precision="int8", calibration=str(digits["calib"]),
                output=tmp_path / "o", keep_float=["conv9"], verify=False)
