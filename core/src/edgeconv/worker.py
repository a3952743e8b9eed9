"""Child processes, one way: an isolated interpreter, a scratch working folder, an explicit environment, a timeout,
clean errors, and nothing left behind.

Every child edgeconv starts goes through here: the peak-memory probe, a vendor toolchain's environment (tpu-mlir,
rknn-toolkit2), a conversion worker (onnx2tf), a bridge that keeps a simulator loaded, a vendor compiler (trtexec,
atc). What a child must never do is pick up code from the user's folder: a ``json.py`` or ``subprocess.py`` beside
the model, a ``*.dist-info`` there, ``PYTHONPATH``/``PYTHONSTARTUP`` from the caller's shell. So:

- a Python child runs with ``-I`` (isolated: the script's folder and the working folder are not on ``sys.path``,
  ``PYTHON*`` variables and the user's site-packages are ignored; editable installs still work through the
  environment's own ``.pth`` files);
- its working folder is a fresh scratch folder (never the caller's), removed afterwards unless the caller owns it;
- its environment is the caller's minus every ``PYTHON*`` variable and ``LD_PRELOAD``, plus what the caller adds;
- no shell: an argument list, always;
- a timeout kills the whole process group (a child's own children too);
- a missing executable is ``ToolchainMissing`` (exit 3), a timeout or a crash ``ToolchainFailed`` (exit 4), both one
  line naming what ran.

This module imports only the standard library.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from .errors import ToolchainFailed, ToolchainMissing

# Variables a child never inherits: they would run code or move imports (PYTHONSTARTUP, PYTHONPATH, ...) or load a
# library into every process (LD_PRELOAD).
_DROPPED_PREFIXES = ("PYTHON",)
_DROPPED = {"LD_PRELOAD", "VIRTUAL_ENV", "__PYVENV_LAUNCHER__"}


def child_env(extra: Mapping[str, str] | None = None, *, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a child: ``base`` (default the caller's) without ``PYTHON*``/``LD_PRELOAD``, plus
    ``extra`` (which may set ``PYTHON*`` variables the child needs, e.g. ``PYTHONUNBUFFERED``)."""
    env = {k: v for k, v in (os.environ if base is None else base).items()
           if not k.startswith(_DROPPED_PREFIXES) and k not in _DROPPED}
    env["PYTHONNOUSERSITE"] = "1"
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.update(extra or {})
    return env


def python_argv(python: str | Sequence[str] | None = None, *, module: str | None = None,
                script: str | Path | None = None, args: Sequence[Any] = ()) -> list[str]:
    """``[python, "-I", ...]``: run ``module`` (``-m``) or ``script`` isolated. ``python`` is an interpreter path,
    or a command line that ends with one (a container: ``["docker", "run", ..., "python3"]``); default this one."""
    if module is not None and script is not None:
        raise ValueError("give module or script, not both")
    base = [sys.executable] if python is None else ([python] if isinstance(python, str) else list(python))
    argv = [*base, "-I"]
    if module is not None:
        argv += ["-m", module]
    elif script is not None:
        argv.append(str(script))
    return argv + [str(a) for a in args]


@dataclass
class Completed:
    argv: list[str]
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def tail(self, lines: int = 2, width: int = 300) -> str:
        """The last lines of the output, on one line (for an error message)."""
        kept = [ln.strip() for ln in self.output.strip().splitlines() if ln.strip()]
        return " | ".join(kept[-lines:])[:width] or "no output"


@contextlib.contextmanager
def scratch_dir(cwd: str | Path | None = None, prefix: str = "edgeconv-child-") -> Iterator[Path]:
    """``cwd`` when given (the caller owns it), else a fresh folder removed afterwards."""
    if cwd is not None:
        yield Path(cwd)
        return
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _name(argv: Sequence[str], what: str | None) -> str:
    return what or Path(str(argv[0])).name


