"""The sophon plugin on the plugin API (docs/hooks.md), without the tpu-mlir environment: its declared API version,
INT8 calibration as the ``sophon.calibrate`` pass (hand-offs through ``job.state``), bmrt_test through the core's
worker, manifests as untrusted input (only the declared runner settings) and the device profiles it ships. The
toolchain tests (``-m toolchain``) run the same paths in tpu-mlir itself."""

from __future__ import annotations

import hashlib
import json
from importlib.resources import files
from pathlib import Path
from types import SimpleNamespace

import pytest
import tomllib

from edgeconv.plugin import API_VERSION, IOContract, TensorSpec, ToolchainFailed


def test_declares_the_plugin_api_and_registers_its_pass(fresh_plugins):
    from edgeconv_sophon import hooks

    assert hooks.EDGECONV_API == "1.0" and API_VERSION.split(".")[0] == "1"
    reg = fresh_plugins.registry()
    info = {p.name: p for p in fresh_plugins.plugins()}["sophon"]
    assert not info.broken and {"register_passes", "register_devices"} <= set(info.hooks)
    assert dict(reg.targets["sophon"].precision_passes) == {"int8": ("sophon.calibrate",)}
    p = reg.passes["sophon.calibrate"]
    assert p.kind == "precision" and p.form == "onnx" and p.plugin == "sophon"
    assert dict(reg.runners["bmodel"].options) == hooks.RUNNER_OPTIONS == {
        "chip": str, "quantize": str, "tpu_mlir": str, "output_names": list}


def _job(tmp_path, precision="int8", **state):
    return SimpleNamespace(options={"chip": "bm1684x"}, precision=precision, state=dict(state), workdir=tmp_path,
                           scratch=tmp_path, stem="m", warn=lambda m: None, status=lambda m: None)


def test_the_exporter_reuses_the_passes_transform_and_needs_its_table(tmp_path, monkeypatch):
    from edgeconv_sophon import export

    model = SimpleNamespace(obj=object(), io=IOContract((), ()), path=None)
    made = export.Transform(model.obj, None, tmp_path, "m", None, [], tmp_path / "in.npz", "top.npz", "1.30.2")
    job = _job(tmp_path, **{export.TRANSFORM: made})
    monkeypatch.setattr(export, "transform", lambda m, j: pytest.fail("model_transform ran again"))
    assert export.transform_of(model, job) is made  # the same model: model_transform is not run twice
    with pytest.raises(ToolchainFailed, match="calibration table of the sophon.calibrate pass"):
        export.export(model, job)  # INT8 without the pass's table: a broken plugin, said so
    other = SimpleNamespace(obj=object(), io=model.io, path=None)  # another model: its own transform
    monkeypatch.setattr(export, "transform", lambda m, j: "new")
    assert export.transform_of(other, job) == "new" and job.state[export.TRANSFORM] == "new"


# -- manifests are untrusted input -------------------------------------------------------------------------------
def _bmodel_folder(tmp_path: Path, runner_options: dict) -> Path:
    """An output folder as the exporter writes it (a placeholder bmodel: the manifest is refused before it is read)."""
    from edgeconv.report import MANIFEST_SCHEMA

    out = tmp_path / "o"
    out.mkdir()
    (out / "m.bmodel").write_bytes(b"placeholder")
    io = IOContract((TensorSpec("input", (1, 1, 8, 8), "float32"),), (TensorSpec("logits", (1, 10), "float32"),))
    manifest = {"schema": MANIFEST_SCHEMA, "form": "bmodel", "target": "sophon", "artifact": ["m.bmodel"],
                "files": {"m.bmodel": hashlib.sha256(b"placeholder").hexdigest()}, "io": io.to_dict(),
                "runner_options": runner_options}
    (out / "manifest.json").write_text(json.dumps(manifest))
    return out


GOOD = {"chip": "bm1684x", "quantize": "F16", "tpu_mlir": "1.30.2", "output_names": ["logits"]}


@pytest.mark.parametrize("changes, why", [
    ({"per_call": True}, "runner option 'per_call' is not one the bmodel runner takes"),
    ({"start_timeout": 1e9}, "runner option 'start_timeout' is not one the bmodel runner takes"),
    ({"output_names": "logits"}, "runner option 'output_names' is str, not list"),
    ({"chip": ["bm1684x"]}, "runner option 'chip' is list, not str"),
])
def test_a_manifest_with_an_undeclared_or_mistyped_runner_option_is_refused(tmp_path, digits, cli, fresh_plugins,
                                                                            changes, why):
    out = _bmodel_folder(tmp_path, {**GOOD, **changes})
    res = cli("verify", str(digits["model"]), str(out))
    assert res.exit_code == 2, res.output
    assert why in res.stderr and len(res.stderr.strip().splitlines()) == 1


