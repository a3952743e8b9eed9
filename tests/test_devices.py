"""Device profiles: the catalogue checked against the targets, --device filling what the user did
not give (explicit values win), and `edgeconv devices`."""

from __future__ import annotations

import json
import re

import pytest

from edgeconv import devices as devmod
from edgeconv.errors import BadInput
from edgeconv.plugins import registry
from edgeconv.records import KNOWN_TARGETS, PRECISIONS
from edgeconv.report import Budgets

CATALOGUE = devmod.catalogue()
URL = re.compile(r"^https?://[^\s/]+\.[^\s/]+/\S*$")


def test_the_issue_s_devices_are_there():
    titles = " | ".join(d.title for d in CATALOGUE.values())
    for needle in ("Raspberry Pi 4", "Raspberry Pi 5", "Jetson Nano", "Jetson Orin Nano", "Jetson AGX Orin",
                   "Intel Core", "Intel Atom", "Atlas 200", "Atlas 300I", "BM1684)", "BM1684X", "RK3588"):
        assert needle in titles, needle
    by_target = {d.name: d.target for d in CATALOGUE.values()}
    assert by_target["atlas-200"] == by_target["atlas-300i-pro"] == "ascend"
    assert by_target["sophon-se7"] == "sophon"
    # edgeconv-sophon builds for bm1684x/bm1688/cv186x: the SE5's BM1684 falls back to its CPU, and says so
    assert by_target["sophon-se5"] == "onnxruntime" and "bm1684" in CATALOGUE["sophon-se5"].note
    assert by_target["jetson-orin-nano"] == by_target["jetson-agx-orin"] == "tensorrt"


def _catalogues() -> dict[str, dict]:
    """Each registered catalogue's profiles as its TOML file holds them, by the plugin that ships it."""
    import tomllib
    from importlib.resources import files

    return {cat.plugin or cat.package: tomllib.loads((files(cat.package) / cat.resource).read_text("utf-8"))["devices"]
            for cat in registry().devices.values()}


def test_a_plugin_s_profiles_ship_with_the_plugin_and_nowhere_else():
    cats = _catalogues()
    # the profiles of the vendor targets moved out of the core's catalogue into their plugins (register_devices)
    for plugin, names in {"tensorrt": {"jetson-orin-nano", "jetson-agx-orin"}, "ascend": {"atlas-200", "atlas-300i-pro"},
                          "sophon": {"sophon-se7"}, "tflite": {"raspberry-pi-4", "raspberry-pi-5", "rk3588-cpu"},
                          "openvino": {"intel-core-edge", "intel-atom-edge"}}.items():
        assert set(cats[plugin]) == names, plugin
        assert {CATALOGUE[n].provider for n in names} == {plugin}
    core = cats["edgeconv.builtins.onnxruntime"]
    assert {d["target"] for d in core.values()} == {"onnxruntime"}  # only the core's own target's profiles
    # the CPU fallbacks of those devices stay in the core (their target is the core's onnxruntime)
    assert core["jetson-nano"]["target"] == core["sophon-se5"]["target"] == "onnxruntime"
    seen: dict[str, str] = {}
    for plugin, devices in cats.items():
        for name in devices:
            assert name not in seen, f"{name} is in the catalogues of both {seen[name]} and {plugin}"
            seen[name] = plugin


@pytest.mark.parametrize("name", sorted(CATALOGUE))
def test_profile_is_consistent_with_its_target(name):
    dev = CATALOGUE[name]
    reg = registry()
    assert dev.target in reg.targets or dev.target in KNOWN_TARGETS, f"{name}: unknown target {dev.target!r}"
    for alt in dev.also:
        assert alt in reg.targets or alt in KNOWN_TARGETS, f"{name}: unknown alternative {alt!r}"
    assert dev.precisions and set(dev.precisions) <= set(PRECISIONS)
    tgt = reg.targets.get(dev.target)
    if tgt is None:  # plugin not installed here: its option names cannot be checked
        pytest.skip(f"target {dev.target} is not installed: options {sorted(dev.options)} unchecked")
    declared = {o.name: o for o in tgt.options}
    for key, value in dev.options.items():
        assert key in declared, f"{name}: {dev.target} has no option {key!r} (it has {sorted(declared)})"
        declared[key].parse(str(value), tgt.name)  # a value the option accepts (choices, type)
    assert set(dev.precisions) <= set(tgt.precisions), f"{name}: {dev.precisions} vs {tgt.precisions}"


