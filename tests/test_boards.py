"""Boards over SSH, for real on one machine (docs/boards.md): an SSH server on 127.0.0.1 whose "board" is a separate
Python environment holding only numpy, onnxruntime and ai-edge-litert (tests/boards_testutil.py).

What is proved here: artifacts converted and verified with ``place=`` run in the board's interpreter (its python and
pid, not this one's), for onnxruntime and LiteRT; the latency loop runs there; a second run sends no file; the
only command line is the fixed bootstrap; unreachable / refused / silent / wrong key / unknown key / bad login /
no Python -> exit 3 in one line; a board killed mid-run -> exit 4 and no output folder; Ctrl-C ends the board's
process and removes its scratch; one run at a time per board.
"""

from __future__ import annotations

import ast
import os
import shlex
import signal
import socket
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
import boards_testutil as bt  # noqa: E402
import edgeconv  # noqa: E402
from edgeconv.api import verify  # noqa: E402
from edgeconv.demo import sample_files  # noqa: E402
from edgeconv.errors import BadInput, ToolchainFailed, ToolchainMissing  # noqa: E402
from edgeconv.model import IOContract, Model  # noqa: E402
from edgeconv.places import inventory as inv  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
NO_IO = IOContract((), ())  # a board runner needs the artifact's file, not its IO contract


# -- fixtures ---------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def board_py() -> Path:
    py = bt.board_python()
    probe = subprocess.run([str(py), "-c", "import edgeconv"], capture_output=True, text=True)
    assert probe.returncode != 0 and "No module named 'edgeconv'" in probe.stderr, "the board must not have edgeconv"
    return py


def _isolate(mp: pytest.MonkeyPatch, config: Path) -> None:
    """The host side sees only the test's inventory, known_hosts and key (no ~/.ssh, no agent)."""
    config.mkdir(parents=True, exist_ok=True)
    mp.setenv("EDGECONV_BOARDS", str(config / "boards.toml"))
    mp.setenv("HOME", str(config / "home"))
    mp.delenv("SSH_AUTH_SOCK", raising=False)


@pytest.fixture(scope="module")
def server(board_py, tmp_path_factory):
    srv = bt.LoopServer(tmp_path_factory.mktemp("loopserver"), board_py).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def loop(server, tmp_path_factory):
    """Board ``loop`` (the loopback server) in an isolated inventory, for the whole module."""
    with pytest.MonkeyPatch.context() as mp:
        _isolate(mp, tmp_path_factory.mktemp("config"))
        yield bt.LoopBoard(server, "loop")


@pytest.fixture(scope="module")
def digits_on_board(loop, tmp_path_factory):
    """The digits sample converted for onnxruntime and tflite, verified on the board (``place=``)."""
    sf = sample_files()
    out = tmp_path_factory.mktemp("digits")
    results = {}
    for target in ("onnxruntime", "tflite"):
        results[target] = edgeconv.convert(sf["model"], target, data=sf["test"], output=out / target, place="loop",
                                           runs=20, memory=False)
    return results


def _fresh_board(server, name: str, **fields) -> bt.LoopBoard:
    """Another board entry on the same server, with its own (empty) cache folder."""
    return bt.LoopBoard(server, name, cache=f"~/cache-{name}", **fields)


# -- the inventory -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name, fields, says", [
    ("a b", {"url": "ssh://h"}, "not allowed"),
    ("-oProxyCommand", {"url": "ssh://h"}, "not allowed"),
    ("local", {"url": "ssh://h"}, "reserved"),
    ("b", {"url": "http://h"}, "scheme must be ssh"),
    ("b", {"url": "ssh://pi:secret@h"}, "password does not belong"),
    ("b", {"url": "ssh://h/home/pi"}, "no path"),
    ("b", {"url": "ssh://h?x=1"}, "no path, query"),
    ("b", {"url": "ssh://h:99999"}, "out of range"),
    ("b", {"url": "ssh://-oProxyCommand=sh"}, "not a host name"),
    ("b", {"url": "ssh://h;reboot"}, "not a host name"),
    ("b", {"url": "ssh://us er@h"}, "not a URL"),
    ("b", {"url": "ssh://h", "python": "python3; reboot"}, "board Python"),
    ("b", {"url": "ssh://h", "python": "$(reboot)"}, "board Python"),
    ("b", {"url": "ssh://h", "python": "/usr/../bin/python3"}, "board Python"),
    ("b", {"url": "ssh://h", "python": "bin/python3"}, "board Python"),
    ("b", {"url": "ssh://h", "cache": "/tmp/$(reboot)"}, "cache folder"),
    ("b", {"url": "ssh://h", "cache": "relative/dir"}, "cache folder"),
    ("b", {"url": "ssh://h", "kind": "rpi55"}, "did you mean 'rpi5'"),
    ("b", {"url": "ssh://h", "password": "x"}, "holds no secrets"),
    ("b", {"url": "ssh://h", "passwd": "x"}, "unknown field 'passwd'"),
    ("b", {"url": "ssh://h", "key": "id_ed25519"}, "absolute path"),
    ("b", {"url": "ssh://h", "timeout": 0}, "seconds"),
])
def test_inventory_refuses_bad_entries(name, fields, says):
    with pytest.raises(BadInput) as e:
        inv.make_board(name, fields)
    assert e.value.exit_code == 2 and says in e.value.one_line(), e.value.one_line()
    assert "\n" not in e.value.one_line()


