"""The ais_bench runner's board half (``edgeconv_ascend/board.py``), run as the board agent runs it.

No Ascend NPU here: the half runs in a child ``python -I`` (temporary cwd) against a STAND-IN
``ais_bench.infer.interface`` (tests/standin_ais_bench: numpy on a JSON toy ".om" whose tensors carry ATC-style
names), on the child's sys.path only. This proves the half is self-contained, follows InferSession's call sequence
(gears included), names the .om's outputs by the contract and says what is missing; nothing about an NPU's numbers.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
HALF = HERE.parents[0] / "src" / "edgeconv_ascend" / "board.py"
STANDIN = HERE / "standin_ais_bench"
sys.path.insert(0, str(HERE.parents[2] / "tests"))
import board_half_testutil as bh  # noqa: E402

OPTIONS = {"device": 0, "runner": "cli", "soc_version": "Ascend310B4", "input_names": ["input"],
           "output_names": ["logits", "total"], "input_layouts": ["NCHW"], "dynamic": {"dynamic_batch_size": "1,4"}}


def test_the_board_half_runs_an_om_through_infer_session(tmp_path):
    weights = bh.toy_model(tmp_path / "model.om")
    rng = np.random.default_rng(2)
    feeds = [{"input": rng.standard_normal((b, 3, 2, 2)).astype(np.float32)} for b in (1, 4)]
    report, outs = bh.run_half(HALF, tmp_path, model=tmp_path / "model.om", options=OPTIONS, feeds=feeds,
                               standins=[STANDIN], log="ais_bench.infer.interface")
    bh.assert_self_contained(report)
    assert "error" not in report, report.get("error")
    info = report["info"]
    assert info["runtime"].startswith("STAND-IN ais_bench") and info["ignored_options"] == []
    assert info["runner"] == "python" and "in-process" in info["runner_note"]
    for feed, out, names in zip(feeds, outs, report["out_names"]):
        logits, total = bh.expected(weights, feed["input"])
        assert names == ["logits", "total"]  # the contract's names, not the .om's
        np.testing.assert_allclose(out["logits"], logits, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(out["total"], total, rtol=1e-5, atol=1e-5)
    assert report["calls"] == [["InferSession", [0, "model.om"]], ["set_dynamic_batchsize", 1],
                               ["infer", ["static", 1]], ["set_dynamic_batchsize", 4], ["infer", ["static", 1]],
                               ["free_resource", None]]


def test_settings_the_half_cannot_honour_are_refused_plainly(tmp_path):
    bh.toy_model(tmp_path / "model.om")
    aipp = dict(OPTIONS, aipp={"input_format": "YUV420SP_U8"})
    report, _ = bh.run_half(HALF, tmp_path, model=tmp_path / "model.om", options=aipp, standins=[STANDIN])
    assert "AIPP" in report["error"]["message"]
    report, _ = bh.run_half(HALF, tmp_path, model=tmp_path / "atc.json", standins=[STANDIN],
                            options={"prepared_only": True, "command": "sh atc.sh"})
    assert "ATC kit" in report["error"]["message"] and "sh atc.sh" in report["error"]["message"]
    report, _ = bh.run_half(HALF, tmp_path, model=tmp_path / "model.om", options=dict(OPTIONS, device=3),
                            standins=[STANDIN])
    assert "no NPU 3" in report["error"]["message"]


def test_without_the_runtime_load_names_what_is_missing(tmp_path):
    bh.toy_model(tmp_path / "model.om")
    report, _ = bh.run_half(HALF, tmp_path, model=tmp_path / "model.om", options=OPTIONS)
    bh.assert_self_contained(report)
    assert report["error"]["name"] == "ais_bench" and "ais_bench" in report["error"]["message"]
    report, _ = bh.run_half(HALF, tmp_path, model=tmp_path / "model.om", options=OPTIONS, agent_imports=False)
    assert report["error"]["type"] == "ImportError" and report["error"]["name"] == "ais_bench"  # load()'s own error
    assert "the board has no 'ais_bench.infer.interface' module" in report["error"]["message"]
    assert "aclruntime" in report["error"]["message"]


def test_the_half_is_registered_on_the_runner():
    from edgeconv_ascend import hooks

    specs = []
    hooks.register_runners(specs.append)
    assert [s.board for s in specs] == ["edgeconv_ascend.board"]