@pytest.mark.parametrize("name", sorted(CATALOGUE))
def test_every_fact_has_a_source(name):
    dev = CATALOGUE[name]
    needed = {"precisions", *dev.options} | ({"memory", "storage"} - set(dev.unknown))
    missing = needed - set(dev.facts)
    assert not missing, f"{name}: no fact (with its source) for {sorted(missing)}"
    assert not set(dev.unknown) & set(dev.facts), f"{name}: a fact is both known and unknown"
    for key, fact in dev.facts.items():
        assert fact.get("value"), f"{name}.{key}: empty value"
        assert URL.match(fact.get("source", "")), f"{name}.{key}: source {fact.get('source')!r} is not a URL"
        assert fact.get("kind") in ("vendor", "third-party"), f"{name}.{key}: kind {fact.get('kind')!r}"
    assert dev.budgets_reason
    Budgets.parse(*(dev.budgets.get(k) for k in devmod.BUDGET_KEYS))  # every budget parses


def test_names_and_aliases_are_unique():
    seen: dict[str, str] = {}
    for dev in CATALOGUE.values():
        for key in (dev.name, *dev.aliases):
            assert key not in seen, f"{key!r} names both {seen[key]} and {dev.name}"
            seen[key] = dev.name


def test_rk3588_cpu_points_to_the_npu_profile():
    dev = CATALOGUE["rk3588-cpu"]
    assert devmod.get("rk3588").name == "rk3588-cpu"  # the CPU path is there without the rknn plugin
    assert "rk3588-npu" in dev.note and dev.target == "tflite" and "onnxruntime" in dev.also
    assert "rknn" in KNOWN_TARGETS


def test_get_forgives_case_and_aliases_and_suggests():
    assert devmod.get("Jetson_Orin Nano").name == "jetson-orin-nano"
    assert devmod.get("rpi5").name == "raspberry-pi-5"
    with pytest.raises(BadInput) as err:
        devmod.get("raspbery-pi-4")
    assert "did you mean 'raspberry-pi-4'" in err.value.one_line()
    with pytest.raises(BadInput, match="unknown device 'zx-spectrum'"):
        devmod.get("zx-spectrum")


def test_resolve_fills_what_was_not_given():
    r = devmod.resolve("atlas-300i-pro", budgets={"max_size": None, "max_latency": None, "max_accuracy_drop": None})
    assert r.target == "ascend" and r.precision == "fp16"
    assert r.options == {"soc_version": "Ascend310P3"}
    assert r.budgets["max_accuracy_drop"] == "1"
    assert r.from_device == {"target": "ascend", "options.soc_version": "Ascend310P3", "precision": "fp16",
                             "max_accuracy_drop": "1"}


def test_explicit_values_win_one_by_one():
    r = devmod.resolve("atlas-300i-pro", target="ascend", precision="int8", options={"soc_version": "Ascend310P1"},
                       budgets={"max_accuracy_drop": "0.5"})
    assert (r.target, r.precision, r.options, r.budgets["max_accuracy_drop"]) == ("ascend", "int8",
                                                                               {"soc_version": "Ascend310P1"}, "0.5")
    assert r.from_device == {}
    r = devmod.resolve("jetson-orin-nano", options={"workspace_mib": "512"}, calibration="calib.npz")
    assert r.options == {"workspace_mib": "512", "target_trt": "10.3"} and r.precision == "int8"


def test_int8_only_with_calibration_data():
    r = devmod.resolve("raspberry-pi-5")
    assert r.precision == "fp32" and any("--calib" in n for n in r.notes)
    assert devmod.resolve("raspberry-pi-5", calibration="random").precision == "int8"


