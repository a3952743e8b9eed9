"""Places side by side (issue #19): ``edgeconv verify --on local --on BOARD`` verifies an artifact at each place and
compares the places' outputs with each other on the same inputs; ``convert --on`` through the CLI."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import boards_testutil as bt  # noqa: E402
from edgeconv.api import convert, verify  # noqa: E402
from edgeconv.demo import sample_files  # noqa: E402


@pytest.fixture(scope="module")
def loop(tmp_path_factory):
    config = tmp_path_factory.mktemp("config")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EDGECONV_BOARDS", str(config / "boards.toml"))
        mp.setenv("HOME", str(config / "home"))
        mp.delenv("SSH_AUTH_SOCK", raising=False)
        server = bt.LoopServer(tmp_path_factory.mktemp("loopserver"), bt.board_python()).start()
        try:
            yield bt.LoopBoard(server, "loop")
        finally:
            server.stop()


@pytest.fixture(scope="module")
def artifact(tmp_path_factory):
    sf = sample_files()
    res = convert(str(sf["model"]), "onnxruntime", precision="int8", calibration=str(sf["calib"]),
                  output=tmp_path_factory.mktemp("a") / "o", runs=3, memory=False)
    assert res.exit_code == 0
    return res.artifact


def test_verify_compares_this_host_with_the_board(loop, artifact):
    sf = sample_files()
    res = verify(str(sf["model"]), artifact, data=str(sf["test"]), places=["local", "loop"], runs=3, memory=False,
                 verify_samples=64)
    r = res.report
    assert res.exit_code == 0, r["verdict"]
    assert [p["place"] for p in r["places"]] == ["local", "loop"]
    assert r["places"][1]["runtime"]["where"] == "board"
    agreement = r["agreement"][0]
    assert agreement["places"] == ["local", "loop"] and agreement["pass"]
    assert agreement["outputs"][0]["cosine"] > 0.99999  # the same onnxruntime on both sides


def test_a_place_that_disagrees_fails_naming_it(loop, artifact, monkeypatch):
    """A board whose answers differ from this host's (here: its half adds 1 to every output) fails the verdict,
    and the reason names the place."""
    from edgeconv.places.board import BoardRunner

    real = BoardRunner.infer

    def off_by_one(self, feed):
        return {k: v + 1.0 for k, v in real(self, feed).items()}

    monkeypatch.setattr(BoardRunner, "infer", off_by_one)
    sf = sample_files()
    res = verify(str(sf["model"]), artifact, data=str(sf["test"]), places=["local", "loop"], runs=2, memory=False,
                 verify_samples=32)
    assert res.exit_code == 1
    assert "loop disagrees with local" in res.report["verdict"]["reason"]


def test_the_cli_takes_on_for_convert_and_several_for_verify(loop, artifact, cli, tmp_path):
    sf = sample_files()
    out = tmp_path / "c"
    res = cli("convert", str(sf["model"]), "--on", "loop", "-o", str(out), "--runs", "3", "--no-memory", "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["runtime"]["artifact"]["where"] == "board"
    res = cli("verify", str(sf["model"]), str(out), "--on", "local", "--on", "loop", "--runs", "2", "--no-memory",
              "--verify-samples", "16", "--json")
    assert res.exit_code == 0, res.output
    assert [p["place"] for p in json.loads(res.stdout)["places"]] == ["local", "loop"]
    res = cli("convert", str(sf["model"]), "--on", "loop", "--on", "local", "-o", str(tmp_path / "d"))
    assert res.exit_code == 2 and "one board" in res.output
