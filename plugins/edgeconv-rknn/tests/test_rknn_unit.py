"""The rknn target without the rknn-toolkit2 environment: registration, the missing-environment error, the pinned
environment, option validation, rknn.config arguments, shape sets, the dataset list, the pre-check, keep_float,
reading the toolkit's accuracy analysis, and the board half on a stand-in runtime."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from edgeconv_rknn import bridge, export, precheck
from edgeconv_rknn.toolchain import REQUIREMENTS, RKNN

from edgeconv.errors import BadInput
from edgeconv.model import IOContract, TensorSpec

STANDIN = Path(__file__).parent / "standin_rknnlite"


@pytest.fixture
def no_env(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGECONV_TOOLCHAINS", str(tmp_path / "none"))
    monkeypatch.delenv("EDGECONV_TOOLCHAIN_RKNN", raising=False)
    return tmp_path


def _io(*inputs):
    return IOContract(tuple(TensorSpec(n, s, "float32") for n, s in inputs), (TensorSpec("y", ("batch", 10),
                                                                                          "float32"),))


# -- registration, the environment, the missing environment --------------------------------------------------------
def test_the_plugin_registers_target_runner_toolchain_and_devices(fresh_plugins):
    reg = fresh_plugins.registry()
    t = reg.targets["rknn"]
    assert t.dist == "edgeconv-rknn" and t.suffix == ".rknn" and t.default_precision == "fp16"
    assert set(t.precisions) == {"fp16", "int8"} and t.precheck.endswith("precheck:precheck")
    assert {o.name for o in t.options} >= {"platform", "keep_float", "mean_values", "std_values", "shape_sets",
                                           "calib_limit", "core_mask"}
    spec = reg.runners["rknn"]
    assert spec.factory.endswith("SimulatorRunner") and spec.board == "edgeconv_rknn.board"
    assert set(spec.options) >= {"platform", "recipe", "output_names", "core_mask"}
    assert reg.toolchains["rknn"].python == "3.11"
    assert reg.devices["edgeconv_rknn"].resource == "devices.toml"


def test_the_hooks_module_declares_the_plugin_api_it_was_written_against():
    import edgeconv_rknn.hooks as hooks

    from edgeconv.plugin import API_VERSION

    assert hooks.EDGECONV_API == "1.0" and API_VERSION.split(".")[0] == "1"
    # the plugin imports only edgeconv.plugin from edgeconv (tests may use more)
    src = Path(hooks.__file__).parent
    for f in src.glob("*.py"):
        names = set(re.findall(r"^\s*(?:from|import) (edgeconv[\w.]*)", f.read_text(), flags=re.M))
        assert names <= {"edgeconv.plugin"}, (f.name, names)


def test_the_environment_is_a_complete_pinned_list_installed_without_the_resolver():
    pin = re.compile(r"^[A-Za-z0-9_.\-]+==[0-9][\w.+]*$")
    assert all(pin.match(r) for r in REQUIREMENTS), REQUIREMENTS
    names = [r.split("==")[0].lower().replace("_", "-") for r in REQUIREMENTS]
    assert len(names) == len(set(names))
    assert RKNN.pip_args == ("--no-deps",)  # the wheel's torch<=2.4.0 pin would pull 5.6 GB of CUDA
    assert "torch==2.13.0+cpu" in REQUIREMENTS and "rknn-toolkit2==2.5.0" in REQUIREMENTS
    setuptools = next(r for r in REQUIREMENTS if r.startswith("setuptools=="))
    assert int(setuptools.split("==")[1].split(".")[0]) < 81  # the toolkit imports pkg_resources
    assert "opencv-python-headless" in names and "opencv-python" not in names
    for dep in ("numpy==1.26.4", "onnx==1.18.0", "protobuf==4.25.4"):  # inside the wheel's declared ranges
        assert dep in REQUIREMENTS
    compile(RKNN.check[1], "check", "exec")


def test_convert_without_the_environment_exits_3_naming_the_install_command(no_env, fresh_plugins, cli, digits):
    out = no_env / "out"
    res = cli("convert", str(digits["model"]), "--to", "rknn", "-p", "fp16", "-o", str(out))
    assert res.exit_code == 3, res.output
    assert "edgeconv toolchain install rknn" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.stderr
    assert not out.exists() and not (no_env / "none").exists()  # nothing installed, nothing written


def test_targets_lists_rknn_missing_with_the_install_command(no_env, fresh_plugins, cli):
    rows = {r["name"]: r for r in json.loads(cli("targets", "--json").stdout)["targets"]}
    assert rows["rknn"]["status"] == "missing"
    assert rows["rknn"]["hint"].startswith("edgeconv toolchain install rknn")


# -- options and rknn.config -----------------------------------------------------------------------------------------
def test_an_unknown_platform_is_refused_with_a_suggestion(fresh_plugins):
    t = fresh_plugins.registry().targets["rknn"]
    with pytest.raises(BadInput) as err:
        t.validate_options({"platform": "rk3589"})
    assert "rk3588" in err.value.one_line()
    assert t.validate_options({"platform": "rv1106"})["platform"] == "rv1106"
    with pytest.raises(BadInput):
        t.validate_options({"core_mask": "0_1_2_3"})


@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_config_arguments_per_precision(precision):
    opts = {"optimization_level": 2, "quantized_algorithm": "mmse", "quantized_method": "layer"}
    cfg = export.config_args(platform="rk3576", precision=precision, opts=opts, norm=([1.0, 2, 3], [4.0, 5, 6]),
                             shape_sets=[[[1, 3, 8, 8]], [[1, 3, 16, 16]]])
    assert cfg["target_platform"] == "rk3576" and cfg["optimization_level"] == 2 and cfg["float_dtype"] == "float16"
    assert cfg["mean_values"] == [[1.0, 2, 3]] and cfg["std_values"] == [[4.0, 5, 6]]
    assert cfg["dynamic_input"] == [[[1, 3, 8, 8]], [[1, 3, 16, 16]]]
    assert ("quantized_dtype" in cfg) == (precision == "int8")
    if precision == "int8":
        assert (cfg["quantized_dtype"], cfg["quantized_algorithm"], cfg["quantized_method"]) == ("w8a8", "mmse",
                                                                                                 "layer")
    with pytest.raises(BadInput, match="platform"):
        export.config_args(platform="rk9999", precision="fp16", opts={}, norm=None, shape_sets=None)


def test_mean_and_std_are_checked_and_broadcast_per_channel():
    io = _io(("x", (1, 3, 8, 8)))
    assert export.normalisation({"mean_values": "127.5", "std_values": "58"}, io) == ([127.5] * 3, [58.0] * 3)
    assert export.normalisation({}, io) is None
    with pytest.raises(BadInput, match="comma-separated numbers"):
        export.normalisation({"mean_values": "a,b,c"}, io)
    with pytest.raises(BadInput, match="2 and 3 values"):
        export.normalisation({"mean_values": "1,2", "std_values": "1,2,3"}, io)
    with pytest.raises(BadInput, match="std of 0"):
        export.normalisation({"std_values": "1,0,1"}, io)
    with pytest.raises(BadInput, match="single-input"):
        export.normalisation({"mean_values": "1"}, _io(("a", (1, 3, 8, 8)), ("b", (1, 4))))


def test_fold_preprocess_takes_mean_and_std_from_the_image_preprocessing():
    from edgeconv.plugin import Preprocess

    io = _io(("x", (1, 3, 8, 8)))
    pre = Preprocess(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), scale=1 / 255)
    mean, std = export.normalisation({"fold_preprocess": True}, io, pre)
    np.testing.assert_allclose(mean, [123.675, 116.28, 103.53], rtol=1e-6)
    np.testing.assert_allclose(std, [58.395, 57.12, 57.375], rtol=1e-6)
    with pytest.raises(BadInput, match="needs --mean/--std"):
        export.normalisation({"fold_preprocess": True}, io, None)


def test_the_artifact_takes_uint8_pixels_when_a_normalisation_is_folded_in():
    io = _io(("x", ("batch", 3, 8, 8)))
    art = export.artifact_contract(io, [[1, 3, 8, 8]], None, ([123.0, 116.0, 103.0], [58.0, 57.0, 57.5]))
    spec = art.inputs[0]
    assert spec.dtype == "uint8" and spec.shape == (1, 3, 8, 8) and spec.layout == "NCHW"
    assert spec.zero_point == [123.0, 116.0, 103.0] and spec.scale == pytest.approx([1 / 58, 1 / 57, 1 / 57.5])
    assert art.outputs[0].shape == (1, 10) and art.outputs[0].dtype == "float32"
    # what the core's adapt_inputs feeds it: round(x / scale + zero) = x * std + mean, as to_raw writes calibration
    from edgeconv.verification.fidelity import adapt_inputs

    x = np.random.default_rng(0).standard_normal((1, 3, 8, 8)).astype(np.float32) * 0.5
    fed = adapt_inputs({"x": x}, io, art)["x"]
    raw = export.to_raw(x, ([123.0, 116.0, 103.0], [58.0, 57.0, 57.5]))
    assert fed.dtype == np.uint8 and np.abs(fed.astype(np.float32) - np.clip(np.round(raw), 0, 255)).max() <= 1


def test_shape_sets_from_the_option_and_from_an_input_shape_profile():
    io = _io(("x", ("batch", 3, "h", "w")))
    assert export.parse_shape_sets("1x3x224x224; 1x3x320x320", io) == [[[1, 3, 224, 224]], [[1, 3, 320, 320]]]
    two = _io(("a", ("batch", 3, 8, 8)), ("b", ("batch", 4)))
    assert export.parse_shape_sets("a:1x3x8x8,b:1x4;b:2x4,a:2x3x8x8", two) == [[[1, 3, 8, 8], [1, 4]],
                                                                              [[2, 3, 8, 8], [2, 4]]]
    with pytest.raises(BadInput, match="no shape for input 'b'"):
        export.parse_shape_sets("a:1x3x8x8", two)
    with pytest.raises(BadInput, match="does not fit"):
        export.parse_shape_sets("1x4x224x224", io)
    with pytest.raises(BadInput, match="names no input"):
        export.parse_shape_sets("1x3x8x8", two)
    shapes, sets = export.shape_plan(io, {}, {"x": [(1, 3, 64, 64), (1, 3, 128, 128), (1, 3, 256, 256)]})
    assert shapes is None and sets == [[[1, 3, 64, 64]], [[1, 3, 128, 128]], [[1, 3, 256, 256]]]


def test_static_shapes_pin_a_dynamic_batch_and_refuse_other_dynamic_axes():
    warnings: list[str] = []
    shapes, sets = export.shape_plan(_io(("x", ("batch", 1, 8, 8))), {}, {}, warnings.append)
    assert shapes == [[1, 1, 8, 8]] and sets is None and "built as 1" in warnings[0]
    with pytest.raises(BadInput, match=r"--input-shape x:N,3,N,N or .*shape_sets"):
        export.shape_plan(_io(("x", ("batch", 3, "h", "w"))), {}, {})


# -- the dataset list -------------------------------------------------------------------------------------------------
def test_the_dataset_list_has_one_line_per_sample_and_one_npy_per_input(tmp_path):
    io = _io(("a", (1, 3, 4, 4)), ("b", (1, 5)))
    rng = np.random.default_rng(1)
    feeds = [{"a": rng.random((1, 3, 4, 4), dtype=np.float32), "b": rng.random((1, 5), dtype=np.float32)}
             for _ in range(3)]
    lines, n = export.write_dataset(iter(feeds), io, tmp_path, "calibration")
    assert n == 3 and lines[1] == "calibration/00001_0.npy calibration/00001_1.npy"
    np.testing.assert_array_equal(np.load(tmp_path / "calibration/00002_1.npy"), feeds[2]["b"])
    assert np.load(tmp_path / "calibration/00000_0.npy").shape == (1, 3, 4, 4)  # the model's NCHW, as the toolkit
    # with a folded normalisation the samples are what the .rknn takes: x * std + mean
    lines, _ = export.write_dataset(iter(feeds[:1]), _io(("a", (1, 3, 4, 4))), tmp_path, "norm",
                                    ([10.0, 20.0, 30.0], [2.0, 2.0, 2.0]))
    got = np.load(tmp_path / lines[0])
    np.testing.assert_allclose(got[0, 2], feeds[0]["a"][0, 2] * 2 + 30, rtol=1e-6)


# -- keep_float: hybrid quantization ----------------------------------------------------------------------------------
def test_keep_float_maps_nodes_to_their_tensors_and_consumer_chain(digits):
    proto = onnx.load(str(digits["model"]))
    got = export.keep_float_tensors(["relu2", "conv1"], proto)
    assert got["relu2"]["own"] == ["relu2"]
    assert got["conv1"]["own"] == ["conv1"] and got["conv1"]["chain"][0] == "relu1"  # Conv -> its Relu
    with pytest.raises(BadInput) as err:
        export.keep_float_tensors(["relu22"], proto)
    assert "no node 'relu22'" in err.value.one_line() and "did you mean" in err.value.one_line()


# -- the pre-check ----------------------------------------------------------------------------------------------------
def test_the_operator_list_is_the_toolkit_document_with_its_source_and_probe():
    doc = precheck.operator_list()
    assert doc["doc"]["source"].startswith("https://github.com/airockchip/rknn-toolkit2/")
    assert doc["doc"]["version"] == "2.3.2" and len(doc["ops"]) > 150
    for op in ("Conv", "Relu", "Gemm", "MaxPool", "GlobalAveragePool", "Flatten", "Softmax"):
        assert doc["ops"][op]["supported"], op
    assert doc["ops"]["Resize"]["doc"] == "mode: nearest2d/bilinear"
    assert doc["probe"]["toolkit"] == "2.5.0"


def test_the_precheck_passes_the_digits_cnn_and_names_refused_nodes(digits):
    from edgeconv.model import Model

    assert precheck.precheck(Model("onnx", _io(("input", (1, 1, 8, 8))), path=digits["model"]), None) == []
    refused = next(op for op, r in precheck.operator_list()["ops"].items() if not r["supported"])
    found = precheck.check_nodes([("conv", "Conv", ""), ("bad", refused, ""), ("mine", "Foo", "com.example"),
                                  ("new", "NotAnOp", "")])
    assert [(u.node, u.op_type) for u in found] == [("bad", refused), ("mine", "com.example.Foo"),
                                                    ("new", "NotAnOp")]
    assert not any(u.fallback for u in found) and "Not Supported" in found[0].reason


def test_opset_above_19_is_lowered_with_a_warning():
    from onnx import TensorProto, helper

    g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 21)])
    warnings: list[str] = []
    low, info = export.prepare_opset(m, warnings.append)
    assert info == {"opset": 21, "opset_for_toolkit": 19} and "converted to 19" in warnings[0]
    assert low.opset_import[0].version == 19
    same, info = export.prepare_opset(low)
    assert same is low and info == {"opset": 19}


# -- reading the toolkit ------------------------------------------------------------------------------------------------
# error_analysis.txt as rknn-toolkit2 2.5.0's accuracy_analysis wrote it for a small CNN (captured here).
ANALYSIS = """\
layer_name                          simulator_error
                                entire              single
                             cos      euc        cos      euc
