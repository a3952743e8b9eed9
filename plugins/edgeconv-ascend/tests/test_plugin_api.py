"""The ascend plugin on the plugin API (docs/hooks.md): its declared API version, INT8 as the ``ascend.amct`` pass
(AMCT's deploy ops accepted only in the model that pass made), ATC through the core's worker, manifests as untrusted
input (only the declared runner settings; the interpreter that runs ais_bench never comes from a manifest), and the
device profiles it ships."""

from __future__ import annotations

import json
import sys
from importlib.resources import files
from pathlib import Path

import pytest
import tomllib
from onnx import TensorProto, helper

sys.path.insert(0, str(Path(__file__).parent))
from ascend_testutil import rgb_model  # noqa: E402

import edgeconv  # noqa: E402
from edgeconv.plugin import API_VERSION, BadInput, IOContract, Model, ToolchainFailed  # noqa: E402


def test_declares_the_plugin_api_and_registers_its_pass(ascend_plugin):
    from edgeconv_ascend import hooks

    assert hooks.EDGECONV_API == "1.0" and API_VERSION.split(".")[0] == "1"
    reg = ascend_plugin.registry()
    info = {p.name: p for p in ascend_plugin.plugins()}["ascend"]
    assert not info.broken and {"register_passes", "register_devices"} <= set(info.hooks)
    assert dict(reg.targets["ascend"].precision_passes) == {"int8": ("ascend.amct",)}
    p = reg.passes["ascend.amct"]
    assert p.kind == "precision" and p.form == "onnx" and p.plugin == "ascend"
    runner = reg.runners["om"]
    assert dict(runner.options) == hooks.RUNNER_OPTIONS and "ais_bench_python" not in runner.options
    assert "ais_bench_python" not in {o.name for o in reg.targets["ascend"].options}


def _with_amct_ops():
    model = rgb_model()
    g = model.graph
    g.node[0].input[0] = "q"
    g.node.insert(0, helper.make_node("AscendQuant", ["image"], ["q"], name="quant_conv", scale=1.0, offset=0.0))
    g.node.append(helper.make_node("AscendDequant", ["scores", "deq_scale"], ["deq"], name="dequant_fc"))
    g.initializer.append(helper.make_tensor("deq_scale", TensorProto.UINT64, [1], [1]))
    return model


def test_amct_deploy_ops_pass_only_in_the_model_the_amct_pass_made():
    from edgeconv_ascend.precheck import check_proto

    model = _with_amct_ops()
    refused = {u.op_type for u in check_proto(model, final=True)}
    assert refused == {"AscendQuant", "AscendDequant"}  # a source with them is not ATC-ready ONNX
    assert check_proto(model, final=True, amct=True) == []


# -- manifests are untrusted input -------------------------------------------------------------------------------
@pytest.fixture
def kit(tmp_path, digits, ascend_plugin):
    out = tmp_path / "kit"
    r = edgeconv.convert(digits["model"], "ascend", output=out, verify=False,
                         options={"soc_version": "Ascend310B4", "prepare_only": True})
    assert r.exit_code == 3
    return out


@pytest.mark.parametrize("changes, why", [
    ({"ais_bench_python": "/bin/sh"}, "runner option 'ais_bench_python' is not one the om runner takes"),
    ({"command": ["sh", "-c", "id"]}, "runner option 'command' is list, not str"),
    ({"device": "1"}, "runner option 'device' is str, not int"),
])
def test_a_manifest_with_an_undeclared_or_mistyped_runner_option_is_refused(kit, digits, cli, changes, why):
    manifest = json.loads((kit / "manifest.json").read_text())
    manifest["runner_options"] = {**manifest["runner_options"], **changes}
    (kit / "manifest.json").write_text(json.dumps(manifest))
    res = cli("verify", str(digits["model"]), str(kit))
    assert res.exit_code == 2, res.output
    assert why in res.stderr and len(res.stderr.strip().splitlines()) == 1


def test_the_ais_bench_interpreter_is_not_an_option(digits, tmp_path, cli, ascend_plugin):
    res = cli("convert", str(digits["model"]), "--to", "ascend", "--prepare-only", "-O", "soc_version=Ascend310B4",
              "-O", "ais_bench_python=/bin/sh", "-o", str(tmp_path / "o"))
    assert res.exit_code == 2 and "has no option 'ais_bench_python'" in res.stderr


