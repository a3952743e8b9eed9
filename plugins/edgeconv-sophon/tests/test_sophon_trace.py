"""The sophon tracer (``edgeconv debug layers`` on a .bmodel) without the tpu-mlir environment: final.mlir's op names,
matching the dumped tensors to the reference graph, and why it cannot run. The toolchain tests run tpu-mlir's
debugger itself (``test_sophon_toolchain.py``)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from edgeconv.plugin import BadInput

# Lines of the final.mlir model_deploy 1.30.2 wrote for the digits CNN at INT8 (captured; long attributes cut).
FINAL_MLIR = """\
#loc = loc(unknown)
#loc1 = loc("input")
      %5 = "tpu.Group"(%arg0) ({
        %11 = "tpu.Load"(%arg0) {do_bcast = false} : (tensor<1x1x8x8xf32>) -> tensor<1x1x8x8xf32> loc(#loc7)
        %16 = "tpu.Conv2D"(%13, %12, %0) {coeff_merged = true, do_relu = true} : () -> tensor<1x32x8x8xui8> loc(#loc12)
        %23 = "tpu.Pool2D"(%22) {count_include_pad = true, do_relu = false} : () -> tensor<1x64x1x1xui8> loc(#loc6)
        %24 = "tpu.Store"(%23, %0) {ginfo = #tpu.lg<out_addr = 17024>} : () -> tensor<1x64x1x1xui8> loc(#loc6)
        "tpu.Yield"(%24) : (tensor<1x64x1x1x!quant.uniform<u8:f32, 0.055138255294117644>>) -> () loc(#loc6)
      %9 = "tpu.MatMul"(%6, %7, %8, %0, %0) {cal_i8 = true, do_relu = false} : () -> tensor<1x10xi8> loc(#loc22)
      %10 = "tpu.Cast"(%9) {round_mode = #tpu<round_mode HalfAwayFromZero>} : () -> tensor<1x10xf32> loc(#loc23)
#loc6 = loc("globalaveragepool1_GlobalAveragePool")
#loc7 = loc("load_0")
#loc12 = loc("relu1_Relu")
#loc22 = loc("logits_Gemm")
#loc23 = loc("logits_Gemm_f32")
"""

# The tensors tpu-mlir's debugger dumped for that bmodel (its data-dump plugin's keys).
DUMPED = {"load_0", "load_relu1_Relu_merge", "inputrelu1_Relu_ui8", "relu1_Relu", "relu1_Relurelu2_Relu_f32",
          "relu2_Relu", "relu2_Relumaxpool1_MaxPool_ui8", "maxpool1_MaxPool", "relu3_Relu",
          "globalaveragepool1_GlobalAveragePool", "logits_Gemm", "logits_Gemm_f32"}


def test_final_mlir_names_the_op_that_computes_each_tensor():
    from edgeconv_sophon.trace import mlir_ops

    ops = mlir_ops(FINAL_MLIR)
    assert ops["relu1_Relu"] == "tpu.Conv2D"  # the Conv with do_relu: the Relu's tensor
    # a layer group's Store and Yield carry the name of what they move: the Pool2D computes it
    assert ops["globalaveragepool1_GlobalAveragePool"] == "tpu.Pool2D"
    assert ops["logits_Gemm"] == "tpu.MatMul" and ops["logits_Gemm_f32"] == "tpu.Cast"
    assert ops["load_0"] == "tpu.Load" and "input" not in ops


def test_dumped_tensors_are_matched_to_the_reference_graph(digits):
    import onnx
    from edgeconv_sophon.trace import match, mlir_ops

    proto = onnx.load(str(digits["model"]))
    got = match(proto, DUMPED, mlir_ops(FINAL_MLIR))
    assert got["relu1"] == {"name": "relu1_Relu", "op": "tpu.Conv2D"}
    assert got["logits"] == {"name": "logits_Gemm", "op": "tpu.MatMul"}  # not the f32 cast after it
    assert got["maxpool1"]["name"] == "maxpool1_MaxPool" and got["maxpool1"]["op"] == ""  # not in the snippet
    # the Convs are fused into their Relus (no tensor of their own), the Flatten was not dumped
    assert set(got) == {"relu1", "relu2", "maxpool1", "relu3", "globalaveragepool1", "logits"}
    assert match(proto, {"relu1"}) == {"relu1": {"name": "relu1", "op": ""}}  # a name without the op type
    assert match(proto, {"conv9_Conv", "relu1_Conv"}) == {}


def test_the_bmodel_runner_registers_the_tracer(fresh_plugins):
    from edgeconv_sophon.trace import TRACER

    spec = fresh_plugins.registry().runners["bmodel"]
    assert spec.tracer == "edgeconv_sophon.trace:TRACER"
    assert TRACER.isolated is False and TRACER.name.startswith("tpu-mlir")


def _folder(tmp_path: Path, *context: str) -> SimpleNamespace:
    tmp_path.mkdir()
    (tmp_path / "m.bmodel").write_bytes(b"b")
    if context:
        (tmp_path / "bmrt_context").mkdir()
    for name in context:
        (tmp_path / "bmrt_context" / name).write_text("x")
    return SimpleNamespace(path=tmp_path / "m.bmodel", form="bmodel")


def test_why_it_cannot_trace(tmp_path, monkeypatch, fresh_plugins):
    from edgeconv_sophon.trace import TRACER

    old = _folder(tmp_path / "old", "input_ref_data.dat")  # a folder made before the tracer: no tensor map
    why = TRACER.unavailable(old, {})
    assert "no bmrt_context/final.mlir or tensor_location.json" in why and "convert again" in why
    monkeypatch.setenv("EDGECONV_TOOLCHAINS", str(tmp_path / "no-toolchains"))
    monkeypatch.delenv("EDGECONV_TOOLCHAIN_SOPHON", raising=False)
    new = _folder(tmp_path / "new", "final.mlir", "tensor_location.json")
    why = TRACER.unavailable(new, {})
    assert why is not None and "edgeconv toolchain install sophon" in why
    with pytest.raises(BadInput, match="no isolated trace"):
        TRACER.trace(new, None, [], options={}, golden=[{}])
