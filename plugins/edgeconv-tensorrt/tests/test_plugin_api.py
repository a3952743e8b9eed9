"""The tensorrt plugin on the plugin API (docs/hooks.md): its declared API version, its passes (every transformation
is a pass; hand-offs through ``job.state``), child processes through the core's worker, manifests as untrusted
input (only the declared runner settings), and the device profiles it ships."""

from __future__ import annotations

import json
import sys
from importlib.resources import files
from pathlib import Path

import onnx
import pytest
import tomllib

sys.path.insert(0, str(Path(__file__).parent))
from trt_testutil import conv_model, make_job, save, write_script  # noqa: E402

import edgeconv  # noqa: E402
from edgeconv.plugin import API_VERSION, ToolchainFailed  # noqa: E402


def test_declares_the_plugin_api_and_registers_its_passes(trt_plugin):
    from edgeconv_tensorrt import hooks

    assert hooks.EDGECONV_API == "1.0" and API_VERSION.split(".")[0] == "1"
    reg = trt_plugin.registry()
    info = {p.name: p for p in trt_plugin.plugins()}["tensorrt"]
    assert not info.broken and {"register_passes", "register_devices"} <= set(info.hooks)
    target = reg.targets["tensorrt"]
    assert dict(target.precision_passes) == {"fp32": ("tensorrt.prepare",),
                                             "fp16": ("tensorrt.prepare", "tensorrt.fp16"),
                                             "int8": ("tensorrt.prepare", "tensorrt.qdq")}
    for names in target.precision_passes.values():
        for name in names:
            p = reg.passes[name]
            assert p.kind == "precision" and p.form == "onnx" and p.plugin == "tensorrt"
    assert dict(reg.runners["tensorrt"].options) == {"engine": dict, "device": int, "prepared_only": bool,
                                                     "command": str}


def test_the_passes_hand_off_through_job_state_only(tmp_path, trt_plugin):
    from edgeconv_tensorrt import passes

    model = edgeconv.load(save(conv_model(), tmp_path / "m.onnx"))
    job = make_job(tmp_path, model, "int8", {"prepare_only": True})
    with pytest.raises(ToolchainFailed, match="tensorrt.prepare pass did not run"):
        passes.qdq(model, job)  # nothing from a module global: without the plan in job.state, no QDQ
    prepared, info = passes.prepare_for_tensorrt(model, job)
    plan = job.state[passes.PLAN]
    assert plan.version.short == "10.3" and plan.builder is None and info["settings"]["opset"] == 17
    assert prepared.form == "onnx" and prepared.obj is not model.obj  # the source's proto is never changed
    other = job.fork()  # a forked job (another --precision auto candidate) starts from a copy of the state
    other.state.pop(passes.PLAN)
    assert passes.PLAN in job.state


def test_fp16_on_a_weakly_typed_network_is_the_builders_flag(tmp_path, trt_plugin):
    from edgeconv_tensorrt import passes

    model = edgeconv.load(save(conv_model(), tmp_path / "m.onnx"))
    job = make_job(tmp_path, model, "fp16", {"prepare_only": True, "target_trt": "10.3"})
    prepared, _ = passes.prepare_for_tensorrt(model, job)
    same, info = passes.fp16(prepared, job)
    assert same is prepared and info["applied"] is False and "BuilderFlag.FP16" in info["reason"]
    assert passes.FP16 not in job.state
    assert "FP16" in job.state[passes.PLAN].settings.builder_flags()


def test_keep_float_stays_float32_in_the_fp16_onnx_of_a_strongly_typed_network(tmp_path, trt_plugin):
    src = save(conv_model(), tmp_path / "m.onnx")
    out = tmp_path / "o"
    r = edgeconv.convert(src, "tensorrt", precision="fp16", output=out, verify=False,
                         options={"prepare_only": True, "target_trt": "11.0", "keep_float": "fc"})
    assert r.exit_code == 3
    model = onnx.load(str(out / "m.fp16.onnx"))
    types = {i.name: i.data_type for i in model.graph.initializer}
    assert types["w"] == onnx.TensorProto.FLOAT16  # the conv computes in fp16
    assert types["fc_w"] == types["fc_b"] == onnx.TensorProto.FLOAT  # the kept Gemm in fp32
    info = {p["name"]: p for p in r.report["passes"]}["tensorrt.fp16"]
    assert info["applied"] and info["settings"]["keep_float"] == ["fc"]


# -- manifests are untrusted input -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def kit(tmp_path_factory, digits):
    out = tmp_path_factory.mktemp("kit") / "digits-trt"
    r = edgeconv.convert(digits["model"], "tensorrt", output=out, verify=False, options={"prepare_only": True})
    assert r.exit_code == 3
    return out


