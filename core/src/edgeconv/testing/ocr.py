"""A small OCR pipeline over the corpus models, to check converted models on a real task.

rapidocr-onnxruntime 1.4.4 (PP-OCRv4): det -> crop -> cls -> rec, following its pre- and post-processing
(``ch_ppocr_det/utils.py``, ``ch_ppocr_cls/text_cls.py``, ``ch_ppocr_rec/text_recognize.py``) with numpy and
Pillow only. Differences from rapidocr, chosen so that every target gets one static shape:

- det runs on a fixed canvas (default 96 x 640, already a multiple of 32) instead of ``limit_type: min,
  limit_side_len: 736``; the DB post-process finds connected components of the dilated bitmap and takes their
  axis-aligned boxes (rapidocr: contours + ``minAreaRect``), which is the same box for horizontal text; the
  unclip offset is pyclipper's ``area * 1.6 / perimeter`` applied to the rectangle;
- rec runs at a fixed width (default 640; rapidocr: ``max(320, 48 * w/h)``), wider crops are squeezed as
  rapidocr does beyond its width.

The character set is the rec model's ``character`` metadata (one per line), with ``blank`` first and a space
last, as rapidocr's ``CTCLabelDecode``. ddddocr ``common.onnx`` (its "beta" model) reads a grey image 64 px high
scaled to 0..1; its character set is ``CHARSET_BETA`` in ``ddddocr/charsets.py`` (read with ``ast``, ddddocr is
not imported).

Models are run through edgeconv: an artifact folder with ``edgeconv.pipeline.load_artifact`` and the target's
runner (inputs and outputs adapted to the artifact's layout as ``edgeconv verify`` does), a source ``.onnx`` with
``edgeconv.pipeline.load`` and its runner.
"""

from __future__ import annotations

import ast
import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

RAPIDOCR = "rapidocr"
DET = "rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx"
REC = "rapidocr_onnxruntime/models/ch_PP-OCRv4_rec_infer.onnx"
CLS = "rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx"
DDDDOCR = "ddddocr"
DD_COMMON = "ddddocr/common.onnx"
DD_DET = "ddddocr/common_det.onnx"
DD_OLD = "ddddocr/common_old.onnx"

DET_SHAPE = (96, 640)  # H, W of the det canvas
CLS_SHAPE = (48, 192)
REC_SHAPE = (48, 640)
DD_SHAPE = (64, 192)
DD_DET_SIZE = 416

# -- fonts and rendering ----------------------------------------------------------------------
_FONT_DIRS = ("/usr/share/fonts/truetype/dejavu", "/usr/share/fonts/dejavu", "/usr/share/fonts/TTF",
              "/usr/local/share/fonts", "/usr/share/fonts")


def font_file(name: str = "DejaVuSans.ttf") -> Path:
    """A DejaVu font: the system's (Debian ``fonts-dejavu-core``), else the copy matplotlib ships."""
    for d in _FONT_DIRS:
        p = Path(d) / name
        if p.is_file():
            return p
    for d in _FONT_DIRS:
        if Path(d).is_dir():
            hit = next(Path(d).rglob(name), None)
            if hit:
                return hit
    try:
        import matplotlib

        p = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / name
        if p.is_file():
            return p
    except ImportError:
        pass
    raise FileNotFoundError(
        f"font {name} not found: install fonts-dejavu-core (apt) or matplotlib (pip), which ships DejaVu fonts"
    )


_WORDS = ("invoice total amount order number date paid due balance account customer item price tax "
          "shipping address phone email office report page section table figure value result check "
          "model target edge convert verify sample meter water power north south river green light").split()


