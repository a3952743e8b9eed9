"""Options and profiles -> builder settings, the Python builder calls and trtexec command lines.

The trtexec flags are compared with the flags trtexec documents in its ``--help``:
TensorRT 10.5 (a stored capture of ``trtexec --help``, banner ``[TensorRT v100500]``) and 8.6
(``BuildOptions::help`` etc. in NVIDIA/TensorRT samples/common/sampleOptions.cpp of 8.6). The
Python builder is run against a stand-in ``tensorrt`` module that records every call: it checks
which documented API each option drives, not TensorRT itself (that is the GPU test's job).
"""

from __future__ import annotations

import json
import subprocess
import sys
import types
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from edgeconv_tensorrt.build import (  # noqa: E402
    BuildSettings,
    build_with_python,
    build_with_trtexec,
    settings_from_build_json,
    write_build_kit,
)
from edgeconv_tensorrt.prepare import Profile  # noqa: E402
from edgeconv_tensorrt.versions import TrtVersion  # noqa: E402
from trt_testutil import args_of  # noqa: E402

from edgeconv.errors import BadInput, ToolchainFailed  # noqa: E402

# Flags of `trtexec --help`, TensorRT 10.5 (Model, Build, Inference, System options used here).
DOCUMENTED_10 = {
    "--onnx", "--minShapes", "--optShapes", "--maxShapes", "--memPoolSize", "--versionCompatible", "--vc",
    "--excludeLeanRuntime", "--noTF32", "--fp16", "--bf16", "--int8", "--fp8", "--int4", "--best", "--stronglyTyped",
    "--saveEngine", "--loadEngine", "--timingCacheFile", "--builderOptimizationLevel", "--hardwareCompatibilityLevel",
    "--skipInference", "--device", "--pluginInstanceNorm", "--refit", "--directIO",
}
# TensorRT 8.6 sampleOptions.cpp: no --stronglyTyped/--int4/--bf16 yet; --workspace still there.
DOCUMENTED_86 = {
    "--onnx", "--minShapes", "--optShapes", "--maxShapes", "--workspace", "--memPoolSize", "--versionCompatible",
    "--vc", "--excludeLeanRuntime", "--noTF32", "--fp16", "--int8", "--fp8", "--best", "--saveEngine", "--loadEngine",
    "--timingCacheFile", "--builderOptimizationLevel", "--hardwareCompatibilityLevel", "--skipInference", "--device",
    "--refit", "--directIO",
}
RESNET = {"input": Profile("input", (1, 3, 224, 224), (8, 3, 224, 224), (32, 3, 224, 224))}
STATIC = {"input": Profile("input", (1, 3, 224, 224), (1, 3, 224, 224), (1, 3, 224, 224))}


def settings(precision="fp32", version="10.3", profiles=None, **options):
    return BuildSettings.from_options(precision, options, TrtVersion.parse(version), profiles or STATIC)


def flags(argv):
    return [a.split("=", 1)[0] for a in argv[1:]]


def test_profile_and_int8_to_trtexec_exactly():
    s = settings("int8", "10.3", RESNET, workspace_mib=2048, opt_level=4)
    s.timing_cache = "timing.cache"
    assert s.trtexec_argv("resnet18.qdq.onnx", "resnet18.plan") == [
        "trtexec", "--onnx=resnet18.qdq.onnx", "--saveEngine=resnet18.plan", "--skipInference", "--int8", "--noTF32",
        "--minShapes=input:1x3x224x224", "--optShapes=input:8x3x224x224", "--maxShapes=input:32x3x224x224",
        "--memPoolSize=workspace:2048", "--timingCacheFile=timing.cache", "--builderOptimizationLevel=4",
    ]


@pytest.mark.parametrize("version,documented", [("10.3", DOCUMENTED_10), ("10.15", DOCUMENTED_10),
                                                ("8.6", DOCUMENTED_86), ("8.5", DOCUMENTED_86)])
