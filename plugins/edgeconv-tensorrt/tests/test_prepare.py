"""ONNX preparation: static shapes, optimization profiles (checked on CPU at min and max), opset, IR."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from edgeconv_tensorrt.prepare import check_profiles_on_cpu, prepare, resolve_profiles  # noqa: E402
from edgeconv_tensorrt.versions import TrtVersion  # noqa: E402
from trt_testutil import conv_model, make_job, save  # noqa: E402

import edgeconv  # noqa: E402
from edgeconv.errors import BadInput  # noqa: E402
from edgeconv.model import IOContract, TensorSpec  # noqa: E402

V103 = TrtVersion.parse("10.3")


def _io(*shape):
    return IOContract((TensorSpec("input", tuple(shape), "float32"),), (TensorSpec("logits", ("batch", 10), "float32"),))


def test_dynamic_batch_without_shapes_is_built_for_batch_1_with_a_warning():
    warned = []
    p = resolve_profiles(_io("batch", 3, 16, 16), {}, warned.append)["input"]
    assert (p.min, p.opt, p.max) == ((1, 3, 16, 16),) * 3 and not p.dynamic
    assert "dynamic batch axis" in warned[0] and "input:1x" in warned[0]


def test_other_dynamic_axes_need_a_shape():
    with pytest.raises(BadInput, match="dynamic axis 2.*--input-shape input:"):
        resolve_profiles(_io("batch", 3, "h", "w"), {})


@pytest.mark.parametrize("given,message", [
    ([(8, 3, 16, 16), (1, 3, 16, 16), (32, 3, 16, 16)], "min <= opt <= max"),
    ([(1, 3, 16), (8, 3, 16), (32, 3, 16)], "rank 3"),
])
def test_bad_profiles_are_refused(given, message):
    with pytest.raises(BadInput, match=message):
        resolve_profiles(_io("batch", 3, 16, 16), {"input": given})


def test_profile_makes_the_batch_dynamic_again_and_runs_at_min_and_max(tmp_path, trt_plugin):
    src = save(conv_model(), tmp_path / "m.onnx")
    profile = ["input:1x3x16x16,8x3x16x16,32x3x16x16"]
    model = edgeconv.load(src, input_shapes=profile)
    assert model.io.inputs[0].shape == (8, 3, 16, 16)  # the core pins the opt shape
    job = make_job(tmp_path, model, profiles={"input": [(1, 3, 16, 16), (8, 3, 16, 16), (32, 3, 16, 16)]})
    prepared = prepare(model, job, V103)
    dims = prepared.proto.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == "batch" and [d.dim_value for d in dims[1:]] == [3, 16, 16]
    assert prepared.dynamic and prepared.io.inputs[0].shape == ("batch", 3, 16, 16)
    assert prepared.info["profiles"]["input"] == {"min": [1, 3, 16, 16], "opt": [8, 3, 16, 16], "max": [32, 3, 16, 16]}
    path = save(prepared.proto, tmp_path / "prepared.onnx")
    check = check_profiles_on_cpu(path, prepared.profiles, prepared.io)
    assert check["batch_consistent"] and check["shapes"]["logits"] == {"min": [1, 10], "max": [32, 10]}
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert sess.run(None, {"input": np.zeros((5, 3, 16, 16), np.float32)})[0].shape == (5, 10)


def test_a_graph_specialised_to_one_batch_fails_the_profile_check_on_cpu(tmp_path, trt_plugin):
    src = save(conv_model(reshape_batch=8), tmp_path / "m.onnx")
    model = edgeconv.load(src, input_shapes=["input:1x3x16x16,8x3x16x16,32x3x16x16"])
    job = make_job(tmp_path, model, profiles={"input": [(1, 3, 16, 16), (8, 3, 16, 16), (32, 3, 16, 16)]})
    prepared = prepare(model, job, V103)
    path = save(prepared.proto, tmp_path / "prepared.onnx")
    with pytest.raises(BadInput, match="does not run at its min/max shapes.*--skip-pass onnx.simplify"):
        check_profiles_on_cpu(path, prepared.profiles, prepared.io)


def test_opset_and_ir_version_are_moved_into_the_parser_range(tmp_path, trt_plugin):
    model = edgeconv.load(save(conv_model(opset=19, ir=9), tmp_path / "m.onnx"))
    job = make_job(tmp_path, model)
    for version, opset, ir in (("8.6", 17, 8), ("10.3", 19, 9)):
        prepared = prepare(model, job, TrtVersion.parse(version))
        assert prepared.opset == opset and prepared.proto.opset_import[0].version == opset
        assert prepared.proto.ir_version == ir, version
        onnx.checker.check_model(prepared.proto)
    low = edgeconv.load(save(conv_model(opset=11, ir=7), tmp_path / "low.onnx"))
    int8 = prepare(low, make_job(tmp_path, low, "int8"), V103)
    assert int8.opset == 13  # per-channel Q/DQ needs opset 13 (the `axis` attribute)
    assert "opset 11 -> 13" in int8.info["changes"]
    with pytest.raises(BadInput, match="parses opsets 7..17"):
        prepare(model, job, TrtVersion.parse("8.5"), opset=18)
