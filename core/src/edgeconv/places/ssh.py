"""One SSH connection to a board, running edgeconv's board agent (``agent.py``), with a blocking API.

asyncssh is asynchronous; the runner contract is not. Each ``AgentSession`` owns a private event loop in a
daemon thread, and every call waits on it in short slices, so that Ctrl-C reaches the caller: the session then
closes the channel (the agent sees end of input, removes its scratch and exits) and the interrupt goes on.

The only command line ever sent is ``shlex.join([board.python, "-c", agent.BOOTSTRAP])``: BOOTSTRAP is a constant
(one line, no shell metacharacter needs more than the single quotes shlex puts around it), and ``board.python``
is checked against ``inventory.PYTHON_RE`` (a command name or an absolute path of ``[A-Za-z0-9._+-/]``) before it
gets here, and quoted by shlex.join anyway. Names, paths, options and arrays travel over the channel as data.

Host keys: checked against edgeconv's known_hosts (beside the inventory) and ``~/.ssh/known_hosts``; an unknown
or changed key refuses the connection (accepting one is explicit: ``trust_host_key``). No ~/.ssh/config is read
and no password is ever sent: keys by path (the board's ``key``) or the SSH agent.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import shlex
import threading
import time
import zlib
from collections import deque
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..errors import BadInput, EdgeconvError, ToolchainFailed, ToolchainMissing
from . import agent as agent_module
from .inventory import Board, known_hosts_path

KEEPALIVE = (15.0, 4)  # a board that stops answering is given up after about a minute, even mid-run
CHUNK = 1 << 20


def _asyncssh() -> Any:
    """asyncssh, imported when a board is reached (never at ``import edgeconv``)."""
    try:
        import asyncssh
    except ModuleNotFoundError:
        raise ToolchainMissing("reaching a board needs asyncssh, which is not installed", stage="boards",
                               hint='pip install "asyncssh>=2.24.1,<3"') from None
    return asyncssh


def agent_source() -> bytes:
    return Path(agent_module.__file__).read_bytes()


def command_line(board: Board) -> str:
    """The one command line sent to the board (see the module docstring for why it is safe)."""
    from .inventory import check_python

    return shlex.join([check_python(board.python), "-c", agent_module.BOOTSTRAP])


def known_hosts_files() -> list[str]:
    files = [known_hosts_path(), Path.home() / ".ssh" / "known_hosts"]
    return [str(f) for f in files if f.is_file()]


def _trusted(board: Board) -> Any:
    """A known_hosts matcher over edgeconv's file and the user's (never None: None would turn checking off)."""
    asyncssh = _asyncssh()

    known = asyncssh.SSHKnownHosts()
    for f in known_hosts_files():
        known.load(Path(f).read_text(encoding="utf-8", errors="replace"))
    return lambda host, addr, port: known.match(host, addr, port)


def known_host_keys(board: Board) -> list[Any]:
    """The host keys trusted for the board's host:port (edgeconv's known_hosts and the user's)."""
    return list(_trusted(board)(board.host, board.host, board.port if board.port != 22 else None)[0])


def host_key_known(board: Board) -> bool:
    keys = _trusted(board)(board.host, board.host, board.port if board.port != 22 else None)
    return bool(keys[0] or keys[1])


def _host_pattern(board: Board) -> str:
    return board.host if board.port == 22 else f"[{board.host}]:{board.port}"


