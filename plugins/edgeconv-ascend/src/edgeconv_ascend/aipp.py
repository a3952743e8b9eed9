"""Static AIPP: the ``aipp_op`` config ATC inserts with ``--insert_op_conf``, and what it does to the input contract.

AIPP runs on the NPU before the model, in this order (aclmdlGetFirstAippInfo reference): crop -> colour space
conversion (CSC, incl. the R/B or U/V swap) -> resize (documented as "not supported currently") -> mean
subtraction / normalisation -> padding. Its normalisation (ATC guide, "归一化配置说明" / Normalization
Configuration) is per channel::

    pixel_out_chx(i) = [pixel_in_chx(i) - mean_chn_i - min_chn_i] * var_reci_chn_i

edgeconv's preprocessing is ``x = (pixel * scale - mean) / std`` (``--mean``, ``--std``; ``scale`` 1/255), so
``mean_chn_i = 0``, ``min_chn_i = mean_i / scale`` and ``var_reci_chn_i = scale / std_i`` (for ImageNet:
123.675, 116.28, 103.53 and 1/58.395, 1/57.12, 1/57.375 -- the values of Ascend's own VisionSDK det_aipp.cfg).

The channel order and colour matrices are those of the CANN "色域转换配置说明" (CSC configuration) tables:
RGB888_U8 in, R/B swap when the fed order differs from the model's; YUV420SP_U8 (NV12) with ``csc_switch`` and the
JPEG / BT-601 / BT-709 narrow or wide matrix; YVU420SP (NV21) = the same with ``rbuv_swap_switch``; YUV400_U8 for
grey models.

The .om then takes uint8 images instead of normalised floats. The artifact's IO contract says so: input 0 becomes
uint8 NHWC pixels in the model's channel order, with ``scale`` = var_reci and ``zero_point`` = min_chn per channel
(real = (q - zero_point) * scale, exactly AIPP's normalisation), so the core feeds the verification the same
pixels the NPU will see; ``preprocessing["aipp"]`` records the buffer the .om itself takes (camera order, YUV,
source size, crop), which the ais_bench runner builds from those pixels.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from edgeconv.plugin import BadInput, IOContract, TensorSpec, format_shape

from .shapes import layout_of

# YUV -> RGB matrices (rows: R, G, B), input_bias (Y, U, V); the BGR tables swap rows 0 and 2.
CSC = {
    "jpeg": ([[256, 0, 359], [256, -88, -183], [256, 454, 0]], (0, 128, 128)),
    "bt601-narrow": ([[298, 0, 409], [298, -100, -208], [298, 516, 0]], (16, 128, 128)),
    "bt601-wide": ([[256, 0, 359], [256, -88, -183], [256, 454, 0]], (0, 128, 128)),
    "bt709-narrow": ([[298, 0, 459], [298, -55, -136], [298, 541, 0]], (16, 128, 128)),
    "bt709-wide": ([[256, 0, 403], [256, -48, -120], [256, 475, 0]], (0, 128, 128)),
}
FORMATS = {"rgb": "RGB888_U8", "bgr": "RGB888_U8", "yuv420sp": "YUV420SP_U8", "yvu420sp": "YUV420SP_U8",
           "gray": "YUV400_U8"}
RESIZE_REFUSED = ("static AIPP resize is not supported: CANN's aclAippInfo reference documents resizeSwitch as "
                  "reserved (\"Resize is not supported currently\"); resize the images before the .om (e.g. on DVPP)")


@dataclass
class AippSpec:
    input_name: str
    camera: str  # rgb | bgr | yuv420sp | yvu420sp | gray
    model_order: str  # RGB | BGR | GRAY
    csc: str
    model_hw: tuple[int, int]
    src_wh: tuple[int, int]
    crop: tuple[int, int, int, int] | None  # x, y, w, h
    min_chn: tuple[float, ...]
    var_reci: tuple[float, ...]
    layout: str  # the model input's layout: NCHW | NHWC

    @property
    def channels(self) -> int:
        return 1 if self.camera == "gray" else 3

    @property
    def input_format(self) -> str:
        return FORMATS[self.camera]

    @property
    def yuv(self) -> bool:
        return self.camera in ("yuv420sp", "yvu420sp")

    @property
    def swap(self) -> bool:
        """rbuv_swap_switch: R/B swap for RGB input, U/V swap (NV21) for YUV."""
        if self.camera == "yvu420sp":
            return True
        if self.camera in ("rgb", "bgr"):
            return self.camera.upper() != self.model_order
        return False

    def matrix(self) -> tuple[list[list[int]], tuple[int, int, int]]:
        rows, bias = CSC[self.csc]
        if self.model_order == "BGR":
            rows = [rows[2], rows[1], rows[0]]
        return rows, bias

    def om_input_shape(self, batch: int | str) -> list[Any]:
        w, h = self.src_wh
        if self.yuv:
            return [batch, h * 3 // 2, w]
        return [batch, h, w, self.channels]

    def to_dict(self, batch: int | str = 1) -> dict[str, Any]:
        w, h = self.src_wh
        return {
            "config": "aipp.cfg", "input": self.input_name, "input_format": self.input_format, "fed": self.camera,
            "model_channel_order": self.model_order, "csc": self.csc if self.yuv else None, "src_size": [w, h],
            "crop": list(self.crop) if self.crop else None,
            "normalisation": {"formula": "(pixel - mean_chn - min_chn) * var_reci_chn",
                              "min_chn": list(self.min_chn), "var_reci_chn": list(self.var_reci)},
            "om_input": {"dtype": "uint8", "shape": self.om_input_shape(batch),
                         "format": {"YUV420SP_U8": "NV21 (YUV420SP, V before U)" if self.camera == "yvu420sp"
                                    else "NV12 (YUV420SP)", "RGB888_U8": f"packed {self.camera.upper()} HWC",
                                    "YUV400_U8": "grey HW"}[self.input_format]},
        }


def _pair(text: str, what: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in str(text).replace(" ", "").split(","))
    except ValueError:
        raise BadInput(f"-O {what}={text!r}: integers separated by commas", stage="options") from None
    return values


def from_options(io: IOContract, preprocess: Any, options: dict[str, Any]) -> AippSpec:
    """The AIPP of input 0 from -O aipp_* and the run's preprocessing (--mean, --std, --bgr)."""
    if options.get("aipp_resize"):
        raise BadInput(f"-O aipp_resize: {RESIZE_REFUSED}", stage="options")
    if not io.inputs:
        raise BadInput("AIPP needs an image input; the model has none", stage="options")
    spec = io.inputs[0]
    layout = layout_of(spec)
    if len(spec.shape) != 4 or layout not in ("NCHW", "NHWC"):
        raise BadInput(f"AIPP works on an image input [N,C,H,W] or [N,H,W,C]; input {spec.name!r} is "
                       f"{format_shape(spec.shape)} (layout {layout or 'unknown'}): give --layout or leave -O aipp off",
                       stage="options")
    c, h, w = (spec.shape[1], spec.shape[2], spec.shape[3]) if layout == "NCHW" else \
        (spec.shape[3], spec.shape[1], spec.shape[2])
    if not all(isinstance(d, int) for d in (c, h, w)):
        raise BadInput(f"AIPP needs a fixed C, H and W; input {spec.name!r} is {format_shape(spec.shape)}: give "
                       "--input-shape", stage="options")
    if not str(spec.dtype).startswith("float"):
        raise BadInput(f"AIPP replaces a float image input; input {spec.name!r} is {spec.dtype}", stage="options")
    camera = str(options.get("aipp_input") or "rgb")
    if c not in (1, 3) or (c == 1) != (camera == "gray"):
        raise BadInput(f"-O aipp_input={camera} feeds {1 if camera == 'gray' else 3} channel(s); input {spec.name!r} "
                       f"has {c} (grey models take aipp_input=gray)", stage="options")
    mean = tuple(float(m) for m in getattr(preprocess, "mean", (0.0,)) or (0.0,))
    std = tuple(float(s) for s in getattr(preprocess, "std", (1.0,)) or (1.0,))
    scale = float(getattr(preprocess, "scale", 1 / 255) or 1 / 255)
    for what, vals in (("--mean", mean), ("--std", std)):
        if len(vals) not in (1, c):
            raise BadInput(f"{what} gives {len(vals)} values; input {spec.name!r} has {c} channel(s)", stage="options")
    if any(s == 0 for s in std):
        raise BadInput("--std must not contain 0", stage="options")
    mean = mean * c if len(mean) == 1 else mean
    std = std * c if len(std) == 1 else std
    model_order = "GRAY" if c == 1 else ("BGR" if getattr(preprocess, "bgr", False) else "RGB")
    src = options.get("aipp_src_size")
    src_wh = _pair(src, "aipp_src_size") if src else (w, h)
    if len(src_wh) != 2 or min(src_wh) <= 0:
        raise BadInput(f"-O aipp_src_size={src!r}: W,H", stage="options")
    crop = None
    if options.get("aipp_crop"):
        crop = _pair(options["aipp_crop"], "aipp_crop")
        if len(crop) != 4 or crop[0] < 0 or crop[1] < 0 or crop[2] <= 0 or crop[3] <= 0:
            raise BadInput(f"-O aipp_crop={options['aipp_crop']!r}: X,Y,W,H", stage="options")
        if (crop[2], crop[3]) != (w, h):
            raise BadInput(f"-O aipp_crop: the crop ({crop[2]}x{crop[3]}) must be the model's input size ({w}x{h}); "
                           f"AIPP cannot resize ({RESIZE_REFUSED})", stage="options")
        if crop[0] + crop[2] > src_wh[0] or crop[1] + crop[3] > src_wh[1]:
            raise BadInput(f"-O aipp_crop={options['aipp_crop']}: the crop leaves the {src_wh[0]}x{src_wh[1]} source "
                           "image (-O aipp_src_size)", stage="options")
    elif tuple(src_wh) != (w, h):
        raise BadInput(f"-O aipp_src_size {src_wh[0]}x{src_wh[1]} differs from the model's {w}x{h}: give -O aipp_crop "
                       f"(AIPP cannot resize: {RESIZE_REFUSED})", stage="options")
    if camera in ("yuv420sp", "yvu420sp"):
        odd = [v for v in (*src_wh, *(crop or ())) if v % 2]
        if odd:
            raise BadInput("YUV420SP input: the source size and the crop's X, Y, W, H must be even (ATC's AIPP rule)",
                           stage="options")
    return AippSpec(spec.name, camera, model_order, str(options.get("aipp_csc") or "jpeg"), (h, w),
                    (int(src_wh[0]), int(src_wh[1])), tuple(crop) if crop else None,
                    tuple(m / scale for m in mean), tuple(scale / s for s in std), layout)


