"""keep_float on TensorRT: no Q/DQ around the kept nodes in the QDQ model (run here on onnxruntime),
and float32 layer precisions with OBEY_PRECISION_CONSTRAINTS in the build -- checked against a
recording stand-in of the ``tensorrt`` module and the trtexec command line (no GPU here)."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from edgeconv_tensorrt.build import keep_layers_float, settings_from_build_json, write_build_kit  # noqa: E402
from test_build_settings import DOCUMENTED_10, settings  # noqa: E402

from edgeconv.errors import ToolchainFailed  # noqa: E402


class _Tensor:
    def __init__(self, dtype):
        self.dtype = dtype


class _Layer:
    def __init__(self, name, outputs, metadata=""):
        self.name, self.metadata, self._outputs = name, metadata, outputs
        self.num_outputs = len(outputs)
        self.log: list = []

    def get_output(self, i):
        return self._outputs[i]

    def set_output_type(self, i, dtype):
        self.log.append(("set_output_type", i, dtype))

    def __setattr__(self, attr, value):
        if attr == "precision":
            self.log.append(("precision", value))
        object.__setattr__(self, attr, value)


def _trt():
    trt = types.SimpleNamespace()
    trt.DataType = types.SimpleNamespace(FLOAT="f32", HALF="f16", INT8="i8", INT32="i32", INT64="i64", BOOL="b")
    return trt


def _network(layers):
    return types.SimpleNamespace(num_layers=len(layers), get_layer=lambda i: layers[i])


def test_kept_layers_get_float32_precision_and_outputs():
    trt = _trt()
    layers = [
        _Layer("conv1", [_Tensor("f16")]),
        _Layer("conv2", [_Tensor("f16")]),  # TensorRT <= 8.6: the main layer carries the node name
        _Layer("Conv_17_bias", [_Tensor("f16"), _Tensor("i32")], metadata="[ONNX Layer: conv2]"),  # TensorRT 10
        _Layer("shape_of_conv2", [_Tensor("i64")], metadata="[ONNX Layer: reshape]"),
    ]
    calls = keep_layers_float(trt, _network(layers), ("conv2",))
    assert layers[0].log == [] and layers[3].log == []
    assert layers[1].log == [("precision", "f32"), ("set_output_type", 0, "f32")]
    # an integer output keeps its type
    assert layers[2].log == [("precision", "f32"), ("set_output_type", 0, "f32")]
    assert len(calls) == 4 and "precision = DataType.FLOAT" in calls[0]


def test_unknown_node_is_an_error():
    with pytest.raises(ToolchainFailed, match="no layer from ONNX node"):
        keep_layers_float(_trt(), _network([_Layer("conv1", [_Tensor("f32")])]), ("conv9",))


def test_build_flags_and_trtexec_flags():
    s = settings("int8", "10.3", keep_float="conv2,fc")
    assert s.keep_float == ("conv2", "fc")
    assert s.builder_flags() == ["INT8", "OBEY_PRECISION_CONSTRAINTS"]
    argv = s.trtexec_argv("m.onnx", "m.plan")
    assert "--precisionConstraints=obey" in argv
    assert "--layerPrecisions=conv2:fp32,fc:fp32" in argv and "--layerOutputTypes=conv2:fp32,fc:fp32" in argv
    # the flags trtexec documents (TensorRT 8.4+; 10.x --help lists them under Build Options)
    assert {a.split("=")[0] for a in argv[-3:]} <= DOCUMENTED_10 | {"--precisionConstraints", "--layerPrecisions",
                                                                     "--layerOutputTypes"}
    # no constraint where the network decides the types itself, nor at fp32
    assert "OBEY_PRECISION_CONSTRAINTS" not in settings("int8", "10.3", keep_float="conv2", strongly_typed=True).builder_flags()
    assert "OBEY_PRECISION_CONSTRAINTS" not in settings("fp32", "10.3", keep_float="conv2").builder_flags()
    assert "OBEY_PRECISION_CONSTRAINTS" in settings("fp16", "10.3", keep_float="conv2").builder_flags()


def test_apply_sets_the_constraints_on_the_network():
    calls: list = []
    flags = types.SimpleNamespace(INT8="INT8", OBEY_PRECISION_CONSTRAINTS="OBEY", TF32="TF32")
    trt = _trt()
    trt.BuilderFlag = flags
    config = types.SimpleNamespace(set_flag=lambda f: calls.append(("set_flag", f)),
                                   clear_flag=lambda f: calls.append(("clear_flag", f)))
    layers = [_Layer("conv2", [_Tensor("i8")]), _Layer("fc", [_Tensor("f32")])]
    s = settings("int8", "10.3", keep_float=["conv2", "fc"])
    log = s.apply(trt, None, _network(layers), config)
    assert ("set_flag", "OBEY") in calls and ("set_flag", "INT8") in calls
    assert ("precision", "f32") in layers[0].log and ("precision", "f32") in layers[1].log
    assert ("set_output_type", 0, "f32") in layers[1].log
    assert any("get_layer(1).precision" in c for c in log)


def test_build_kit_round_trip_keeps_keep_float(tmp_path):
    import json

    s = settings("int8", "10.3", keep_float="conv2")
    write_build_kit(tmp_path, "m.onnx", "m.plan", s)
    doc = json.loads((tmp_path / "build.json").read_text())
    assert doc["settings"]["keep_float"] == ["conv2"]
    assert "--layerPrecisions=conv2:fp32" in doc["trtexec"]["argv"]
    assert settings_from_build_json(doc).keep_float == ("conv2",)


def test_qdq_model_leaves_the_kept_node_float(tmp_path):
    """The QDQ model TensorRT gets: no Q/DQ on the kept node's inputs (verified here on onnxruntime)."""
    import numpy as np
    import onnx

    sys.path.insert(0, str(Path(__file__).parents[3] / "tests"))
    from edgeconv_tensorrt.quantize import quantize_ort

    from edgeconv.data import load_dataset
    from edgeconv.model import IOContract, TensorSpec
    from test_sensitivity import outlier_classifier

    src = tmp_path / "m.onnx"
    onnx.save(outlier_classifier(), str(src))
    io = IOContract((TensorSpec("input", ("batch", 3, 16, 16), "float32"),), (TensorSpec("logits", ("batch", 10), "float32"),))
    ds = load_dataset({"input": np.random.default_rng(0).random((16, 3, 16, 16), dtype=np.float32)}, io, what="--calib")
    dst = tmp_path / "q.onnx"
    info = quantize_ort(src, dst, ds, io, {"keep_float": ("conv2",)}, tmp_path)
    assert "conv2" in info["nodes_to_exclude"] and info["keep_float"] == ["conv2"]
    q = onnx.load(str(dst))
    conv2 = next(n for n in q.graph.node if n.name == "conv2")
    producers = {o: n.op_type for n in q.graph.node for o in n.output}
    assert all(producers.get(x) != "DequantizeLinear" for x in conv2.input)
    conv1 = next(n for n in q.graph.node if n.name == "conv1")
    assert producers.get(conv1.input[0]) == "DequantizeLinear"  # the rest stays int8
