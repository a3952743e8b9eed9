"""Plugin loading: built-ins, entry points, broken plugins, raising hooks, allow/deny lists,
duplicate target names, and every hook exercised (see test_docs for the hook list)."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

import edgeconv
from edgeconv.records import Importer, Pass, RunnerSpec, Target


def make_dist(root: Path, dist: str, module: str, source: str, ep_name: str | None = None) -> None:
    """An installed distribution on sys.path: a module and its dist-info with an entry point."""
    (root / f"{module}.py").write_text(textwrap.dedent(source))
    info = root / f"{dist}-1.2.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.2.3\n\n")
    (info / "entry_points.txt").write_text(f"[edgeconv]\n{ep_name or module} = {module}\n")


GOOD = """
    import edgeconv
    from edgeconv.records import Target

    @edgeconv.hookimpl
    def register_targets(register):
        register(Target(name="goodchip", title="Good chip", suffix=".onnx", accepts=("onnx",),
                        exporter="edgeconv.builtins.ort_target:export", artifact_form="onnx"))
"""
BROKEN_IMPORT = "import a_module_that_does_not_exist_anywhere\n"
RAISING_HOOK = """
    import edgeconv

    @edgeconv.hookimpl
    def register_targets(register):
        raise RuntimeError("vendor SDK exploded")