def _num(v: float) -> str:
    text = f"{v:.10g}"
    return text


def config_text(spec: AippSpec) -> str:
    """The ``aipp_op`` block, in the textproto form of ATC's AIPP template."""
    w, h = spec.src_wh
    lines = ["aipp_op {", "    aipp_mode : static", "    related_input_rank : 0",
             f"    input_format : {spec.input_format}", f"    src_image_size_w : {w}", f"    src_image_size_h : {h}"]
    if spec.crop:
        x, y, cw, ch = spec.crop
        lines += ["    crop : true", f"    load_start_pos_w : {x}", f"    load_start_pos_h : {y}",
                  f"    crop_size_w : {cw}", f"    crop_size_h : {ch}"]
    else:
        lines.append("    crop : false")
    lines.append(f"    csc_switch : {'true' if spec.yuv else 'false'}")
    if spec.camera != "gray":
        lines.append(f"    rbuv_swap_switch : {'true' if spec.swap else 'false'}")
    if spec.yuv:
        rows, bias = spec.matrix()
        for r in range(3):
            for col in range(3):
                lines.append(f"    matrix_r{r}c{col} : {rows[r][col]}")
        for i in range(3):
            lines.append(f"    input_bias_{i} : {bias[i]}")
    for i in range(spec.channels):
        lines.append(f"    mean_chn_{i} : 0")
    for i in range(spec.channels):
        lines.append(f"    min_chn_{i} : {_num(spec.min_chn[i])}")
    for i in range(spec.channels):
        lines.append(f"    var_reci_chn_{i} : {_num(spec.var_reci[i])}")
    lines.append("}")
    return "\n".join(lines) + "\n"


