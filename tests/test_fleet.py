"""The matrix on a real Ray cluster started by the test (docs/fleet.md "What was run here").

One cluster for the module (``ray.cluster_utils.Cluster``): a head (1 CPU, with the dashboard for the Job Submission
API) and a board host (1 CPU) that advertises ``board:loopkind`` and the label ``edgeconv/board.loop1=loopkind``.
Board ``loop1`` is the loopback SSH board of the boards tests (tests/boards_testutil.py: an SSH server on 127.0.0.1
whose "board" is a separate Python with only numpy, onnxruntime and ai-edge-litert).

What is proved: the digits matrix (3 targets x 2 precisions, the spec of issue 20 as written) gives the same verdicts
on the local pool with 1 and 2 workers and on Ray, and a re-run converts nothing; a board cell runs on the board's
node, through its board; a board kind no node has fails fast (exit 3, one line, nothing written); a node removed
mid-run has its cells retried elsewhere, each cell once in results.jsonl; ``fleet join`` starts a real node that
advertises its boards; ``fleet status`` reads them back; ``fleet submit`` runs a matrix as a Ray job.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import typer
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parent))
import boards_testutil as bt  # noqa: E402
from edgeconv.matrix import fleet as fleet_mod  # noqa: E402
from edgeconv.matrix.cells import plan_cells  # noqa: E402
from edgeconv.cli.matrix import register  # noqa: E402
from edgeconv.matrix.live import Progress  # noqa: E402
from edgeconv.matrix.ray_backend import RayBackend  # noqa: E402
from edgeconv.matrix.runner import run_matrix  # noqa: E402
from edgeconv.matrix.spec import load_spec  # noqa: E402

ISSUE_SPEC = """\
models: [{name: digits, source: digits.onnx, data: digits_test.npz, calib: digits_calib.npz}]
targets: [onnxruntime, openvino, tflite]
precisions: [fp32, int8]
budgets: {max_accuracy_drop: 1}
"""
MODEL = "models: [{name: digits, source: digits.onnx, data: digits_test.npz, calib: digits_calib.npz}]\n"


def run_cli(*args: str):
    app = typer.Typer()
    register(app)
    return CliRunner().invoke(app, [str(a) for a in args])


def records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    board_py = bt.board_python()  # before HOME moves: the board's environment lives in the real cache
    root = tmp_path_factory.mktemp("fleet")
    mp = pytest.MonkeyPatch()
    config = root / "config"
    config.mkdir()
    # The host side sees only this test's inventory, known_hosts and key; the nodes inherit this environment.
    mp.setenv("EDGECONV_BOARDS", str(config / "boards.toml"))
    mp.setenv("HOME", str(config / "home"))
    mp.delenv("SSH_AUTH_SOCK", raising=False)
    mp.delenv("RAY_ADDRESS", raising=False)
    mp.setenv("EDGECONV_MATRIX_STORE", str(root / "store"))
    mp.setenv("EDGECONV_MATRIX_CACHE", str(root / "cache"))
    server = bt.LoopServer(root / "loop", board_py).start()
    cluster = None
    try:
        bt.LoopBoard(server, "loop1")
        from ray.cluster_utils import Cluster

        # Every node of this one machine gets a runtime-env folder of its own (on a real cluster each host has its
        # own): with one shared folder, the files of a job's working folder disappeared under the job's driver.
        cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": True,
                                                                 "dashboard_port": 0,
                                                                 "runtime_env_dir_name": "runtime_resources_head"})
        board_node = cluster.add_node(num_cpus=1, resources={"board:loopkind": 1},
                                      labels={"edgeconv/board.loop1": "loopkind"},
                                      runtime_env_dir_name="runtime_resources_board")
        yield SimpleNamespace(cluster=cluster, address=cluster.address, board_node=board_node, server=server,
                              root=root, head_id=cluster.head_node.node_id)
    finally:
        import ray

        if ray.is_initialized():
            ray.shutdown()
        if cluster is not None:
            cluster.shutdown()
        server.stop()
        mp.undo()


@pytest.fixture
def folder(tmp_path, digits):
    for name, src in (("digits.onnx", digits["model"]), ("digits_test.npz", digits["test"]),
                      ("digits_calib.npz", digits["calib"])):
        shutil.copy(src, tmp_path / name)
    return tmp_path


def verdicts(out: Path) -> dict[str, tuple]:
    return {r["id"]: (r["status"], r["exit_code"]) for r in records(out)}


def test_digits_matrix_same_verdicts_on_one_and_two_workers_and_on_ray(fleet, folder):
    spec = folder / "spec.yaml"
    spec.write_text(ISSUE_SPEC)
    runs = {}
    for name, args in (("w1", ["--workers", "1"]), ("w2", ["--workers", "2"]), ("ray", ["--cluster", fleet.address])):
        res = run_cli("matrix", spec, "-o", folder / name, *args)
        assert res.exit_code == max(c for _, c in verdicts(folder / name).values()), res.output
        runs[name] = verdicts(folder / name)
    assert len(runs["w1"]) == 6 and runs["w1"] == runs["w2"] == runs["ray"], runs
    assert {s for s, _ in runs["ray"].values()} == {"pass"}  # the digits CNN meets the 1 pp budget everywhere
    nodes = {fleet.head_id, fleet.board_node.node_id}
    for rec in records(folder / "ray"):
        assert rec["report"]["schema"] == "edgeconv.report/1" and len(rec["key"]) == 64
        assert rec["placement"]["backend"] == "ray" and rec["placement"]["node_id"] in nodes
        assert rec["placement"]["attempts"][-1]["node_id"] == rec["placement"]["node_id"]
        cell = folder / "ray" / rec["output"]  # the output came back through the store into OUT
        assert (cell / "report.json").is_file() and (cell / "manifest.json").is_file()
        assert rec["artifacts"]["report.json"] and len(rec["artifacts"]) >= 3
    assert (folder / "ray" / "index.html").read_text().count("report.json</a>") == 6
    again = run_cli("matrix", spec, "-o", folder / "w2", "--workers", "2")  # resumable: nothing changed
    assert again.exit_code == 0 and "ran 0, kept 6 unchanged" in again.stdout


def test_a_board_cell_runs_on_the_board_node_through_the_board(fleet, folder, monkeypatch):
    """Also: the driver runs in a folder with a ``numpy.py`` that leaves a mark when imported; Ray would put the
    driver's working folder on its workers' sys.path, edgeconv starts its driver elsewhere."""
    mark = folder / "imported-from-cwd"
    (folder / "numpy.py").write_text(f"open({str(mark)!r}, 'w').close()\nraise ImportError('not numpy')\n")
    monkeypatch.chdir(folder)
    spec = folder / "spec.yaml"
    spec.write_text(MODEL + "targets: [onnxruntime]\nprecisions: [fp32]\nruns: 5\nboards: [{kind: loopkind}]\n")
    sessions_before = len(fleet.server.session_log("start"))
    res = run_cli("matrix", spec, "-o", folder / "out", "--cluster", fleet.address)
    by = {r["id"]: r for r in records(folder / "out")}
    assert set(by) == {"digits/onnxruntime/fp32", "digits/onnxruntime/fp32@kind=loopkind"}, res.output
    on_board = by["digits/onnxruntime/fp32@kind=loopkind"]
    assert on_board["placement"]["node_id"] == fleet.board_node.node_id
    assert on_board["placement"]["board"] == "loop1" and by["digits/onnxruntime/fp32"]["placement"]["board"] is None
    assert on_board["status"] == "pass", on_board["error"]
    assert len(fleet.server.session_log("start")) > sessions_before  # the board itself was reached over SSH
    assert "loop1" in json.dumps(on_board["report"]["runtime"])  # the report says where the artifact ran
    assert (folder / "out" / "cells" / "digits" / "onnxruntime-fp32-on-loopkind" / "report.json").is_file()
    assert res.exit_code == 0 and not mark.exists()


def test_board_cells_on_the_local_pool_use_this_hosts_inventory(fleet, folder):
    """Without a cluster, a board cell verifies on a board of this host's inventory (loop1 is kind generic there);
    a kind the inventory lacks fails fast, exit 3, one line, nothing written."""
    spec = folder / "spec.yaml"
    spec.write_text(MODEL + "targets: [onnxruntime]\nprecisions: [int8]\nruns: 5\nboards: [generic]\n")
    res = run_cli("matrix", spec, "-o", folder / "out", "--workers", "1")
    by = {r["id"]: r for r in records(folder / "out")}
    board = by["digits/onnxruntime/int8@kind=generic"]
    assert res.exit_code == 0 and board["status"] == "pass", board["error"]
    assert board["placement"]["board"] == "loop1" and "loop1" in json.dumps(board["report"]["runtime"])
    spec.write_text(MODEL + "targets: [onnxruntime]\nboards: [rk3588]\n")
    res = run_cli("matrix", spec, "-o", folder / "out2", "--workers", "1")
    assert res.exit_code == 3 and "no board kind=rk3588" in res.stderr and os.environ["EDGECONV_BOARDS"] in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and not (folder / "out2").exists()


def test_a_board_kind_no_node_has_fails_fast(fleet, folder):
    spec = folder / "spec.yaml"
    spec.write_text(MODEL + "targets: [onnxruntime]\nprecisions: [fp32]\nboards: [nokind]\n")

    def hung(signum, frame):
        raise TimeoutError("the matrix waited for a board no node has")

    old = signal.signal(signal.SIGALRM, hung)  # Ray alone would wait forever for board:nokind
    signal.alarm(300)
    try:
        res = run_cli("matrix", spec, "-o", folder / "out", "--cluster", fleet.address)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    assert res.exit_code == 3, res.output
    line = res.stderr.strip()
    assert "\n" not in line and "board:nokind" in line and "board:loopkind" in line and "Traceback" not in line
    assert not (folder / "out").exists()


class RemoveNodeOnStart(Progress):
    """Remove ``victim`` from the cluster as soon as a cell starts on it (a host that dies mid-matrix)."""

    def __init__(self, cluster, victim) -> None:
        super().__init__(live=False)
        self.cluster, self.victim = cluster, victim
        self.hit: list[str] = []
        self.thread: threading.Thread | None = None

    def started(self, cell_id, where, event=None):
        super().started(cell_id, where, event)
        if event and event.get("node_id") == self.victim.node_id and not self.hit:
            self.hit.append(cell_id)
            self.thread = threading.Thread(target=lambda: (time.sleep(0.5), self.cluster.remove_node(self.victim)))
            self.thread.start()


def test_a_removed_node_has_its_cells_retried_elsewhere(fleet, folder):
    victim = fleet.cluster.add_node(num_cpus=1, runtime_env_dir_name="runtime_resources_victim")
    spec = folder / "spec.yaml"
    spec.write_text("models:\n"
                    "  - {name: a, source: digits.onnx, data: digits_test.npz, calib: digits_calib.npz}\n"
                    "  - {name: b, source: digits.onnx, data: digits_test.npz, calib: digits_calib.npz}\n"
                    "targets: [onnxruntime]\nprecisions: [fp32, int8, int8-dynamic]\nruns: 5\n")
    progress = RemoveNodeOnStart(fleet.cluster, victim)
    outcome = run_matrix(load_spec(spec), folder / "out", backend=RayBackend(fleet.address), progress=progress)
    if progress.thread is not None:
        progress.thread.join(120)
    assert progress.hit, "no cell started on the node to remove"
    recs = records(folder / "out")
    assert sorted(r["id"] for r in recs) == sorted(c.id for c in plan_cells(load_spec(spec)).cells)  # once each
    assert len({r["key"] for r in recs}) == len(recs) == 6
    hit = next(r for r in recs if r["id"] == progress.hit[0])
    assert hit["placement"]["attempts"][0]["node_id"] == victim.node_id
    assert hit["status"] == "pass" and hit["placement"]["node_id"] != victim.node_id  # retried on another node
    assert all(r["status"] == "pass" for r in recs) and outcome.exit_code == 0


def test_bad_boards_file_is_one_line_exit_2(tmp_path):
    boards = tmp_path / "boards.toml"
    boards.write_text('[boards."bad name"]\nkind = "rk3588"\n')
    res = run_cli("fleet", "join", "10.0.0.1:6379", "--boards", boards, "--dry-run")
    assert res.exit_code == 2 and str(boards) in res.stderr and "bad name" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


def test_fleet_submit_runs_the_matrix_as_a_ray_job(fleet, folder):
    spec = folder / "spec.yaml"
    spec.write_text("models: [{name: digits, source: digits.onnx, data: digits_test.npz}]\n"
                    "targets: [onnxruntime]\nprecisions: [fp32]\nruns: 5\n")
    res = run_cli("fleet", "submit", spec, "--address", f"http://{fleet.cluster.webui_url}", "-o", folder / "ci",
                  "--python", sys.executable)
    assert res.exit_code == 0, res.output
    recs = records(folder / "ci")
    assert [r["id"] for r in recs] == ["digits/onnxruntime/fp32"] and recs[0]["status"] == "pass"
    assert recs[0]["key"] == plan_cells(load_spec(spec)).cells[0].key
    assert recs[0]["placement"]["backend"] == "ray"


def test_capacity_check_names_every_missing_board_and_toolchain():
    """No Ray needed: what cells need (toolchain:<name>, board:<kind>, a named board) against what live nodes offer."""
    from edgeconv.errors import ToolchainMissing
    from edgeconv.matrix.cells import Cell

    def cell(target, **kw):
        return Cell(model="m", target=target, precision="fp32", source="m.onnx", **kw)

    cells = [cell("sophon", toolchains=("sophon",)), cell("onnxruntime", board_kind="rk3588"),
             cell("onnxruntime", board_name="pi-1"), cell("onnxruntime")]
    raw = [{"NodeID": "a" * 56, "Alive": True, "NodeManagerHostname": "h1", "Resources": {"CPU": 4.0,
            "toolchain:sophon": 4.0, "node:__internal_head__": 1.0}, "Labels": {"edgeconv/toolchain.sophon": "1.30.2"}},
           {"NodeID": "b" * 56, "Alive": False, "NodeManagerHostname": "h2",
            "Resources": {"CPU": 4.0, "board:rk3588": 1.0}, "Labels": {"edgeconv/board.rock-1": "rk3588"}},
           {"NodeID": "c" * 56, "Alive": True, "NodeManagerHostname": "h3",
            "Resources": {"CPU": 2.0, "board:rpi5": 1.0}, "Labels": {"edgeconv/board.pi-1": "rpi5"}}]
    nodes = fleet_mod.node_views(raw)
    assert nodes[0].toolchains == {"sophon": "1.30.2"} and nodes[0].head and nodes[2].boards == {"pi-1": "rpi5"}
    with pytest.raises(ToolchainMissing) as err:
        fleet_mod.check_capacity(cells, nodes)  # rock-1's node is dead: board:rk3588 is not offered
    text = err.value.one_line()
    assert "board:rk3588 (needed by 1 cell(s), e.g. m/onnxruntime/fp32@kind=rk3588)" in text and "\n" not in text
    assert "toolchain:sophon (needed" not in text and "board pi-1 (needed" not in text and err.value.exit_code == 3
    fleet_mod.check_capacity([c for c in cells if c.board_kind is None], nodes)  # the rest can be served
    nodes[1].alive = True
    fleet_mod.check_capacity(cells, nodes)
    assert [n for _, n, _ in fleet_mod.boards_for("board:rk3588", nodes)] == ["rock-1"]


def test_fleet_join_advertises_boards_and_toolchains(fleet, tmp_path):
    """Last in the module: the node it starts (plain `ray start`) uses the default runtime-env folder."""
    boards = tmp_path / "boards.toml"
    boards.write_text('[boards.rk1]\nurl = "ssh://rock@10.0.0.5"\nkind = "rk3588"\n'
                      '[boards.rk2]\nurl = "ssh://rock@10.0.0.6"\nkind = "rk3588"\n'
                      '[boards.pi]\nurl = "ssh://pi@10.0.0.7"\nkind = "rpi5"\n')
    res = run_cli("fleet", "join", "10.0.0.1:6379", "--boards", boards, "--num-cpus", "1", "--dry-run")
    assert res.exit_code == 0, res.output
    plan = json.loads(res.stdout)
    assert plan["resources"]["board:rk3588"] == 2 and plan["resources"]["board:rpi5"] == 1
    assert plan["labels"]["edgeconv/board.rk1"] == "rk3588" and plan["labels"]["edgeconv/board.pi"] == "rpi5"
    assert plan["labels"]["edgeconv/runtime.onnxruntime"]
    assert all(fleet_mod.toolchain_resource(t) in plan["resources"] for t in fleet_mod.host_toolchains())
    argv = plan["argv"]
    assert argv[argv.index("start") + 1:argv.index("start") + 3] == ["--address", "10.0.0.1:6379"]
    # for real: `ray start --block` joins the test's cluster; the node is seen with its boards, then stopped
    argv = fleet_mod.join_argv(fleet.address, {"board:rk3588": 2.0}, {"edgeconv/board.rk1": "rk3588"},
                               num_cpus=1, block=True)
    proc = subprocess.Popen(argv, cwd=tmp_path, start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        seen = None
        for _ in range(60):
            status = json.loads(run_cli("fleet", "status", "--cluster", fleet.address, "--json").stdout)
            seen = next((n for n in status["nodes"] if n["alive"] and n["boards"].get("rk1") == "rk3588"), None)
            if seen:
                break
            time.sleep(2)
        assert seen and seen["resources"]["board:rk3588"] == 2
        assert status["resources"]["board:loopkind"]["total"] == 1
        assert {b["name"] for b in status["boards"]} >= {"loop1", "rk1"}
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(60)