"""


@pytest.fixture
def site(tmp_path, monkeypatch, fresh_plugins):
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def test_builtins_register_the_onnxruntime_target(fresh_plugins):
    reg = fresh_plugins.registry()
    assert "onnxruntime" in reg.targets
    assert reg.targets["onnxruntime"].dist == "edgeconv"
    assert "onnx" in reg.importers and "onnx" in reg.runners
    assert {"onnx.simplify", "onnx.fp16", "ort.quantize_static", "ort.quantize_dynamic"} <= set(reg.passes)


def test_entry_point_plugins_load_and_broken_ones_are_recorded(site, cli):
    make_dist(site, "edgeconv-goodchip", "goodchip_hooks", GOOD)
    make_dist(site, "edgeconv-brokenchip", "brokenchip_hooks", BROKEN_IMPORT)
    make_dist(site, "edgeconv-raisingchip", "raisingchip_hooks", RAISING_HOOK)
    res = cli("targets", "--json")
    assert res.exit_code == 0, res.output
    rows = {r["name"]: r for r in json.loads(res.stdout)["targets"]}
    assert rows["onnxruntime"]["status"] == "ready"
    assert rows["goodchip"]["status"] == "ready" and rows["goodchip"]["provider"] == "edgeconv-goodchip"
    assert rows["brokenchip_hooks"]["status"] == "broken"
    assert "ModuleNotFoundError" in rows["brokenchip_hooks"]["hint"]
    assert rows["raisingchip_hooks"]["status"] == "broken"
    assert "register_targets" in rows["raisingchip_hooks"]["hint"] and "exploded" in rows["raisingchip_hooks"]["hint"]
    plugs = {p["name"]: p for p in json.loads(cli("plugins", "--json").stdout)}
    assert plugs["brokenchip_hooks"]["broken"] and plugs["brokenchip_hooks"]["distribution"] == "edgeconv-brokenchip"
    assert plugs["brokenchip_hooks"]["version"] == "1.2.3"
    assert plugs["goodchip_hooks"]["hooks"] == ["register_targets"]


def test_allow_list_and_disable(site, monkeypatch, fresh_plugins):
    make_dist(site, "edgeconv-goodchip", "goodchip_hooks", GOOD)
    monkeypatch.setenv("EDGECONV_LOAD_PLUGINS", "")
    assert "goodchip" not in fresh_plugins.registry().targets  # empty allow-list: none
    fresh_plugins.reset()
    monkeypatch.setenv("EDGECONV_LOAD_PLUGINS", "edgeconv-goodchip")
    assert "goodchip" in fresh_plugins.registry().targets  # by distribution name
    fresh_plugins.reset()
    monkeypatch.delenv("EDGECONV_LOAD_PLUGINS")
    monkeypatch.setenv("EDGECONV_DISABLE_PLUGINS", "goodchip_hooks,edgeconv.builtins.onnxruntime")
    reg = fresh_plugins.registry()
    assert "goodchip" not in reg.targets and "onnxruntime" not in reg.targets
    assert "onnx" in reg.importers  # the other built-ins still load


def test_two_providers_of_one_target_is_an_error_naming_both(site, cli):
    make_dist(site, "edgeconv-chip-a", "chip_a_hooks", GOOD)
    make_dist(site, "edgeconv-chip-b", "chip_b_hooks", GOOD)
    res = cli("convert", "x.onnx", "--to", "goodchip")
    assert res.exit_code == 2
    assert "edgeconv-chip-a" in res.stderr and "edgeconv-chip-b" in res.stderr
    rows = {r["name"]: r for r in json.loads(cli("targets", "--json").stdout)["targets"]}
    assert rows["goodchip"]["status"] == "conflict"


class FakeChip:
    """An in-process plugin implementing every hook, as a test double for a vendor backend."""

    def __init__(self) -> None:
        self.stages: list[str] = []

    @edgeconv.hookimpl
    def register_importers(self, register):
        register(Importer(name="fakeform", form="fake", suffixes=(".fake",), load=self.load))

    @edgeconv.hookimpl
    def register_passes(self, register):
        register(Pass(name="fake.to_onnx", form="fake", kind="convert", to_form="onnx", run=self.to_onnx))

    @edgeconv.hookimpl
    def register_targets(self, register):
        register(Target(name="fakechip", title="Fake chip", suffix=".fk", accepts=("onnx",), exporter=self.export,
                        artifact_form="onnx", precisions=("fp32",), precheck=self.precheck))

    @edgeconv.hookimpl
    def register_runners(self, register):
        register(RunnerSpec(form="fake", name="fake-runner", factory="edgeconv.builtins.ort_runner:OrtRunner"))

    @edgeconv.hookimpl
    def register_commands(self, app):
        @app.command("fake-hello")
        def hello() -> None:
            """Say hello from the fake chip."""
            print("hello from fakechip")

    @edgeconv.hookimpl(wrapper=True)
    def run_stage(self, stage, call):
        self.stages.append(stage)
        result = yield
        return result

    # the objects' work
    def load(self, source, *, input_shapes=None, options=None):
        from edgeconv.builtins.onnx_import import load as load_onnx

        m = load_onnx(Path(source).read_text().strip(), input_shapes=input_shapes)
        m.form = "fake"  # a "fake" file names an ONNX file; its runner is onnxruntime
        return m

    def to_onnx(self, model, job):
        from edgeconv.model import Model

        return Model(form="onnx", io=model.io, path=model.path, obj=model.obj), {"note": "fake->onnx"}

    def precheck(self, model, job):
        return []

    def export(self, model, job):
        from edgeconv.builtins.ort_target import export

        return export(model, job)


@pytest.fixture
def fake(fresh_plugins):
    chip = FakeChip()
    fresh_plugins.register_plugin(chip, "fakechip")
    try:
        yield chip
    finally:
        fresh_plugins.unregister_plugin("fakechip")


def test_fake_target_end_to_end_through_every_hook(fake, cli, digits, tmp_path):
    src = tmp_path / "model.fake"
    src.write_text(str(digits["model"]))
    res = cli("convert", str(src), "--to", "fakechip", "-o", str(tmp_path / "out"), "--data", str(digits["test"]),
              "--json", "--no-memory", "--runs", "5")
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    assert report["route"] == ["fake", "onnx"]
    assert report["passes"][0]["name"] == "fake.to_onnx"
    assert report["accuracy"]["drop_pp"] == 0
    assert report["fidelity"][0]["max_abs"] < 1e-5
    assert {"import", "route", "convert", "precheck", "optimize", "export", "verify"} <= set(fake.stages)
    assert set(report["timings"]) >= {"import", "export", "verify"}
    hello = cli("fake-hello")
    assert hello.exit_code == 0 and "hello from fakechip" in hello.stdout


def test_a_plugin_wrapper_sees_and_can_fail_a_stage(fresh_plugins, cli, digits, tmp_path):
    class Failing:
        @edgeconv.hookimpl(wrapper=True)
        def run_stage(self, stage, call):
            if stage == "export":
                raise edgeconv.errors.ToolchainFailed("vendor compiler crashed", stage="export")
            return (yield)

    fresh_plugins.register_plugin(Failing(), "failing")
    try:
        out = tmp_path / "out"
        res = cli("convert", str(digits["model"]), "-o", str(out))
        assert res.exit_code == 4
        assert "vendor compiler crashed" in res.stderr
        assert not out.exists() and not list(tmp_path.glob(".out.tmp-*"))
    finally:
        fresh_plugins.unregister_plugin("failing")


def test_unknown_target_did_you_mean(cli):
    res = cli("convert", "m.onnx", "--to", "onnxrutime")
    assert res.exit_code == 2
    assert "did you mean 'onnxruntime'" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


def test_missing_requirement_gives_the_install_hint_and_exit_3(fresh_plugins, cli, digits, tmp_path):
    from edgeconv.records import Requirement

    class Vendor:
        @edgeconv.hookimpl
        def register_targets(self, register):
            register(Target(name="jetsonish", title="x", suffix=".plan", accepts=("onnx",), exporter="x:y",
                            artifact_form="plan", requirements=(Requirement(
                                "TensorRT", 'pip install "edgeconv[jetson]"', modules=("tensorrt_not_here",),
                                binaries=("trtexec_not_here",)),)))

    fresh_plugins.register_plugin(Vendor(), "vendor")
    try:
        rows = {r["name"]: r for r in json.loads(cli("targets", "--json").stdout)["targets"]}
        assert rows["jetsonish"]["status"] == "missing"
        assert rows["jetsonish"]["hint"] == 'pip install "edgeconv[jetson]"'
        res = cli("convert", str(digits["model"]), "--to", "jetsonish", "-o", str(tmp_path / "o"))
        assert res.exit_code == 3
        assert 'pip install "edgeconv[jetson]"' in res.stderr
    finally:
        fresh_plugins.unregister_plugin("vendor")


class _TableRecords:
    """Registers one record of each table kind the core collects besides targets (metrics, task checks, devices)."""

    @edgeconv.hookimpl
    def register_metrics(self, register):
        from edgeconv.plugin import Metric

        register(Metric(name="fake_metric", title="fake", better="higher", compute="builtins:abs", thresholds={"fp32": 1}))

    @edgeconv.hookimpl
    def register_comparators(self, register):
        from edgeconv.plugin import Comparator

        register(Comparator(name="fake_task", title="fake task", compare="builtins:abs"))

    @edgeconv.hookimpl
    def register_devices(self, register):
        from edgeconv.plugin import DeviceCatalogue

        register(DeviceCatalogue(package="fake_pkg"))
        register("not a record")  # recorded as the plugin's error, the rest still counts


def test_metric_comparator_and_device_records_are_collected_with_their_plugin(fresh_plugins):
    fresh_plugins.register_plugin(_TableRecords(), "tables", dist="edgeconv-tables", version="1")
    reg = fresh_plugins.registry()
    assert reg.metrics["fake_metric"].plugin == "tables"
    assert reg.metrics["fake_metric"].passes(1.5, 1) and not reg.metrics["fake_metric"].passes(0.5, 1)
    assert reg.comparators["fake_task"].plugin == "tables"
    assert reg.devices["fake_pkg"].plugin == "tables"
    info = next(p for p in fresh_plugins.plugins() if p.name == "tables")
    assert info.broken and info.error == "register_devices registered a str, not a record"