@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_every_emitted_flag_is_documented(version, documented, precision):
    v = TrtVersion.parse(version)
    variants = [{}, {"tf32": True}, {"allow_fp16": precision == "int8"}, {"workspace_mib": 512, "device": 1}]
    if v.has_compatibility_modes:
        variants += [{"version_compatible": True, "exclude_lean_runtime": True},
                     {"hardware_compatibility": "ampere+", "opt_level": 5}]
    if v.has_strongly_typed:
        variants.append({"strongly_typed": True})
    for options in variants:
        s = settings(precision, version, RESNET, **options)
        s.timing_cache = "t.cache"
        emitted = set(flags(s.trtexec_argv("m.onnx", "m.plan")))
        assert emitted <= documented, (options, emitted - documented)


def test_precision_flags_per_version():
    assert "--fp16" in settings("fp16", "8.6").trtexec_argv("m", "p")
    assert "--int8" in settings("int8", "10.3").trtexec_argv("m", "p")
    assert "--fp16" not in settings("int8", "10.3").trtexec_argv("m", "p")  # Q/DQ layers only: int8 + fp32
    assert {"--fp16", "--int8"} <= set(settings("int8", "10.3", allow_fp16=True).trtexec_argv("m", "p"))
    typed = settings("int8", "10.3", strongly_typed=True).trtexec_argv("m", "p")
    assert "--stronglyTyped" in typed and "--int8" not in typed  # strongly typed: the Q/DQ types decide
    # TensorRT 11 removed --fp16/--int8; strong typing is always on and has no flag any more.
    for precision in ("fp16", "int8"):
        argv = settings(precision, "11.0").trtexec_argv("m", "p")
        assert not {"--fp16", "--int8", "--stronglyTyped", "--best"} & set(flags(argv))
    assert settings("fp32", "10.3", tf32=True).trtexec_argv("m", "p")[-1] == "--skipInference"


def test_compatibility_modes_map_to_flags():
    argv = settings("fp16", "10.3", version_compatible=True, exclude_lean_runtime=True,
                    hardware_compatibility="ampere+").trtexec_argv("m", "p")
    assert {"--versionCompatible", "--excludeLeanRuntime", "--hardwareCompatibilityLevel=ampere+"} <= set(argv)
    s = settings("fp16", "8.6", version_compatible=True)
    assert s.builder_flags() == ["FP16", "VERSION_COMPATIBLE"]
    assert s.parser_flags() == ["NATIVE_INSTANCENORM"]  # 8.6 must ask; 10.x has it on by default
    assert settings("fp16", "10.3", version_compatible=True).parser_flags() == []


@pytest.mark.parametrize("version,options,message", [
    ("8.5", {"version_compatible": True}, "8.6 or newer"),
    ("8.5", {"hardware_compatibility": "ampere+"}, "8.6 or newer"),
    ("10.3", {"exclude_lean_runtime": True}, "needs -O version_compatible"),
    ("8.6", {"strongly_typed": True}, "TensorRT 10"),
    ("10.3", {"strongly_typed": True, "allow_fp16": True}, "strongly typed"),
    ("10.3", {"opt_level": 9}, "0..5"),
    ("8.5", {"opt_level": 2}, "8.6 or newer"),
])
def test_invalid_combinations_are_refused(version, options, message):
    with pytest.raises(BadInput, match=message):
        settings("int8", version, **options)


def test_hardware_compatibility_is_refused_on_jetson():
    with pytest.raises(BadInput, match="Jetson"):
        BuildSettings.from_options("fp16", {"hardware_compatibility": "ampere+"}, TrtVersion.parse("10.3"), STATIC,
                                   jetson=True)


def test_target_version_parsing():
    assert str(TrtVersion.parse("10.3.0.30")) == "10.3.0.30"
    assert TrtVersion.from_banner(100300) == TrtVersion(10, 3, 0) and TrtVersion.from_banner(8601) == TrtVersion(8, 6, 1)
    assert TrtVersion.parse("8.6").opset_range == (7, 17) and TrtVersion.parse("10.15").opset_range == (9, 24)
    with pytest.raises(BadInput, match="older than 8.5"):
        TrtVersion.parse("8.2")
    with pytest.raises(BadInput, match="MAJOR.MINOR"):
        TrtVersion.parse("ten")


# -- the Python builder API, against a recording stand-in ---------------------------------------
class _Enum:
    def __init__(self, kind, names):
        for i, name in enumerate(names):
            setattr(self, name, _Member(kind, name, i))


