"""Fixtures for the TensorRT plugin tests (the root conftest gives ``digits``, ``cli``, ``fresh_plugins``).

The plugin is normally installed (``pip install -e plugins/edgeconv-tensorrt``) and found through
its entry point; when it is not (a CI that installs only the core), its ``src`` goes on sys.path
and the hooks are registered in-process, so the tests still run instead of skipping.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
try:
    import edgeconv_tensorrt  # noqa: F401
except ImportError:  # not installed: use the checkout
    sys.path.insert(0, str(SRC))

sys.path.insert(0, str(Path(__file__).parent))
from trt_testutil import FAKE_TRTEXEC, write_script  # noqa: E402


@pytest.fixture(autouse=True)
def _no_host_toolchain(monkeypatch):
    """Tests decide what the host has: never a stray ModelOpt interpreter."""
    monkeypatch.delenv("EDGECONV_MODELOPT_PYTHON", raising=False)
    from edgeconv_tensorrt import doctor, prepare

    def clear():
        for fn in (prepare.target_version, doctor._probe):
            getattr(fn, "cache_clear", lambda: None)()  # a test may have monkeypatched it

    clear()
    yield
    clear()


@pytest.fixture
def trt_plugin(fresh_plugins):
    """The plugin manager with the tensorrt target registered (entry point, else in-process)."""
    reg = fresh_plugins.registry()
    if "tensorrt" not in reg.targets:
        from edgeconv_tensorrt import hooks

        fresh_plugins.register_plugin(hooks, "tensorrt", dist="edgeconv-tensorrt")
    return fresh_plugins


@pytest.fixture
def fake_trtexec(tmp_path, monkeypatch):
    """A ``trtexec`` on PATH that records its arguments and writes a dummy plan."""
    bindir = tmp_path / "fakebin"
    bindir.mkdir()
    script = write_script(bindir / "trtexec", FAKE_TRTEXEC)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}")
    return script