def om_contract(io: IOContract, spec: AippSpec) -> IOContract:
    """The artifact's contract: input 0 as uint8 pixels (NHWC, model channel order) with AIPP's normalisation."""
    src = io.inputs[0]
    h, w = spec.model_hw
    batch = src.shape[0]
    scalar = spec.channels == 1 or (len(set(spec.min_chn)) == 1 and len(set(spec.var_reci)) == 1)
    pix = TensorSpec(src.name, (batch, h, w, spec.channels), "uint8", "NHWC",
                     scale=spec.var_reci[0] if scalar else list(spec.var_reci),
                     zero_point=spec.min_chn[0] if scalar else list(spec.min_chn))
    record = spec.to_dict(batch)
    record["replaces"] = {"dtype": src.dtype, "layout": spec.layout, "shape": list(src.shape)}
    return replace(io, inputs=(pix, *io.inputs[1:]), preprocessing={**io.preprocessing, "aipp": record})


# -- what the runner feeds the .om: the buffer AIPP expects, built from the model-order pixels ---------------------
def om_input(pixels: Any, record: dict[str, Any]) -> Any:
    """``pixels`` uint8 [N,H,W,C] in the model's channel order -> the .om's input buffer (``record`` is
    ``preprocessing["aipp"]``): camera channel order, placed in the source image at the crop, YUV encoded."""
    import numpy as np

    x = np.asarray(pixels, dtype=np.uint8)
    fed, order = record["fed"], record["model_channel_order"]
    if fed in ("rgb", "bgr") and fed.upper() != order:
        x = x[..., ::-1]
    rgb = x[..., ::-1] if (record["input_format"] == "YUV420SP_U8" and order == "BGR") else x
    w, h = record["src_size"]
    crop = record.get("crop")
    if crop:
        cx, cy, cw, ch = crop
        canvas = np.zeros((x.shape[0], h, w, x.shape[3]), dtype=np.uint8)
        canvas[:, cy:cy + ch, cx:cx + cw] = rgb if record["input_format"] == "YUV420SP_U8" else x
        src = canvas
    else:
        src = rgb if record["input_format"] == "YUV420SP_U8" else x
    if record["input_format"] != "YUV420SP_U8":
        return np.ascontiguousarray(src)
    return _rgb_to_yuv420sp(src, record.get("csc") or "jpeg", nv21=fed == "yvu420sp")


def _rgb_to_yuv420sp(rgb: Any, csc: str, nv21: bool) -> Any:
    """RGB [N,H,W,3] -> YUV420SP [N, H*3/2, W]: the inverse of the documented CSC matrix, 2x2 chroma averaging."""
    import numpy as np

    rows, bias = CSC[csc]
    m = np.array(rows, dtype=np.float64) / 256.0
    inv = np.linalg.inv(m)
    yuv = rgb.astype(np.float64) @ inv.T + np.array(bias, dtype=np.float64)
    yuv = np.clip(np.round(yuv), 0, 255)
    n, h, w, _ = yuv.shape
    y = yuv[..., 0]
    uv = yuv[..., 1:].reshape(n, h // 2, 2, w // 2, 2, 2).mean(axis=(2, 4))
    if nv21:
        uv = uv[..., ::-1]
    uv = np.round(uv).reshape(n, h // 2, w)
    return np.concatenate([y, uv], axis=1).astype(np.uint8)