# -- child processes: the core's worker --------------------------------------------------------------------------
def test_bmrt_test_runs_through_the_worker(tmp_path, monkeypatch):
    from edgeconv_sophon import export

    bmrt = tmp_path / "bin" / "bmrt_test"
    bmrt.parent.mkdir()
    bmrt.write_text('#!/bin/sh\n{ echo "cwd=$(pwd)"; echo "pythonpath=${PYTHONPATH:-}"; echo "args=$*"; '
                    f'ls "$2"; }} > "{tmp_path}/seen"\necho "+++ compare passed"\n')
    bmrt.chmod(0o755)
    monkeypatch.setattr(export, "sophon_device", lambda: {"device_nodes": ["/dev/bm-sophon0"], "bmrt_test": str(bmrt),
                                                          "present": True})
    monkeypatch.setenv("PYTHONPATH", str(tmp_path / "evil"))
    monkeypatch.chdir(tmp_path)
    context = tmp_path / "bmrt_context"
    context.mkdir()
    (tmp_path / "m.bmodel").write_bytes(b"b")
    got = export.device_check(context, tmp_path / "m.bmodel", timeout=60)
    assert got["ran"] and got["passed"] and got["tail"] == "+++ compare passed"
    seen = (tmp_path / "seen").read_text().splitlines()
    assert seen[0] != f"cwd={tmp_path}" and "edgeconv-child-" in seen[0] and seen[1] == "pythonpath="
    assert seen[2] == f"args=--context_dir {context}" and "compilation.bmodel" in seen[3:]
    assert not (context / "compilation.bmodel").exists()  # the copy for bmrt_test is removed afterwards
    bmrt.write_text("#!/bin/sh\nsleep 60\n")
    hung = export.device_check(context, tmp_path / "m.bmodel", timeout=1)
    assert hung["ran"] is False and "did not finish within 1 s" in hung["reason"]


def test_tool_output_is_read_in_the_order_it_was_printed(tmp_path, monkeypatch):
    """tpu-mlir prints a comparison's header ("[Running]: npz_tool.py compare A B") on stderr and its result on
    stdout; the worker reads the two pipes apart, so TOOL_MAIN joins them in the child. Run here with this Python as
    the environment and a stand-in tool on PATH (TOOL_MAIN's fallback for a tpu-mlir without the wheel)."""
    import sys

    from edgeconv_sophon import tpumlir

    from edgeconv.plugin import Toolchain, ToolchainEnv

    bindir = tmp_path / "bin"
    bindir.mkdir()
    tool = bindir / "model_transform.py"
    tool.write_text(f"#!{sys.executable}\nimport sys\n"
                    "print('[Running]: npz_tool.py compare m_top.npz m_ref.npz', file=sys.stderr, flush=True)\n"
                    "print('min_similarity = (0.99, 0.9, 20.5)')\nprint('npz compare PASSED.')\n")
    tool.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}:{__import__('os').environ['PATH']}")
    env = ToolchainEnv(Toolchain("sophon", "tpu-mlir", "3.10", ()), [sys.executable], "setting")
    res = tpumlir.run_tool(env, "model_transform", ["--x"], workdir=tmp_path, log=tmp_path / "t.log", timeout=60)
    assert res["compares"] == [{"target": "m_top.npz", "reference": "m_ref.npz", "cosine": 0.99, "euclidean": 0.9,
                                "sqnr_db": 20.5, "passed": True}]


# -- device profiles ---------------------------------------------------------------------------------------------
def test_ships_and_registers_its_device_profiles(fresh_plugins):
    reg = fresh_plugins.registry()
    cat = reg.devices["edgeconv_sophon"]
    assert cat.resource == "devices.toml" and cat.plugin == "sophon"
    doc = tomllib.loads((files("edgeconv_sophon") / "devices.toml").read_text(encoding="utf-8"))
    assert doc["schema"] == "edgeconv.devices/1"
    devices = doc["devices"]
    assert sorted(devices) == ["sophon-se7"]
    target = reg.targets["sophon"]
    declared = {o.name: o for o in target.options}
    for name, dev in devices.items():
        assert dev["target"] == "sophon" and set(dev["precisions"]) <= set(target.precisions), name
        for key, value in dev["options"].items():
            declared[key].parse(str(value), "sophon")
        needed = {"precisions", *dev["options"]} | ({"memory", "storage"} - set(dev.get("unknown", ())))
        assert needed <= set(dev["facts"]), name
        assert all(f["source"].startswith("http") and f["kind"] in ("vendor", "third-party")
                   for f in dev["facts"].values()), name
    from edgeconv import devices as devmod

    assert devmod.get("se7").target == "sophon"
