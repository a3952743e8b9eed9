"""Isolated toolchain environments (edgeconv.toolchain, `edgeconv toolchain ...`), with the real venv machinery.

A test plugin declares a tiny toolchain whose one requirement is a wheel built here (no network): a module with a
module-level import of a missing package (fixed by ``OptionalImport``), a bundled ``libc.so.6`` (moved aside by
``MoveAside``) and a console script (its shebang must name the final folder, not the staging one).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import edgeconv
from edgeconv import plugins
from edgeconv import toolchain as tcm
from edgeconv.errors import ToolchainFailed, ToolchainMissing
from edgeconv.records import Requirement, Target
from edgeconv.toolchain import MoveAside, OptionalImport, Toolchain

PY = f"{sys.version_info.major}.{sys.version_info.minor}"
CHECK = ("-c", "import edgeconv_fake_tool as m, sys; sys.exit(0 if m.VALUE == 42 else 1)")


def build_wheel(folder: Path, version: str = "1.0") -> Path:
    """A minimal pure-Python wheel, written by hand (a zip with METADATA, WHEEL, RECORD)."""
    name = "edgeconv_fake_tool"
    files = {
        f"{name}/__init__.py": "import sys\nimport edgeconv_fake_missing_sdk\nVALUE = 42\n\n\ndef main():\n"
                               "    print('fake tool', sys.prefix)\n",
        f"{name}/lib/libc.so.6": "a bundled C library that shadows the host's\n",
    }
    dist = f"{name}-{version}.dist-info"
    files[f"{dist}/METADATA"] = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n\n"
    files[f"{dist}/WHEEL"] = "Wheel-Version: 1.0\nGenerator: edgeconv-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    files[f"{dist}/entry_points.txt"] = f"[console_scripts]\nfake-tool = {name}:main\n"
    record = []
    for path, text in files.items():
        data = text.encode()
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(data)}")
    record.append(f"{dist}/RECORD,,")
    files[f"{dist}/RECORD"] = "\n".join(record) + "\n"
    wheel = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        for path, text in files.items():
            z.writestr(path, text)
    return wheel


def fake_toolchain(wheel: Path, **changes) -> Toolchain:
    spec = dict(
        name="faketc", title="Fake SDK", python=PY, requirements=(str(wheel),),
        fixes=(MoveAside(("edgeconv_fake_tool/lib/libc.so.*",), "bundled libc"),
               OptionalImport("edgeconv_fake_missing_sdk", ("edgeconv_fake_tool/__init__.py",), "unused import")),
        check=CHECK, packages=("edgeconv_fake_tool",),
    )
    spec.update(changes)
    return Toolchain(**spec)


class FakePlugin:
    """Declares the toolchain and a target that needs it."""

    def __init__(self, tc: Toolchain) -> None:
        self.tc = tc

    @edgeconv.hookimpl
    def register_toolchains(self, register):
        register(self.tc)

    @edgeconv.hookimpl
    def register_targets(self, register):
        register(Target(name="fakechip", title="Fake chip", suffix=".onnx", accepts=("onnx",),
                        exporter="edgeconv.builtins.ort_target:export", artifact_form="onnx",
                        requirements=(Requirement("the Fake SDK toolchain", "edgeconv toolchain install faketc",
                                                  toolchains=(self.tc,)),)))


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    return build_wheel(tmp_path_factory.mktemp("wheel"))


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "toolchains"
    monkeypatch.setenv("EDGECONV_TOOLCHAINS", str(root))
    monkeypatch.delenv("EDGECONV_TOOLCHAIN_FAKETC", raising=False)
    return root


@pytest.fixture
def declared(fresh_plugins, wheel, cache):
    plugin = FakePlugin(fake_toolchain(wheel))
    fresh_plugins.register_plugin(plugin, "fakesdk", dist="edgeconv-fakesdk", version="0.1")
    yield plugin
    fresh_plugins.unregister_plugin("fakesdk")


@pytest.fixture(scope="module")
def built(tmp_path_factory, wheel):
    """The fake toolchain installed once for the module (a venv with pip: a few seconds)."""
    from edgeconv import plugins

    root = tmp_path_factory.mktemp("built") / "toolchains"
    old = os.environ.get("EDGECONV_TOOLCHAINS")
    os.environ["EDGECONV_TOOLCHAINS"] = str(root)
    plugins.reset()
    tc = fake_toolchain(wheel)
    plugins.register_plugin(FakePlugin(tc), "fakesdk", dist="edgeconv-fakesdk", version="0.1")
    messages: list[str] = []
    try:
        state = tcm.install(plugins.registry().toolchains["faketc"], python=sys.executable, progress=messages.append)
    finally:
        plugins.reset()
        if old is None:
            os.environ.pop("EDGECONV_TOOLCHAINS")
        else:
            os.environ["EDGECONV_TOOLCHAINS"] = old
    return {"root": root, "state": state, "messages": messages, "wheel": wheel}


# -- declaring ----------------------------------------------------------------------------------------------------
def test_register_toolchains_collects_the_declared_environment(declared, fresh_plugins):
    tc = fresh_plugins.registry().toolchains["faketc"]
    assert tc.plugin == "fakesdk" and tc.dist == "edgeconv-fakesdk"
    assert tc.setting == "EDGECONV_TOOLCHAIN_FAKETC"
    assert tc.spec_hash() == declared.tc.spec_hash() != fake_toolchain(Path("other.whl")).spec_hash()


def test_two_plugins_declaring_one_toolchain_is_an_error_naming_both(declared, fresh_plugins, cli):
    class Other:
        @edgeconv.hookimpl
        def register_toolchains(self, register):
            register(Toolchain(name="faketc", title="Other", python=PY, requirements=("x==1",)))

    fresh_plugins.register_plugin(Other(), "othersdk", dist="edgeconv-othersdk")
    try:
        assert "faketc" not in fresh_plugins.registry().toolchains
        res = cli("toolchain", "install", "faketc")
        assert res.exit_code == 2
        assert "edgeconv-fakesdk" in res.stderr and "edgeconv-othersdk" in res.stderr
        assert len(res.stderr.strip().splitlines()) == 1
    finally:
        fresh_plugins.unregister_plugin("othersdk")


def test_the_folder_follows_the_setting_then_xdg(monkeypatch, tmp_path):
    monkeypatch.delenv("EDGECONV_TOOLCHAINS", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert tcm.env_path("sophon") == tmp_path / "xdg" / "edgeconv" / "toolchains" / "sophon"
    monkeypatch.setenv("EDGECONV_TOOLCHAINS", str(tmp_path / "mine"))
    assert tcm.env_path("sophon") == tmp_path / "mine" / "sophon"


# -- missing: never installed implicitly ----------------------------------------------------------------------------
def test_list_says_missing_with_the_install_command(declared, cli, cache):
    res = cli("toolchain", "list", "--json")
    assert res.exit_code == 0
    row = next(t for t in json.loads(res.stdout)["toolchains"] if t["name"] == "faketc")
    assert row["state"] == "missing" and row["hint"] == "edgeconv toolchain install faketc"
    assert not cache.exists()  # listing created nothing


def test_a_missing_environment_stops_conversion_with_exit_3_and_builds_nothing(declared, cli, digits, tmp_path, cache):
    out = tmp_path / "out"
    res = cli("convert", str(digits["model"]), "--to", "fakechip", "-o", str(out))
    assert res.exit_code == 3
    assert "edgeconv toolchain install faketc" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.stderr
    assert not out.exists() and not cache.exists()


def test_resolve_names_the_install_command(declared):
    with pytest.raises(ToolchainMissing) as err:
        tcm.resolve(plugins.registry().toolchains["faketc"])
    assert "edgeconv toolchain install faketc" in err.value.one_line()
    assert err.value.exit_code == 3


def test_dry_run_prints_the_plan_and_builds_nothing(declared, cli, cache):
    res = cli("toolchain", "install", "faketc", "--dry-run", "--python", sys.executable, "--json")
    assert res.exit_code == 0, res.stderr
    plan = json.loads(res.stdout)
    assert plan["steps"][0]["argv"][1:3] == ["-m", "venv"]
    pip = plan["steps"][1]["argv"]
    assert pip[1:4] == ["-m", "pip", "install"] and "--report" in pip and pip[-1] == declared.tc.requirements[0]
    assert [f["kind"] for f in plan["fixes"]] == ["move_aside", "optional_import"]
    assert not cache.exists()


def test_a_python_of_the_wrong_version_is_refused(declared, cli, tmp_path):
    other = "3.10" if PY != "3.10" else "3.12"
    tc = fake_toolchain(Path("x.whl"), python=other)
    with pytest.raises(edgeconv.errors.BadInput) as err:
        tcm.plan(tc, sys.executable)
    assert f"needs Python {other}" in err.value.one_line()


def test_an_unknown_toolchain_is_bad_usage(declared, cli):
    res = cli("toolchain", "install", "fakect")
    assert res.exit_code == 2 and "did you mean 'faketc'" in res.stderr


# -- building -------------------------------------------------------------------------------------------------------
def test_install_builds_a_ready_environment_and_records_it(built):
    root, state = built["root"], built["state"]
    env = root / "faketc"
    assert state["name"] == "faketc" and (env / tcm.STATE_FILE).is_file()
    assert json.loads((env / tcm.STATE_FILE).read_text())["spec_hash"] == state["spec_hash"]
    assert state["python"]["version"].startswith(PY + ".")
    pkg = state["packages"]["edgeconv-fake-tool"]
    assert pkg["version"] == "1.0" and pkg["requested"]
    assert pkg["sha256"] == hashlib.sha256(built["wheel"].read_bytes()).hexdigest()
    assert state["check"]["ok"] is True
    assert state["size_bytes"] > 1_000_000  # a venv with pip
    assert built["messages"][0] == "create the virtual environment" and any("check" in m for m in built["messages"])
    # nothing left over beside it: no staging folder, no failed log
    assert sorted(p.name for p in root.iterdir() if not p.name.endswith(".lock")) == ["faketc"]


def test_fixes_are_applied_and_recorded(built):
    env, state = built["root"] / "faketc", built["state"]
    site = next(env.glob("lib/python*/site-packages"))
    moved, patched = state["fixes"]
    assert moved["moved"] == ["edgeconv_fake_tool/lib/libc.so.6"]
    assert not (site / "edgeconv_fake_tool/lib/libc.so.6").exists()
    assert (env / tcm.MOVED_ASIDE / "edgeconv_fake_tool/lib/libc.so.6").is_file()
    entry = patched["patched"][0]
    text = (site / "edgeconv_fake_tool/__init__.py").read_text()
    assert hashlib.sha256(text.encode()).hexdigest() == entry["sha256_after"] != entry["sha256_before"]
    assert "except ModuleNotFoundError:" in text


def test_the_environment_runs_its_tools_after_the_rename(built, monkeypatch):
    """Scripts name the final folder (the venv was built in a staging folder and renamed)."""
    env = built["root"] / "faketc"
    for script in (env / "bin").iterdir():
        if script.is_file() and not script.is_symlink():
            assert ".staging-" not in script.read_text(errors="replace"), script
    out = subprocess.run([str(env / "bin" / "fake-tool")], capture_output=True, text=True, check=True).stdout
    assert out.strip() == f"fake tool {env}"


def test_list_and_resolve_see_it_ready(built, fresh_plugins, monkeypatch, cli):
    monkeypatch.setenv("EDGECONV_TOOLCHAINS", str(built["root"]))
    fresh_plugins.register_plugin(FakePlugin(fake_toolchain(built["wheel"])), "fakesdk")
    try:
        env = tcm.resolve(plugins.registry().toolchains["faketc"])
        res = env.run(["-c", "import sys, edgeconv_fake_tool as m; print(sys.prefix, m.VALUE)"])
        assert res["ok"] and res["output"].split() == [str(built["root"] / "faketc"), "42"]
        rows = json.loads(cli("toolchain", "list", "--json", "--check").stdout)["toolchains"]
        row = next(r for r in rows if r["name"] == "faketc")
        assert row["state"] == "ready" and row["check"]["ok"] is True
        assert row["versions"] == {"edgeconv_fake_tool": "1.0"} and row["size_bytes"] == built["state"]["size_bytes"]
        doctor = json.loads(cli("doctor", "--json").stdout)
        assert doctor["toolchains"]["faketc"]["state"] == "ready"
        assert doctor["targets"]["fakechip"]["details"]["toolchains"]["faketc"]["state"] == "ready"
        again = cli("toolchain", "install", "faketc")
        assert again.exit_code == 0 and "already installed" in again.stdout
    finally:
        fresh_plugins.unregister_plugin("fakesdk")


def test_a_changed_specification_makes_it_broken(built, fresh_plugins, monkeypatch):
    monkeypatch.setenv("EDGECONV_TOOLCHAINS", str(built["root"]))
    fresh_plugins.register_plugin(FakePlugin(fake_toolchain(built["wheel"], check=("-c", "pass"))), "fakesdk")
    try:
        st = tcm.status(fresh_plugins.registry().toolchains["faketc"])
        assert st["state"] == "broken" and "another specification" in st["reason"]
        with pytest.raises(ToolchainMissing) as err:
            tcm.resolve(plugins.registry().toolchains["faketc"])
        assert "edgeconv toolchain install faketc --force" in err.value.one_line()
    finally:
        fresh_plugins.unregister_plugin("fakesdk")


def test_a_failing_check_leaves_nothing_behind_and_exits_4(fresh_plugins, wheel, cache, cli):
    # without the OptionalImport fix the module does not import: the check fails
    tc = fake_toolchain(wheel, fixes=(MoveAside(("edgeconv_fake_tool/lib/libc.so.*",), "bundled libc"),))
    fresh_plugins.register_plugin(FakePlugin(tc), "fakesdk")
    try:
        res = cli("toolchain", "install", "faketc", "--python", sys.executable)
        assert res.exit_code == 4
        errors = [ln for ln in res.stderr.splitlines() if ln.startswith("edgeconv: error:")]
        assert len(errors) == 1 and "Traceback" not in res.stderr  # progress lines, then one error line
        assert "check failed" in errors[0] and "nothing was installed" in errors[0]
        left = sorted(p.name for p in cache.iterdir() if not p.name.endswith(".lock"))
        assert left == ["faketc.install.log"]  # the log is kept; no environment, no staging folder
        assert "edgeconv_fake_missing_sdk" in (cache / "faketc.install.log").read_text()
    finally:
        fresh_plugins.unregister_plugin("fakesdk")


def test_an_interrupted_install_leaves_nothing_behind(declared, fresh_plugins, cache):
    tc = fresh_plugins.registry().toolchains["faketc"]

    def interrupt(msg: str) -> None:
        if msg.startswith("pip install"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        tcm.install(tc, python=sys.executable, progress=interrupt)
    assert not (cache / "faketc").exists()
    assert not [p for p in cache.iterdir() if ".staging-" in p.name]


def test_a_failing_pip_install_is_toolchain_failed(fresh_plugins, cache, tmp_path):
    tc = Toolchain(name="faketc", title="Fake", python=PY, requirements=(str(tmp_path / "no_such-1.0-py3-none-any.whl"),))
    with pytest.raises(ToolchainFailed) as err:
        tcm.install(tc, python=sys.executable)
    assert "pip install" in err.value.cause and "nothing was installed" in err.value.cause
    assert not (cache / "faketc").exists()


# -- a user-provided environment ------------------------------------------------------------------------------------
def test_a_setting_replaces_the_cache_environment(declared, fresh_plugins, monkeypatch, cli):
    monkeypatch.setenv("EDGECONV_TOOLCHAIN_FAKETC", sys.executable)
    env = tcm.resolve(plugins.registry().toolchains["faketc"])
    assert env.source == "setting" and env.argv == [sys.executable]
    res = env.run(["-c", "import sys; print(sys.executable)"])
    assert res["ok"] and res["output"].strip() == sys.executable
    monkeypatch.setenv("EDGECONV_TOOLCHAIN_FAKETC", "no-such-python-here --flag")
    row = next(r for r in json.loads(cli("toolchain", "list", "--json").stdout)["toolchains"] if r["name"] == "faketc")
    assert row["state"] == "broken" and row["command"] == ["no-such-python-here", "--flag"]
    with pytest.raises(ToolchainMissing):
        tcm.resolve(plugins.registry().toolchains["faketc"])


def test_a_container_command_is_split_into_arguments(declared, monkeypatch):
    """A prefix command (as for `docker run ... python3`): split like a shell would, run without one."""
    monkeypatch.setenv("EDGECONV_TOOLCHAIN_FAKETC", f"env EDGECONV_MARK='a b' {sys.executable}")
    env = tcm.resolve(plugins.registry().toolchains["faketc"])
    assert env.argv == ["env", "EDGECONV_MARK=a b", sys.executable]
    res = env.run(["-c", "import os; print(os.environ['EDGECONV_MARK'])"])
    assert res["ok"] and res["output"].strip() == "a b"


# -- removing -------------------------------------------------------------------------------------------------------
def test_remove_deletes_the_environment(declared, cli, cache):
    env = cache / "faketc"
    (env / "bin").mkdir(parents=True)
    (env / tcm.STATE_FILE).write_text("{}")
    res = cli("toolchain", "remove", "faketc")
    assert res.exit_code == 0 and f"removed {env}" in res.stdout
    assert not env.exists()
    again = cli("toolchain", "remove", "faketc")
    assert again.exit_code == 0 and "is not installed" in again.stdout


def test_a_folder_without_state_is_broken_not_ready(declared, fresh_plugins, cache):
    (cache / "faketc").mkdir(parents=True)
    st = tcm.status(fresh_plugins.registry().toolchains["faketc"])
    assert st["state"] == "broken" and "edgeconv-toolchain.json" in st["reason"]
    assert st["hint"] == "edgeconv toolchain install faketc --force"