-------------------------------------------------------------------
[Input] x                  1.00000 | 0.00000   1.00000 | 0.00000
[exDataConvert] x_int8     1.00000 | 2.17806   1.00000 | 2.17806
[Conv] c
[Relu] r                   0.99998 | 24.90235  0.99998 | 24.90235
[Conv] y_mm                0.99997 | 6.00955   0.99999 | 4.49853
"""


def test_the_per_layer_accuracy_analysis_is_read_row_by_row():
    rows = bridge.parse_analysis(ANALYSIS)
    assert [r["layer"] for r in rows] == ["x", "x_int8", "c", "r", "y_mm"]
    assert rows[2] == {"layer": "c", "kind": "Conv", "entire_cos": None, "entire_euc": None, "single_cos": None,
                       "single_euc": None}  # fused into the next layer: no values
    assert rows[4]["entire_cos"] == 0.99997 and rows[4]["single_euc"] == 4.49853
    summary = export._analysis_summary({"rows": rows}, {"analysis": {"sample": {"kind": "npz"}}})
    assert summary["ran"] and summary["worst_single"][0]["layer"] == "r" and summary["output_entire_cos"] == 0.99997


def test_the_toolkit_error_line_is_its_last_E_line_without_colours():
    log = ("I rknn-toolkit2 version: 2.5.0\n\x1b[1;31mE\x1b[0m \x1b[1;31mload_onnx: Unsupport onnx opset 22, need <= "
           "19!\x1b[0m\nE RKNN: [19:12:17.719] Unkown op target: 0\nsomething else\n")
    assert export.first_error(log) == "E load_onnx: Unsupport onnx opset 22, need <= 19!"


def test_the_runner_refuses_a_recipe_outside_the_artifacts_folder(tmp_path):
    from edgeconv_rknn.runner import recipe_path

    art = tmp_path / "out" / "m.rknn"
    art.parent.mkdir()
    art.write_bytes(b"RKNN")
    with pytest.raises(BadInput, match="outside"):
        recipe_path(art, "../../etc/recipe.json")
    with pytest.raises(BadInput, match="no build recipe"):
        recipe_path(art, None)
    (art.parent / "rknn_build").mkdir()
    (art.parent / "rknn_build" / "recipe.json").write_text("{}")
    assert recipe_path(art, "rknn_build/recipe.json").name == "recipe.json"


# -- the board half, on the STAND-IN runtime (no Rockchip board here) -----------------------------------------------------
@pytest.fixture
def standin(monkeypatch):
    """The stand-in ``rknnlite`` (onnxruntime on the ONNX original; tests only) on sys.path."""
    monkeypatch.syspath_prepend(str(STANDIN))
    for name in [m for m in sys.modules if m == "rknnlite" or m.startswith("rknnlite.")]:
        monkeypatch.delitem(sys.modules, name)
    from rknnlite.api import RKNNLite

    RKNNLite.calls.clear()
    return RKNNLite


def _board_folder(tmp_path, digits):
    out = tmp_path / "out"
    (out / "rknn_build").mkdir(parents=True)
    (out / "m.rknn").write_bytes(b"not a real rknn: the stand-in runs the ONNX original")
    (out / "rknn_build" / "model.onnx").write_bytes(Path(digits["model"]).read_bytes())
    return out / "m.rknn"


def test_the_board_half_runs_through_the_runtime_api_with_the_core_mask(standin, tmp_path, digits):
    from edgeconv_rknn import board

    path = _board_folder(tmp_path, digits)
    assert board.MODULES == ("rknnlite.api",)
    s = board.load(str(path), {"core_mask": "0_1_2", "output_names": ["logits"], "input_formats": ["nchw"],
                               "platform": "rk3588", "threads": 4})
    with np.load(digits["test"]) as z:
        x, labels = z["input"][:8], z["labels"][:8]
    outs = [s.infer({"input": x[i:i + 1]})["logits"] for i in range(8)]
    s.close()
    assert s.info["runtime"].startswith("STAND-IN") and "stand-in" in s.info["device"]
    assert s.info["core_mask"] == "0_1_2" and s.info["ignored_options"] == ["threads"]
    assert ("init_runtime", standin.NPU_CORE_0_1_2) in standin.calls
    assert ("inference", ["nchw"]) in standin.calls and standin.calls[-1] == ("release", None)
    assert (np.concatenate(outs).argmax(1) == labels).mean() >= 0.75  # the ONNX original's answers came back


def test_the_board_half_reports_a_bad_core_mask_and_a_failed_load(standin, tmp_path, digits):
    from edgeconv_rknn import board

    path = _board_folder(tmp_path, digits)
    with pytest.raises(ValueError, match="core_mask must be one of"):
        board.load(str(path), {"core_mask": "3"})
    with pytest.raises(RuntimeError, match="load_rknn failed"):
        board.load(str(tmp_path / "missing.rknn"), {})


def test_the_board_half_is_self_contained():
    """Shipped alone to a board: no edgeconv import, no import of this plugin, runs on Python >= 3.8."""
    import ast

    from edgeconv_rknn import board

    tree = ast.parse(Path(board.__file__).read_text())
    imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert imported <= {"numpy", "rknnlite", "importlib"}, imported


# The placement table rknn-toolkit2 2.5.0's verbose build printed for the digits CNN at fp16 (captured here).
PLACEMENT_LOG = """\
D RKNN: [20:13:19.489] >>>>>> start: rknn::RKNNSetOpTargetPass
D RKNN: [20:13:19.513] ID   OpType             DataType Target InputShape                               OutputShape            Cycles(DDR/NPU/Total)    RW(KB)       FullName
D RKNN: [20:13:19.513] ------------------------------------------------------------------------------------------------------------
D RKNN: [20:13:19.513] 0    InputOperator      FLOAT16  CPU    \\                                        (1,1,8,8)              0/0/0                    0            InputOperator:input
D RKNN: [20:13:19.513] 1    ConvRelu           FLOAT16  NPU    (1,1,8,8),(32,1,3,3),(32)                (1,32,8,8)             379/576/576              4            Conv:conv1
D RKNN: [20:13:19.513] 3    MaxPool            FLOAT16  NPU    (1,64,8,8)                               (1,64,4,4)             0/0/0                    8            MaxPool:maxpool1
D RKNN: [20:13:19.513] 7    Reshape            FLOAT16  CPU    (1,10,1,1),(2)                           (1,10)                 0/0/0                    0            Reshape:logits_mm_tp_rs
D RKNN: [20:13:19.513] 8    OutputOperator     FLOAT16  CPU    (1,10)                                   \\                      0/0/0                    0            OutputOperator:logits
D RKNN: [20:13:19.513] ------------------------------------------------------------------------------------------------------------
D RKNN: [20:13:19.513] <<<<<<<< end: rknn::RKNNModelRegCmdbuildPass
"""


def test_the_toolkits_placement_table_says_which_operators_run_on_the_cpu():
    rows = bridge.placement("noise\n" + PLACEMENT_LOG + PLACEMENT_LOG.replace("Reshape  ", "Reshape  "))
    assert [(r["op"], r["target"]) for r in rows] == [("InputOperator", "CPU"), ("ConvRelu", "NPU"),
                                                      ("MaxPool", "NPU"), ("Reshape", "CPU"),
                                                      ("OutputOperator", "CPU")]
    summary = export.placement_summary(rows)
    assert summary["ops"] == 3 and summary["npu"] == 2 and summary["cpu"] == ["Reshape:logits_mm_tp_rs"]
    assert bridge.placement("no table here") == [] and export.placement_summary([])["cpu"] == []


def test_an_operator_the_document_refuses_but_the_toolkit_builds_is_a_warning_not_a_refusal():
    ops = precheck.operator_list()["ops"]
    let = next((op for op, r in ops.items() if r["supported"] and r.get("doc") == "Not Supported"), None)
    assert let is not None  # the probe found some (Abs, Neg, Sign ... on toolkit 2.5.0)
    (found,) = precheck.check_nodes([("n", let, "")])
    assert found.fallback and "builds it" in found.reason and "not checked on a board" in found.reason
