"""The loopback board of the tests and benchmarks (docs/boards.md "What was run here").

- ``board_python()``: a SEPARATE Python environment holding only numpy, onnxruntime and ai-edge-litert (pinned
  below; no edgeconv), made once under ``${XDG_CACHE_HOME:-~/.cache}/edgeconv-testing/board-venv`` (or
  ``$EDGECONV_TEST_BOARD_VENV``) with ``python -m venv`` + pip from PyPI; ``board_python("board-venv-old",
  OLD_BOARD_PINS)``: an older board beside it (numpy 1.x, tflite-runtime instead of LiteRT).
- ``LoopServer``: an SSH server on 127.0.0.1 (asyncssh's server API, run as its own process so that a test can
  SIGKILL it like a board that dies) with keys made by the test. It runs each requested command line the way
  sshd does, ``/bin/sh -c COMMAND``, as the board's user (HOME = the board's home, PATH = the board venv first),
  and logs every session (command, bytes in and out, exit status) to ``sessions.jsonl``.
- ``LoopBoard``: the server + keys + an inventory entry named ``loop`` (EDGECONV_BOARDS) + the host key in
  edgeconv's known_hosts.

Run the server by hand: ``python tests/boards_testutil.py serve --help``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

# The board's packages, pinned: the versions on the host's lock (requirements), so that board and host figures
# compare the same runtime builds.
BOARD_PINS = ("numpy==2.4.6", "onnxruntime==1.32.0", "ai-edge-litert==2.3.0")
# An older board: numpy 1.x, an older onnxruntime and the tflite-runtime interpreter instead of LiteRT (what a board
# whose Python has no LiteRT 2.x wheel runs: e.g. ai-edge-litert 2.3.0 has no aarch64 Linux wheel on PyPI).
OLD_BOARD_PINS = ("numpy==1.26.4", "onnxruntime==1.23.2", "tflite-runtime==2.14.0")


# -- the board's Python ----------------------------------------------------------------------------------------------
def board_venv_dir(name: str = "board-venv") -> Path:
    env = os.environ.get("EDGECONV_TEST_BOARD_VENV")
    if env:
        return Path(env).with_name(name) if name != "board-venv" else Path(env)
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "edgeconv-testing" / name


def board_python(name: str = "board-venv", pins: tuple[str, ...] = BOARD_PINS) -> Path:
    """The board environment's Python, made (once, under a file lock) when missing or pinned differently."""
    root = board_venv_dir(name)
    root.parent.mkdir(parents=True, exist_ok=True)
    py, stamp = root / "bin" / "python", root / "edgeconv-board-pins.txt"
    with open(root.parent / (root.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if py.exists() and stamp.is_file() and stamp.read_text() == "\n".join(pins):
            return py
        shutil.rmtree(root, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(root)], check=True)
        subprocess.run([str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check", *pins], check=True)
        stamp.write_text("\n".join(pins))
    return py


# -- keys ------------------------------------------------------------------------------------------------------------
def make_key(path: Path) -> Any:
    import asyncssh

    key = asyncssh.generate_private_key("ssh-ed25519")
    key.write_private_key(str(path))
    os.chmod(path, 0o600)
    key.write_public_key(str(path) + ".pub")
    return key


def known_hosts_line(port: int, key: Any) -> str:
    kind, data = key.export_public_key("openssh").decode().split()[:2]
    return f"[127.0.0.1]:{port} {kind} {data}\n"


# -- the server process ---------------------------------------------------------------------------------------------
class LoopServer:
    """``python boards_testutil.py serve ...`` as a child process; ``kill()`` is a board losing power."""

    def __init__(self, root: Path, board_py: Path) -> None:
        self.root = root
        self.home = root / "board-home"
        self.home.mkdir(parents=True, exist_ok=True)
        self.host_key = make_key(root / "host_key")
        self.client_key_path = root / "client_key"
        make_key(self.client_key_path)
        (root / "authorized_keys").write_text((root / "client_key.pub").read_text())
        self.sessions = root / "sessions.jsonl"
        self.board_py = board_py
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0

    def start(self) -> LoopServer:
        port_file = self.root / "port"
        port_file.unlink(missing_ok=True)
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "serve", "--host-key", str(self.root / "host_key"),
             "--authorized-keys", str(self.root / "authorized_keys"), "--home", str(self.home),
             "--path", str(self.board_py.parent), "--sessions", str(self.sessions), "--port-file", str(port_file)],
            stdout=subprocess.DEVNULL, stderr=open(self.root / "server.log", "ab"), start_new_session=True)
        deadline = time.monotonic() + 60
        while not port_file.is_file() or not port_file.read_text().strip():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the loopback SSH server did not start: "
                                   + (self.root / "server.log").read_text()[-2000:])
            time.sleep(0.05)
        self.port = int(port_file.read_text())
        return self

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()
        for pid in self.board_processes():  # a failed test may leave an agent running: end it
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)

    def board_processes(self) -> list[int]:
        """Processes of this board still alive: their working folder is the board's home (the agent's chdir)."""
        found = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                with contextlib.suppress(OSError):
                    if os.readlink(entry / "cwd") == str(self.home) and agent_alive(int(entry.name)):
                        found.append(int(entry.name))
        return found

    def session_log(self, event: str = "end") -> list[dict[str, Any]]:
        """The sessions the server ran (``start`` events, or ``end`` ones with the byte counts), in order."""
        if not self.sessions.is_file():
            return []
        lines = [json.loads(line) for line in self.sessions.read_text().splitlines() if line.strip()]
        return sorted((e for e in lines if e["event"] == event), key=lambda e: e["session"])

    def ended(self, session: int) -> dict[str, Any] | None:
        return next((e for e in self.session_log() if e["session"] == session), None)

    @property
    def cache(self) -> Path:
        return self.home / ".cache" / "edgeconv-board"


