"""The tensorrt runner's board half (``edgeconv_tensorrt/board.py``), run as the board agent runs it.

No GPU and no Jetson here: the half runs in a child ``python -I`` (temporary cwd) against STAND-IN ``tensorrt`` and
``cuda`` (cuda-python) modules (tests/standin_tensorrt, tests/standin_cuda: numpy on a JSON toy "plan", "device"
memory in host buffers), on the child's sys.path only. This proves the half is self-contained, follows TensorRT's
name-based call sequence with real buffers and copies, names outputs by the plan's tensor names and says what is
missing; it proves nothing about a plan's numbers on a GPU.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
HALF = HERE.parents[0] / "src" / "edgeconv_tensorrt" / "board.py"
STANDINS = [HERE / "standin_tensorrt", HERE / "standin_cuda"]
sys.path.insert(0, str(HERE.parents[2] / "tests"))
import board_half_testutil as bh  # noqa: E402


def test_the_board_half_runs_a_plan_through_tensorrts_api(tmp_path):
    weights = bh.toy_model(tmp_path / "model.plan")
    rng = np.random.default_rng(1)
    feeds = [{"input": rng.standard_normal((2, 3, 2, 2)).astype(np.float32)} for _ in range(2)]
    feeds.append({"input": rng.standard_normal((5, 3, 2, 2)).astype(np.float32)})  # larger: buffers grow
    report, outs = bh.run_half(HALF, tmp_path, model=tmp_path / "model.plan", options={
        "engine": {"tensorrt": "10.3.1", "precision": "fp16"}, "device": 0}, feeds=feeds, standins=STANDINS,
        log="standin_calls")
    bh.assert_self_contained(report)
    assert "error" not in report, report.get("error")
    assert report["modules"] == ["tensorrt"]
    assert report["info"]["runtime"] == "tensorrt 10.3.0" and report["info"]["device"] == "cuda:0"
    assert report["info"]["precision"] == "fp16" and report["info"]["ignored_options"] == []
    for feed, out, names in zip(feeds, outs, report["out_names"]):
        logits, total = bh.expected(weights, feed["input"])
        assert sorted(names) == ["logits", "total"]  # the plan's outputs, by name; the input is not one
        np.testing.assert_allclose(out["logits"], logits, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(out["total"], total, rtol=1e-5, atol=1e-5)
    calls = [c[0] for c in report["calls"]]
    assert calls[:4] == ["cudaSetDevice", "cudaStreamCreate", "deserialize_cuda_engine", "create_execution_context"]
    assert report["calls"][2] == ["deserialize_cuda_engine", False]  # host code only for version-compatible plans
    assert calls.count("execute_async_v3") == 3 and calls.count("cudaStreamSynchronize") == 3
    assert calls.count("cudaMalloc") == 6  # 3 tensors, then 3 again for the larger batch; the 2nd call reuses
    assert calls.count("cudaFree") == 6 and calls[-1] == "cudaStreamDestroy"  # close frees everything
    copies = [c[1] for c in report["calls"] if c[0] == "cudaMemcpyAsync"]
    assert copies.count("cudaMemcpyHostToDevice") == 3 and copies.count("cudaMemcpyDeviceToHost") == 6


def test_a_plan_from_another_tensorrt_is_refused_unless_version_compatible(tmp_path):
    bh.toy_model(tmp_path / "model.plan")
    report, _ = bh.run_half(HALF, tmp_path, model=tmp_path / "model.plan", options={"engine": {"tensorrt": "8.6.1"}},
                            standins=STANDINS)
    assert report["error"]["type"] == "RuntimeError"
    assert "built with TensorRT 8.6.1, the board has 10.3.0" in report["error"]["message"]
    report, outs = bh.run_half(HALF, tmp_path, model=tmp_path / "model.plan", standins=STANDINS, log="standin_calls",
                               options={"engine": {"tensorrt": "8.6.1", "version_compatible": True}},
                               feeds=[{"input": np.ones((1, 12), np.float32)}])
    assert "error" not in report and ["deserialize_cuda_engine", True] in report["calls"]
    assert outs[0]["total"].tolist() == [[12.0]]


def test_a_build_kit_or_a_broken_plan_is_refused(tmp_path):
    (tmp_path / "bad.plan").write_bytes(b"\x00not a plan")
    report, _ = bh.run_half(HALF, tmp_path, model=tmp_path / "bad.plan", options={}, standins=STANDINS)
    assert "could not deserialize" in report["error"]["message"]
    report, _ = bh.run_half(HALF, tmp_path, model=tmp_path / "build.json", standins=STANDINS,
                            options={"prepared_only": True, "command": "bash trtexec.sh"})
    assert "build kit" in report["error"]["message"] and "bash trtexec.sh" in report["error"]["message"]


def test_without_the_runtime_load_names_what_is_missing(tmp_path):
    bh.toy_model(tmp_path / "model.plan")
    report, _ = bh.run_half(HALF, tmp_path, model=tmp_path / "model.plan", options={})
    bh.assert_self_contained(report)
    assert report["error"]["name"] == "tensorrt" and "tensorrt" in report["error"]["message"]
    report, _ = bh.run_half(HALF, tmp_path, model=tmp_path / "model.plan", options={}, standins=STANDINS[:1])
    assert report["error"]["type"] == "ImportError" and report["error"]["name"] == "cuda"
    assert "cuda-python" in report["error"]["message"]
    report, _ = bh.run_half(HALF, tmp_path, model=tmp_path / "model.plan", options={}, agent_imports=False)
    assert report["error"]["type"] == "ImportError" and report["error"]["name"] == "tensorrt"  # load()'s own error
    assert "the board has no 'tensorrt' module" in report["error"]["message"]
    assert "JetPack" in report["error"]["message"]


def test_the_half_is_registered_on_the_runner():
    from edgeconv_tensorrt import hooks

    specs = []
    hooks.register_runners(specs.append)
    assert [s.board for s in specs] == ["edgeconv_tensorrt.board"]
