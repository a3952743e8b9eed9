"""Options and the IO contract -> the exact ATC command line, for the documented examples.

Each case names the example of Huawei's ATC guide it reproduces (CANN 8.0-9.0 parameter pages; the ModelZoo /
MindStudio command lines). The guide writes values in double quotes for the shell; edgeconv runs ATC without a
shell, so each ``--name=value`` is one argument with the quotes' content.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from edgeconv_ascend import atc, shapes

from edgeconv.errors import BadInput
from edgeconv.model import IOContract, TensorSpec


def io(*inputs, outputs=(("out", ("batch", 10)),)):
    return IOContract(tuple(TensorSpec(n, tuple(s), "float32", lay) for n, s, lay in inputs),
                      tuple(TensorSpec(n, tuple(s), "float32") for n, s in outputs))


def argv(contract, options=None, precision="fp16", profiles=None, model="m.onnx", output="out/m", proto=None):
    opts = {"soc_version": "Ascend310B4", "input_format": "auto", "precision_flag": "v1", "fp32_mode": "origin",
            "log": "error", **(options or {})}
    sh = shapes.resolve(contract, profiles or {}, opts)
    job = SimpleNamespace(options=opts, precision=precision)
    graph = proto or SimpleNamespace(graph=SimpleNamespace(node=[]))
    return atc.settings_from(job, sh, graph, aipp_conf=opts.get("_aipp")).argv(model, output)


RESNET = io(("actual_input_1", (1, 3, 224, 224), "NCHW"))


def test_the_basic_onnx_conversion():
    # Guide, "converting an ONNX model": atc --model=... --framework=5 --output=... --soc_version=<soc_version>
    assert argv(RESNET, model="/home/u/module/resnet50.onnx", output="/home/u/module/out/onnx_resnet50") == [
        "atc", "--framework=5", "--model=/home/u/module/resnet50.onnx", "--output=/home/u/module/out/onnx_resnet50",
        "--soc_version=Ascend310B4", "--input_shape=actual_input_1:1,3,224,224", "--input_format=NCHW",
        "--precision_mode=force_fp16", "--log=error"]


def test_dynamic_batch_size_example():
    # --input_shape="data:-1,3,416,416;img_info:-1,4" --dynamic_batch_size="1,2,4,8"
    contract = io(("data", ("N", 3, 416, 416), "NCHW"), ("img_info", ("N", 4), None))
    got = argv(contract, {"dynamic_batch": (1, 2, 4, 8)})
    assert got[5:9] == ["--input_shape=data:-1,3,416,416;img_info:-1,4", "--input_format=ND",
                        "--dynamic_batch_size=1,2,4,8", "--precision_mode=force_fp16"]


def test_dynamic_image_size_example():
    # --input_shape="data:8,3,-1,-1;img_info:8,4,-1,-1" --dynamic_image_size="416,416;832,832"
    contract = io(("data", (8, 3, "H", "W"), "NCHW"), ("img_info", (8, 4, "H", "W"), "NCHW"))
    got = argv(contract, {"dynamic_image_size": "416,416;832,832"})
    assert got[5:8] == ["--input_shape=data:8,3,-1,-1;img_info:8,4,-1,-1", "--input_format=NCHW",
                        "--dynamic_image_size=416,416;832,832"]


def test_dynamic_dims_example():
    # --input_shape="data:1,1,40,-1;label:1,-1;mask:-1,-1" --dynamic_dims="20,20,1,1;40,40,2,2;80,60,4,4"
    # --input_format=ND
    contract = io(("data", (1, 1, 40, "T"), None), ("label", (1, "T"), None), ("mask", ("T", "T"), None))
    got = argv(contract, {"dynamic_dims": "20,20,1,1;40,40,2,2;80,60,4,4"})
    assert got[5:8] == ["--input_shape=data:1,1,40,-1;label:1,-1;mask:-1,-1", "--input_format=ND",
                        "--dynamic_dims=20,20,1,1;40,40,2,2;80,60,4,4"]


def test_mindstudio_tuning_example_with_extra_arguments_and_aipp():
    # atc --framework=5 --model=... --output=... --input_format=NCHW --input_shape="image:${bs},3,224,224"
    # --soc_version=Ascend${chip_name} --log=error --optypelist_for_implmode="Sigmoid"
    # --op_select_implmode=high_performance --enable_small_channel --insert_op_conf=./insert_op.cfg
    contract = io(("image", (8, 3, 224, 224), "NCHW"))
    got = argv(contract, {"soc_version": "Ascend310P3", "_aipp": "./insert_op.cfg",
                          "extra_args": '--optypelist_for_implmode="Sigmoid" --op_select_implmode=high_performance '
                                        "--enable_small_channel"},
               model="models/vit-b-16.img.fp32.bs8.opt.onnx", output="models/vit-b-16.img.bs8")
    assert got == ["atc", "--framework=5", "--model=models/vit-b-16.img.fp32.bs8.opt.onnx",
                   "--output=models/vit-b-16.img.bs8", "--soc_version=Ascend310P3", "--input_shape=image:8,3,224,224",
                   "--input_format=NCHW", "--precision_mode=force_fp16", "--insert_op_conf=./insert_op.cfg",
                   "--log=error", "--optypelist_for_implmode=Sigmoid", "--op_select_implmode=high_performance",
                   "--enable_small_channel"]


@pytest.mark.parametrize("precision,options,flag", [
    ("fp16", {}, "--precision_mode=force_fp16"),
    ("int8", {}, "--precision_mode=force_fp16"),
    ("fp32", {}, "--precision_mode=must_keep_origin_dtype"),
    ("fp32", {"fp32_mode": "mixed"}, "--precision_mode=allow_mix_precision"),
    ("fp32", {"fp32_mode": "cube_fp16in_fp32out"}, "--precision_mode=force_fp32"),
    ("fp32", {"fp32_mode": "fp32_to_fp16"}, "--precision_mode=allow_fp32_to_fp16"),
    ("fp16", {"precision_flag": "v2"}, "--precision_mode_v2=fp16"),
    ("fp32", {"precision_flag": "v2"}, "--precision_mode_v2=origin"),
    ("fp32", {"precision_flag": "v2", "fp32_mode": "mixed"}, "--precision_mode_v2=mixed_float16"),
    ("fp16", {"precision_mode": "allow_mix_precision_fp16"}, "--precision_mode=allow_mix_precision_fp16"),
    ("fp16", {"precision_flag": "v2", "precision_mode": "mixed_bfloat16"}, "--precision_mode_v2=mixed_bfloat16"),
])
def test_precision_to_precision_mode(precision, options, flag):
    got = argv(RESNET, options, precision=precision)
    assert [a for a in got if a.startswith("--precision_mode")] == [flag]


def test_precision_modes_of_the_other_flag_are_refused():
    with pytest.raises(BadInput, match="no --precision_mode_v2 equivalent"):
        argv(RESNET, {"precision_flag": "v2", "fp32_mode": "fp32_to_fp16"}, precision="fp32")
    with pytest.raises(BadInput, match="not a --precision_mode value.*precision_flag=v2"):
        argv(RESNET, {"precision_mode": "mixed_float16"})


def test_gears_come_from_an_input_shape_profile():
    contract = io(("x", (4, 3, 8, 8), "NCHW"))  # the core pinned the profile's opt shape
    got = argv(contract, profiles={"x": [(1, 3, 8, 8), (4, 3, 8, 8), (16, 3, 8, 8)]})
    assert "--input_shape=x:-1,3,8,8" in got and "--dynamic_batch_size=1,4,16" in got
    got = argv(contract, profiles={"x": [(4, 3, 8, 8), (4, 3, 16, 16), (4, 3, 32, 32)]})
    assert "--input_shape=x:4,3,-1,-1" in got and "--dynamic_image_size=8,8;16,16;32,32" in got
    got = argv(contract, profiles={"x": [(4, 3, 8, 8), (4, 3, 8, 16), (4, 3, 8, 32)]})
    assert "--input_shape=x:4,3,8,-1" in got and "--dynamic_dims=8;16;32" in got and "--input_format=ND" in got


def test_a_dynamic_batch_without_gears_is_built_for_1_with_a_warning():
    warned = []
    sh = shapes.resolve(io(("x", ("batch", 3, 8, 8), "NCHW")), {}, {"input_format": "auto"}, warn=warned.append)
    assert sh.input_shape_arg() == "x:1,3,8,8" and "built for batch 1" in warned[0]


@pytest.mark.parametrize("options,message", [
    ({"dynamic_batch": (1, 2), "dynamic_dims": "1;2"}, "cannot be combined"),
    ({"dynamic_batch": (4,)}, "2 to 100 gears"),
    ({"dynamic_image_size": "416;832"}, "every gear needs 2 value"),
    ({"dynamic_image_size": "4,4;8,8", "input_format": "ND"}, "NCHW or NHWC"),
    ({"dynamic_dims": "1;2"}, "each gear needs 2 value"),
])
def test_gear_options_are_checked(options, message):
    contract = io(("x", ("b", 3, 8, "W"), "NCHW"))
    with pytest.raises(BadInput, match=message):
        shapes.resolve(contract, {}, {"input_format": "auto", **options})


def test_other_dynamic_axes_need_a_shape():
    with pytest.raises(BadInput, match=r"dynamic axis 3 \('W'\).*--input-shape x:1,3,8,\?"):
        shapes.resolve(io(("x", (1, 3, 8, "W"), "NCHW")), {}, {"input_format": "auto"})


def test_dynamic_dims_and_aipp_are_exclusive():
    with pytest.raises(BadInput, match="ATC refuses --dynamic_dims with --insert_op_conf"):
        shapes.resolve(io(("x", (1, 3, 8, "W"), "NCHW")), {}, {"input_format": "auto", "dynamic_dims": "8;16"},
                       aipp=True)


def test_extra_args_are_checked_and_passed_literally():
    assert atc.parse_extra('["--fusion_switch_file=/my dir/fusion \\"q\\";x.cfg", "--keep_dtype=k.cfg"]') == [
        '--fusion_switch_file=/my dir/fusion "q";x.cfg', "--keep_dtype=k.cfg"]
    assert atc.parse_extra("--fusion_switch_file='/my dir/a;b.cfg'") == ["--fusion_switch_file=/my dir/a;b.cfg"]
    with pytest.raises(BadInput, match="--soc_version is set by edgeconv"):
        atc.parse_extra("--soc_version=Ascend910B3")
    with pytest.raises(BadInput, match="did you mean 'keep_dtype'"):
        atc.parse_extra("--keep_dtypes=x.cfg")
    with pytest.raises(BadInput, match="is not an ATC argument"):
        atc.parse_extra("rm -rf /")


def test_out_nodes_and_log():
    import onnx
    from ascend_testutil import rgb_model

    proto = rgb_model()
    got = argv(io(("image", (1, 3, 8, 8), "NCHW")), {"out_nodes": "relu:0;fc:0", "log": "info"}, proto=proto)
    assert got[-2:] == ["--out_nodes=relu:0;fc:0", "--log=info"]
    with pytest.raises(BadInput, match="no node 'rellu'.*did you mean 'relu'"):
        argv(io(("image", (1, 3, 8, 8), "NCHW")), {"out_nodes": "rellu:0"}, proto=proto)
    with pytest.raises(BadInput, match="node:index"):
        argv(io(("image", (1, 3, 8, 8), "NCHW")), {"out_nodes": "relu"}, proto=proto)
    assert isinstance(proto, onnx.ModelProto)


def test_soc_version_is_required_and_checked_with_did_you_mean(ascend_plugin):
    target = ascend_plugin.registry().target("ascend")
    with pytest.raises(BadInput, match="did you mean 'Ascend310B4'"):
        target.validate_options({"soc-version": "Ascend310-B4"})
    assert target.validate_options({"soc_version": "Ascend910B3"})["soc_version"] == "Ascend910B3"
    with pytest.raises(BadInput, match="-O soc_version=Ascend<Name>.*npu-smi info"):
        argv(RESNET, {"soc_version": ""})
