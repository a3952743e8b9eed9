"""``edgeconv debug layers``: a planted fault is named as the first diverging layer on onnxruntime, OpenVINO and
TFLite; a layer that breaks INT8 is localized and keeping it in float makes verification pass; bad inputs are one-line
errors; the trace format reads back; the HTML page carries the per-layer plot.

How the fault is planted (honestly): the artifact is a real conversion of the source with *one layer's weights*
perturbed (``conv2``: 20 % noise), everything else identical -- what a toolchain that miscompiles one layer would
produce. Its manifest then says it was made from the unperturbed source (the ``source`` record's path, sha256 and size
re-written, nothing else): the one claim a miscompiled artifact's manifest makes. The artifact's files and their
sha256 are untouched, so the manifest's own checks pass; a test below shows that without the edit the pair is refused.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, str(Path(__file__).parent))
from edgeconv import convert, verify  # noqa: E402
from edgeconv.debug import layers as debug_layers  # noqa: E402
from edgeconv.debug import trace as debug_trace  # noqa: E402
from edgeconv.debug import tracers  # noqa: E402
from edgeconv.errors import BadInput, ToolchainMissing  # noqa: E402
from test_sensitivity import outlier_files  # noqa: E402

EDGECONV = Path(sys.executable).parent / "edgeconv"
CHANNELS = (3, 8, 8, 8)


def chain(perturb: str | None = None, seed: int = 0) -> onnx.ModelProto:
    """conv1 -> relu1 -> conv2 -> relu2 -> conv3 -> relu3 -> gap -> flatten -> fc on [1,3,16,16]; ``perturb`` adds
    20 % noise to that conv's weights."""
    rng = np.random.default_rng(seed)
    inits, nodes, x = [], [], "input"
    for i in range(1, 4):
        cin, cout = CHANNELS[i - 1], CHANNELS[i]
        w = (rng.standard_normal((cout, cin, 3, 3)) / np.sqrt(9 * cin)).astype(np.float32)
        b = (rng.standard_normal(cout) * 0.1).astype(np.float32)
        if perturb == f"conv{i}":
            w = w + (np.random.default_rng(99).standard_normal(w.shape) * 0.2 * w.std()).astype(np.float32)
        inits += [numpy_helper.from_array(w, f"conv{i}.w"), numpy_helper.from_array(b, f"conv{i}.b")]
        nodes += [helper.make_node("Conv", [x, f"conv{i}.w", f"conv{i}.b"], [f"c{i}"], name=f"conv{i}",
                                   pads=[1, 1, 1, 1]),
                  helper.make_node("Relu", [f"c{i}"], [f"r{i}"], name=f"relu{i}")]
        x = f"r{i}"
    inits += [numpy_helper.from_array((rng.standard_normal((10, 8)) * 0.3).astype(np.float32), "fc.w"),
              numpy_helper.from_array(np.zeros(10, np.float32), "fc.b")]
    nodes += [helper.make_node("GlobalAveragePool", [x], ["p"], name="gap"),
              helper.make_node("Flatten", ["p"], ["f"], name="flatten", axis=1),
              helper.make_node("Gemm", ["f", "fc.w", "fc.b"], ["logits"], name="fc", transB=1)]
    graph = helper.make_graph(nodes, "chain", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 16, 16])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 10])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="edgeconv-tests")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def claim_source(folder: Path, source: Path) -> None:
    """Re-write the manifest's ``source`` record (path, sha256, size) to ``source``: nothing else changes."""
    file = folder / "manifest.json"
    m = json.loads(file.read_text())
    m["source"].update(path=str(source), sha256=hashlib.sha256(source.read_bytes()).hexdigest(),
                       size_bytes=source.stat().st_size)
    file.write_text(json.dumps(m, indent=2))


@pytest.fixture
def planted(tmp_path):
    """``(good source, data, make(target) -> artifact folder of the perturbed model)``."""
    (tmp_path / "good").mkdir()
    (tmp_path / "bad").mkdir()
    good, bad = tmp_path / "good" / "chain.onnx", tmp_path / "bad" / "chain.onnx"
    onnx.save(chain(), str(good))
    onnx.save(chain("conv2"), str(bad))
    data = tmp_path / "data.npz"
    np.savez(data, input=np.random.default_rng(1).random((8, 3, 16, 16), dtype=np.float32))

    def make(target: str) -> Path:
        res = convert(str(bad), target, precision="fp32", output=tmp_path / target, verify=False, memory=False)
        return res.artifact

    return good, data, make


def _names(row: dict) -> list[str]:
    return [row["node"], *(row.get("fused") or [])]


