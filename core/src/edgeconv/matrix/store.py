"""A content-addressed store (sha256) for a matrix's inputs and outputs; it outlives the driver.

Layout of a store folder::

    blobs/ab/abcdef...      one file's bytes, named by their sha256 (written to a temporary name, then renamed)
    results/<cell key>.json a finished cell's record, with ``artifacts``: {relative path: sha256} of its output

On Ray, the store is a folder on the head node served by one named, detached actor (``StoreService``: the bytes
ride Ray's object store between it and the nodes), or -- with ``--store PATH`` -- a folder every node mounts,
which nodes and driver then read and write directly. Because it is keyed by content and survives the driver, a
driver that died after cells finished loses nothing: the next run finds their results by cell key.

A node keeps the inputs it fetched in a local cache of the same shape (``node_cache()``), so a model is sent to a
node once, not once per cell. This module imports only the standard library (Ray only inside functions).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

SHA_RE = re.compile(r"[0-9a-f]{64}")
KEY_RE = SHA_RE
CHUNK = 1 << 20


def default_root() -> Path:
    """``$EDGECONV_MATRIX_STORE``, else ``${XDG_CACHE_HOME:-~/.cache}/edgeconv/matrix-store``."""
    given = os.environ.get("EDGECONV_MATRIX_STORE")
    if given:
        return Path(given)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "edgeconv" / "matrix-store"


def node_cache() -> Path:
    """This node's cache of fetched inputs (``$EDGECONV_MATRIX_CACHE``, else beside the default store)."""
    given = os.environ.get("EDGECONV_MATRIX_CACHE")
    return Path(given) if given else default_root().parent / "matrix-cache"


def _check_sha(sha: str) -> str:
    if not isinstance(sha, str) or not SHA_RE.fullmatch(sha):
        raise ValueError(f"not a sha256: {sha!r}")
    return sha


def _safe_relpath(rel: str) -> str:
    """A tree's file name: relative, no '..', no absolute part (a record read back is data, not a path)."""
    p = Path(rel)
    if not rel or p.is_absolute() or any(part in ("..", "") for part in p.parts) or "\x00" in rel:
        raise ValueError(f"not a relative file name inside a folder: {rel!r}")
    return p.as_posix()


class FolderStore:
    """The store in a folder (on the head, or a path every node mounts)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def blob(self, sha: str) -> Path:
        sha = _check_sha(sha)
        return self.root / "blobs" / sha[:2] / sha

    def has(self, sha: str) -> bool:
        return self.blob(sha).is_file()

    def _write(self, chunks) -> tuple[str, str]:
        """Stream ``chunks`` into a temporary file under blobs/; return (sha256, temporary path)."""
        folder = self.root / "blobs"
        folder.mkdir(parents=True, exist_ok=True)
        h = hashlib.sha256()
        fd, tmp = tempfile.mkstemp(prefix=".in-", dir=folder)
        try:
            with os.fdopen(fd, "wb") as f:
                for chunk in chunks:
                    h.update(chunk)
                    f.write(chunk)
            return h.hexdigest(), tmp
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def _commit(self, tmp: str, sha: str) -> str:
        final = self.blob(sha)
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, final)  # same content under the same name: a race between two writers is harmless
        return sha

    def put_bytes(self, data: bytes) -> str:
        sha, tmp = self._write([data])
        return self._commit(tmp, sha)

    def put_file(self, path: str | Path) -> str:
        with open(path, "rb") as f:
            sha, tmp = self._write(iter(lambda: f.read(CHUNK), b""))
        return self._commit(tmp, sha)

    def get_bytes(self, sha: str) -> bytes:
        return self.blob(sha).read_bytes()

    def put_result(self, key: str, rec: dict[str, Any]) -> None:
        _check_sha(key)
        folder = self.root / "results"
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".in-", dir=folder)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(rec, f, default=str)
        os.replace(tmp, folder / f"{key}.json")

    def get_result(self, key: str) -> dict[str, Any] | None:
        try:
            rec = json.loads((self.root / "results" / f"{_check_sha(key)}.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return rec if isinstance(rec, dict) and rec.get("key") == key else None


# -- trees (an output folder as {relative path: sha256}) -------------------------------------------------------------
def put_tree(store: Any, folder: Path) -> dict[str, str]:
    """Every file under ``folder`` into the store; returns {relative path: sha256}."""
    out = {}
    for p in sorted(folder.rglob("*")):
        if p.is_file() and not p.is_symlink():
            out[p.relative_to(folder).as_posix()] = store.put_file(p)
    return out


def get_tree(store: Any, tree: dict[str, str], dest: Path) -> None:
    """Write a tree into ``dest`` as a whole: files go into a staging folder beside it, which then replaces it."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.tmp-", dir=dest.parent))
    try:
        for rel, sha in tree.items():
            target = staging / _safe_relpath(rel)
            target.parent.mkdir(parents=True, exist_ok=True)
            fetch(store, sha, target)
        if dest.exists():
            old = dest.parent / f".{dest.name}.old-{os.getpid()}"
            os.rename(dest, old)
            os.rename(staging, dest)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(staging, dest)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def fetch(store: Any, sha: str, target: Path) -> None:
    """One blob into ``target``, checked against its sha256 (a copy from a folder store, bytes from the actor)."""
    if isinstance(store, FolderStore):
        src = store.blob(sha)
        h = hashlib.sha256()
        with open(src, "rb") as f, open(target, "wb") as out:
            for chunk in iter(lambda: f.read(CHUNK), b""):
                h.update(chunk)
                out.write(chunk)
        digest = h.hexdigest()
    else:
        data = store.get_bytes(sha)
        digest = hashlib.sha256(data).hexdigest()
        target.write_bytes(data)
    if digest != sha:
        target.unlink(missing_ok=True)
        raise OSError(f"store blob {sha[:12]} is damaged (its content hashes to {digest[:12]})")


