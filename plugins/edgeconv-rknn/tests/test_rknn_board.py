"""The rknn runner's board half over the board path (docs/boards.md), on the loopback board with a STAND-IN runtime.

No Rockchip board is reachable here, so the "board" is the core's loopback SSH board (tests/boards_testutil.py: an
SSH server on 127.0.0.1) whose Python is an environment of its own holding numpy, onnxruntime, ai-edge-litert (the
loopback board's pins) and the STAND-IN ``rknnlite`` of tests/standin_rknnlite, which runs the ONNX original of a
.rknn with onnxruntime (found by the .rknn's sha256 in that environment's ``edgeconv-standin-models.json``). What this
proves: the board half is shipped alone and imported on the board (no edgeconv there), goes through RKNNLite's API
(load_rknn, init_runtime with the core mask, inference with the input formats, release), and its outputs come back
under the source's names. What it cannot prove: anything about the NPU's numbers.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[3]
STANDIN = Path(__file__).parent / "standin_rknnlite"
sys.path.insert(0, str(ROOT / "tests"))
import boards_testutil as bt  # noqa: E402
from edgeconv.model import IOContract, Model, TensorSpec  # noqa: E402


@pytest.fixture(scope="module")
def standin_board_py():
    """A board Python of its own (the loopback board's pins) that also sees the stand-in rknnlite."""
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    venv = Path(cache) / "edgeconv-testing" / "rknn-standin-board-venv"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EDGECONV_TEST_BOARD_VENV", str(venv))
        py = bt.board_python()
    site = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    (Path(site) / "edgeconv-rknn-standin.pth").write_text(str(STANDIN) + "\n")
    probe = subprocess.run([str(py), "-c", "import rknnlite.api as a; print(a.RKNNLite.EDGECONV_STAND_IN)\n"
                                           "import edgeconv"], capture_output=True, text=True)
    assert probe.stdout.startswith("STAND-IN") and "No module named 'edgeconv'" in probe.stderr
    return py, venv


@pytest.fixture(scope="module")
def loop(standin_board_py, tmp_path_factory):
    py, _venv = standin_board_py
    server = bt.LoopServer(tmp_path_factory.mktemp("loopserver"), py).start()
    try:
        with pytest.MonkeyPatch.context() as mp:
            config = tmp_path_factory.mktemp("config")
            mp.setenv("EDGECONV_BOARDS", str(config / "boards.toml"))
            mp.setenv("HOME", str(config / "home"))
            mp.delenv("SSH_AUTH_SOCK", raising=False)
            yield bt.LoopBoard(server, "rk-standin")
    finally:
        server.stop()


def test_the_board_half_runs_a_rknn_on_the_loopback_board(loop, standin_board_py, digits, tmp_path):
    import onnxruntime as ort

    from edgeconv.verification.runners import make_runner

    _py, venv = standin_board_py
    rknn = tmp_path / "digits.rknn"
    rknn.write_bytes(b"RKNN stand-in artifact " + os.urandom(16))  # not a real .rknn: the stand-in maps it
    table = venv / "edgeconv-standin-models.json"
    known = json.loads(table.read_text()) if table.is_file() else {}
    known[hashlib.sha256(rknn.read_bytes()).hexdigest()] = str(digits["model"])
    table.write_text(json.dumps(known))

    io = IOContract((TensorSpec("input", (1, 1, 8, 8), "float32", "NCHW"),), (TensorSpec("logits", (1, 10),
                                                                                         "float32"),))
    opts = {"platform": "rk3588", "precision": "int8", "output_names": ["logits"], "input_formats": ["nchw"],
            "core_mask": "0_1_2", "recipe": "rknn_build/recipe.json"}
    sess = ort.InferenceSession(str(digits["model"]))
    with np.load(digits["test"]) as z:
        x = z["input"][:6]
    with make_runner(Model("rknn", io, path=rknn), place="rk-standin", **opts) as runner:
        got = [runner.infer({"input": x[i:i + 1]})["logits"] for i in range(len(x))]
        info = dict(runner.info)
    want = [sess.run(None, {"input": x[i:i + 1]})[0] for i in range(len(x))]
    np.testing.assert_allclose(np.concatenate(got), np.concatenate(want), rtol=1e-5, atol=1e-5)
    assert info["where"] == "board" and info["board"] == "rk-standin" and info["runner"] == "rknn"
    assert info["runtime"].startswith("STAND-IN") and info["core_mask"] == "0_1_2"
    assert info["board_pid"] != os.getpid() and info["board_python"].startswith(str(venv))  # the board's Python
    assert info["ignored_options"] == []