def test_inventory_file_round_trip_and_a_broken_entry_hides_no_other(tmp_path, monkeypatch):
    monkeypatch.delenv("EDGECONV_BOARDS", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert inv.inventory_path() == tmp_path / "xdg" / "edgeconv" / "boards.toml"
    assert inv.known_hosts_path() == tmp_path / "xdg" / "edgeconv" / "known_hosts"
    good = inv.make_board("rk", {"url": "ssh://orangepi@10.0.0.7:2222", "kind": "rk3588",
                                 "python": "/home/orangepi/venv/bin/python", "key": "/keys/id_ed25519"})
    inv.write_inventory({"rk": inv.entry(good), "bad": {"url": "ssh://h", "password": "hunter2"}})
    boards, problems = inv.read_inventory()
    assert boards == {"rk": good} and good.port == 2222 and good.user == "orangepi"
    assert "holds no secrets" in problems["bad"]
    with pytest.raises(BadInput, match="holds no secrets"):
        inv.get_board("bad")
    with pytest.raises(BadInput, match="did you mean 'rk'"):
        inv.get_board("rkk")
    (tmp_path / "xdg" / "edgeconv" / "boards.toml").write_text("[boards.x\n")
    with pytest.raises(BadInput, match="not valid TOML"):
        inv.read_inventory()


# -- the board halves ships as they are ----------------------------------------------------------------------------------
HALVES = {
    "agent": ROOT / "core/src/edgeconv/places/agent.py",
    "onnxruntime": ROOT / "core/src/edgeconv/builtins/ort_board.py",
    "litert": ROOT / "plugins/edgeconv-tflite/src/edgeconv_tflite/board.py",
}
ALLOWED = set(sys.stdlib_module_names) | {"numpy", "onnxruntime", "ai_edge_litert", "tflite_runtime", "__future__"}


@pytest.mark.parametrize("name", sorted(HALVES))
def test_board_files_are_self_contained_python38(name):
    """What goes to a board imports only the standard library, numpy and its runtime, in Python 3.8 syntax."""
    source = HALVES[name].read_text()
    tree = ast.parse(source, feature_version=(3, 8))
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{name}: relative import"
            imported.add(node.module.split(".")[0])
    assert imported <= ALLOWED, f"{name} imports {sorted(imported - ALLOWED)}"
    assert "edgeconv" not in imported


# -- runs on the board ------------------------------------------------------------------------------------------------
def _ran_on_board(info: dict, board_py: Path) -> None:
    assert info["where"] == "board" and info["board"] == "loop"
    assert info["board_python"] == str(board_py) != sys.executable
    assert info["board_pid"] != os.getpid()
    assert info["timed_by"] == {"pid": info["board_pid"], "python": str(board_py)}  # the latency loop ran there


def test_convert_digits_for_onnxruntime_verified_on_the_board(digits_on_board, board_py):
    r = digits_on_board["onnxruntime"]
    assert r.exit_code == 0, r.report["verdict"]
    art = r.report["runtime"]["artifact"]
    _ran_on_board(art, board_py)
    assert art["runtime"] == "onnxruntime 1.32.0" and art["graph_optimization"] == "all"
    assert "where" not in r.report["runtime"]["source"]  # the source ran here
    assert r.report["fidelity"][0]["pass"] and r.report["accuracy"]["samples"] == 540
    assert r.report["latency_ms"]["runs"] == 20


def test_convert_digits_for_tflite_verified_on_the_board(digits_on_board, board_py):
    r = digits_on_board["tflite"]
    assert r.exit_code == 0, r.report["verdict"]
    art = r.report["runtime"]["artifact"]
    _ran_on_board(art, board_py)
    assert art["runtime"].startswith("ai_edge_litert 2.3.0") and art["delegate"] == "XNNPACK (default)"
    assert r.report["fidelity"][0]["cosine"] > 0.9999
    assert r.report["accuracy"]["drop_pp"] == 0


def test_an_older_board_runs_the_same_artifacts(server, loop, digits_on_board):
    """The board halves are not tied to the host's versions: a board with numpy 1.26, onnxruntime 1.23 and the
    tflite-runtime interpreter (no LiteRT) verifies both digits artifacts."""
    old_py = bt.board_python("board-venv-old", bt.OLD_BOARD_PINS)
    bt.LoopBoard(server, "old", python=str(old_py), cache="~/cache-old")
    sf = sample_files()
    for target, runtime in (("onnxruntime", "onnxruntime 1.23.2"), ("tflite", "tflite_runtime 2.14.0")):
        art = Path(digits_on_board[target].report["artifact"]["path"]).parent
        r = verify(sf["model"], art, data=sf["test"], place="old", runs=5, memory=False)
        info = r.report["runtime"]["artifact"]
        assert r.exit_code == 0, r.report["verdict"]
        assert info["board_python"] == str(old_py) and info["runtime"].startswith(runtime), info
        assert r.report["fidelity"][0]["cosine"] > 0.9999 and r.report["accuracy"]["drop_pp"] == 0


def test_board_outputs_are_the_board_runtimes_answers(loop, digits_on_board):
    """infer() returns what the board computed: the same numbers as the host's runtime on the same feed, and
    different numbers for a different feed (nothing cached or faked on the way)."""
    import onnxruntime as ort

    from edgeconv.verification.runners import make_runner

    path = Path(digits_on_board["onnxruntime"].report["artifact"]["path"])
    x = np.random.default_rng(3).standard_normal((1, 1, 8, 8)).astype(np.float32)
    with make_runner(Model(form="onnx", io=NO_IO, path=path), place="loop") as runner:
        got = runner.infer({"input": x})
        other = runner.infer({"input": x[:, :, ::-1].copy()})
    want = ort.InferenceSession(str(path)).run(None, {"input": x})[0]
    name = next(iter(got))
    assert np.allclose(got[name], want, atol=1e-6) and not np.allclose(other[name], want, atol=1e-3)


def test_bench_on_the_board_reports_the_board_process_memory(loop, digits_on_board):
    art = Path(digits_on_board["tflite"].report["artifact"]["path"]).parent
    res = edgeconv.bench(art, place="loop", runs=30)
    rt = res["runtime"]
    assert rt["where"] == "board" and rt["timed_by"]["pid"] == rt["board_pid"] != os.getpid()
    assert res["latency_ms"]["runs"] == 30
    mem = res["memory"]
    assert mem["peak_rss_bytes"] == res["peak_rss_bytes"] > mem["baseline_rss_bytes"] > 10 * 2**20
    assert mem["model_rss_bytes"] == mem["peak_rss_bytes"] - mem["baseline_rss_bytes"]


def test_runner_settings_apply_on_the_board(loop, digits_on_board):
    from edgeconv.verification.runners import make_runner

    onnx_art = Path(digits_on_board["onnxruntime"].report["artifact"]["path"])
    with make_runner(Model(form="onnx", io=NO_IO, path=onnx_art), place="loop", threads=1,
                     graph_optimization="basic", execution_mode="parallel") as r:
        assert r.info["threads"] == 1 and r.info["graph_optimization"] == "basic"
        assert r.info["execution_mode"] == "parallel" and r.info["ignored_options"] == []
    tfl = Path(digits_on_board["tflite"].report["artifact"]["path"])
    with make_runner(Model(form="tflite", io=NO_IO, path=tfl), place="loop", xnnpack=False, num_threads=1) as r:
        assert r.info["delegate"] == "none (builtin kernels)" and r.info["threads"] == 1


def test_a_second_run_sends_nothing(server, loop, digits_on_board, board_py):
    fresh = _fresh_board(server, "fresh")
    sf = sample_files()
    art = Path(digits_on_board["onnxruntime"].report["artifact"]["path"])
    before = len(server.session_log("start"))
    first = verify(sf["model"], art.parent, data=sf["test"], place="fresh", runs=5, memory=False)
    blobs = {p.name: p.stat().st_mtime_ns for p in (fresh.cache / "blobs").iterdir()}
    second = verify(sf["model"], art.parent, data=sf["test"], place="fresh", runs=5, memory=False)
    t1, t2 = (r.report["runtime"]["artifact"]["transfer"] for r in (first, second))
    half = (ROOT / "core/src/edgeconv/builtins/ort_board.py").stat().st_size
    assert first.exit_code == second.exit_code == 0
    assert t1["files_sent"] == 2 and t1["bytes_sent"] == art.stat().st_size + half
    assert t2["files_sent"] == 0 and t2["bytes_sent"] == 0 and t2["files_cached"] == 2
    assert {p.name: p.stat().st_mtime_ns for p in (fresh.cache / "blobs").iterdir()} == blobs  # nothing rewritten
    # counted independently, by the SSH server: the second session received at least the files' bytes fewer
    assert bt.wait_for(lambda: server.ended(before + 1) and server.ended(before + 2))
    s1, s2 = server.ended(before + 1), server.ended(before + 2)
    assert s1["bytes_in"] - s2["bytes_in"] >= t1["bytes_sent"]
    assert not list((fresh.cache / "runs").iterdir())  # each run's scratch removed


def test_the_only_command_line_is_the_fixed_bootstrap(server, loop, digits_on_board):
    from edgeconv.places.agent import BOOTSTRAP

    pythons = {str(server.board_py), str(bt.board_venv_dir("board-venv-old") / "bin" / "python")}
    log = server.session_log("start")
    assert log and {s["command"] for s in log} <= {shlex.join([py, "-c", BOOTSTRAP]) for py in pythons}


def test_one_run_at_a_time_per_board(server, loop, digits_on_board):
    from edgeconv.places.ssh import AgentSession
    from edgeconv.verification.runners import make_runner

    board = _fresh_board(server, "busy", lock_wait=1.0)
    art = Path(digits_on_board["onnxruntime"].report["artifact"]["path"])
    holder = AgentSession(board.board, lock=True)
    pid = holder.open()["pid"]
    try:
        with pytest.raises(ToolchainMissing) as e:
            make_runner(Model(form="onnx", io=NO_IO, path=art), place="busy").activate()
        assert e.value.exit_code == 3 and f"agent pid {pid}" in e.value.one_line() and "busy" in e.value.one_line()
    finally:
        holder.close()
    with make_runner(Model(form="onnx", io=NO_IO, path=art), place="busy") as r:  # free again
        assert r.info["board_pid"] != pid


def test_a_model_the_board_cannot_load_is_exit_4_and_frees_the_board(loop, tmp_path):
    from edgeconv.verification.runners import make_runner

    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"this is not an onnx model")
    with pytest.raises(ToolchainFailed) as e:
        make_runner(Model(form="onnx", io=IOContract((), ()), path=bad), place="loop").activate()
    assert e.value.exit_code == 4 and "could not load the model" in e.value.one_line()
    assert bt.wait_for(lambda: not list((loop.cache / "runs").iterdir()))