@pytest.mark.parametrize("target", ["onnxruntime", "openvino", pytest.param("tflite", marks=pytest.mark.slow)])
def test_planted_fault_is_the_first_diverging_layer(planted, target):
    good, data, make = planted
    folder = make(target)
    with pytest.raises(BadInput, match="not the source this artifact was made from"):
        debug_layers.layers(str(good), folder, data=str(data))  # the artifact, as made, is the perturbed model's
    claim_source(folder, good)
    ver = verify(str(good), folder, data=str(data), memory=False, runs=2)
    assert ver.exit_code == 1  # the fault shows at the output; which layer, verify cannot say

    doc = debug_layers.layers(str(good), folder, data=str(data))
    first = doc["first_diverging"]["accumulated"]
    assert first is not None and "conv2" in _names(first), first
    rows = doc["layers"]
    at = next(i for i, r in enumerate(rows) if r["tensor"] == first["tensor"])
    assert at >= 1 and all(r["accumulated"]["pass"] for r in rows[:at])  # conv1's group matches the source
    assert rows[at - 1]["accumulated"]["sqnr_db"] > 60  # to float32 rounding
    assert first["sqnr_db"] < 40  # the fp32 gate it misses
    assert debug_layers.exit_code(doc) == 1
    if target == "onnxruntime":  # isolated: each layer fed the source's tensors; only conv2 has an error of its own
        assert doc["isolated"] and doc["first_diverging"]["isolated"]["node"] == "conv2"
        assert [r["node"] for r in rows if not r["isolated"]["pass"]] == ["conv2"]
    else:
        assert not doc["isolated"] and doc["first_diverging"]["isolated"] is None
    if target == "tflite":  # onnx2tf fuses Conv+Relu: the group is matched to its last tensor, named with its nodes
        assert first["node"] == "relu2" and first["fused"] == ["conv2"]


