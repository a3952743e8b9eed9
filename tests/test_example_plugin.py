"""The plugin author kit's example backend (docs/examples/edgeconv-example), through the real thing:
pip installs it into this environment, `edgeconv targets` finds it by its entry point, `edgeconv convert
--to example` works, its own tests pass, and after `pip uninstall` it is gone. The environment is left as
it was found (installed again if it was installed before)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "docs" / "examples" / "edgeconv-example"
DIST = "edgeconv-example"
EDGECONV = Path(sys.executable).parent / "edgeconv"


def pip(*args: str) -> subprocess.CompletedProcess:
    res = subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", "-q", *args],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, f"pip {' '.join(args)} failed:\n{res.stdout[-1500:]}\n{res.stderr[-3000:]}"
    return res


def installed() -> bool:
    code = "import importlib.metadata as m\ntry:\n    m.distribution('edgeconv-example')\nexcept m.PackageNotFoundError:\n    print('no')\nelse:\n    print('yes')"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "yes"


def install() -> None:
    # Offline and quick when the build backend is here already (hatchling + editables); else pip fetches it.
    local = all(importlib.util.find_spec(m) for m in ("hatchling", "editables"))
    pip("install", "--no-deps", *(["--no-build-isolation"] if local else []), "-e", str(EXAMPLE))


def edgeconv(*args: str) -> subprocess.CompletedProcess:
    """The installed console script in a fresh process: plugins come from the real entry points only."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGECONV_")}
    return subprocess.run([str(EDGECONV), *args], capture_output=True, text=True, timeout=600, env=env)


def targets() -> dict[str, dict]:
    res = edgeconv("targets", "--json")
    assert res.returncode == 0, res.stderr
    return {r["name"]: r for r in json.loads(res.stdout)["targets"]}


@pytest.fixture(scope="module")
def environment_restored():
    before = installed()
    try:
        yield before
    finally:
        if before and not installed():
            install()
        elif not before and installed():
            pip("uninstall", "-y", DIST)
        assert installed() == before


def test_install_use_test_and_uninstall_the_example_backend(environment_restored, digits, tmp_path):
    if environment_restored:
        pip("uninstall", "-y", DIST)
    assert "example" not in targets()

    install()
    rows = targets()
    assert rows["example"]["status"] == "ready", rows["example"]
    assert rows["example"]["provider"] == DIST and rows["example"]["accepts"] == ["onnx"]
    plugin = {p["name"]: p for p in json.loads(edgeconv("plugins", "--json").stdout)}["example"]
    assert plugin["distribution"] == DIST and plugin["version"] == "0.1.0" and plugin["hooks"] == ["register_passes", "register_targets"]

    out = tmp_path / "out"
    res = edgeconv("convert", str(digits["model"]), "--to", "example", "-O", "opset=19", "--data", str(digits["test"]),
                   "-o", str(out), "--runs", "5", "--no-memory", "--json")
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout)
    assert report["target"] == "example" and report["target_provider"] == DIST
    assert report["verdict"]["status"] == "pass" and report["accuracy"]["drop_pp"] == 0
    assert report["artifact"]["details"]["opset"] == {"from": 17, "to": 19}
    assert json.loads((out / "manifest.json").read_text())["target"] == "example"

    # The example's own tests, run as its author would: from its folder, with its own pytest settings.
    res = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"], cwd=EXAMPLE,
                         capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stdout[-4000:]
    assert " passed" in res.stdout and "failed" not in res.stdout

    pip("uninstall", "-y", DIST)
    assert "example" not in targets()
    res = edgeconv("convert", str(digits["model"]), "--to", "example", "-o", str(tmp_path / "gone"))
    assert res.returncode == 2 and "unknown target 'example'" in res.stderr
