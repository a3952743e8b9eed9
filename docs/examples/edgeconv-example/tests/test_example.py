"""The example backend's own tests: run them with the package installed (pip install -e .).

They use only edgeconv's public pieces: the plugin API, the plugin manager (to load the entry point
afresh), the Python API, the CLI app and the digits sample that ships with edgeconv.
"""

from __future__ import annotations

import json

import onnx
import pytest
from onnx import TensorProto, helper
from typer.testing import CliRunner

import edgeconv
from edgeconv import plugins
from edgeconv.demo import sample_files
from edgeconv.plugin import API_VERSION, BadInput, UnsupportedOperators


@pytest.fixture(autouse=True)
def fresh_plugins():
    """Entry points read again for each test."""
    plugins.reset()
    yield plugins
    plugins.reset()


@pytest.fixture(scope="module")
def digits():
    return sample_files()  # a small CNN (opset 17) and its labelled test split


def test_the_entry_point_registers_the_target_and_its_pass(fresh_plugins):
    registry = fresh_plugins.registry()
    target = registry.targets["example"]
    assert target.dist == "edgeconv-example" and target.missing() == []
    assert registry.passes["example.opset"].kind == "precision"
    info = {p.name: p for p in fresh_plugins.plugins()}["example"]
    assert info.hooks == ["register_passes", "register_targets"] and not info.broken
    from edgeconv_example import hooks  # the plugin API version it was written against: the core's major

    assert hooks.EDGECONV_API.split(".")[0] == API_VERSION.split(".")[0]


def test_convert_pins_the_opset_and_the_artifact_is_verified(digits, tmp_path):
    result = edgeconv.convert(digits["model"], "example", options={"opset": 19}, data=digits["test"],
                              output=tmp_path / "out", runs=5, memory=False)
    assert result.exit_code == 0, result.report["verdict"]
    report = result.report
    artifact = onnx.load(report["artifact"]["path"])
    assert [o.version for o in artifact.opset_import if o.domain in ("", "ai.onnx")] == [19]
    assert report["artifact"]["details"]["opset"] == {"from": 17, "to": 19}
    pass_record = report["passes"][-1]  # the conversion is the pass; the exporter only wrote its result
    assert pass_record["name"] == "example.opset" and pass_record["from"] == 17 and pass_record["settings"] == {"opset": 19}
    assert report["versions"]["onnx"] == onnx.__version__
    assert report["fidelity"][0]["max_abs"] < 1e-4  # the same computation, verified on ONNX Runtime
    assert report["accuracy"]["drop_pp"] == 0
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["target"] == "example" and manifest["details"]["converter"].startswith("onnx.version_converter")
    assert {"name": "example.opset", "settings": {"opset": 19}} in manifest["passes"]


def test_the_cli_lists_and_converts(digits, tmp_path):
    from edgeconv.cli import make_app

    runner = CliRunner()
    rows = {r["name"]: r for r in json.loads(runner.invoke(make_app(), ["targets", "--json"]).stdout)["targets"]}
    assert rows["example"]["status"] == "ready" and rows["example"]["provider"] == "edgeconv-example"
    assert rows["example"]["options"][0]["name"] == "opset"
    res = runner.invoke(make_app(), ["convert", str(digits["model"]), "--to", "example", "-O", "opset=16",
                                     "-o", str(tmp_path / "o"), "--runs", "5", "--no-memory", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["verdict"]["status"] == "pass"


def _layernorm_model(path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    scale = helper.make_tensor("scale", TensorProto.FLOAT, [4], [1.0] * 4)
    node = helper.make_node("LayerNormalization", ["x", "scale"], ["y"], name="ln_1")
    graph = helper.make_graph([node], "g", [x], [y], initializer=[scale])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


def test_an_operator_newer_than_the_opset_is_refused_before_export(tmp_path):
    src = tmp_path / "ln.onnx"
    _layernorm_model(src)
    with pytest.raises(UnsupportedOperators) as err:  # LayerNormalization exists from opset 17
        edgeconv.convert(src, "example", options={"opset": 16}, output=tmp_path / "o")
    assert err.value.nodes == [("ln_1", "LayerNormalization")] and err.value.exit_code == 4
    assert not (tmp_path / "o").exists()


def test_an_opset_without_an_adapter_is_refused_naming_the_nodes(digits, tmp_path):
    with pytest.raises(UnsupportedOperators) as err:  # Relu 14 -> 13: the converter has no adapter
        edgeconv.convert(digits["model"], "example", options={"opset": 13}, output=tmp_path / "o")
    assert {op for _, op in err.value.nodes} == {"Relu"}


@pytest.mark.parametrize(("value", "message"), [("x", "must be int"), ("99", "must be between 7 and")])
def test_bad_opset_values(digits, tmp_path, value, message):
    with pytest.raises(BadInput, match=message):
        edgeconv.convert(digits["model"], "example", options={"opset": value}, output=tmp_path / "o")


def test_doctor_reports_the_opsets():
    from edgeconv.doctor import run_doctor

    details = run_doctor()["targets"]["example"]["details"]
    assert details["onnx"] == onnx.__version__ and details["opsets"].startswith("7 to ")
