"""A plan's record against the host: refused with the reason and the fix, before TensorRT loads it."""

from __future__ import annotations

import pytest
from edgeconv_tensorrt import runner as runner_mod
from edgeconv_tensorrt.compat import ensure_compatible, problems

from edgeconv.errors import ToolchainMissing
from edgeconv.model import IOContract, Model

ORIN = {"tensorrt": "10.3.0.30", "gpu": "Orin", "compute_capability": "8.7", "cuda_runtime": "12.6",
        "machine": "aarch64", "jetson": "# R36 (release), REVISION: 4.3", "version_compatible": False,
        "hardware_compatibility": "none", "profiles": {}}
HOST = {"tensorrt": "10.3.0.30", "gpu": "Orin", "compute_capability": "8.7", "cuda_runtime": "12.6",
        "machine": "aarch64", "jetson": "# R36 (release), REVISION: 4.3"}


def host(**changes):
    return {**HOST, **changes}


def record(**changes):
    return {**ORIN, **changes}


def test_the_same_host_loads():
    assert problems(record(), host()) == ([], [])


@pytest.mark.parametrize("rec,here,needle", [
    (record(), host(tensorrt="10.7.0.23"), "TensorRT 10.7.0.23 is not 10.3.0.30"),
    (record(), host(tensorrt="8.6.2.3"), "unless built with -O version_compatible=true"),
    (record(version_compatible=True), host(tensorrt="10.0.1"), "older than 10.3.0.30"),
    (record(), host(compute_capability="8.9", gpu="NVIDIA GeForce RTX 4090", machine="aarch64"),
     "compute capability 8.9 is not 8.7"),
    (record(hardware_compatibility="ampere+", jetson=None, machine="x86_64"),
     host(compute_capability="7.5", gpu="Tesla T4", machine="x86_64", jetson=None), "older than Ampere"),
    (record(), host(machine="x86_64"), "built on aarch64, this host is x86_64"),
    (record(), host(tensorrt=None), "no TensorRT Python runtime"),
    (record(), host(compute_capability=None, gpu=None), "no usable NVIDIA GPU"),
])
def test_mismatches_are_refused_with_the_reason(rec, here, needle):
    errors, _ = problems(rec, here)
    assert any(needle in e for e in errors), errors


@pytest.mark.parametrize("rec,here,needle", [
    (record(), host(tensorrt="10.3.0.26"), "build 10.3.0.26 differs"),
    (record(gpu="Jetson AGX Orin"), host(gpu="Jetson Orin Nano"), "same compute capability"),
    (record(cuda_runtime="11.4"), host(), "CUDA runtime 12.6 here, 11.4"),
])
def test_small_differences_only_warn(rec, here, needle):
    errors, warns = problems(rec, here)
    assert not errors and any(needle in w for w in warns), warns


def test_compatible_builds_load_on_newer_tensorrt_and_other_gpus():
    assert problems(record(version_compatible=True), host(tensorrt="10.7.0"))[0] == []
    dgpu = dict(jetson=None, machine="x86_64")
    assert problems(record(hardware_compatibility="ampere+", compute_capability="8.6", **dgpu),
                    host(compute_capability="8.9", gpu="NVIDIA L4", **dgpu))[0] == []


def test_refusal_message_names_both_sides_and_the_fix():
    with pytest.raises(ToolchainMissing) as err:
        ensure_compatible(record(), host(tensorrt="10.7.0.23", compute_capability="8.9", gpu="NVIDIA L4",
                                         machine="x86_64"), "resnet18.plan")
    text = err.value.one_line()
    assert err.value.exit_code == 3
    assert "resnet18.plan cannot run on this host: built with TensorRT 10.3.0.30, Orin (compute capability 8.7), aarch64" in text
    assert "this host has TensorRT 10.7.0.23, NVIDIA L4 (compute capability 8.9), x86_64" in text
    assert "bash trtexec.sh" in text  # the fix


def test_runner_refuses_before_tensorrt_is_imported(tmp_path, monkeypatch):
    plan = tmp_path / "m.plan"
    plan.write_bytes(b"not a real plan")
    monkeypatch.setattr(runner_mod, "host_info", lambda device=0: host(tensorrt="10.7.0.23"))
    r = runner_mod.TRTRunner(Model(form="tensorrt", io=IOContract((), ()), path=plan), engine=record())
    with pytest.raises(ToolchainMissing, match="TensorRT 10.7.0.23 is not 10.3.0.30"):
        r.activate()
    assert "tensorrt" not in __import__("sys").modules


def test_runner_on_a_build_kit_says_how_to_build(tmp_path):
    kit = tmp_path / "build.json"
    kit.write_text("{}")
    r = runner_mod.TRTRunner(Model(form="tensorrt", io=IOContract((), ()), path=kit), prepared_only=True,
                             command="cd out && bash trtexec.sh")
    with pytest.raises(ToolchainMissing) as err:
        r.activate()
    assert "build kit" in err.value.cause and "cd out && bash trtexec.sh" in err.value.hint
