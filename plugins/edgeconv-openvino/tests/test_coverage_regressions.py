"""Regressions found by the operator coverage (docs/gen/operator_coverage.py) in the openvino plugin."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper

import edgeconv


def _model(nodes, inputs, outputs, inits=(), opset: int = 17) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(inits))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="edgeconv-tests")
    model.ir_version = 8
    return model


def test_an_output_that_passes_an_input_through_keeps_both_names(tmp_path):
    """Dropout at inference is an identity: OpenVINO's Result reads the Parameter's own tensor, and naming
    the output replaced the input's name: verification failed with "Port for tensor name x was not found"."""
    model = _model([helper.make_node("Dropout", ["x"], ["y"])],
                   [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])])
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    x = np.arange(6, dtype=np.float32).reshape(1, 2, 3)
    res = edgeconv.convert(path, "openvino", data={"x": x}, output=tmp_path / "out", runs=1, warmup=0, memory=False)
    assert res.exit_code == 0, res.report["verdict"]
    assert res.report["fidelity"][0]["max_abs"] == 0.0




def test_a_scalar_input_runs(tmp_path):
    """A 0-d input (BlackmanWindow's size): the runner's np.ascontiguousarray made it [1] and OpenVINO refused
    the shape; the raw toolchain runs these ONNX node tests."""
    model = _model([helper.make_node("Mul", ["x", "x"], ["y"])],
                   [helper.make_tensor_value_info("x", TensorProto.FLOAT, [])],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, [])])
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    res = edgeconv.convert(path, "openvino", data={"x": np.array([3.0], np.float32)}, output=tmp_path / "out",
                           runs=1, warmup=0, memory=False)
    assert res.exit_code == 0, res.report["verdict"]


def test_resize_align_corners_downsampling_is_refused(tmp_path):
    """test_resize_downsample_scales_{linear,cubic}_align_corners: OpenVINO gives onnxruntime's values, both
    differ from ONNX's by up to 1.05: verification (against onnxruntime) passed a wrong answer."""
    from edgeconv_openvino.precheck import known_wrong

    from edgeconv.onnx_tools import from_proto

    def resize(scales, mode="linear"):
        graph = helper.make_graph(
            [helper.make_node("Resize", ["x", "", "scales"], ["y"], mode=mode, coordinate_transformation_mode="align_corners")],
            "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 4, 4])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, list("nchw"))],
            initializer=[helper.make_tensor("scales", TensorProto.FLOAT, [4], scales)])
        return from_proto(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)]), None).obj.graph

    assert [u.op_type for u in known_wrong(resize([1, 1, 0.6, 0.6]))] == ["Resize"]
    assert [u.op_type for u in known_wrong(resize([1, 1, 0.6, 0.6], "cubic"))] == ["Resize"]
    assert not known_wrong(resize([1, 1, 2, 2]))
    assert not known_wrong(resize([1, 1, 0.6, 0.6], "nearest"))


def test_copied_inputs_live_until_the_model_has_run(tmp_path):
    """The runner shares input memory with OpenVINO (shared_memory=True). A non-contiguous input is copied
    first; the copy was owned only by the temporary ov.Tensor, freed as soon as set_tensor returned, and
    the next input's copy could reuse its memory: the model read garbage (a flaky OCR check on PP-OCR)."""
    from edgeconv_openvino.runner import OVRunner

    from edgeconv.artifacts import open_artifact as load_artifact

    model = _model([helper.make_node("Sub", ["x", "y"], ["z"])],
                   [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 64, 64]),
                    helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 64, 64])],
                   [helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, 3, 64, 64])])
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    res = edgeconv.convert(path, "openvino", output=tmp_path / "out", verify=False)
    art, _ = load_artifact(res.artifact)
    runner = OVRunner(art)
    runner.activate()
    rng = np.random.default_rng(0)
    for _ in range(20):
        # transposed views: not C-contiguous, so the runner copies them
        x = rng.standard_normal((1, 64, 64, 3), dtype=np.float32).transpose(0, 3, 1, 2)
        y = rng.standard_normal((1, 64, 64, 3), dtype=np.float32).transpose(0, 3, 1, 2)
        out = runner.infer({"x": x, "y": y})
        np.testing.assert_allclose(next(iter(out.values())), x - y, rtol=0, atol=1e-6)
