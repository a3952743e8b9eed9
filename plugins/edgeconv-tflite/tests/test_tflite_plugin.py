"""The tflite plugin's registration, start-up cost, option checks and pre-check (no conversion runs here)."""

from __future__ import annotations

import json
import subprocess
import sys

import onnx
from onnx import TensorProto, helper

HEAVY = ("tensorflow", "tf_keras", "keras", "onnx2tf", "ai_edge_litert", "onnx", "numpy")


def test_target_and_runner_are_registered_by_the_distribution(fresh_plugins):
    reg = fresh_plugins.registry()
    t = reg.targets["tflite"]
    assert t.dist == "edgeconv-tflite" and t.plugin == "tflite"
    assert t.accepts == ("tf", "onnx") and t.artifact_form == "tflite" and t.suffix == ".tflite"
    assert t.precisions == ("fp32", "fp16", "int8-dynamic", "int8") and not t.precision_passes
    assert {"io_type", "select_tf_ops", "threads", "calib_limit", "input_layout"} <= {o.name for o in t.options}
    assert reg.runners["tflite"].factory == "edgeconv_tflite.runner:LiteRTRunner"


def test_targets_lists_tflite_ready_without_importing_anything_heavy():
    code = (
        "import sys\nfrom edgeconv.cli import main\nsys.argv = ['edgeconv', 'targets', '--json']\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        f"print('HEAVY=' + ','.join(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    heavy = out.strip().splitlines()[-1]
    assert heavy == "HEAVY=", f"`edgeconv targets` imported {heavy[6:]}"
    rows = {r["name"]: r for r in json.loads(out[: out.rindex("HEAVY=")])["targets"]}
    assert rows["tflite"]["status"] == "ready" and rows["tflite"]["provider"] == "edgeconv-tflite"


def test_bad_option_values_are_refused_with_a_suggestion(cli, digits, tmp_path):
    res = cli("convert", str(digits["model"]), "--to", "tflite", "-O", "io_type=int16", "-o", str(tmp_path / "o"))
    assert res.exit_code == 2 and "io_type" in res.stderr and "int8" in res.stderr
    res = cli("convert", str(digits["model"]), "--to", "tflite", "-O", "io_typ=int8", "-o", str(tmp_path / "o"))
    assert res.exit_code == 2 and "did you mean 'io_type'" in res.stderr
    res = cli("convert", str(digits["model"]), "--to", "tflite", "-p", "bf16", "-o", str(tmp_path / "o"))
    assert res.exit_code == 2 and "fp32, fp16, int8-dynamic, int8" in res.stderr


def _graph(op: str, x_shape: list[int], y_shape: list[int], **attrs) -> onnx.ModelProto:
    node = helper.make_node(op, ["x"], ["y"], name=f"my_{op.lower()}", **attrs)
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["r"], name="relu"), node], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, y_shape)])
    graph.node[1].input[0] = "r"
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_precheck_refuses_an_operator_onnx2tf_cannot_convert_before_any_conversion(cli, tmp_path):
    path = tmp_path / "lppool.onnx"
    onnx.save(_graph("LpPool", [1, 2, 8, 8], [1, 2, 4, 4], kernel_shape=[2, 2], strides=[2, 2]), path)
    res = cli("convert", str(path), "--to", "tflite", "-o", str(tmp_path / "o"))
    assert res.exit_code == 4, res.output
    line = res.stderr.strip()
    assert len(line.splitlines()) == 1 and "precheck" in line
    assert "my_lppool (LpPool)" in line and "onnx2tf 1.28.8 has no converter for LpPool" in line
    assert not (tmp_path / "o").exists()


def test_precheck_asks_for_select_tf_ops_where_only_a_flex_op_would_do(cli, tmp_path):
    path = tmp_path / "det.onnx"
    onnx.save(_graph("Det", [2, 3, 3], [2]), path)
    res = cli("convert", str(path), "--to", "tflite", "-o", str(tmp_path / "o"))
    assert res.exit_code == 4
    assert "my_det (Det)" in res.stderr and "MatrixDeterminant" in res.stderr and "-O select_tf_ops=true" in res.stderr


def test_precheck_function_lists_fallbacks_when_select_tf_ops_is_given():
    from edgeconv_tflite.precheck import find, supported_ops

    from edgeconv.onnx_tools import from_proto

    assert {"Conv", "Gemm", "MaxPool", "Resize", "Erf"} <= supported_ops() and "LpPool" not in supported_ops()
    model = from_proto(_graph("Det", [2, 3, 3], [2]), None)
    found = find(model, select_tf_ops=True)
    assert [(u.node, u.op_type, u.fallback) for u in found] == [("my_det", "Det", True)]
    assert "Flex delegate" in found[0].reason


def test_precheck_passes_supported_graphs():
    from edgeconv_tflite.precheck import precheck

    from edgeconv.onnx_tools import from_proto

    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    assert precheck(from_proto(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), None)) == []


def test_inspect_lists_what_the_route_cannot_take(cli, tmp_path):
    path = tmp_path / "lppool.onnx"
    onnx.save(_graph("LpPool", [1, 2, 8, 8], [1, 2, 4, 4], kernel_shape=[2, 2], strides=[2, 2]), path)
    res = cli("inspect", str(path), "--json")
    assert res.exit_code == 0, res.output
    row = json.loads(res.stdout)["targets"]["tflite"]
    assert row["status"] == "unsupported"
    assert row["unsupported"] == [{"node": "my_lppool", "op_type": "LpPool",
                                   "reason": "onnx2tf 1.28.8 has no converter for LpPool"}]