@pytest.mark.parametrize("changes, why", [
    ({"trtexec": "/bin/sh"}, "runner option 'trtexec' is not one the tensorrt runner takes"),
    ({"command": ["sh", "-c", "id"]}, "runner option 'command' is list, not str"),
    ({"device": "0"}, "runner option 'device' is str, not int"),
])
def test_a_manifest_with_an_undeclared_or_mistyped_runner_option_is_refused(kit, digits, cli, changes, why):
    manifest = json.loads((kit / "manifest.json").read_text())
    saved = dict(manifest["runner_options"])
    try:
        manifest["runner_options"] = {**saved, **changes}
        (kit / "manifest.json").write_text(json.dumps(manifest))
        res = cli("verify", str(digits["model"]), str(kit))
        assert res.exit_code == 2, res.output
        assert why in res.stderr and len(res.stderr.strip().splitlines()) == 1
    finally:
        manifest["runner_options"] = saved
        (kit / "manifest.json").write_text(json.dumps(manifest))


# -- child processes: the core's worker --------------------------------------------------------------------------
def test_trtexec_runs_isolated_in_a_scratch_folder(tmp_path, monkeypatch):
    from edgeconv_tensorrt.build import build_with_trtexec
    from test_build_settings import settings

    (tmp_path / "bin").mkdir()
    trtexec = write_script(tmp_path / "bin" / "trtexec",
                           'echo "cwd=$(pwd)" > "$(dirname "$0")/seen"; echo "pythonpath=${PYTHONPATH:-}" >> '
                           '"$(dirname "$0")/seen"; echo "preload=${LD_PRELOAD:-}" >> "$(dirname "$0")/seen"\n'
                           'for a in "$@"; do case "$a" in --saveEngine=*) printf p > "${a#--saveEngine=}";; esac; done\n')
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PYTHONPATH", str(tmp_path / "evil"))
    monkeypatch.setenv("LD_PRELOAD", str(tmp_path / "evil.so"))
    build_with_trtexec(str(trtexec), tmp_path / "m.onnx", tmp_path / "m.plan", settings(), tmp_path / "build.log")
    seen = dict(line.split("=", 1) for line in (trtexec.parent / "seen").read_text().splitlines())
    assert seen["cwd"] != str(tmp_path) and "edgeconv-child-" in seen["cwd"]  # never the caller's folder
    assert not Path(seen["cwd"]).exists()  # the scratch folder is removed afterwards
    assert seen["pythonpath"] == "" and seen["preload"] == ""
    assert (tmp_path / "build.log").read_text().startswith("# " + str(trtexec))


def test_a_hung_trtexec_is_stopped_with_a_one_line_error(tmp_path):
    from edgeconv_tensorrt.build import build_with_trtexec
    from test_build_settings import settings

    (tmp_path / "bin").mkdir()
    trtexec = write_script(tmp_path / "bin" / "trtexec", "sleep 60\n")
    with pytest.raises(ToolchainFailed, match=r"trtexec did not finish within 1 s") as err:
        build_with_trtexec(str(trtexec), tmp_path / "m.onnx", tmp_path / "m.plan", settings(), timeout=1)
    assert err.value.exit_code == 4


def test_doctor_reads_the_trtexec_banner_through_the_worker(tmp_path):
    from edgeconv_tensorrt.doctor import trtexec_version

    (tmp_path / "bin").mkdir()
    good = write_script(tmp_path / "bin" / "trtexec", 'echo "&&&& RUNNING TensorRT.trtexec [TensorRT v100300]"\n')
    assert str(trtexec_version(str(good))) == "10.3.0"
    assert trtexec_version(str(tmp_path / "missing")) is None


# -- device profiles ---------------------------------------------------------------------------------------------
def test_ships_and_registers_its_device_profiles(trt_plugin):
    reg = trt_plugin.registry()
    cat = reg.devices["edgeconv_tensorrt"]
    assert cat.resource == "devices.toml" and cat.plugin == "tensorrt"
    doc = tomllib.loads((files("edgeconv_tensorrt") / "devices.toml").read_text(encoding="utf-8"))
    assert doc["schema"] == "edgeconv.devices/1"
    devices = doc["devices"]
    assert sorted(devices) == ["jetson-agx-orin", "jetson-orin-nano"]
    target = reg.targets["tensorrt"]
    declared = {o.name: o for o in target.options}
    for name, dev in devices.items():
        assert dev["target"] == "tensorrt" and set(dev["precisions"]) <= set(target.precisions), name
        for key, value in dev["options"].items():
            declared[key].parse(str(value), "tensorrt")
        needed = {"precisions", *dev["options"]} | ({"memory", "storage"} - set(dev.get("unknown", ())))
        assert needed <= set(dev["facts"]), name
        assert all(f["source"].startswith("http") and f["kind"] in ("vendor", "third-party")
                   for f in dev["facts"].values()), name
    assert devices["jetson-orin-nano"]["facts"]["target_trt"]["value"].startswith("JetPack 6.1 / 6.2")
    from edgeconv import devices as devmod

    assert devmod.get("orin-nano").target == "tensorrt"  # found through the registered catalogues