class LoopBoard:
    """Register ``server`` as board ``name`` in the inventory EDGECONV_BOARDS names (the caller sets it), and trust
    its host key in edgeconv's known_hosts beside it."""

    def __init__(self, server: LoopServer, name: str = "loop", *, trust: bool = True, **fields: Any) -> None:
        from edgeconv.places import inventory as inv

        self.server, self.name = server, name
        entries = inv.raw_entries()
        entries[name] = {"url": f"ssh://board@127.0.0.1:{server.port}", "kind": "generic",
                         "python": str(server.board_py), "key": str(server.client_key_path), "timeout": 20.0,
                         **fields}
        inv.write_inventory(entries)
        if trust:
            with open(inv.known_hosts_path(), "a") as f:
                f.write(known_hosts_line(server.port, server.host_key))
        self.board = inv.get_board(name)

    @property
    def cache(self) -> Path:
        """The board's cache folder on the (loopback) board."""
        home = str(self.server.home)
        return Path(self.board.cache.replace("~", home, 1))


def agent_alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in state


def wait_for(predicate: Any, seconds: float = 20.0, step: float = 0.02) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return bool(predicate())


# -- serve: the server itself (runs in its own process) --------------------------------------------------------------
async def _pump(src: Any, dst: Any, counts: dict[str, int], key: str, drain: bool) -> None:
    with contextlib.suppress(Exception):
        while True:
            data = await src.read(65536)
            if not data:
                break
            counts[key] += len(data)
            dst.write(data)
            if drain:
                await dst.drain()


async def _feed(src: Any, stdin: Any, counts: dict[str, int]) -> None:
    """The client's bytes to the command; at the channel's end of input, the command's input ends too."""
    try:
        await _pump(src, stdin, counts, "in", True)
    finally:
        with contextlib.suppress(Exception):
            stdin.close()


async def _serve(args: argparse.Namespace) -> None:
    import asyncssh

    env = {"PATH": f"{args.path}:/usr/local/bin:/usr/bin:/bin", "HOME": args.home, "LANG": "C.UTF-8"}

    started = [0]

    async def handle(process: asyncssh.SSHServerProcess) -> None:
        command = process.command
        started[0] += 1
        session = started[0]
        with open(args.sessions, "a") as f:
            f.write(json.dumps({"event": "start", "session": session, "command": command}) + "\n")
        if command is None:  # a login shell: not offered
            process.exit(1)
            return
        child = await asyncio.create_subprocess_exec(
            "/bin/sh", "-c", command, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, env=env, cwd=args.home)
        counts = {"in": 0, "out": 0, "err": 0}
        feed = asyncio.ensure_future(_feed(process.stdin, child.stdin, counts))
        try:
            await asyncio.gather(_pump(child.stdout, process.stdout, counts, "out", False),
                                 _pump(child.stderr, process.stderr, counts, "err", False))
            code = await child.wait()
        finally:  # like sshd: the client gone, the command's input ends (it is not killed)
            feed.cancel()
            with contextlib.suppress(Exception):
                child.stdin.close()
        with open(args.sessions, "a") as f:
            f.write(json.dumps({"event": "end", "session": session, "command": command, "bytes_in": counts["in"],
                                "bytes_out": counts["out"], "exit": code, "pid": child.pid}) + "\n")
        with contextlib.suppress(Exception):
            process.exit(code)

    server = await asyncssh.listen("127.0.0.1", 0, server_host_keys=[args.host_key],
                                   authorized_client_keys=args.authorized_keys, process_factory=handle,
                                   encoding=None, allow_scp=False, line_editor=False, agent_forwarding=False,
                                   x11_forwarding=False)
    Path(args.port_file).write_text(str(server.get_port()))
    await asyncio.Event().wait()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="boards_testutil.py")
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve", help="an SSH server on 127.0.0.1 running commands as the loopback board")
    for opt in ("--host-key", "--authorized-keys", "--home", "--path", "--sessions", "--port-file"):
        s.add_argument(opt, required=True)
    args = ap.parse_args(argv)
    asyncio.run(_serve(args))


if __name__ == "__main__":
    main()
