"""Helpers shared by the TensorRT plugin tests (import after putting this folder on sys.path)."""

from __future__ import annotations

import stat
import textwrap
from pathlib import Path


def write_script(path: Path, body: str) -> Path:
    path.write_text("#!/usr/bin/env sh\n" + textwrap.dedent(body))
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


FAKE_TRTEXEC = r"""
echo "&&&& RUNNING TensorRT.trtexec [TensorRT v100300] [b26] # trtexec $*"
case " $* " in *" --help "*) exit 0;; esac
for a in "$@"; do echo "$a" >> "$(dirname "$0")/trtexec.args"; done
[ -n "$FAKE_TRTEXEC_FAIL" ] && { echo "[E] Error[4]: ITensor::getDimensions: Error Code 4: Internal Error"; exit 1; }
for a in "$@"; do case "$a" in --saveEngine=*) printf 'fake-plan' > "${a#--saveEngine=}";; esac; done
echo "&&&& PASSED TensorRT.trtexec [TensorRT v100300] [b26]"
"""


def args_of(script: Path) -> list[str]:
    f = script.parent / "trtexec.args"
    return f.read_text().split("\n")[:-1] if f.exists() else []


def conv_model(*, opset: int = 17, batch: int | str = "batch", ir: int = 8, reshape_batch: int | None = None,
               extra_nodes: list | None = None, extra_opsets: dict[str, int] | None = None, extra_inits: list | None = None,
               seed: int = 0):
    """Conv(3->4, 3x3) -> Relu -> GlobalAveragePool -> Flatten (or a Reshape with a fixed batch) -> Gemm(->10).

    ``reshape_batch`` replaces Flatten with Reshape to [reshape_batch, 4]: a graph specialised to
    one batch size (what a constant-folding pass makes of ``x.view(x.size(0), -1)`` at a pinned batch).
    """
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    inits = [
        numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32) * 0.3, "w"),
        numpy_helper.from_array(rng.standard_normal(4).astype(np.float32) * 0.1, "b"),
        numpy_helper.from_array(rng.standard_normal((10, 4)).astype(np.float32), "fc_w"),
        numpy_helper.from_array(rng.standard_normal(10).astype(np.float32) * 0.1, "fc_b"),
    ]
    nodes = [
        helper.make_node("Conv", ["input", "w", "b"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("GlobalAveragePool", ["r"], ["p"], name="gap"),
    ]
    if reshape_batch is None:
        nodes.append(helper.make_node("Flatten", ["p"], ["f"], name="flatten", axis=1))
    else:
        inits.append(numpy_helper.from_array(np.array([reshape_batch, 4], dtype=np.int64), "shape"))
        nodes.append(helper.make_node("Reshape", ["p", "shape"], ["f"], name="reshape"))
    nodes.append(helper.make_node("Gemm", ["f", "fc_w", "fc_b"], ["logits"], name="fc", transB=1))
    nodes += extra_nodes or []
    inits += extra_inits or []
    outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, 10])]  # extra nodes: dangling
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, 3, 16, 16])],
                              outputs, inits)
    imports = [helper.make_opsetid("", opset)] + [helper.make_opsetid(d, v) for d, v in (extra_opsets or {}).items()]
    model = helper.make_model(graph, opset_imports=imports, producer_name="edgeconv-trt-tests")
    model.ir_version = ir
    onnx.checker.check_model(model)
    return model


def save(model, path: Path) -> Path:
    import onnx

    onnx.save(model, str(path))
    return path


def make_job(tmp_path: Path, model, precision: str = "fp32", options: dict | None = None,
             profiles: dict | None = None, calibration=None):
    """A real edgeconv Job for the tensorrt target (options validated by the Target record)."""
    from edgeconv.plugin import Job
    from edgeconv.plugins import registry

    target = registry().target("tensorrt")
    opts = target.validate_options(options or {})
    work, scratch = tmp_path / "work", tmp_path / "scratch"
    work.mkdir(exist_ok=True)
    scratch.mkdir(exist_ok=True)
    return Job(target, precision, opts, work, scratch, "model", model.io, {}, dict(profiles or {}), calibration)