class _Member:
    def __init__(self, kind, name, value):
        self.kind, self.name, self.value = kind, name, value

    def __int__(self):
        return self.value

    def __repr__(self):
        return f"{self.kind}.{self.name}"


def fake_tensorrt(calls: list, *, parse_ok=True, build_ok=True, version="10.3.0.30"):
    trt = types.ModuleType("tensorrt")
    trt.__version__ = version
    trt.BuilderFlag = _Enum("BuilderFlag", ["FP16", "INT8", "TF32", "VERSION_COMPATIBLE", "EXCLUDE_LEAN_RUNTIME"])
    trt.NetworkDefinitionCreationFlag = _Enum("NetworkDefinitionCreationFlag", ["EXPLICIT_BATCH", "STRONGLY_TYPED"])
    trt.MemoryPoolType = _Enum("MemoryPoolType", ["WORKSPACE"])
    trt.HardwareCompatibilityLevel = _Enum("HardwareCompatibilityLevel", ["NONE", "AMPERE_PLUS"])
    trt.OnnxParserFlag = _Enum("OnnxParserFlag", ["NATIVE_INSTANCENORM"])

    class ILogger:
        def __init__(self):
            pass

    class Recorder:
        def __init__(self, name):
            self._name = name

        def __getattr__(self, attr):
            def call(*args, **kwargs):
                calls.append((f"{self._name}.{attr}", args, kwargs))
                return _RESULTS.get(attr, lambda: None)()
            return call

        def __setattr__(self, attr, value):
            if attr.startswith("_"):
                return object.__setattr__(self, attr, value)
            calls.append((f"{self._name}.{attr}=", (value,), {}))

    class TimingCache(Recorder):
        def serialize(self):
            calls.append(("cache.serialize", (), {}))
            return b"timing-cache-bytes"

    config = Recorder("config")
    _RESULTS = {
        "create_network": lambda: Recorder("network"),
        "create_builder_config": lambda: config,
        "create_optimization_profile": lambda: Recorder("profile"),
        "create_timing_cache": lambda: TimingCache("cache"),
        "get_timing_cache": lambda: TimingCache("cache"),
        "parse_from_file": lambda: parse_ok,
        "build_serialized_network": lambda: (b"PLAN-BYTES" if build_ok else None),
    }

    def Builder(logger):  # noqa: N802 (TensorRT's class name)
        calls.append(("trt.Builder", (), {}))
        return Recorder("builder")

    def OnnxParser(network, logger):  # noqa: N802
        parser = Recorder("parser")
        object.__setattr__(parser, "num_errors", 0 if parse_ok else 1)
        object.__setattr__(parser, "get_error", lambda i: "In node 3 (importFoo): UNSUPPORTED_NODE")
        return parser

    trt.ILogger, trt.Builder, trt.OnnxParser = ILogger, Builder, OnnxParser
    return trt


def _names(calls):
    return [c[0] for c in calls]


def test_python_builder_calls_for_an_int8_profile_build(tmp_path):
    calls: list = []
    trt = fake_tensorrt(calls)
    s = settings("int8", "10.3", RESNET, workspace_mib=1024, version_compatible=True, hardware_compatibility="ampere+",
                 opt_level=3)
    s.timing_cache = str(tmp_path / "timing.cache")
    info = build_with_python(tmp_path / "m.qdq.onnx", tmp_path / "m.plan", s, tmp_path / "build.log", trt=trt)
    assert (tmp_path / "m.plan").read_bytes() == b"PLAN-BYTES"
    assert (tmp_path / "timing.cache").read_bytes() == b"timing-cache-bytes"
    by = {name: (args, kwargs) for name, args, kwargs in calls}
    assert by["builder.create_network"][0] == (0,)  # TensorRT 10: explicit batch is implied
    assert by["parser.parse_from_file"][0] == (str(tmp_path / "m.qdq.onnx"),)
    set_flags = [repr(args[0]) for name, args, _ in calls if name == "config.set_flag"]
    assert set_flags == ["BuilderFlag.INT8", "BuilderFlag.VERSION_COMPATIBLE"]
    assert [repr(a[0]) for n, a, _ in calls if n == "config.clear_flag"] == ["BuilderFlag.TF32"]
    assert by["config.set_memory_pool_limit"][0] == (trt.MemoryPoolType.WORKSPACE, 1024 << 20)
    assert by["profile.set_shape"][0] == ("input", (1, 3, 224, 224), (8, 3, 224, 224), (32, 3, 224, 224))
    assert "config.add_optimization_profile" in by
    assert by["config.hardware_compatibility_level="][0] == (trt.HardwareCompatibilityLevel.AMPERE_PLUS,)
    assert by["config.builder_optimization_level="][0] == (3,)
    assert by["config.create_timing_cache"][0] == (b"",) and by["config.set_timing_cache"][1] == {"ignore_mismatch": False}
    assert _names(calls).index("config.set_timing_cache") < _names(calls).index("builder.build_serialized_network")
    assert info["tensorrt"] == "10.3.0.30" and "config.set_flag(BuilderFlag.INT8)" in info["calls"]


