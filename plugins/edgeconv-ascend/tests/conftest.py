"""Fixtures for the Ascend plugin tests (the root conftest gives ``digits``, ``cli``, ``fresh_plugins``).

The plugin is normally installed (``pip install -e plugins/edgeconv-ascend``) and found through its entry point;
when it is not, its ``src`` goes on sys.path and the hooks are registered in-process. Every test runs on a host
that has no CANN, no NPU and no ais_bench, whatever the machine has: install roots, /dev and the environment are
redirected, and the stand-ins (``fake_atc``, the stand-in ``ais_bench``) are put in place only by the tests that
say so.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
try:
    import edgeconv_ascend  # noqa: F401
except ImportError:  # not installed: use the checkout
    sys.path.insert(0, str(SRC))

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
from ascend_testutil import write_fake_atc, write_standin_ais_bench  # noqa: E402


@pytest.fixture(autouse=True)
def _no_host_cann(monkeypatch, tmp_path_factory):
    """No CANN, no NPU, no ais_bench, no AMCT on this 'host' unless a test puts a stand-in there."""
    from edgeconv_ascend import cann, precheck

    for name in ("ASCEND_TOOLKIT_HOME", "ASCEND_HOME_PATH", "EDGECONV_AIS_BENCH_PYTHON", "EDGECONV_AMCT_PYTHON",
                 "FAKE_ATC_FAIL", "FAKE_ATC_PRECHECK_FAIL"):
        monkeypatch.delenv(name, raising=False)
    empty = tmp_path_factory.mktemp("no-ascend")
    monkeypatch.setattr(cann, "INSTALL_ROOTS", (str(empty / "usr-local-Ascend"), str(empty / "home-Ascend")))
    monkeypatch.setattr(cann, "DEV_DIR", str(empty / "dev"))
    path = [p for p in os.environ.get("PATH", "").split(os.pathsep) if p and not (Path(p) / "atc").exists()]
    monkeypatch.setenv("PATH", os.pathsep.join(path))
    real_spec = cann._module
    monkeypatch.setattr(cann, "_module", lambda name: False if name in ("ais_bench", "amct_onnx") else real_spec(name))
    precheck.table.cache_clear()


@pytest.fixture
def ascend_plugin(fresh_plugins):
    """The plugin manager with the ascend target registered (entry point, else in-process)."""
    reg = fresh_plugins.registry()
    if "ascend" not in reg.targets:
        from edgeconv_ascend import hooks

        fresh_plugins.register_plugin(hooks, "ascend", dist="edgeconv-ascend")
    return fresh_plugins


@pytest.fixture
def fake_atc(tmp_path, monkeypatch):
    """fake_atc -- a stand-in for ATC (see ascend_testutil.py) -- as ``atc``, first on PATH."""
    bindir = tmp_path / "fake-atc-bin"
    bindir.mkdir()
    script = write_fake_atc(bindir)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}")
    return script


@pytest.fixture
def fake_npu(tmp_path, monkeypatch):
    """Device nodes where the driver would put them (a directory of empty files): 'an NPU is present'."""
    from edgeconv_ascend import cann

    dev = tmp_path / "fake-dev"
    dev.mkdir()
    for name in ("davinci0", "davinci_manager"):
        (dev / name).write_text("")
    monkeypatch.setattr(cann, "DEV_DIR", str(dev))
    return dev


@pytest.fixture
def standin_ais_bench(tmp_path, monkeypatch):
    """The stand-in ais_bench package on sys.path and PYTHONPATH; its calls are logged to a JSONL file."""
    from edgeconv_ascend import cann

    root = tmp_path / "standin-ais-bench"
    write_standin_ais_bench(root)
    log = tmp_path / "ais_bench_calls.jsonl"
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("ASCEND_TESTUTIL_DIR", str(HERE))
    monkeypatch.setenv("AIS_BENCH_STANDIN_LOG", str(log))
    monkeypatch.setattr(cann, "_module", lambda name: name == "ais_bench")
    for mod in [m for m in sys.modules if m == "ais_bench" or m.startswith("ais_bench.")]:
        monkeypatch.delitem(sys.modules, mod)
    yield log
    for mod in [m for m in sys.modules if m == "ais_bench" or m.startswith("ais_bench.")]:
        del sys.modules[mod]  # imported by this test: later tests meet a host without ais_bench again
