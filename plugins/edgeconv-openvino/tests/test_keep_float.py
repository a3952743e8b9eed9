"""keep_float on OpenVINO: ONNX node names -> OpenVINO op names -> NNCF IgnoredScope, and
--precision auto's sensitive-layer fallback on a model with one INT8-breaking layer."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import onnx
import pytest

sys.path.insert(0, str(Path(__file__).parents[3] / "tests"))
from edgeconv_openvino.quantize import onnx_to_ov_names  # noqa: E402

import edgeconv  # noqa: E402
from edgeconv.errors import BadInput  # noqa: E402
from edgeconv.report import Budgets  # noqa: E402

convert = edgeconv.convert
from test_sensitivity import outlier_classifier, outlier_files  # noqa: E402

pytest.importorskip("nncf")


def _ov(proto, tmp_path):
    import openvino as ov

    path = tmp_path / "m.onnx"
    onnx.save(proto, str(path))
    return ov.convert_model(str(path))


def test_mapping_onnx_nodes_to_openvino_ops(tmp_path, digits):
    import openvino as ov

    proto = onnx.load(str(digits["model"]))
    ov_model = ov.convert_model(str(digits["model"]))
    mapped = onnx_to_ov_names(proto.graph, ov_model, [n.name for n in proto.graph.node])
    types = {op.get_friendly_name(): op.get_type_name() for op in ov_model.get_ordered_ops()}
    # a Conv with bias became Convolution + Add; the Gemm a MatMul (named after its output) + Add
    assert sorted(types[n] for n in mapped["conv1"]) == ["Add", "Convolution"]
    assert "Convolution" in [types[n] for n in mapped["conv3"]]
    assert "MatMul" in [types[n] for n in mapped["gemm1"]]
    assert [types[n] for n in mapped["relu2"]] == ["Relu"]
    owned = [n for ops in mapped.values() for n in ops]
    assert len(owned) == len(set(owned))  # no op belongs to two ONNX nodes
    # every compute op of the IR belongs to some ONNX node
    compute = {n for n, t in types.items() if t in ("Convolution", "MatMul", "Relu", "MaxPool", "Add")}
    assert compute <= set(owned)
    # and NNCF accepts them as an ignored scope
    import nncf

    nncf.IgnoredScope(names=mapped["conv2"], validate=True)


def test_keep_float_becomes_nncf_ignored_scope_and_fixes_int8(tmp_path):
    f = outlier_files(tmp_path)
    common = dict(calibration=str(f["calib"]), data=str(f["test"]), budgets=Budgets(max_accuracy_drop=1.0),
                  memory=False, runs=5, options={"subset_size": 64, "accuracy_control": False})
    plain = convert(str(f["model"]), "openvino", precision="int8", output=tmp_path / "plain", **common)
    assert plain.exit_code == 1 and plain.report["accuracy"]["drop_pp"] > 20
    kept = convert(str(f["model"]), "openvino", precision="int8", output=tmp_path / "kept",
                   **{**common, "options": {"subset_size": 64, "accuracy_control": False, "keep_float": "conv2"}})
    # conv2 in float removes most of the damage (NNCF's symmetric int8 leaves a few pp elsewhere on this
    # model: the auto test below finds the rest)
    assert kept.report["accuracy"]["drop_pp"] < plain.report["accuracy"]["drop_pp"] / 4
    assert kept.report["fidelity"][0]["cosine"] > plain.report["fidelity"][0]["cosine"] + 0.1
    q = kept.report["artifact"]["details"]["quantization"]
    assert q["keep_float"] == ["conv2"] and q["keep_float_ov_names"] == ["conv2/WithoutBiases"]
    assert "conv2/WithoutBiases" in q["ignored_names"]
    assert 0 < q["fake_quantize_nodes"] < plain.report["artifact"]["details"]["quantization"]["fake_quantize_nodes"]


def test_keep_float_unknown_node(tmp_path):
    path = tmp_path / "m.onnx"
    onnx.save(outlier_classifier(), str(path))
    with pytest.raises(BadInput, match=r"no node 'conv3'; did you mean 'conv\d'"):
        convert(str(path), "openvino", precision="int8", calibration="random", output=tmp_path / "o",
                options={"keep_float": "conv3"}, verify=False)


@pytest.mark.slow
def test_auto_finds_the_outlier_layer_on_openvino(tmp_path):
    f = outlier_files(tmp_path)
    res = edgeconv.convert(str(f["model"]), "openvino", precision="auto", calibration=str(f["calib"]), data=str(f["test"]),
                           output=tmp_path / "o", budgets=Budgets(max_accuracy_drop=1.0), runs=10, memory=False,
                           precisions=("int8",), options={"subset_size": 64})
    r = res.report
    assert res.exit_code == 0, r["verdict"]
    assert not r["auto"]["candidates"][0]["qualifies"]
    keep = r["auto"]["sensitivity"]["keep_float"]
    assert "conv2" in keep and len(keep) <= 3  # conv2, plus what NNCF's int8 costs elsewhere on this model
    assert r["auto"]["winner"].startswith("int8+float[") and r["accuracy"]["drop_pp"] <= 1.0
    manifest = json.loads((res.artifact / "manifest.json").read_text())
    assert "conv2/WithoutBiases" in manifest["details"]["quantization"]["ignored_names"]
