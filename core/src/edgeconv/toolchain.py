"""Isolated toolchain environments: a vendor toolchain in a virtual environment of its own.

Some vendor toolchains cannot share a Python with edgeconv (tpu-mlir needs Python 3.10 exactly and pins numpy,
protobuf and onnx versions that clash with TensorFlow and OpenVINO). A plugin *declares* such an environment with a
``Toolchain`` record (``register_toolchains`` hook): its Python version, pinned requirements, post-install fixes and
a check. Nothing is installed implicitly: the user builds it with ``edgeconv toolchain install NAME``, into

    $EDGECONV_TOOLCHAINS/NAME            (default: ${XDG_CACHE_HOME:-~/.cache}/edgeconv/toolchains/NAME)

The build is reproducible and atomic: a staging folder beside the final one gets a venv, ``pip install`` with the
pins (``--report`` records every installed file's version, URL and sha256), the fixes, the check; the state file
``edgeconv-toolchain.json`` is written last and the staging folder is renamed into place. A failure (or Ctrl-C)
removes the staging folder: nothing half-made remains (the pip log is kept beside it as ``NAME.install.log``).

A plugin runs its vendor steps in the environment as subprocesses (``ToolchainEnv.run``: an argument list, never a
shell), exchanging files (``.onnx``, ``.npz``) with it. A user-provided environment or container replaces the cache
one through the setting ``EDGECONV_TOOLCHAIN_<NAME>``: the path of a Python, or a command line that ends with one
(``docker run --rm -v /tmp:/tmp IMAGE python3``). This module imports only the standard library.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from . import worker
from .errors import BadInput, ToolchainFailed, ToolchainMissing
from .worker import python_argv

SCHEMA = "edgeconv.toolchain/1"
STATE_FILE = "edgeconv-toolchain.json"
MOVED_ASIDE = "edgeconv-moved-aside"
ENV_DIR = "EDGECONV_TOOLCHAINS"

__all__ = ["MoveAside", "OptionalImport", "Toolchain", "ToolchainEnv", "env_path", "find_python", "install",
           "install_hint", "is_ready", "plan", "remove", "resolve", "status", "toolchains_dir"]


# -- the records a plugin registers -------------------------------------------------------------------------------
@dataclass(frozen=True)
class MoveAside:
    """Post-install fix: move installed files (glob patterns relative to site-packages) into
    ``<env>/edgeconv-moved-aside/`` -- e.g. system libraries a wheel bundles that shadow the host's."""

    patterns: tuple[str, ...]
    reason: str
    kind: str = "move_aside"


@dataclass(frozen=True)
class OptionalImport:
    """Post-install fix: in these files (relative to site-packages), the module-level line ``import MODULE`` becomes
    an import that may fail (the name is then ``None``). For a package imported at the top of a vendor module but
    used only on paths the plugin never takes; the file's sha256 before and after is recorded in the state."""

    module: str
    files: tuple[str, ...]
    reason: str
    kind: str = "optional_import"


Fix = MoveAside | OptionalImport


@dataclass(frozen=True)
class Toolchain:
    """An isolated environment a plugin declares (one row of ``edgeconv toolchain list``).

    ``requirements`` are pinned (``name==version``) and installed in one ``pip install``; ``constraints`` pin every
    other distribution the resolver pulls in (the full lock: the same versions on every build). ``check`` are the
    arguments given to the environment's Python after the fixes (e.g. ``("-c", "import vendor")``): it must exit 0.
    ``packages`` are the distributions whose versions ``toolchain list`` shows.
    """

    name: str
    title: str
    python: str  # "3.10": the major.minor the environment must have
    requirements: tuple[str, ...]
    constraints: tuple[str, ...] = ()
    fixes: tuple[Fix, ...] = ()
    check: tuple[str, ...] = ()
    packages: tuple[str, ...] = ()
    pip_args: tuple[str, ...] = ()
    description: str = ""
    # Filled in by the plugin manager: who registered it.
    plugin: str = ""
    dist: str = ""

    @property
    def setting(self) -> str:
        """The environment variable naming a user-provided Python or container command."""
        return "EDGECONV_TOOLCHAIN_" + re.sub(r"[^A-Za-z0-9]", "_", self.name).upper()

    def spec(self) -> dict[str, Any]:
        return {"name": self.name, "python": self.python, "requirements": list(self.requirements),
                "constraints": list(self.constraints), "pip_args": list(self.pip_args),
                "fixes": [asdict(f) for f in self.fixes], "check": list(self.check)}

    def spec_hash(self) -> str:
        import hashlib
        return hashlib.sha256(json.dumps(self.spec(), sort_keys=True).encode()).hexdigest()


