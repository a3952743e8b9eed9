"""The rknn tracer (``edgeconv debug layers`` on a .rknn) without the toolkit: reading the toolkit's dump tables, the
name and layout mapping to the reference graph, and why it cannot run. The toolchain test runs rknn-toolkit2's
accuracy_analysis itself (``test_rknn_toolchain.py -k trace``)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from edgeconv.plugin import BadInput

# What rknn-toolkit2 2.5.0's accuracy_analysis(target=None) wrote for an int8 rk3588 build of conv1 -> relu1 -> conv2
# -> relu2 -> conv3 -> relu3 -> gap -> flatten -> fc with torch-style tensor names (captured, this host).
MAP_TXT = """\
layer_name                     file_name                      
--------------------------------------------------------------
input                          input.txt                      
input_int8                     input_int8.txt                 
/blk/c1/out_0                  _blk_c1_out_0.txt              
/blk/r1/out_0                  _blk_r1_out_0.txt              
/blk/c2/out_0                  _blk_c2_out_0.txt              
/blk/r2/out_0                  _blk_r2_out_0.txt              
/blk/c3/out_0                  _blk_c3_out_0.txt              
/blk/r3/out_0                  _blk_r3_out_0.txt              
gap_2conv0                     gap_2conv0.txt                 
/blk/p/out_0                   _blk_p_out_0.txt               
logits_mm                      logits_mm.txt                  
logits_int8                    logits_int8.txt                
logits                         logits.txt                     
"""
TABLE_TXT = """\
# simulator_error: calculate the output error of each layer of the simulator (compared to the 'golden' value).
#              entire: output error of each layer between 'golden' and 'simulator', these errors will accumulate layer by layer.

layer_name                              simulator_error                    
                                    entire              single             
                                 cos      euc        cos      euc          