def test_the_cli_runner_takes_its_interpreter_from_this_host_only(monkeypatch, tmp_path):
    from edgeconv_ascend import runner

    monkeypatch.setenv("EDGECONV_AIS_BENCH_PYTHON", "/opt/ais/bin/python3")
    model = Model(form="om", io=IOContract((), ()), path=tmp_path / "m.om")
    r = runner.AisBenchRunner(model, runner="cli", ais_bench_python="/bin/sh")  # a manifest could not pass it
    assert r.python == "/opt/ais/bin/python3"
    with pytest.raises(BadInput, match="runner 'cli; id' is not one of auto, python, cli"):
        runner.AisBenchRunner(model, runner="cli; id")


# -- ATC through the core's worker -------------------------------------------------------------------------------
def _recording_atc(folder: Path, body: str = "") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    atc = folder / "atc"
    atc.write_text("#!/bin/sh\n"
                   f'{{ echo "cwd=$(pwd)"; echo "pythonpath=${{PYTHONPATH:-}}"; echo "preload=${{LD_PRELOAD:-}}"; }}'
                   f' > "{folder}/seen"\n{body}echo "ATC run success"\n')
    atc.chmod(0o755)
    return atc


def test_atc_runs_without_a_shell_with_cann_s_pythonpath_only(tmp_path, monkeypatch):
    from edgeconv_ascend import atc

    script = _recording_atc(tmp_path / "bin")
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setenv("PYTHONPATH", f"/usr/local/Ascend/ascend-toolkit/latest/python/site-packages{':'}evil{':'}")
    monkeypatch.setenv("LD_PRELOAD", str(tmp_path / "evil.so"))
    result = atc.run([str(script), "--model=a; rm -rf /"], tmp_path / "atc.log", cwd=scratch)
    assert result["ok"] and result["codes"] == []
    seen = dict(line.split("=", 1) for line in (tmp_path / "bin" / "seen").read_text().splitlines())
    assert seen == {"cwd": str(scratch), "pythonpath": "/usr/local/Ascend/ascend-toolkit/latest/python/site-packages",
                    "preload": ""}
    assert (tmp_path / "atc.log").read_text().startswith(f"# {script} '--model=a; rm -rf /'")


def test_a_hung_atc_is_stopped_and_its_log_kept(tmp_path):
    from edgeconv_ascend import atc

    script = _recording_atc(tmp_path / "bin", "echo working; sleep 60\n")
    kept = tmp_path / "o.atc.log"
    with pytest.raises(ToolchainFailed, match=r"ATC did not finish within 1 s \(stopped; log: .*o\.atc\.log\)"):
        atc.run([str(script)], tmp_path / "atc.log", cwd=tmp_path, timeout=1, keep_log_at=kept)
    assert "working" in kept.read_text()


# -- device profiles ---------------------------------------------------------------------------------------------
def test_ships_and_registers_its_device_profiles(ascend_plugin):
    reg = ascend_plugin.registry()
    cat = reg.devices["edgeconv_ascend"]
    assert cat.resource == "devices.toml" and cat.plugin == "ascend"
    doc = tomllib.loads((files("edgeconv_ascend") / "devices.toml").read_text(encoding="utf-8"))
    assert doc["schema"] == "edgeconv.devices/1"
    devices = doc["devices"]
    assert sorted(devices) == ["atlas-200", "atlas-300i-pro"]
    target = reg.targets["ascend"]
    declared = {o.name: o for o in target.options}
    for name, dev in devices.items():
        assert dev["target"] == "ascend" and set(dev["precisions"]) <= set(target.precisions), name
        for key, value in dev["options"].items():
            declared[key].parse(str(value), "ascend")  # soc_version is one of the SoCs ATC takes
        needed = {"precisions", *dev["options"]} | ({"memory", "storage"} - set(dev.get("unknown", ())))
        assert needed <= set(dev["facts"]), name
        assert all(f["source"].startswith("http") and f["kind"] in ("vendor", "third-party")
                   for f in dev["facts"].values()), name
    assert devices["atlas-300i-pro"]["options"] == {"soc_version": "Ascend310P3"}
    from edgeconv import devices as devmod

    assert devmod.get("atlas-200-dk").target == "ascend"
