"""The external test corpus: real models and the ONNX node tests, fetched pinned by version and sha256.

Nothing here is committed to the repository. Each source is a wheel on PyPI; ``fetch`` downloads it with
``pip download`` (no dependencies, binary only), checks its sha256 against the pin below, and unpacks only
the members it needs into a cache folder outside the repository::

    python -m edgeconv.testing.corpus fetch            # every source
    python -m edgeconv.testing.corpus fetch rapidocr   # one
    python -m edgeconv.testing.corpus list             # what is cached

The cache is ``$EDGECONV_CORPUS`` or ``~/.cache/edgeconv-corpus``. Once a source is unpacked, ``fetch`` reads
nothing from the network (re-runnable offline); a wheel already in ``<cache>/dl`` is re-checked and re-used.
A wheel whose hash differs from the pin is refused and deleted, never unpacked.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

__all__ = ["SOURCES", "Source", "CorpusError", "cache_dir", "fetch", "path", "node_tests"]


class CorpusError(RuntimeError):
    """A source could not be fetched or did not match its pin."""


@dataclass(frozen=True)
class Source:
    name: str
    dist: str
    version: str
    wheel: str  # the exact file name pip downloads
    sha256: str
    members: tuple[str, ...]  # fnmatch patterns of the wheel members to unpack
    license: str
    # Wheels with compiled code are fetched for this tag whatever the host (their data is what we use).
    python_version: str | None = None
    platform: str | None = None

    @property
    def folder(self) -> str:
        return f"{self.name}-{self.version}"


SOURCES: dict[str, Source] = {
    s.name: s
    for s in (
        # onnx 1.22.0 is the last wheel that ships the backend node tests (1.23 does not).
        Source("onnx", "onnx", "1.22.0",
               "onnx-1.22.0-cp311-cp311-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl",
               "1d0a2bdb15eb2b3cb65c438f3423d9620d14fdce32f92380e6bb1b2e09568ef5",
               ("onnx/backend/test/data/*",), "Apache-2.0", python_version="3.11", platform="manylinux_2_28_x86_64"),
        Source("rapidocr", "rapidocr-onnxruntime", "1.4.4", "rapidocr_onnxruntime-1.4.4-py3-none-any.whl",
               "971d7d5f223a7a808662229df1ef69893809d8457d834e6373d3854bc1782cbf",
               ("rapidocr_onnxruntime/models/*.onnx", "rapidocr_onnxruntime/config.yaml",
                "rapidocr_onnxruntime/*.py", "rapidocr_onnxruntime/*/*.py",
                "rapidocr_onnxruntime-1.4.4.dist-info/METADATA"), "Apache-2.0"),
        Source("ddddocr", "ddddocr", "1.6.1", "ddddocr-1.6.1-py3-none-any.whl",
               "c7c70f4ae2d0335440ae8b272eea48c9f6888ecef46785fe2311f0c97a133935",
               ("ddddocr/*.onnx", "ddddocr/*.py", "ddddocr-1.6.1.dist-info/licenses/LICENSE"), "MIT"),
    )
}

_DONE = ".edgeconv-corpus.json"


def cache_dir() -> Path:
    return Path(os.environ.get("EDGECONV_CORPUS") or Path.home() / ".cache" / "edgeconv-corpus")


def _sha256(file: Path) -> str:
    h = hashlib.sha256()
    with file.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _download(src: Source, dl: Path) -> Path:
    wheel = dl / src.wheel
    if wheel.is_file():
        return wheel
    dl.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
           "--disable-pip-version-check", "-d", str(dl), f"{src.dist}=={src.version}"]
    if src.python_version:
        cmd[4:4] = ["--python-version", src.python_version, "--platform", src.platform or "any"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0 or not wheel.is_file():
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise CorpusError(f"{src.dist}=={src.version}: pip download failed ({last})")
    return wheel


def _unpack(src: Source, wheel: Path, into: Path) -> int:
    """Unpack the wanted members into a staging folder, then move it in place: never half a source."""
    staging = Path(tempfile.mkdtemp(prefix=f".{src.folder}-", dir=into.parent))
    n = 0
    try:
        with zipfile.ZipFile(wheel) as z:
            for info in z.infolist():
                name = info.filename
                if name.endswith("/") or not any(fnmatch.fnmatch(name, p) for p in src.members):
                    continue
                rel = Path(name)
                if rel.is_absolute() or ".." in rel.parts:
                    raise CorpusError(f"{wheel.name}: member {name!r} leaves the folder")
                dest = staging / rel
                dest.parent.mkdir(parents=True, exist_ok=True)
                with z.open(info) as fin, dest.open("wb") as fout:
                    shutil.copyfileobj(fin, fout)
                n += 1
        if n == 0:
            raise CorpusError(f"{wheel.name}: none of {list(src.members)} is in the wheel")
        (staging / _DONE).write_text(json.dumps({"dist": src.dist, "version": src.version, "wheel": src.wheel,
                                                 "sha256": src.sha256, "files": n}, indent=1))
        if into.exists():
            shutil.rmtree(into)
        staging.rename(into)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return n


def fetch(name: str, *, offline: bool = False) -> Path:
    """The unpacked folder of source NAME (downloading and checking it on first use)."""
    try:
        src = SOURCES[name]
    except KeyError:
        raise CorpusError(f"unknown corpus source {name!r} (known: {', '.join(SOURCES)})") from None
    root = cache_dir()
    into = root / src.folder
    done = into / _DONE
    if done.is_file():
        try:
            if json.loads(done.read_text()).get("sha256") == src.sha256:
                return into
        except (OSError, ValueError):
            pass
    dl = root / "dl"
    if offline and not (dl / src.wheel).is_file():
        raise CorpusError(f"{src.dist}=={src.version} is not cached in {root} and offline was asked")
    wheel = _download(src, dl)
    digest = _sha256(wheel)
    if digest != src.sha256:
        wheel.unlink(missing_ok=True)
        raise CorpusError(f"{wheel}: sha256 {digest} is not the pinned {src.sha256}; deleted")
    _unpack(src, wheel, into)
    return into


def path(name: str, member: str) -> Path:
    """One unpacked file, e.g. ``path("rapidocr", "rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx")``."""
    file = fetch(name) / member
    if not file.is_file():
        raise CorpusError(f"{member} is not in the {name} corpus source (patterns {SOURCES[name].members})")
    return file


def node_tests() -> Path:
    """The ONNX backend node tests: a folder with one sub-folder per test (model.onnx, test_data_set_0/)."""
    return fetch("onnx") / "onnx" / "backend" / "test" / "data" / "node"


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m edgeconv.testing.corpus", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("fetch", help="download, check and unpack sources (all when none is named)")
    f.add_argument("names", nargs="*", help=f"any of: {', '.join(SOURCES)}")
    f.add_argument("--offline", action="store_true", help="use only what is cached")
    sub.add_parser("list", help="the pinned sources and whether they are cached")
    args = ap.parse_args(argv)
    if args.cmd == "list":
        for src in SOURCES.values():
            state = "cached" if (cache_dir() / src.folder / _DONE).is_file() else "not cached"
            print(f"{src.name:10} {src.dist}=={src.version}  {src.license:11} {state}")
        return 0
    try:
        for name in args.names or list(SOURCES):
            print(f"{name}: {fetch(name, offline=args.offline)}")
    except CorpusError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