def random_lines(n: int, seed: int = 0, words: tuple[int, int] = (2, 4)) -> list[str]:
    """``n`` lines of text made of English words and numbers (seeded)."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        parts = []
        for _ in range(rng.randint(*words)):
            r = rng.random()
            if r < 0.2:
                parts.append(str(rng.randint(1, 9999)))
            elif r < 0.3:
                parts.append(f"{rng.randint(1, 999)}.{rng.randint(0, 99):02d}")
            else:
                w = rng.choice(_WORDS)
                parts.append(w.capitalize() if rng.random() < 0.3 else w)
        out.append(" ".join(parts))
    return out


# Characters whose upper and lower case differ in shape in DejaVu (c/C, s/S, o/O... do not: a reader
# cannot tell them apart, and ddddocr answers either), without i/l/1 and 0/o.
CLEAR_ALPHABET = "abdefghjmnqrty2345678"


def random_codes(n: int, seed: int = 0, alphabet: str = "abcdefghijkmnpqrstuvwxyz23456789") -> list[str]:
    """``n`` captcha-like strings of 4-6 characters (seeded); ``CLEAR_ALPHABET`` for unambiguous ones."""
    rng = random.Random(seed)
    return ["".join(rng.choice(alphabet) for _ in range(rng.randint(4, 6))) for _ in range(n)]


def render_line(text: str, size: tuple[int, int] = DET_SHAPE, *, font_size: int = 26, seed: int = 0,
                rotate180: bool = False) -> np.ndarray:
    """One line of dark text on a light background, an RGB uint8 array [H, W, 3]."""
    from PIL import Image, ImageDraw, ImageFont

    rng = random.Random(seed)
    h, w = size
    font = ImageFont.truetype(str(font_file(rng.choice(("DejaVuSans.ttf", "DejaVuSerif.ttf", "DejaVuSansMono.ttf")))),
                              font_size)
    bg = tuple(rng.randint(225, 255) for _ in range(3))
    fg = tuple(rng.randint(0, 60) for _ in range(3))
    im = Image.new("RGB", (w, h), bg)
    draw = ImageDraw.Draw(im)
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    x = rng.randint(8, max(8, w - (right - left) - 8)) - left
    y = (h - (bottom - top)) // 2 - top + rng.randint(-6, 6)
    draw.text((x, y), text, fill=fg, font=font)
    arr = np.asarray(im).copy()
    noise = np.random.default_rng(seed).normal(0, 4, arr.shape)
    arr = np.clip(arr + noise, 0, 255).astype(np.uint8)
    return arr[::-1, ::-1].copy() if rotate180 else arr


def render_crop(text: str, *, font_size: int = 32, seed: int = 0, rotate180: bool = False) -> np.ndarray:
    """A tight text-line crop (as det -> crop would give), RGB uint8 [H, W, 3]."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.truetype(str(font_file()), font_size)
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    left, top, right, bottom = probe.textbbox((0, 0), text, font=font)
    pad = font_size // 4
    return render_line(text, (bottom - top + 2 * pad, right - left + 2 * pad), font_size=font_size,
                       seed=seed, rotate180=rotate180)


def render_code(text: str, *, seed: int = 0, size: tuple[int, int] = DD_SHAPE) -> np.ndarray:
    """A captcha-like grey image of a short string, 64 px high: uint8 [H, W]."""
    from PIL import Image, ImageDraw, ImageFont

    rng = random.Random(seed)
    h, w = size
    font = ImageFont.truetype(str(font_file("DejaVuSans-Bold.ttf" if rng.random() < 0.5 else "DejaVuSans.ttf")), 40)
    im = Image.new("L", (w, h), rng.randint(200, 250))
    draw = ImageDraw.Draw(im)
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    x = max(2, (w - (right - left)) // 2) - left + rng.randint(-4, 4)
    y = (h - (bottom - top)) // 2 - top + rng.randint(-3, 3)
    draw.text((x, y), text, fill=rng.randint(20, 90), font=font)
    arr = np.asarray(im).astype(np.float32) + np.random.default_rng(seed).normal(0, 6, (h, w))
    return np.clip(arr, 0, 255).astype(np.uint8)


def render_scene(seed: int = 0, size: int = DD_DET_SIZE) -> np.ndarray:
    """A click-captcha-like scene for ddddocr's detector: a few big characters on a textured background, BGR uint8."""
    from PIL import Image, ImageDraw, ImageFont

    rng = random.Random(seed)
    g = np.random.default_rng(seed)
    base = g.integers(80, 200, (1, 1, 3)) + g.normal(0, 18, (size, size, 3)).cumsum(0) / 20
    im = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(im)
    for _ in range(rng.randint(3, 5)):
        font = ImageFont.truetype(str(font_file("DejaVuSans-Bold.ttf")), rng.randint(36, 64))
        ch = rng.choice("ABCDEFGHJKLMNPQRSTUVWXYZ23456789")
        draw.text((rng.randint(0, size - 64), rng.randint(0, size - 64)), ch,
                  fill=tuple(rng.randint(0, 255) for _ in range(3)), font=font)
    return np.asarray(im)[..., ::-1].copy()


# -- pre-processing --------------------------------------------------------------------------
def _resize(img: np.ndarray, w: int, h: int) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.fromarray(img).resize((w, h), Image.BILINEAR))


