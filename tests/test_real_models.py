"""Real pretrained models (rapidocr-onnxruntime, ddddocr: the pinned corpus) through edgeconv, on every ready target.

The CI subset of ``scripts/real_models.py`` (docs/real-models.md has the full run): the PP-OCR cls and det models
at fp32 on onnxruntime, openvino and tflite, verified on rendered inputs at cosine >= 0.999; the OCR pipeline
reading rendered lines with the converted models; ddddocr's recogniser reading rendered strings; and the clean
refusal of ddddocr's common_old (com.microsoft ops) by a target that cannot run them.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from edgeconv.errors import UnsupportedOperators
from edgeconv import convert, load
from edgeconv.testing import ocr
from edgeconv.testing.corpus import fetch, path

pytestmark = pytest.mark.corpus

TARGETS = ("onnxruntime", "openvino", "tflite")
N_VERIFY = 4
LINES = 4


def _script():
    spec = importlib.util.spec_from_file_location("real_models", Path(__file__).parents[1] / "scripts" / "real_models.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("real_models", mod)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def script():
    return _script()


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory, script):
    """(model, target) -> the fp32 conversion's Result, converted once per module."""
    out = tmp_path_factory.mktemp("real")
    specs = script.specs()
    cache = {}

    def get(key: str, target: str):
        if (key, target) not in cache:
            spec = specs[key]
            cache[(key, target)] = convert(
                path(spec.source, spec.member), target, precision="fp32",
                input_shapes={spec.input_name: spec.shape}, data=str(script.dataset(spec, "verify", N_VERIFY)),
                output=out / f"{key}-{target}", runs=2, warmup=1, memory=False, thresholds=spec.thresholds)
        return cache[(key, target)]

    return get


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("key", ["cls", "det"])
def test_fp32_agrees_with_source(artifacts, key, target):
    res = artifacts(key, target)
    rep = res.report
    assert rep["data"]["samples"] == N_VERIFY and rep["data"]["kind"] == "npz"  # rendered inputs, not noise
    for f in rep["fidelity"]:
        assert f["shape_ok"], f
        assert f["cosine"] >= 0.999, f
    if rep["verdict"]["status"] != "pass":
        # OpenVINO on a CPU with AVX512-BF16/AMX: the verified f32 configuration passes, but a plain
        # compile_model(xml) computes in bf16 and misses bf16's gates (the DB detector's probability map: max abs
        # 0.34 of its range at cosine 0.9999); the verdict says so and names the properties to deploy with
        assert target == "openvino" and rep["verdict"]["failures"] == [rep["verdict"]["reason"]], rep["verdict"]
        assert rep["verdict"]["decided_by"] == "deployment" and "INFERENCE_PRECISION_HINT" in rep["verdict"]["reason"]


@pytest.mark.parametrize("target", TARGETS)
def test_ocr_reads_the_same_text_with_converted_models(artifacts, tmp_path, target):
    """det and cls converted for ``target`` (rec too on onnxruntime; elsewhere it is the full run's,
    being the slowest to convert), run through load_artifact and the target's runner."""
    lines = ocr.random_lines(LINES, seed=31)
    images = [ocr.render_line(t, seed=900 + i, rotate180=i == LINES - 1) for i, t in enumerate(lines)]
    charset = ocr.rapidocr_charset(path(ocr.RAPIDOCR, ocr.REC))
    shapes = {"det": (1, 3, *ocr.DET_SHAPE), "cls": (1, 3, *ocr.CLS_SHAPE), "rec": (1, 3, *ocr.REC_SHAPE)}

    def read(models):
        runners = {k: ocr.ModelRunner(m, {"x": shapes[k]}) for k, m in models.items()}
        try:
            pipe = ocr.OCR(runners["det"], runners["rec"], charset, runners["cls"])
            return [pipe(img) for img in images]
        finally:
            for r in runners.values():
                r.close()

    src = read({"det": path(ocr.RAPIDOCR, ocr.DET), "cls": path(ocr.RAPIDOCR, ocr.CLS), "rec": path(ocr.RAPIDOCR, ocr.REC)})
    assert [r.text for r in src] == lines  # the pipeline itself reads rendered text, the upside-down line included
    assert src[-1].rotated and not any(src[0].rotated)
    models = {"det": artifacts("det", target).artifact, "cls": artifacts("cls", target).artifact,
              "rec": path(ocr.RAPIDOCR, ocr.REC)}
    if target == "onnxruntime":
        models["rec"] = convert(path(ocr.RAPIDOCR, ocr.REC), target, input_shapes={"x": shapes["rec"]},
                                output=tmp_path / "rec", runs=1, warmup=0, memory=False, verify=False).artifact
    got = read(models)
    assert [r.text for r in got] == [r.text for r in src]
    assert [r.rotated for r in got] == [r.rotated for r in src]


