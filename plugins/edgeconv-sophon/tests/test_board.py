"""The bmodel runner's board half (``edgeconv_sophon/board.py``), run as the board agent runs it.

No Sophon device here: the half runs in a child ``python -I`` (temporary cwd) against a STAND-IN ``sophon.sail``
(tests/standin_sail: numpy on a JSON toy "bmodel" with tpu-mlir-style renamed outputs), on the child's sys.path
only. This proves the half is self-contained, follows SAIL's Engine call sequence, maps the bmodel's outputs to the
contract's names by the bmodel's order and says what is missing; nothing about a TPU's numbers.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
HALF = HERE.parents[0] / "src" / "edgeconv_sophon" / "board.py"
STANDIN = HERE / "standin_sail"
sys.path.insert(0, str(HERE.parents[2] / "tests"))
import board_half_testutil as bh  # noqa: E402

OPTIONS = {"chip": "bm1684x", "quantize": "F16", "tpu_mlir": "1.17", "output_names": ["logits", "total"]}


def test_the_board_half_runs_a_bmodel_through_sail(tmp_path):
    weights = bh.toy_model(tmp_path / "model.bmodel")
    rng = np.random.default_rng(3)
    feeds = [{"input": rng.standard_normal((1, 3, 2, 2)).astype(np.float32)},
             {"x_renamed_by_the_host": rng.standard_normal((1, 3, 2, 2)).astype(np.float32)}]  # by order
    report, outs = bh.run_half(HALF, tmp_path, model=tmp_path / "model.bmodel", options=OPTIONS, feeds=feeds,
                               standins=[STANDIN], log="sophon.sail")
    bh.assert_self_contained(report)
    assert "error" not in report, report.get("error")
    info = report["info"]
    assert info["runtime"].startswith("STAND-IN sophon.sail") and info["ignored_options"] == []
    assert info["bmodel_outputs"] == ["logits_Gemm_f32", "total_ReduceSum_f32"] and info["quantize"] == "F16"
    for feed, out, names in zip(feeds, outs, report["out_names"]):
        logits, total = bh.expected(weights, next(iter(feed.values())))
        assert names == ["logits", "total"]
        np.testing.assert_allclose(out["logits"], logits, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(out["total"], total, rtol=1e-5, atol=1e-5)
    assert report["calls"] == [["Engine", [0, "SYSIO"]], ["process", ["toy", ["input"]]],
                               ["process", ["toy", ["input"]]]]


def test_a_bmodel_that_disagrees_with_the_contract_is_refused(tmp_path):
    bh.toy_model(tmp_path / "model.bmodel")
    report, _ = bh.run_half(HALF, tmp_path, model=tmp_path / "model.bmodel", standins=[STANDIN],
                            options=dict(OPTIONS, output_names=["logits"]))
    assert "the bmodel has 2 outputs (logits_Gemm_f32, total_ReduceSum_f32), the model 1" in report["error"]["message"]


def test_without_the_runtime_load_names_what_is_missing(tmp_path):
    bh.toy_model(tmp_path / "model.bmodel")
    report, _ = bh.run_half(HALF, tmp_path, model=tmp_path / "model.bmodel", options=OPTIONS)
    bh.assert_self_contained(report)
    assert report["error"]["name"] == "sophon" and "sophon" in report["error"]["message"]
    report, _ = bh.run_half(HALF, tmp_path, model=tmp_path / "model.bmodel", options=OPTIONS, agent_imports=False)
    assert report["error"]["type"] == "ImportError" and report["error"]["name"] == "sophon.sail"  # load()'s own error
    assert "the board has no 'sophon.sail' module" in report["error"]["message"]
    assert "sophon_arm" in report["error"]["message"]


def test_the_half_is_registered_on_the_runner():
    from edgeconv_sophon import hooks

    specs = []
    hooks.register_runners(specs.append)
    assert [s.board for s in specs] == ["edgeconv_sophon.board"]
