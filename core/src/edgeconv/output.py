"""Where edgeconv writes, and the promises it keeps there (docs/security.md):

- an output folder appears complete or not at all: it is built in a staging folder beside it and renamed into
  place at the end; any failure (SIGINT/SIGTERM included) removes the staging folder;
- it is never replaced without ``--force``, and with ``--force`` only when it is an edgeconv output (it holds an
  edgeconv manifest): ``-o ~/Documents --force`` does not empty your documents;
- it is never one of the run's inputs, inside one, or holding one (``-o .`` in the model's folder, ``-o`` equal to
  the calibration folder): that is refused before any work, with or without ``--force``;
- one run at a time writes one output: a lock file beside it, which only its holder removes; the holder checks it
  still holds the lock (and re-checks the rules above) just before the final rename;
- a single file edgeconv writes (an HTML or JSON report) is written to a temporary file and renamed, never over an
  existing file without ``--force``, never over an input.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

from .errors import BadInput
from .report import MANIFEST_SCHEMA


def _inside(child: Path, parent: Path) -> bool:
    return child == parent or parent in child.parents


def _real(path: Path) -> Path:
    try:
        return Path(os.path.realpath(path))
    except (OSError, ValueError):
        return Path(os.path.abspath(path))


def check_not_an_input(out: Path, inputs: Sequence[Path], *, what: str = "the output folder") -> None:
    """``out`` is none of ``inputs``, not inside one (a SavedModel folder, an image folder) and holds none."""
    real = _real(out)
    for src in inputs:
        s = _real(src)
        if real == s:
            raise BadInput(f"{what} is the input {src} itself; choose another -o", file=out, stage="output")
        if _inside(real, s):
            raise BadInput(f"{what} is inside the input {src}; choose another -o", file=out, stage="output")
        if _inside(s, real):
            raise BadInput(f"{what} holds the input {src}: replacing it would delete the input; choose another -o",
                           file=out, stage="output")


def is_edgeconv_output(folder: Path) -> bool:
    """A folder edgeconv made: it holds an edgeconv manifest (or, for a matrix/demo folder, only such folders)."""
    manifest = folder / "manifest.json"
    try:
        data = json.loads(manifest.read_text(encoding="utf-8"))
        return isinstance(data, dict) and data.get("schema") == MANIFEST_SCHEMA
    except (OSError, ValueError):
        return False


def check_output(out: Path, force: bool, inputs: Sequence[Path] = ()) -> None:
    """The rules of the module doc, before any work starts."""
    check_not_an_input(out, inputs)
    if out.is_symlink():
        raise BadInput("the output path is a symbolic link; edgeconv writes a folder of its own", file=out,
                       stage="output")
    if out.exists() and not out.is_dir():
        raise BadInput("the output path is a file; edgeconv writes a folder", file=out, stage="output")
    if out.exists() and any(out.iterdir()):
        if not force:
            raise BadInput("the output folder exists; give --force to replace it", file=out, stage="output")
        if not is_edgeconv_output(out):
            raise BadInput("the output folder exists and is not an edgeconv output (no edgeconv manifest.json in "
                           "it): --force replaces only edgeconv's own folders; choose another -o", file=out,
                           stage="output")


class _Lock:
    """An exclusive, non-blocking lock on ``.NAME.lock`` beside the output. Only the holder removes the file, and
    it holds the lock only while the path still names the file it locked (a holder that removed it and a newcomer
    that made a new one cannot both believe they hold it)."""

    def __init__(self, out: Path) -> None:
        self.path = out.parent / f".{out.name}.lock"
        self.fh = None

    def acquire(self) -> None:
        import fcntl

        for _ in range(3):
            try:
                fh = open(self.path, "a+")  # noqa: SIM115 - held until release()
            except OSError as exc:
                raise BadInput(f"cannot write to the output folder ({exc.strerror})", file=self.path.parent,
                               stage="output") from None
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                fh.close()
                raise BadInput("another edgeconv run is writing this output right now", file=self.path.parent /
                               self.path.name[1:-5], stage="output") from None
            if self._same(fh):
                self.fh = fh
                return
            fh.close()  # the holder before us removed it after we opened it: take the new one
        raise BadInput("the output's lock file keeps changing; another run is writing it", file=self.path,
                       stage="output")

    def _same(self, fh) -> bool:
        try:
            return os.fstat(fh.fileno()).st_ino == os.stat(self.path).st_ino
        except OSError:
            return False

    def held(self) -> bool:
        return self.fh is not None and self._same(self.fh)

    def release(self) -> None:
        if self.fh is None:
            return
        if self._same(self.fh):
            with contextlib.suppress(OSError):
                self.path.unlink()
        self.fh.close()
        self.fh = None


@contextlib.contextmanager
def staged(out: Path, force: bool, inputs: Sequence[Path] = ()) -> Iterator[Path]:
    """Yield a temporary folder beside ``out``; on success rename it to ``out`` (the module doc's rules)."""
    out = out.absolute()
    check_output(out, force, inputs)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BadInput(f"cannot write to the output folder ({exc.strerror})", file=out.parent, stage="output") from None
    lock = _Lock(out)
    lock.acquire()
    try:
        check_output(out, force, inputs)
        try:
            staging = _mkstaging(out)
            yield staging
            if not lock.held():
                raise BadInput("the output's lock was taken away while this run was writing; nothing was replaced",
                               file=out, stage="output")
            check_output(out, force, inputs)
            _swap(staging, out)
        except BaseException:
            # Under the lock every staging folder of this output is this run's (or a crashed run's): remove them
            # all, so that a signal landing between mkdtemp and the yield cannot leave one behind.
            for stale in out.parent.glob(f".{glob.escape(out.name)}.tmp-*"):
                shutil.rmtree(stale, ignore_errors=True)
            raise
    finally:
        lock.release()


def _mkstaging(out: Path) -> Path:
    try:
        staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
        umask = os.umask(0)
        os.umask(umask)
        staging.chmod(0o777 & ~umask)  # mkdtemp makes it 0700; the output is an ordinary folder
    except OSError as exc:
        raise BadInput(f"cannot write to the output folder ({exc.strerror})", file=out.parent, stage="output") from None
    return staging


def _swap(staging: Path, out: Path) -> None:
    if out.exists():
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        os.rename(out, old)
        os.rename(staging, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(staging, out)


def write_file(path: Path, text: str, *, force: bool = False, inputs: Sequence[Path] = (), what: str = "the report") -> Path:
    """Write one file atomically (a temporary file beside it, renamed): never over an existing file without
    ``force``, never over one of ``inputs`` (or a folder)."""
    path = Path(path).absolute()
    for src in inputs:
        if _real(path) == _real(src):
            raise BadInput(f"{what} would overwrite the input {src}; choose another path", file=path, stage="output")
    if path.is_dir():
        raise BadInput(f"{what} path is a folder", file=path, stage="output")
    if path.exists() and not force:
        raise BadInput(f"{what} file exists; give --force to replace it", file=path, stage="output")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(text)
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
    except OSError as exc:
        raise BadInput(f"cannot write {what} ({exc.strerror})", file=path, stage="output") from None
    return path