class _Loop:
    """A private event loop in a daemon thread; ``run`` waits for a coroutine, Ctrl-C included."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="edgeconv-ssh", daemon=True)
        self.thread.start()

    def run(self, coro: Any, timeout: float | None = None) -> Any:
        fut = asyncio.run_coroutine_threadsafe(coro, self.loop)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                return fut.result(0.25)
            except concurrent.futures.TimeoutError:
                if deadline is not None and time.monotonic() > deadline:
                    fut.cancel()
                    raise TimeoutError from None
            except BaseException:
                if not fut.done():
                    fut.cancel()
                raise

    def stop(self) -> None:
        if self.loop.is_closed():
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        if not self.thread.is_alive():
            self.loop.close()


def _connect_error(board: Board, exc: BaseException) -> EdgeconvError:
    """A failed connection as one line naming the board (exit 3: the board is not there for us)."""
    asyncssh = _asyncssh()

    where = f"board {board.name!r} ({board.address()})"
    if isinstance(exc, asyncssh.HostKeyNotVerifiable):
        if host_key_known(board):
            return ToolchainMissing(f"{where}: its host key does not match the known one: refused (a re-installed "
                                    "board, or someone in between)", stage="boards",
                                    hint=f"if the board was re-installed, remove its line from {known_hosts_path()} "
                                    "or run edgeconv boards remove/add")
        return ToolchainMissing(f"{where}: its host key is not known: refused", stage="boards",
                                hint=f"edgeconv boards check {board.name} --trust-host-key (after checking the "
                                "fingerprint it prints)")
    if isinstance(exc, asyncssh.PermissionDenied):
        return ToolchainMissing(f"{where}: authentication failed ({exc.reason})", stage="boards",
                                hint="give a key with edgeconv boards add ... --key PATH, or load it in ssh-agent")
    if isinstance(exc, asyncssh.KeyImportError):
        return BadInput(f"{where}: the key file cannot be used: {exc}", file=board.key, stage="boards")
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
        return ToolchainMissing(f"{where}: no answer within {board.timeout:g} s", stage="boards")
    if isinstance(exc, ConnectionRefusedError):
        return ToolchainMissing(f"{where}: connection refused (is sshd running?)", stage="boards")
    text = " ".join(str(exc).split()) or type(exc).__name__
    return ToolchainMissing(f"{where} is not reachable: {text}", stage="boards")


async def _open(board: Board) -> Any:
    asyncssh = _asyncssh()

    opts: dict[str, Any] = {
        "port": board.port, "known_hosts": _trusted(board), "config": None,
        "connect_timeout": board.timeout, "login_timeout": board.timeout, "password_auth": False,
        "kbdint_auth": False, "keepalive_interval": KEEPALIVE[0], "keepalive_count_max": KEEPALIVE[1],
    }
    if board.user:
        opts["username"] = board.user
    if board.key:
        if not Path(board.key).is_file():
            raise BadInput(f"board {board.name!r}: key file not found", file=board.key, stage="boards")
        opts["client_keys"] = [board.key]
    return await asyncio.wait_for(asyncssh.connect(board.host, **opts), board.timeout + 5)


def fetch_host_key(board: Board) -> Any:
    """The host key the board presents (nothing is trusted or logged in): for ``--accept-new-host-key``."""
    asyncssh = _asyncssh()

    loop = _Loop()
    try:
        return loop.run(asyncio.wait_for(asyncssh.get_server_host_key(board.host, board.port, config=None),
                                         board.timeout), board.timeout + 5)
    except (OSError, asyncssh.Error, asyncio.TimeoutError, TimeoutError) as exc:
        raise _connect_error(board, exc) from None
    finally:
        loop.stop()


def trust_host_key(board: Board, key: Any) -> Path:
    """Append ``key`` for the board's host:port to edgeconv's known_hosts. Never next to another key already known
    for that host:port: two keys would make either one trusted, a silent replacement (refused, exit 3)."""
    known = known_host_keys(board)
    path = known_hosts_path()
    if any(k.public_data == key.public_data for k in known):
        return path
    if known:
        raise ToolchainMissing(f"board {board.name!r} ({board.address()}) presents a host key other than the one "
                               "already known for it: refused", stage="boards",
                               hint="if the board was re-installed, remove its old line from known_hosts first")
    path.parent.mkdir(parents=True, exist_ok=True)
    kind, data = key.export_public_key("openssh").decode().split()[:2]
    line = f"{_host_pattern(board)} {kind} {data}\n"
    with open(path, "a", encoding="utf-8") as f:
        f.write(line)
    return path


def forget_host(board: Board) -> int:
    """Remove the lines for the board's host:port from edgeconv's known_hosts; returns how many."""
    path = known_hosts_path()
    if not path.is_file():
        return 0
    pattern = _host_pattern(board)
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    kept = [ln for ln in lines if ln.split(" ", 1)[0] != pattern]
    if len(kept) != len(lines):
        path.write_text("".join(kept), encoding="utf-8")
    return len(lines) - len(kept)


class AgentSession:
    """The agent running on a board, over one SSH connection. ``lock=True`` takes the board for this session."""

    def __init__(self, board: Board, *, lock: bool, timeout: float = 900.0) -> None:
        self.board = board
        self.lock = lock
        self.timeout = timeout
        self.loop: _Loop | None = None
        self.conn: Any = None
        self.proc: Any = None
        self.stderr: deque[str] = deque(maxlen=40)
        self.sent = {"agent_bytes": 0, "files_sent": 0, "bytes_sent": 0, "files_cached": 0, "message_bytes": 0}
        self.hello: dict[str, Any] = {}

    # -- life -----------------------------------------------------------------------------------------------------
    def open(self) -> dict[str, Any]:
        self.loop = _Loop()
        try:
            try:
                self.conn = self.loop.run(_open(self.board), self.board.timeout + 10)
            except EdgeconvError:
                raise
            except Exception as exc:
                raise _connect_error(self.board, exc) from None
            try:
                self.loop.run(self._start(), self.board.timeout + 10)
            except Exception as exc:
                raise self._lost("start", exc) from None
            self.hello = self.request({"op": "hello", "protocol": agent_module.PROTOCOL, "cache": self.board.cache,
                                       "lock": self.lock, "lock_wait": self.board.lock_wait},
                                      timeout=self.board.lock_wait + 60)[0]
        except BaseException:
            self.abort()
            raise
        return self.hello

    async def _start(self) -> None:
        self.proc = await self.conn.create_process(command_line(self.board), encoding=None)
        asyncio.ensure_future(self._drain_stderr())
        code = zlib.compress(agent_source(), 9)
        head = f"{len(code)}\n".encode()
        self.proc.stdin.write(head + code)
        await self.proc.stdin.drain()
        self.sent["agent_bytes"] = len(head) + len(code)

    async def _drain_stderr(self) -> None:
        try:
            while True:
                line = await self.proc.stderr.readline()
                if not line:
                    return
                self.stderr.append(line.decode("utf-8", "replace").rstrip())
        except Exception:
            return

    def close(self) -> None:
        """Say goodbye (the agent cleans up and exits), then close the connection."""
        if self.proc is not None and self.loop is not None:
            try:
                self.request({"op": "quit"}, timeout=30)
            except (EdgeconvError, TimeoutError):
                pass
        self.abort()

    def abort(self) -> None:
        """Close at once: the agent reads end of input, removes its scratch and exits (Ctrl-C, errors)."""
        if self.loop is None:
            return
        loop, self.loop = self.loop, None
        try:
            loop.run(self._close(), 10)
        except BaseException:  # noqa: BLE001 - best effort; a second Ctrl-C must not leave the thread behind
            pass
        loop.stop()

    async def _close(self) -> None:
        if self.proc is not None:
            try:
                self.proc.stdin.write_eof()
            except Exception:
                pass
            self.proc.close()
        if self.conn is not None:
            self.conn.close()
            try:
                await asyncio.wait_for(self.conn.wait_closed(), 5)
            except Exception:
                pass

    # -- requests -------------------------------------------------------------------------------------------------
    def request(self, header: dict[str, Any], payload: bytes | Iterable[bytes] = b"", *, size: int | None = None,
                timeout: float | None = None) -> tuple[dict[str, Any], bytes]:
        """Send one request, wait for its reply. An agent's error reply becomes an ``EdgeconvError``."""
        op = header.get("op")
        if self.loop is None:
            raise ToolchainFailed(f"board {self.board.name!r}: the session is closed", stage="verify")
        try:
            reply, data = self.loop.run(self._exchange(header, payload, size), timeout or self.timeout)
        except TimeoutError:
            self.abort()
            raise ToolchainFailed(f"board {self.board.name!r}: no reply to {op} within {timeout or self.timeout:g} s",
                                  stage="verify") from None
        except KeyboardInterrupt:
            self.abort()
            raise
        except EdgeconvError:
            self.abort()
            raise
        except Exception as exc:  # the connection or the channel broke
            if op == "hello":  # the agent never started: its exit status says why
                try:
                    self.loop.run(self.proc.wait_closed(), 3)
                except BaseException:  # noqa: BLE001
                    pass
            error = self._lost(op, exc)
            self.abort()
            raise error from None
        if not reply.get("ok", False):
            raise self._refused(op, reply)
        return reply, data

    async def _exchange(self, header: dict[str, Any], payload: Any, size: int | None) -> tuple[dict[str, Any], bytes]:
        chunks = [payload] if isinstance(payload, (bytes, bytearray, memoryview)) else payload
        if size is None:
            chunks = list(chunks)
            size = sum(len(c) for c in chunks)
        line = json.dumps({**header, "size": size}, separators=(",", ":")).encode() + b"\n"
        pending = [line]
        for chunk in chunks:  # small messages go as one write; files stream in CHUNK pieces
            pending.append(bytes(chunk))
            if sum(map(len, pending)) >= CHUNK:
                await self._send(b"".join(pending))
                pending = []
        await self._send(b"".join(pending))
        raw = await self.proc.stdout.readline()
        if not raw.endswith(b"\n"):
            raise EOFError("the agent ended")
        reply = json.loads(raw)
        n = int(reply.get("size", 0))
        data = await self.proc.stdout.readexactly(n) if n else b""
        return reply, data

    async def _send(self, data: bytes) -> None:
        if data:
            self.proc.stdin.write(data)
            self.sent["message_bytes"] += len(data)
            await self.proc.stdin.drain()

    def _tail(self) -> str:
        lines = [ln for ln in self.stderr if ln.strip()]
        return (" (board says: " + " | ".join(lines[-3:])[-400:] + ")") if lines else ""

    def _lost(self, op: Any, exc: BaseException) -> EdgeconvError:
        status = getattr(self.proc, "exit_status", None) if self.proc is not None else None
        where = f"board {self.board.name!r} ({self.board.address()})"
        if op == "hello" and status == 127:
            return ToolchainMissing(f"{where}: no Python at {self.board.python!r}", stage="boards",
                                    hint="edgeconv boards add NAME URL --python /path/to/python3")
        if op == "hello" and status == 3:
            return ToolchainMissing(f"{where}: its Python is older than 3.8{self._tail()}", stage="boards")
        text = " ".join(str(exc).split()) or type(exc).__name__
        return ToolchainFailed(f"{where} disconnected during {op}: {text}{self._tail()}", stage="verify")

    def _refused(self, op: Any, reply: dict[str, Any]) -> EdgeconvError:
        kind, text = reply.get("kind"), " ".join(str(reply.get("error", "")).split())[:400]
        where = f"board {self.board.name!r}"
        if kind == "missing":
            module = reply.get("module") or "a module"
            return ToolchainMissing(f"{where} cannot run this: its Python has no {module} ({text})", stage="verify",
                                    hint=f"install it on the board: {self.board.python} -m pip install {module}")
        if kind == "busy":
            return ToolchainMissing(f"{where} is busy: {text}", stage="verify",
                                    hint="one run at a time per board; wait, or raise lock_wait in the inventory")
        if kind == "load":
            return ToolchainFailed(f"{where} could not load the model: {text}", stage="verify")
        if kind == "run":
            return ToolchainFailed(f"{where} failed running {op}: {text}", stage="verify")
        return ToolchainFailed(f"{where} refused {op}: {text}", stage="verify")

    # -- the content-addressed cache ------------------------------------------------------------------------------
    def ensure_blobs(self, blobs: dict[str, Path | bytes]) -> None:
        """Send what the board's cache lacks (sha256 -> file or bytes); count what was sent and what was there."""
        sizes = {sha: (len(v) if isinstance(v, bytes) else v.stat().st_size) for sha, v in blobs.items()}
        missing = self.request({"op": "have", "blobs": sizes})[0]["missing"]
        self.sent["files_cached"] += len(blobs) - len(missing)
        for sha in missing:
            if sha not in blobs:
                raise ToolchainFailed(f"board {self.board.name!r} asked for a blob it was not offered", stage="verify")
            src = blobs[sha]
            self.request({"op": "put", "sha256": sha}, src if isinstance(src, bytes) else _chunks(src),
                         size=sizes[sha])
            self.sent["files_sent"] += 1
            self.sent["bytes_sent"] += sizes[sha]


def _chunks(path: Path) -> Iterable[bytes]:
    with open(path, "rb") as f:
        while True:
            chunk = f.read(CHUNK)
            if not chunk:
                return
            yield chunk
