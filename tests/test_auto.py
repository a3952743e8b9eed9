"""--precision auto: candidates, the sensitive-layer fallback, runtime settings, the winner's output."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from edgeconv import bench, convert  # noqa: E402
from edgeconv.errors import BadInput  # noqa: E402
from edgeconv.report import Budgets  # noqa: E402
from test_sensitivity import outlier_files  # noqa: E402


def convert_auto(source, target, **kwargs):
    return convert(source, target, precision="auto", **kwargs)


@pytest.fixture(scope="module")
def digits_auto(tmp_path_factory, digits):
    out = tmp_path_factory.mktemp("auto") / "digits-auto"
    res = convert(str(digits["model"]), "onnxruntime", precision="auto", calibration=str(digits["calib"]),
                  data=str(digits["test"]), output=out, budgets=Budgets(max_accuracy_drop=0.5), runs=20,
                  memory=False)
    return res


def test_digits_auto_picks_int8_within_half_a_point(digits_auto):
    r = digits_auto.report
    assert digits_auto.exit_code == 0, r["verdict"]
    assert r["precision"] == "int8" and r["precision_requested"] == "auto"
    assert r["accuracy"]["drop_pp"] <= 0.5
    assert r["budgets"]["accuracy_drop_pp"] == {"limit": 0.5, "value": r["accuracy"]["drop_pp"], "pass": True}
    names = [c["name"] for c in r["auto"]["candidates"]]
    assert names[:3] == ["fp32", "fp16", "int8"]  # every precision onnxruntime offers (no bf16)
    assert r["auto"]["winner"] == "int8" and r["auto"]["accuracy_budget_source"] == "--max-accuracy-drop"
    for c in r["auto"]["candidates"]:
        assert c["qualifies"] == (not c["failures"])
        assert "accuracy_drop_pp" in c["budgets"]
        assert c["settings_tried"], c  # timed with several runner settings
    assert r["auto"]["why"].startswith("int8 ")


def test_winner_is_the_fastest_qualifying_measured(digits_auto):
    auto = digits_auto.report["auto"]
    qualifying = [c for c in auto["candidates"] if c["qualifies"]]
    fastest = min(qualifying, key=lambda c: c["latency_ms_p50"])
    assert fastest["name"] == auto["winner"]
    assert digits_auto.report["latency_ms"]["p50"] == pytest.approx(fastest["latency_ms_p50"])
    tried = [s["settings"] for s in fastest["settings_tried"]]  # each variant against the defaults, paired
    assert "graph_optimization=basic" in tried and all(s["ratio"] > 0 for s in fastest["settings_tried"])


def test_output_holds_the_winner_only_and_its_settings(digits_auto):
    out = digits_auto.artifact
    assert sorted(p.name for p in out.iterdir()) == ["digits_cnn.onnx", "manifest.json", "report.json"]
    manifest = json.loads((out / "manifest.json").read_text())
    settings = digits_auto.report["auto"]["runner_settings"]
    assert manifest["precision"] == "int8"
    assert manifest["auto"]["winner"] == "int8" and manifest["auto"]["runner_settings"] == settings
    for k, v in settings.items():
        assert manifest["runner_options"][k] == v
    assert digits_auto.report["artifact"]["path"] == str(out / "digits_cnn.onnx")
    # edgeconv bench reuses the stored settings
    b = bench(out, runs=3, memory=False)
    assert b["runtime"]["graph_optimization"] == manifest["runner_options"]["graph_optimization"]
    if "intra_op_threads" in settings:
        assert b["runtime"]["threads"] == settings["intra_op_threads"]


def test_render_shows_every_candidate(digits_auto):
    from rich.console import Console

    from edgeconv.cli.render import render

    console = Console(record=True, width=220)
    render(digits_auto.report, console)
    text = console.export_text()
    assert "--precision auto: candidates" in text and "winner:" in text
    for c in digits_auto.report["auto"]["candidates"]:
        assert c["name"] in text


def test_html_report_has_the_auto_section(digits_auto):
    pytest.importorskip("matplotlib")
    from edgeconv.html_report import render_html

    page = render_html(digits_auto.report)
    assert 'id="auto"' in page and "int8" in page and "winner" in page


def test_outlier_int8_fails_and_auto_keeps_the_layer_in_float(tmp_path):
    f = outlier_files(tmp_path)
    res = convert_auto(str(f["model"]), "onnxruntime", calibration=str(f["calib"]), data=str(f["test"]),
                  output=tmp_path / "o", budgets=Budgets(max_accuracy_drop=1.0), runs=10, memory=False,
                  precisions=("int8",))
    r = res.report
    assert res.exit_code == 0, r["verdict"]
    plain = r["auto"]["candidates"][0]
    assert plain["name"] == "int8" and not plain["qualifies"] and plain["accuracy"]["drop_pp"] > 20
    sens = r["auto"]["sensitivity"]
    assert sens["found"] and sens["keep_float"] == ["conv2"]  # found at the first trial
    assert sens["ranked"][0]["node"] == "conv2" and len(sens["trials"]) == 1
    assert r["auto"]["winner"].startswith("int8+float[")
    assert r["accuracy"]["drop_pp"] <= 1.0
    manifest = json.loads((res.artifact / "manifest.json").read_text())
    assert manifest["options"]["keep_float"] == sens["keep_float"]
    assert manifest["auto"]["keep_float"] == sens["keep_float"]


def test_no_candidate_meets_the_budget_exit_1(tmp_path):
    f = outlier_files(tmp_path)
    res = convert_auto(str(f["model"]), "onnxruntime", calibration=str(f["calib"]), data=str(f["test"]),
                  output=tmp_path / "o", budgets=Budgets(max_accuracy_drop=1.0), runs=5, memory=False,
                  precisions=("int8",), fallback=False)
    assert res.exit_code == 1 and res.report["verdict"]["status"] == "fail"
    assert "no candidate met" in res.report["auto"]["why"]
    assert (res.artifact / "manifest.json").is_file()


def test_default_accuracy_budget_is_explicit(tmp_path, digits):
    res = convert_auto(str(digits["model"]), "onnxruntime", calibration=str(digits["calib"]),
                       data=str(digits["test"]), output=tmp_path / "o", runs=5, memory=False, precisions=("fp32", "int8"),
                  search_runtime=False)
    auto = res.report["auto"]
    assert auto["accuracy_budget_pp"] == 1.0 and auto["accuracy_budget_source"].startswith("default")
    assert res.report["budgets"]["accuracy_drop_pp"]["limit"] == 1.0
    assert any("1.0 pp (the default" in w for w in res.report["warnings"])


@pytest.mark.parametrize("kwargs, message", [
    ({"verify": False}, "cannot run with --no-verify"),
    ({"prepare_only": True}, "cannot run with --prepare-only"),
    ({"keep_float": ["conv1"]}, "finds the layers to keep in float itself"),
    ({"options": {"nodes_to_exclud": "x"}}, "has no option 'nodes_to_exclud'"),
    ({"precisions": ("bf16",)}, "does not support precision 'bf16'"),
])
def test_bad_auto_requests_are_one_line_errors(tmp_path, digits, kwargs, message):
    with pytest.raises(BadInput, match=message):
        convert_auto(str(digits["model"]), "onnxruntime", output=tmp_path / "o", **kwargs)
    assert not (tmp_path / "o").exists()


def test_cli_precision_auto_json(tmp_path, digits, cli):
    out = tmp_path / "o"
    res = cli("convert", str(digits["model"]), "--precision", "auto", "--calib", str(digits["calib"]), "--data",
              str(digits["test"]), "-o", str(out), "--max-accuracy-drop", "0.5", "--runs", "5", "--no-memory", "--json")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    assert doc["auto"]["winner"] == doc["precision"] and doc["precision_requested"] == "auto"


def test_a_pruned_torch_source_is_pruned_once_for_every_candidate(tmp_path, monkeypatch):
    """--prune with --precision auto: the candidates are built from one pruned module (pruning and the
    fine-tune ran once per candidate before, and each candidate could see a differently tuned model)."""
    import torch

    import edgeconv.builtins.torch_prune as prune_mod
    from edgeconv.testing.refnets import DigitsCNN

    calls = []
    real = prune_mod.prune

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(prune_mod, "prune", counting)
    torch.manual_seed(0)
    res = convert_auto((DigitsCNN().eval(), (torch.randn(1, 1, 8, 8),)), "onnxruntime", output=tmp_path / "o",
                       source_options={"prune": 0.3}, precisions=("fp32", "fp16"), fallback=False,
                       search_runtime=False, runs=3, warmup=0, memory=False)
    assert len(calls) == 1
    assert [c["name"] for c in res.report["auto"]["candidates"]] == ["fp32", "fp16"]
    assert res.report["source"]["meta"]["prune"]["ratio"] == pytest.approx(0.3)