def test_ddddocr_source_reads_rendered_codes():
    model = load(path(ocr.DDDDOCR, ocr.DD_COMMON))
    shape = model.io.outputs[0].shape  # the graph's [T,1,8210], not the declared [1,seqlen]
    assert len(shape) == 3 and shape[1] == 1
    assert any(f["tensor"] == "387" and f["declared"] == [1, "seqlen"] for f in model.meta["io_fixes"])
    charset = ocr.ddddocr_charset(fetch(ocr.DDDDOCR) / "ddddocr" / "charsets.py")
    codes = ocr.random_codes(8, seed=5, alphabet=ocr.CLEAR_ALPHABET)
    with ocr.ModelRunner(path(ocr.DDDDOCR, ocr.DD_COMMON), {"input1": (1, 1, *ocr.DD_SHAPE)}) as r:
        out = r(ocr.dd_input(ocr.render_code(codes[0], seed=0)))
        assert out.ndim == 3 and out.shape[1:] == (1, len(charset))
        got = [ocr.dd_read(r, ocr.render_code(c, seed=i), charset) for i, c in enumerate(codes)]
    assert got == codes


def test_common_old_is_refused_cleanly_by_tflite(tmp_path):
    """Already quantized with com.microsoft ops (DynamicQuantizeLSTM...): the pre-check names the node."""
    with pytest.raises(UnsupportedOperators) as info:
        convert(path(ocr.DDDDOCR, ocr.DD_OLD), "tflite", input_shapes={"input1": (1, 1, *ocr.DD_SHAPE)},
                output=tmp_path / "old")
    assert "DynamicQuantizeLSTM" in str(info.value.cause)
    assert info.value.exit_code == 4
    assert not (tmp_path / "old").exists()


def test_rapidocr_models_import_as_published():
    """cls declares [-1,3,?,?]; rec keeps its character set in metadata, one class per character + blank + space."""
    cls = load(path(ocr.RAPIDOCR, ocr.CLS))
    assert cls.io.inputs[0].shape == ("in0_dim0", 3, "in0_dim2", "in0_dim3")
    rec = load(path(ocr.RAPIDOCR, ocr.REC))
    assert len(ocr.rapidocr_charset(path(ocr.RAPIDOCR, ocr.REC))) == rec.io.outputs[0].shape[-1] == 6625


def test_db_postprocess_and_ctc_decode_on_synthetic_maps():
    """The pipeline's own pieces, on inputs with known answers."""
    prob = np.zeros((1, 1, 64, 128), np.float32)
    prob[0, 0, 10:20, 8:60] = 0.9  # one text region
    prob[0, 0, 40:50, 70:120] = 0.8  # another, lower
    prob[0, 0, 30, 5] = 0.95  # a speck: too small
    boxes = ocr.db_boxes(prob, (128, 256))  # the source image is twice the map's size
    # dilated by one pixel right and down, grown by area * 1.6 / perimeter (52x10 -> 6.71 px), scaled by 2
    assert boxes == [(3, 7, 133, 53), (127, 67, 253, 113)]
    charset = ["blank", "a", "b", " "]
    steps = np.eye(4)[[1, 1, 0, 1, 2, 2, 0, 3, 2]]
    assert ocr.ctc_decode(steps, charset) == "aab b"
    assert ocr.cer(["abc"], ["abd"]) == pytest.approx(1 / 3)
