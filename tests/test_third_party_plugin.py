"""A throw-away third-party plugin, written here against ``edgeconv.plugin`` only, installed as a distribution
(an entry point in the ``edgeconv`` group): it registers a target with its own precision pass, a runner with tuning
variants and manifest options, a device profile and a metric, and converts the digits sample (issue #18)."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

EDGECONV = str(Path(sys.executable).with_name("edgeconv"))

HOOKS = '''
"""The toy backend: an ONNX artifact run by onnxruntime, INT8 weights by its own pass."""

from edgeconv.plugin import (Artifact, DeviceCatalogue, Metric, Option, Pass, Runner, RunnerSpec, Target,
                             from_proto, hookimpl, save_onnx)

EDGECONV_API = "1.0"


@hookimpl
def register_targets(register):
    register(Target(name="toy", title="Toy accelerator", suffix=".toy.onnx", accepts=("onnx",),
                    exporter="edgeconv_toy.hooks:export", artifact_form="toyonnx", precisions=("fp32", "int8"),
                    precision_passes={"int8": ("toy.int8",)},
                    options=(Option("mode", str, "safe", "runner mode stored with the artifact", ("safe", "fast")),)))


@hookimpl
def register_passes(register):
    register(Pass(name="toy.int8", form="onnx", kind="precision", run="edgeconv_toy.hooks:int8_weights",
                  description="weights rounded to a symmetric per-tensor int8 grid"))


@hookimpl
def register_runners(register):
    register(RunnerSpec(form="toyonnx", name="toy runtime", factory="edgeconv_toy.hooks:ToyRunner",
                        options={"mode": str}, tuning="edgeconv_toy.hooks:tuning"))


@hookimpl
def register_devices(register):
    register(DeviceCatalogue(package="edgeconv_toy", resource="devices.toml"))


@hookimpl
def register_metrics(register):
    register(Metric(name="toy_l1", title="mean |error| (toy)", better="lower", compute="edgeconv_toy.hooks:l1",
                    thresholds={"fp32": 1e-4, "int8": 0.5}, format=".3g"))


def l1(ref, out):
    import numpy as np

    return float(np.abs(ref.astype("float64") - out.astype("float64")).mean()) if ref.size else 0.0


def int8_weights(model, job):
    import onnx
    from onnx import numpy_helper

    proto = onnx.ModelProto()
    proto.CopyFrom(model.obj)
    changed = 0
    for init in proto.graph.initializer:
        w = numpy_helper.to_array(init)
        if w.dtype.kind == "f" and w.ndim >= 2:
            scale = float(abs(w).max()) / 127 or 1.0
            init.CopyFrom(numpy_helper.from_array((w / scale).round().clip(-127, 127) * scale, init.name))
            changed += 1
    job.state["toy.quantized"] = changed
    out = from_proto(proto, None)
    out.io = model.io
    return out, {"quantized_initializers": changed}


def export(model, job):
    path = job.workdir / f"{job.stem}.toy.onnx"
    files = save_onnx(model.obj, path)
    return Artifact(path=path, form="toyonnx", io=model.io, files=files, tools={"toy-sdk": "1.0"},
                    runner_options={"mode": job.options["mode"]},
                    details={"quantized_initializers": job.state.get("toy.quantized", 0)})


def tuning(threads=None):
    return [{}, {"mode": "fast"}]


class ToyRunner(Runner):
    name = "toy runtime"

    def __init__(self, model, threads=None, mode="safe", **options):
        super().__init__(model, **options)
        self.mode = mode

    def activate(self):
        import onnxruntime as ort

        so = ort.SessionOptions()
        if self.mode == "safe":
            so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        self.session = ort.InferenceSession(str(self.model.path), so, providers=["CPUExecutionProvider"])
        self.names = [o.name for o in self.session.get_outputs()]
        self.info = {"runtime": "toy runtime 1.0", "mode": self.mode, "where": "local"}

    def infer(self, feed):
        return dict(zip(self.names, self.session.run(None, feed)))
'''

DEVICES = '''
schema = "edgeconv.devices/1"

[devices.toy-board]
title = "Toy board"
vendor = "Toy Inc."
target = "toy"
precisions = ["int8", "fp32"]
options = { mode = "fast" }
budgets = { max_accuracy_drop = 2 }
budgets_reason = "a test profile"
facts.precisions = { value = "int8, fp32", source = "https://example.invalid/toy", kind = "vendor" }
facts.mode = { value = "fast", source = "https://example.invalid/toy", kind = "vendor" }
unknown = ["memory", "storage"]
'''


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("toy-site")
    pkg = root / "edgeconv_toy"
    pkg.mkdir()
    (pkg / "__init__.py").write_text('"""A third-party edgeconv plugin (test)."""\n')
    (pkg / "hooks.py").write_text(textwrap.dedent(HOOKS))
    (pkg / "devices.toml").write_text(DEVICES)
    info = root / "edgeconv_toy-0.1.dist-info"
    info.mkdir()
    (info / "entry_points.txt").write_text("[edgeconv]\ntoy = edgeconv_toy.hooks\n")
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: edgeconv-toy\nVersion: 0.1\n\n")
    return root


def _run(site: Path, *args: str):
    env = {**os.environ, "PYTHONPATH": str(site)}
    return subprocess.run([EDGECONV, *args], capture_output=True, text=True, env=env, timeout=900)


def test_the_plugin_imports_only_the_plugin_api(site):
    tree = ast.parse((site / "edgeconv_toy" / "hooks.py").read_text())
    mods = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)} | \
        {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert {m for m in mods if m and m.startswith("edgeconv")} == {"edgeconv.plugin"}


def test_it_is_discovered_with_its_records(site):
    proc = _run(site, "targets", "--json")
    assert proc.returncode == 0, proc.stderr
    toy = next(t for t in json.loads(proc.stdout)["targets"] if t["name"] == "toy")
    assert toy["status"] == "ready" and toy["provider"] == "edgeconv-toy"
    dev = json.loads(_run(site, "devices", "toy-board", "--json").stdout)["device"]
    assert dev["target"] == "toy" and dev["provider"] == "toy"


def test_it_converts_the_digits_sample_with_its_pass_device_metric_and_runner(site, digits, tmp_path):
    out = tmp_path / "o"
    proc = _run(site, "convert", str(digits["model"]), "--device", "toy-board", "--calib", str(digits["calib"]),
                "--data", str(digits["test"]), "-o", str(out), "--runs", "5", "--no-memory", "--json")
    assert proc.returncode == 0, proc.stderr
    r = json.loads(proc.stdout)
    assert r["target"] == "toy" and r["precision"] == "int8" and r["options"]["mode"] == "fast"  # from the profile
    assert any(p["name"] == "toy.int8" and p["quantized_initializers"] > 0 for p in r["passes"])
    assert r["artifact"]["details"]["quantized_initializers"] > 0  # handed on through job.state
    entry = r["fidelity"][0]
    assert "toy_l1" in entry and entry["toy_l1"] < 0.5  # the plugin's metric is computed and gated
    assert r["versions"]["toy-sdk"] == "1.0" and r["runtime"]["artifact"]["runtime"] == "toy runtime 1.0"
    assert r["accuracy"]["drop_pp"] <= 2.0 and r["verdict"]["status"] == "pass"
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["runner_options"] == {"mode": "fast"}


def test_auto_times_the_plugins_tuning_variants(site, digits, tmp_path):
    proc = _run(site, "convert", str(digits["model"]), "--to", "toy", "-p", "auto", "--calib", str(digits["calib"]),
                "--data", str(digits["test"]), "-o", str(tmp_path / "a"), "--runs", "5", "--no-memory", "--json")
    assert proc.returncode == 0, proc.stderr
    auto = json.loads(proc.stdout)["auto"]
    tried = {v["settings"] for c in auto["candidates"] for v in c["settings_tried"]}
    assert "mode=fast" in tried


def test_a_strict_threshold_on_its_metric_fails_the_conversion(site, digits, tmp_path):
    proc = _run(site, "convert", str(digits["model"]), "--to", "toy", "-p", "int8", "--calib", str(digits["calib"]),
                "--data", str(digits["test"]), "-o", str(tmp_path / "s"), "--runs", "3", "--no-memory", "--json",
                "--threshold", "toy_l1=1e-9")
    assert proc.returncode == 1, proc.stderr
    assert "mean |error| (toy)" in json.loads(proc.stdout)["verdict"]["reason"]  # named by its title