def test_another_target_drops_the_device_options():
    r = devmod.resolve("jetson-orin-nano", target="onnxruntime")
    assert r.target == "onnxruntime" and r.options == {} and r.precision is None
    assert "target" not in r.from_device and any("overrides the device's target" in n for n in r.notes)


def test_precision_the_installed_target_lacks_is_skipped():
    r = devmod.resolve("sophon-se7", calibration="c.npz", target_precisions=("fp32", "fp16"), target_options=())
    assert r.precision == "fp16" and r.options == {}
    assert any("has no option 'chip'" in n for n in r.notes)


def test_cli_devices_table_and_json(cli):
    res = cli("devices")
    assert res.exit_code == 0, res.output
    assert "jetson-orin-nano" in res.stdout and "tensorrt" in res.stdout
    doc = json.loads(cli("devices", "--json").stdout)
    assert doc["schema"] == "edgeconv.devices/1"
    assert [d["name"] for d in doc["devices"]] == list(CATALOGUE)
    assert {d["target_status"] for d in doc["devices"]} <= {"ready", "missing"}


def test_cli_device_details_show_sources(cli):
    res = cli("devices", "atlas-200")
    assert res.exit_code == 0, res.output
    assert "Ascend310" in res.stdout and "support.huawei.com" in res.stdout and "unknown" in res.stdout
    doc = json.loads(cli("devices", "atlas-200", "--json").stdout)
    assert doc["device"]["options"] == {"soc_version": "Ascend310"}


def test_cli_unknown_device_is_one_line(cli, digits, tmp_path):
    for args in (("devices", "jetsn-nano"), ("convert", str(digits["model"]), "--device", "jetsn-nano", "-o",
                                              str(tmp_path / "o"))):
        res = cli(*args)
        assert res.exit_code == 2
        assert res.stderr.strip().splitlines() == [
            "edgeconv: error: devices: unknown device 'jetsn-nano'; did you mean 'jetson-nano'? (see `edgeconv devices`)"]
    assert not (tmp_path / "o").exists()


def test_cli_convert_with_a_device(cli, digits, tmp_path):
    res = cli("convert", str(digits["model"]), "--device", "jetson-nano", "--data", str(digits["test"]),
              "-o", str(tmp_path / "o"), "--runs", "3", "--no-memory", "--json")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["target"] == "onnxruntime" and doc["precision"] == "fp32"
    assert doc["device"]["from_device"] == {"target": "onnxruntime", "precision": "fp32", "max_accuracy_drop": "1"}
    assert doc["budgets"]["accuracy_drop_pp"]["limit"] == 1.0
    assert "device jetson-nano: filled target=onnxruntime" in res.stderr
    # the artifact itself says which device it was made for, not only the printed report
    for name in ("report.json", "manifest.json"):
        on_disk = json.loads((tmp_path / "o" / name).read_text())
        assert on_disk["device"]["from_device"] == doc["device"]["from_device"], name


def test_cli_explicit_flags_beat_the_device(cli, digits, tmp_path):
    res = cli("convert", str(digits["model"]), "--device", "raspberry-pi-4", "--to", "onnxruntime", "--precision",
              "int8-dynamic", "--max-accuracy-drop", "2", "--data", str(digits["test"]), "-o", str(tmp_path / "o"),
              "--runs", "3", "--no-memory", "--json")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert (doc["target"], doc["precision"]) == ("onnxruntime", "int8-dynamic")
    assert doc["budgets"]["accuracy_drop_pp"]["limit"] == 2.0
    assert doc["device"]["from_device"] == {} and "threads" not in doc["options"]
    assert "overrides the device's target tflite" in res.stderr


def test_the_devices_page_lists_every_profile():
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "devices.md").read_text()
    for name, dev in CATALOGUE.items():
        assert f"| `{name}` | {dev.target} |" in text, f"docs/devices.md: no row for {name} (target {dev.target})"
