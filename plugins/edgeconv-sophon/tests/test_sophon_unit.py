"""The sophon target without the tpu-mlir environment: its registration, the missing-environment error, every
tpu-mlir command line, the quantize table, the ONNX IR lowering, shapes, and reading tpu-mlir's comparisons."""

from __future__ import annotations

import json
import re
import sys

import onnx
import pytest
from edgeconv_sophon import export, tpumlir
from edgeconv_sophon.toolchain import LOCK, SOPHON

from edgeconv.errors import BadInput
from edgeconv.model import IOContract, TensorSpec

# The op names tpu-mlir 1.30.2's model_transform gave the shipped digits CNN (the #loc lines of its top MLIR).
DIGITS_MLIR_LOCS = """
#loc1 = loc("input")
#loc2 = loc("conv1.w")
#loc3 = loc("conv1.b")
#loc4 = loc("relu1_Relu")
#loc7 = loc("relu2_Relu")
#loc8 = loc("maxpool1_MaxPool")
#loc11 = loc("relu3_Relu")
#loc12 = loc("globalaveragepool1_GlobalAveragePool")
#loc13 = loc("flatten1_Flatten")
#loc16 = loc("logits_Gemm")
"""


@pytest.fixture
def no_env(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGECONV_TOOLCHAINS", str(tmp_path / "none"))
    monkeypatch.delenv("EDGECONV_TOOLCHAIN_SOPHON", raising=False)
    return tmp_path


# -- registration and the missing environment ---------------------------------------------------------------------
def test_the_plugin_registers_the_target_and_its_toolchain(fresh_plugins):
    reg = fresh_plugins.registry()
    t = reg.targets["sophon"]
    assert t.dist == "edgeconv-sophon" and t.suffix == ".bmodel" and t.default_precision == "fp16"
    assert set(t.precisions) == {"fp32", "fp16", "bf16", "int8"}
    assert {o.name for o in t.options} >= {"chip", "keep_float", "mean", "scale", "pixel_format", "calib_limit"}
    assert reg.toolchains["sophon"].python == "3.10" and reg.runners["bmodel"].factory.endswith("CmodelRunner")


def test_the_core_table_of_known_targets_agrees():
    from edgeconv.records import KNOWN_TARGETS

    dist, title, hint = KNOWN_TARGETS["sophon"]
    assert dist == "edgeconv-sophon" and "tpu-mlir" in title and 'edgeconv[sophon]' in hint


def test_the_toolchain_is_pinned_completely():
    """Every requirement and every lock entry is name==version: the same environment on every build."""
    pin = re.compile(r"^[A-Za-z0-9_.\-]+==[0-9][\w.]*$")
    assert all(pin.match(r) for r in SOPHON.requirements), SOPHON.requirements
    assert all(pin.match(c) for c in LOCK), [c for c in LOCK if not pin.match(c)]
    names = [c.split("==")[0].lower().replace("_", "-") for c in LOCK]
    assert len(names) == len(set(names)) and "torch" not in names
    assert "numpy==1.24.3" in LOCK and "protobuf==3.20.3" in LOCK and "onnxruntime==1.16.3" in LOCK
    assert [f.kind for f in SOPHON.fixes] == ["move_aside", "optional_import"]


def test_targets_lists_sophon_missing_with_the_install_command(no_env, fresh_plugins, cli):
    rows = {r["name"]: r for r in json.loads(cli("targets", "--json").stdout)["targets"]}
    assert rows["sophon"]["status"] == "missing"
    assert rows["sophon"]["hint"].startswith("edgeconv toolchain install sophon")


def test_convert_without_the_environment_exits_3_naming_the_install_command(no_env, fresh_plugins, cli, digits):
    out = no_env / "out"
    res = cli("convert", str(digits["model"]), "--to", "sophon", "-p", "fp16", "-o", str(out))
    assert res.exit_code == 3
    assert "edgeconv toolchain install sophon" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.stderr
    assert not out.exists() and not (no_env / "none").exists()  # nothing installed, nothing written


def test_a_broken_setting_is_reported_not_ignored(no_env, fresh_plugins, cli, monkeypatch, digits):
    monkeypatch.setenv("EDGECONV_TOOLCHAIN_SOPHON", str(no_env / "no-python-here"))
    res = cli("convert", str(digits["model"]), "--to", "sophon", "-o", str(no_env / "out"))
    assert res.exit_code == 3 and "EDGECONV_TOOLCHAIN_SOPHON" in res.stderr


def test_doctor_shows_the_toolchain_state(no_env, fresh_plugins, cli):
    info = json.loads(cli("doctor", "--json").stdout)
    assert info["toolchains"]["sophon"]["state"] == "missing"
    details = info["targets"]["sophon"]["details"]
    assert details["toolchains"]["sophon"]["hint"] == "edgeconv toolchain install sophon"
    assert details["sophon_device"] is False and "simulated" in details["verify"]


# -- command lines --------------------------------------------------------------------------------------------------
def test_model_transform_command_line():
    args = tpumlir.model_transform_args(name="m", onnx="m.onnx", mlir="m.mlir", shapes=[[1, 3, 224, 224], [1, 10]],
                                        test_input="in.npz", test_result="top.npz", mean="123.675, 116.28,103.53",
                                        scale="0.0171,0.0175,0.0174", pixel_format="rgb", channel_format="nchw")
    assert args == ["--model_name", "m", "--model_def", "m.onnx", "--input_shapes", "[[1,3,224,224],[1,10]]",
                    "--mean", "123.675,116.28,103.53", "--scale", "0.0171,0.0175,0.0174", "--pixel_format", "rgb",
                    "--channel_format", "nchw", "--test_input", "in.npz", "--test_result", "top.npz",
                    "--mlir", "m.mlir"]


def test_model_transform_needs_static_shapes_and_numeric_mean():
    with pytest.raises(BadInput, match="static input shapes"):
        tpumlir.model_transform_args(name="m", onnx="m.onnx", mlir="m.mlir", shapes=[[1, 3, 0, 0]])
    with pytest.raises(BadInput, match="-O mean"):
        tpumlir.model_transform_args(name="m", onnx="m.onnx", mlir="m.mlir", shapes=[[1, 3]], mean="a,b")


def test_run_calibration_command_line():
    assert tpumlir.run_calibration_args(mlir="m.mlir", dataset="calibration", count=32, table="m_cali_table",
                                        chip="bm1684x", method="kl") == \
        ["m.mlir", "--dataset", "calibration", "--input_num", "32", "--cali_method", "kl", "--chip", "bm1684x",
         "-o", "m_cali_table"]


@pytest.mark.parametrize("precision,quantize", [("fp32", "F32"), ("fp16", "F16"), ("bf16", "BF16"), ("int8", "INT8")])
def test_model_deploy_command_line_per_precision(precision, quantize):
    from edgeconv_sophon.hooks import QUANTIZE

    assert QUANTIZE[precision] == quantize
    table = "cali" if quantize == "INT8" else None
    args = tpumlir.model_deploy_args(mlir="m.mlir", quantize=QUANTIZE[precision], chip="bm1688", bmodel="m.bmodel",
                                     calibration_table=table, quantize_table="q.txt", asymmetric=quantize == "INT8",
                                     test_input="in.npz", test_reference="top.npz", opt=2)
    assert args[:6] == ["--mlir", "m.mlir", "--quantize", quantize, "--chip", "bm1688"]
    assert ("--calibration_table" in args) == (quantize == "INT8") and ("--asymmetric" in args) == (quantize == "INT8")
    assert args[args.index("--quantize_table") + 1] == "q.txt"
    # tpu-mlir's own comparison runs at its own tolerances on the test input
    assert args[args.index("--test_input") + 1] == "in.npz" and args[args.index("--test_reference") + 1] == "top.npz"
    assert "--tolerance" not in args and "--skip_validation" not in args
    assert args[-2:] == ["--model", "m.bmodel"] and args[args.index("--opt") + 1] == "2"


def test_when_tpu_mlir_own_comparison_fails_the_step_runs_again_without_it():
    log = ("[Running]: npz_tool.py compare a_tpu_outputs.npz a_top.npz --tolerance 0.99,0.90 --except - -vv\n"
           "min_similarity = (nan, 0.0, -inf)\nnpz compare FAILED.\n"
           "RuntimeError: [!Error]: npz_tool.py compare a_tpu_outputs.npz a_top.npz --tolerance 0.99,0.90\n")
    assert tpumlir.compare_failed(log) and not tpumlir.compare_failed("ValueError: unsupported op Foo")
    deploy = tpumlir.model_deploy_args(mlir="m.mlir", quantize="F16", chip="bm1684x", bmodel="m.bmodel",
                                       test_input="in.npz", test_reference="top.npz")
    assert tpumlir.without_validation("model_deploy", deploy) == [
        "--mlir", "m.mlir", "--quantize", "F16", "--chip", "bm1684x", "--skip_validation", "--model", "m.bmodel"]
    transform = tpumlir.model_transform_args(name="m", onnx="m.onnx", mlir="m.mlir", shapes=[[1, 4]],
                                             test_input="in.npz", test_result="top.npz")
    assert tpumlir.without_validation("model_transform", transform) == [
        "--model_name", "m", "--model_def", "m.onnx", "--input_shapes", "[[1,4]]", "--mlir", "m.mlir"]
    got = tpumlir.compares(log)
    assert got[0]["passed"] is False and got[0]["cosine"] is None and got[0]["sqnr_db"] is None  # nan, -inf
    assert got[0]["euclidean"] == 0.0 and got[0]["printed"] == "nan, 0.0, -inf"


def test_int8_without_a_calibration_table_is_refused():
    with pytest.raises(BadInput, match="calibration table"):
        tpumlir.model_deploy_args(mlir="m.mlir", quantize="INT8", chip="bm1684x", bmodel="m.bmodel")


def test_model_runner_command_line():
    assert tpumlir.model_runner_args(bmodel="m.bmodel", input_npz="in.npz", output_npz="out.npz") == \
        ["--input", "in.npz", "--model", "m.bmodel", "--output", "out.npz"]


def test_tools_run_through_the_entry_module_without_a_shell():
    compile(tpumlir.TOOL_MAIN, "TOOL_MAIN", "exec")  # valid Python for the environment's interpreter
    assert "tpu_mlir.entry" in tpumlir.TOOL_MAIN and "shell=True" not in tpumlir.TOOL_MAIN


# -- the quantize table (-O keep_float) -----------------------------------------------------------------------------
def test_keep_float_maps_onnx_nodes_to_tpu_mlir_ops(digits):
    proto = onnx.load(str(digits["model"]))
    warnings: list[str] = []
    ops = tpumlir.keep_float_ops(("relu2", "gemm1", "conv1"), proto, DIGITS_MLIR_LOCS, warnings.append)
    # relu2 -> relu2_Relu; gemm1 (output "logits") -> logits_Gemm; conv1 was fused into relu1_Relu
    assert ops == [("relu2_Relu", "relu2"), ("logits_Gemm", "gemm1"), ("relu1_Relu", "conv1")]
    assert len(warnings) == 1 and "fused node conv1 (Conv) into relu1_Relu" in warnings[0]
    text = tpumlir.qtable_text(ops)
    rows = [ln.split() for ln in text.splitlines() if ln and not ln.startswith("#")]
    assert rows == [["relu2_Relu", "F32"], ["logits_Gemm", "F32"], ["relu1_Relu", "F32"]]
    assert "conv1 -> relu1_Relu" in text  # the mapping, on a comment line (tpu-mlir reads no comment after an entry)


def test_keep_float_names_an_unknown_node(digits):
    proto = onnx.load(str(digits["model"]))
    with pytest.raises(BadInput) as err:
        tpumlir.keep_float_ops(("relu22",), proto, DIGITS_MLIR_LOCS)
    assert "no node 'relu22'" in err.value.one_line() and "did you mean" in err.value.one_line()


# -- ONNX for tpu-mlir: IR version, shapes -------------------------------------------------------------------------
def _tiny(ir: int, opset: int) -> onnx.ModelProto:
    from onnx import TensorProto, helper

    g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"], name="relu")], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = ir
    return m


def test_ir_10_is_lowered_to_9_when_the_opset_allows():
    m = _tiny(10, 17)
    warnings: list[str] = []
    info = export.prepare_ir(m, warnings.append)
    assert m.ir_version == 9 and info == {"ir_version": 10, "opset": 17, "ir_version_for_tpu_mlir": 9}
    assert "onnxruntime 1.16 cannot load IR 10" in warnings[0]
    onnx.checker.check_model(m)  # still a valid model


def test_an_opset_newer_than_tpu_mlir_reads_is_bad_input():
    with pytest.raises(BadInput, match="opset 21"):
        export.prepare_ir(_tiny(10, 21))


def test_ir_9_is_left_alone():
    m = _tiny(8, 17)
    assert export.prepare_ir(m) == {"ir_version": 8, "opset": 17} and m.ir_version == 8


def test_static_shapes_pin_a_dynamic_batch_and_refuse_other_dynamic_axes():
    io = IOContract((TensorSpec("x", ("batch", 3, 8, 8), "float32"),), (TensorSpec("y", ("batch", 10), "float32"),))
    warnings: list[str] = []
    assert export.static_shapes(io, warnings.append) == [[1, 3, 8, 8]]
    assert "dynamic batch axis 'batch' built as 1" in warnings[0]
    art = export.artifact_contract(io, [[1, 3, 8, 8]])
    assert art.inputs[0].shape == (1, 3, 8, 8) and art.outputs[0].shape == (1, 10)
    bad = IOContract((TensorSpec("x", (1, 3, "h", "w"), "float32"),), ())
    with pytest.raises(BadInput, match=r"--input-shape x:1,3,N,N"):
        export.static_shapes(bad)


# -- reading tpu-mlir's own output ----------------------------------------------------------------------------------
# Lines as model_deploy 1.30.2 printed them for the digits CNN at INT8 (captured; the parser's input).
DEPLOY_LOG = """\
2026/11/28 00:54:49 - INFO : TPU-MLIR v1.30.2-20260831
[Running]: npz_tool.py compare digits_bm1684x_int8_sym_tpu_outputs.npz digits_top.npz --tolerance 0.90,0.80 --except - -vv
[logits_Gemm_f32                 ]      SIMILAR [PASSED]
min_similarity = (0.9936627745628357, 0.8509524202310778, 16.179744005203247)
npz compare PASSED.
[Running]: npz_tool.py compare digits_bm1684x_int8_sym_model_outputs.npz digits_bm1684x_int8_sym_tpu_outputs.npz --tolerance 0.98,0.80 --except - -vv
min_similarity = (1.0, 1.0, inf)
npz compare FAILED.
"""


def test_tpu_mlir_comparisons_and_version_are_read_from_its_output():
    got = tpumlir.compares(DEPLOY_LOG)
    assert got[0] == {"target": "digits_bm1684x_int8_sym_tpu_outputs.npz", "reference": "digits_top.npz",
                      "cosine": 0.9936627745628357, "euclidean": 0.8509524202310778, "sqnr_db": 16.179744005203247,
                      "passed": True}
    # identical outputs: SQNR inf, which JSON cannot hold: None, and the figures as printed
    assert got[1]["cosine"] == 1.0 and got[1]["sqnr_db"] is None and got[1]["passed"] is False
    assert got[1]["printed"] == "1.0, 1.0, inf"
    json.dumps(got, allow_nan=False)  # strict JSON
    assert tpumlir.version_in(DEPLOY_LOG) == "1.30.2-20260831"


def test_a_failing_tool_is_toolchain_failed_with_its_first_error_and_log(tmp_path, monkeypatch):
    """A tool failure in the environment: exit 4, the error line, the kept log (run with this Python as the env)."""
    from edgeconv.errors import ToolchainFailed
    from edgeconv.toolchain import Toolchain, ToolchainEnv

    env = ToolchainEnv(Toolchain("sophon", "tpu-mlir", "3.10", ()), [sys.executable], "setting")
    with pytest.raises(ToolchainFailed) as err:
        tpumlir.run_tool(env, "model_transform", ["--help"], workdir=tmp_path, log=tmp_path / "t.log", timeout=60,
                         keep_log_at=tmp_path / "kept.log")
    # this Python has no tpu_mlir package and no model_transform.py on PATH: TOOL_MAIN says so
    assert err.value.exit_code == 4
    assert "model_transform not found" in err.value.cause and str(tmp_path / "kept.log") in err.value.cause
    assert (tmp_path / "kept.log").read_text().startswith("# ")
