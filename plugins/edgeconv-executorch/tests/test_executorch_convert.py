"""Real conversions to ExecuTorch, verified against eager PyTorch with the ExecuTorch runtime on this host.

The digits CNN (edgeconv.testing.refnets.digits_trained: the shipped ONNX sample's trained weights in torch) on
its labelled test split at fp32, fp16 and int8, the fully portable program (delegate=none), ResNet-18 at fp32 and
int8 (slow), the .pte as a model of its own (edgeconv.bench), and the board half run in an isolated Python.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import edgeconv
from edgeconv.testing.refnets import build, digits_trained

DIGITS_ACCURACY = 535 / 540  # the shipped digits CNN on its test split (99.07 %)


def _convert(source, precision, out, example, **kwargs):
    kwargs.setdefault("memory", False)
    kwargs.setdefault("runs", 5)
    return edgeconv.convert(source, "executorch", precision=precision, output=out,
                            source_options={"example_inputs": example}, **kwargs)


@pytest.fixture(scope="module")
def digits_runs(digits, tmp_path_factory):
    base = tmp_path_factory.mktemp("digits")
    common = dict(calibration=str(digits["calib"]), data=str(digits["test"]))
    runs = {p: _convert(digits_trained(), p, base / p, torch.zeros(1, 1, 8, 8), **common)
            for p in ("fp32", "int8", "fp16")}
    # the whole program on the portable kernels, with the peak-memory probe (a fresh process: the runner's
    # factory with no IO contract)
    runs["portable"] = _convert(digits_trained(), "fp32", base / "portable", torch.zeros(1, 1, 8, 8),
                                options={"delegate": "none"}, memory=True, **common)
    return runs


def _delegation(result):
    return result.report["artifact"]["details"]["delegation"]


def test_digits_fp32_matches_eager_pytorch_fully_delegated(digits_runs):
    r = digits_runs["fp32"]
    rep = r.report
    assert r.exit_code == 0 and rep["verdict"]["status"] == "pass", rep["verdict"]
    assert rep["route"] == ["torch", "pte"] and rep["target_provider"] == "edgeconv-executorch"
    acc = rep["accuracy"]
    assert acc["samples"] == 540 and acc["source"] == pytest.approx(DIGITS_ACCURACY) and acc["drop_pp"] == 0
    f = rep["fidelity"][0]
    assert f["name"] == "output" and f["shape_ok"] and f["dtype_ok"] and f["max_abs"] < 1e-4
    d = _delegation(r)
    assert d["subgraphs"] == 1 and d["portable_ops"] == 0 and d["delegated_share"] == 1.0
    assert d["by_operator"]["aten_convolution_default"] == {"xnnpack": 3, "portable": 0}
    assert d["by_operator"]["aten_linear_default"] == {"xnnpack": 1, "portable": 0}
    art = rep["runtime"]["artifact"]
    assert art["runtime"].startswith("executorch 1.") and art["xnnpack"] is True
    assert not rep["warnings"]
    manifest = json.loads(Path(r.artifact / "manifest.json").read_text())
    assert manifest["form"] == "pte" and manifest["artifact"] == ["model.pte"]
    assert manifest["runner_options"] == {"input_names": ["input"], "output_names": ["output"]}


def test_digits_int8_by_pt2e_loses_at_most_one_point_and_runs_in_xnnpack(digits_runs):
    r = digits_runs["int8"]
    rep = r.report
    assert r.exit_code == 0 and rep["verdict"]["status"] == "pass", rep["verdict"]
    assert rep["accuracy"]["source"] == pytest.approx(DIGITS_ACCURACY)  # the source was not touched by the pass
    assert rep["accuracy"]["drop_pp"] <= 1.0
    (p,) = rep["passes"]
    assert p["name"] == "executorch.quantize_pt2e" and p["form"] == "torch"
    assert p["quantized_ops"] == {"conv2d": 3, "linear": 1} and p["float_ops"] == []
    assert p["calibration_samples"] == 100 and "per-channel" in p["scheme"]
    assert rep["calibration"]["samples"] >= 100
    d = _delegation(r)
    assert d["portable_ops"] == 0 and d["delegated_share"] == 1.0
    assert d["quant_ops"] > 0 and not any(op.startswith("quantized_decomposed") for op in d["portable"])
    sizes = {k: digits_runs[k].report["artifact"]["details"]["pte_bytes"] for k in ("fp32", "int8")}
    assert sizes["int8"] < sizes["fp32"] / 2.5, sizes


def test_digits_fp16_keeps_float32_io_and_says_the_casts_are_portable(digits_runs):
    r = digits_runs["fp16"]
    rep = r.report
    assert r.exit_code == 0 and rep["verdict"]["status"] == "pass", rep["verdict"]
    assert rep["accuracy"]["drop_pp"] <= 1.0
    assert rep["artifact"]["io"]["inputs"][0]["dtype"] == "float32"
    assert rep["fidelity"][0]["dtype"] == "float32" and 1e-5 < rep["fidelity"][0]["max_abs"] < 0.1
    assert rep["passes"][0]["name"] == "executorch.fp16" and rep["passes"][0]["weights"] == "float16"
    d = _delegation(r)
    # the compute is in XNNPACK; only the two casts at the edges run on the portable kernels
    assert d["by_operator"]["aten_convolution_default"] == {"xnnpack": 3, "portable": 0}
    assert sum(d["portable"].values()) == 2 and all("copy" in op for op in d["portable"]), d["portable"]
    # executorch 1.5.1's XNNPACK serializer stores convolution weights as float32 (converted at load): an fp16 CNN
    # is not smaller; the details say so
    assert "convolution weights stored float32" in rep["artifact"]["details"]["weights"]
    fp32 = digits_runs["fp32"].report["artifact"]["details"]["pte_bytes"]
    assert 0.9 * fp32 < rep["artifact"]["details"]["pte_bytes"] < 1.05 * fp32


def test_a_fully_portable_program_is_verified_and_reported_as_slow(digits_runs):
    r = digits_runs["portable"]
    rep = r.report
    assert r.exit_code == 0 and rep["verdict"]["status"] == "pass", rep["verdict"]
    assert rep["fidelity"][0]["max_abs"] < 1e-4
    d = _delegation(r)
    assert d["subgraphs"] == 0 and d["delegated_ops"] == 0 and d["delegated_share"] == 0.0
    assert d["portable"]["aten_convolution_default"] == 3
    assert any("portable kernels" in w and "slower" in w for w in rep["warnings"]), rep["warnings"]
    # the peak-memory probe loaded the runner in a fresh process (no IO contract there)
    assert rep["peak_rss_bytes"] and rep["peak_rss_bytes"] > 0
    assert not any("peak memory not measured" in w for w in rep["warnings"])


def test_a_pte_file_is_a_model_of_its_own(digits_runs):
    pte = digits_runs["fp32"].artifact / "model.pte"
    m = edgeconv.load(str(pte))
    assert m.form == "pte"
    assert [(t.name, t.shape, t.dtype) for t in m.io.inputs] == [("input_0", (1, 1, 8, 8), "float32")]
    assert [(t.name, t.shape, t.dtype) for t in m.io.outputs] == [("output_0", (1, 10), "float32")]
    res = edgeconv.bench(str(pte), runs=5, memory=False)
    assert res["form"] == "pte" and res["latency_ms"]["runs"] == 5
    assert res["runtime"]["runtime"].startswith("executorch")


def test_the_board_half_runs_in_an_isolated_python_without_edgeconv(digits_runs, digits, tmp_path):
    import edgeconv_executorch.board as board

    pte = digits_runs["fp32"].artifact / "model.pte"
    with np.load(digits["test"]) as z:
        x = z["input"][:1].astype(np.float32)
    np.savez(tmp_path / "in.npz", input=x)
    driver = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('half', {str(Path(board.__file__))!r})\n"
        "half = importlib.util.module_from_spec(spec); spec.loader.exec_module(half)\n"
        f"code = half.main([{str(pte)!r}, 'in.npz', 'out.npz', '1'])\n"
        "print('EDGECONV=' + ','.join(sorted(m for m in sys.modules if m.split('.')[0].startswith('edgeconv'))))\n"
        "sys.exit(code)\n"
    )
    done = subprocess.run([sys.executable, "-I", "-c", driver], cwd=tmp_path, capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    # the runtime's C++ log lines (cpuinfo probe, thread pool reset) and torchao's import noise stay off stderr
    assert "cpuinfo" not in done.stderr and "threadpool" not in done.stderr, done.stderr[-2000:]
    lines = done.stdout.strip().splitlines()
    assert lines[-1] == "EDGECONV=", lines[-1]
    info = json.loads(lines[-2])
    assert info["threads"] == 1 and info["xnnpack"] is True
    with np.load(tmp_path / "out.npz") as z:
        got = z["output_0"]
    with torch.no_grad():
        want = digits_trained()(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, want, atol=1e-4)


def test_the_runner_refuses_inputs_of_another_shape_with_a_clear_error(digits_runs):
    from edgeconv_executorch.board import PteSession, RunError

    session = PteSession(digits_runs["fp32"].artifact / "model.pte", input_names=["input"], output_names=["output"])
    with pytest.raises(RunError, match=r"input input is float32 \[2, 1, 8, 8\]; the program was built for "
                                       r"float32 \[1, 1, 8, 8\]"):
        session.infer({"input": np.zeros((2, 1, 8, 8), np.float32)})
    session.close()


def test_sessions_with_different_thread_counts_each_run_with_theirs(digits_runs):
    """The runtime has one thread pool per process: a session sets its count before it runs (--precision auto
    times a .pte at several thread counts in one process)."""
    from edgeconv_executorch.board import PteSession
    from edgeconv_executorch.runner import tuning
    from executorch.extension.pybindings import portable_lib

    pte = digits_runs["fp32"].artifact / "model.pte"
    x = np.zeros((1, 1, 8, 8), np.float32)
    default = PteSession(pte)
    one = PteSession(pte, num_threads=1)
    assert one.info["threads"] == 1 and default.threads >= 1
    for session, want in ((default, default.threads), (one, 1), (default, default.threads)):
        session.run([x])
        assert portable_lib._threadpool_get_thread_count() == want
    assert tuning(None)[0] == {} and tuning(4) == [{}]


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_resnet18_matches_eager_pytorch(precision, tmp_path):
    model, example = build("resnet18")
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "calib.npz", input=rng.standard_normal((8, 3, 224, 224)).astype(np.float32))
    np.savez(tmp_path / "data.npz", input=rng.standard_normal((8, 3, 224, 224)).astype(np.float32))
    # Random weights on noise give near-tied logits: one int8 top-1 flip in 8 samples is rounding, not damage
    # (here: 15/16 agree at SQNR 35 dB, docs/targets/executorch.md); the whole-output metrics below decide.
    thresholds = {"top1": 0.85} if precision == "int8" else None
    r = _convert(model, precision, tmp_path / "o", example, calibration=str(tmp_path / "calib.npz"),
                 data=str(tmp_path / "data.npz"), runs=3, thresholds=thresholds)
    rep = r.report
    assert r.exit_code == 0 and rep["verdict"]["status"] == "pass", rep["verdict"]
    f = rep["fidelity"][0]
    assert f["shape"] == [8, 1000] and f["shape_ok"] and f["dtype_ok"]
    d = _delegation(r)
    assert d["portable_ops"] == 0 and d["delegated_share"] == 1.0 and d["subgraphs"] >= 1
    if precision == "fp32":
        assert f["max_abs"] < 1e-3 and f["top1"] == 1.0
        assert d["by_operator"]["aten_convolution_default"]["xnnpack"] == 20
    else:
        assert rep["passes"][0]["quantized_ops"] == {"conv2d": 20, "linear": 1}
        assert f["cosine"] > 0.999 and f["sqnr_db"] > 30 and f["top1"] >= 0.875
        assert d["quant_ops"] > 0