def cached_input(store: Any, sha_or_tree: str | dict[str, str], name: str, cache: Path | None = None) -> Path:
    """An input file (or folder, given as a tree) in this node's cache, fetched once: ``cache/<sha>/<name>``."""
    cache = cache or node_cache()
    ident = sha_or_tree if isinstance(sha_or_tree, str) else hashlib.sha256(
        json.dumps(sha_or_tree, sort_keys=True).encode()).hexdigest()
    final = cache / "inputs" / _check_sha(ident) / _safe_relpath(name)
    if final.exists():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(sha_or_tree, str):
        fd, tmp = tempfile.mkstemp(prefix=".in-", dir=final.parent)
        os.close(fd)
        try:
            fetch(store, sha_or_tree, Path(tmp))
            os.replace(tmp, final)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
    else:
        with contextlib.suppress(FileExistsError, OSError):
            get_tree(store, sha_or_tree, final)
        if not final.exists():
            raise OSError(f"could not fetch the input folder {name!r} into {final}")
    return final


def put_input(store: Any, path: Path) -> str | dict[str, str]:
    """An input file (its sha256) or folder (its tree) into the store."""
    return put_tree(store, path) if path.is_dir() else store.put_file(path)


# -- the store on Ray: one named, detached actor on the head ---------------------------------------------------------
class StoreService:
    """The actor behind a head-node store: blobs, results, and each run's progress events (which node started
    which cell: the live table and a record's ``attempts``)."""

    def __init__(self, root: str | None = None) -> None:
        self.store = FolderStore(root or default_root())
        self.events: dict[str, list[dict[str, Any]]] = {}

    def where(self) -> str:
        return str(self.store.root)

    def has(self, shas: list[str]) -> list[bool]:
        return [self.store.has(s) for s in shas]

    def put_bytes(self, data: bytes) -> str:
        return self.store.put_bytes(data)

    def get_bytes(self, sha: str) -> bytes:
        return self.store.get_bytes(sha)

    def put_result(self, key: str, rec: dict[str, Any]) -> None:
        self.store.put_result(key, rec)

    def get_result(self, key: str) -> dict[str, Any] | None:
        return self.store.get_result(key)

    def event(self, run: str, event: dict[str, Any]) -> None:
        self.events.setdefault(run, []).append(event)

    def events_since(self, run: str, since: int) -> list[dict[str, Any]]:
        return self.events.get(run, [])[since:]

    def forget(self, run: str) -> None:
        self.events.pop(run, None)


class ActorStore:
    """The client side of ``StoreService``: the same calls as ``FolderStore``, through the actor."""

    def __init__(self, handle: Any) -> None:
        self.handle = handle

    def _call(self, method: str, *args: Any) -> Any:
        import ray

        return ray.get(getattr(self.handle, method).remote(*args))

    def has(self, sha: str) -> bool:
        return self._call("has", [sha])[0]

    def put_bytes(self, data: bytes) -> str:
        return self._call("put_bytes", data)

    def put_file(self, path: str | Path) -> str:
        data = Path(path).read_bytes()
        sha = hashlib.sha256(data).hexdigest()
        return sha if self.has(sha) else self.put_bytes(data)  # a node sends what the head lacks, once

    def get_bytes(self, sha: str) -> bytes:
        return self._call("get_bytes", sha)

    def put_result(self, key: str, rec: dict[str, Any]) -> None:
        self._call("put_result", key, rec)

    def get_result(self, key: str) -> dict[str, Any] | None:
        return self._call("get_result", key)