def install_hint(name: str) -> str:
    return f"edgeconv toolchain install {name}"


# -- where ------------------------------------------------------------------------------------------------------------
def toolchains_dir() -> Path:
    given = os.environ.get(ENV_DIR)
    if given:
        return Path(given).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache).expanduser() / "edgeconv" / "toolchains"


def env_path(name: str) -> Path:
    return toolchains_dir() / name


def env_python(env: Path) -> Path:
    return env / "bin" / "python"


def read_state(name: str) -> dict[str, Any] | None:
    try:
        data = json.loads((env_path(name) / STATE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("schema") == SCHEMA else None


def _setting(tc: Toolchain) -> list[str] | None:
    value = os.environ.get(tc.setting, "").strip()
    if not value:
        return None
    if Path(value).expanduser().is_file():
        return [str(Path(value).expanduser())]
    try:
        return shlex.split(value)
    except ValueError:
        return [value]


# -- state ------------------------------------------------------------------------------------------------------------
def _cheap_state(tc: Toolchain) -> tuple[str, str]:
    """(state, reason) without running anything: missing / ready / broken."""
    import shutil

    setting = _setting(tc)
    if setting is not None:
        exe = setting[0]
        found = Path(exe).is_file() if os.sep in exe else shutil.which(exe) is not None
        return ("ready", "") if found else ("broken", f"{tc.setting}: {exe} not found")
    env = env_path(tc.name)
    if not env.exists():
        return "missing", "not installed"
    state = read_state(tc.name)
    if state is None:
        return "broken", f"{env} has no readable {STATE_FILE} (not built by edgeconv, or damaged)"
    if state.get("spec_hash") != tc.spec_hash():
        return "broken", f"built from another specification than {tc.dist or tc.plugin or 'the plugin'} declares now"
    if not env_python(env).exists():
        return "broken", f"{env_python(env)} is missing (its base Python {state.get('python', {}).get('base')} removed?)"
    return "ready", ""


def is_ready(tc: Toolchain) -> bool:
    """The cheap check behind ``Requirement(toolchains=...)``: no subprocess, no import."""
    return _cheap_state(tc)[0] == "ready"


def status(tc: Toolchain, *, deep: bool = False) -> dict[str, Any]:
    """What ``toolchain list`` and ``doctor`` show. ``deep`` also runs the check in the environment."""
    state, reason = _cheap_state(tc)
    setting = _setting(tc)
    out: dict[str, Any] = {"name": tc.name, "title": tc.title, "state": state, "reason": reason or None,
                           "python": tc.python, "provider": tc.dist or tc.plugin, "setting": tc.setting}
    if setting is not None:
        out.update(source="setting", command=setting)
    else:
        out.update(source="cache", path=str(env_path(tc.name)))
        st = read_state(tc.name)
        if st is not None:
            out.update(python=st.get("python", {}).get("version", tc.python), size_bytes=st.get("size_bytes"),
                       created=st.get("created"), build_seconds=st.get("build_seconds"),
                       versions={p: st.get("packages", {}).get(_key(p), {}).get("version") for p in tc.packages})
    if state == "missing":
        out["hint"] = install_hint(tc.name)
    elif state == "broken":
        out["hint"] = f"{install_hint(tc.name)} --force" if setting is None else f"fix or unset {tc.setting}"
    if deep and state == "ready" and tc.check:
        env = ToolchainEnv(tc, setting or [str(env_python(env_path(tc.name)))], "setting" if setting else "cache")
        try:
            res = env.run(list(tc.check), timeout=300)
        except (ToolchainMissing, ToolchainFailed) as exc:
            res = {"ok": False, "output": exc.cause, "seconds": 0.0}
        out["check"] = {"ok": res["ok"], "seconds": res["seconds"]}
        if not res["ok"]:
            out["state"], out["reason"] = "broken", f"the check failed: {_tail(res['output'])}"
            out["hint"] = f"{install_hint(tc.name)} --force" if setting is None else f"fix or unset {tc.setting}"
    return out


def _key(dist: str) -> str:
    return re.sub(r"[-_.]+", "-", dist).lower()


def _tail(text: str, n: int = 300) -> str:
    lines = [ln.strip() for ln in (text or "").strip().splitlines() if ln.strip()]
    return " | ".join(lines[-2:])[:n] or "no output"


# -- running in the environment ---------------------------------------------------------------------------------------
@dataclass
class ToolchainEnv:
    """A ready environment: ``argv`` is the Python to run (``[".../bin/python"]`` or a container command)."""

    toolchain: Toolchain
    argv: list[str]
    source: str  # "cache" | "setting"
    state: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.toolchain.name

    def describe(self) -> str:
        where = shlex.join(self.argv) if self.source == "setting" else str(env_path(self.name))
        return f"{self.name} ({self.source}: {where})"

    def environ(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        """What the environment's processes add to a child's environment (``worker.child_env``): the environment's
        ``bin`` first on PATH (tools start ``python3`` scripts), its ``VIRTUAL_ENV``; the caller's
        ``LD_LIBRARY_PATH`` is not passed on (the environment brings its own libraries)."""
        env = {"LD_LIBRARY_PATH": ""}
        exe = self.argv[0]
        if self.source == "cache":
            root = env_path(self.name)
            env["VIRTUAL_ENV"] = str(root)
            env["PATH"] = os.pathsep.join([str(root / "bin"), os.environ.get("PATH", "")])
        elif len(self.argv) == 1 and os.sep in exe:
            env["PATH"] = os.pathsep.join([str(Path(exe).parent), os.environ.get("PATH", "")])
        env.update(extra or {})
        return env

    def command(self, args: list[str]) -> list[str]:
        """The environment's Python, isolated (``-I``: nothing from the working folder or ``PYTHON*``), on ``args``."""
        return python_argv(self.argv, args=args)

    def run(self, args: list[str], *, cwd: str | Path | None = None, timeout: float | None = None,
            log: Path | None = None, env: dict[str, str] | None = None) -> dict[str, Any]:
        """Run the environment's Python with ``args`` (``edgeconv.worker.run``: isolated, no shell, a scratch
        folder unless ``cwd``). Returns ok, returncode, output (stdout+stderr), seconds, argv, log. A missing
        interpreter is ``ToolchainMissing`` (exit 3); a timeout ``ToolchainFailed`` (exit 4)."""
        what = f"{Path(str(args[0])).name if args else 'python'} in toolchain {self.name}"
        try:
            done = worker.run(self.command(args), timeout=timeout, cwd=cwd, env=self.environ(env), what=what, log=log)
        except ToolchainMissing as exc:
            exc.cause, exc.hint = f"toolchain {self.describe()}: {exc.cause}", install_hint(self.name)
            raise
        except ToolchainFailed as exc:
            exc.cause += f" (log: {log})" if log else ""
            raise
        return {"ok": done.ok, "returncode": done.returncode, "output": done.output, "argv": done.argv,
                "seconds": done.seconds, "log": str(log) if log else None}

    def worker(self, args: list[str], *, what: str, cwd: str | Path | None = None, owns_cwd: bool = False,
               env: dict[str, str] | None = None) -> worker.Worker:
        """A long-lived child in the environment serving JSON-line requests (``edgeconv.worker.Worker``); call
        ``start(timeout)`` on it. ``owns_cwd``: ``close()`` removes ``cwd``."""
        return worker.Worker(self.command(args), what=what, env=self.environ(env), cwd=Path(cwd) if cwd else None,
                             owns_cwd=owns_cwd)


def resolve(tc: Toolchain) -> ToolchainEnv:
    """The environment to run in, or a one-line error: ``ToolchainMissing`` (exit 3) naming the install command.
    ``tc`` is the plugin's own ``Toolchain`` record (the one it registers)."""
    name = tc.name
    state, reason = _cheap_state(tc)
    setting = _setting(tc)
    if state == "missing":
        raise ToolchainMissing(f"the {tc.title} toolchain environment is not installed (nothing is installed "
                               f"implicitly); install it with: {install_hint(name)}", stage="toolchain",
                               hint=f"or set {tc.setting} to a Python that has it")
    if state == "broken":
        fix = f"{install_hint(name)} --force" if setting is None else f"fix or unset {tc.setting}"
        raise ToolchainMissing(f"the {tc.title} toolchain environment is broken: {reason}", stage="toolchain",
                               hint=fix)
    if setting is not None:
        return ToolchainEnv(tc, setting, "setting")
    return ToolchainEnv(tc, [str(env_python(env_path(name)))], "cache", read_state(name) or {})


# -- building ---------------------------------------------------------------------------------------------------------
def _python_version(exe: str) -> str | None:
    import subprocess
    try:
        out = subprocess.run([exe, "-c", "import sys; print('%d.%d.%d' % sys.version_info[:3])"],
                             capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def find_python(version: str, given: str | None = None) -> tuple[str, str]:
    """(path, full version) of a Python ``version`` (major.minor): ``given``, else ``pythonX.Y`` on PATH, else
    pyenv's ``versions/X.Y.*``, else /usr/bin and /usr/local/bin."""
    import shutil
    if given:
        full = _python_version(given)
        if full is None:
            raise BadInput("not a runnable Python", file=given, stage="toolchain")
        if not (full + ".").startswith(version + "."):
            raise BadInput(f"this is Python {full}; the toolchain needs Python {version}", file=given,
                           stage="toolchain")
        return given, full
    candidates: list[str] = []
    on_path = shutil.which(f"python{version}")
    if on_path:
        candidates.append(on_path)
    pyenv = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv") / "versions"
    if pyenv.is_dir():
        for d in sorted(pyenv.glob(f"{version}.*"), key=lambda p: [int(x) if x.isdigit() else 0
                                                                   for x in p.name.split(".")], reverse=True):
            candidates.append(str(d / "bin" / f"python{version}"))
    candidates += [f"/usr/local/bin/python{version}", f"/usr/bin/python{version}"]
    for exe in candidates:
        if Path(exe).is_file():
            full = _python_version(exe)
            if full and (full + ".").startswith(version + "."):
                return exe, full
    raise ToolchainMissing(f"no Python {version} found (looked for python{version} on PATH, in pyenv and /usr/bin)",
                           stage="toolchain", hint=f"install Python {version} (e.g. pyenv install {version}, or "
                                                   f"apt-get install python{version}-venv) or give --python PATH")


@dataclass
class Plan:
    """What ``install`` will do, in order (``--dry-run`` prints it)."""

    toolchain: Toolchain
    python: str
    python_version: str
    target: Path
    steps: list[tuple[str, list[str]]]  # (what, argv with STAGING for the staging folder)

    def to_dict(self) -> dict[str, Any]:
        return {"toolchain": self.toolchain.name, "python": self.python, "python_version": self.python_version,
                "target": str(self.target), "spec_hash": self.toolchain.spec_hash(),
                "steps": [{"step": what, "argv": argv} for what, argv in self.steps],
                "fixes": [asdict(f) for f in self.toolchain.fixes]}


STAGING = "<staging>"


def plan(tc: Toolchain, python: str | None = None) -> Plan:
    exe, full = find_python(tc.python, python)
    py = f"{STAGING}/bin/python"
    pip = [py, "-m", "pip", "install", "--no-input", "--disable-pip-version-check", "--no-warn-script-location"]
    steps: list[tuple[str, list[str]]] = [("create the virtual environment",
                                            [exe, "-m", "venv", "--prompt", tc.name, STAGING])]
    install_argv = [*pip, "--report", f"{STAGING}/edgeconv-pip-report.json", *tc.pip_args]
    if tc.constraints:
        install_argv += ["--constraint", f"{STAGING}/edgeconv-constraints.txt"]
    if tc.requirements:
        steps.append((f"pip install {len(tc.requirements)} pinned requirement(s)"
                      + (f" ({len(tc.constraints)} pins in the lock)" if tc.constraints else ""),
                      [*install_argv, *tc.requirements]))
    for fix in tc.fixes:
        steps.append((f"fix ({fix.kind}): {fix.reason}", []))
    if tc.check:
        steps.append(("check", [py, *tc.check]))
    return Plan(tc, exe, full, env_path(tc.name), steps)


Progress = Callable[[str], None]


def _du(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for f in files:
            with contextlib.suppress(OSError):
                st = os.lstat(os.path.join(root, f))
                total += st.st_size
    return total


def _stream(argv: list[str], log, progress: Progress, env: dict[str, str], cwd: Path) -> int:
    """Run a build step (no shell), its output appended to the log; pip's notable lines go to ``progress``."""
    import subprocess
    log.write(f"\n# {shlex.join(argv)}\n")
    log.flush()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace",
                            env=env, cwd=str(cwd), shell=False)
    assert proc.stdout is not None
    try:
        for line in proc.stdout:
            log.write(line)
            s = line.strip()
            if s.startswith(("Collecting", "Downloading", "Building", "Installing", "Successfully", "ERROR")):
                progress(s[:120])
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    return proc.wait()


def _site_packages(env: Path) -> Path:
    found = sorted(env.glob("lib/python*/site-packages"))
    if not found:
        raise ToolchainFailed(f"no site-packages in {env}", stage="toolchain")
    return found[0]


def _apply_fix(fix: Fix, env: Path) -> dict[str, Any]:
    import hashlib
    site = _site_packages(env)
    if isinstance(fix, MoveAside):
        moved = []
        aside = env / MOVED_ASIDE
        for pattern in fix.patterns:
            matches = sorted(p for p in site.glob(pattern) if p.is_file() or p.is_symlink())
            for p in matches:
                rel = p.relative_to(site)
                dest = aside / rel
                dest.parent.mkdir(parents=True, exist_ok=True)
                os.replace(p, dest)
                moved.append(str(rel))
        if not moved:
            raise ToolchainFailed(f"fix move_aside: nothing matches {', '.join(fix.patterns)} in {site} (the "
                                  "package changed? the plugin's toolchain specification needs updating)",
                                  stage="toolchain")
        return {"kind": fix.kind, "reason": fix.reason, "moved_to": MOVED_ASIDE, "moved": moved}
    if isinstance(fix, OptionalImport):
        line = f"import {fix.module}\n"
        patched = []
        for rel in fix.files:
            path = site / rel
            try:
                text = path.read_text(encoding="utf-8")
            except OSError as exc:
                raise ToolchainFailed(f"fix optional_import: cannot read {rel} ({exc.strerror})",
                                      stage="toolchain") from None
            lines = text.splitlines(keepends=True)
            hits = [i for i, ln in enumerate(lines) if ln == line]
            if len(hits) != 1:
                raise ToolchainFailed(f"fix optional_import: {rel} has {len(hits)} module-level '{line.strip()}' "
                                      "lines, expected 1 (the package changed?)", stage="toolchain")
            before = hashlib.sha256(text.encode()).hexdigest()
            lines[hits[0]] = (f"try:  # edgeconv toolchain fix: {fix.module} is optional here\n"
                              f"    import {fix.module}\nexcept ModuleNotFoundError:\n    {fix.module} = None\n")
            new = "".join(lines)
            path.write_text(new, encoding="utf-8")
            patched.append({"file": rel, "line": hits[0] + 1, "sha256_before": before,
                            "sha256_after": hashlib.sha256(new.encode()).hexdigest()})
        return {"kind": fix.kind, "reason": fix.reason, "module": fix.module, "patched": patched}
    raise ToolchainFailed(f"unknown toolchain fix {fix!r}", stage="toolchain")


def _relocate(staging: Path, final: Path) -> int:
    """A venv names its own folder in its scripts' shebangs and activate files: point them at the final folder
    before the rename (``bin/python`` itself is a symlink to the base interpreter and needs nothing)."""
    old, new = str(staging).encode(), str(final).encode()
    changed = 0
    for p in [*sorted((staging / "bin").iterdir()), staging / "pyvenv.cfg"]:
        if p.is_symlink() or not p.is_file():
            continue
        with contextlib.suppress(OSError):
            data = p.read_bytes()
            if old in data and b"\0" not in data[:1024]:
                p.write_bytes(data.replace(old, new))
                changed += 1
    return changed


def _packages(report_file: Path) -> dict[str, dict[str, Any]]:
    """Every installed distribution from pip's ``--report``: version, where it came from, its sha256."""
    try:
        report = json.loads(report_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    out: dict[str, dict[str, Any]] = {}
    for item in report.get("install", []):
        meta = item.get("metadata", {})
        info = item.get("download_info", {})
        archive = info.get("archive_info", {})
        digest = (archive.get("hashes") or {}).get("sha256")
        if not digest and str(archive.get("hash", "")).startswith("sha256="):
            digest = archive["hash"].split("=", 1)[1]
        out[_key(meta.get("name", "?"))] = {"name": meta.get("name"), "version": meta.get("version"),
                                            "url": info.get("url"), "sha256": digest,
                                            "requested": bool(item.get("requested"))}
    return dict(sorted(out.items()))


@contextlib.contextmanager
def _lock(name: str) -> Iterator[None]:
    """One install or removal of ``name`` at a time; the holder removes its lock file when done."""
    import fcntl

    root = toolchains_dir()
    root.mkdir(parents=True, exist_ok=True)
    path = root / f".{name}.lock"
    with open(path, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise BadInput("another edgeconv is installing or removing this toolchain right now",
                           file=root / name, stage="toolchain") from None
        try:
            yield
        finally:
            with contextlib.suppress(OSError):
                if os.fstat(fh.fileno()).st_ino == os.stat(path).st_ino:
                    path.unlink()


def install(tc: Toolchain, *, python: str | None = None, force: bool = False,
            progress: Progress | None = None) -> dict[str, Any]:
    """Build the environment (see the module doc). Returns its state. Already ready and not ``force``: the state."""
    import shutil
    import tempfile

    say = progress or (lambda msg: None)
    final = env_path(tc.name)
    if not force and _cheap_state(tc)[0] == "ready" and _setting(tc) is None:
        return {**(read_state(tc.name) or {}), "already": True}
    p = plan(tc, python)
    started = time.perf_counter()
    root = toolchains_dir()
    failed_log = root / f"{tc.name}.install.log"
    with _lock(tc.name):
        staging = Path(tempfile.mkdtemp(prefix=f".{tc.name}.staging-", dir=root))
        staging.chmod(0o755)
        log_path = root / f".{tc.name}.install-{os.getpid()}.log"
        try:
            with open(log_path, "w", encoding="utf-8") as log:
                state = _build(tc, p, staging, final, log, say, started)
            shutil.copyfile(log_path, staging / "edgeconv-install.log")
            say("moving into place")
            if final.exists():
                old = root / f".{tc.name}.old-{os.getpid()}"
                os.rename(final, old)
                os.rename(staging, final)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.rename(staging, final)
            with contextlib.suppress(OSError):
                failed_log.unlink()
            return state
        except BaseException as exc:
            shutil.rmtree(staging, ignore_errors=True)
            with contextlib.suppress(OSError):
                os.replace(log_path, failed_log)
            if isinstance(exc, ToolchainFailed):
                exc.cause = f"{exc.cause}; nothing was installed (log: {failed_log})"
                exc.hint = exc.hint or _log_hint(failed_log)
            raise
        finally:
            with contextlib.suppress(OSError):
                log_path.unlink()


def _build(tc: Toolchain, p: Plan, staging: Path, final: Path, log, say: Progress, started: float) -> dict[str, Any]:
    import datetime as _dt
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env["PYTHONUNBUFFERED"] = "1"  # pip's lines as they come (progress), not in 8 KB blocks
    sub = lambda argv: [a.replace(STAGING, str(staging)) for a in argv]  # noqa: E731
    for what, argv in p.steps:
        if not argv or what == "check":
            continue
        say(what)
        code = _stream(sub(argv), log, say, env, staging.parent)
        if code != 0:
            raise ToolchainFailed(f"{what} failed (exit {code})", stage="toolchain")
        if argv[1:3] == ["-m", "venv"] and tc.constraints:
            (staging / "edgeconv-constraints.txt").write_text("\n".join(tc.constraints) + "\n")
    fixes = []
    for fix in tc.fixes:
        say(f"fix: {fix.reason}")
        fixes.append(_apply_fix(fix, staging))
        log.write(f"\n# fix {json.dumps(fixes[-1])}\n")
    check: dict[str, Any] = {}
    if tc.check:
        say("checking the environment")
        t0 = time.perf_counter()
        venv_env = {**env, "VIRTUAL_ENV": str(staging), "PYTHONNOUSERSITE": "1",
                    "PATH": os.pathsep.join([str(staging / "bin"), env.get("PATH", "")])}
        code = _stream([str(env_python(staging)), *tc.check], log, lambda m: None, venv_env, staging)
        check = {"argv": list(tc.check), "ok": code == 0, "seconds": round(time.perf_counter() - t0, 3)}
        if code != 0:
            raise ToolchainFailed(f"the environment's check failed (exit {code})", stage="toolchain")
    say("recording versions and hashes")
    packages = _packages(staging / "edgeconv-pip-report.json")
    _relocate(staging, final)
    state = {
        "schema": SCHEMA, "name": tc.name, "title": tc.title, "spec_hash": tc.spec_hash(), "spec": tc.spec(),
        "provider": tc.dist or tc.plugin, "python": {"version": p.python_version, "base": p.python},
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "build_seconds": round(time.perf_counter() - started, 1),
        "packages": packages, "fixes": fixes, "check": check,
        "host": {"platform": sys.platform, "machine": os.uname().machine},
    }
    state["size_bytes"] = _du(staging)
    (staging / STATE_FILE).write_text(json.dumps(state, indent=2) + "\n")
    return state


def _log_hint(log: Path) -> str | None:
    try:
        lines = [ln.strip() for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return None
    errors = [ln for ln in lines if ln.startswith("ERROR") or "Error" in ln]
    return (errors[-1] if errors else (lines[-1] if lines else ""))[:240] or None


def remove(name: str) -> bool:
    """Delete the cache environment ``name`` (renamed aside, then removed). False when absent. Only a folder that
    carries edgeconv's state file is removed: a folder edgeconv did not build (``toolchain list`` says "not built by
    edgeconv") or a symbolic link put there is refused and left alone (a link is not followed)."""
    import shutil

    final = env_path(name)
    if not final.exists() and not final.is_symlink():
        return False
    if final.is_symlink():
        raise BadInput("is a symbolic link, not an environment edgeconv built: remove the link yourself",
                       file=final, stage="toolchain")
    if not (final / STATE_FILE).is_file():
        raise BadInput(f"has no {STATE_FILE}: edgeconv did not build it, so it does not delete it", file=final,
                       stage="toolchain")
    with _lock(name):
        trash = toolchains_dir() / f".{name}.removing-{os.getpid()}"
        os.rename(final, trash)
        shutil.rmtree(trash, ignore_errors=True)
    return True


def stale_folders() -> list[Path]:
    """Staging or half-removed folders a killed run left behind (``toolchain list`` mentions them)."""
    root = toolchains_dir()
    if not root.is_dir():
        return []
    marks = (".staging-", ".old-", ".removing-")
    return sorted(p for p in root.iterdir() if p.name.startswith(".") and any(m in p.name for m in marks))