def kill_group(proc: subprocess.Popen) -> None:
    """Kill ``proc`` and every process it started (it leads its own process group)."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(Exception):
        proc.kill()
    with contextlib.suppress(Exception):
        proc.wait(timeout=10)


def run(argv: Sequence[Any], *, timeout: float | None, cwd: str | Path | None = None,
        env: Mapping[str, str] | None = None, input: str | None = None, what: str | None = None,
        log: Path | None = None, check: bool = False) -> Completed:
    """Run ``argv`` to completion (no shell) in ``cwd`` (default: a scratch folder) with ``child_env(env)``.

    ``check``: a non-zero exit is ``ToolchainFailed`` naming ``what`` and the output's last lines. ``log``: the
    command line and its output are written there too (for a failure's hint and for --debug)."""
    argv = [str(a) for a in argv]
    started = time.perf_counter()
    with scratch_dir(cwd) as folder:
        try:
            proc = subprocess.Popen(argv, cwd=str(folder), env=child_env(env), shell=False, text=True,
                                    errors="replace", stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        except FileNotFoundError:
            raise ToolchainMissing(f"{_name(argv, what)}: {argv[0]} not found", stage="toolchain") from None
        except PermissionError:
            raise ToolchainMissing(f"{_name(argv, what)}: {argv[0]} is not executable", stage="toolchain") from None
        try:
            out, err = proc.communicate(input=input, timeout=timeout)
        except subprocess.TimeoutExpired:
            kill_group(proc)
            out, err = proc.communicate()
            _write_log(log, argv, (out or "") + (err or ""))
            raise ToolchainFailed(f"{_name(argv, what)} did not finish within {timeout:g} s (stopped)",
                                  stage="toolchain") from None
        except BaseException:  # Ctrl-C: the child and its children go too
            kill_group(proc)
            raise
    done = Completed(argv, proc.returncode, out or "", err or "", round(time.perf_counter() - started, 3))
    _write_log(log, argv, done.output)
    if check and not done.ok:
        raise ToolchainFailed(f"{_name(argv, what)} failed ({describe_exit(done.returncode)}): {done.tail()}",
                              stage="toolchain")
    return done


def _write_log(log: Path | None, argv: Sequence[str], text: str) -> None:
    if log is not None:
        import shlex

        log.write_text("# " + shlex.join(argv) + "\n" + text, encoding="utf-8", errors="replace")


def describe_exit(code: int) -> str:
    """``exit 3``, or ``killed by SIGSEGV`` for a negative return code."""
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit {code}"


@dataclass
class Worker:
    """A long-lived child that serves requests, one JSON line in and one JSON line out (arrays cross as files in
    its scratch folder). ``start`` waits for the child's first line (its hello); ``request`` sends one message and
    waits for the reply with a timeout; ``close`` ends it (and its process group) and removes the scratch folder.

    The child's stderr goes to a log file in the scratch folder: its last lines name the cause when it dies.
    """

    argv: list[str]
    what: str
    env: Mapping[str, str] | None = None
    cwd: Path | None = None  # default: a fresh scratch folder, removed by close()
    owns_cwd: bool = False  # close() removes a given cwd too
    proc: subprocess.Popen | None = None
    folder: Path | None = None
    _log: IO[bytes] | None = None
    calls: int = 0
    hello: dict[str, Any] = field(default_factory=dict)

    def start(self, timeout: float) -> dict[str, Any]:
        if self.cwd is None:
            self.cwd, self.owns_cwd = Path(tempfile.mkdtemp(prefix="edgeconv-worker-")), True
        self.folder = Path(self.cwd)
        self._log = open(self.folder / "worker.log", "w+b")  # noqa: SIM115 - closed in close()
        try:
            self.proc = subprocess.Popen([str(a) for a in self.argv], cwd=str(self.folder), env=child_env(self.env),
                                         shell=False, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=self._log, start_new_session=True)
        except FileNotFoundError:
            self.close()
            raise ToolchainMissing(f"{self.what}: {self.argv[0]} not found", stage="toolchain") from None
        self.hello = self._read(timeout, "start")
        return self.hello

    def request(self, message: dict[str, Any], timeout: float) -> dict[str, Any]:
        if self.proc is None or self.proc.poll() is not None:
            self._died("before the request")
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write((json.dumps(message) + "\n").encode())
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            self._died("while receiving a request")
        self.calls += 1
        return self._read(timeout, message.get("op", "request"))

    def _read(self, timeout: float, doing: str) -> dict[str, Any]:
        import select

        assert self.proc is not None and self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                kill_group(self.proc)
                raise ToolchainFailed(f"{self.what} did not answer within {timeout:g} s ({doing}); stopped; "
                                      f"{self.log_tail()}", stage="verify")
            ready, _, _ = select.select([self.proc.stdout], [], [], min(left, 1.0))
            if ready:
                line = self.proc.stdout.readline()
                if not line:
                    self._died(f"during {doing}")
                try:
                    reply = json.loads(line)
                except ValueError:
                    continue  # a library printed on stdout: not a reply
                if isinstance(reply, dict):
                    return reply
            elif self.proc.poll() is not None:
                self._died(f"during {doing}")

    def _died(self, when: str) -> None:
        code = self.proc.poll() if self.proc is not None else None
        how = describe_exit(code) if code is not None else "gone"
        raise ToolchainFailed(f"{self.what} ended {when} ({how}): {self.log_tail()}", stage="verify")

    def log_tail(self, lines: int = 3) -> str:
        if self._log is None:
            return "no log"
        self._log.flush()
        self._log.seek(0)
        text = self._log.read().decode(errors="replace")
        kept = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
        return " | ".join(kept[-lines:])[:400] or "no output"

    def close(self) -> None:
        if self.proc is not None:
            with contextlib.suppress(Exception):
                if self.proc.poll() is None and self.proc.stdin is not None:
                    self.proc.stdin.write(b'{"op": "quit"}\n')
                    self.proc.stdin.flush()
                    self.proc.wait(timeout=5)
            kill_group(self.proc)
            self.proc = None
        if self._log is not None:
            self._log.close()
            self._log = None
        if self.owns_cwd and self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None