def det_input(img: np.ndarray, size: tuple[int, int] | None = DET_SHAPE) -> np.ndarray:
    """rapidocr DetPreProcess: resize (to ``size``, else to multiples of 32), (x/255 - 0.5)/0.5, BGR, NCHW."""
    h, w = img.shape[:2]
    rh, rw = size if size else (max(32, round(h / 32) * 32), max(32, round(w / 32) * 32))
    if (rh, rw) != (h, w):
        img = _resize(img, rw, rh)
    x = (img[..., ::-1].astype(np.float32) / 255.0 - 0.5) / 0.5
    return x.transpose(2, 0, 1)[None].astype(np.float32)


def line_input(img: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """rapidocr's cls/rec ``resize_norm_img``: height fixed, width by ratio (capped), zero padding, BGR."""
    th, tw = shape
    h, w = img.shape[:2]
    rw = min(tw, int(math.ceil(th * w / float(h))))
    x = _resize(img, rw, th)[..., ::-1].astype(np.float32).transpose(2, 0, 1) / 255
    x = (x - 0.5) / 0.5
    out = np.zeros((3, th, tw), dtype=np.float32)
    out[:, :, :rw] = x
    return out[None]


def dd_input(img: np.ndarray) -> np.ndarray:
    """ddddocr: grey, height 64, /255, [1,1,64,W]."""
    return (img.astype(np.float32) / 255.0)[None, None]


def dd_det_input(img_bgr: np.ndarray, size: int = DD_DET_SIZE) -> np.ndarray:
    """ddddocr DetectionEngine.preproc: letterbox onto 114 grey, raw 0..255 floats, NCHW."""
    h, w = img_bgr.shape[:2]
    r = min(size / h, size / w)
    padded = np.full((size, size, 3), 114, dtype=np.uint8)
    nh, nw = int(h * r), int(w * r)
    padded[:nh, :nw] = _resize(img_bgr, nw, nh) if (nh, nw) != (h, w) else img_bgr
    return padded.transpose(2, 0, 1)[None].astype(np.float32)


# -- post-processing -------------------------------------------------------------------------
def _components(mask: np.ndarray) -> list[tuple[int, int, int, int]]:
    """8-connected components of a boolean mask, as (x0, y0, x1, y1) inclusive: union-find over row runs."""
    runs: list[tuple[int, int, int]] = []  # (row, start, end inclusive)
    parent: list[int] = []

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    prev: list[int] = []
    for y in range(mask.shape[0]):
        row = mask[y].astype(np.int8)
        d = np.diff(np.concatenate(([0], row, [0])))
        starts, ends = np.flatnonzero(d == 1), np.flatnonzero(d == -1) - 1
        cur = []
        for s, e in zip(starts.tolist(), ends.tolist(), strict=True):
            idx = len(runs)
            runs.append((y, s, e))
            parent.append(idx)
            for j in prev:
                _, ps, pe = runs[j]
                if ps <= e + 1 and pe >= s - 1:  # 8-connectivity
                    a, b = find(idx), find(j)
                    if a != b:
                        parent[max(a, b)] = min(a, b)
            cur.append(idx)
        prev = cur
    boxes: dict[int, list[int]] = {}
    for i, (y, s, e) in enumerate(runs):
        r = find(i)
        b = boxes.setdefault(r, [s, y, e, y])
        b[0], b[1], b[2], b[3] = min(b[0], s), min(b[1], y), max(b[2], e), max(b[3], y)
    return [tuple(b) for b in boxes.values()]


def db_boxes(pred: np.ndarray, src_hw: tuple[int, int], *, thresh: float = 0.3, box_thresh: float = 0.5,
             unclip_ratio: float = 1.6, min_size: int = 3) -> list[tuple[int, int, int, int]]:
    """rapidocr DBPostProcess (score_mode fast, dilation 2x2) for axis-aligned text: boxes (x0, y0, x1, y1)."""
    prob = pred.reshape(pred.shape[-2], pred.shape[-1])
    height, width = prob.shape
    mask = prob > thresh
    dil = mask.copy()  # cv2.dilate with a 2x2 kernel (anchor at its centre: the pixel and its up/left neighbours)
    dil[1:, :] |= mask[:-1, :]
    dil[:, 1:] |= mask[:, :-1]
    dil[1:, 1:] |= mask[:-1, :-1]
    src_h, src_w = src_hw
    out = []
    for x0, y0, x1, y1 in _components(dil):
        bw, bh = x1 - x0, y1 - y0
        if min(bw, bh) < min_size:
            continue
        score = float(prob[y0:y1 + 1, x0:x1 + 1].mean())
        if score < box_thresh:
            continue
        dist = bw * bh * unclip_ratio / (2 * (bw + bh))
        ex0, ey0, ex1, ey1 = x0 - dist, y0 - dist, x1 + dist, y1 + dist
        if min(ex1 - ex0, ey1 - ey0) < min_size + 2:
            continue
        bx0 = int(np.clip(round(ex0 / width * src_w), 0, src_w))
        bx1 = int(np.clip(round(ex1 / width * src_w), 0, src_w))
        by0 = int(np.clip(round(ey0 / height * src_h), 0, src_h))
        by1 = int(np.clip(round(ey1 / height * src_h), 0, src_h))
        bx0, bx1 = min(bx0, src_w - 1), min(bx1, src_w - 1)  # TextDetector.clip_det_res
        by0, by1 = min(by0, src_h - 1), min(by1, src_h - 1)
        if bx1 - bx0 <= 3 or by1 - by0 <= 3:
            continue
        out.append((bx0, by0, bx1, by1))
    return sorted(out, key=lambda b: (b[1] // 10, b[0]))  # reading order: top to bottom, left to right


def ctc_decode(probs: np.ndarray, charset: list[str], blank: int = 0) -> str:
    """Greedy CTC: argmax per step, collapse repeats, drop the blank."""
    idx = probs.argmax(-1)
    keep = np.ones(len(idx), dtype=bool)
    keep[1:] = idx[1:] != idx[:-1]
    keep &= idx != blank
    return "".join(charset[i] for i in idx[keep] if 0 <= i < len(charset))


def rapidocr_charset(rec_onnx: str | Path) -> list[str]:
    """The rec model's character list (its ``character`` metadata), with blank first and a space last."""
    import onnx

    proto = onnx.load(str(rec_onnx), load_external_data=False)
    meta = {p.key: p.value for p in proto.metadata_props}
    if "character" not in meta:
        raise KeyError(f"{rec_onnx} has no 'character' metadata")
    return ["blank", *meta["character"].splitlines(), " "]


def ddddocr_charset(charsets_py: str | Path, name: str = "CHARSET_BETA") -> list[str]:
    tree = ast.parse(Path(charsets_py).read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == name for t in node.targets):
            return list(ast.literal_eval(node.value))
    raise KeyError(f"{name} not in {charsets_py}")


# -- running models through edgeconv ----------------------------------------------------------
class ModelRunner:
    """Run a source ``.onnx`` or an edgeconv artifact folder on numpy inputs, in the source's layout."""

    def __init__(self, model: str | Path, input_shapes: dict[str, tuple[int, ...]] | None = None,
                 threads: int | None = None) -> None:
        from ..api import load
        from ..artifacts import open_artifact as load_artifact
        from ..verification.runners import make_runner

        p = Path(model)
        if p.is_dir():
            self.model, manifest = load_artifact(p)
            from ..model import IOContract

            self.source_io = IOContract.from_dict(manifest["source_io"]) if manifest and "source_io" in manifest \
                else self.model.io
            opts = dict((manifest or {}).get("runner_options") or {})
        else:
            self.model = load(p, input_shapes=input_shapes)
            self.source_io, opts = self.model.io, {}
        if threads:
            opts["threads"] = threads
        self.runner = make_runner(self.model, **opts)
        self.runner.activate()
        self.input_name = self.source_io.inputs[0].name
        self.output_name = self.source_io.outputs[0].name

    def __call__(self, x: np.ndarray) -> np.ndarray:
        from ..verification.fidelity import adapt_inputs, adapt_outputs

        feed = adapt_inputs({self.input_name: x}, self.source_io, self.model.io)
        raw = self.runner.infer(feed)
        out = adapt_outputs(raw, self.source_io, self.model.io)
        return np.asarray(out.get(self.output_name, next(iter(raw.values()))))

    def close(self) -> None:
        self.runner.deactivate()

    def __enter__(self) -> ModelRunner:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


@dataclass
class Read:
    text: str
    boxes: list[tuple[int, int, int, int]]
    rotated: list[bool]


class OCR:
    """det -> crop -> cls -> rec; each stage a ``ModelRunner`` (or any callable array -> array)."""

    def __init__(self, det: Any, rec: Any, charset: list[str], cls: Any = None, *, det_shape=DET_SHAPE,
                 rec_shape=REC_SHAPE, cls_shape=CLS_SHAPE, cls_thresh: float = 0.9) -> None:
        self.det, self.rec, self.cls, self.charset = det, rec, cls, charset
        self.det_shape, self.rec_shape, self.cls_shape, self.cls_thresh = det_shape, rec_shape, cls_shape, cls_thresh

    def detect(self, img: np.ndarray) -> list[tuple[int, int, int, int]]:
        pred = self.det(det_input(img, self.det_shape))
        return db_boxes(pred, img.shape[:2])

    def classify(self, crop: np.ndarray) -> tuple[np.ndarray, bool]:
        if self.cls is None:
            return crop, False
        prob = self.cls(line_input(crop, self.cls_shape))[0]
        if int(prob.argmax()) == 1 and float(prob[1]) > self.cls_thresh:  # label '180'
            return crop[::-1, ::-1].copy(), True
        return crop, False

    def recognize(self, crop: np.ndarray) -> str:
        probs = self.rec(line_input(crop, self.rec_shape))[0]
        return ctc_decode(probs, self.charset)

    def __call__(self, img: np.ndarray) -> Read:
        boxes = self.detect(img)
        texts, rotated = [], []
        for x0, y0, x1, y1 in boxes:
            crop = img[y0:y1 + 1, x0:x1 + 1]
            if crop.shape[0] / max(crop.shape[1], 1) >= 1.5:
                crop = np.rot90(crop).copy()
            crop, rot = self.classify(crop)
            rotated.append(rot)
            texts.append(self.recognize(crop))
        if rotated and all(rotated):  # the whole image was upside down: the reading order is reversed
            texts = texts[::-1]
        return Read(normalize(" ".join(texts)), boxes, rotated)


def dd_read(model: Any, img: np.ndarray, charset: list[str]) -> str:
    """ddddocr's text output: [T,1,C] (or [1,T,C]) -> greedy CTC with blank 0."""
    out = np.asarray(model(dd_input(img)))
    if out.ndim == 3:
        out = out[:, 0, :] if out.shape[1] == 1 else out[0]
    return ctc_decode(out, charset)


# -- metrics ----------------------------------------------------------------------------------
def normalize(text: str) -> str:
    return " ".join(text.split())


def edit_distance(a: str, b: str) -> int:
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def cer(hyps: list[str], refs: list[str]) -> float:
    """Character error rate over a set: total edits / total reference characters."""
    total = sum(len(r) for r in refs)
    return sum(edit_distance(h, r) for h, r in zip(hyps, refs, strict=True)) / max(total, 1)