def test_python_builder_on_8x_sets_explicit_batch_and_reports_parser_errors(tmp_path):
    calls: list = []
    trt = fake_tensorrt(calls)
    s = settings("fp16", "8.6", version_compatible=True)
    build_with_python(tmp_path / "m.onnx", tmp_path / "m.plan", s, trt=trt)
    create = next(a for n, a, _ in calls if n == "builder.create_network")
    assert create == (1 << 0,)  # 1 << int(NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    assert any(n == "parser.set_flag" and repr(a[0]) == "OnnxParserFlag.NATIVE_INSTANCENORM" for n, a, _ in calls)
    with pytest.raises(ToolchainFailed, match="parser rejected m.onnx: In node 3"):
        build_with_python(tmp_path / "m.onnx", tmp_path / "m.plan", s, trt=fake_tensorrt([], parse_ok=False))
    with pytest.raises(ToolchainFailed, match="failed to build the engine"):
        build_with_python(tmp_path / "m.onnx", tmp_path / "x.plan", s, trt=fake_tensorrt([], build_ok=False))
    assert not (tmp_path / "x.plan").exists()


# -- trtexec and the build kit ---------------------------------------------------------------
def test_build_with_trtexec_runs_the_documented_command(fake_trtexec, tmp_path):
    s = settings("int8", "10.3", RESNET)
    info = build_with_trtexec(str(fake_trtexec), tmp_path / "m.onnx", tmp_path / "m.plan", s, tmp_path / "log.txt")
    assert (tmp_path / "m.plan").read_text() == "fake-plan"
    assert info["tensorrt"] == "10.3.0" and info["builder"] == "trtexec"
    assert args_of(fake_trtexec) == s.trtexec_argv(str(tmp_path / "m.onnx"), str(tmp_path / "m.plan"))[1:]


def test_build_with_trtexec_failure_is_exit_4_with_the_log_tail(fake_trtexec, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_TRTEXEC_FAIL", "1")
    with pytest.raises(ToolchainFailed, match="trtexec failed \\(exit 1\\).*Error Code 4") as err:
        build_with_trtexec(str(fake_trtexec), tmp_path / "m.onnx", tmp_path / "m.plan", settings())
    assert err.value.exit_code == 4


def test_build_kit_reproduces_the_build(fake_trtexec, tmp_path):
    s = settings("int8", "10.3", RESNET, workspace_mib=256, version_compatible=True)
    s.timing_cache = str(tmp_path / "elsewhere" / "timing.cache")
    kit = write_build_kit(tmp_path, "m.qdq.onnx", "m.plan", s)
    doc = json.loads(kit["build.json"].read_text())
    assert doc["schema"] == "edgeconv.tensorrt.build/1" and doc["onnx"] == "m.qdq.onnx"
    assert doc["trtexec"]["argv"][1:4] == ["--onnx=m.qdq.onnx", "--saveEngine=m.plan", "--skipInference"]
    assert "--timingCacheFile=timing.cache" in doc["trtexec"]["argv"]  # relative: the folder travels to the device
    back = settings_from_build_json(doc)
    assert back.trtexec_argv("a", "b") == BuildSettings(**{**s.__dict__, "timing_cache": "timing.cache"}).trtexec_argv("a", "b")
    proc = subprocess.run(["sh", str(kit["trtexec.sh"])], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert args_of(fake_trtexec) == doc["trtexec"]["argv"][1:]
    assert (tmp_path / "m.plan").read_text() == "fake-plan"
