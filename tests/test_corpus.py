"""The corpus fetcher (edgeconv.testing.corpus) on small wheels crafted here: no download in these tests."""

from __future__ import annotations

import hashlib
import json
import subprocess
import zipfile
from pathlib import Path

import pytest

from edgeconv.testing import corpus


def _wheel(folder: Path, name: str, members: dict[str, bytes]) -> tuple[Path, str]:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    with zipfile.ZipFile(path, "w") as z:
        for member, data in members.items():
            z.writestr(member, data)
    return path, hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty corpus cache, and a pip that must never be called."""
    root = tmp_path / "cache"
    monkeypatch.setenv("EDGECONV_CORPUS", str(root))
    calls = []

    def no_pip(cmd, *args, **kwargs):
        calls.append(cmd)
        raise AssertionError(f"the fetcher went to the network: {cmd}")

    monkeypatch.setattr(corpus.subprocess, "run", no_pip)
    return root, calls


def _source(monkeypatch, wheel: str, sha256: str, members=("pkg/data/*",)) -> corpus.Source:
    src = corpus.Source("fake", "fake-dist", "1.0", wheel, sha256, tuple(members), "MIT")
    monkeypatch.setitem(corpus.SOURCES, "fake", src)
    return src


def test_cache_dir_follows_the_environment(cache):
    root, _ = cache
    assert corpus.cache_dir() == root


def test_a_wheel_whose_hash_differs_is_refused_and_deleted(cache, monkeypatch):
    root, calls = cache
    wheel, digest = _wheel(root / "dl", "fake_dist-1.0-py3-none-any.whl", {"pkg/data/a.txt": b"tampered"})
    _source(monkeypatch, wheel.name, "0" * 64)
    with pytest.raises(corpus.CorpusError, match="sha256 .* is not the pinned 0{64}; deleted"):
        corpus.fetch("fake")
    assert not wheel.exists()
    assert not (root / "fake-1.0").exists()  # nothing unpacked
    assert not [p for p in root.iterdir() if p.name.startswith(".fake")]  # no staging left behind
    assert calls == []


def test_fetch_unpacks_only_the_wanted_members_and_reruns_offline(cache, monkeypatch):
    root, calls = cache
    wheel, digest = _wheel(root / "dl", "fake_dist-1.0-py3-none-any.whl",
                           {"pkg/data/a.txt": b"A", "pkg/data/sub/b.bin": b"B", "pkg/code.py": b"print()"})
    _source(monkeypatch, wheel.name, digest)
    folder = corpus.fetch("fake")
    assert folder == root / "fake-1.0"
    files = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
    assert files == [".edgeconv-corpus.json", "pkg/data/a.txt", "pkg/data/sub/b.bin"]
    assert json.loads((folder / ".edgeconv-corpus.json").read_text())["sha256"] == digest
    assert corpus.path("fake", "pkg/data/sub/b.bin").read_bytes() == b"B"
    # again, with the wheel gone: served from the unpacked cache, no network
    wheel.unlink()
    assert corpus.fetch("fake") == folder
    assert corpus.fetch("fake", offline=True) == folder
    assert calls == []
    with pytest.raises(corpus.CorpusError, match="not in the fake corpus source"):
        corpus.path("fake", "pkg/code.py")


def test_a_cached_wheel_is_rechecked_and_reused_without_network(cache, monkeypatch):
    root, calls = cache
    wheel, digest = _wheel(root / "dl", "fake_dist-1.0-py3-none-any.whl", {"pkg/data/a.txt": b"A"})
    _source(monkeypatch, wheel.name, digest)
    corpus.fetch("fake", offline=True)
    (root / "fake-1.0" / ".edgeconv-corpus.json").unlink()  # an interrupted unpack: done again from the wheel
    assert (corpus.fetch("fake", offline=True) / "pkg/data/a.txt").read_bytes() == b"A"
    assert calls == []


def test_offline_without_a_cached_wheel_says_so(cache, monkeypatch):
    _source(monkeypatch, "fake_dist-1.0-py3-none-any.whl", "0" * 64)
    with pytest.raises(corpus.CorpusError, match="not cached .* offline was asked"):
        corpus.fetch("fake", offline=True)


@pytest.mark.parametrize("member", ["pkg/data/../../../evil.txt", "pkg/data/x/../../../../evil.txt"])
def test_a_member_that_leaves_the_folder_is_refused(cache, monkeypatch, member):
    root, _ = cache
    wheel, digest = _wheel(root / "dl", "fake_dist-1.0-py3-none-any.whl", {"pkg/data/ok.txt": b"ok", member: b"evil"})
    _source(monkeypatch, wheel.name, digest)
    with pytest.raises(corpus.CorpusError, match="leaves the folder"):
        corpus.fetch("fake")
    assert not (root / "fake-1.0").exists()
    assert not list(root.parent.rglob("evil.txt"))
    assert not [p for p in root.iterdir() if p.name.startswith(".fake")]


def test_a_wheel_without_the_members_is_an_error(cache, monkeypatch):
    root, _ = cache
    wheel, digest = _wheel(root / "dl", "fake_dist-1.0-py3-none-any.whl", {"other/a.txt": b"A"})
    _source(monkeypatch, wheel.name, digest)
    with pytest.raises(corpus.CorpusError, match="none of"):
        corpus.fetch("fake")
    assert not (root / "fake-1.0").exists()


def test_unknown_source(cache):
    with pytest.raises(corpus.CorpusError, match="unknown corpus source 'nope'"):
        corpus.fetch("nope")


def test_pip_download_is_pinned_and_its_failure_is_reported(tmp_path, monkeypatch):
    """The download command names the exact version, no dependencies, wheels only (pip itself is faked)."""
    monkeypatch.setenv("EDGECONV_CORPUS", str(tmp_path))
    seen = []

    def fake_pip(cmd, *args, **kwargs):
        seen.append(cmd)
        return subprocess.CompletedProcess(cmd, 1, "", "ERROR: No matching distribution found for onnx==1.22.0\n")

    monkeypatch.setattr(corpus.subprocess, "run", fake_pip)
    with pytest.raises(corpus.CorpusError, match="pip download failed .*No matching distribution"):
        corpus.fetch("onnx")
    cmd = seen[0]
    assert cmd[1:4] == ["-m", "pip", "download"]
    assert "--no-deps" in cmd and "--only-binary=:all:" in cmd and cmd[-1] == "onnx==1.22.0"
    assert cmd[cmd.index("--python-version") + 1] == "3.11"


def test_cli_list(cache, capsys):
    assert corpus.main(["list"]) == 0
    out = capsys.readouterr().out
    assert "onnx==1.22.0" in out and "not cached" in out
