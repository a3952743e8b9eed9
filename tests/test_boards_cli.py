"""``edgeconv boards add/list/check/remove`` (edgeconv.cli.boards), through a Typer app built from its
``register(app)``, against the loopback board (tests/boards_testutil.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parent))
import boards_testutil as bt  # noqa: E402
from edgeconv.places import inventory as inv  # noqa: E402
from edgeconv.cli.boards import register  # noqa: E402


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = bt.LoopServer(tmp_path_factory.mktemp("loopserver"), bt.board_python()).start()
    yield srv
    srv.stop()


@pytest.fixture
def cli(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGECONV_BOARDS", str(tmp_path / "config" / "boards.toml"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    app = typer.Typer()

    @app.callback()
    def main() -> None:
        """edgeconv (test app)"""

    register(app)
    runner = CliRunner()
    return lambda *args: runner.invoke(app, ["boards", *map(str, args)])


def _add(cli, server, name="pi", *extra):
    return cli("add", name, f"ssh://board@127.0.0.1:{server.port}", "--kind", "generic", "--python",
               server.board_py, "--key", server.client_key_path, *extra)


def _one_line_error(res, code: int, text: str) -> None:
    assert res.exit_code == code, res.output
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("edgeconv: error: ") and text in lines[0], res.stderr


def test_add_accepting_the_host_key_then_list_check_and_remove(cli, server):
    res = _add(cli, server, "pi", "--accept-new-host-key")
    fingerprint = server.host_key.get_fingerprint("sha256")
    assert res.exit_code == 0, res.output
    assert f"trusted host key of board@127.0.0.1:{server.port}: ssh-ed25519 {fingerprint}" in res.stdout
    assert inv.known_hosts_path().read_text() == bt.known_hosts_line(server.port, server.host_key)
    assert "pi" in inv.read_inventory()[0]

    res = cli("list")
    assert res.exit_code == 0 and f"pi  ssh://board@127.0.0.1:{server.port}  kind=generic" in res.stdout

    res = cli("check", "pi")
    assert res.exit_code == 0, res.output
    out = res.stdout
    assert f"board pi (generic) at board@127.0.0.1:{server.port}: reachable" in out
    assert f"python: {sys.version.split()[0]} ({server.board_py})" in out
    assert "numpy: 2.4.6" in out and "onnxruntime 1.32.0" in out and "ai_edge_litert 2.3.0" in out
    assert "memory: " in out and "GiB" in out and "os: " in out and "cpu: " in out

    facts = json.loads(cli("check", "pi", "--json").stdout)
    assert set(facts["runtimes"]) == {"onnxruntime", "ai_edge_litert"} and facts["executable"] == str(server.board_py)
    assert facts["memory_bytes"] > 2**28 and facts["cpus"] >= 1

    res = cli("remove", "pi")
    assert res.exit_code == 0 and "and 1 host key line(s)" in res.stdout
    assert inv.read_inventory() == ({}, {}) and inv.known_hosts_path().read_text() == ""
    assert "no boards" in cli("list").stdout


def test_a_host_key_is_trusted_only_when_asked(cli, server):
    res = _add(cli, server, "pi")
    assert res.exit_code == 0 and "host key is not known yet: edgeconv boards check pi --trust-host-key" in res.stdout
    _one_line_error(cli("check", "pi"), 3, "host key is not known: refused")
    res = cli("check", "pi", "--trust-host-key")
    assert res.exit_code == 0 and "trusted host key" in res.stdout and "reachable" in res.stdout


def test_a_new_key_never_replaces_a_known_one(cli, server):
    import asyncssh

    impostor = asyncssh.generate_private_key("ssh-ed25519")
    inv.known_hosts_path().parent.mkdir(parents=True, exist_ok=True)
    inv.known_hosts_path().write_text(bt.known_hosts_line(server.port, impostor))
    _one_line_error(_add(cli, server, "pi", "--accept-new-host-key"), 3,
                    "presents a host key other than the one already known for it: refused")
    assert inv.known_hosts_path().read_text() == bt.known_hosts_line(server.port, impostor)
    assert _add(cli, server, "pi").exit_code == 0
    res = cli("check", "pi", "--trust-host-key")  # a key is known (the wrong one): nothing is trusted, refused
    _one_line_error(res, 3, "does not match the known one: refused")


def test_a_fingerprint_that_does_not_match_adds_nothing(cli, server):
    _one_line_error(_add(cli, server, "pi", "--accept-new-host-key", "--host-key-fingerprint", "SHA256:not-it"), 2,
                    "not the SHA256:not-it you expected: refused")
    assert inv.read_inventory() == ({}, {}) and not inv.known_hosts_path().exists()
    res = _add(cli, server, "pi", "--accept-new-host-key", "--host-key-fingerprint",
               server.host_key.get_fingerprint("sha256"))
    assert res.exit_code == 0, res.output


def test_bad_input_is_one_line_and_leaves_the_inventory_alone(cli, server):
    assert _add(cli, server, "pi", "--accept-new-host-key").exit_code == 0
    before = inv.inventory_path().read_text()
    _one_line_error(_add(cli, server, "pi"), 2, "a board named 'pi' exists")
    _one_line_error(cli("add", "x", "ssh://pi:hunter2@10.0.0.9"), 2, "a password does not belong in the inventory")
    _one_line_error(cli("add", "x", "ssh://h", "--python", "python3 && reboot"), 2, "board Python")
    _one_line_error(cli("add", "x", "ssh://h", "--kind", "jetson"), 2, "board kind 'jetson' is not known")
    _one_line_error(cli("check", "pj"), 2, "no board named 'pj' (boards: pi); did you mean 'pi'?")
    _one_line_error(cli("remove", "nope"), 2, "no board named 'nope'")
    assert inv.inventory_path().read_text() == before


def test_unreachable_board_is_exit_3(cli):
    with __import__("socket").socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert cli("add", "gone", f"ssh://pi@127.0.0.1:{port}", "--timeout", "3").exit_code == 0
    _one_line_error(cli("check", "gone"), 3, "board 'gone' (pi@127.0.0.1:")
    _one_line_error(cli("add", "gone2", f"ssh://pi@127.0.0.1:{port}", "--accept-new-host-key"), 3,
                    "connection refused")
    assert "gone2" not in inv.read_inventory()[0]


def test_a_broken_entry_is_listed_and_can_be_removed(cli, server):
    assert _add(cli, server, "pi", "--accept-new-host-key").exit_code == 0
    with open(inv.inventory_path(), "a") as f:
        f.write('\n[boards.old]\nurl = "ssh://pi@old"\npassword = "hunter2"\n')
    res = cli("list")
    assert res.exit_code == 0 and "pi  ssh://" in res.stdout and "old  INVALID: " in res.stdout
    assert "holds no secrets" in res.stdout
    _one_line_error(cli("check", "old"), 2, "field 'password' is refused")
    assert cli("remove", "old").exit_code == 0
    assert "hunter2" not in inv.inventory_path().read_text() and "pi" in inv.read_inventory()[0]


def test_check_shows_a_board_in_use(cli, server):
    from edgeconv.places.ssh import AgentSession

    assert _add(cli, server, "pi", "--accept-new-host-key").exit_code == 0
    holder = AgentSession(inv.get_board("pi"), lock=True)
    pid = holder.open()["pid"]
    try:
        res = cli("check", "pi")
    finally:
        holder.close()
    assert res.exit_code == 0 and f"(in use by agent pid {pid})" in res.stdout


def test_the_commands_module_imports_no_ssh_library():
    code = "import sys, edgeconv.cli.boards; print('asyncssh' in sys.modules, 'cryptography' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_without_asyncssh_a_board_command_says_what_to_install(cli, server, monkeypatch):
    assert cli("add", "pi", f"ssh://board@127.0.0.1:{server.port}").exit_code == 0  # adding needs no SSH library
    monkeypatch.setitem(sys.modules, "asyncssh", None)  # import asyncssh -> ModuleNotFoundError
    _one_line_error(cli("check", "pi"), 3, "reaching a board needs asyncssh, which is not installed")