def test_a_runtime_the_board_lacks_is_exit_3_with_the_install_hint(loop, tmp_path, monkeypatch):
    from edgeconv.places import place_runner
    from edgeconv.records import RunnerSpec

    (tmp_path / "edgeconv_test_fake_half.py").write_text("MODULES = ('edgeconv_no_such_runtime',)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    spec = RunnerSpec(form="fake", name="fake", factory="x:y", board="edgeconv_test_fake_half")
    model = tmp_path / "m.bin"
    model.write_bytes(b"\0" * 10)
    with pytest.raises(ToolchainMissing) as e:
        place_runner("loop", Model(form="fake", io=IOContract((), ()), path=model), spec, {}).activate()
    line = e.value.one_line()
    assert e.value.exit_code == 3 and "no edgeconv_no_such_runtime" in line and "-m pip install" in line


# -- failures to reach a board: exit 3, one line naming it ----------------------------------------------------------------
def _activate(place: str, digits_on_board) -> None:
    from edgeconv.verification.runners import make_runner

    art = Path(digits_on_board["onnxruntime"].report["artifact"]["path"])
    make_runner(Model(form="onnx", io=NO_IO, path=art),
                place=place).activate()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_refused_silent_and_bad_login_are_exit_3(server, loop, digits_on_board, tmp_path):
    entries = inv.raw_entries()
    entries["refused"] = {"url": f"ssh://board@127.0.0.1:{_free_port()}", "timeout": 3.0}
    entries["nohost"] = {"url": "ssh://board@no-such-board.invalid", "timeout": 3.0}
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen()  # accepts, never speaks SSH
    entries["silent"] = {"url": f"ssh://board@127.0.0.1:{silent.getsockname()[1]}", "timeout": 1.5}
    bt.make_key(tmp_path / "stranger")
    entries["stranger"] = {**entries["loop"], "key": str(tmp_path / "stranger")}
    entries["nopython"] = {**entries["loop"], "python": "/nonexistent/python3"}
    inv.write_inventory(entries)
    says = {"refused": "connection refused", "nohost": "is not reachable", "silent": "no answer within 1.5 s",
            "stranger": "authentication failed", "nopython": "no Python at '/nonexistent/python3'"}
    try:
        for name, text in says.items():
            with pytest.raises(ToolchainMissing) as e:
                _activate(name, digits_on_board)
            line = e.value.one_line()
            assert e.value.exit_code == 3 and f"board {name!r}" in line and text in line and "\n" not in line, line
    finally:
        silent.close()


def test_a_wrong_or_unknown_host_key_is_refused(server, loop, digits_on_board, tmp_path, monkeypatch):
    import asyncssh

    _isolate(monkeypatch, tmp_path / "config")  # an inventory whose known_hosts does not know the server
    bt.LoopBoard(server, "loop", trust=False)
    before = len(server.session_log("start"))
    with pytest.raises(ToolchainMissing, match="host key is not known") as e:
        _activate("loop", digits_on_board)
    assert e.value.exit_code == 3 and "--trust-host-key" in e.value.one_line()
    impostor = asyncssh.generate_private_key("ssh-ed25519")
    (tmp_path / "config" / "known_hosts").write_text(bt.known_hosts_line(server.port, impostor))
    with pytest.raises(ToolchainMissing, match="does not match the known one: refused") as e:
        _activate("loop", digits_on_board)
    assert e.value.exit_code == 3
    assert len(server.session_log("start")) == before  # no command ran


# -- a board that dies, a user who presses Ctrl-C ---------------------------------------------------------------------
def _run_dirs(cache: Path) -> list[Path]:
    runs = cache / "runs"
    return list(runs.iterdir()) if runs.is_dir() else []


def test_a_board_killed_mid_run_is_exit_4_with_no_output(board_py, tmp_path, monkeypatch):
    _isolate(monkeypatch, tmp_path / "config")
    srv = bt.LoopServer(tmp_path / "srv", board_py).start()
    board = bt.LoopBoard(srv, "doomed")
    sf = sample_files()
    out = tmp_path / "out"
    caught: list[BaseException] = []

    def run():
        try:  # runs=10**6: the board's timing loop runs its full 10 s, ample time to pull the plug
            edgeconv.convert(sf["model"], "onnxruntime", data=sf["test"], output=out, place="doomed", runs=10**6,
                             memory=False)
        except BaseException as exc:  # noqa: BLE001
            caught.append(exc)

    t = threading.Thread(target=run)
    t.start()
    try:
        assert bt.wait_for(lambda: _run_dirs(board.cache), 120), "the run never started on the board"
        agent_pid = int(_run_dirs(board.cache)[0].name)
        srv.kill()  # the board loses power
        t.join(120)
    finally:
        srv.kill()
    assert not t.is_alive() and len(caught) == 1
    exc = caught[0]
    assert isinstance(exc, ToolchainFailed) and exc.exit_code == 4, repr(exc)
    assert "board 'doomed'" in exc.one_line() and "disconnected" in exc.one_line()
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["config", "srv"]  # no partial output
    # the orphaned agent read end of input: it removed its scratch and ended
    assert bt.wait_for(lambda: not bt.agent_alive(agent_pid) and not _run_dirs(board.cache), 30)


def test_ctrl_c_ends_the_board_process_and_removes_its_scratch(server, loop, digits_on_board, tmp_path):
    art = Path(digits_on_board["onnxruntime"].report["artifact"]["path"])
    host = tmp_path / "host.py"
    host.write_text(textwrap.dedent(f"""
        import numpy as np
        from pathlib import Path
        from edgeconv.model import IOContract, Model
        from edgeconv.verification.runners import make_runner
        art = Path({str(art)!r})
        r = make_runner(Model(form="onnx", io=IOContract((), ()), path=art), place="loop")
        r.activate()
        r.time_runs({{"input": np.zeros((1, 1, 8, 8), np.float32)}}, runs=10**9, warmup=0, max_seconds=3600)
    """))
    proc = subprocess.Popen([sys.executable, str(host)], env=dict(os.environ), stderr=subprocess.PIPE)
    try:
        assert bt.wait_for(lambda: _run_dirs(loop.cache), 120), "the run never started on the board"
        agent_pid = int(_run_dirs(loop.cache)[0].name)
        assert bt.agent_alive(agent_pid)
        proc.send_signal(signal.SIGINT)
        proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0 and b"KeyboardInterrupt" in proc.stderr.read()
    # the hour-long timing loop did not run on: the agent saw the channel close, cleaned up and ended
    assert bt.wait_for(lambda: not bt.agent_alive(agent_pid) and not _run_dirs(loop.cache), 60)


# -- ResNet-18 -----------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def resnet18(tmp_path_factory):
    import torch

    from edgeconv.testing import refnets

    d = tmp_path_factory.mktemp("resnet18")
    model, x = refnets.build("resnet18")
    torch.onnx.export(model, (x,), str(d / "resnet18.onnx"), dynamo=False, opset_version=17, input_names=["input"],
                      output_names=["output"])
    np.savez(d / "data.npz", input=np.random.default_rng(0).standard_normal((4, 3, 224, 224), dtype=np.float32))
    return d


@pytest.mark.slow
@pytest.mark.parametrize("target, runtime", [("onnxruntime", "onnxruntime 1.32.0"), ("tflite", "ai_edge_litert 2.3.0")])
def test_resnet18_converted_and_verified_on_the_board(loop, resnet18, board_py, target, runtime):
    r = edgeconv.convert(resnet18 / "resnet18.onnx", target, data=resnet18 / "data.npz", output=resnet18 / target,
                         place="loop", runs=5, memory=False)
    assert r.exit_code == 0, r.report["verdict"]
    art = r.report["runtime"]["artifact"]
    _ran_on_board(art, board_py)
    assert art["runtime"].startswith(runtime)
    f = r.report["fidelity"][0]
    assert f["shape"] == [4, 1000] and f["cosine"] > 0.9999 and f["topk_agreement"]["top1"] == 1.0
    assert r.report["latency_ms"]["runs"] == 5


@pytest.mark.slow
def test_resnet18_second_run_sends_nothing(server, loop, resnet18):
    """45 MB the first time, nothing the second: counted by the runner and, independently, by the SSH server."""
    import shutil

    fresh = _fresh_board(server, "fresh-resnet")
    art = resnet18 / "bare.onnx"
    shutil.copy(resnet18 / "resnet18.onnx", art)
    before = len(server.session_log("start"))
    first = verify(resnet18 / "resnet18.onnx", art, data=resnet18 / "data.npz", place="fresh-resnet", runs=2,
                   memory=False)
    second = verify(resnet18 / "resnet18.onnx", art, data=resnet18 / "data.npz", place="fresh-resnet", runs=2,
                    memory=False)
    t1, t2 = (r.report["runtime"]["artifact"]["transfer"] for r in (first, second))
    assert first.exit_code == second.exit_code == 0
    assert t1["bytes_sent"] > art.stat().st_size > 40 * 2**20 and t2["files_sent"] == t2["bytes_sent"] == 0
    assert bt.wait_for(lambda: server.ended(before + 1) and server.ended(before + 2))
    s1, s2 = server.ended(before + 1), server.ended(before + 2)
    assert s1["bytes_in"] - s2["bytes_in"] >= art.stat().st_size
    feed = 3 * 224 * 224 * 4  # the second session carries the 4 verification feeds, the latency feed and messages
    assert 5 * feed < s2["bytes_in"] < 5 * feed + 64 * 1024
    assert fresh.cache.is_dir()
