"""The aipp_op config for several preprocessing settings, the changed input contract, and -- with an emulation of
AIPP written from the documented formulas (ascend_testutil.emulate_aipp) -- that the pixels the core feeds, turned
into the .om's input buffer by the runner, come out of AIPP as the source model's normalised input."""

from __future__ import annotations

import numpy as np
import pytest
from ascend_testutil import emulate_aipp, parse_aipp
from edgeconv_ascend import aipp

from edgeconv.data import Preprocess
from edgeconv.errors import BadInput
from edgeconv.model import IOContract, TensorSpec
from edgeconv.verification.fidelity import adapt_inputs

IMAGE = IOContract((TensorSpec("image", (1, 3, 224, 224), "float32", "NCHW"),), (TensorSpec("s", (1, 5), "float32"),))
IMAGENET = Preprocess(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
HEAD = "aipp_op {\n    aipp_mode : static\n    related_input_rank : 0\n"


def test_rgb_imagenet():
    # min_chn = 255*mean, var_reci = 1/(255*std): the values of Ascend VisionSDK's det_aipp.cfg
    assert aipp.config_text(aipp.from_options(IMAGE, IMAGENET, {})) == HEAD + """\
    input_format : RGB888_U8
    src_image_size_w : 224
    src_image_size_h : 224
    crop : false
    csc_switch : false
    rbuv_swap_switch : false
    mean_chn_0 : 0
    mean_chn_1 : 0
    mean_chn_2 : 0
    min_chn_0 : 123.675
    min_chn_1 : 116.28
    min_chn_2 : 103.53
    var_reci_chn_0 : 0.01712475383
    var_reci_chn_1 : 0.0175070028
    var_reci_chn_2 : 0.0174291939
}
"""


def test_bgr_frames_for_an_rgb_model_with_a_crop():
    spec = aipp.from_options(IMAGE, Preprocess(mean=(0.5,), std=(0.5,)),
                             {"aipp_input": "bgr", "aipp_src_size": "320,256", "aipp_crop": "10,20,224,224"})
    assert aipp.config_text(spec) == HEAD + """\
    input_format : RGB888_U8
    src_image_size_w : 320
    src_image_size_h : 256
    crop : true
    load_start_pos_w : 10
    load_start_pos_h : 20
    crop_size_w : 224
    crop_size_h : 224
    csc_switch : false
    rbuv_swap_switch : true
    mean_chn_0 : 0
    mean_chn_1 : 0
    mean_chn_2 : 0
    min_chn_0 : 127.5
    min_chn_1 : 127.5
    min_chn_2 : 127.5
    var_reci_chn_0 : 0.007843137255
    var_reci_chn_1 : 0.007843137255
    var_reci_chn_2 : 0.007843137255
}
"""


def test_nv12_bt601_narrow_for_a_bgr_model():
    # CANN's CSC table, "YUV420SP_U8 to BGR", BT-601NARROW
    spec = aipp.from_options(IMAGE, Preprocess(bgr=True), {"aipp_input": "yuv420sp", "aipp_csc": "bt601-narrow"})
    text = aipp.config_text(spec)
    assert "    input_format : YUV420SP_U8\n" in text and "    csc_switch : true\n    rbuv_swap_switch : false\n" in text
    assert """\
    matrix_r0c0 : 298
    matrix_r0c1 : 516
    matrix_r0c2 : 0
    matrix_r1c0 : 298
    matrix_r1c1 : -100
    matrix_r1c2 : -208
    matrix_r2c0 : 298
    matrix_r2c1 : 0
    matrix_r2c2 : 409
    input_bias_0 : 16
    input_bias_1 : 128
    input_bias_2 : 128
""" in text
    nv21 = aipp.config_text(aipp.from_options(IMAGE, Preprocess(), {"aipp_input": "yvu420sp"}))
    assert "rbuv_swap_switch : true" in nv21 and "matrix_r0c2 : 359" in nv21  # JPEG, YUV->RGB rows


def test_grey_model():
    grey = IOContract((TensorSpec("input", ("batch", 1, 8, 8), "float32", "NCHW"),), (TensorSpec("s", (1, 5), "float32"),))
    spec = aipp.from_options(grey, Preprocess(), {"aipp_input": "gray"})
    assert aipp.config_text(spec) == HEAD + """\
    input_format : YUV400_U8
    src_image_size_w : 8
    src_image_size_h : 8
    crop : false
    csc_switch : false
    mean_chn_0 : 0
    min_chn_0 : 0
    var_reci_chn_0 : 0.003921568627
}
"""


def test_the_contract_becomes_uint8_pixels():
    spec = aipp.from_options(IMAGE, IMAGENET, {"aipp_input": "bgr"})
    io = aipp.om_contract(IMAGE, spec)
    pix = io.inputs[0]
    assert (pix.dtype, pix.layout, pix.shape) == ("uint8", "NHWC", (1, 224, 224, 3))
    assert pix.zero_point == pytest.approx([123.675, 116.28, 103.53])
    assert pix.scale == pytest.approx([1 / 58.395, 1 / 57.12, 1 / 57.375])
    record = io.preprocessing["aipp"]
    assert record["replaces"] == {"dtype": "float32", "layout": "NCHW", "shape": [1, 3, 224, 224]}
    assert record["om_input"] == {"dtype": "uint8", "shape": [1, 224, 224, 3], "format": "packed BGR HWC"}
    assert IOContract.from_dict(io.to_dict()) == io  # survives the manifest


@pytest.mark.parametrize("options,message", [
    ({"aipp_resize": "112,112"}, "resizeSwitch as reserved"),
    ({"aipp_crop": "0,0,100,100", "aipp_src_size": "320,256"}, "must be the model's input size"),
    ({"aipp_src_size": "320,256"}, "give -O aipp_crop"),
    ({"aipp_input": "yuv420sp", "aipp_src_size": "321,256", "aipp_crop": "1,0,224,224"}, "must be even"),
    ({"aipp_input": "gray"}, "grey models take aipp_input=gray"),
])
def test_refusals(options, message):
    with pytest.raises(BadInput, match=message):
        aipp.from_options(IMAGE, IMAGENET, options)


def _through_the_npu(x, src_io, model_pre, options, layout="NCHW"):
    spec = aipp.from_options(src_io, model_pre, options)
    art = aipp.om_contract(src_io, spec)
    pixels = adapt_inputs({"image": x}, src_io, art)["image"]  # what the core feeds the runner
    buf = aipp.om_input(pixels, art.preprocessing["aipp"])  # what the runner feeds the .om
    return buf, emulate_aipp(buf, parse_aipp(aipp.config_text(spec)), layout)


SMALL = IOContract((TensorSpec("image", (2, 3, 8, 8), "float32", "NCHW"),), (TensorSpec("s", (2, 5), "float32"),))


def _images(seed=0, blocky=False):
    rng = np.random.default_rng(seed)
    px = rng.integers(0, 256, (2, 8, 8, 3)).astype(np.float32)
    if blocky:  # constant 2x2 blocks: YUV420's chroma subsampling loses nothing
        px = px[:, ::2, ::2].repeat(2, axis=1).repeat(2, axis=2)
    return px


@pytest.mark.parametrize("camera,bgr_model", [("rgb", False), ("bgr", False), ("rgb", True), ("bgr", True)])
def test_rgb_and_bgr_frames_reach_the_model_exactly(camera, bgr_model):
    px = _images()  # model channel order
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    x = ((px / 255 - mean) / std).astype(np.float32).transpose(0, 3, 1, 2)
    pre = Preprocess(mean=tuple(mean), std=tuple(std), bgr=bgr_model)
    buf, seen = _through_the_npu(x, SMALL, pre, {"aipp_input": camera})
    if camera.upper() != ("BGR" if bgr_model else "RGB"):
        assert np.array_equal(buf[..., ::-1], px.astype(np.uint8))  # the .om gets the camera's order
    np.testing.assert_allclose(seen, x, atol=1e-5)


def test_a_crop_out_of_a_larger_frame():
    px = _images(1)
    x = (px / 255).astype(np.float32).transpose(0, 3, 1, 2)
    buf, seen = _through_the_npu(x, SMALL, Preprocess(), {"aipp_src_size": "12,10", "aipp_crop": "2,2,8,8"})
    assert buf.shape == (2, 10, 12, 3)
    np.testing.assert_allclose(seen, x, atol=1e-6)


@pytest.mark.parametrize("camera", ["yuv420sp", "yvu420sp"])
@pytest.mark.parametrize("csc", ["jpeg", "bt601-narrow", "bt709-wide"])
def test_yuv_frames_reach_the_model_up_to_rounding(camera, csc):
    px = _images(2, blocky=True)
    x = (px / 255).astype(np.float32).transpose(0, 3, 1, 2)
    buf, seen = _through_the_npu(x, SMALL, Preprocess(), {"aipp_input": camera, "aipp_csc": csc})
    assert buf.shape == (2, 12, 8) and buf.dtype == np.uint8  # NV12/NV21: H*3/2 rows
    # integer matrices, >>8 and 8-bit YUV: a few levels of error, far below any image model's sensitivity
    assert np.abs(seen - x).max() <= 6 / 255