-----------------------------------------------------------------------
[Input] input                  1.00000 | 0.00000   1.00000 | 0.00000       
[exDataConvert] input_int8     1.00000 | 0.03072   1.00000 | 0.03072       
[Conv] /blk/c1/out_0           
[Relu] /blk/r1/out_0           0.99998 | 0.11833   0.99998 | 0.11833       
[Conv] /blk/c2/out_0           
[Relu] /blk/r2/out_0           0.99993 | 0.08467   0.99994 | 0.07458       
[Conv] /blk/c3/out_0           
[Relu] /blk/r3/out_0           0.99995 | 0.07093   0.99998 | 0.03987       
[Conv] gap_2conv0              0.99997 | 0.01666   0.99999 | 0.00759       
[Conv] /blk/p/out_0            0.99998 | 0.00259   1.00000 | 0.00072       
[Conv] logits_mm               0.99999 | 0.00188   0.99999 | 0.00130       
[Reshape] logits_int8          0.99999 | 0.00188   0.99999 | 0.00100       
[exDataConvert] logits         0.99999 | 0.00188   0.99999 | 0.00100       
"""


def _reference():
    from onnx import TensorProto, helper

    t = {"c1": "/blk/c1/out_0", "r1": "/blk/r1/out_0", "c2": "/blk/c2/out_0", "r2": "/blk/r2/out_0",
         "c3": "/blk/c3/out_0", "r3": "/blk/r3/out_0", "p": "/blk/p/out_0", "f": "/blk/f/out_0"}
    nodes, x = [], "input"
    for i in (1, 2, 3):
        nodes += [helper.make_node("Conv", [x, f"w{i}"], [t[f"c{i}"]], name=f"conv{i}", pads=[1, 1, 1, 1]),
                  helper.make_node("Relu", [t[f"c{i}"]], [t[f"r{i}"]], name=f"relu{i}")]
        x = t[f"r{i}"]
    nodes += [helper.make_node("GlobalAveragePool", [x], [t["p"]], name="gap"),
              helper.make_node("Flatten", [t["p"]], [t["f"]], name="flatten"),
              helper.make_node("Gemm", [t["f"], "fcw"], ["logits"], name="fc", transB=1)]
    inits = [helper.make_tensor(f"w{i}", TensorProto.FLOAT, [8, c, 3, 3], [0.0] * (8 * c * 9))
             for i, c in ((1, 3), (2, 8), (3, 8))]
    inits.append(helper.make_tensor("fcw", TensorProto.FLOAT, [10, 8], [0.0] * 80))
    g = helper.make_graph(nodes, "chain", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 16, 16])],
                          [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 10])], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def test_the_toolkits_tables_are_read():
    from edgeconv_rknn.bridge import parse_analysis
    from edgeconv_rknn.trace import fused_away, name_map

    names = name_map(MAP_TXT)
    assert len(names) == 13 and names["/blk/r1/out_0"] == "_blk_r1_out_0" and names["logits"] == "logits"
    assert "layer_name" not in names
    assert name_map("a b\n---\nmy tensor  my_tensor.txt\n") == {"my tensor": "my_tensor"}  # the file is the last column
    rows = parse_analysis(TABLE_TXT)
    # a tensor printed without figures was computed inside the fused op that ends with the next one
    assert fused_away(rows) == {"/blk/c1/out_0": "/blk/r1/out_0", "/blk/c2/out_0": "/blk/r2/out_0",
                                "/blk/c3/out_0": "/blk/r3/out_0"}


def test_dumped_tensors_are_matched_to_the_reference_graph():
    from edgeconv_rknn.bridge import parse_analysis
    from edgeconv_rknn.trace import match, name_map

    ref = _reference()
    got = match(ref, name_map(MAP_TXT), parse_analysis(TABLE_TXT))
    # the Convs fused into their Relus are left out (their dump is no value of the chip's), listed with the Relu;
    # the Flatten has no tensor in the dump; the toolkit's own tensors (input_int8, gap_2conv0, logits_mm) are not
    # reference tensors
    assert list(got) == ["/blk/r1/out_0", "/blk/r2/out_0", "/blk/r3/out_0", "/blk/p/out_0", "logits"]
    assert got["/blk/r2/out_0"] == {"name": "/blk/r2/out_0", "op": "Relu", "fused": ["conv2"], "layout": None,
                                    "file": "_blk_r2_out_0"}
    assert got["logits"]["op"] == "exDataConvert" and got["logits"]["fused"] == []
    # fp16: every Conv has figures of its own -> matched by itself, nothing fused
    plain = parse_analysis(TABLE_TXT.replace("[Conv] /blk/c2/out_0           ",
                                             "[Conv] /blk/c2/out_0  1.00000 | 0.1   1.00000 | 0.1"))
    got = match(ref, name_map(MAP_TXT), plain)
    assert got["/blk/c2/out_0"]["fused"] == [] and got["/blk/r2/out_0"]["fused"] == []
    assert "/blk/c1/out_0" not in got and got["/blk/r1/out_0"]["fused"] == ["conv1"]


def test_the_layout_follows_the_dumped_shape():
    from edgeconv_rknn.bridge import parse_analysis
    from edgeconv_rknn.trace import match, name_map

    ref, r1 = _reference(), "/blk/r1/out_0"
    names, rows = name_map(MAP_TXT), parse_analysis(TABLE_TXT)
    shapes = {r1: [1, 8, 16, 12]}
    assert match(ref, names, rows, shapes, {r1: [1, 8, 16, 12]})[r1]["layout"] is None  # NCHW as dumped
    assert match(ref, names, rows, shapes, {r1: [1, 16, 12, 8]})[r1]["layout"] == "channels_last"  # NHWC
    assert match(ref, names, rows, shapes, {r1: [1, 2048]})[r1]["layout"] is None  # the core's fit decides


def test_the_core_turns_a_channels_last_dump_into_the_reference_layout():
    """What the core does with the map's layout (edgeconv.plugin's tracer contract): an NHWC dump compared as NCHW."""
    from edgeconv.debug.trace import fit

    nchw = np.arange(1 * 8 * 4 * 6, dtype=np.float32).reshape(1, 8, 4, 6)
    np.testing.assert_array_equal(fit(nchw.transpose(0, 2, 3, 1), nchw.shape, "channels_last"), nchw)


def test_the_rknn_runner_registers_the_tracer(fresh_plugins):
    from edgeconv_rknn.trace import TRACER

    spec = fresh_plugins.registry().runners["rknn"]
    assert spec.tracer == "edgeconv_rknn.trace:TRACER"
    assert TRACER.isolated is False and "simulator" in TRACER.name


def test_why_it_cannot_trace(tmp_path, monkeypatch, fresh_plugins):
    from edgeconv_rknn.trace import TRACER

    (tmp_path / "m.rknn").write_bytes(b"RKNN")
    model = SimpleNamespace(path=tmp_path / "m.rknn", form="rknn", io=SimpleNamespace(inputs=()))
    why = TRACER.unavailable(model, {})
    assert "no build recipe beside it" in why and "convert it again" in why
    assert "outside the artifact's folder" in TRACER.unavailable(model, {"recipe": "../../etc/passwd"})
    (tmp_path / "rknn_build").mkdir()
    (tmp_path / "rknn_build" / "recipe.json").write_text(json.dumps({"schema": "edgeconv.rknn.recipe/1"}))
    monkeypatch.setenv("EDGECONV_TOOLCHAINS", str(tmp_path / "no-toolchains"))
    monkeypatch.delenv("EDGECONV_TOOLCHAIN_RKNN", raising=False)
    why = TRACER.unavailable(model, {})
    assert why is not None and "edgeconv toolchain install rknn" in why
    with pytest.raises(BadInput, match="no isolated trace"):
        TRACER.trace(model, None, [], options={}, golden=[{}])


def test_the_tracer_never_imports_the_toolkit_in_edgeconvs_process():
    import ast

    tree = ast.parse((Path(__file__).parents[1] / "src" / "edgeconv_rknn" / "trace.py").read_text())
    modules = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    modules |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level == 0}
    assert not any(m.split(".")[0] == "rknn" for m in modules)
    assert {m for m in modules if m.startswith("edgeconv")} == {"edgeconv.plugin"}