def test_an_unperturbed_artifact_has_no_diverging_layer_and_traces_read_back(tmp_path):
    src = tmp_path / "chain.onnx"
    onnx.save(chain(), str(src))
    res = convert(str(src), "onnxruntime", precision="fp32", output=tmp_path / "o", verify=False, memory=False)
    doc = debug_layers.layers(str(src), res.artifact, samples=3, trace_dir=tmp_path / "traces")
    assert doc["first_diverging"] == {"accumulated": None, "isolated": None}
    assert doc["matched"] == 9 and not doc["unmatched"] and debug_layers.exit_code(doc) == 0
    assert doc["warnings"] and "random inputs" in doc["warnings"][0]
    ref = debug_trace.load(tmp_path / "traces", "reference")
    acc = debug_trace.load(tmp_path / "traces", "accumulated")
    assert ref.mode == "reference" and acc.mode == "accumulated" and ref.samples == 3
    assert ref.order == [t for n in chain().graph.node for t in n.output]  # graph order
    assert acc.stacked("c2").shape == (3, 1, 8, 16, 16)
    np.testing.assert_allclose(acc.stacked("logits"), ref.stacked("logits"), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("target", ["onnxruntime", pytest.param("tflite", marks=pytest.mark.slow)])
def test_int8_failure_is_localized_and_keeping_it_float_passes(tmp_path, target):
    f = outlier_files(tmp_path)  # conv2 reads relu1's output, whose INT8 range spans an outlier channel
    common = {"precision": "int8", "calibration": str(f["calib"]), "data": str(f["test"]), "runs": 2,
              "memory": False}
    plain = convert(str(f["model"]), target, output=tmp_path / "int8", **common)
    assert plain.exit_code == 1
    doc = debug_layers.layers(str(f["model"]), plain.artifact, data=str(f["test"]), samples=16)
    first = doc["first_diverging"]["accumulated"]
    assert first["node"] == "conv2" and first["op_type"] == "Conv"
    assert all(r["accumulated"]["pass"] for r in doc["layers"] if r["index"] < first["index"])
    if doc["isolated"]:  # its own error, not one carried from upstream
        assert doc["first_diverging"]["isolated"]["node"] == "conv2"
    kept = convert(str(f["model"]), target, output=tmp_path / "kept", options={"keep_float": ["conv2"]}, **common)
    assert kept.exit_code == 0, kept.report["verdict"]
    assert kept.report["accuracy"]["drop_pp"] <= 1.0


def test_cli_layers_json_text_and_html_report(tmp_path, cli):
    f = outlier_files(tmp_path)
    res = convert(str(f["model"]), "onnxruntime", precision="int8", calibration=str(f["calib"]), output=tmp_path / "o",
                  verify=False, memory=False)
    out = cli("debug", "layers", str(f["model"]), str(res.artifact), "--data", str(f["test"]), "--json")
    assert out.exit_code == 1, out.output
    doc = json.loads(out.stdout)
    assert doc["schema"] == "edgeconv.layers/1" and doc["first_diverging"]["accumulated"]["node"] == "conv2"
    page = tmp_path / "layers.html"
    out = cli("debug", "layers", str(f["model"]), str(res.artifact), "--data", str(f["test"]), "--only-failing",
              "--report", str(page))
    assert out.exit_code == 1
    lines = out.stdout.splitlines()
    assert any(ln.startswith("FIRST DIVERGING LAYER (accumulated") and "'conv2'" in ln for ln in lines)
    table = [ln for ln in lines if ln[:4].strip().isdigit()]
    assert table and all(ln.rstrip().endswith(("!", ")")) for ln in table)  # --only-failing: failing rows only
    html = page.read_text()
    assert 'id="layers"' in html and "data:image/svg+xml;base64," in html and "conv2" in html


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "EDGECONV_DEBUG"}
    return subprocess.run([str(EDGECONV), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def _one_line_error(proc: subprocess.CompletedProcess, code: int, *words: str) -> None:
    assert proc.returncode == code, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("edgeconv: error:"), proc.stderr
    assert "Traceback" not in proc.stderr and not proc.stdout.strip()
    for w in words:
        assert w in lines[0], lines[0]


def test_bad_inputs_are_one_line_errors(tmp_path):
    good, other = tmp_path / "chain.onnx", tmp_path / "other.onnx"
    onnx.save(chain(), str(good))
    onnx.save(chain(seed=1), str(other))
    res = convert(str(good), "onnxruntime", precision="fp32", output=tmp_path / "o", verify=False, memory=False)
    _one_line_error(_run("debug", "layers", "chain.onnx", "missing-folder", cwd=tmp_path), 2, "missing-folder",
                    "no such folder")
    _one_line_error(_run("debug", "layers", "other.onnx", "o", cwd=tmp_path), 2, "other.onnx",
                    "not the source this artifact was made from")
    _one_line_error(_run("debug", "layers", "chain.onnx", "chain.onnx", cwd=tmp_path), 2, "not an edgeconv output")
    _one_line_error(_run("debug", "layers", "chain.onnx", "o", "--samples", "0", cwd=tmp_path), 2, "--samples")
    (res.artifact / "chain.onnx").write_bytes(other.read_bytes())  # swapped behind the manifest's back
    _one_line_error(_run("debug", "layers", "chain.onnx", "o", cwd=tmp_path), 2, "changed since edgeconv made it")


def test_a_form_without_a_tracer_says_why_with_exit_3(tmp_path):
    """A TensorRT plan cannot be traced: the reason names the runner and why, before any work."""
    src = tmp_path / "chain.onnx"
    onnx.save(chain(), str(src))
    res = convert(str(src), "onnxruntime", precision="fp32", output=tmp_path / "o", verify=False, memory=False)
    plan = res.artifact / "chain.plan"
    plan.write_bytes(b"not a real plan")
    m = json.loads((res.artifact / "manifest.json").read_text())
    m.update(form="tensorrt", target="tensorrt", artifact=["chain.plan"], runner_options={},
             files={"chain.plan": hashlib.sha256(plan.read_bytes()).hexdigest()})
    (res.artifact / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ToolchainMissing, match="the tensorrt runner registers no tracer.*Polygraphy"):
        debug_layers.layers(str(src), res.artifact)
    tracer, why = tracers.find("no-such-form")
    assert tracer is None and "no runner is registered" in why
    assert tracers.find("onnx")[0].name == "onnxruntime"


def test_the_reference_stops_taking_samples_past_its_memory_budget(tmp_path, monkeypatch):
    model = chain()
    feeds = [{"input": np.random.default_rng(i).random((1, 3, 16, 16), dtype=np.float32)} for i in range(5)]
    one = sum(a[0].nbytes for a in debug_trace.reference_trace(model, feeds[:1]).tensors.values())
    t = debug_trace.reference_trace(model, feeds, max_bytes=2 * one)
    assert t.samples == 2 and "traced on 2 of 5 samples" in t.notes[0]
    src = tmp_path / "chain.onnx"
    onnx.save(model, str(src))
    res = convert(str(src), "onnxruntime", precision="fp32", output=tmp_path / "o", verify=False, memory=False)
    monkeypatch.setattr(debug_trace, "REFERENCE_BYTES", 3 * one)
    doc = debug_layers.layers(str(src), res.artifact, samples=6)
    assert doc["data"]["samples"] == 3 and any("traced on 3 of 6 samples" in w for w in doc["warnings"])
